"""Whether a config can run on a corpus: the folds it will make, checked before any work.

A fold that trains on a single speaker (or repetition, or recording) cannot choose C by grouped
cross-validation, and a label absent from a fold's training utterances cannot be learned; both
used to surface only after every model of the run was trained. :func:`plan_problems` lists them
from the utterances as read (after skips), :func:`check_plan` raises on them.
"""
from __future__ import annotations

from pathlib import Path

from bimodal.errors import BimodalError, ConfigError

from . import pipeline
from .config import Config


def cv_group(cfg: Config, u, by_recording: bool) -> str:
    """The group C's cross-validation holds out for the training utterance ``u``, as
    :meth:`experiments.settings.FoldContext.cv_groups` assigns it: its repetition under
    ``third_test``, its recording when the fold's training side is split by recording
    (``by_recording``: :func:`pipeline.splits_by_recording` of its speakers), else its speaker."""
    if cfg.experiment.split == "third_test":
        return str(u.repetition)
    return pipeline.recording_of(u) if by_recording else str(u.speaker)


def _label_sets(cfg: Config) -> list[tuple[str, list]]:
    """(config key, labels) of every classifier a run trains: the task's, and the McGurk setting's."""
    sets = [("data.labels", list(cfg.data.labels))]
    if "mcgurk" in cfg.experiment.settings:
        sets.append(("data.mcgurk_labels", list(cfg.data.mcgurk_labels)))
    return sets


def plan_problems(cfg: Config, utts: list) -> list[str]:
    """Why ``cfg`` cannot run on ``utts``, one line per problem (empty when it can).

    Checked for every seed and fold the run will make, and for every classifier it trains (the
    task's ``data.labels``, the McGurk setting's ``data.mcgurk_labels``): the fold's training
    utterances of those labels come from at least 2 cross-validation groups and hold every label,
    and its test side holds at least one of them. Also that the extra data folders exist."""
    problems = [f"{key} = {folder!r}: no such folder"
                for key, folders in (("data.extra_audio", [cfg.data.extra_audio] if cfg.data.extra_audio else []),
                                     ("data.extra_av", cfg.data.extra_av))
                for folder in folders if not Path(folder).is_dir()]
    try:
        plans = [(seed, pipeline.speaker_splits(utts, cfg, seed)) for seed in cfg.experiment.seeds]
    except BimodalError as e:
        return problems + [str(e)]
    for seed, splits in plans:
        for fold_i, (tr, te) in enumerate(splits):
            train_all = [utts[i] for i in tr]
            by_recording = pipeline.splits_by_recording(cfg, [u.speaker for u in train_all])
            unit = "repetition" if cfg.experiment.split == "third_test" else \
                "recording" if by_recording else "speaker"
            for key, labels in _label_sets(cfg):
                where = f"seed {seed}, fold {fold_i} ({key})"
                train = [u for u in train_all if u.label in labels]
                groups = sorted({cv_group(cfg, u, by_recording) for u in train})
                if len(groups) < 2:
                    problems.append(f"{where}: the training side has {len(groups)} {unit}(s) {groups[:5]}, but C is "
                                    f"chosen by cross-validation over training {unit}s and needs at least 2 (more "
                                    "speakers, fewer experiment.n_folds, or another experiment.split)")
                missing = [lab for lab in labels if lab not in {u.label for u in train}]
                if missing:
                    problems.append(f"{where}: label(s) {missing} have no training utterance")
                if not any(utts[i].label in labels for i in te):
                    problems.append(f"{where}: no test utterance has one of these labels")
        if cfg.experiment.split == "third_test" or pipeline.splits_by_recording(cfg, [u.speaker for u in utts]):
            break  # the same split for every seed: said once
    return problems


def check_plan(cfg: Config, utts: list) -> None:
    """Raise :class:`ConfigError` naming every fold ``cfg`` cannot run on ``utts`` (:func:`plan_problems`)."""
    problems = plan_problems(cfg, utts)
    if problems:
        speakers = len({u.speaker for u in utts})
        raise ConfigError(f"{cfg.data.root or cfg.data.source}: config {cfg.experiment.name!r} cannot run on this "
                          f"corpus ({len(utts)} usable utterances, {speakers} speaker(s)):\n  "
                          + "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else ""))

