"""``bimodal data check``: what a corpus holds and whether it is usable, before any training.

The corpus is read exactly as an experiment reads it (the same reader, ``strict=False``), then
every clip goes through the per-utterance checks the :class:`~data_prep.dataset.Preprocessor`
applies (audio/video duration agreement within ``PrepConfig.max_av_length_mismatch_s``, at least
one window of ``frames_per_window`` frames) and the mouth tracker of ``PrepConfig.mouth_roi``,
which also says in which frames no face was found. A PNG montage of the mouth crops (a few frames
of one clip per speaker) lets a person see at a glance that the tracker found the mouth.

For GRID (``source="grid"``) the clips are the word tokens of the vocabulary, cut as an experiment
cuts them, and the report adds the recordings' own (untrimmed) audio/video durations.
"""
from __future__ import annotations

import logging
import re
import statistics
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bimodal.errors import DataError

from . import readers as _readers
from .dataset import PrepConfig
from .grid import read_grid_recordings, views_of
from .mouth_roi import mouth_frames_with_faces
from .windows import trim_to_common_length

log = logging.getLogger(__name__)

# _collect's warning: "<root>: skipped N unusable file(s):\n  <DataError>\n  <DataError>..."
# (the GRID reader lists the words it could not cut the same way, as "unusable token(s)")
_SKIPPED_RE = re.compile(r"skipped \d+ unusable (?:file|token)\(s\):\n")
_MORE_RE = re.compile(r"^\.\.\. and (\d+) more$")  # the reader lists 50 skips, then counts the rest


@dataclass
class ClipCheck:
    """One utterance the reader returned, and what the checks found.

    ``crops`` holds the montage frames only ((k, H, W) uint8 mouth crops, ``crop_frames`` their
    indices, ``crop_faces`` whether a face was found in each); None for audio-only clips.
    """

    utterance_id: str
    speaker: str
    label: str
    path: str
    audio_s: float | None                      # None: the reader gave no waveform
    video_s: float | None = None
    n_frames: int | None = None
    fps: float | None = None
    tracked: bool = False
    no_face_frames: int = 0
    error: str | None = None
    crops: np.ndarray | None = None
    crop_frames: np.ndarray | None = None
    crop_faces: np.ndarray | None = None

    @property
    def mismatch_s(self) -> float | None:
        """|audio duration - video duration| in seconds (None without video)."""
        return None if self.video_s is None or self.audio_s is None else abs(self.audio_s - self.video_s)


