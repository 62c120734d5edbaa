"""From utterances to aligned, PCA-whitened (audio window, video window) pairs, with caching.

Per utterance (Ngiam et al. 2011, every number in :class:`PrepConfig`; defaults = the paper's):

audio : wave → (``audio_transform``) → resample to ``sample_rate`` → log spectrogram
        (20 ms / 10 ms: 161 bins at 16 kHz, 100 frames/s) → mean normalisation over time (per
        utterance and bin) → Δ, ΔΔ (483 dims) → PCA whitening (100)
        Precomputed audio features (e.g. HTK MFCCs, ``Utterance.audio_features``) enter at the
        mean normalisation, at their own frame rate, with ``feature_audio_deltas`` derivatives.
video : frames → mouth ROI 60x80 → pixels/255 → PCA whitening (32) → Δ, each derivative
        dimension divided by its standard deviation on the training frames (``scale_deltas``),
        so every input of the Gaussian RBM has unit variance
both  : trim to the common duration, cut windows of ``frames_per_window`` (4) video frames; the
        audio of the same span (16 frames at 100/s and 25 fps) is reduced to
        ``audio_window_frames`` (10) frames, the nearest ones to 10 evenly spread times (see
        ``windows.audio_window_offsets``); window vector = per-frame features concatenated in
        time order.

The previous front end (audio mean-pooled to the video rate, derivatives appended after the
whitening and not rescaled, no mean normalisation) is ``audio_pool_to_video=True,
audio_deltas_before_pca=False, audio_deltas=1, audio_mean_norm=False, scale_deltas=False``.

Whiteners and derivative scales are fitted on the training utterances only (``Preprocessor.fit``).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from bimodal.conv_frontend import ConvFrameAutoencoder
from bimodal.device import resolve_device
from bimodal.errors import ConfigError, DataError, ShapeError
from bimodal.io import atomic_savez

from .audio import MAX_RATE, MIN_RATE, log_spectrogram, resample
from .mouth_roi import mouth_frames
from .readers import Utterance, default_workers
from .utterance import UNLABELLED
from .whitening import PCAWhitener
from .windows import (align_audio_to_video, av_windows, deltas, trim_to_common_length, video_frame_bounds,
                      window_plan)

log = logging.getLogger(__name__)

#: Version of what :meth:`Preprocessor.frames` returns; part of the frame cache's key
#: (:func:`experiments.pipeline.frame_cache_path`), so bump it whenever that changes (2: precomputed
#: audio features, frames trimmed to the video span, repetition ids, derivative scales).
FRAMES_VERSION = 2


VIDEO_FRONTENDS = ("pca", "conv")


@dataclass
class PrepConfig:
    """Every number of the preprocessing (defaults: the paper's)."""

    sample_rate: int = 16000             # audio is resampled to this rate
    resample: bool = True                # False: a file at another rate is a DataError
    win_ms: float = 20.0                 # spectrogram window
    hop_ms: float = 10.0                 # spectrogram hop → 100 audio frames/s
    audio_pca: int = 100
    video_pca: int = 32
    pca_eps: float = 1e-5
    deltas: int = 1                      # video: 0, 1 (paper) or 2 derivative orders appended after PCA
    delta_width: int = 2                 # regression half-width in frames
    roi_size: tuple[int, int] = (60, 80) # mouth crop (H, W)
    mouth_roi: str = "auto"              # "auto" | "always" | "never"
    track_every: int = 1                 # detect the mouth in every k-th frame, interpolate between
    frames_per_window: int = 4
    # Stride 1: AVLetters/CUAVE utterances are only ~20-60 frames long, so overlapping windows
    # multiply the training pairs; utterance features average over all windows anyway.
    window_stride: int = 1
    # Audio, as in the paper: mean normalisation over time, Δ and ΔΔ of the spectrogram, then PCA;
    # windows of 10 audio frames (audio_window_frames; 0 = every frame of the window's span).
    audio_deltas: int = 2                # derivative orders of the spectrogram (paper: Δ and ΔΔ)
    audio_deltas_before_pca: bool = True # False: appended after the whitening (previous front end)
    audio_mean_norm: bool = True         # subtract each utterance's mean over time, per dimension
    audio_window_frames: int = 10
    audio_pool_to_video: bool = False    # previous front end: mean-pool audio frames per video frame
    # Precomputed audio features (HTK MFCCs ...) usually carry their own derivatives (MFCC_E_D).
    feature_audio_deltas: int = 0
    # Derivatives appended after a whitening (video; audio when audio_deltas_before_pca=False) are
    # divided by their standard deviation on the training frames so every RBM input has unit variance.
    scale_deltas: bool = True
    max_av_length_mismatch_s: float = 0.2
    audio_only_fps: float = 25.0         # frame grid for audio-only utterances (e.g. FSDD)
    # Video front end (beyond the paper): "pca" whitens the pixels; "conv" trains a
    # bimodal.conv_frontend.ConvFrameAutoencoder on the training frames and whitens its per-frame
    # codes instead (video_pca of the conv_code_dim dims), then the same derivatives and windows.
    video_frontend: str = "pca"
    conv_code_dim: int = 64
    conv_channels: int = 64              # feature maps of every 3x3 convolution (cost grows with its square)
    conv_epochs: int = 10
    conv_batch_size: int = 128
    conv_lr: float = 1e-3

    def __post_init__(self):
        self.roi_size = tuple(int(v) for v in self.roi_size)
        if self.mouth_roi not in ("auto", "always", "never"):
            raise ConfigError(f"mouth_roi must be 'auto', 'always' or 'never', got {self.mouth_roi!r}")
        for k in ("deltas", "audio_deltas", "feature_audio_deltas"):
            if getattr(self, k) not in (0, 1, 2):
                raise ConfigError(f"{k} must be 0, 1 or 2, got {getattr(self, k)}")
        if int(self.audio_window_frames) < 0:
            raise ConfigError(f"audio_window_frames must be >= 0 (0 = every frame), got {self.audio_window_frames}")
        if not (MIN_RATE <= self.sample_rate <= MAX_RATE):
            raise ConfigError(f"sample_rate {self.sample_rate} outside {MIN_RATE}..{MAX_RATE}")
        for k in ("frames_per_window", "window_stride", "audio_pca", "video_pca", "track_every"):
            if int(getattr(self, k)) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        self._check_video_frontend()

    def _check_video_frontend(self) -> None:
        if self.video_frontend not in VIDEO_FRONTENDS:
            raise ConfigError(f"video_frontend must be one of {VIDEO_FRONTENDS}, got {self.video_frontend!r}")
        for k in ("conv_code_dim", "conv_channels", "conv_epochs", "conv_batch_size"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if k == "conv_epochs" else 1):
                raise ConfigError(f"{k} must be an integer >= {0 if k == 'conv_epochs' else 1}, got {v!r}")
        if not (isinstance(self.conv_lr, (int, float)) and np.isfinite(self.conv_lr) and self.conv_lr > 0):
            raise ConfigError(f"conv_lr must be a finite number > 0, got {self.conv_lr!r}")
        if self.video_frontend == "conv" and int(self.video_pca) > int(self.conv_code_dim):
            raise ConfigError(f"video_frontend='conv' whitens the conv codes: video_pca ({self.video_pca}) must be "
                              f"<= conv_code_dim ({self.conv_code_dim})")

    @property
    def audio_frame_rate(self) -> float:
        return 1000.0 / self.hop_ms

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "PrepConfig":
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - valid
        if unknown:
            raise ConfigError(f"unknown PrepConfig keys {sorted(unknown)}; valid keys: {sorted(valid)}")
        return cls(**d)


def sample_rows(n_rows: int, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` of ``n_rows`` rows drawn at random without replacement (seeded), in order;
    every row when ``n`` >= ``n_rows``."""
    if n >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=max(int(n), 0), replace=False))


@dataclass
class AVDataset:
    """Window vectors of many utterances.

    audio : (N, Da) float32; video : (N, Dv) float32 or None (audio-only corpus).
    utt : (N,) int64 index into the per-utterance arrays; windows of one utterance are
        contiguous and in time order.
    labels : (U,) int64 indices into ``label_names``; speakers, utterance_ids : (U,) str.
    repetitions : (U,) str take ids (AVLetters "1".."3"; "" where the corpus gives none) or None.
    """

    audio: np.ndarray
    video: np.ndarray | None
    utt: np.ndarray
    labels: np.ndarray
    speakers: np.ndarray
    utterance_ids: np.ndarray
    label_names: list[str] = field(default_factory=list)
    repetitions: np.ndarray | None = None

    @property
    def n_utterances(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return len(self.utt)

    @property
    def window_labels(self) -> np.ndarray:
        """(N,) label of each window."""
        return self.labels[self.utt]

    def subset(self, utterances) -> "AVDataset":
        """Keep the given utterances (boolean mask over U or indices), re-indexing ``utt``."""
        sel = np.asarray(utterances)
        idx = np.flatnonzero(sel) if sel.dtype == bool else np.unique(sel.astype(np.int64))
        if sel.dtype == bool and len(sel) != self.n_utterances:
            raise DataError(f"mask has {len(sel)} entries for {self.n_utterances} utterances", field="utterances")
        new = np.full(self.n_utterances, -1, np.int64)
        new[idx] = np.arange(len(idx))
        keep = new[self.utt] >= 0
        return AVDataset(self.audio[keep], None if self.video is None else self.video[keep],
                         new[self.utt[keep]], self.labels[idx], self.speakers[idx], self.utterance_ids[idx],
                         list(self.label_names), None if self.repetitions is None else self.repetitions[idx])

    def sample_windows(self, n: int, seed: int) -> "AVDataset":
        """``n`` windows drawn at random without replacement (all of them when ``n`` >= their
        number), kept in their order; the per-utterance arrays stay as they are."""
        if n >= len(self):
            return self
        idx = sample_rows(len(self), n, seed)
        return dataclasses.replace(self, audio=self.audio[idx], video=None if self.video is None else self.video[idx],
                                   utt=self.utt[idx])

    def concat(self, other: "AVDataset") -> "AVDataset":
        """This dataset's windows followed by ``other``'s (same window sizes); ``other``'s labels are
        appended to ``label_names`` where new, its utterance indices shifted after these."""
        if self.audio.shape[1] != other.audio.shape[1] or (self.video is None) != (other.video is None) or (
                self.video is not None and self.video.shape[1] != other.video.shape[1]):
            raise ShapeError(f"cannot join windows of sizes audio {self.audio.shape[1]} / video "
                             f"{None if self.video is None else self.video.shape[1]} and audio {other.audio.shape[1]} / "
                             f"video {None if other.video is None else other.video.shape[1]}", field="windows")
        names = list(self.label_names) + [n for n in other.label_names if n not in self.label_names]
        index = {n: i for i, n in enumerate(names)}
        other_labels = np.array([index[other.label_names[k]] for k in other.labels], np.int64)
        reps = None
        if self.repetitions is not None or other.repetitions is not None:
            reps = np.concatenate([r if r is not None else np.full(d.n_utterances, "", dtype=object)
                                   for d, r in ((self, self.repetitions), (other, other.repetitions))])
        return AVDataset(np.concatenate([self.audio, other.audio]),
                         None if self.video is None else np.concatenate([self.video, other.video]),
                         np.concatenate([self.utt, other.utt + self.n_utterances]),
                         np.concatenate([self.labels, other_labels]),
                         np.concatenate([self.speakers, other.speakers]),
                         np.concatenate([self.utterance_ids, other.utterance_ids]), names, reps)

    def save(self, path) -> Path:
        arrays = dict(audio=self.audio, utt=self.utt, labels=self.labels,
                      speakers=self.speakers.astype(str), utterance_ids=self.utterance_ids.astype(str),
                      label_names=np.asarray(self.label_names, dtype=str))
        if self.video is not None:
            arrays["video"] = self.video
        if self.repetitions is not None:
            arrays["repetitions"] = self.repetitions.astype(str)
        return atomic_savez(path, **arrays)

    @classmethod
    def load(cls, path) -> "AVDataset":
        from bimodal.io import read_npz

        path = Path(path)
        z = read_npz(path, "dataset file")
        missing = {"audio", "utt", "labels", "speakers", "utterance_ids", "label_names"} - set(z)
        if missing:
            raise DataError(f"not an AVDataset file: missing {sorted(missing)}", path=path)
        return cls(z["audio"], z["video"] if "video" in z else None, z["utt"], z["labels"],
                   z["speakers"].astype(object), z["utterance_ids"].astype(object), z["label_names"].tolist(),
                   z["repetitions"].astype(object) if "repetitions" in z else None)


def _delta_scale(whitened: list[np.ndarray], order: int, width: int) -> np.ndarray:
    """Standard deviation (floored) of every derivative dimension ``deltas`` appends to the frames."""
    D = whitened[0].shape[1]
    d = np.concatenate([deltas(w, order, width)[:, D:] for w in whitened]).astype(np.float64)
    return np.maximum(d.std(axis=0), 1e-6).astype(np.float32)


class Preprocessor:
    """Fits the whiteners on training utterances and turns utterances into an :class:`AVDataset`.

    Parameters
    ----------
    cfg : PrepConfig (None → defaults).
    device : where resampling and spectrograms run (None → CUDA if available).
    n_workers : threads for per-utterance work (default CPU count, at most 8).
    frame_cache : dict, optional
        Shared memo of the unwhitened per-utterance frames, which do not depend on the whitening:
        experiments that refit the whitening for every speaker fold pass one dict to all their
        preprocessors so spectrograms and mouth crops are computed once per utterance (and once per
        audio transform that has a ``cache_key`` attribute; transforms without one are not cached).
    seed : seeds the conv video front end (``video_frontend="conv"``): initial weights and
        minibatch order. Unused by the default PCA front end.
    """

    def __init__(self, cfg: PrepConfig | None = None, device=None, n_workers: int | None = None,
                 frame_cache: dict | None = None, seed: int = 0):
        self.cfg = cfg or PrepConfig()
        self.seed = seed
        #: The fitted ConvFrameAutoencoder of ``video_frontend="conv"`` (None for "pca").
        self.video_model: ConvFrameAutoencoder | None = None
        self.frame_cache = frame_cache
        self.device = resolve_device(device)
        self.n_workers = n_workers or default_workers()
        self.audio_whitener: PCAWhitener | None = None
        self.video_whitener: PCAWhitener | None = None
        # Per-dimension standard deviations of derivative blocks appended after a whitening.
        self.audio_delta_scale: np.ndarray | None = None
        self.video_delta_scale: np.ndarray | None = None
        self.label_names: list[str] = []
        #: Utterances the last fit / transform left out, one dict each (utterance_id, path, reason).
        self.skipped: list[dict] = []

    def __getstate__(self) -> dict:
        # The frame cache is this process's memo of every utterance's frames, often the largest thing a
        # preprocessor refers to: a pickled copy (a Ray task's fold) goes without it and computes what
        # it needs. copy.copy / deepcopy go through here too, and drop it likewise.
        return dict(self.__dict__, frame_cache=None)

    # ------------------------------------------------------------------ per-utterance frames
    def frames(self, u: Utterance, audio_transform: Callable | None = None
               ) -> tuple[np.ndarray, np.ndarray | None, float]:
        """Unwhitened per-frame features of one utterance.

        Returns
        -------
        audio : (T, F) log-spectrogram frames (or the utterance's precomputed audio features), one
            per video frame when pooling, else at their own rate (:meth:`audio_rate`).
        video : (T_v, H*W) float32 pixels in [0, 1] of the mouth crops, or None.
        fps : the frame grid (video fps, or ``audio_only_fps``).
        """
        if self.frame_cache is None:
            return self._frames(u, audio_transform)
        tkey = None if audio_transform is None else getattr(audio_transform, "cache_key", None)
        if audio_transform is not None and tkey is None:
            return self._frames(u, audio_transform)
        # The audio-only view of an audio-visual utterance (transform_audio_only) has other frames.
        key = (str(u.path), str(u.utterance_id), tkey) + (("audio-only",) if u.video is None else ())
        if key not in self.frame_cache:
            # The mouth crops do not depend on the audio: a noisy version reuses (and shares) the
            # clean version's crops instead of tracking the mouth again.
            clean = self.frame_cache.get((key[0], key[1], None)) if tkey is not None else None
            self.frame_cache[key] = self._frames(u, audio_transform, None if clean is None else clean[1])
        return self.frame_cache[key]

    def audio_rate(self, u: Utterance) -> float:
        """Frames per second of the audio frames :meth:`frames` returns for ``u`` (before pooling)."""
        if u.audio is not None:
            return self.cfg.audio_frame_rate
        return float(u.audio_frame_rate or 0.0)

    def _frames(self, u: Utterance, audio_transform: Callable | None = None, video: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray | None, float]:
        """:meth:`frames` without the cache; ``video`` = this utterance's crops, if already known."""
        c = self.cfg
        if u.audio is not None:
            wave, rate = np.asarray(u.audio, dtype=np.float32), int(u.sample_rate or 0)
            if wave.ndim != 1 or wave.size == 0:
                raise DataError(f"expected non-empty mono audio, got shape {wave.shape}", path=u.path, field="audio")
            if not (MIN_RATE <= rate <= MAX_RATE):
                raise DataError(f"implausible sample rate {rate} Hz", path=u.path, field="sample_rate")
            if audio_transform is not None:
                wave = np.asarray(audio_transform(wave, rate, u), dtype=np.float32)
            if not np.isfinite(wave).all():
                raise DataError("audio holds NaN or infinite samples", path=u.path, field="audio")
            if rate != c.sample_rate:
                if not c.resample:
                    raise DataError(f"sample rate is {rate} Hz, expected {c.sample_rate} Hz (resample=False)",
                                    path=u.path, field="sample_rate")
                wave = resample(wave, rate, c.sample_rate, device=self.device)
                rate = c.sample_rate
            n_audio, unit_rate = len(wave), float(rate)
        elif u.audio_features is not None:
            if audio_transform is not None:
                raise DataError("an audio transform (e.g. added noise) needs a waveform; this utterance has only "
                                "precomputed audio features", path=u.path, field="audio_features")
            feats = np.asarray(u.audio_features, dtype=np.float32)
            unit_rate = float(u.audio_frame_rate or 0.0)
            if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
                raise DataError(f"expected (T, F) audio feature frames, got shape {feats.shape}", path=u.path,
                                field="audio_features")
            if not (0.0 < unit_rate <= 10000.0):
                raise DataError(f"implausible audio feature frame rate {u.audio_frame_rate!r} frames/s",
                                path=u.path, field="audio_frame_rate")
            if not np.isfinite(feats).all():
                raise DataError("audio features hold NaN or infinite values", path=u.path, field="audio_features")
            n_audio = len(feats)
        else:
            raise DataError("utterance has no audio (neither a waveform nor audio features)", path=u.path,
                            field="audio")
        if u.video is not None:
            fps = float(u.fps) if u.fps else 0.0
            if fps <= 0:
                raise DataError(f"video has no valid frame rate ({u.fps!r})", path=u.path, field="fps")
            n_audio, nv = trim_to_common_length(n_audio, unit_rate, len(u.video), fps, c.max_av_length_mismatch_s,
                                                u.path)
            if video is None:
                crops = mouth_frames(u.video[:nv], c.mouth_roi, c.roi_size, name=u.path, track_every=c.track_every)
                video = crops.reshape(nv, -1).astype(np.float32) / 255.0
        else:
            video, fps = None, float(c.audio_only_fps)
        if u.audio is not None:
            try:
                spec = log_spectrogram(wave[:n_audio], rate, c.win_ms, c.hop_ms, device=self.device)
            except DataError as exc:
                raise DataError(str(exc), path=u.path, field="audio") from exc
        else:
            spec = feats[:n_audio]
        # Only audio frames centred inside the span of the (nominal) video frames: the last centred
        # STFT frame sits on the end of the wave (half reflect padding), belongs to no video frame
        # and, left in, pulls a whitening component towards itself.
        n_grid = video.shape[0] if video is not None else int(np.floor(n_audio / unit_rate * fps + 1e-9))
        if n_grid >= 1:
            spec = spec[:int(video_frame_bounds(n_grid, fps, self.audio_rate(u))[-1])]
        if c.audio_pool_to_video:
            nv = video.shape[0] if video is not None else int(np.floor(n_audio / unit_rate * fps + 1e-9))
            if nv < 1:
                raise DataError("utterance shorter than one video frame", path=u.path, field="audio")
            try:
                spec = align_audio_to_video(spec, nv, fps, self.audio_rate(u))
            except DataError as exc:
                raise DataError(str(exc), path=u.path, field="audio") from exc
        return spec, video, fps

    def _audio_delta_order(self, u: Utterance) -> int:
        return self.cfg.audio_deltas if u.audio is not None else self.cfg.feature_audio_deltas

    def audio_input(self, spec: np.ndarray, u: Utterance) -> np.ndarray:
        """Per-frame audio vectors the audio whitener sees: mean-normalised over time and, with
        ``audio_deltas_before_pca``, with Δ (and ΔΔ) appended ((T, 161 * 3) = (T, 483) for the paper)."""
        c = self.cfg
        X = np.asarray(spec, dtype=np.float32)
        if c.audio_mean_norm:
            # Per utterance and dimension, before the derivatives (which a constant offset does not change).
            X = X - X.mean(axis=0, keepdims=True)
        order = self._audio_delta_order(u)
        if c.audio_deltas_before_pca and order:
            X = deltas(X, order, c.delta_width)
        return X

    def _after_whitening(self, W: np.ndarray, order: int, scale: np.ndarray | None) -> np.ndarray:
        """Derivatives appended to whitened frames, each divided by its fitted standard deviation."""
        out = deltas(W, order, self.cfg.delta_width)
        if order and scale is not None:
            out[:, W.shape[1]:] /= scale
        return out

    def audio_frames(self, spec: np.ndarray, u: Utterance) -> np.ndarray:
        """Whitened per-frame audio features of one utterance (window building blocks)."""
        a = self.audio_whitener.transform(self.audio_input(spec, u))
        if not self.cfg.audio_deltas_before_pca:
            a = self._after_whitening(a, self._audio_delta_order(u), self.audio_delta_scale)
        return np.asarray(a, dtype=np.float32)

    def video_features(self, vid: np.ndarray) -> np.ndarray:
        """What the video whitener sees per frame: the pixels (T, H*W) unchanged for
        ``video_frontend="pca"``, the conv autoencoder's codes (T, conv_code_dim) float32 for "conv"."""
        if self.cfg.video_frontend == "pca":
            return vid
        if self.video_model is None:
            raise DataError("video_frontend='conv' but no conv front end is fitted; call fit() or load() first",
                            field="video_model")
        return np.asarray(self.video_model.transform(np.asarray(vid, dtype=np.float32)), dtype=np.float32)

    def video_frames(self, vid: np.ndarray) -> np.ndarray:
        """Whitened per-frame video features (with scaled derivatives) of one utterance."""
        v = self.video_whitener.transform(self.video_features(vid))
        return self._after_whitening(v, self.cfg.deltas, self.video_delta_scale)

    def _windows(self, u: Utterance, spec, vid, fps):
        c = self.cfg
        a = self.audio_frames(spec, u)
        v = self.video_frames(vid) if vid is not None else None
        return av_windows(a, v, fps, self.audio_rate(u), c.frames_per_window, c.window_stride,
                          c.audio_pool_to_video, name=u.path, audio_window_frames=c.audio_window_frames)

    def _check_windows(self, u: Utterance, spec, vid, fps) -> None:
        """DataError unless at least one window can be cut (so a short clip is skipped like a bad file)."""
        c = self.cfg
        starts, _ = window_plan(spec.shape[0], None if vid is None else vid.shape[0], fps, self.audio_rate(u),
                                c.frames_per_window, c.window_stride, c.audio_pool_to_video, c.audio_window_frames)
        if len(starts) == 0:
            nv = "-" if vid is None else vid.shape[0]
            raise DataError(f"utterance too short: {nv} video frames / {spec.shape[0]} audio frames, a window "
                            f"needs {c.frames_per_window} video frames", path=u.path, field="frames")

    def _all_frames(self, utterances, audio_transform, progress, desc, strict=True):
        """Frames of every utterance; with ``strict=False`` unusable ones are dropped with one warning
        and listed in ``self.skipped``.

        Returns (kept utterances, their frames)."""
        if not utterances:
            raise DataError("no utterances given", field="utterances")

        def one(u):
            try:
                fr = self.frames(u, audio_transform)
                self._check_windows(u, *fr)
                return fr
            except DataError as exc:
                if exc.path is None:  # make sure the message names the utterance
                    exc = DataError(str(exc), path=u.path)
                if strict:
                    raise exc
                return exc

        with ThreadPoolExecutor(max_workers=self.n_workers) as pool:
            res = list(tqdm(pool.map(one, utterances), total=len(utterances), desc=desc,
                            disable=not progress, leave=False))
        self.skipped = [{"utterance_id": str(u.utterance_id), "path": str(u.path), "reason": str(r)}
                        for u, r in zip(utterances, res) if isinstance(r, DataError)]
        if self.skipped:
            warnings.warn(f"{desc}: skipped {len(self.skipped)} of {len(res)} utterances:\n  "
                          + "\n  ".join(d["reason"] for d in self.skipped[:50]), stacklevel=3)
        kept = [(u, r) for u, r in zip(utterances, res) if not isinstance(r, DataError)]
        if not kept:
            raise DataError(f"none of the {len(res)} utterances is usable", field="utterances")
        kinds = Counter("waveform" if u.audio is not None else "features" for u, _ in kept)
        if len(kinds) > 1:
            raise DataError(f"mix of waveform and precomputed-feature audio {dict(kinds)}; a corpus must use one",
                            field="audio")
        return [k[0] for k in kept], [k[1] for k in kept]

    # ------------------------------------------------------------------ fit / transform
    def fit(self, train_utterances: Sequence[Utterance], progress: bool = True, strict: bool = True,
            extra_video: np.ndarray | None = None, extra_whitening: Sequence[Utterance] | None = None
            ) -> "Preprocessor":
        """Fit the audio whitener on all and the video whitener on the audio-visual training utterances,
        then the standard deviations of the derivatives appended after whitening (``scale_deltas``).

        ``strict=False`` skips unusable utterances with a warning (listed in ``self.skipped``)
        instead of raising. ``extra_video`` (M, H * W) in [0, 1]: further mouth frames (unlabelled
        corpora) that the conv video front end learns from besides the training utterances'.
        ``extra_whitening``: unlabelled audio-visual utterances (other corpora, already in this
        corpus' front end) whose frames the whiteners and the deltas' scales are fitted on too;
        unusable ones are left out (named again when they are transformed), and they never enter the
        frame cache or the class names."""
        c = self.cfg
        train_utterances, frames = self._all_frames(list(train_utterances), None, progress, "fit: features", strict)
        own_skipped = self.skipped
        pairs = list(zip(train_utterances, frames))
        if extra_whitening:
            # their crops depend on the adaptation to this fold, so they stay out of the frame cache
            cache, self.frame_cache = self.frame_cache, None
            try:
                pairs += list(zip(*self._all_frames(list(extra_whitening), None, progress, "fit: extra features", False)))
            except DataError as exc:  # not one of them usable: the whitening is the corpus' own
                warnings.warn(f"fit: none of the {len(extra_whitening)} extra recordings is usable ({exc}); the "
                              "whitening is fitted on the training utterances alone", stacklevel=2)
            finally:
                self.frame_cache, self.skipped = cache, own_skipped
        inputs = [self.audio_input(f[0], u) for u, f in pairs]
        dims = {x.shape[1] for x in inputs}
        if len(dims) > 1:
            first = inputs[0].shape[1]
            odd = next(u for (u, _), x in zip(pairs, inputs) if x.shape[1] != first)
            raise DataError(f"audio frames have {sorted(dims)} dimensions across utterances; every file must have "
                            f"the same ({train_utterances[0].path} has {first})", path=odd.path, field="audio")
        A = np.concatenate(inputs)
        n_audio = c.audio_pca
        if n_audio > A.shape[1]:
            log.warning("audio_pca=%d exceeds the %d audio input dimensions; whitening all %d", n_audio, A.shape[1],
                        A.shape[1])
            n_audio = A.shape[1]
        self.audio_whitener = PCAWhitener(n_audio, c.pca_eps).fit(A)
        vids = [f[1] for f in frames if f[1] is not None]  # the conv front end learns from these (+ extra_video)
        self.video_model = None
        if vids and c.video_frontend == "conv":
            self.video_model = ConvFrameAutoencoder(c.roi_size, c.conv_code_dim, c.conv_channels,
                                                    device=self.device, seed=self.seed)
            learn = vids if extra_video is None else vids + [np.asarray(extra_video, np.float32).reshape(len(extra_video), -1)]
            self.video_model.fit(np.concatenate(learn), epochs=c.conv_epochs, batch_size=c.conv_batch_size,
                                 lr=c.conv_lr, progress=progress)
        # what the video whitener sees: pixels or codes, of the training and the extra_whitening utterances
        vids = [self.video_features(f[1]) for _, f in pairs if f[1] is not None]
        self.video_whitener = PCAWhitener(c.video_pca, c.pca_eps).fit(np.concatenate(vids)) if vids else None
        self.audio_delta_scale = self.video_delta_scale = None
        if c.scale_deltas:
            u0 = train_utterances[0]
            if not c.audio_deltas_before_pca and self._audio_delta_order(u0):
                self.audio_delta_scale = _delta_scale([self.audio_whitener.transform(x) for x in inputs],
                                                      self._audio_delta_order(u0), c.delta_width)
            if vids and c.deltas:
                self.video_delta_scale = _delta_scale([self.video_whitener.transform(v) for v in vids], c.deltas,
                                                      c.delta_width)
        self.label_names = sorted({u.label for u in train_utterances})
        log.info("fitted whiteners on %d utterances (%d audio frames of %d dims, %d video frames)", len(pairs),
                 len(A), A.shape[1], sum(len(v) for v in vids))
        return self

    def transform(self, utterances: Sequence[Utterance], audio_transform: Callable | None = None,
                  progress: bool = True, strict: bool = True) -> AVDataset:
        """Window the utterances with the fitted whiteners.

        Parameters
        ----------
        utterances : all with video, or all audio-only (→ ``AVDataset.video is None``).
        audio_transform : ``f(wave, rate, utterance) → wave`` applied to the raw wave before
            resampling (e.g. additive noise at a given SNR); whiteners stay as fitted. Utterances
            with precomputed audio features only cannot take one (DataError, or skipped).
        progress : tqdm bar.
        strict : raise on the first unusable utterance; False drops them with one warning and lists
            them in ``self.skipped`` (the dataset then holds only the usable ones).
        """
        if self.audio_whitener is None:
            raise DataError("Preprocessor is not fitted; call fit() or load() first", field="audio_whitener")
        utterances = list(utterances)
        has_video = {u.video is not None for u in utterances}
        if len(has_video) > 1:
            raise DataError("mix of audio-visual and audio-only utterances; transform them separately",
                            field="video")
        with_video = has_video == {True}
        if with_video and self.video_whitener is None:
            raise DataError("video given but the preprocessor was fitted on audio-only data", field="video")
        utterances, frames = self._all_frames(utterances, audio_transform, progress, "transform", strict)
        names = list(self.label_names)
        unseen = sorted({u.label for u in utterances} - set(names))
        if set(unseen) - {UNLABELLED}:  # the unlabelled extra data is expected to be new
            log.warning("labels not seen in fit appended to label_names: %s", unseen)
        names += unseen
        index = {n: i for i, n in enumerate(names)}
        A, V, U = [], [], []
        for k, (u, (spec, vid, fps)) in enumerate(zip(utterances, frames)):
            aw, vw = self._windows(u, spec, vid, fps)
            A.append(aw)
            if vw is not None:
                V.append(vw)
            U.append(np.full(len(aw), k, np.int64))
        dims = Counter(a.shape[1] for a in A)
        if len(dims) > 1:
            raise DataError(f"audio window sizes differ between utterances {dict(dims)} (mixed frame rates "
                            "with audio_window_frames=0?)", field="audio")
        reps = [u.repetition for u in utterances]
        ds = AVDataset(np.concatenate(A), np.concatenate(V) if with_video else None, np.concatenate(U),
                       np.array([index[u.label] for u in utterances], np.int64),
                       np.array([u.speaker for u in utterances], dtype=object),
                       np.array([u.utterance_id for u in utterances], dtype=object), names,
                       None if all(r is None for r in reps) else np.array(["" if r is None else str(r) for r in reps],
                                                                           dtype=object))
        for name, X in (("audio", ds.audio), ("video", ds.video)):
            if X is not None and not np.isfinite(X).all():
                raise DataError("non-finite window features", field=name)
        return ds

    def video_window_to_frames(self, V) -> np.ndarray:
        """Mouth images of video window vectors: ``(N, Dv)`` → ``(N, frames_per_window, H, W)``.

        Takes each frame's whitened PCA coefficients (the derivatives that follow them are
        ignored) back through the whitening; used to show frames a model reconstructs.
        """
        if self.cfg.video_frontend != "pca":
            raise DataError(f"video_window_to_frames needs the linear PCA front end; video_frontend="
                            f"{self.cfg.video_frontend!r} whitens conv codes, which have no linear inverse to pixels",
                            field="video_frontend")
        if self.video_whitener is None:
            raise DataError("preprocessor has no video whitener", field="video_whitener")
        c = self.cfg
        V = np.asarray(V, dtype=np.float32)
        per_frame = c.video_pca * (1 + c.deltas)
        if V.ndim != 2 or V.shape[1] != per_frame * c.frames_per_window:
            raise DataError(f"expected video windows of shape (N, {per_frame * c.frames_per_window}), "
                            f"got {V.shape}", field="video")
        coeffs = V.reshape(len(V), c.frames_per_window, per_frame)[:, :, :c.video_pca]
        pixels = self.video_whitener.inverse_transform(coeffs.reshape(-1, c.video_pca))
        return np.asarray(pixels, dtype=np.float32).reshape(len(V), c.frames_per_window, *c.roi_size)

    def fit_transform(self, utterances, progress: bool = True) -> AVDataset:
        return self.fit(utterances, progress).transform(utterances, progress=progress)

    def transform_audio_only(self, utterances, audio_transform=None, progress: bool = True,
                             strict: bool = True) -> AVDataset:
        """Audio windows of utterances whose video is dropped (or absent); ``video`` is None.

        The audio uses the ``audio_only_fps`` frame grid, so window sizes match the audio-visual
        ones when that equals the video frame rate (or always, with pooling).
        """
        stripped = [dataclasses.replace(u, video=None, fps=None) for u in utterances]
        return self.transform(stripped, audio_transform, progress, strict)

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> Path:
        if self.audio_whitener is None:
            raise DataError("nothing to save: Preprocessor is not fitted", path=path)
        arrays = {"cfg_json": np.array(json.dumps(self.cfg.to_dict())),
                  "label_names": np.asarray(self.label_names, dtype=str)}
        for prefix, w in (("audio_", self.audio_whitener), ("video_", self.video_whitener)):
            if w is not None:
                arrays.update({prefix + k: v for k, v in w.state_dict().items()})
        for key, scale in (("scale_audio_deltas", self.audio_delta_scale), ("scale_video_deltas", self.video_delta_scale)):
            if scale is not None:
                arrays[key] = scale
        if self.video_model is not None:  # the conv front end goes into the same file
            arrays.update({"conv_" + k: v for k, v in self.video_model.to_arrays().items()})
        return atomic_savez(path, **arrays)

    @classmethod
    def load(cls, path, device=None) -> "Preprocessor":
        from bimodal.io import read_npz

        path = Path(path)
        z = read_npz(path, "preprocessor file")
        missing = [k for k in ("cfg_json", "label_names") if k not in z]
        if missing:
            raise DataError(f"not a Preprocessor file (no {', '.join(missing)})", path=path, field=missing[0])
        try:
            cfg = PrepConfig.from_dict(_upgrade_cfg(json.loads(str(z["cfg_json"]))))
        except (ValueError, TypeError, AttributeError) as exc:  # not JSON, not a dict, bad settings
            raise DataError(f"not a Preprocessor file: its settings are not readable ({exc})", path=path,
                            field="cfg_json") from exc
        p = cls(cfg, device=device)
        p.label_names = z["label_names"].tolist()
        p.audio_delta_scale = z["scale_audio_deltas"] if "scale_audio_deltas" in z else None
        p.video_delta_scale = z["scale_video_deltas"] if "scale_video_deltas" in z else None
        for prefix, attr in (("audio_", "audio_whitener"), ("video_", "video_whitener")):
            state = {k[len(prefix):]: v for k, v in z.items() if k.startswith(prefix)}
            if state:
                try:
                    setattr(p, attr, PCAWhitener.from_state_dict(state))
                except (TypeError, ValueError) as exc:  # DataError too: name the file the whitener came from
                    raise DataError(str(exc), path=path, field=attr) from exc
        conv = {k[len("conv_"):]: v for k, v in z.items() if k.startswith("conv_")}
        if conv:
            try:
                p.video_model = ConvFrameAutoencoder.from_arrays(conv, device=p.device)
            except DataError as exc:
                raise DataError(str(exc), path=path, field="video_model") from exc
        elif p.cfg.video_frontend == "conv" and p.video_whitener is not None:
            raise DataError("video_frontend='conv' but the file holds no conv front end", path=path,
                            field="video_model")
        return p


def _upgrade_cfg(d: dict) -> dict:
    """A preprocessor saved before the paper's audio front end became the default (no
    ``audio_deltas_before_pca`` key) was fitted with the previous one: keep using it."""
    if "audio_deltas_before_pca" not in d:
        d = {**d, "audio_deltas": d.get("deltas", 1), "audio_deltas_before_pca": False, "audio_mean_norm": False,
             "audio_window_frames": 0, "scale_deltas": False, "audio_pool_to_video": d.get("audio_pool_to_video", True)}
    return d


# ---------------------------------------------------------------------- caching
def default_cache_dir() -> Path:
    """Where cached frames and mouth boxes go without ``data.cache_dir``: ``$BIMODAL_CACHE``, else
    ``~/.cache/bimodal`` (the experiments' frame cache is :func:`experiments.pipeline.frame_cache_path`)."""
    return Path(os.environ.get("BIMODAL_CACHE", Path.home() / ".cache" / "bimodal"))
