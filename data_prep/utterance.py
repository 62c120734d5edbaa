"""The :class:`Utterance` record every corpus reader returns, and the plumbing readers share: a
thread pool over files and the skip list (one warning naming every unusable file, or the first
error with ``strict=True``). :mod:`data_prep.readers` re-exports all of it."""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from bimodal.errors import DataError


#: the label of utterances that only the unsupervised stages learn from (extra audio, extra audio-visual
#: corpora); no classifier ever sees it
UNLABELLED = "(unlabelled)"


@dataclass
class Utterance:
    """One spoken item. ``video`` is None for audio-only corpora (then ``fps`` is None).

    Audio comes either as a waveform (``audio`` + ``sample_rate``) or, for corpora that ship
    precomputed features (AVLetters' HTK MFCCs), as frames ``audio_features`` (T_a, F) float32 at
    ``audio_frame_rate`` frames/s with ``audio`` None; frame ``j`` is taken to be centred at
    ``j / audio_frame_rate`` s. ``repetition`` names the take of this (speaker, label) when the
    corpus says (AVLetters: "1", "2", "3"), for the "third test" split; None otherwise.
    """

    audio: np.ndarray | None   # (n_samples,) float32 mono, or None when only features exist
    sample_rate: int | None
    video: np.ndarray | None   # (T, H, W) uint8 grayscale
    fps: float | None
    label: str
    speaker: str
    utterance_id: str
    path: str
    audio_features: np.ndarray | None = None  # (T_a, F) float32 precomputed audio frames
    audio_frame_rate: float | None = None     # frames/s of audio_features
    repetition: str | None = None
    # consonant (first phoneme) onset in seconds from the start, when the corpus records timings
    # (the synthetic corpus's manifest; see data_prep.onsets); None = unknown
    onset_s: float | None = None
    # the recording an utterance was cut from (GRID: "s1/bbaf2n"); a split by recording keeps every
    # token of one recording on one side. None: each utterance is its own recording
    group: str | None = None

    @property
    def has_waveform(self) -> bool:
        return self.audio is not None

    @property
    def duration_s(self) -> float:
        if self.audio is not None:
            return len(self.audio) / self.sample_rate
        if self.audio_features is not None:
            return len(self.audio_features) / self.audio_frame_rate
        return len(self.video) / self.fps



def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _map_files(fn: Callable, items: list, progress: bool, desc: str, n_workers: int | None = None) -> list:
    """``[fn(x) for x in items]`` on a thread pool (OpenCV and libsndfile release the GIL);
    results keep the input order. Exceptions are returned, not raised, so one bad file does
    not hide the others."""
    def safe(x):
        try:
            return fn(x)
        except DataError as exc:
            return exc

    n_workers = n_workers or default_workers()
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        it = pool.map(safe, items)
        return list(tqdm(it, total=len(items), desc=desc, disable=not progress, leave=False))


def _collect(results: list, strict: bool, root) -> list:
    """Keep the good results; warn once (or raise the first error when strict) for the rest."""
    errors = [r for r in results if isinstance(r, DataError)]
    if errors and strict:
        raise errors[0]
    if errors:
        lines = "\n  ".join(str(e) for e in errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        warnings.warn(f"{root}: skipped {len(errors)} unusable file(s):\n  {lines}{more}", stacklevel=3)
    good = []
    for r in results:
        if isinstance(r, DataError):
            continue
        good.extend(r if isinstance(r, list) else [r])
    if not good:
        raise DataError("no usable utterances found" + (f" ({len(errors)} skipped)" if errors else ""), path=root)
    return good


def _check_root(root) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError("dataset folder does not exist", path=root)
    return root
