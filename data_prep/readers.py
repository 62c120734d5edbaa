"""Corpus readers: turn a folder on disk into a list of :class:`Utterance`.

Supported layouts
-----------------
* Generic (``read_folder``): ``ROOT/<speaker>/<label>/<utt>.{mp4,avi,mpg,mpeg,mov,mkv}`` with the
  audio in ``<utt>.wav`` beside the video, or else the video's own sound track.
* AVLetters (``read_avletters``), as distributed: ``<Letter><rep>_<Speaker>-lips.mat`` (variables
  ``vid`` (H*W, T) column-major frames and ``siz`` = [H W T]) anywhere under ROOT, 25 fps; audio
  as HTK feature files ``<Letter><rep>_<Speaker>.mfcc`` (MFCC_E_D, 20 ms frames) anywhere under
  ROOT, or ``<Letter><rep>_<Speaker>.wav`` waveforms when the copy has them (waveforms win).
* CUAVE (``read_cuave``): ``sNN{m|f}<anything>.{mpg,avi,mp4,mov}`` full-face videos, audio in the
  ``.wav`` of the same stem (else the video's own sound track), and a label file of the same stem
  (``.txt`` or ``.lab``) with one utterance per line: ``start_frame end_frame digit`` (1-based, inclusive).
* FSDD (``read_fsdd``): ``{digit}_{speaker}_{index}.wav`` (audio only, ``video=None``).
* GRID (``read_grid``, from :mod:`data_prep.grid`): ``ROOT/<speaker>/<id>.{mpg,mkv,...}`` with the
  sound track inside and ``ROOT/alignments/<speaker>/<id>.align`` word timings; cut into word
  tokens (``group`` = the recording) or trimmed sentences.
* The embedded synthetic corpus (``read_synth``, :mod:`data_prep.synth`): generated in the generic
  layout when absent, then read as it.

:func:`read_corpus` reads a corpus by its source name (the keys of :data:`READERS`, an experiment's
``data.source``); every caller that picks a reader by name goes through it.

Sound tracks inside video containers are decoded with PyAV (:mod:`data_prep.container`), mixed to
mono at the stream's own rate; a WAV beside the video wins. A container without an audio stream,
or whose audio and video durations differ by more than ``container.MAX_AV_MISMATCH_S``, is an
unusable file like any other.

Files that cannot be used are skipped with one ``warnings.warn`` listing them and why
(``strict=False``), or raise the first :class:`DataError` (``strict=True``).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from bimodal.errors import ConfigError, DataError

from .audio import load_wav
from .container import read_audio_for_video
from .grid import read_grid
# The record and the plumbing every reader shares live in .utterance (so data_prep.grid can use them
# without importing this module back); they stay importable from here, as before.
from .utterance import Utterance, _check_root, _collect, _map_files, default_workers  # noqa: F401
from .video import VIDEO_EXTENSIONS, read_video

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """An utterance found on disk but not decoded (for manifests and cache keys)."""

    speaker: str
    label: str
    utterance_id: str
    video_path: str | None
    audio_path: str            # == video_path when the sound track is inside the video container


def _filter(entries, labels, speakers):
    if labels is not None:
        labels = {str(x) for x in labels}
        entries = [e for e in entries if e.label in labels]
    if speakers is not None:
        speakers = {str(x) for x in speakers}
        entries = [e for e in entries if e.speaker in speakers]
    return entries


# --------------------------------------------------------------------------- generic layout
def scan_folder(root) -> list[Entry]:
    """List the utterances of the generic layout without decoding them (sorted).

    The audio is ``<utt>.wav`` beside the video when there is one, else the video's own sound
    track (``Entry.audio_path == Entry.video_path``; whether it has one is checked when reading).
    """
    root = _check_root(root)
    entries = []
    for spk in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for lab in sorted(p for p in spk.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for f in sorted(lab.iterdir()):
                if f.suffix.lower() not in VIDEO_EXTENSIONS or f.name.startswith("."):
                    continue
                wav = f.with_suffix(".wav")
                audio = wav if wav.is_file() else f
                entries.append(Entry(spk.name, lab.name, f"{spk.name}/{lab.name}/{f.stem}", str(f), str(audio)))
    if not entries:
        raise DataError("no recognisable files: expected ROOT/<speaker>/<label>/<utt>.{"
                        + ",".join(e.lstrip(".") for e in VIDEO_EXTENSIONS)
                        + "} with its sound track inside or in <utt>.wav beside it", path=root)
    return entries


def _read_entry(e: Entry) -> Utterance:
    frames, fps = read_video(e.video_path)
    wave, rate = read_audio_for_video(e.video_path, frames, fps, e.audio_path)
    return Utterance(wave, rate, frames, fps, e.label, e.speaker, e.utterance_id, e.video_path)


def read_folder(root, labels: Iterable | None = None, speakers: Iterable | None = None, strict: bool = False,
                progress: bool = True, n_workers: int | None = None, skipped: list | None = None) -> list[Utterance]:
    """Read the generic layout ``ROOT/<speaker>/<label>/<utt>.<video ext>`` (+ ``<utt>.wav``).

    The audio is the ``.wav`` beside a video if there is one, else the video's own sound track.

    Parameters
    ----------
    root : corpus folder.
    labels, speakers : keep only these (None = all).
    strict : raise on the first unusable file instead of warning and skipping.
    progress : show a tqdm bar.
    n_workers : decoding threads (default: CPU count, at most 8).
    skipped : a list to which each skipped file is appended as ``{"utterance_id", "path", "reason"}``.

    Returns
    -------
    list of Utterance, sorted by speaker, label, utterance; ``onset_s`` set where ``ROOT/manifest.json``
    (written by the synthetic corpus) times the utterance's phonemes (:func:`data_prep.onsets.attach_manifest_onsets`).
    """
    from .onsets import attach_manifest_onsets

    entries = _filter(scan_folder(root), labels, speakers)
    if not entries:
        raise DataError("no utterances match the requested labels/speakers", path=root)
    results = _map_files(_read_entry, entries, progress, "read", n_workers)
    if skipped is not None:
        skipped.extend({"utterance_id": e.utterance_id, "path": str(e.video_path), "reason": str(r)}
                       for e, r in zip(entries, results) if isinstance(r, DataError))
    return attach_manifest_onsets(_collect(results, strict, root), root)


# --------------------------------------------------------------------------- AVLetters
_AVL_RE = re.compile(r"^([A-Za-z])(\d+)_([A-Za-z0-9]+?)(?:-lips)?$")


def load_avletters_mat(path) -> np.ndarray:
    """Frames (T, H, W) uint8 from an AVLetters ``-lips.mat`` file (``vid`` + ``siz``)."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        m = loadmat(str(path))
    except Exception as exc:
        raise DataError(f"cannot read .mat file ({type(exc).__name__}: {exc})", path=path) from exc
    for key in ("vid", "siz"):
        if key not in m:
            raise DataError(f"missing variable '{key}' (have {sorted(k for k in m if not k.startswith('__'))})",
                            path=path, field=key)
    siz = np.asarray(m["siz"]).ravel().astype(int)
    vid = np.asarray(m["vid"], dtype=np.float64)
    if siz.size != 3:
        raise DataError(f"expected siz = [H W T], got {siz.tolist()}", path=path, field="siz")
    H, W, T = siz
    if vid.ndim != 2 or vid.shape != (H * W, T):
        raise DataError(f"expected vid of shape ({H * W}, {T}) from siz, got {vid.shape}", path=path, field="vid")
    if not np.isfinite(vid).all():
        raise DataError("vid holds NaN or infinite values", path=path, field="vid")
    if vid.max() <= 1.0:  # some copies store intensities in [0, 1]
        vid = vid * 255.0
    # MATLAB stores each column-major frame; frame t is reshape(vid(:, t), H, W).
    frames = vid.T.reshape(T, W, H).transpose(0, 2, 1)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def _avletters_stem(path: Path) -> str:
    """``A1_Bill`` of ``A1_Bill-lips.mat`` / ``A1_Bill.mfcc`` / ``a1_bill.wav`` (lower case, to match files)."""
    return path.stem.lower().removesuffix("-lips")


