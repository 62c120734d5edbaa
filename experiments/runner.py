"""Run an experiment config over seeds and speaker folds; write results, report and plots.

``run_experiment(cfg, out_dir)`` is what ``bimodal reproduce`` and ``bimodal demo`` call. Every
(seed, fold) writes its results to ``out_dir/checkpoints/seed{S}_fold{F}/`` as soon as it is done
(with the trained models), so ``resume=True`` skips finished work after an interruption.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from bimodal.errors import ConfigError, DataError
from bimodal.evaluation import summarise
from bimodal.device import resolve_device, seed_everything
from bimodal.io import atomic_write_json
from bimodal.provenance import provenance

from . import pipeline
from .config import Config, config_record, with_overrides
from .plan import check_plan
from .claims import flat_metrics
from .settings import SETTINGS, FoldContext

log = logging.getLogger(__name__)

# Version of the per-run results layout: 2 = metrics named by the feature registry
# (experiments/registry.py). A --resume never mixes runs of another layout into one summary.
RESULTS_FORMAT = 2


class StageTimer:
    """Wall time per named stage, summed over repeats."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[name] = timer.seconds.get(name, 0.0) + time.perf_counter() - self.t0

        return _Ctx()


def run_experiment(cfg: Config, out_dir, device=None, resume: bool = False, progress: bool = True,
                   write_report: bool = True) -> dict:
    """Run every (seed, speaker fold) of ``cfg`` and write ``results.json`` (+ report and plots).

    Returns the results dict: ``runs`` (one per seed and fold, with per-setting metrics),
    ``summary`` (mean/std/n over runs of every metric), ``claims`` (the paper's claims checked),
    ``timings`` (seconds per stage) and ``provenance`` (config, seed list, versions, commit, device).
    """
    device = resolve_device(None if cfg.experiment.device == "auto" else cfg.experiment.device) \
        if device is None else resolve_device(device)
    out_dir = prepare_out_dir(out_dir)
    timer = StageTimer()
    t_start = time.perf_counter()
    log.info("experiment %s on %s -> %s", cfg.experiment.name, device, out_dir)

    _check_resumable(cfg, out_dir, resume)
    read_skipped: list[str] = []  # reader warnings: files left out of the corpus
    with timer("load data"):
        utts = pipeline.load_utterances(cfg, progress=progress, skipped=read_skipped)
    check_plan(cfg, utts)  # after reading and skipping, before any preprocessing or training
    runs = []
    # Per-utterance spectrograms and mouth crops do not depend on the fold: computed once, shared by
    # all folds, and kept on disk so a second run of the same data and preprocessing skips them.
    cache_path = pipeline.frame_cache_path(cfg, utts)
    frame_cache = pipeline.load_frame_cache(cache_path)
    n_cached = len(frame_cache)
    for seed in cfg.experiment.seeds:
        splits = pipeline.speaker_splits(utts, cfg, seed)
        for fold_i, (tr, te) in enumerate(splits):
            ckpt = out_dir / "checkpoints" / f"seed{seed}_fold{fold_i}"
            done = ckpt / "results.json"
            if resume and done.exists():
                log.info("resume: seed %d fold %d already done", seed, fold_i)
                runs.append(_read_fold_results(done))
                continue
            run = run_fold(cfg, utts, tr, te, seed, fold_i, device, ckpt, resume, progress, timer, frame_cache)
            atomic_write_json(done, run)
            runs.append(run)

    if len(frame_cache) > n_cached:
        pipeline.save_frame_cache(frame_cache, cache_path)

    results = {
        "experiment": cfg.experiment.name,
        "description": cfg.experiment.description,
        "results_format": RESULTS_FORMAT,
        "config": config_record(cfg),
        "provenance": provenance(device=device, seed=list(cfg.experiment.seeds), config=None),
        "n_utterances": len(utts),
        "read_skipped": read_skipped,
        "n_speakers": len({u.speaker for u in utts}),
        "runs": runs,
        "summary": summarise_runs(runs),
        "timings": {**timer.seconds, "total": time.perf_counter() - t_start},
    }
    from .claims import check_claims

    results["claims"] = check_claims(results)
    atomic_write_json(out_dir / "results.json", results)
    if write_report:
        from .report import write_report as _write_report

        with timer("report and plots"):
            _write_report(results, out_dir)
        results["timings"]["report and plots"] = timer.seconds["report and plots"]
        results["timings"]["total"] = time.perf_counter() - t_start
        atomic_write_json(out_dir / "results.json", results)
    log.info("wrote %s in %.1f s", out_dir / "results.json", results["timings"]["total"])
    return results


