"""Choose pretraining and fine-tuning hyperparameters by cross-validation on the training split only.

The test split of the experiment (AVLetters' third repetition, or the odd speakers under
``even_odd``) is never read; splits with several folds are refused (every speaker is tested in
one of them). Inside the training split one group (a repetition under ``third_test``, a group of
speakers under ``even_odd``) is held out at a time; the whitening, the feature models and the
classifier are fitted on the rest and scored on the held-out group, as the experiment does for
its test split (the experiment picks C by an inner CV; here C is part of the maximised score, so
the scores are a little optimistic, equally for every candidate). Two greedy stages, as the models are trained:

1. sparsity of the RBMs: ``pretrain.sparsity_target`` over the paper's {0.01, 0.03, 0.05, 0.07}
   and ``pretrain.sparsity_cost`` over {1, 3, 10}, scored on the video RBM's features;
2. fine-tuning: ``finetune.epochs`` x ``finetune.lr``, scored on the video-only deep
   autoencoder's features, with the stage-1 choice fixed.

Each candidate is scored by its best mean held-out accuracy over the classifier's C grid and the
two feature scalings (``eval.standardize``); the best scaling is reported per candidate, not set.

Run: ``bimodal tune paper_avletters --set data.root='"DIR"' --out DIR [--device cuda]``.
Writes ``DIR/tuning.json`` and ``DIR/tuning.md`` (atomically) with every candidate's score.
"""
from __future__ import annotations

import itertools
import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bimodal.classifiers import StandardizedClassifier
from bimodal.device import resolve_device
from bimodal.errors import ConfigError
from bimodal.io import atomic_write_text

from . import pipeline, registry
from .config import Config, config_record, with_overrides

log = logging.getLogger(__name__)

SPARSITY_GRID = {"pretrain.sparsity_target": [0.01, 0.03, 0.05, 0.07], "pretrain.sparsity_cost": [1.0, 3.0, 10.0]}
FINETUNE_GRID = {"finetune.epochs": [30, 100], "finetune.lr": [1e-3, 3e-4]}
STANDARDIZE = ("global", "zscore")


def inner_splits(cfg: Config, utts: list, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, held-out) index pairs inside the experiment's one training split.

    Only splits with a single (train, test) pair can be tuned without touching test data:
    ``third_test`` (held out: one training repetition at a time) and ``even_odd`` (held out:
    ``eval.cv_folds`` groups of training speakers). With ``split = "folds"`` every speaker is tested
    in some fold, so tuning on one fold's training speakers would tune on another fold's test set.
    """
    from bimodal.folds import speaker_folds

    split = check_tunable(cfg)
    train_idx, _ = pipeline.speaker_splits(utts, cfg, seed)[0]
    if split == "third_test":
        groups = np.array([str(utts[i].repetition) for i in train_idx])
        return [(train_idx[groups != g], train_idx[groups == g]) for g in sorted(set(groups))]
    speakers = np.array([str(utts[i].speaker) for i in train_idx])
    folds = speaker_folds(speakers, n_folds=min(max(2, cfg.eval.cv_folds), len(set(speakers))), seed=seed)
    return [(train_idx[a], train_idx[b]) for a, b in folds]


def check_tunable(cfg: Config) -> str:
    """The config's split if it has one train/test pair, else a ConfigError."""
    split = cfg.experiment.split
    if split not in ("third_test", "even_odd"):
        raise ConfigError(f"bimodal tune needs a split with one train/test pair (experiment.split = 'third_test' "
                          f"or 'even_odd'), got {split!r}: with speaker folds every speaker is tested in some "
                          "fold, so no training set is free of test speakers")
    return split


def held_out_scores(cfg: Config, feats: tuple, labels: tuple, seed: int, device) -> dict:
    """Held-out accuracy for every (standardize, C): ``{"global|C=0.01": acc, ...}``."""
    (Ftr, Fva), (ytr, yva) = feats, labels
    names = {n: i for i, n in enumerate(sorted(set(ytr) | set(yva)))}
    ytr, yva = (np.array([names[v] for v in y], np.int64) for y in (ytr, yva))
    out = {}
    for mode in STANDARDIZE:
        for C in cfg.eval.Cs:
            clf = StandardizedClassifier(cfg.eval.classifier, cfg.eval.backend, C, device=device, seed=seed,
                                         standardize=mode)
            out[f"{mode}|C={C:g}"] = clf.fit(Ftr, ytr).score(Fva, yva)
    return out


