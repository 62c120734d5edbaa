"""Run the (seed, fold) runs of an experiment as Ray tasks, on this machine's cores or a Ray cluster.

``bimodal reproduce|demo --workers N`` starts a local Ray with N worker CPUs
(``ray.init(num_cpus=N)``); ``--ray-address ADDR`` joins a running cluster (``ray.init(address=ADDR)``,
``auto`` for the one this machine belongs to). Ray is an optional extra (``pip install -e '.[ray]'``),
imported only here and only when one of those flags is given; an already initialised Ray (a test's,
a notebook's) is used as it is and left running.

One task = one (seed, fold) run, :func:`experiments.runner.execute_run`, the function the sequential
loop calls: it seeds itself from the run's seed, trains into the run's checkpoint folder
``OUT/checkpoints/seed{S}_fold{F}/`` and writes the run's results fragment ``results.json`` there
(atomically). The driver (the ``bimodal`` process) puts the corpus into Ray's object store once,
sends the runs that are not finished yet, and gathers the returned runs in plan order into the same
``results.json``, report and claims as a sequential run. The output folder is the only state:
``--resume`` reads the fragments of finished runs and sends only the others.

Frame cache: before the first run, one task computes the per-utterance frames (spectrograms, mouth
crops) the cache file lacks and writes the file; every run task then loads it itself
(:func:`experiments.pipeline.load_frame_cache`) and computes, without saving, only what is
fold-specific (noisy test versions, McGurk stimuli). Frames are deterministic, so a cached frame and
a computed one are the same numbers.

Threads: each task requests ``cpus_per_run`` CPUs (default 1) and ``gpus_per_run`` GPUs (default 0)
and runs torch and the BLAS pools with ``max(1, int(cpus_per_run))`` threads
(:class:`experiments.runner.run_threads`); ``bimodal ... --cpus-per-run N`` without Ray runs the
sequential loop with the same thread count, to compare the two.

Faults: a task whose worker process dies (killed, out of memory, its node lost) is retried by Ray
up to ``max_retries`` times, from the start of its run, with the same seed, hence the same numbers. A
run that raises (a :class:`bimodal.errors.BimodalError`, a diverged training, any Python exception)
is not retried: it is listed once with its error in ``results.json`` (``failed_runs``) and the
report, the other runs finish, and :class:`experiments.runner.RunsFailedError` ends the command
with a non-zero status.

Test-only hooks, read from the driver's environment and checked in the task:
``BIMODAL_TEST_KILL_ONCE=<marker path>:<seed>:<fold>`` makes the task of that run kill its worker
(``os._exit(1)``) if the marker file does not exist yet (it creates it first), so the retry goes
through; ``BIMODAL_TEST_FAIL_RUN=<seed>:<fold>[:<log file>]`` makes that run raise a BimodalError
(appending a line to the log file, when given, at each attempt).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import time
import warnings
from pathlib import Path

from bimodal.errors import BimodalError, ConfigError, DataError

log = logging.getLogger(__name__)

KILL_ONCE_ENV = "BIMODAL_TEST_KILL_ONCE"
FAIL_RUN_ENV = "BIMODAL_TEST_FAIL_RUN"
INSTALL_HINT = "pip install -e '.[ray]'"


def import_ray():
    """The ``ray`` module, or a ConfigError saying how to install the extra."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"--workers / --ray-address run the (seed, fold) runs as Ray tasks, but Ray is not "
                          f"installed here ({exc}); install the extra: {INSTALL_HINT}") from None
    return ray


def backend_from_options(workers: int | None = None, address: str | None = None, cpus_per_run: float | None = None,
                         gpus_per_run: float | None = None) -> tuple["RayBackend | None", int | None]:
    """The command line's run options as (a RayBackend or None for the sequential loop, torch threads
    per run of the sequential loop or None); ConfigError for a bad combination, or when Ray is needed
    and not installed."""
    if workers is None and not address:
        if gpus_per_run is not None:
            raise ConfigError("--gpus-per-run is the share of a GPU each Ray task takes: add --workers N (a local "
                              "Ray) or --ray-address ADDR (a cluster)")
        if cpus_per_run is not None and cpus_per_run < 1:
            raise ConfigError(f"--cpus-per-run {cpus_per_run:g}: without Ray it is the torch threads of each run, "
                              "at least 1")
        return None, None if cpus_per_run is None else int(cpus_per_run)
    backend = RayBackend(workers=workers, address=address or None,
                         cpus_per_run=1.0 if cpus_per_run is None else float(cpus_per_run),
                         gpus_per_run=0.0 if gpus_per_run is None else float(gpus_per_run))
    import_ray()  # before any work
    return backend, None


