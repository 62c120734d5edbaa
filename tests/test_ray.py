"""Runs as Ray tasks (experiments/ray_backend.py): the sequential loop's numbers, a killed worker's run
retried, a failing run listed while the others finish, --resume over the fragments of an interrupted
run; and the error without Ray. The Ray tests need the extra (pip install -e '.[ray]'; CI installs it)."""
import json
import shutil
import sys

import pytest

from bimodal.cli import main
from bimodal.errors import ConfigError
from test_experiments import tiny_config

NEEDS_RAY = "Ray is an optional extra (pip install -e '.[ray]'); CI installs it"
SEEDS = {"experiment": {"seeds": [0, 1]}}  # 2 seeds x 2 speaker folds = 4 runs


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray (2 CPUs) for the module; the backend uses it as it is (init costs seconds)."""
    ray = pytest.importorskip("ray", reason=NEEDS_RAY)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tmp_path_factory.mktemp("corpus") / "tiny"


@pytest.fixture(scope="module")
def sequential(corpus, tmp_path_factory):
    """The reference: the 4 runs one after the other in this process (today's code path)."""
    from experiments.runner import run_experiment

    out = tmp_path_factory.mktemp("seq")
    return run_experiment(tiny_config(corpus, **SEEDS), out, device="cpu", progress=False, write_report=False)


@pytest.fixture(scope="module")
def on_ray(ray_session, corpus, sequential, tmp_path_factory):
    """The same config as 4 Ray tasks on 2 workers, with a frame cache of its own (filled by the
    frames task before the runs)."""
    from experiments.ray_backend import RayBackend
    from experiments.runner import run_experiment

    out = tmp_path_factory.mktemp("ray")
    cache = tmp_path_factory.mktemp("ray-cache")
    cfg = tiny_config(corpus, **SEEDS, data={"cache_dir": str(cache)})
    results = run_experiment(cfg, out, device="cpu", progress=False, backend=RayBackend(workers=2))
    return cfg, out, cache, results


def _metrics(results):
    return [(r["seed"], r["fold"], r["metrics"]) for r in results["runs"]]


def test_ray_tasks_give_the_sequential_numbers(ray_session, sequential, on_ray):
    cfg, out, cache, results = on_ray
    assert results["summary"] == sequential["summary"]
    assert _metrics(results) == _metrics(sequential)
    assert [(r["seed"], r["fold"]) for r in results["runs"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["summary"] == sequential["summary"] and on_disk["failed_runs"] == []
    assert on_disk["execution"]["backend"] == "ray" and on_disk["execution"]["torch_threads"] == 1
    assert on_disk["provenance"]["device"] == "cpu" and on_disk["claims"]
    for seed in (0, 1):  # every run wrote its fragment and its models
        for fold in (0, 1):
            ckpt = out / "checkpoints" / f"seed{seed}_fold{fold}"
            assert json.loads((ckpt / "results.json").read_text())["metrics"] == results["runs"][2 * seed + fold]["metrics"]
            assert (ckpt / "bimodal_dae.pt").is_file()
    assert (out / "report.md").is_file() and "failed" not in (out / "report.md").read_text()
    assert list(cache.glob("frames-*.npz")), "the frames task wrote no frame cache"
    assert not list(out.rglob("*.tmp"))


def test_a_killed_worker_is_retried_with_the_same_numbers(ray_session, corpus, sequential, tmp_path, monkeypatch):
    """An ablation on Ray (every variant's runs sent at once) where the first attempt of one run kills
    its worker: Ray retries it and every number is the sequential run's (the variant changes only
    where the frame cache lives, so both variants have the base config's numbers)."""
    from experiments.config import AblationVariant
    from experiments.ray_backend import KILL_ONCE_ENV, RayBackend
    from experiments.runner import run_ablation

    marker = tmp_path / "killed-once"
    monkeypatch.setenv(KILL_ONCE_ENV, f"{marker}:1:0")  # the first attempt of a seed 1 fold 0 run kills its worker
    cfg = tiny_config(corpus, **SEEDS)
    cfg.ablation = [AblationVariant(name="own-cache", set={"data.cache_dir": str(tmp_path / "cache")})]
    ab = run_ablation(cfg, tmp_path / "out", device="cpu", progress=False, backend=RayBackend(workers=2))
    assert marker.is_file(), "the hook never killed a worker"
    assert set(ab["variants"]) == {"base", "own-cache"} and ab["execution"]["backend"] == "ray"
    for name, v in ab["variants"].items():
        assert v["failed_runs"] == [] and v["summary"] == sequential["summary"], name
        results = json.loads((tmp_path / "out" / name / "results.json").read_text())
        assert _metrics(results) == _metrics(sequential), name
    assert "ran together as Ray tasks" in (tmp_path / "out" / "ablation.md").read_text()
    assert list((tmp_path / "cache").glob("frames-*.npz"))


def _toml(data: dict) -> str:
    """The nested config dict as TOML (tables of scalars and lists only)."""
    lines = []

    def table(name, d):
        lines.append(f"[{name}]")
        subs = {}
        for k, v in d.items():
            if isinstance(v, dict):
                subs[k] = v
            else:
                lines.append(f"{k} = {json.dumps(v)}")
        for k, v in subs.items():
            table(f"{name}.{k}", v)

    for name, d in data.items():
        table(name, d)
    return "\n".join(lines) + "\n"


def test_a_failing_run_is_listed_and_the_others_finish(ray_session, corpus, sequential, tmp_path, monkeypatch,
                                                        capsys):
    """`bimodal reproduce CONFIG --workers 2` with one run raising: it is not retried, the 3 others
    finish, results.json and the report list the failure, and the command fails with a clear message."""
    from experiments.ray_backend import FAIL_RUN_ENV

    cfg = tiny_config(corpus, **SEEDS)
    data = json.loads(json.dumps({"experiment": {"name": "tiny", "seeds": [0, 1], "n_folds": 2},
                                  "data": {k: getattr(cfg.data, k) for k in ("source", "root", "cache_dir", "labels",
                                                                             "synth_speakers", "synth_repetitions",
                                                                             "synth_vocabulary")},
                                  "model": {"audio_hidden": [24], "video_hidden": [24], "shared": 24},
                                  "pretrain": {"epochs": 2, "lr_gaussian": 0.005}, "finetune": {"epochs": 3},
                                  "eval": {"Cs": [0.1, 1.0], "cv_folds": 2, "snr_db": [0.0], "cca_components": 4,
                                           "backend": "sklearn"}}))
    data["data"]["prep"] = {"audio_pca": 12, "video_pca": 8}
    path = tmp_path / "tiny.toml"
    path.write_text(_toml(data))
    attempts = tmp_path / "attempts.log"
    monkeypatch.setenv(FAIL_RUN_ENV, f"0:1:{attempts}")
    out = tmp_path / "out"
    assert main(["-q", "reproduce", str(path), "--out", str(out), "--device", "cpu", "--workers", "2"]) == 2
    captured = capsys.readouterr()
    assert "1 of 4 (seed, fold) runs failed" in captured.err and "seed 0 fold 1: BimodalError" in captured.err
    assert "--resume" in captured.err and "3 runs (seeds x speaker folds), 1 failed" in captured.out
    results = json.loads((out / "results.json").read_text())
    assert len(results["failed_runs"]) == 1
    failed = results["failed_runs"][0]
    assert (failed["seed"], failed["fold"]) == (0, 1) and "fails on purpose" in failed["error"]
    assert len(attempts.read_text().splitlines()) == 1  # an exception of the run's own: not retried
    others = [m for m in _metrics(sequential) if m[:2] != (0, 1)]
    assert _metrics(results) == others
    assert not (out / "checkpoints" / "seed0_fold1" / "results.json").exists()
    report = (out / "report.md").read_text()
    assert "1 of 4 (seed, fold) runs failed" in report and "fails on purpose" in report


def test_resume_after_an_interrupted_ray_run_reuses_the_fragments(ray_session, on_ray, sequential, tmp_path):
    from experiments.ray_backend import RayBackend
    from experiments.runner import run_experiment

    cfg, out, _, _ = on_ray
    run_dir = tmp_path / "run"
    shutil.copytree(out, run_dir)
    # interrupted before seed 1 fold 0 finished: no fragment (its models may be there)
    (run_dir / "checkpoints" / "seed1_fold0" / "results.json").unlink()
    touched = {p: p.stat().st_mtime_ns for p in run_dir.glob("checkpoints/*/*") if p.parent.name != "seed1_fold0"}
    results = run_experiment(cfg, run_dir, device="cpu", resume=True, progress=False, write_report=False,
                             backend=RayBackend(workers=2))
    assert (run_dir / "checkpoints" / "seed1_fold0" / "results.json").is_file()
    # the other runs were not redone: their fragments, whitening and models are untouched
    assert {p: p.stat().st_mtime_ns for p in touched} == touched
    assert results["summary"] == sequential["summary"] and _metrics(results) == _metrics(sequential)


def test_ray_flags_without_ray_name_the_extra(tmp_path, capsys, monkeypatch):
    from experiments.ray_backend import backend_from_options

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'"):
        backend_from_options(workers=2)
    assert main(["-q", "demo", "--out", str(tmp_path / "run"), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "Ray is not installed" in err and "pip install -e '.[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before any work
    assert main(["-q", "tune", "demo", "--out", str(tmp_path / "tune"), "--workers", "2"]) == 2
    assert "Ray is not installed" in capsys.readouterr().err and not (tmp_path / "tune").exists()


def test_run_options_are_checked(capsys):
    from experiments.ray_backend import RayBackend, backend_from_options

    assert backend_from_options() == (None, None)
    assert backend_from_options(cpus_per_run=2) == (None, 2)  # the sequential runs' torch threads
    for kwargs, msg in [({"gpus_per_run": 0.5}, "add --workers N"), ({"cpus_per_run": 0.5}, "at least 1")]:
        with pytest.raises(ConfigError, match=msg):
            backend_from_options(**kwargs)
    for kwargs, msg in [({"workers": 2, "address": "auto"}, "give one of them"), ({"workers": 0}, "at least 1"),
                        ({"workers": 1, "gpus_per_run": 1.5}, "fraction of one GPU"),
                        ({"workers": 1, "cpus_per_run": 0}, "positive")]:
        with pytest.raises(ConfigError, match=msg):
            RayBackend(**kwargs)
    cfg = tiny_config("/nonexistent")
    assert RayBackend(workers=1).run_device(cfg, None) == "cpu"
    assert RayBackend(workers=1, gpus_per_run=0.5).run_device(cfg, "auto") == "cuda"
    with pytest.raises(ConfigError, match="--gpus-per-run"):
        RayBackend(workers=1).run_device(cfg, "cuda")
    with pytest.raises(ConfigError, match="use --device cuda"):
        RayBackend(workers=1, gpus_per_run=1).run_device(cfg, "cuda:1")


def test_tune_candidates_on_ray_give_the_sequential_choice(ray_session, corpus):
    """`bimodal tune --workers 2`: each stage's candidates as Ray tasks (one thread each) score and
    choose exactly as the sequential loop with one thread."""
    from experiments.ray_backend import RayBackend
    from experiments.tune import tune

    cfg = tiny_config(corpus, experiment={"split": "even_odd"})
    grids = {"rbm": {"pretrain.sparsity_target": [0.01, 0.2]}, "dae": {"finetune.epochs": [1, 2]}}
    seq = tune(cfg, seed=0, device="cpu", grids=grids, progress=False, threads=1)
    ray = tune(cfg, seed=0, device="cpu", grids=grids, progress=False, backend=RayBackend(workers=2))
    assert ray["chosen"] == seq["chosen"]
    for a, b in zip(seq["stages"], ray["stages"]):
        assert [(r["overrides"], r["scores"]) for r in a["rows"]] == [(r["overrides"], r["scores"]) for r in b["rows"]]
    assert ray["execution"]["backend"] == "ray" and seq["execution"] == {"backend": "sequential", "torch_threads": 1}


def test_a_failing_task_is_named_after_the_others_finish(ray_session):
    from bimodal.errors import BimodalError
    from experiments.ray_backend import RayBackend

    with pytest.raises(BimodalError, match=r"1 of 3 Ray tasks failed:\n  probe 2 of 3: ZeroDivisionError"):
        RayBackend(workers=2).map(divmod, [(1,), (0,), (2,)], shared=(6,), progress=False, desc="probe")
    assert RayBackend(workers=2).map(divmod, [(1,), (4,)], shared=(6,), progress=False) == [(6, 0), (1, 2)]


def test_a_task_records_the_extra_av_roots_as_given(tmp_path, monkeypatch):
    """A Ray task runs on absolute data paths; its results (and fragment) name the extra corpora as
    the user gave them, as a sequential run does."""
    import numpy as np

    from experiments import runner

    monkeypatch.setattr(runner, "run_fold", lambda *a, **k: {"extra_av": [{"root": "/abs/grid", "scale": 1.2}]})
    spec = runner.RunSpec(0, 0, np.arange(2), np.arange(2, 3), tmp_path / "ckpt")
    (tmp_path / "ckpt").mkdir()
    run = runner.execute_run(None, [], spec, "cpu", False, False, runner.StageTimer(), None, ["../data/grid"])
    assert run["extra_av"] == [{"root": "../data/grid", "scale": 1.2}]
    assert json.loads(spec.fragment.read_text())["extra_av"] == run["extra_av"]


def test_only_lost_workers_are_called_dead():
    ray = pytest.importorskip("ray", reason=NEEDS_RAY)
    from experiments.ray_backend import _worker_lost_errors

    lost = _worker_lost_errors(ray)
    assert ray.exceptions.WorkerCrashedError in lost and ray.exceptions.NodeDiedError in lost
    assert not issubclass(ray.exceptions.GetTimeoutError, lost) and not issubclass(ray.exceptions.RayTaskError, lost)
