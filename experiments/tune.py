"""Choose pretraining and fine-tuning hyperparameters by cross-validation on the training split only.

The test split of the experiment (AVLetters' third repetition, or the odd speakers under
``even_odd``) is never read; splits with several folds are refused (every speaker is tested in
one of them). Inside the training split one group (a repetition under ``third_test``, a group of
speakers under ``even_odd``) is held out at a time; the whitening, the feature models and the
classifier are fitted on the rest and scored on the held-out group, as the experiment does for
its test split (the experiment picks C by an inner CV; here C is part of the maximised score, so
the scores are a little optimistic, equally for every candidate). Greedy stages, as the models are
trained (``bimodal tune --stages`` picks and orders them):

0. when the config's fusion setting adds audio noise (``eval.snr_db``, a corpus with waveforms):
   the audio RBM's own sparsity, ``pretrain.audio_sparsity_target`` over {0.01, 0.05} and
   ``pretrain.audio_sparsity_cost`` over {0, 0.1, 1, 10}, scored on the audio RBM's features of the
   held-out group, clean and with white noise at every SNR of ``eval.snr_db`` (the classifier
   trained on clean features, as the fusion setting does): the mean over those conditions, since
   clean spoken digits sit at the ceiling for every candidate;
1. sparsity of the RBMs: ``pretrain.sparsity_target`` over the paper's {0.01, 0.03, 0.05, 0.07}
   and ``pretrain.sparsity_cost`` over {1, 3, 10} (every RBM's), scored on the video RBM's features;
   for a config whose first video RBM has its own sparsity (``pretrain.video_sparsity_*``, which
   these keys would not reach) stage 8 instead;
2. fine-tuning: ``finetune.epochs`` x ``finetune.lr``, scored on the video-only deep
   autoencoder's features, with the earlier choices fixed; epochs are a cost, so by the rule of
   stage 3: the fewest epochs whose best learning rate scores within one standard error of the
   best candidate;
3. ``shared_size`` (only when asked for: ``--stages shared_size``): the shared layer's size
   ``model.shared`` over {256, 512, 1024, 1536, 3072} at the config's epochs, scored like stage 2.
   A size is a cost as well as a score, so this stage does not take the best score: it takes the
   smallest size whose score is within one standard error of the best (the one-standard-error rule,
   Hastie et al., *Elements of Statistical Learning* §7.10), the error being the binomial one of the
   best score over all held-out utterances, sqrt(p (1 - p) / n) (stages 2, 4, 5 and 6 use the same rule);
4. ``mirror`` (only when asked for: ``--stages mirror``; beyond the paper): ``data.mirror_video``
   off or on (the learning utterances' mouth crops mirrored left-right join the unsupervised
   stages), scored like stage 2; by the same rule as stage 3, on only when off scores more than
   one standard error below it;
5. ``frontend`` (only when asked for: ``--stages frontend``; beyond the paper):
   ``data.prep.video_frontend`` "pca" (the paper's whitened pixels) or "conv" (the codes of a
   convolutional autoencoder trained on each inner fold's fitting crops,
   :mod:`bimodal.conv_frontend`), scored like stage 2; by the rule of stage 3, "conv" (the costlier)
   only when "pca" scores more than one standard error below it;
6. ``whitening`` (only when asked for: ``--stages whitening``, with ``data.extra_av``):
   ``data.extra_av_whitening`` "target" (the whitening fitted on the corpus' fitting utterances
   alone) or "both" (and on extra recordings, :func:`pipeline.whitening_utterances`), scored like
   stage 2; by the rule of stage 3, "both" only when "target" scores more than one standard error
   below it;
7. ``sparsity_update`` (only when asked for: ``--stages sparsity_update``): where every RBM's
   sparsity term acts, ``pretrain.sparsity_update`` "velocity" (inside the momentum) or
   "separate" (a step of its own, Lee et al.'s form; :class:`bimodal.rbm.RBM`), each over the first
   video RBM's own targets (stage 1's) and costs {1, 3, 10, 30, 100} (a velocity cost weighs 2-10x
   in the separate form), scored like stage 1, the best score;
8. ``video_rbm`` (by default instead of stage 1 when the config gives the first video RBM its own
   sparsity, else only when asked for): stage 1's grid on ``pretrain.video_sparsity_target`` /
   ``_cost``, scored like stage 1: the one RBM the score measures, where stage 1 sets every RBM's
   (the joint RBM's included). A stage scored on the video RBM that varies ``pretrain.sparsity_*``
   while the config sets the video RBM's own is refused before any training.

The inner folds are whitened and windowed once per preprocessing a stage's candidates need
(:func:`prep_key`: ``data.prep``, e.g. the video front end, the mirrored windows and what the
whitening is fitted on), never per candidate.

Every candidate's models are trained by the experiment's own training functions
(:func:`pipeline.pretrain_bimodal_dbn`, :func:`pipeline.fine_tune_model`), so ``data.extra_audio``,
``pretrain.enabled`` and the rest of the recipe hold as in ``bimodal reproduce``. With
``pretrain.enabled = false`` no RBM is trained and only stage 2 runs.

Each candidate is scored by its best mean held-out accuracy over the classifier's C grid and the
two feature scalings (``eval.standardize``); the best scaling is reported per candidate, not set.
The feature models learn from what the experiment's do (:attr:`pipeline.FoldData.learning`: with
``data.learn_from = "recordings"`` every window of the fitting recordings, never a held-out one).

Run: ``bimodal tune paper_avletters --set data.root='"DIR"' --out DIR [--device cuda]``; with
``--workers N`` (or ``--ray-address ADDR``) each stage's candidates run as Ray tasks.
Writes ``DIR/tuning.json`` and ``DIR/tuning.md`` (atomically) with every candidate's score.
"""
from __future__ import annotations