@dataclasses.dataclass(frozen=True)
class RayBackend:
    """Where and with what resources the runs go: a local Ray with ``workers`` CPUs, or the cluster
    at ``address``; each run takes ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs, and is retried
    ``max_retries`` times when its worker dies."""

    workers: int | None = None
    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 3

    def __post_init__(self):
        if self.workers is not None and self.address:
            raise ConfigError("--workers N starts a local Ray with N CPUs; --ray-address joins a running cluster, "
                              "whose CPUs are its own: give one of them")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: at least 1")
        if not self.cpus_per_run > 0:
            raise ConfigError(f"--cpus-per-run {self.cpus_per_run:g}: must be positive")
        if self.gpus_per_run < 0 or (self.gpus_per_run > 1 and self.gpus_per_run != int(self.gpus_per_run)):
            raise ConfigError(f"--gpus-per-run {self.gpus_per_run:g}: a fraction of one GPU (0 < F <= 1) or a "
                              "whole number of GPUs")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries {self.max_retries}: at least 0")

    @property
    def threads(self) -> int:
        """torch and BLAS threads of each task."""
        return max(1, int(self.cpus_per_run))

    def run_device(self, cfg, device) -> str:
        """The device the tasks run on, as a name each task resolves on its node: ``cuda`` when the
        runs get GPUs (Ray picks which one: it sets the task's CUDA_VISIBLE_DEVICES), else ``cpu``."""
        wanted = str(device if device is not None else cfg.experiment.device)
        if wanted == "auto":
            return "cuda" if self.gpus_per_run > 0 else "cpu"
        if wanted.startswith("cuda"):
            if self.gpus_per_run <= 0:
                raise ConfigError(f"--device {wanted} on Ray: give each run its share of a GPU with --gpus-per-run "
                                  "F (e.g. 0.5 for two runs per GPU)")
            if wanted != "cuda":
                raise ConfigError(f"--device {wanted} on Ray: Ray assigns each run its GPU (--gpus-per-run); use "
                                  "--device cuda or auto")
            return "cuda"
        if wanted != "cpu":
            raise ConfigError(f"device {wanted!r}: not a device name (expected auto, cpu or cuda)")
        if self.gpus_per_run > 0:
            raise ConfigError("--gpus-per-run with --device cpu: the runs would hold GPUs they never use")
        return "cpu"

    # ------------------------------------------------------------------ connecting
    def connect(self):
        """``(ray, started)``: the initialised ray module, and whether this call started it (and so
        must shut it down)."""
        ray = import_ray()
        if ray.is_initialized():
            return ray, False
        level = logging.getLogger().getEffectiveLevel()
        quiet = {"logging_level": max(level, logging.WARNING), "log_to_driver": True}
        try:
            if self.address:
                ray.init(address=self.address, **quiet)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, **quiet)
        except ConnectionError as exc:
            raise ConfigError(f"--ray-address {self.address}: cannot join a Ray cluster there ({exc}); start one with "
                              "`ray start --head` (README: Running on several cores or a Ray cluster)") from None
        return ray, True

    @contextlib.contextmanager
    def session(self, cancel_on_error):
        """Ray connected (:meth:`connect`) and checked to have room for one run; on Ctrl-C, or any error
        that ends the caller early, the tasks in ``cancel_on_error`` (a collection the caller fills
        as it sends them) are cancelled, so none is left running on a cluster; Ray is shut down on the
        way out if this started it."""
        ray, started = self.connect()
        try:
            self._check_resources(ray)
            yield ray
        except BaseException:
            for ref in list(cancel_on_error):  # finished runs keep their fragments: --resume reuses them
                ray.cancel(ref, force=True)
            raise
        finally:
            if started:
                ray.shutdown()

    def _check_resources(self, ray) -> None:
        have = ray.cluster_resources()
        if have.get("CPU", 0) < self.cpus_per_run:
            raise ConfigError(f"--cpus-per-run {self.cpus_per_run:g}: the Ray cluster has {have.get('CPU', 0):g} CPUs "
                              "in all, so no run could ever start")
        if self.gpus_per_run > 0 and have.get("GPU", 0) < self.gpus_per_run:
            raise ConfigError(f"--gpus-per-run {self.gpus_per_run:g}: the Ray cluster has {have.get('GPU', 0):g} GPUs, "
                              "so no run could ever start")

    def execution(self) -> dict:
        """How the work ran, as results.json / tuning.json record it (``execution``)."""
        return {"backend": "ray", "address": self.address or "local", "workers": self.workers,
                "cpus_per_run": self.cpus_per_run, "gpus_per_run": self.gpus_per_run,
                "max_retries": self.max_retries, "torch_threads": self.threads}

    def _remote(self, ray, fn, **options):
        """``fn`` as a Ray task with each run's resources and retries of a lost worker."""
        return ray.remote(fn).options(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                                      max_retries=self.max_retries, **options)

    # ------------------------------------------------------------------ running
    def execute(self, jobs: list, progress: bool = True) -> None:
        """Run the pending runs of every :class:`experiments.runner.ExperimentJob` in ``jobs`` as Ray
        tasks; fills each job's ``runs``, ``failed``, stage timings, ``execution`` and provenance."""
        from tqdm.auto import tqdm

        todo = [(job, spec) for job in jobs for spec in job.pending]
        for job in jobs:
            job.execution = self.execution()
            job.provenance["torch_threads"] = self.threads
        if not todo:
            return
        pending = {}
        with self.session(pending) as ray:
            run_task = self._remote(ray, _run_task, retry_exceptions=False)
            frames_task = self._remote(ray, _frames_task)
            hooks = {k: os.environ[k] for k in (KILL_ONCE_ENV, FAIL_RUN_ENV) if os.environ.get(k)}
            level = logging.getLogger().getEffectiveLevel()
            corpus_refs, cfgs = {}, {}
            for job, _ in todo:
                if id(job.utts) not in corpus_refs:
                    corpus_refs[id(job.utts)] = ray.put(job.utts)  # one copy of each corpus for all tasks
                cfgs[id(job)] = _absolute_paths(job.cfg)
            warm = {}
            for job, _ in todo:
                path = str(Path(job.cache_path).absolute())
                if path not in warm:
                    warm[path] = frames_task.remote(cfgs[id(job)], corpus_refs[id(job.utts)], path, job.device,
                                                    self.threads)
            t0 = time.perf_counter()
            for path, ref in warm.items():
                try:
                    n = ray.get(ref)
                    log.info("frame cache %s: %d frames added before the runs (%.1f s)", path, n,
                             time.perf_counter() - t0)
                except ray.exceptions.RayError as exc:  # the runs then compute their own frames
                    log.warning("frame cache %s not filled before the runs (%s)", path, _error_text(exc, ray))
            for job, spec in todo:
                spec = dataclasses.replace(spec, ckpt=spec.ckpt.absolute())
                ref = run_task.remote(cfgs[id(job)], corpus_refs[id(job.utts)], spec, job.device, job.resume,
                                      self.threads, str(Path(job.cache_path).absolute()), hooks, level,
                                      [str(r) for r in job.cfg.data.extra_av])
                pending[ref] = (job, spec)
            log.info("%d runs sent to Ray (%g CPU, %g GPU each; cluster: %s)", len(pending), self.cpus_per_run,
                     self.gpus_per_run, ray.cluster_resources())
            bar = tqdm(total=len(pending), desc="runs", unit="run", disable=not progress)
            nodes = set()
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job, spec = pending.pop(ref)
                    try:
                        out = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        error = _error_text(exc, ray)
                        if isinstance(exc, _worker_lost_errors(ray)):  # retried, and lost every time
                            error = f"{error} (its worker died on each of {self.max_retries + 1} attempts)"
                        log.error("seed %d fold %d failed: %s", spec.seed, spec.fold, error)
                        job.failed.append({"seed": spec.seed, "fold": spec.fold, "error": error})
                    else:
                        job.runs[spec.key] = out["run"]
                        for name, sec in out["timings"].items():
                            job.timer.seconds[name] = job.timer.seconds.get(name, 0.0) + sec
                        job.provenance.update(device=out["device"], cuda_device_name=out["cuda_device_name"])
                        nodes.add(out["node"])
                        log.info("seed %d fold %d done on %s in %.0f s", spec.seed, spec.fold, out["node"],
                                 sum(out["timings"].values()))
                    bar.update(1)
            bar.close()
            for job in jobs:
                job.execution["nodes"] = sorted(nodes)

    def map(self, fn, calls: list, shared: tuple = (), progress: bool = True, desc: str = "tasks") -> list:
        """``[fn(*shared, *call) for call in calls]`` as Ray tasks with this backend's resources and
        threads, the ``shared`` arguments sent once, the results in the order of ``calls``. A task
        whose worker dies is retried; one that raises is not: the others finish, then
        :class:`BimodalError` names every failed call with its error. ``fn`` must be importable
        (a module-level function)."""
        from tqdm.auto import tqdm

        refs = []
        with self.session(refs) as ray:
            task = self._remote(ray, _call_task, retry_exceptions=False)
            shared_refs = [ray.put(x) for x in shared]  # top-level refs: each task gets the value
            level = logging.getLogger().getEffectiveLevel()
            refs.extend(task.remote(fn, self.threads, level, *shared_refs, *call) for call in calls)
            index = {ref: i for i, ref in enumerate(refs)}
            results, failed, pending = [None] * len(refs), [], list(refs)
            bar = tqdm(total=len(refs), desc=desc, unit="task", disable=not progress)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        results[index[ref]] = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        failed.append((index[ref], _error_text(exc, ray)))
                    bar.update(1)
            bar.close()
        if failed:
            lines = "\n".join(f"  {desc} {i + 1} of {len(calls)}: {error}" for i, error in sorted(failed))
            raise BimodalError(f"{len(failed)} of {len(calls)} Ray tasks failed:\n{lines}")
        return results