def prepare_out_dir(out_dir, flag: str = "--out") -> Path:
    """Create the output folder ``out_dir`` and check that files can be written in it, before any work."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{flag} {out_dir}: exists and is not a folder; give a folder for the results")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {out_dir}: cannot create the output folder ({e.strerror or e})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {out_dir}: the folder is not writable")
    return out_dir


def _check_resumable(cfg: Config, out_dir: Path, resume: bool) -> None:
    """Record the config in ``out_dir/config.json``; refuse to resume checkpoints made by another config."""
    path = out_dir / "config.json"
    current = json.loads(json.dumps(config_record(cfg)))  # the JSON view of every value in effect, as stored
    if resume:
        for done in sorted(out_dir.glob("checkpoints/*/results.json")):
            made = _read_fold_results(done).get("results_format", 1)
            if made != RESULTS_FORMAT:
                raise ConfigError(f"{done}: --resume over runs of an older bimodal (results format {made}, this "
                                  f"version writes {RESULTS_FORMAT}: rows are named by feature now, "
                                  "experiments/registry.py); use a new --out folder")
    if resume and path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"the config its checkpoints were made with is unreadable ({exc}); a --resume cannot "
                            "check that it continues the same experiment: use a new --out folder", path=path) from None
        stored, now = _flatten_all(stored if isinstance(stored, dict) else {}), _flatten_all(current)
        changed = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
        if changed:
            raise ConfigError(f"{out_dir}: --resume with a config that differs from the one its checkpoints were "
                              f"made with (keys: {', '.join(changed)}); use a new --out folder")
    atomic_write_json(path, current)


def _read_fold_results(done: Path) -> dict:
    """The results of a finished fold (``checkpoints/<fold>/results.json``), read for ``--resume``."""
    try:
        run = json.loads(done.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"finished-fold results are unreadable or corrupt ({exc}); delete this file (or the "
                        f"fold's folder {done.parent}) and rerun with --resume to redo that fold", path=done) from None
    if not isinstance(run, dict):
        raise DataError(f"finished-fold results are not a JSON object; delete this file (or the fold's folder "
                        f"{done.parent}) and rerun with --resume to redo that fold", path=done)
    return run


def _flatten_all(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flatten_all(v, key) if isinstance(v, dict) else {key: v})
    return out


def run_fold(cfg: Config, utts, train_idx, test_idx, seed: int, fold_i: int, device, ckpt: Path, resume: bool,
             progress: bool, timer: StageTimer, frame_cache: dict | None = None) -> dict:
    """One seed and speaker fold: preprocess, train, run every setting."""
    seed_everything(seed)
    log.info("seed %d fold %d: %d train / %d test utterances", seed, fold_i, len(train_idx), len(test_idx))
    with timer("preprocess"):
        fold = pipeline.prepare_fold(cfg, utts, train_idx, test_idx, seed, device, progress=progress,
                                     frame_cache=frame_cache)
        fold.prep.save(ckpt / "preprocessor.npz")  # `bimodal extract` reuses the fold's whitening
    with timer("pretrain and fine-tune"):
        models = pipeline.train_feature_models(cfg, fold, seed, device, ckpt, resume, progress)
    ctx = FoldContext(cfg, fold, models, seed, device, progress)
    metrics, artifacts = {}, {}
    for name in cfg.experiment.settings:
        with timer(f"setting: {name}"):
            log.info("seed %d fold %d: %s", seed, fold_i, name)
            metrics[name], artifacts[name] = SETTINGS[name](ctx)
    artifacts["histories"] = _histories(models)
    artifacts["mouth_from_audio"] = _mouth_from_audio(ctx)
    return {
        "results_format": RESULTS_FORMAT,
        "seed": seed,
        "fold": fold_i,
        "train_speakers": sorted({utts[i].speaker for i in train_idx}),
        "test_speakers": sorted({utts[i].speaker for i in test_idx}),
        "n_train_windows": int(len(fold.train.audio)),
        # what the unsupervised stages saw: the corpus' own windows and the extra corpora's
        "n_extra_av_windows": 0 if fold.extra_av is None else int(len(fold.extra_av.audio)),
        "n_learning_windows": int(len(fold.own_learning.audio)) + (0 if fold.extra_av is None else len(fold.extra_av.audio)),
        "extra_av": fold.extra_av_info,  # how each extra corpus was fitted to this one (scale, intensities)
        "n_test_windows": int(len(fold.test.audio)),
        # utterances left out (unusable clips: listed, never fatal) and why noise was not added
        "skipped": fold.skipped,
        "noise_skipped": fold.noise_skipped,
        "metrics": metrics,
        "artifacts": artifacts,
    }


def _histories(models: dict) -> dict[str, list[float]]:
    """Per-epoch training losses of every model, nested histories flattened to ``model/part/layer``."""
    out = {}

    def walk(name, h):
        if isinstance(h, dict):
            for k, v in h.items():
                walk(f"{name}/{k}", v)
        elif isinstance(h, list) and h and isinstance(h[0], list):
            for i, v in enumerate(h):
                walk(f"{name}/layer{i}", v)
        elif isinstance(h, list) and h:
            out[name] = [float(x) for x in h]

    for name, m in models.items():
        walk(name, getattr(m, "history", None))
    return out


def _mouth_from_audio(ctx: FoldContext, n: int = 6) -> dict | None:
    """A few test windows: true mouth frame beside the frame the bimodal autoencoder reconstructs
    from the audio alone (video input zeroed), mapped back to pixels through the whitening."""
    prep = ctx.fold.prep
    if not hasattr(prep, "video_window_to_frames") or prep.cfg.video_frontend != "pca":
        return None  # only the PCA front end maps windows back to pixels
    ds = ctx.fold.test
    idx = np.linspace(0, len(ds.video) - 1, n).astype(int)
    with torch.no_grad():
        _, video_hat = ctx.models["bimodal_dae"].reconstruct(audio=ds.audio[idx])
    true = prep.video_window_to_frames(ds.video[idx])[:, 0]
    recon = prep.video_window_to_frames(np.asarray(video_hat))[:, 0]
    return {"true": np.round(true, 1).tolist(), "from_audio": np.round(recon, 1).tolist()}


def summarise_runs(runs: list[dict]) -> dict:
    """Mean, sample standard deviation (over runs, ddof 1, as the paper's ±; 0.0 for one run) and
    count of every numeric metric."""
    values: dict[str, list[float]] = {}
    for run in runs:
        for k, v in flat_metrics(run["metrics"]).items():
            values.setdefault(k, []).append(v)
    return {k: summarise(v, ddof=1) for k, v in values.items()}


def run_ablation(cfg: Config, out_dir, device=None, resume: bool = False, progress: bool = True) -> dict:
    """Run the base config once per ``[[ablation]]`` variant; write ``ablation.json`` and ``ablation.md``."""
    from .report import write_ablation_table

    resolve_device(None if device is None and cfg.experiment.device == "auto" else device or cfg.experiment.device)
    out_dir = prepare_out_dir(out_dir)
    variants = [("base", {})] + [(v.name or f"variant{i}", v.set) for i, v in enumerate(cfg.ablation)]
    configs = {name: with_overrides(cfg, settings, source=f"ablation variant '{name}'") for name, settings in variants}
    corpora: dict[str, list] = {}
    for vcfg in configs.values():  # every variant's plan, before the first one trains
        key = json.dumps(dataclasses.asdict(vcfg.data), sort_keys=True)
        if key not in corpora:
            corpora[key] = pipeline.load_utterances(vcfg, progress=progress)
        check_plan(vcfg, corpora[key])
    corpora.clear()
    table = {}
    for name, settings in variants:
        vcfg = configs[name]
        log.info("ablation variant %s: %s", name, settings)
        res = run_experiment(vcfg, out_dir / name, device=device, resume=resume, progress=progress,
                             write_report=False)
        table[name] = {"set": settings, "summary": res["summary"], "timings": res["timings"]}
    ablation = {"experiment": cfg.experiment.name, "config": config_record(cfg),
                "provenance": provenance(device=resolve_device(device), seed=list(cfg.experiment.seeds)),
                "variants": table}
    atomic_write_json(out_dir / "ablation.json", ablation)
    write_ablation_table(ablation, out_dir / "ablation.md")
    return ablation