@dataclass
class CheckReport:
    """Outcome of :func:`check_corpus`; ``format()`` gives the printed text, ``ok`` the verdict."""

    root: str
    source: str
    cfg: PrepConfig
    clips: list[ClipCheck] = field(default_factory=list)   # every utterance the reader returned
    reader_skips: list[str] = field(default_factory=list)  # files the reader skipped, with the reason
    reader_skips_unlisted: int = 0                         # further skips the reader only counted
    montage: Path | None = None
    montage_rows: list[str] = field(default_factory=list)  # the clip shown in each montage row
    source_notes: list[str] = field(default_factory=list)  # what only this source can say (GRID: recordings)

    @property
    def usable(self) -> list[ClipCheck]:
        return [c for c in self.clips if c.error is None]

    @property
    def skipped(self) -> list[str]:
        """Every skip with its reason: files the reader dropped, then clips the checks dropped."""
        return self.reader_skips + [c.error for c in self.clips if c.error is not None]

    @property
    def n_skipped(self) -> int:
        return len(self.skipped) + self.reader_skips_unlisted

    @property
    def found(self) -> int:
        return len(self.clips) + len(self.reader_skips) + self.reader_skips_unlisted

    @property
    def ok(self) -> bool:
        return bool(self.usable)

    def per_speaker(self) -> Counter:
        return Counter(c.speaker for c in self.usable)

    def per_label(self) -> Counter:
        return Counter(c.label for c in self.usable)

    def format(self, max_listed: int = 100) -> str:
        """The human-readable report (what ``bimodal data check`` prints); at most ``max_listed`` skips listed."""
        usable = self.usable
        lines = [f"data check: {self.root} (source: {self.source})",
                 f"clips found: {self.found}   usable: {len(usable)}   skipped: {self.n_skipped}"]
        lines.extend(self.source_notes)
        spk, lab = self.per_speaker(), self.per_label()
        lines.append(f"speakers ({len(spk)}): " + _counts(spk))
        lines.append(f"labels ({len(lab)}): " + _counts(lab))
        audio = [c.audio_s for c in usable if c.audio_s is not None]
        if audio:
            lines.append("durations (usable clips): audio " + _stats(audio) + " s")
        vids = [c for c in usable if c.video_s is not None]
        if vids:
            fps = sorted({c.fps for c in vids})
            lines.append("durations (usable clips): video " + _stats([c.video_s for c in vids]) + " s; "
                         + "frames " + _stats([c.n_frames for c in vids], "{:.0f}") + " at "
                         + ", ".join(f"{f:g}" for f in fps) + " fps")
        with_video = [c for c in self.clips if c.mismatch_s is not None]
        if with_video:
            over = sum(c.mismatch_s > self.cfg.max_av_length_mismatch_s for c in with_video)
            lines.append("A/V length mismatch |audio - video|: " + _stats([c.mismatch_s for c in with_video], "{:.3f}")
                         + f" s; {over} of {len(with_video)} clip(s) over the "
                         f"{self.cfg.max_av_length_mismatch_s:g} s limit")
        tracked = [c for c in usable if c.tracked]
        if tracked:
            n_frames = sum(c.n_frames for c in tracked)
            n_noface = sum(c.no_face_frames for c in tracked)
            lines.append(f"mouth tracking (mouth_roi={self.cfg.mouth_roi!r}): {len(tracked)} clip(s), "
                         f"{n_frames} frames; no face found in {n_noface} frames ({100 * n_noface / n_frames:.1f}%)")
            worst = sorted((c for c in tracked if c.no_face_frames), key=lambda c: -c.no_face_frames)
            for c in worst[:20]:
                lines.append(f"  no face in {c.no_face_frames} of {c.n_frames} frames: {c.path}")
            if len(worst) > 20:
                lines.append(f"  ... and {len(worst) - 20} more clip(s) with no-face frames")
        elif any(c.video_s is not None for c in usable):
            lines.append(f"mouth tracking (mouth_roi={self.cfg.mouth_roi!r}): not needed, frames are already "
                         f"about the {self.cfg.roi_size[0]}x{self.cfg.roi_size[1]} crop size (used as mouth crops)")
        if self.n_skipped:
            lines.append("skipped:")
            lines.extend(f"  - {s}" for s in self.skipped[:max_listed])
            unlisted = self.n_skipped - min(len(self.skipped), max_listed)
            if unlisted:
                lines.append(f"  ... and {unlisted} more")
        if self.montage is not None:
            lines.append(f"montage: {self.montage} ({len(self.montage_rows)} row(s): "
                         + ", ".join(self.montage_rows) + ")")
        elif usable:
            lines.append("montage: none (no video)")
        lines.append("verdict: " + (f"{len(usable)} usable clip(s)" if usable else "NOTHING USABLE"))
        return "\n".join(lines)


def _counts(c: Counter, limit: int = 40) -> str:
    items = sorted(c.items())
    s = ", ".join(f"{k} {v}" for k, v in items[:limit])
    return s + (f", ... ({len(items) - limit} more)" if len(items) > limit else "") if items else "-"


def _stats(xs, fmt: str = "{:.3f}") -> str:
    return "min {} / median {} / max {}".format(*(fmt.format(v) for v in (min(xs), statistics.median(xs), max(xs))))