def read_avletters(root, fps: float = 25.0, audio: str = "auto", strict: bool = False, progress: bool = True,
                   n_workers: int | None = None, max_av_length_mismatch_s: float = 0.2) -> list[Utterance]:
    """Read AVLetters as distributed: ``Lips/A1_Bill-lips.mat`` lip sequences, audio as HTK
    ``A1_Bill.mfcc`` feature files or ``A1_Bill.wav`` waveforms, each anywhere under ``root``.

    Parameters
    ----------
    root : corpus folder.
    fps : video frame rate (AVLetters: 25).
    audio : "auto" (waveforms if any ``.wav`` is under ``root``, since they allow the spectrogram
        front end and added noise, else MFCCs if any ``.mfcc`` is there), "wav", "mfcc".
    strict : raise on the first unusable file instead of skipping it with a warning.
    max_av_length_mismatch_s : an MFCC clip whose duration differs from its video's by more than
        this is skipped (the full corpus holds one: 23 video frames, 31 MFCC frames instead of ~46).

    Returns
    -------
    list of Utterance sorted by file name; label = the letter (upper case), speaker = the name,
    repetition = the take number, utterance id = ``<Speaker>/<Letter><rep>``. With MFCC audio
    ``audio`` is None and ``audio_features`` (T_a, 26) float32 at 50 frames/s is set.
    A clip without the chosen audio file is skipped with a warning.
    """
    from .htk import read_htk
    from .windows import trim_to_common_length

    root = _check_root(root)
    if audio not in ("auto", "wav", "mfcc"):
        raise DataError(f"audio must be 'auto', 'wav' or 'mfcc', got {audio!r}", path=root, field="audio")
    found = {ext: {_avletters_stem(p): p for p in root.rglob(f"*.{ext}")} for ext in ("wav", "mfcc")}
    if audio == "auto":
        audio = "wav" if found["wav"] else "mfcc"
    audio_files = found[audio]
    items, bad = [], []
    for p in sorted(root.rglob("*.mat")):
        m = _AVL_RE.match(p.stem)
        if not m:
            bad.append(DataError("file name is not <Letter><rep>_<Speaker>-lips.mat", path=p))
            continue
        letter, rep, spk = m.group(1).upper(), m.group(2), m.group(3)
        af = audio_files.get(f"{m.group(1)}{rep}_{spk}".lower())
        if af is None:
            bad.append(DataError(f"no audio {letter}{rep}_{spk}.{audio} found under the root", path=p))
            continue
        items.append((p, af, letter, rep, spk))
    if not items and not bad:
        raise DataError("no recognisable files: expected <Letter><rep>_<Speaker>-lips.mat", path=root)

    def read(item):
        p, af, letter, rep, spk = item
        frames = load_avletters_mat(p)
        common = dict(label=letter, speaker=spk, utterance_id=f"{spk}/{letter}{rep}", path=str(p), repetition=rep)
        if audio == "wav":
            wave, rate = load_wav(af)
            return Utterance(wave, rate, frames, float(fps), **common)
        feats, header = read_htk(af)
        # Checked here, not later in the preprocessing, so a bad clip is listed and skipped with the others.
        trim_to_common_length(len(feats), header.frame_rate, len(frames), float(fps), max_av_length_mismatch_s,
                              name=f"{p} + {af.name}")
        return Utterance(None, None, frames, float(fps), audio_features=feats, audio_frame_rate=header.frame_rate,
                         **common)

    return _collect(bad + _map_files(read, items, progress, "avletters", n_workers), strict, root)


