"""Issue 18: a config that cannot run fails before the work, and the command line answers with an
error, never a traceback: the corpus plan, the device, the output folder, --seeds, SIGINT."""
import os

import numpy as np
import pytest
import torch

from bimodal.cli import main
from bimodal.errors import ConfigError
from data_prep.utterance import Utterance
from experiments.config import config_from_dict
from experiments.plan import check_plan, plan_problems
from media import write_av
from test_check import FPS, RATE, T, tone
from test_experiments import tiny_config
from test_mouth_roi import face


def utt(speaker, label, rep=None, group=None):
    return Utterance(audio=np.zeros(160, np.float32), sample_rate=16000, video=None, fps=None, label=label,
                     speaker=speaker, utterance_id=f"{speaker}-{label}-{rep}-{group}", path="", repetition=rep,
                     group=group)


def plan_cfg(**experiment):
    return config_from_dict({"experiment": {"seeds": [0, 1], "settings": ["cross_modality"], **experiment},
                             "data": {"labels": ["a", "b"]}})


def test_plan_refuses_folds_with_one_training_speaker():
    utts = [utt(s, lab) for s in ("s1", "s2") for lab in ("a", "b")]
    problems = plan_problems(plan_cfg(n_folds=2), utts)
    assert len(problems) == 4  # 2 seeds x 2 folds, each trains on one speaker
    assert all("1 speaker(s)" in p and "needs at least 2" in p for p in problems)
    with pytest.raises(ConfigError, match="cannot run on this corpus"):
        check_plan(plan_cfg(n_folds=2), utts)
    # three speakers in three folds: every fold trains on two, and can run
    assert plan_problems(plan_cfg(n_folds=3), utts + [utt("s3", "a"), utt("s3", "b")]) == []


def test_plan_refuses_a_label_missing_from_training():
    utts = [utt("s1", "a"), utt("s1", "b"), utt("s2", "a"), utt("s3", "a")]
    problems = plan_problems(plan_cfg(n_folds=3, seeds=[0]), utts)
    # only s1 says "b": the fold that tests s1 trains without it (and the others test no "b", which is fine)
    assert len(problems) == 1 and "(data.labels): label(s) ['b'] have no training utterance" in problems[0]


def test_plan_groups_as_the_classifier_does_on_a_recordings_split():
    """Two speakers in two folds: each fold trains on one speaker, whose C search holds out recordings
    (FoldContext.cv_groups splits a one-speaker training side by recording): the run can go."""
    utts = [utt(s, lab, group=f"{s}/r{i}") for s in ("s1", "s2") for lab in ("a", "b") for i in range(3)]
    assert plan_problems(plan_cfg(split="recordings", n_folds=2), utts) == []
    assert len(plan_problems(plan_cfg(split="kfold", n_folds=2), utts)) == 4  # by speaker: one each


def test_plan_checks_the_mcgurk_classifier_and_the_extra_folders(tmp_path):
    task = [utt(s, lab) for s in ("s1", "s2", "s3") for lab in ("a", "b")]
    mcgurk = [utt("s1", syl) for syl in ("ga", "ba", "da")]  # only one speaker says the syllables
    cfg = config_from_dict({"experiment": {"seeds": [0], "n_folds": 3, "settings": ["cross_modality", "mcgurk"]},
                            "data": {"labels": ["a", "b"], "extra_audio": str(tmp_path / "nowhere")}})
    problems = plan_problems(cfg, task + mcgurk)
    assert problems[0] == f"data.extra_audio = {str(tmp_path / 'nowhere')!r}: no such folder"
    assert any("(data.mcgurk_labels): the training side has 1 speaker(s)" in p for p in problems)
    assert not any("(data.labels)" in p for p in problems)


def test_plan_third_test_counts_repetitions():
    two_reps = [utt(s, lab, rep) for s in ("s1", "s2") for lab in ("a", "b") for rep in ("1", "2")]
    problems = plan_problems(plan_cfg(split="third_test"), two_reps)
    assert len(problems) == 1 and "1 repetition(s) ['1']" in problems[0]  # said once: every seed splits alike
    three = two_reps + [utt(s, lab, "3") for s in ("s1", "s2") for lab in ("a", "b")]
    assert plan_problems(plan_cfg(split="third_test"), three) == []