def _read_grid_tokens(root, progress: bool, **kwargs) -> tuple[list, list[str]]:
    """GRID's tokens as :func:`data_prep.grid.read_grid` cuts them, and lines on the whole recordings."""
    recs = read_grid_recordings(root, strict=False, progress=progress, views=("tokens",), **kwargs)
    frames = Counter(r.n_frames for r in recs)
    notes = [f"recordings: {len(recs)} usable, cut into {sum(len(r.tokens) for r in recs)} word token(s) "
             "(the clips below)",
             "recordings (untrimmed): |audio - video| " + _stats([r.mismatch_s for r in recs], "{:.3f}")
             + " s; frames " + ", ".join(f"{n} x{k}" for n, k in sorted(frames.items()))]
    return views_of(recs)[0], notes


def _read(root, source: str, progress: bool, reader_kwargs: dict | None = None
          ) -> tuple[list, list[str], int, list[str], list[str]]:
    """Run the experiment's reader with ``strict=False``; its skip warning becomes a list of reasons.

    Returns (utterances, skip reasons, number of further skips the reader did not list, other
    warnings, the source's own report lines)."""
    notes: list[str] = []
    skips: list[str] = []
    source_notes: list[str] = []
    unlisted = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if source == "grid":
                utts, source_notes = _read_grid_tokens(root, progress, **(reader_kwargs or {}))
            else:
                utts = _readers.read_corpus(source, root, strict=False, progress=progress, **(reader_kwargs or {}))
        except DataError as exc:  # nothing usable, or nothing recognisable at all
            utts = []
            if not caught:
                skips.append(str(exc))
    for w in caught:
        msg = str(w.message)
        m = _SKIPPED_RE.search(msg)
        if m:
            for line in (x.strip() for x in msg[m.end():].splitlines()):
                more = _MORE_RE.match(line)
                if more:
                    unlisted += int(more.group(1))
                elif line:
                    skips.append(line)
        else:
            notes.append(msg)
    return utts, skips, unlisted, notes, source_notes


def _check_clip(u, cfg: PrepConfig, n_montage: int) -> ClipCheck:
    """The Preprocessor's per-utterance checks on one utterance, plus tracking and montage frames."""
    has_wave = getattr(u, "audio", None) is not None and bool(u.sample_rate)
    c = ClipCheck(u.utterance_id, u.speaker, u.label, str(u.path),
                  audio_s=len(u.audio) / u.sample_rate if has_wave else None)
    try:
        if u.video is None:
            n = int(np.floor(c.audio_s * cfg.audio_only_fps + 1e-9)) if has_wave else 0
        else:
            c.fps = float(u.fps)
            c.n_frames = n = len(u.video)
            c.video_s = c.n_frames / c.fps
            if has_wave:
                _, n = trim_to_common_length(len(u.audio), u.sample_rate, len(u.video), c.fps,
                                             cfg.max_av_length_mismatch_s, u.path)
            crops, faces = mouth_frames_with_faces(u.video[:n], cfg.mouth_roi, cfg.roi_size, name=u.path,
                                                   track_every=cfg.track_every)
            c.tracked = faces is not None
            c.no_face_frames = 0 if faces is None else int((~faces).sum())
            idx = np.unique(np.linspace(0, len(crops) - 1, min(n_montage, len(crops))).round().astype(int))
            c.crops, c.crop_frames = crops[idx], idx
            c.crop_faces = np.ones(len(idx), bool) if faces is None else faces[idx]
        if n < cfg.frames_per_window:
            raise DataError(f"utterance too short: {n} frames, a window needs {cfg.frames_per_window}",
                            path=u.path, field="frames")
    except DataError as exc:
        c.error = str(exc) if exc.path else f"{u.path}: {exc}"
    return c


