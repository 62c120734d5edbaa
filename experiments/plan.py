"""Whether a config can run on a corpus: the folds it will make, checked before any work.

A fold that trains on a single speaker (or repetition, or recording) cannot choose C by grouped
cross-validation, and a label absent from a fold's training utterances cannot be learned; both
used to surface only after every model of the run was trained. :func:`plan_problems` lists them
from the utterances as read (after skips), :func:`check_plan` raises on them.
"""
from __future__ import annotations

from bimodal.errors import BimodalError, ConfigError

from . import pipeline
from .config import Config


def cv_group(cfg: Config, u, one_speaker: bool) -> str:
    """The group C's cross-validation holds out for utterance ``u`` (as
    :meth:`experiments.settings.FoldContext.cv_groups`): its repetition under ``third_test``, its
    recording under ``recordings`` on one speaker, else its speaker."""
    if cfg.experiment.split == "third_test":
        return str(u.repetition)
    if cfg.experiment.split == "recordings" and one_speaker:
        return pipeline.recording_of(u)
    return str(u.speaker)


def _unit(cfg: Config, one_speaker: bool) -> str:
    if cfg.experiment.split == "third_test":
        return "repetition"
    return "recording" if cfg.experiment.split == "recordings" and one_speaker else "speaker"


def plan_problems(cfg: Config, utts: list) -> list[str]:
    """Why ``cfg`` cannot run on ``utts``, one line per problem (empty when it can).

    Checked for every seed and fold the run will make: the fold's training utterances of the task
    labels (``data.labels``) come from at least 2 cross-validation groups and hold every label, and
    its test side holds at least one utterance of a task label."""
    labels = list(cfg.data.labels)
    task = [u for u in utts if u.label in set(labels)]
    if not task:
        found = sorted({u.label for u in utts})
        return [f"no utterance has a label of data.labels {labels}; the corpus' labels are {found[:20]}"]
    one_speaker = len({u.speaker for u in utts}) == 1
    unit = _unit(cfg, one_speaker)
    problems: list[str] = []
    try:
        plans = [(seed, pipeline.speaker_splits(utts, cfg, seed)) for seed in cfg.experiment.seeds]
    except BimodalError as e:
        return [str(e)]
    for seed, splits in plans:
        for fold_i, (tr, te) in enumerate(splits):
            where = f"seed {seed}, fold {fold_i}"
            train = [utts[i] for i in tr if utts[i].label in set(labels)]
            test = [utts[i] for i in te if utts[i].label in set(labels)]
            groups = sorted({cv_group(cfg, u, one_speaker) for u in train})
            if len(groups) < 2:
                problems.append(f"{where}: the training side has {len(groups)} {unit}(s) {groups}, but C is chosen "
                                f"by cross-validation over training {unit}s and needs at least 2 (more speakers, "
                                f"fewer experiment.n_folds, or another experiment.split)")
            missing = [lab for lab in labels if lab not in {u.label for u in train}]
            if missing:
                problems.append(f"{where}: label(s) {missing} of data.labels have no training utterance")
            if not test:
                problems.append(f"{where}: no test utterance has a label of data.labels")
        if unit != "speaker":
            break  # a repetition or recording split is the same for every seed: said once
    return problems


def check_plan(cfg: Config, utts: list) -> None:
    """Raise :class:`ConfigError` naming every fold ``cfg`` cannot run on ``utts`` (:func:`plan_problems`)."""
    problems = plan_problems(cfg, utts)
    if problems:
        speakers = len({u.speaker for u in utts})
        raise ConfigError(f"{cfg.data.root or cfg.data.source}: config {cfg.experiment.name!r} cannot run on this "
                          f"corpus ({len(utts)} usable utterances, {speakers} speaker(s)):\n  "
                          + "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else ""))

