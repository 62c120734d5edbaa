"""The experiment's figures, drawn from a results dict (see :func:`experiments.runner.run_experiment`).

Each ``plot_*`` function writes one PNG atomically and returns its path, or does nothing and
returns ``None`` when the results hold no data for it (a setting that was not run). Figures are
drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas, so no GUI backend and no
global pyplot state are involved (safe in tests, on servers and from several threads).

The summary parsers (:func:`fusion_grid`, :func:`mcgurk_grid`) are shared with
:mod:`experiments.report` so the table and the figure of a setting read the same numbers.
"""
from __future__ import annotations

import io
import logging
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bimodal.io import atomic_write_bytes

log = logging.getLogger(__name__)

MCGURK_SYLLABLES = ("ga", "ba", "da")
MCGURK_STIMULI = ("ga/ga", "ba/ba", "da/da", "ga/ba")  # visual / audio
# rows of the confusion figure, in order of preference (fusion rows are tested on clean audio)
CONFUSION_ROWS = ("fusion:clean/rbm.audio", "fusion:clean/bimodal_dae.both", "fusion:clean/bimodal_dae.both+rbm.audio",
                  "cross_modality:video/bimodal_dae.video", "cross_modality:video/video_dae.video")


# --------------------------------------------------------------------------- summary parsing
def mean_std(summary: dict, key: str) -> tuple[float, float, int] | None:
    """``(mean, std, n)`` of a flattened metric key, or None when the summary lacks it."""
    v = summary.get(key)
    if v is None:
        return None
    return float(v["mean"]), float(v.get("std", 0.0)), int(v.get("n", 1))


def _condition_order(cond: str) -> float:
    """Sort key: clean first, then SNR from high to low."""
    if cond == "clean":
        return -math.inf
    return -snr_of(cond)


def snr_of(cond: str) -> float:
    """SNR in dB of a fusion condition label such as ``"-10dB"`` (as written by experiments.settings)."""
    return float(cond[:-2]) if cond.endswith("dB") else float(cond)


def fusion_grid(summary: dict) -> tuple[list[str], list[str]]:
    """Rows (feature sets, in first-seen order) and conditions (``clean`` then SNRs high→low) of the
    fusion setting, read from summary keys ``fusion/<condition>/<row>``."""
    rows, conds = [], []
    for key in summary:
        parts = key.split("/", 2)
        if len(parts) != 3 or parts[0] != "fusion":
            continue
        cond, row = parts[1], parts[2]
        if cond == "shift":  # settings.SHIFT_KEY: the features' shift under noise, not a condition
            continue
        if cond != "clean":
            try:
                snr_of(cond)
            except ValueError:
                log.warning("fusion metric %r has an unreadable condition; skipped", key)
                continue
        if cond not in conds:
            conds.append(cond)
        if row not in rows:
            rows.append(row)
    return rows, sorted(conds, key=_condition_order)


def mcgurk_grid(summary: dict) -> tuple[list[str], list[str]]:
    """Stimuli (``visual/audio``, e.g. ``ga/ba``) and predicted syllables present in summary keys
    ``mcgurk/predictions/<visual>/<audio>/<predicted>``; the paper's order first."""
    stimuli, preds = [], []
    prefix = "mcgurk/predictions/"
    for key in summary:
        if not key.startswith(prefix):
            continue
        stim, _, pred = key[len(prefix):].rpartition("/")
        if not stim:
            continue
        if stim not in stimuli:
            stimuli.append(stim)
        if pred not in preds:
            preds.append(pred)

    def order(known):
        return lambda s: (known.index(s) if s in known else len(known), s)

    return sorted(stimuli, key=order(MCGURK_STIMULI)), sorted(preds, key=order(MCGURK_SYLLABLES))