# --------------------------------------------------------------------------- CUAVE
_CUAVE_RE = re.compile(r"^(s\d+[mf])", re.IGNORECASE)


def parse_label_file(path) -> list[tuple[int, int, str]]:
    """``start end label`` lines (frames, 1-based inclusive) → [(start0, stop_exclusive, label)]."""
    path = Path(path)
    segs = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            s, e, lab = int(parts[0]), int(parts[1]), parts[2]
        except (IndexError, ValueError) as exc:
            raise DataError(f"line {i}: expected 'start_frame end_frame label', got {line!r}", path=path) from exc
        if s < 1 or e < s:
            raise DataError(f"line {i}: bad frame range {s}..{e} (1-based, inclusive)", path=path)
        segs.append((s - 1, e, lab))
    if not segs:
        raise DataError("label file lists no utterances", path=path)
    return segs


def read_cuave(root, strict: bool = False, progress: bool = True, n_workers: int | None = None) -> list[Utterance]:
    """Read CUAVE-style full-face recordings and cut them into one utterance per label line.

    Each ``sNN{m|f}*.{mpg,avi,mp4,mov}`` needs ``<stem>.txt`` (or ``.lab``); the audio is ``<stem>.wav``
    when present, else the video's own sound track (which must last as long as the video).
    Video stays full-face; ``Preprocessor`` tracks the mouth (``mouth_roi="auto"``).
    Utterance id = ``<stem>/<index>``, speaker = ``sNN{m|f}``.
    """
    root = _check_root(root)
    items, bad = [], []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() not in VIDEO_EXTENSIONS or not _CUAVE_RE.match(p.name):
            continue
        wav = p.with_suffix(".wav")
        wav = wav if wav.is_file() else None  # None: the sound track inside the video
        lab = next((q for q in (p.with_suffix(".txt"), p.with_suffix(".lab")) if q.is_file()), None)
        if lab is None:
            bad.append(DataError("no label file <stem>.txt or <stem>.lab beside the video", path=p))
        else:
            items.append((p, wav, lab))
    if not items and not bad:
        raise DataError("no recognisable files: expected sNN{m|f}*.{mpg,avi,mp4,mov} (+ .wav) + .txt", path=root)

    def read(item):
        p, wav, lab = item
        segs = parse_label_file(lab)
        frames, fps = read_video(p)
        wave, rate = read_audio_for_video(p, frames, fps, wav)
        spk = _CUAVE_RE.match(p.name).group(1).lower()
        out = []
        for k, (s, e, label) in enumerate(segs):
            if e > len(frames):
                raise DataError(f"segment {k + 1} ends at frame {e} but the video has {len(frames)}", path=lab)
            a0, a1 = int(round(s / fps * rate)), min(len(wave), int(round(e / fps * rate)))
            out.append(Utterance(wave[a0:a1].copy(), rate, frames[s:e].copy(), fps, label, spk,
                                 f"{p.stem}/{k:03d}", str(p)))
        return out

    return _collect(bad + _map_files(read, items, progress, "cuave", n_workers), strict, root)


