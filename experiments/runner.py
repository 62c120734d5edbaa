"""Run an experiment config over seeds and speaker folds; write results, report and plots.

``run_experiment(cfg, out_dir)`` is what ``bimodal reproduce`` and ``bimodal demo`` call. Every
(seed, fold) is one unit of work (:class:`RunSpec`, :func:`execute_run`) that writes its results to
``out_dir/checkpoints/seed{S}_fold{F}/`` as soon as it is done (with the trained models), so
``resume=True`` skips finished work after an interruption. The runs go one after the other in this
process, or as Ray tasks with a ``backend`` (:mod:`experiments.ray_backend`); either way the
fragments are gathered in plan order into the same ``results.json``, report and claims.
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

from bimodal.errors import BimodalError, ConfigError, DataError
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
                   write_report: bool = True, backend=None, threads: int | None = None) -> dict:
    """Run every (seed, speaker fold) of ``cfg`` and write ``results.json`` (+ report and plots).

    Returns the results dict: ``runs`` (one per seed and fold, with per-setting metrics),
    ``summary`` (mean/std/n over runs of every metric), ``claims`` (the paper's claims checked),
    ``timings`` (seconds per stage), ``provenance`` (config, seed list, versions, commit, device) and
    ``failed_runs`` (empty unless a backend ran the runs: see below).

    Each (seed, fold) is one unit of work (:class:`RunSpec`, run by :func:`execute_run`), with its own
    seed, checkpoint folder ``out_dir/checkpoints/seed{S}_fold{F}/`` and results fragment
    ``results.json`` there. By default they run one after the other in this process. ``backend``
    (an :class:`experiments.ray_backend.RayBackend`) runs them as Ray tasks instead, gathers the
    fragments in the same order and writes the same files; a run that fails there is listed under
    ``failed_runs`` while the others finish, and :class:`RunsFailedError` is raised once everything
    is written. ``threads``: torch (and BLAS) threads of each run in this process (default: leave
    torch's setting alone); a backend sets its own per task.
    """
    if backend is not None:
        job = prepare_experiment(cfg, out_dir, device, resume, progress, backend=backend)
        backend.execute([job], progress=progress)
        return finish_experiment(job, write_report)
    job = prepare_experiment(cfg, out_dir, device, resume, progress)
    # Per-utterance spectrograms and mouth crops do not depend on the fold: computed once, shared by
    # all folds, and kept on disk so a second run of the same data and preprocessing skips them.
    frame_cache = pipeline.load_frame_cache(job.cache_path)
    n_cached = len(frame_cache)
    for spec in job.pending:
        with run_threads(threads):
            job.runs[spec.key] = execute_run(job.cfg, job.utts, spec, job.device, resume, progress, job.timer,
                                             frame_cache)
    if len(frame_cache) > n_cached:
        pipeline.save_frame_cache(frame_cache, job.cache_path)
    if threads is not None:
        job.execution = {"backend": "sequential", "torch_threads": int(threads)}
        job.provenance["torch_threads"] = int(threads)
    return finish_experiment(job, write_report)


class RunsFailedError(BimodalError):
    """Some (seed, fold) runs failed; the others' results, the report and the list of failures
    (``results["failed_runs"]``) are written. ``results`` holds what was written (for an ablation,
    the ablation dict)."""

    def __init__(self, message: str, results: dict | None = None):
        super().__init__(message)
        self.results = results


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One (seed, speaker fold) run: the unit of work, run in this process or as a Ray task.

    ``ckpt`` is its checkpoint folder; its results fragment is ``ckpt/results.json``."""

    seed: int
    fold: int
    train_idx: np.ndarray
    test_idx: np.ndarray
    ckpt: Path

    @property
    def key(self) -> tuple[int, int]:
        return (self.seed, self.fold)

    @property
    def fragment(self) -> Path:
        return self.ckpt / "results.json"


def plan_runs(cfg: Config, utts: list, out_dir: Path) -> list[RunSpec]:
    """Every (seed, fold) run of ``cfg``, seeds in the config's order and folds in split order."""
    specs = []
    for seed in cfg.experiment.seeds:
        for fold_i, (tr, te) in enumerate(pipeline.speaker_splits(utts, cfg, seed)):
            specs.append(RunSpec(seed, fold_i, tr, te, out_dir / "checkpoints" / f"seed{seed}_fold{fold_i}"))
    return specs


def execute_run(cfg: Config, utts: list, spec: RunSpec, device, resume: bool, progress: bool, timer: StageTimer,
                frame_cache: dict | None = None, extra_av_roots: list | None = None) -> dict:
    """Run one (seed, fold) (:func:`run_fold`: it seeds itself from ``spec.seed``) and write its
    fragment ``spec.ckpt/results.json`` atomically; returns the run's results. Both the sequential
    loop and a Ray task call this. ``extra_av_roots``: the ``data.extra_av`` entries as the user gave
    them, recorded in place of ``cfg``'s (a Ray task runs on absolute paths)."""
    run = run_fold(cfg, utts, spec.train_idx, spec.test_idx, spec.seed, spec.fold, device, spec.ckpt, resume,
                   progress, timer, frame_cache)
    if extra_av_roots is not None:
        for info, root in zip(run["extra_av"], extra_av_roots):
            info["root"] = str(root)
    atomic_write_json(spec.fragment, run)
    return run


class run_threads:
    """Context manager: torch's intra-op threads and the BLAS pools at ``n`` for one run (restored
    on exit); ``None`` changes nothing."""

    def __init__(self, n: int | None):
        self.n = None if n is None else max(1, int(n))

    def __enter__(self):
        if self.n is not None:
            from threadpoolctl import threadpool_limits

            self._old = torch.get_num_threads()
            torch.set_num_threads(self.n)
            self._blas = threadpool_limits(limits=self.n, user_api="blas")
        return self

    def __exit__(self, *exc):
        if self.n is not None:
            self._blas.restore_original_limits()
            torch.set_num_threads(self._old)
        return False


@dataclasses.dataclass
class ExperimentJob:
    """One experiment's state between planning and gathering: its config, corpus, runs still to do
    (``pending``) and results of finished ones (``runs``, by (seed, fold)), failures and timings."""

    cfg: Config
    out_dir: Path
    device: object  # a torch.device, or under a backend the device string each task resolves
    utts: list
    read_skipped: list
    cache_path: Path
    specs: list
    pending: list
    runs: dict
    timer: StageTimer
    t_start: float
    resume: bool = False
    failed: list = dataclasses.field(default_factory=list)  # {"seed", "fold", "error"} per failed run
    execution: dict | None = None  # how the runs were executed (backend, threads), when not the default
    provenance: dict = dataclasses.field(default_factory=dict)  # values the backend's tasks reported


def prepare_experiment(cfg: Config, out_dir, device=None, resume: bool = False, progress: bool = True,
                       backend=None, corpus: tuple | None = None) -> ExperimentJob:
    """Everything before the first run: device, output folder, the resume check, the corpus (or
    ``corpus`` = (utterances, reader warnings) already read), the plan check, the runs, and the
    fragments of finished runs when ``resume``."""
    if backend is not None:
        device = backend.run_device(cfg, device)  # resolved by each task, on its node
    else:
        device = resolve_device(None if cfg.experiment.device == "auto" else cfg.experiment.device) \
            if device is None else resolve_device(device)
    out_dir = prepare_out_dir(out_dir)
    timer = StageTimer()
    t_start = time.perf_counter()
    log.info("experiment %s on %s -> %s", cfg.experiment.name, device, out_dir)

    _check_resumable(cfg, out_dir, resume)
    if corpus is None:
        read_skipped: list[str] = []  # reader warnings: files left out of the corpus
        with timer("load data"):
            utts = pipeline.load_utterances(cfg, progress=progress, skipped=read_skipped)
    else:
        utts, read_skipped = corpus[0], list(corpus[1])
    check_plan(cfg, utts)  # after reading and skipping, before any preprocessing or training
    specs = plan_runs(cfg, utts, out_dir)
    runs, pending = {}, []
    for spec in specs:
        if resume and spec.fragment.exists():
            log.info("resume: seed %d fold %d already done", spec.seed, spec.fold)
            runs[spec.key] = _read_fold_results(spec.fragment)
        else:
            pending.append(spec)
    return ExperimentJob(cfg, out_dir, device, utts, read_skipped, pipeline.frame_cache_path(cfg, utts), specs,
                         pending, runs, timer, t_start, resume)


def finish_experiment(job: ExperimentJob, write_report: bool = True) -> dict:
    """Gather the runs in plan order into ``results.json`` (+ report and plots); raise
    :class:`RunsFailedError` after writing them when some runs failed."""
    cfg, out_dir, timer, t_start = job.cfg, job.out_dir, job.timer, job.t_start
    runs = [job.runs[s.key] for s in job.specs if s.key in job.runs]
    prov = provenance(device=job.device, seed=list(cfg.experiment.seeds), config=None)
    prov.update(job.provenance)
    results = {
        "experiment": cfg.experiment.name,
        "description": cfg.experiment.description,
        "results_format": RESULTS_FORMAT,
        "config": config_record(cfg),
        "provenance": prov,
        "n_utterances": len(job.utts),
        "read_skipped": job.read_skipped,
        "n_speakers": len({u.speaker for u in job.utts}),
        "runs": runs,
        "summary": summarise_runs(runs),
        "timings": {**timer.seconds, "total": time.perf_counter() - t_start},
    }
    if job.execution is not None:
        results["execution"] = job.execution
    order = {s.key: i for i, s in enumerate(job.specs)}
    results["failed_runs"] = sorted(job.failed, key=lambda f: order[(f["seed"], f["fold"])])  # plan order
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
    if job.failed:
        raise RunsFailedError(failed_message(results["failed_runs"], len(job.specs), out_dir), results)
    return results


def failed_message(failed: list[dict], n_runs: int, out_dir: Path) -> str:
    """What :class:`RunsFailedError` says: which runs failed and why, where the rest is, what to do."""
    lines = "\n".join(f"  seed {f['seed']} fold {f['fold']}: {f['error']}" for f in failed)
    return (f"{len(failed)} of {n_runs} (seed, fold) runs failed:\n{lines}\nThe other runs finished: their results "
            f"are in {out_dir / 'results.json'} (the failures under failed_runs) and the report; fix the cause and "
            "run the same command with --resume to run only the missing ones.")


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
    current = _stored_record(cfg)
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
        # a key added to bimodal since the checkpoints were made changes nothing while it has its default
        default = _flatten_all(_stored_record(Config()))
        changed = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k)
                         and not (k not in stored and k in default and now.get(k) == default[k]))
        if changed:
            raise ConfigError(f"{out_dir}: --resume with a config that differs from the one its checkpoints were "
                              f"made with (keys: {', '.join(changed)}); use a new --out folder")
    atomic_write_json(path, current)