# --------------------------------------------------------------------------- writing
def _save(fig: Figure, path) -> Path:
    """Render ``fig`` to PNG in memory, then write it atomically (never a half-written image)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(Path(path), buf.getvalue())


def _runs(results: dict) -> list[dict]:
    return list(results.get("runs") or [])


# --------------------------------------------------------------------------- figures
def plot_accuracy_vs_snr(results: dict, path) -> Path | None:
    """Fusion accuracy (mean ± std over runs) of every row against the test SNR; clean audio is
    drawn at the right end, past the highest SNR, behind a dashed separator."""
    summary = results.get("summary") or {}
    rows, conds = fusion_grid(summary)
    if not rows:
        return None
    snrs = sorted({snr_of(c) for c in conds if c != "clean"})
    step = (snrs[-1] - snrs[0]) / max(len(snrs) - 1, 1) if len(snrs) > 1 else 10.0
    clean_x = (snrs[-1] + 1.5 * step) if snrs else 0.0
    xs = {c: (clean_x if c == "clean" else snr_of(c)) for c in conds}

    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    order = sorted(conds, key=lambda c: xs[c])
    for row in rows:
        pts = [(xs[c], *mean_std(summary, f"fusion/{c}/{row}")[:2]) for c in order
               if f"fusion/{c}/{row}" in summary]
        if not pts:
            continue
        x, m, s = (np.array(v) for v in zip(*pts))
        noisy = x != clean_x if snrs else np.ones_like(x, dtype=bool)
        # the SNR points form a line; clean audio is a separate point in the same colour, not joined to it
        line = ax.errorbar(x[noisy], 100 * m[noisy], yerr=100 * s[noisy], marker="o", capsize=3, label=row)
        if (~noisy).any():
            colour = line[0].get_color() if noisy.any() else None
            ax.errorbar(x[~noisy], 100 * m[~noisy], yerr=100 * s[~noisy], marker="s", capsize=3, linestyle="none",
                        color=colour, label=None if noisy.any() else row)
    if snrs and "clean" in conds:
        ax.axvline((snrs[-1] + clean_x) / 2, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks([xs[c] for c in order])
    ax.set_xticklabels(["clean" if c == "clean" else f"{snr_of(c):g}" for c in order])
    ax.set_xlabel("audio SNR (dB), white noise; 'clean' = no noise added")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Multimodal fusion: accuracy vs audio noise (mean ± std over runs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def _confusion_sources(results: dict) -> dict[str, tuple[np.ndarray, list | None]]:
    """Confusion counts summed over runs per figure row; class names when the artifacts carry them."""
    out: dict[str, tuple[np.ndarray, list | None]] = {}
    for spec in CONFUSION_ROWS:
        setting, key = spec.split(":", 1)
        total, names = None, None
        for run in _runs(results):
            art = ((run.get("artifacts") or {}).get(setting) or {}).get(key) or {}
            if art.get("confusion") is None:
                continue
            M = np.asarray(art["confusion"], dtype=np.float64)
            if M.ndim != 2 or M.shape[0] != M.shape[1]:
                log.warning("run %s: %s confusion has shape %s, not square; skipped", run.get("seed"), spec, M.shape)
                continue
            names = art.get("labels") or art.get("classes") or names
            if total is None:
                total = M
            else:  # folds may see different label ranges: pad both to the larger size
                K = max(total.shape[0], M.shape[0])
                total = np.pad(total, ((0, K - total.shape[0]),) * 2) + np.pad(M, ((0, K - M.shape[0]),) * 2)
        if total is not None and total.sum() > 0:
            out[f"{setting}: {key}"] = (total, names)
    return out


def plot_confusions(results: dict, path, max_panels: int = 4) -> Path | None:
    """Row-normalised confusion matrices (summed over runs) of a few feature sets side by side."""
    sources = list(_confusion_sources(results).items())[:max_panels]
    if not sources:
        return None
    fig = Figure(figsize=(3.6 * len(sources) + 0.8, 3.8))
    axes = [fig.add_subplot(1, len(sources), i + 1) for i in range(len(sources))]
    im = None
    for ax, (title, (M, names)) in zip(axes, sources):
        rows = M.sum(1, keepdims=True)
        P = np.divide(M, rows, out=np.zeros_like(M), where=rows > 0)
        im = ax.imshow(P, vmin=0, vmax=1, cmap="Blues")
        K = P.shape[0]
        ticks = [str(n) for n in names] if names is not None and len(names) == K else [str(i) for i in range(K)]
        ax.set_xticks(range(K))
        ax.set_yticks(range(K))
        ax.set_xticklabels(ticks, fontsize=7, rotation=90 if K > 12 else 0)
        ax.set_yticklabels(ticks, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_title(f"{title}\nacc {100 * np.trace(M) / M.sum():.1f}%", fontsize=9)
    axes[0].set_ylabel("true")
    fig.colorbar(im, ax=axes, fraction=0.025, label="share of true class")
    return _save(fig, path)


def plot_mouth_from_audio(results: dict, path) -> Path | None:
    """True mouth frames (top) above the frames the bimodal autoencoder reconstructs from audio
    alone (bottom). Each column shares one grey scale so the two are compared fairly."""
    runs = _runs(results)
    data = ((runs[0].get("artifacts") or {}).get("mouth_from_audio")) if runs else None
    if not data or not data.get("true") or not data.get("from_audio"):
        return None
    true = [np.asarray(f, dtype=np.float64) for f in data["true"]]
    recon = [np.asarray(f, dtype=np.float64) for f in data["from_audio"]]
    n = min(len(true), len(recon))
    fig = Figure(figsize=(1.6 * n + 0.6, 3.6))
    for j in range(n):
        lo = min(true[j].min(), recon[j].min())
        hi = max(true[j].max(), recon[j].max())
        for i, (frames, label) in enumerate(((true, "true"), (recon, "from audio"))):
            ax = fig.add_subplot(2, n, i * n + j + 1)
            ax.imshow(frames[j], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label)
    fig.suptitle("Mouth frames: true (top) vs reconstructed from audio only (bottom)", fontsize=10)
    return _save(fig, path)


def plot_training_curves(results: dict, path) -> Path | None:
    """Per-epoch loss of every trained model of the first run (log y when all losses are positive)."""
    runs = _runs(results)
    hist = ((runs[0].get("artifacts") or {}).get("histories")) if runs else None
    curves = {k: np.asarray(v, dtype=np.float64) for k, v in (hist or {}).items() if v is not None and len(v)}
    if not curves:
        return None
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for name, y in curves.items():
        ax.plot(np.arange(1, len(y) + 1), y, marker="." if len(y) < 30 else None, label=name)
    finite = np.concatenate([y[np.isfinite(y)] for y in curves.values()])
    if finite.size and finite.min() > 0:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(f"Training curves (seed {runs[0].get('seed')}, fold {runs[0].get('fold')})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_mcgurk(results: dict, path, reference: dict | None = None) -> Path | None:
    """Share of each predicted syllable per stimulus (visual/audio), mean ± std over runs, as grouped
    bars; the paper's shares (``reference`` = paper_reference.json's ``mcgurk`` rows) as black ticks."""
    summary = results.get("summary") or {}
    stimuli, preds = mcgurk_grid(summary)
    if not stimuli:
        return None
    fig = Figure(figsize=(1.9 * len(stimuli) + 2, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(preds), 1)
    x = np.arange(len(stimuli))
    ref_rows = (reference or {}).get("rows", {})
    for k, pred in enumerate(preds):
        ms = [mean_std(summary, f"mcgurk/predictions/{s}/{pred}") or (np.nan, 0.0, 0) for s in stimuli]
        m = np.array([v[0] for v in ms])
        s = np.array([v[1] for v in ms])
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, 100 * m, width, yerr=100 * s, capsize=2, label=f"predicted /{pred}/")
        paper = [_leading_number(ref_rows.get(st, {}).get(pred)) for st in stimuli]
        px = [p for p, v in zip(pos, paper) if v is not None]
        py = [v for v in paper if v is not None]
        if px:
            ax.scatter(px, py, marker="_", s=250, color="black", zorder=3,
                       label="paper" if k == 0 else None)
    ax.set_xticks(x)
    ax.set_xticklabels([f"visual {s.split('/')[0]}\naudio {s.split('/')[-1]}" for s in stimuli])
    ax.set_ylabel("share of predictions (%)")
    ax.set_ylim(0, 105)
    ax.set_title("McGurk: predictions of the bimodal model (mean ± std over runs)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _leading_number(text) -> float | None:
    """The first number of a paper_reference string such as ``"66.7 (quoted)"``, or None."""
    if text is None:
        return None
    try:
        return float(str(text).split()[0])
    except (ValueError, IndexError):
        return None


def make_plots(results: dict, out_dir, reference: dict | None = None) -> dict[str, Path]:
    """Write every figure the results have data for into ``out_dir``; returns name → path."""
    out_dir = Path(out_dir)
    jobs = {
        "accuracy_vs_snr": lambda p: plot_accuracy_vs_snr(results, p),
        "confusions": lambda p: plot_confusions(results, p),
        "mouth_from_audio": lambda p: plot_mouth_from_audio(results, p),
        "training_curves": lambda p: plot_training_curves(results, p),
        "mcgurk": lambda p: plot_mcgurk(results, p, reference=(reference or {}).get("mcgurk")),
    }
    written = {}
    for name, job in jobs.items():
        path = job(out_dir / f"{name}.png")
        if path is not None:
            written[name] = path
            log.info("plot %s -> %s", name, path)
    return written