def check_corpus(root, source: str = "folder", cfg: PrepConfig | None = None, montage=None,
                 frames_per_speaker: int = 6, clips_per_speaker: int = 1, max_rows: int = 24, progress: bool = True,
                 n_workers: int | None = None, reader_kwargs: dict | None = None) -> CheckReport:
    """Read a corpus as an experiment would and report what is usable, before any training.

    Parameters
    ----------
    root : corpus folder.
    source : corpus source, a key of :data:`data_prep.readers.READERS`: "folder", "cuave", "avletters",
        "fsdd", "grid" (clips = its word tokens) or "synth" (generated under ``root`` when absent).
    cfg : PrepConfig whose ``mouth_roi``, ``roi_size``, ``max_av_length_mismatch_s``,
        ``frames_per_window`` and ``audio_only_fps`` apply (None → defaults, the paper's).
    montage : PNG path for the mouth-crop montage (None → no montage).
    frames_per_speaker : montage columns (frames spread evenly over each clip).
    clips_per_speaker : montage rows per speaker (the first clips by utterance id).
    max_rows : montage rows at most (speakers in sorted order).
    progress : tqdm bars.
    n_workers : threads for tracking (default: CPU count, at most 8).
    reader_kwargs : further keyword arguments of the reader (GRID: ``{"vocabulary": "letters"}``,
        ``margin_s``; an experiment reads with its ``data.labels`` and ``data.grid_margin_s``).

    Returns
    -------
    CheckReport (``report.ok`` is False when nothing is usable).
    """
    _readers.reader(source)  # an unknown source fails here, before anything is read
    cfg = cfg or PrepConfig()
    root = Path(root)
    if source == "grid":  # the experiment's reader applies the preprocessing's A/V tolerance
        reader_kwargs = {"max_av_length_mismatch_s": cfg.max_av_length_mismatch_s, **(reader_kwargs or {})}
    utts, skips, unlisted, notes, source_notes = _read(root, source, progress, reader_kwargs)
    for n in notes:
        log.warning("%s", n)
    clips = _readers._map_files(lambda u: _check_clip(u, cfg, frames_per_speaker), utts, progress, "check",
                                n_workers)
    report = CheckReport(str(root), source, cfg, clips, skips, unlisted, source_notes=source_notes)
    if montage is not None:
        rows = _montage_rows(report.usable, clips_per_speaker, max_rows)
        if rows:
            write_montage(montage, rows, f"{root} ({source}): mouth crops, {clips_per_speaker} clip(s) per speaker")
            report.montage = Path(montage)
            report.montage_rows = [c.utterance_id for c in rows]
    log.info("data check of %s: %d found, %d usable", root, report.found, len(report.usable))
    return report


def _montage_rows(usable: list[ClipCheck], clips_per_speaker: int, max_rows: int) -> list[ClipCheck]:
    """The first ``clips_per_speaker`` clips with video of every speaker, in (speaker, utterance) order."""
    rows, taken = [], Counter()
    for c in sorted(usable, key=lambda c: (c.speaker, c.utterance_id)):
        if c.crops is not None and taken[c.speaker] < clips_per_speaker:
            rows.append(c)
            taken[c.speaker] += 1
    return rows[:max_rows]


def write_montage(path, rows: list[ClipCheck], title: str) -> Path:
    """A grid of mouth crops, one labelled row per clip; frames without a face are titled in red.

    Written atomically (PNG). Returns the path.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bimodal.io import atomic_write_bytes

    n_cols = max(len(c.crops) for c in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.3 * n_cols + 1.6, 1.15 * len(rows) + 0.6),
                             squeeze=False)
    for r, c in enumerate(rows):
        for k in range(n_cols):
            ax = axes[r, k]
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= len(c.crops):
                ax.axis("off")
                continue
            ax.imshow(c.crops[k], cmap="gray", vmin=0, vmax=255)
            face = bool(c.crop_faces[k])
            ax.set_title(f"t={c.crop_frames[k]}" + ("" if face else " no face"), fontsize=7,
                         color="black" if face else "red", pad=2)
        axes[r, 0].set_ylabel(c.utterance_id.replace("/", "\n", 1), fontsize=7, rotation=0, ha="right",
                              va="center")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
