"""The GRID audio-visual corpus (Cooke, Barker, Cunningham & Shao 2006) as distributed.

Layout
------
::

    ROOT/<speaker>/<id>.{mpg,mkv,...}        one sentence per video: 3 s, 75 frames at 25 fps (a few
                                             have 74), the sound track inside the file, no WAV
    ROOT/alignments/<speaker>/<id>.align     its word timings

Any number of speaker folders (``s1`` .. ``s34`` in the full corpus); ``alignments`` is not one.
An ``.align`` file holds one line per word, ``start end word``, in units of 1/25000 s (1000 units
= one video frame at 25 fps), ``sil`` for silence and ``sp`` for a short pause (neither is a word),
with CRLF line endings. The id spells the sentence (``bbaf2n`` = "bin blue at f two now"): six
words, one letter and one digit among them.

Two views of one decode
-----------------------
* tokens: one utterance per aligned word of the vocabulary (the digits, the letters or a list of
  words), cut from its recording, labelled with the word, for classification;
* sentences: one per recording, trimmed to its speech span, labelled ``"(sentence)"``, for
  unlabelled pretraining.

Both carry ``group = "<speaker>/<id>"``, so a split by recording keeps every token of a recording
on one side. Each video is decoded once and the cuts are copies: a full 75-frame 288x360 clip is
freed as soon as its cuts are taken.

Cutting rule (:func:`cut_span`)
-------------------------------
A word timed ``[start, end]`` s keeps the video frames that overlap ``[start - margin, end +
margin]``: ``f0 = floor((start - margin) fps)``, ``f1 = ceil((end + margin) fps)`` (exclusive),
clipped to the clip, and exactly the audio samples those frames cover, ``round(f0 rate / fps)`` ..
``round(f1 rate / fps)``, so a token's audio and video last the same time. The margin (default
one video frame, 40 ms, each side) keeps the lip movements that lead and trail the sound. GRID's
MP2 sound track ends about 22 ms before the last video frame: a cut whose audio falls short by
less than one frame is clipped to the samples there are.

Skips
-----
A recording whose ``.align`` is missing or malformed, whose video cannot be decoded, that has no
sound track, or whose sound track and video last more than ``max_av_length_mismatch_s`` apart is
skipped and listed in one warning ("skipped N unusable file(s)", as the other readers write it);
``strict=True`` raises the first such :class:`DataError` instead. A vocabulary word whose timing
runs past the end of its video is a skipped token, listed in a second warning ("skipped N
unusable token(s)"), and the rest of its sentence is kept.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Iterable

from bimodal.errors import ConfigError, DataError, require_file

from .container import MAX_AV_MISMATCH_S, read_audio_for_video
from .utterance import Utterance, _check_root, _collect, _map_files
from .video import VIDEO_EXTENSIONS, read_video

log = logging.getLogger(__name__)

GRID_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
GRID_LETTERS = tuple(c for c in "abcdefghijklmnopqrstuvwxyz" if c != "w")  # GRID has no "w": 25 letters
VOCABULARIES = {"digits": GRID_DIGITS, "letters": GRID_LETTERS}
NON_WORDS = ("sil", "sp")
ALIGN_UNITS_PER_S = 25000
DEFAULT_MARGIN_S = 0.04  # one video frame each side: the lips move just before and after the sound
ALIGNMENTS_DIR = "alignments"
SENTENCE_LABEL = "(sentence)"
VIEWS = ("tokens", "sentences")
LAYOUT = ("ROOT/<speaker>/<id>.{" + ",".join(e.lstrip(".") for e in VIDEO_EXTENSIONS)
          + "} videos with their sound track inside and ROOT/alignments/<speaker>/<id>.align word timings")

_EPS = 1e-9  # times from the .align files are exact multiples of 40 us: absorb float error at frame edges


# --------------------------------------------------------------------------- alignments and vocabulary
def parse_align(path) -> list[tuple[float, float, str]]:
    """Read a GRID ``.align`` file.

    Parameters
    ----------
    path : the ``.align`` file: ``start end word`` lines, times in 1/25000 s; CRLF or LF line
        endings and blank lines are accepted.

    Returns
    -------
    list of (start_s, end_s, word) in file order, times in seconds, word lower-cased
    (``sil`` and ``sp`` included: the caller decides what is a word).

    Raises
    ------
    DataError naming the file (and the line number) when it is missing or empty, a line is not
    ``start end word`` with non-negative numeric times, a start lies after its end, or there is
    no line at all.
    """
    path = require_file(path, "alignment file")
    try:
        # Undecodable bytes become U+FFFD, so a garbage file is reported as a malformed line.
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read alignment file ({type(exc).__name__}: {exc})", path=path) from exc
    words = []
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line:
            words.append(_parse_align_line(line, i, path))
    if not words:
        raise DataError("no 'start end word' lines (times in 1/25000 s)", path=path, field="alignment")
    return words


def _parse_align_line(line: str, i: int, path) -> tuple[float, float, str]:
    parts = line.split()
    try:
        if len(parts) != 3:
            raise ValueError(line)
        start, end = float(parts[0]), float(parts[1])
    except ValueError:
        raise DataError(f"line {i}: expected 'start end word' (times in 1/25000 s), got {line!r}",
                        path=path, field="alignment") from None
    if not (math.isfinite(start) and math.isfinite(end) and start >= 0):
        raise DataError(f"line {i}: expected non-negative finite times, got {line!r}", path=path, field="alignment")
    if start > end:
        raise DataError(f"line {i}: start {parts[0]} is after end {parts[1]} (expected start <= end)",
                        path=path, field="alignment")
    return start / ALIGN_UNITS_PER_S, end / ALIGN_UNITS_PER_S, parts[2].lower()


def resolve_vocabulary(vocabulary) -> tuple[str, ...]:
    """The words a token view keeps.

    Parameters
    ----------
    vocabulary : "digits" (:data:`GRID_DIGITS`), "letters" (:data:`GRID_LETTERS`) or a non-empty
        list/tuple of words (lower-cased, duplicates dropped, order kept); an entry "digits" or
        "letters" there stands for that whole vocabulary (neither is a GRID word), so a config's
        ``labels = ["digits", "letters"]`` means all 35.

    Returns
    -------
    tuple of lower-case words.

    Raises
    ------
    ConfigError naming the valid choices for anything else (also for ``sil``/``sp``, which are
    not words).
    """
    choices = f"{' or '.join(repr(k) for k in VOCABULARIES)} or a non-empty list of words"
    if isinstance(vocabulary, str):
        if vocabulary in VOCABULARIES:
            return VOCABULARIES[vocabulary]
        raise ConfigError(f"unknown GRID vocabulary {vocabulary!r}; choose {choices}")
    if (not isinstance(vocabulary, (list, tuple)) or not vocabulary
            or not all(isinstance(w, str) and w.strip() for w in vocabulary)):
        raise ConfigError(f"GRID vocabulary must be {choices}, got {vocabulary!r}")
    expanded = [x for w in vocabulary for x in VOCABULARIES.get(w.strip().lower(), (w.strip().lower(),))]
    words = tuple(dict.fromkeys(expanded))
    silent = [w for w in words if w in NON_WORDS]
    if silent:
        raise ConfigError(f"GRID vocabulary lists {silent}, which mark silence, not words; choose {choices}")
    return words


# --------------------------------------------------------------------------- the cutting rule
def cut_span(start_s: float, end_s: float, margin_s: float, fps: float, n_frames: int, rate: int,
             n_samples: int) -> tuple[int, int, int, int]:
    """Frame-exact cut of the span ``[start_s, end_s]`` widened by ``margin_s`` each side.

    Parameters
    ----------
    start_s, end_s : the span in seconds from the start of the clip.
    margin_s : seconds added on each side (clipped at the clip's edges).
    fps, n_frames : the clip's frame rate and frame count.
    rate, n_samples : the sound track's sample rate and length.

    Returns
    -------
    (f0, f1, a0, a1) : frames ``f0:f1`` are those overlapping the widened span; samples ``a0:a1``
        cover exactly those frames (``a1`` clipped to ``n_samples`` when the sound track ends less
        than one frame early).

    Raises
    ------
    DataError (no path: the caller names the file) when ``end_s`` lies past the video's end
    (the span "overruns the clip"), the span covers no frame, or the sound track ends more than
    one frame before frame ``f1`` does.
    """
    video_end = n_frames / fps
    if end_s > video_end + _EPS:
        raise DataError(f"ends past the video ({n_frames} frames at {fps:g} fps = {video_end:.3f} s): "
                        "overruns the clip")
    f0 = max(0, math.floor((start_s - margin_s) * fps + _EPS))
    f1 = min(n_frames, math.ceil((end_s + margin_s) * fps - _EPS))
    if f1 <= f0:
        raise DataError(f"covers no video frame (frames {f0}:{f1})")
    a0, a1 = round(f0 * rate / fps), round(f1 * rate / fps)
    if a1 - n_samples > rate / fps or min(a1, n_samples) <= a0:
        raise DataError(f"needs sound up to {f1 / fps:.3f} s but the sound track ends at {n_samples / rate:.3f} s, "
                        "more than a frame early")
    return f0, f1, a0, min(a1, n_samples)


# --------------------------------------------------------------------------- one recording
@dataclass
class GridRecording:
    """One GRID video and its alignment, decoded once: its cuts and its untrimmed durations.

    ``tokens`` / ``sentence`` are empty / None when that view was not asked for;
    ``token_skips`` lists the vocabulary words that could not be cut (e.g. timed past the video).
    """

    speaker: str
    sentence_id: str
    path: str
    align_path: str
    n_frames: int
    fps: float
    audio_s: float                   # the whole sound track, before any cut
    tokens: list[Utterance] = field(default_factory=list)
    sentence: Utterance | None = None
    token_skips: list[DataError] = field(default_factory=list)

    @property
    def group(self) -> str:
        return f"{self.speaker}/{self.sentence_id}"

    @property
    def video_s(self) -> float:
        return self.n_frames / self.fps

    @property
    def mismatch_s(self) -> float:
        """|audio - video| duration of the whole recording, in seconds."""
        return abs(self.audio_s - self.video_s)


def _read_recording(item: tuple[str, Path, Path], vocab: frozenset, margin_s: float, max_mismatch_s: float,
                    views: tuple[str, ...]) -> GridRecording:
    """Decode one video once and cut the requested views from it (every cut a copy)."""
    speaker, video_path, align_path = item
    words = parse_align(align_path)  # before the decode: a missing .align costs nothing
    spoken = [(s, e) for s, e, w in words if w not in NON_WORDS]
    if not spoken:
        raise DataError(f"holds only {'/'.join(NON_WORDS)}, no word", path=align_path, field="alignment")
    frames, fps = read_video(video_path)
    wave, rate = read_audio_for_video(video_path, frames, fps, max_mismatch_s=max_mismatch_s)
    rec = GridRecording(speaker, video_path.stem, str(video_path), str(align_path), len(frames), fps,
                        len(wave) / rate)
    span = (fps, len(frames), rate, len(wave))
    # The speech span is cut even when only tokens are wanted, so both views skip the same recordings.
    # A last word timed past the video is cut at the video's end here; as a token it is skipped.
    try:
        f0, f1, a0, a1 = cut_span(spoken[0][0], min(spoken[-1][1], rec.video_s), margin_s, *span)
    except DataError as exc:
        raise DataError(f"speech span {spoken[0][0]:.3f}-{spoken[-1][1]:.3f} s {exc}", path=align_path,
                        field="timing") from None
    if "sentences" in views:
        rec.sentence = Utterance(wave[a0:a1].copy(), rate, frames[f0:f1].copy(), fps, SENTENCE_LABEL, speaker,
                                 rec.group, str(video_path), group=rec.group)
    if "tokens" in views:
        for k, (s, e, w) in enumerate(words):
            if w not in vocab:
                continue
            try:
                f0, f1, a0, a1 = cut_span(s, e, margin_s, *span)
            except DataError as exc:
                rec.token_skips.append(DataError(f"word {k} {w!r} at {s:.3f}-{e:.3f} s {exc}", path=align_path,
                                                 field="timing"))
                continue
            rec.tokens.append(Utterance(wave[a0:a1].copy(), rate, frames[f0:f1].copy(), fps, w, speaker,
                                        f"{rec.group}/{k}-{w}", str(video_path), group=rec.group))
    return rec


# --------------------------------------------------------------------------- the corpus
def scan_grid(root, speakers: Iterable | None = None) -> list[tuple[str, Path, Path]]:
    """The recordings of a GRID tree without decoding them.

    Parameters
    ----------
    root : the corpus folder (see the module docstring for the layout).
    speakers : keep only these speaker folder names (None = all).

    Returns
    -------
    list of (speaker, video path, its expected .align path), sorted by speaker then sentence id.

    Raises
    ------
    DataError naming the root (and the expected layout) when there is no recording at all.
    """
    root = _check_root(root)
    wanted = None if speakers is None else {str(s) for s in speakers}
    folders = sorted(p for p in root.iterdir()
                     if p.is_dir() and not p.name.startswith(".") and p.name != ALIGNMENTS_DIR)
    if wanted is not None:
        missing = sorted(wanted - {p.name for p in folders})
        if missing:
            log.warning("%s: no folder for speaker(s) %s", root, ", ".join(missing))
        folders = [p for p in folders if p.name in wanted]
    items = []
    for spk in folders:
        videos: dict[str, Path] = {}
        for f in sorted(spk.iterdir()):
            if not f.is_file() or f.name.startswith(".") or f.suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            if f.stem in videos:  # the same sentence in two containers: one decode is enough
                log.warning("%s: two videos of one sentence, using %s", f, videos[f.stem].name)
                continue
            videos[f.stem] = f
        items += [(spk.name, f, root / ALIGNMENTS_DIR / spk.name / f"{sid}.align") for sid, f in sorted(videos.items())]
    if not items:
        which = f" for speaker(s) {', '.join(sorted(wanted))}" if wanted is not None else ""
        raise DataError(f"no GRID recordings found{which}: expected {LAYOUT}", path=root)
    return items


def _warn_token_skips(root, errors: list[DataError]) -> None:
    """One warning listing skipped tokens, worded like the readers' file list (``data check`` parses it)."""
    lines = "\n  ".join(str(e) for e in errors[:50])
    more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
    warnings.warn(f"{root}: skipped {len(errors)} unusable token(s):\n  {lines}{more}", stacklevel=4)


def read_grid_recordings(root, vocabulary="digits", margin_s: float = DEFAULT_MARGIN_S,
                         speakers: Iterable | None = None, strict: bool = False, progress: bool = True,
                         n_workers: int | None = None, max_av_length_mismatch_s: float = MAX_AV_MISMATCH_S,
                         views: tuple[str, ...] = VIEWS) -> list[GridRecording]:
    """Decode every GRID recording once and cut its tokens and its sentence.

    Parameters are those of :func:`read_grid_views`, plus ``views``: which of "tokens" and
    "sentences" to cut (the other is left empty, saving its copies).

    Returns
    -------
    list of GridRecording, sorted by speaker then sentence id, with the untrimmed audio and video
    durations of each recording (``audio_s``, ``video_s``, ``mismatch_s``).
    """
    vocab = frozenset(resolve_vocabulary(vocabulary))
    if not (isinstance(margin_s, (int, float)) and math.isfinite(margin_s) and margin_s >= 0):
        raise ConfigError(f"margin_s must be a non-negative number of seconds, got {margin_s!r}")
    bad_views = [v for v in views if v not in VIEWS]
    if bad_views or not views:
        raise ConfigError(f"views must name some of {VIEWS}, got {views!r}")
    items = scan_grid(root, speakers)
    read = partial(_read_recording, vocab=vocab, margin_s=float(margin_s), max_mismatch_s=max_av_length_mismatch_s,
                   views=tuple(views))
    results = _map_files(read, items, progress, "grid", n_workers)
    if strict:  # the first problem in corpus order, a whole file or one token
        for r in results:
            if isinstance(r, DataError):
                raise r
            if r.token_skips:
                raise r.token_skips[0]
    try:
        recordings = _collect(results, strict, root)  # warns once, listing the unusable files
    except DataError:  # nothing usable: say what layout was expected
        n_bad = sum(isinstance(r, DataError) for r in results)
        raise DataError(f"no usable GRID recording ({n_bad} skipped, listed in the warning); expected {LAYOUT}",
                        path=root) from None
    token_skips = [e for r in recordings for e in r.token_skips]
    if token_skips:
        _warn_token_skips(root, token_skips)
    if "tokens" in views and not any(r.tokens for r in recordings):
        shown = ", ".join(sorted(vocab)[:12]) + (" ..." if len(vocab) > 12 else "")
        raise DataError(f"no word of the vocabulary ({shown}) could be cut from the {len(recordings)} usable recording(s)"
                        + (f" ({len(token_skips)} skipped)" if token_skips else ""), path=root)
    return recordings


def views_of(recordings: list[GridRecording]) -> tuple[list[Utterance], list[Utterance]]:
    """(tokens, sentences) of recordings, in their order."""
    tokens = [t for r in recordings for t in r.tokens]
    sentences = [r.sentence for r in recordings if r.sentence is not None]
    return tokens, sentences


def read_grid_views(root, vocabulary="digits", margin_s: float = DEFAULT_MARGIN_S, speakers: Iterable | None = None,
                    strict: bool = False, progress: bool = True, n_workers: int | None = None,
                    max_av_length_mismatch_s: float = MAX_AV_MISMATCH_S
                    ) -> tuple[list[Utterance], list[Utterance]]:
    """Read a GRID tree into word tokens and trimmed sentences, decoding each video once.

    Parameters
    ----------
    root : the corpus folder (``ROOT/<speaker>/<id>.<video>``, ``ROOT/alignments/<speaker>/<id>.align``).
    vocabulary : the words cut as tokens: "digits", "letters" or a list of words (:func:`resolve_vocabulary`).
    margin_s : seconds of video (and its audio) kept before and after each word or speech span.
    speakers : keep only these speaker folder names (None = all).
    strict : raise the first DataError (unusable file, or token timed past its video) instead of
        skipping with a warning.
    progress : show a tqdm bar.
    n_workers : decoding threads (default: CPU count, at most 8).
    max_av_length_mismatch_s : a recording whose sound track and video durations differ by more
        than this is skipped.

    Returns
    -------
    tokens : one Utterance per aligned vocabulary word: ``audio`` (n,) float32 at ``sample_rate``,
        ``video`` (T, H, W) uint8 at ``fps``, cut by :func:`cut_span`; ``label`` = the word,
        ``speaker`` = its folder name, ``utterance_id`` = "<speaker>/<id>/<k>-<word>" (k = the
        word's line index in the .align), ``group`` = "<speaker>/<id>".
    sentences : one Utterance per usable recording, cut to its speech span (first word's start to
        last word's end, ``sil``/``sp`` excluded, plus the margin), ``label`` = "(sentence)",
        ``utterance_id`` = ``group`` = "<speaker>/<id>".
    Both sorted by speaker then sentence id.

    Raises
    ------
    ConfigError for a bad vocabulary or margin; DataError naming the root when no recording is
    usable (or with ``strict``, the first unusable file or token).
    """
    return views_of(read_grid_recordings(root, vocabulary, margin_s, speakers, strict, progress, n_workers,
                                         max_av_length_mismatch_s))


def read_grid(root, view: str | tuple[str, ...] = "tokens", vocabulary="digits", margin_s: float = DEFAULT_MARGIN_S,
              speakers: Iterable | None = None, strict: bool = False, progress: bool = True,
              n_workers: int | None = None, max_av_length_mismatch_s: float = MAX_AV_MISMATCH_S) -> list[Utterance]:
    """One view of a GRID tree: ``view`` = "tokens" (default) or "sentences"; or a tuple of views,
    whose utterances come one view after the other, in that order, from one decode of each video
    (a sentence is told from a token by its label, :data:`SENTENCE_LABEL`).

    Every other parameter is that of :func:`read_grid_views`; only the views asked for are cut.

    Raises
    ------
    ConfigError for an unknown view (before anything is read).
    """
    views = (view,) if isinstance(view, str) else tuple(view)
    if not views or any(v not in VIEWS for v in views):
        raise ConfigError(f"unknown GRID view {view!r}; choose one of {', '.join(VIEWS)}, or a tuple of them")
    recordings = read_grid_recordings(root, vocabulary, margin_s, speakers, strict, progress, n_workers,
                                      max_av_length_mismatch_s, views=views)
    cut = dict(zip(VIEWS, views_of(recordings)))
    return [u for v in views for u in cut[v]]