def _worker_lost_errors(ray) -> tuple:
    """Ray's errors for a task whose worker process or node was lost (those Ray retries)."""
    names = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "LocalRayletDiedError")
    return tuple(getattr(ray.exceptions, n) for n in names if hasattr(ray.exceptions, n))


def _error_text(exc, ray) -> str:
    """One line for a failed task: the run's own exception (type: message), or what Ray says when
    its worker died on every attempt."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and cause is not None:
        return f"{type(cause).__name__}: " + " / ".join(line.strip() for line in str(cause).splitlines() if line.strip())
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _absolute_paths(cfg):
    """``cfg`` with its data paths made absolute from the driver's working directory, so a task on
    another node (or in another folder) reads the same files. The stored config is the original."""
    d = cfg.data

    def ab(p):
        return os.path.abspath(p) if p else p

    data = dataclasses.replace(d, root=ab(d.root), cache_dir=ab(d.cache_dir), extra_audio=ab(d.extra_audio),
                               extra_av=[ab(p) for p in d.extra_av])
    return dataclasses.replace(cfg, data=data)


def _test_hooks(hooks: dict, spec) -> None:
    """The test-only hooks (module docstring): kill this worker once, or fail this run."""
    kill = hooks.get(KILL_ONCE_ENV)
    if kill:
        marker, seed, fold = kill.rsplit(":", 2)
        if (int(seed), int(fold)) == spec.key and not os.path.exists(marker):
            Path(marker).write_text(f"killed worker {os.getpid()}\n")
            os._exit(1)
    fail = hooks.get(FAIL_RUN_ENV)
    if fail:
        seed, fold, *log_file = fail.split(":", 2)
        if (int(seed), int(fold)) == spec.key:
            if log_file:  # one line per attempt
                with open(log_file[0], "a", encoding="utf-8") as f:
                    f.write(f"attempt in worker {os.getpid()}\n")
            raise BimodalError(f"{FAIL_RUN_ENV}: seed {spec.seed} fold {spec.fold} fails on purpose (test hook)")


def _setup_logging(level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger().setLevel(level)


def _run_task(cfg, utts, spec, device: str, resume: bool, threads: int, cache_path: str, hooks: dict,
              log_level: int, extra_av_roots: list) -> dict:
    """One (seed, fold) run in a Ray worker: :func:`experiments.runner.execute_run` with the frame
    cache file loaded here and ``threads`` torch/BLAS threads. Returns the run's results, its stage
    timings and where it ran."""
    import torch

    from bimodal.device import resolve_device
    from experiments import pipeline, runner

    _setup_logging(log_level)
    _test_hooks(hooks, spec)
    dev = resolve_device(device)
    timer = runner.StageTimer()
    with runner.run_threads(threads):
        frame_cache = pipeline.load_frame_cache(Path(cache_path))  # read here; the fold's new frames are not saved
        run = runner.execute_run(cfg, utts, spec, dev, resume, False, timer, frame_cache, extra_av_roots)
    return {"run": run, "timings": timer.seconds, "device": str(dev), "node": platform.node(),
            "cuda_device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None}


def _frames_task(cfg, utts, cache_path: str, device: str, threads: int) -> int:
    """Fill the frame cache file with every utterance's clean frames it lacks, on the runs' kind of
    device; returns how many were added (unusable utterances are left to the runs, which skip them)."""
    from bimodal.device import resolve_device
    from data_prep.dataset import Preprocessor
    from experiments import pipeline, runner
    from experiments.config import prep_config

    path = Path(cache_path)
    with runner.run_threads(threads):
        cache = pipeline.load_frame_cache(path)
        n = len(cache)
        prep = Preprocessor(prep_config(cfg), device=resolve_device(device), frame_cache=cache)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the runs warn about unusable utterances themselves
            def fill(read):
                try:
                    utterances = read()
                    if utterances:
                        prep._all_frames(utterances, None, False, "frames", strict=False)
                except DataError:
                    pass  # none usable: each run says why

            fill(lambda: list(utts))
            if cfg.data.extra_audio:  # the runs cache the extra audio's frames too
                fill(lambda: pipeline.load_extra_audio(cfg.data.extra_audio))
        if len(cache) > n:
            pipeline.save_frame_cache(cache, path)
    return len(cache) - n


def _call_task(fn, threads: int, log_level: int, *args):
    """One :meth:`RayBackend.map` call in a Ray worker, with ``threads`` torch/BLAS threads."""
    from experiments import runner

    _setup_logging(log_level)
    with runner.run_threads(threads):
        return fn(*args)