def test_run_on_a_two_speaker_corpus_fails_before_any_preprocessing(tmp_path, monkeypatch):
    from experiments import pipeline
    from experiments.runner import run_experiment

    def no_work(*a, **k):
        raise AssertionError("preprocessing started although the plan cannot run")

    monkeypatch.setattr(pipeline, "prepare_fold", no_work)
    cfg = tiny_config(tmp_path / "c", data={"synth_speakers": 2, "synth_repetitions": 1},
                      experiment={"settings": ["cross_modality"]})
    with pytest.raises(ConfigError, match=r"seed 0, fold 0 \(data.labels\): the training side has 1 speaker"):
        run_experiment(cfg, tmp_path / "out", device="cpu", progress=False)


@pytest.fixture(scope="module")
def two_speaker_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    faces = np.stack([face((80 + int(4 * np.sin(t / 3)), 118)) for t in range(T)])
    for s in ("s1", "s2"):
        for lab in ("yes", "no"):
            p = root / s / lab / f"{s}{lab}.avi"
            p.parent.mkdir(parents=True, exist_ok=True)
            write_av(p, faces, FPS, tone(2.0), RATE)
    return root


def test_data_check_says_when_a_config_cannot_run(two_speaker_folder, tmp_path, capsys):
    argv = ["-q", "data", "check", str(two_speaker_folder), "--montage", str(tmp_path / "m.png"),
            "--config", "demo", "--set", 'data.source="folder"', "--set", 'data.labels=["yes", "no"]',
            "--set", 'experiment.settings=["cross_modality"]', "--set", f'data.cache_dir="{tmp_path / "cache"}"']
    assert main(argv + ["--set", "experiment.n_folds=2"]) == 1
    out = capsys.readouterr().out
    assert "config 'demo' CANNOT run on this corpus" in out and "1 speaker(s)" in out


def test_device_without_a_gpu_is_an_error_before_the_data_is_read(tmp_path, capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from experiments import pipeline

    monkeypatch.setattr(pipeline, "load_utterances", lambda *a, **k: pytest.fail("data read before the device check"))
    assert main(["-q", "demo", "--out", str(tmp_path / "out"), "--device", "cuda"]) == 2
    assert "no CUDA GPU is available" in capsys.readouterr().err
    assert main(["-q", "demo", "--out", str(tmp_path / "out"), "--device", "tpu:x"]) == 2
    assert "not a device name" in capsys.readouterr().err


def test_out_that_is_a_file_or_unwritable_is_an_error_before_the_work(tmp_path, capsys, monkeypatch):
    from experiments import pipeline

    monkeypatch.setattr(pipeline, "load_utterances", lambda *a, **k: pytest.fail("data read before --out was checked"))
    a_file = tmp_path / "results.txt"
    a_file.write_text("x")
    assert main(["-q", "demo", "--out", str(a_file), "--device", "cpu"]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    if os.geteuid() == 0:
        return  # root writes anywhere
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert main(["-q", "demo", "--out", str(locked / "run"), "--device", "cpu"]) == 2
        assert "cannot create the output folder" in capsys.readouterr().err
        assert main(["-q", "demo", "--out", str(locked), "--device", "cpu"]) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_seeds_zero_is_honoured_not_ignored(tmp_path, capsys, monkeypatch):
    from experiments import runner

    monkeypatch.setattr(runner, "run_experiment", lambda *a, **k: pytest.fail("ran with the config's seeds"))
    assert main(["-q", "demo", "--out", str(tmp_path), "--seeds", "0"]) == 2
    assert "--seeds 0" in capsys.readouterr().err
    seen = {}

    def record(cfg, *a, **k):
        seen["seeds"] = cfg.experiment.seeds
        raise ConfigError("stop here")

    monkeypatch.setattr(runner, "run_experiment", record)
    main(["-q", "demo", "--out", str(tmp_path), "--seeds", "1"])
    assert seen["seeds"] == [0]


def test_interrupt_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from experiments import runner

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_experiment", interrupted)
    assert main(["-q", "demo", "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err and str(tmp_path / "run") in err and "Traceback" not in err


def test_ablation_checks_every_variants_plan_before_the_first_trains(tmp_path, monkeypatch):
    from experiments import pipeline, runner
    from experiments.config import AblationVariant

    monkeypatch.setattr(pipeline, "prepare_fold", lambda *a, **k: pytest.fail("trained before every plan was checked"))
    cfg = tiny_config(tmp_path / "c", data={"synth_speakers": 3, "synth_repetitions": 1},
                      experiment={"settings": ["cross_modality"], "n_folds": 3})
    cfg.ablation = [AblationVariant(name="fsdd", set={"data.extra_audio": str(tmp_path / "no-fsdd")})]
    with pytest.raises(ConfigError, match="data.extra_audio = .*no-fsdd.*: no such folder"):
        runner.run_ablation(cfg, tmp_path / "out", device="cpu", progress=False)
