"""Utterances cut from recordings (GRID): the split by recording, feature learning on the training
recordings only, per-modality RBM sparsity and the tracker's detection stride."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bimodal.dbn import BimodalDBN
from bimodal.errors import ConfigError
from data_prep.mouth_roi import track_mouth_boxes
from data_prep.readers import Utterance
from experiments import pipeline, tune
from experiments.config import Config, config_from_dict, with_overrides

DIGITS = ("one", "two", "three")


def token(sid, label, speaker="s1"):
    return Utterance(None, None, None, None, label, speaker, f"{speaker}/{sid}/5-{label}", f"{sid}.mkv",
                     group=f"{speaker}/{sid}")


def corpus(per_label=7, speaker="s1"):
    return [token(f"r{label}{i:02d}", label, speaker) for label in DIGITS for i in range(per_label)]


def test_recording_split_tests_one_in_n_of_every_label_and_never_a_recording_on_both_sides():
    utts = corpus(per_label=7)
    # a second token of a test recording must go with it
    utts.append(dataclasses.replace(utts[2], utterance_id=utts[2].utterance_id + "-again", label="two"))
    ((tr, te),) = pipeline.recording_split(utts, n_folds=3)
    rec = np.array([pipeline.recording_of(u) for u in utts])
    assert not set(rec[tr]) & set(rec[te])
    assert len(tr) + len(te) == len(utts)
    test_recs = {rec[i] for i in te}
    assert {lab: sum(r.startswith(f"s1/r{lab}") for r in test_recs) for lab in DIGITS} == {"one": 2, "two": 2,
                                                                                          "three": 2}  # 2, 5 of 0..6
    assert len(te) == 7  # 6 recordings + the second token of one of them


def test_speaker_splits_by_recording_only_for_one_speaker():
    cfg = config_from_dict({"experiment": {"split": "recordings", "n_folds": 3}})
    one = corpus()
    assert [s[1].tolist() for s in pipeline.speaker_splits(one, cfg, 0)] == \
           [s[1].tolist() for s in pipeline.speaker_splits(one, cfg, 5)]  # the same test set for every seed
    several = corpus(speaker="s1") + corpus(speaker="s2") + corpus(speaker="s3")
    splits = pipeline.speaker_splits(several, cfg, 0)
    assert len(splits) == 3  # speaker folds, as CUAVE's
    for tr, te in splits:
        assert not {several[i].speaker for i in tr} & {several[i].speaker for i in te}


def test_learning_recordings_are_those_of_training_tokens(monkeypatch):
    utts = corpus()
    sentences = [dataclasses.replace(u, label="(sentence)", utterance_id=u.group) for u in utts]
    monkeypatch.setattr(pipeline, "grid_views", lambda cfg, progress=True, warn=True: (utts, sentences))
    ((tr, te),) = pipeline.recording_split(utts, 3)
    chosen = pipeline.learning_recordings(Config(), [utts[i] for i in tr])
    assert {s.group for s in chosen} == {utts[i].group for i in tr}
    assert not {s.group for s in chosen} & {utts[i].group for i in te}


def test_tune_holds_out_training_recordings_only():
    cfg = config_from_dict({"experiment": {"split": "recordings"}, "eval": {"cv_folds": 3}})
    utts = corpus(per_label=9)
    train, test = pipeline.speaker_splits(utts, cfg, 0)[0]
    inner = tune.inner_splits(cfg, utts, 0)
    assert len(inner) == 3
    for fit, held in inner:
        assert set(fit) | set(held) == set(train) and not set(fit) & set(held) and not set(held) & set(test)
    assert tune.check_tunable(cfg, utts) == "recordings"
    with pytest.raises(ConfigError, match="one train/test pair"):
        tune.check_tunable(cfg, corpus(speaker="s1") + corpus(speaker="s2"))
    assert list(tune.stage_grids("rbm,audio_rbm")) == ["rbm", "audio_rbm"]
    with pytest.raises(ConfigError, match="--stages"):
        tune.stage_grids("rbm,video")


def test_config_checks_the_new_keys():
    with pytest.raises(ConfigError, match="learn_from"):
        config_from_dict({"data": {"learn_from": "recordings"}})  # the synthetic corpus has no recordings
    with pytest.raises(ConfigError, match="audio_sparsity_cost"):
        config_from_dict({"pretrain": {"audio_sparsity_cost": -1.0}})
    with pytest.raises(ConfigError, match="video_sparsity_target"):
        config_from_dict({"pretrain": {"video_sparsity_target": 1.5}})
    with pytest.raises(ConfigError, match="expected a number"):
        config_from_dict({"pretrain": {"audio_sparsity_cost": "high"}})
    cfg = config_from_dict({"pretrain": {"audio_sparsity_cost": 0.1}})
    assert cfg.pretrain.audio_sparsity_cost == 0.1 and cfg.pretrain.video_sparsity_cost is None
    assert with_overrides(cfg, {"pretrain.epochs": 3}).pretrain.audio_sparsity_cost == 0.1  # None survives a copy


def test_each_modality_first_rbm_takes_its_own_sparsity(tmp_path):
    cfg = config_from_dict({"pretrain": {"sparsity_target": 0.05, "sparsity_cost": 10.0, "audio_sparsity_cost": 0.1,
                                         "audio_sparsity_target": 0.0}})
    dbn = pipeline.build_bimodal_dbn(cfg, 12, 8, seed=0, device="cpu")
    audio, video = dbn.audio.layers[0], dbn.video.layers[0]
    assert audio.sparsity_target is None and audio.sparsity_cost == 0.1  # target 0 disables the penalty
    assert video.sparsity_target == 0.05 and video.sparsity_cost == 10.0
    assert dbn.joint.sparsity_cost == 10.0
    rng = np.random.default_rng(0)
    dbn.fit(audio=rng.normal(size=(64, 12)).astype("float32"), video=rng.normal(size=(64, 8)).astype("float32"),
            epochs=1, batch_size=32, progress=False)
    dbn.save(tmp_path / "dbn.pt")
    back = BimodalDBN.load(tmp_path / "dbn.pt", device="cpu")
    assert back.audio.layers[0].sparsity_cost == 0.1 and back.video.layers[0].sparsity_cost == 10.0


def test_tracking_every_kth_frame_interpolates_the_detected_centres():
    calls = []

    def moving_face(frame):  # a face whose box moves 2 px right per frame: frame t holds t in pixel (0, 0)
        calls.append(int(frame[0, 0]))
        return [(20 + 2 * int(frame[0, 0]), 10, 60, 60)]

    frames = np.zeros((10, 96, 128), np.uint8)
    frames[:, 0, 0] = np.arange(10)
    full, faces_full = track_mouth_boxes(frames, face_detector=moving_face, median=1, alpha=1.0)
    calls.clear()
    every3, faces3 = track_mouth_boxes(frames, face_detector=moving_face, median=1, alpha=1.0, every=3)
    assert calls == [0, 3, 6, 9]  # and the last frame
    np.testing.assert_allclose(every3[:, 0], full[:, 0], atol=1e-9)  # linear motion: interpolation is exact
    assert faces3.all() and faces_full.all()
    with pytest.raises(Exception, match="positive integer"):
        track_mouth_boxes(frames, face_detector=moving_face, every=0)


# --------------------------------------------------------------------------- the whole run on a tiny GRID tree
WORDS = {"one": 300.0, "two": 700.0, "three": 1300.0}  # tone (Hz) of each digit's recordings


def write_grid_recording(root, sid, digit, rng, n=40, fps=25, rate=16000):
    """A 1.6 s recording "bin <digit> now": a tone for the digit and a mouth-like dark blob that
    opens (grows) while it is spoken; 64x80 frames, so the mouth ROI is the resized frame."""
    from media import write_av

    t = np.arange(int(n / fps * rate)) / rate
    wave = (0.02 * rng.standard_normal(len(t))).astype(np.float32)
    speak = (t >= 0.6) & (t < 1.0)
    wave[speak] += 0.4 * np.sin(2 * np.pi * WORDS[digit] * t[speak]).astype(np.float32)
    yy, xx = np.mgrid[0:64, 0:80]
    frames = []
    for k in range(n):
        opening = 4 + (8 + 4 * list(WORDS).index(digit)) * (15 <= k < 25)
        blob = ((yy - 32) / opening) ** 2 + ((xx - 40) / 18) ** 2 < 1
        frames.append(np.where(blob, 40, 180 + rng.integers(0, 20, (64, 80))).astype(np.uint8))
    (root / "s1").mkdir(parents=True, exist_ok=True)
    write_av(root / "s1" / f"{sid}.mkv", np.stack(frames), fps, wave, rate)
    align = root / "alignments" / "s1" / f"{sid}.align"
    align.parent.mkdir(parents=True, exist_ok=True)
    lines = [(0, 10000, "sil"), (10000, 15000, "bin"), (15000, 25000, digit), (25000, 32000, "now"),
             (32000, 40000, "sil")]
    align.write_bytes("".join(f"{s} {e} {w}\r\n" for s, e, w in lines).encode())


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("tinygrid")
    rng = np.random.default_rng(0)
    for digit in WORDS:
        for i in range(6):
            write_grid_recording(root, f"{digit[:2]}{i}", digit, rng)
    return root


def test_grid_digits_runs_end_to_end_and_learns_from_training_recordings_only(tiny_grid, tmp_path, monkeypatch):
    from experiments.config import load_config
    from experiments.runner import run_experiment

    cfg = load_config(Path(__file__).resolve().parent.parent / "experiments" / "configs" / "grid_digits.toml",
                      [f'data.root="{tiny_grid}"', 'data.labels=["one", "two", "three"]', f'data.cache_dir="{tmp_path}"',
                       "model.audio_hidden=[16]", "model.video_hidden=[16]", "model.shared=16", "pretrain.epochs=2",
                       "finetune.epochs=2", "experiment.seeds=[0]", "eval.cv_folds=2", "eval.snr_db=[0.0]",
                       "eval.cca_components=4", "experiment.section47_rows=false"])
    seen = {}
    prepare = pipeline.prepare_fold

    def spy(c, utts, train_idx, test_idx, *a, **k):
        fold = prepare(c, utts, train_idx, test_idx, *a, **k)
        seen.update(train={utts[i].group for i in train_idx}, test={utts[i].group for i in test_idx},
                    learned=set(fold.recordings.utterance_ids), n_learning=len(fold.learning.audio),
                    n_train=len(fold.train.audio))
        return fold

    monkeypatch.setattr(pipeline, "prepare_fold", spy)
    results = run_experiment(cfg, tmp_path / "run", device="cpu", progress=False)
    assert seen["learned"] == seen["train"] and not seen["learned"] & seen["test"]
    assert len(seen["test"]) == 6  # every 3rd of each digit's 6 recordings
    assert seen["n_learning"] > 2 * seen["n_train"]  # whole sentences, not only the digit tokens
    s = results["summary"]
    for key in ("fusion/clean/rbm.audio", "fusion/0dB/bimodal_dae.both", "fusion/shift/0dB/rbm.audio",
                "shared_representation/audio->video/raw_cca", "matching/bimodal_dae/top1",
                "cross_modality/video/raw.video", "cross_modality/audio/rbm.audio"):
        assert key in s and np.isfinite(s[key]["mean"]), key
    assert s["fusion/clean/bimodal_dae.both"]["mean"] > 1 / 3 + 0.2  # 12 test digits, chance 1/3
    report = (tmp_path / "run" / "report.md").read_text()
    assert "One speaker" in report and "paper, CUAVE" in report and "paper, AVLetters" not in report
    assert "How far audio noise moves the features" in report


def test_grid_config_guards(tiny_grid, tmp_path):
    """GRID labels are words; the frame cache tells margins apart; the noisy tune stage needs noise."""
    from experiments.config import load_config

    path = Path(__file__).resolve().parent.parent / "experiments" / "configs" / "grid_digits.toml"
    base = [f'data.root="{tiny_grid}"', 'data.labels=["one", "two", "three"]', f'data.cache_dir="{tmp_path}"']
    with pytest.raises(ConfigError, match="data.labels are the GRID words"):
        load_config(path, [f'data.root="{tiny_grid}"', 'data.labels=["digits"]'])
    cfg = load_config(path, base)
    utts = pipeline.load_utterances(cfg, progress=False)
    wider = load_config(path, base + ["data.grid_margin_s=0.08"])
    assert pipeline.frame_cache_path(cfg, utts) != pipeline.frame_cache_path(wider, utts)
    no_fusion = load_config(path, base + ['experiment.settings=["cross_modality"]'])
    with pytest.raises(ConfigError, match="audio_rbm"):
        tune.tune(no_fusion, device="cpu", grids=tune.stage_grids("audio_rbm"), progress=False)