def _stored_record(cfg: Config) -> dict:
    """The JSON view of every value of ``cfg`` in effect, as config.json stores it."""
    return json.loads(json.dumps(config_record(cfg)))


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


def run_ablation(cfg: Config, out_dir, device=None, resume: bool = False, progress: bool = True,
                 backend=None, threads: int | None = None) -> dict:
    """Run the base config once per ``[[ablation]]`` variant; write ``ablation.json`` and ``ablation.md``.

    With a ``backend`` (Ray) the runs of every variant are dispatched together as tasks; a variant
    with failed runs lists them (``failed_runs``) and :class:`RunsFailedError` is raised once every
    variant's results and the table are written."""
    from .report import write_ablation_table

    run_device = device  # each variant resolves its own (a variant may set experiment.device)
    if backend is None:  # checked before any work, and what the record names
        device = resolve_device(None if device is None and cfg.experiment.device == "auto"
                                else device or cfg.experiment.device)
    out_dir = prepare_out_dir(out_dir)
    variants = [("base", {})] + [(v.name or f"variant{i}", v.set) for i, v in enumerate(cfg.ablation)]
    configs = {name: with_overrides(cfg, settings, source=f"ablation variant '{name}'") for name, settings in variants}
    corpora: dict[str, tuple] = {}
    for vcfg in configs.values():  # every variant's plan, before the first one trains
        key = json.dumps(dataclasses.asdict(vcfg.data), sort_keys=True)
        if key not in corpora:
            skipped: list[str] = []
            corpora[key] = (pipeline.load_utterances(vcfg, progress=progress, skipped=skipped), skipped)
        check_plan(vcfg, corpora[key][0])
    table, failed, execution = {}, {}, None
    run_prov = {} if threads is None else {"torch_threads": int(threads)}
    if backend is None:
        corpora.clear()
        for name, settings in variants:
            vcfg = configs[name]
            log.info("ablation variant %s: %s", name, settings)
            res = run_experiment(vcfg, out_dir / name, device=run_device, resume=resume, progress=progress,
                                 write_report=False, threads=threads)
            table[name] = {"set": settings, "summary": res["summary"], "timings": res["timings"]}
    else:
        # every variant's runs at once: no worker waits for the slowest run of a variant
        jobs = {name: prepare_experiment(configs[name], out_dir / name, device, resume, progress, backend=backend,
                                         corpus=corpora[json.dumps(dataclasses.asdict(configs[name].data),
                                                                   sort_keys=True)])
                for name, _ in variants}
        corpora.clear()
        backend.execute(list(jobs.values()), progress=progress)
        for name, settings in variants:
            try:
                res = finish_experiment(jobs[name], write_report=False)
            except RunsFailedError as e:
                res = e.results
                failed[name] = res["failed_runs"]
            table[name] = {"set": settings, "summary": res["summary"], "timings": res["timings"],
                           "failed_runs": res["failed_runs"]}
        device, execution, run_prov = jobs["base"].device, jobs["base"].execution, jobs["base"].provenance
    prov = provenance(device=device, seed=list(cfg.experiment.seeds))
    prov.update(run_prov)  # where the tasks ran (device, GPU name, threads)
    ablation = {"experiment": cfg.experiment.name, "config": config_record(cfg), "provenance": prov,
                "variants": table}
    if execution is not None:
        ablation["execution"] = execution
    atomic_write_json(out_dir / "ablation.json", ablation)
    write_ablation_table(ablation, out_dir / "ablation.md")
    if failed:
        lines = "\n".join(f"  variant {name}, seed {f['seed']} fold {f['fold']}: {f['error']}"
                          for name, fs in failed.items() for f in fs)
        raise RunsFailedError(f"{sum(map(len, failed.values()))} (seed, fold) runs failed:\n{lines}\nThe other "
                              f"runs finished: each variant's results.json lists its failures (failed_runs), and "
                              f"{out_dir / 'ablation.md'} is written; fix the cause and run the same command with "
                              "--resume to run only the missing ones.", ablation)
    return ablation