import functools
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

from . import pipeline
from .config import Config, config_record, prep_config, with_overrides
from .runner import run_threads

log = logging.getLogger(__name__)

AUDIO_SPARSITY_GRID = {"pretrain.audio_sparsity_target": [0.01, 0.05],
                       "pretrain.audio_sparsity_cost": [0.0, 0.1, 1.0, 10.0]}
SPARSITY_GRID = {"pretrain.sparsity_target": [0.01, 0.03, 0.05, 0.07], "pretrain.sparsity_cost": [1.0, 3.0, 10.0]}
# the same grid on the first video RBM's own sparsity: the one RBM the stage scores (the joint RBM
# and the audio RBM keep pretrain.sparsity_* or their own)
VIDEO_SPARSITY_GRID = {f"pretrain.video_{k.removeprefix('pretrain.')}": v for k, v in SPARSITY_GRID.items()}
FINETUNE_GRID = {"finetune.epochs": [30, 100], "finetune.lr": [1e-3, 3e-4]}
SHARED_SIZE_GRID = {"model.shared": [256, 512, 1024, 1536, 3072]}
MIRROR_GRID = {"data.mirror_video": [False, True]}
FRONTEND_GRID = {"data.prep.video_frontend": ["pca", "conv"]}
WHITENING_GRID = {"data.extra_av_whitening": ["target", "both"]}
# Where every RBM's sparsity term acts (bimodal.rbm.RBM's sparsity_update), each form over the
# paper's targets and costs that span both forms' weights (a velocity cost weighs 2-10x in the
# separate form), set on the one RBM the stage scores, the first video RBM
SPARSITY_UPDATE_GRID = {"pretrain.sparsity_update": ["velocity", "separate"],
                        "pretrain.video_sparsity_target": VIDEO_SPARSITY_GRID["pretrain.video_sparsity_target"],
                        "pretrain.video_sparsity_cost": [1.0, 3.0, 10.0, 30.0, 100.0]}
# stages scored on the video RBM's features (the others but "audio_rbm" on the video-only deep AE's)
VIDEO_RBM_STAGES = ("rbm", "video_rbm", "sparsity_update")
# every RBM's sparsity, unless a modality's first RBM has its own (pipeline.modality_sparsity)
SHARED_SPARSITY_KEYS = ("pretrain.sparsity_target", "pretrain.sparsity_cost")
# stages whose candidates differ in cost or in what they add, by the key that sets the cost (its grid
# lists it cheapest first): the cheapest candidate within one standard error of the best
CHEAPEST_WITHIN_ONE_SE = {"dae": "finetune.epochs", "shared_size": "model.shared", "mirror": "data.mirror_video",
                          "frontend": "data.prep.video_frontend", "whitening": "data.extra_av_whitening"}
STANDARDIZE = ("global", "zscore")