def candidate_score(cfg: Config, folds: list, stage: str, seed: int, device) -> dict:
    """Mean held-out accuracies of one candidate config (``stage``: "rbm" or "dae") over the
    prepared inner ``folds`` (their whitening does not depend on the tuned values)."""
    per_split = []
    for fold in folds:
        Xa, Xv = fold.train.audio, fold.train.video
        dbn = pipeline.build_bimodal_dbn(cfg, Xa.shape[1], Xv.shape[1], seed, device)
        p = cfg.pretrain
        if stage == "rbm":
            registry.first_rbm(dbn, "video").fit(Xv, epochs=p.epochs, batch_size=p.batch_size)
            models, feature = {"bimodal_dbn": dbn}, "rbm.video"
        else:
            dbn.fit(audio=Xa, video=Xv, epochs=p.epochs, batch_size=p.batch_size)
            dae = pipeline.autoencoder(cfg, dbn, Xa.shape[1], Xv.shape[1], seed, device,
                                       registry.MODELS["video_dae"].inputs).fit(
                audio=Xa, video=Xv, seed=seed, **pipeline.finetune_kwargs(cfg))
            models, feature = {"bimodal_dbn": dbn, "video_dae": dae}, "video_dae.video"
        feats = tuple(pipeline.utterance_features(pipeline.window_codes(models, ds, [feature])[feature], ds,
                                                  cfg.eval.slices) for ds in (fold.train, fold.test))
        labels = tuple(pipeline.label_strings(ds) for ds in (fold.train, fold.test))
        per_split.append(held_out_scores(cfg, feats, labels, seed, device))
    return {k: float(np.mean([s[k] for s in per_split])) for k in per_split[0]}


def grid_stage(cfg: Config, folds: list, grid: dict, stage: str, seed, device, progress) -> tuple:
    """Score every combination of ``grid`` on top of ``cfg``; returns (best overrides, rows)."""
    keys = list(grid)
    rows = []
    for values in tqdm(list(itertools.product(*grid.values())), desc=f"tune {stage}", disable=not progress):
        overrides = dict(zip(keys, values))
        t0 = time.time()
        scores = candidate_score(with_overrides(cfg, overrides, "tune"), folds, stage, seed, device)
        best = max(scores, key=scores.get)
        rows.append({"overrides": overrides, "best": best, "score": scores[best], "scores": scores,
                     "seconds": time.time() - t0})
        log.info("tune %s %s: %.3f (%s)", stage, overrides, scores[best], best)
    top = max(rows, key=lambda r: r["score"])
    return top["overrides"], rows


def tune(cfg: Config, seed: int = 0, device=None, grids=(SPARSITY_GRID, FINETUNE_GRID), progress: bool = True) -> dict:
    """Run both stages; returns ``{"chosen": {...}, "stages": [...], "splits": [...]}``."""
    check_tunable(cfg)  # before any work
    device = resolve_device(device)
    utts = pipeline.load_utterances(cfg, progress=progress)
    splits = inner_splits(cfg, utts, seed)
    # The tuned values do not touch the preprocessing: whiten and window each inner fold once.
    frame_cache: dict = {}
    folds = [pipeline.prepare_fold(cfg, utts, fit_idx, va_idx, seed, device, progress=False, frame_cache=frame_cache)
             for fit_idx, va_idx in splits]
    chosen, stages = {}, []
    for grid, stage in zip(grids, ("rbm", "dae")):
        best, rows = grid_stage(with_overrides(cfg, chosen, "tune") if chosen else cfg, folds, grid, stage, seed,
                                device, progress)
        chosen.update(best)
        stages.append({"stage": stage, "grid": grid, "rows": rows, "chosen": best})

    def group(i):
        return str(utts[i].repetition if cfg.experiment.split == "third_test" else utts[i].speaker)

    split_desc = [{"fit": sorted({group(i) for i in a}), "held_out": sorted({group(i) for i in b})} for a, b in splits]
    return {"chosen": chosen, "stages": stages, "splits": split_desc, "seed": seed, "config": config_record(cfg)}


def to_markdown(result: dict) -> str:
    lines = ["# Hyperparameters chosen by cross-validation on the training split", "",
             f"Held-out groups: {result['splits']} (the experiment's test split is never used). Each score is "
             "the mean held-out accuracy at the best (feature scaling, C).", ""]
    for st in result["stages"]:
        lines += [f"## Stage: {st['stage']}", "", "| candidate | held-out accuracy (%) | best scaling, C |", "|---|---|---|"]
        for r in st["rows"]:
            lines.append(f"| {r['overrides']} | {100 * r['score']:.1f} | {r['best']} |")
        lines += ["", f"Chosen: {st['chosen']}", ""]
    return "\n".join(lines)


def write_results(result: dict, out) -> str:
    """Write ``OUT/tuning.json`` and ``OUT/tuning.md`` atomically; returns the markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(result)
    atomic_write_text(out / "tuning.json", json.dumps(result, indent=1, default=str))
    atomic_write_text(out / "tuning.md", md)
    return md