# --------------------------------------------------------------------------- FSDD
_FSDD_RE = re.compile(r"^(\d)_([A-Za-z0-9]+)_(\d+)$")


def read_fsdd(root, labels: Iterable | None = None, speakers: Iterable | None = None, strict: bool = False,
              progress: bool = True, n_workers: int | None = None, limit_per_class_speaker: int | None = None
              ) -> list[Utterance]:
    """Read Free Spoken Digit Dataset recordings ``{digit}_{speaker}_{index}.wav`` (audio only).

    ``limit_per_class_speaker`` keeps only the first n repetitions (by index) of each
    (digit, speaker), handy for quick runs. Order: speaker, digit, index.
    """
    root = _check_root(root)
    found = []
    for p in root.glob("*.wav"):
        m = _FSDD_RE.match(p.stem)
        if m:
            found.append((m.group(2), m.group(1), int(m.group(3)), p))
    if not found:
        raise DataError("no recognisable files: expected {digit}_{speaker}_{index}.wav", path=root)
    found.sort()
    if limit_per_class_speaker is not None:
        found = [f for f in found if f[2] < limit_per_class_speaker]
    entries = _filter([Entry(s, d, f"{s}/{d}/{i}", None, str(p)) for s, d, i, p in found], labels, speakers)

    def read(e):
        wave, rate = load_wav(e.audio_path)
        return Utterance(wave, rate, None, None, e.label, e.speaker, e.utterance_id, e.audio_path)

    return _collect(_map_files(read, entries, progress, "fsdd", n_workers), strict, root)


# --------------------------------------------------------------------------- synthetic corpus
def read_synth(root=None, seed: int = 0, n_speakers: int = 12, repetitions: int = 3, vocabulary=None,
               strict: bool = False, progress: bool = True, n_workers: int | None = None) -> list[Utterance]:
    """The embedded synthetic corpus of these parameters (:func:`data_prep.synth.generate_corpus`),
    generated under ``root`` (None: its default folder for them) unless it is there already, then
    read by :func:`read_folder` (with the manifest's onsets). ``vocabulary`` None: the generator's default."""
    from .synth.corpus import DEFAULT_VOCABULARY, default_corpus_dir, generate_corpus

    params = dict(seed=seed, n_speakers=n_speakers, repetitions=repetitions,
                  vocabulary=DEFAULT_VOCABULARY if vocabulary is None else tuple(vocabulary))
    root = Path(root) if root else default_corpus_dir(**params)
    log.info("embedded corpus at %s", root)
    generate_corpus(root, progress=progress, **params)
    return read_folder(root, strict=strict, progress=progress, n_workers=n_workers)


# --------------------------------------------------------------------------- by source name
#: corpus source name → its reader, called as ``reader(root, strict=, progress=, **options)``
READERS: dict[str, Callable] = {"folder": read_folder, "avletters": read_avletters, "cuave": read_cuave,
                                "fsdd": read_fsdd, "grid": read_grid, "synth": read_synth}


def reader(source: str) -> Callable:
    """The reader of the corpus source ``source`` (a key of :data:`READERS`); a ConfigError names the known ones."""
    if source not in READERS:
        raise ConfigError(f"unknown corpus source {source!r}; known sources: {', '.join(READERS)}")
    return READERS[source]


def read_corpus(source: str, root, **kwargs) -> list[Utterance]:
    """The utterances of the corpus ``source`` under ``root``: its reader (:func:`reader`) called
    with ``root`` and ``kwargs`` (the reader's own options: ``strict``, ``progress``, GRID's ``view``
    and ``vocabulary``, ...)."""
    return reader(source)(root, **kwargs)