def inner_splits(cfg: Config, utts: list, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, held-out) index pairs inside the experiment's one training split.

    Only splits with a single (train, test) pair can be tuned without touching test data:
    ``third_test`` (held out: one training repetition at a time) and ``even_odd`` (held out:
    ``eval.cv_folds`` groups of training speakers). With ``split = "kfold"`` every speaker is tested
    in some fold, so tuning on one fold's training speakers would tune on another fold's test set.
    """
    from bimodal.folds import speaker_folds

    split = check_tunable(cfg, utts)
    train_idx, _ = pipeline.speaker_splits(utts, cfg, seed)[0]
    if split == "third_test":
        groups = np.array([str(utts[i].repetition) for i in train_idx])
        return [(train_idx[groups != g], train_idx[groups == g]) for g in sorted(set(groups))]
    groups = np.array([held_out_unit(cfg, utts[i]) for i in train_idx])
    folds = speaker_folds(groups, n_folds=min(max(2, cfg.eval.cv_folds), len(set(groups))), seed=seed)
    return [(train_idx[a], train_idx[b]) for a, b in folds]


def held_out_unit(cfg: Config, u) -> str:
    """What one inner fold holds out: a repetition, a recording (``split = "recordings"``) or a speaker."""
    if cfg.experiment.split == "third_test":
        return str(u.repetition)
    if cfg.experiment.split == "recordings":
        return pipeline.recording_of(u)
    return str(u.speaker)


def check_tunable(cfg: Config, utts: list | None = None) -> str:
    """The config's split if it has one train/test pair, else a ConfigError (``utts``: the corpus,
    to tell a one-speaker ``recordings`` split from a speaker-fold one)."""
    split = cfg.experiment.split
    one_pair = split in ("third_test", "even_odd") or (
        split == "recordings" and (utts is None or pipeline.splits_by_recording(cfg, [u.speaker for u in utts])))
    if not one_pair:
        raise ConfigError(f"bimodal tune needs a split with one train/test pair (experiment.split = 'third_test', "
                          f"'even_odd', or 'recordings' on one speaker), got {split!r}: with speaker folds every "
                          "speaker is tested in some fold, so no training set is free of test speakers")
    return split


def held_out_scores(cfg: Config, feats: tuple, labels: tuple, seed: int, device) -> dict:
    """Held-out accuracy for every (standardize, C): ``{"global|C=0.01": acc, ...}``.

    ``feats`` = (training features, held-out features), or (training, [held-out features under
    each condition]): one classifier per (standardize, C) fitted on the first, scored by its mean
    accuracy over the conditions."""
    (Ftr, Fva), (ytr, yva) = feats, labels
    conditions = Fva if isinstance(Fva, list) else [Fva]
    names = {n: i for i, n in enumerate(sorted(set(ytr) | set(yva)))}
    ytr, yva = (np.array([names[v] for v in y], np.int64) for y in (ytr, yva))
    out = {}
    for mode in STANDARDIZE:
        for C in cfg.eval.Cs:
            clf = StandardizedClassifier(cfg.eval.classifier, cfg.eval.backend, C, device=device, seed=seed,
                                         standardize=mode).fit(Ftr, ytr)
            out[f"{mode}|C={C:g}"] = float(np.mean([clf.score(F, yva) for F in conditions]))
    return out


def candidate_score(cfg: Config, folds: list, stage: str, seed: int, device) -> dict:
    """Mean held-out accuracies of one candidate config (``stage``: "audio_rbm", "rbm", or any stage
    scored like "dae") over the prepared inner ``folds``, which must be those of the candidate's
    preprocessing (:func:`prep_key`: its front end, whitening and, with ``data.mirror_video``, the
    mirrored windows; :func:`tune` makes each once).

    The models are trained by the experiment's own functions (:func:`pipeline.pretrain_bimodal_dbn`,
    :func:`pipeline.fine_tune_model`), so every setting of the recipe (``pretrain.enabled``,
    ``data.extra_audio``, the model's augmentation fractions, ...) holds here as in the experiment;
    the RBM stages pretrain only the modality DBN whose first RBM they score."""
    per_split = []
    for fold in folds:
        if stage == "audio_rbm":
            models = {"bimodal_dbn": pipeline.pretrain_bimodal_dbn(cfg, fold, seed, device, progress=False,
                                                                   only="audio")}
            held_out = [fold.test] + [fold.test_noisy[float(snr)] for snr in cfg.eval.snr_db]
            pool = functools.partial(_pooled, models, "rbm.audio", cfg.eval.slices)
            per_split.append(held_out_scores(cfg, (pool(fold.train), [pool(ds) for ds in held_out]),
                                             (pipeline.label_strings(fold.train), pipeline.label_strings(fold.test)),
                                             seed, device))
            continue
        if stage in VIDEO_RBM_STAGES:
            models = {"bimodal_dbn": pipeline.pretrain_bimodal_dbn(cfg, fold, seed, device, progress=False,
                                                                   only="video")}
            feature = "rbm.video"
        else:
            models = {"bimodal_dbn": pipeline.pretrain_bimodal_dbn(cfg, fold, seed, device, progress=False)}
            models["video_dae"] = pipeline.fine_tune_model(cfg, "video_dae", models, fold, seed, device,
                                                           progress=False)
            feature = "video_dae.video"
        feats = tuple(_pooled(models, feature, cfg.eval.slices, ds) for ds in (fold.train, fold.test))
        labels = tuple(pipeline.label_strings(ds) for ds in (fold.train, fold.test))
        per_split.append(held_out_scores(cfg, feats, labels, seed, device))
    return {k: float(np.mean([s[k] for s in per_split])) for k in per_split[0]}


def _pooled(models: dict, feature: str, slices, ds) -> np.ndarray:
    return pipeline.utterance_features(pipeline.window_codes(models, ds, [feature])[feature], ds, slices)


def tunes_audio_noise(cfg: Config, utts: list) -> bool:
    """Whether stage 0 runs: the fusion setting adds noise, and the corpus has waveforms to add it to."""
    return "fusion" in cfg.experiment.settings and bool(cfg.eval.snr_db) and all(u.audio is not None for u in utts)


def grid_stage(cfg: Config, fold_sets: dict, grid: dict, stage: str, seed, device, progress, backend=None) -> dict:
    """Score every combination of ``grid`` on top of ``cfg`` on the inner folds (``fold_sets``: by
    :func:`prep_key`, the folds of every preprocessing the candidates need). Returns the stage's
    record: every candidate's row, the overrides :func:`choose` picks, the number of held-out
    utterances, the best score's standard error and the rule. With a ``backend``
    (:class:`experiments.ray_backend.RayBackend`) the candidates are Ray tasks, the inner folds sent
    once; ``device`` is then the tasks' device name."""
    keys = list(grid)
    overrides_list = candidates(grid)
    calls = [(with_overrides(cfg, overrides, "tune"), stage, seed, device) for overrides in overrides_list]
    if backend is None:
        scored = [scored_candidate(fold_sets, *call) for call in tqdm(calls, desc=f"tune {stage}", disable=not progress)]
    else:
        scored = backend.map(scored_candidate, calls, shared=(fold_sets,), progress=progress, desc=f"tune {stage}")
    rows = []
    for overrides, (scores, seconds) in zip(overrides_list, scored):
        best = max(scores, key=scores.get)
        rows.append({"overrides": overrides, "best": best, "score": scores[best], "scores": scores,
                     "seconds": seconds})
        log.info("tune %s %s: %.3f (%s)", stage, overrides, scores[best], best)
    # held-out utterances over all inner folds (the same utterances in every fold set)
    n = sum(f.test.n_utterances for f in next(iter(fold_sets.values())))
    key = cost_key(stage, keys)
    return {"stage": stage, "grid": grid, "rows": rows, "chosen": choose(rows, stage, n), "n_held_out": n,
            "standard_error": standard_error(max(r["score"] for r in rows), n),
            "rule": "best" if key is None else f"the cheapest {key} within one standard error of the best score; "
                                               f"cheapest first: {cost_order([r['overrides'][key] for r in rows])}"}


def standard_error(p: float, n: int) -> float:
    """Binomial standard error of an accuracy ``p`` over ``n`` utterances."""
    return float(np.sqrt(p * (1.0 - p) / max(1, n)))


def cost_key(stage: str, keys) -> str | None:
    """The key that sets a candidate's cost in ``stage`` (:data:`CHEAPEST_WITHIN_ONE_SE`), if the
    stage's grid (``keys``) varies it; None: the stage takes the best score."""
    key = CHEAPEST_WITHIN_ONE_SE.get(stage)
    return key if key in keys else None


def cost_order(values: list) -> list:
    """A cost key's values, cheapest first: numbers and booleans ascending (fewer epochs, smaller
    sizes, off before on), names in the grid's order ("pca" before "conv")."""
    values = list(dict.fromkeys(values))
    if all(isinstance(v, (bool, int, float)) for v in values):
        return sorted(values)
    return values


def choose(rows: list, stage: str, n_held_out: int) -> dict:
    """The chosen row's overrides: the best score (ties: the first row), or for a stage of
    :data:`CHEAPEST_WITHIN_ONE_SE` whose grid varies its cost key the cheapest row whose score is
    within one binomial standard error of the best score over the ``n_held_out`` held-out
    utterances: the cheapest value of the cost key (:func:`cost_order`), and among the rows with
    that value (other keys of the grid) the best score."""
    top = max(rows, key=lambda r: r["score"])
    key = cost_key(stage, top["overrides"])
    if key is None:
        return top["overrides"]
    floor = top["score"] - standard_error(top["score"], n_held_out)
    costs = cost_order([r["overrides"][key] for r in rows])
    within = [r for r in rows if r["score"] >= floor]
    cheapest = min(costs.index(r["overrides"][key]) for r in within)
    return max((r for r in within if costs.index(r["overrides"][key]) == cheapest), key=lambda r: r["score"])["overrides"]


def scored_candidate(fold_sets: dict, cfg: Config, stage: str, seed: int, device) -> tuple[dict, float]:
    """:func:`candidate_score` on the folds of the candidate's preprocessing (:func:`prep_key`) and
    its wall time: one unit of work (a Ray task with a backend)."""
    t0 = time.time()
    scores = candidate_score(cfg, fold_sets[prep_key(cfg)], stage, seed, resolve_device(device))
    return scores, time.time() - t0


# The data settings a grid may vary: those that act after the frames are cut (the frame cache and
# the utterances kept are the base config's) and never decide which utterances have a window.
TUNABLE_PREP = ("video_frontend", "conv_code_dim", "conv_channels", "conv_epochs", "conv_batch_size", "conv_lr",
                "video_pca", "audio_pca", "deltas", "scale_deltas")
# The data.* keys (besides TUNABLE_PREP's) a grid may vary: they act after the frames are cut, too.
TUNABLE_DATA = ("data.mirror_video", "data.extra_av_whitening")
# Settings the inner folds themselves are made from (the split, the noisy test copies): the base config's.
FIXED_KEYS = ("experiment.", "eval.snr_db", "eval.cv_folds")


def prep_key(cfg: Config) -> tuple[bool, str, str]:
    """What of a candidate's config its inner folds' windows depend on, among what a grid may vary
    (:func:`check_grids`): ``(data.mirror_video, data.prep as JSON, data.extra_av_whitening)``, the
    conv settings left out under the PCA front end (they do nothing there)."""
    prep = prep_config(cfg).to_dict()
    if prep["video_frontend"] != "conv":
        prep = {k: v for k, v in prep.items() if not k.startswith("conv_")}
    return bool(cfg.data.mirror_video), json.dumps(prep, sort_keys=True), cfg.data.extra_av_whitening


def candidates(grid: dict) -> list[dict]:
    """Every combination of ``grid``'s values, as override dicts, in grid order."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*grid.values())]


def check_grids(cfg: Config, grids: dict) -> None:
    """A ConfigError before any training for a grid that is empty, a key the inner folds cannot
    follow (the corpus, the split, the frames: any ``data.*`` key but those of :data:`TUNABLE_DATA` and
    the ``data.prep`` fields of :data:`TUNABLE_PREP`; ``experiment.*``, ``eval.snr_db``,
    ``eval.cv_folds``), or a candidate the config rejects (an unknown key, a wrong type, the conv front
    end with ``video_pca`` above ``conv_code_dim``, ...) on top of any choice the earlier stages can make."""
    earlier = [{}]
    for stage, grid in grids.items():
        if not grid or any(len(list(v)) == 0 for v in grid.values()):
            raise ConfigError(f"tune stage {stage!r}: empty grid {grid!r}; every key needs at least one value")
        bad = [k for k in grid if k.startswith(FIXED_KEYS) or (k.startswith("data.") and k not in TUNABLE_DATA and
                                                                k.removeprefix("data.prep.") not in TUNABLE_PREP)]
        if bad:
            raise ConfigError(f"tune stage {stage!r}: grid key(s) {bad} change the corpus, the split or the frames the "
                              f"inner folds are made from; a grid may vary {', '.join(TUNABLE_DATA)}, data.prep."
                              f"{{{', '.join(TUNABLE_PREP)}}} and the model, pretrain, finetune and classifier settings")
        combined = [dict(e, **o) for e in earlier for o in candidates(grid)]
        # every RBM's sparsity keys, which do not reach a first video RBM with its own
        shared_keys = [k for k in grid if k in SHARED_SPARSITY_KEYS] if stage in VIDEO_RBM_STAGES else []
        for overrides in combined:
            candidate = with_overrides(cfg, overrides, f"tune stage {stage!r}")  # validates every section
            own = pipeline.modality_sparsity(candidate, "video") if shared_keys else {}
            unreached = [k for k in shared_keys if k.removeprefix("pretrain.") in own]
            if unreached:
                raise ConfigError(f"tune stage {stage!r} scores the first video RBM, but it has its own "
                                  f"pretrain.video_sparsity_* in this config, so varying {unreached} would not change "
                                  "it (only the deeper RBMs); tune it with --stages video_rbm")
        earlier = combined


STAGES = {"audio_rbm": AUDIO_SPARSITY_GRID, "rbm": SPARSITY_GRID, "dae": FINETUNE_GRID,
          "shared_size": SHARED_SIZE_GRID, "mirror": MIRROR_GRID, "frontend": FRONTEND_GRID,
          "whitening": WHITENING_GRID, "sparsity_update": SPARSITY_UPDATE_GRID, "video_rbm": VIDEO_SPARSITY_GRID}


def stage_grids(names: str) -> dict:
    """``"audio_rbm,rbm"`` → those stages' grids, in that order (a ConfigError names unknown ones)."""
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    bad = [n for n in chosen if n not in STAGES]
    if bad or not chosen:
        raise ConfigError(f"--stages {names!r}: expected a comma-separated list of {', '.join(STAGES)}")
    return {n: STAGES[n] for n in chosen}


def default_grids(cfg: Config, utts: list) -> dict:
    """The stages :func:`tune` runs when none are named: stage 0 when :func:`tunes_audio_noise`, then
    the video RBM's sparsity (stage 1, or stage ``video_rbm`` when the config gives the first video
    RBM its own, which stage 1's keys would not reach) and stage 2; only stage 2 without pretraining."""
    if not cfg.pretrain.enabled:  # no RBM is trained: nothing for the RBM stages to choose
        return {"dae": FINETUNE_GRID}
    own = pipeline.modality_sparsity(cfg, "video")
    video_stage = {"video_rbm": VIDEO_SPARSITY_GRID} if own else {"rbm": SPARSITY_GRID}
    return {**({"audio_rbm": AUDIO_SPARSITY_GRID} if tunes_audio_noise(cfg, utts) else {}), **video_stage,
            "dae": FINETUNE_GRID}


def tune(cfg: Config, seed: int = 0, device=None, grids: dict | None = None, progress: bool = True,
         backend=None, threads: int | None = None) -> dict:
    """Run the stages (``grids``: stage name → grid, default stage 0 when :func:`tunes_audio_noise`,
    then stages 1 and 2); returns ``{"chosen": {...}, "stages": [...], "splits": [...]}``.

    The candidates of a stage are independent: with a ``backend`` (Ray) they run as tasks, each with
    the backend's threads (the inner folds are whitened here, on the CPU, and sent once); the stages
    still run one after the other, each on the previous one's choice. ``threads``: torch threads of
    the sequential candidates (default: torch's own). Same seed and threads per candidate, same
    numbers either way."""
    check_tunable(cfg)  # before any work
    if backend is not None:
        task_device = backend.run_device(cfg, device)  # resolved by each task, on its node
        device = resolve_device("cpu")
    else:
        device = resolve_device(device)
        task_device = device
    utts = pipeline.load_utterances(cfg, progress=progress)
    if grids is None:
        grids = default_grids(cfg, utts)
    rbm_stages = sorted(set(grids) & {"audio_rbm", *VIDEO_RBM_STAGES})
    if rbm_stages and not cfg.pretrain.enabled:
        raise ConfigError(f"tune stage(s) {rbm_stages} choose the RBMs' sparsity, but pretrain.enabled = false "
                          "trains no RBM; tune only 'dae' (--stages dae) or enable pretraining")
    if "audio_rbm" in grids and not tunes_audio_noise(cfg, utts):
        raise ConfigError("tune stage 'audio_rbm' scores audio features under the fusion setting's noise: it needs "
                          "'fusion' in experiment.settings, a non-empty eval.snr_db and a corpus with waveforms")
    check_grids(cfg, grids)
    splits = inner_splits(cfg, utts, seed)
    # Whiten and window each inner fold once per preprocessing the candidates need (prep_key), from
    # the experiment's own frame cache (so a later `bimodal reproduce` of the config reuses it).
    cache_path = pipeline.frame_cache_path(cfg, utts)
    frame_cache = pipeline.load_frame_cache(cache_path)
    n_cached = len(frame_cache)
    fold_sets: dict = {}

    def make_folds(candidate: Config):
        """The inner folds of ``candidate``'s preprocessing, made once."""
        key = prep_key(candidate)
        if key in fold_sets:
            return key
        plain = with_overrides(candidate, {"data.mirror_video": False}, "tune")
        if key[0]:  # the plain folds' whiteners, with the mirrored windows appended
            fold_sets[key] = [pipeline.with_mirrored_windows(f, progress=False) for f in fold_sets[make_folds(plain)]]
            return key
        front = prep_config(plain).video_frontend
        log.info("tune: whitening %d inner folds (video front end %s%s)", len(splits), front,
                 ": a conv autoencoder is trained on each fold's fitting crops" if front == "conv" else "")
        fold_sets[key] = [pipeline.prepare_fold(plain, utts, fit_idx, va_idx, seed, device, progress=False,
                                                frame_cache=frame_cache) for fit_idx, va_idx in splits]
        return key

    make_folds(cfg)
    if len(frame_cache) > n_cached:
        pipeline.save_frame_cache(frame_cache, cache_path)
    chosen, stages = {}, []
    for stage, grid in grids.items():
        stage_cfg = with_overrides(cfg, chosen, "tune") if chosen else cfg
        # only the fold sets this stage's candidates use (a Ray stage sends them to its tasks)
        needed = list(dict.fromkeys(make_folds(with_overrides(stage_cfg, o, "tune")) for o in candidates(grid)))
        with run_threads(threads):
            record = grid_stage(stage_cfg, {k: fold_sets[k] for k in needed}, grid, stage, seed, task_device,
                                progress, backend)
        chosen.update(record["chosen"])
        stages.append(record)

    def group(i):
        return held_out_unit(cfg, utts[i])

    split_desc = [{"fit": sorted({group(i) for i in a}), "held_out": sorted({group(i) for i in b})} for a, b in splits]
    execution = {"backend": "sequential", "torch_threads": threads} if backend is None else backend.execution()
    return {"chosen": chosen, "stages": stages, "splits": split_desc, "seed": seed, "config": config_record(cfg),
            "execution": execution}


def to_markdown(result: dict) -> str:
    def brief(groups):
        return groups if len(groups) <= 8 else f"{len(groups)} ({', '.join(groups[:3])}, ...)"

    splits = [{k: brief(v) for k, v in s.items()} for s in result["splits"]]
    lines = ["# Hyperparameters chosen by cross-validation on the training split", "",
             f"Held-out groups: {splits} (the experiment's test split is never used). Each score is "
             "the mean held-out accuracy at the best (feature scaling, C).", ""]
    for st in result["stages"]:
        lines += [f"## Stage: {st['stage']}", "", "| candidate | held-out accuracy (%) | best scaling, C |", "|---|---|---|"]
        for r in st["rows"]:
            lines.append(f"| {r['overrides']} | {100 * r['score']:.1f} | {r['best']} |")
        rule = "" if st.get("rule", "best") == "best" else f" ({st['rule']})"
        lines += ["", f"Chosen{rule}: {st['chosen']}", ""]
    return "\n".join(lines)


def write_results(result: dict, out) -> str:
    """Write ``OUT/tuning.json`` and ``OUT/tuning.md`` atomically; returns the markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(result)
    atomic_write_text(out / "tuning.json", json.dumps(result, indent=1, default=str))
    atomic_write_text(out / "tuning.md", md)
    return md
