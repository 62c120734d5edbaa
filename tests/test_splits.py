"""The AVLetters "third test" split, C-selection groups that match it, and skip-and-list in experiment runs."""
import numpy as np
import pytest

from experiments.config import config_from_dict
from bimodal.errors import ConfigError
from data_prep.readers import Utterance
from experiments import pipeline
from experiments.settings import FoldContext


def av_utt(label, speaker, rep, T=16, seed=0, audio_s=None, features=False):
    """A mouth-sized clip with a tone (or 50/s feature frames) of T / 25 s."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 255, (T, 60, 80)).astype(np.uint8)
    video[:, 20:40, (3 * seed) % 60:(3 * seed) % 60 + 15] = 250
    uid = f"{speaker}/{label}{rep}"
    if features:
        feats = rng.normal(size=(2 * T, 6)).astype(np.float32) + (label == "B")
        return Utterance(None, None, video, 25.0, label, speaker, uid, f"/x/{uid}.mat", audio_features=feats,
                         audio_frame_rate=50.0, repetition=rep)
    n = int((T / 25 if audio_s is None else audio_s) * 16000)
    t = np.arange(n) / 16000
    wave = (0.3 * np.sin(2 * np.pi * (300 if label == "A" else 700) * t) + 0.01 * rng.normal(size=n)).astype(np.float32)
    return Utterance(wave, 16000, video, 25.0, label, speaker, uid, f"/x/{uid}.avi", repetition=rep)


def corpus(**kw):
    return [av_utt(L, s, r, seed=i, **kw) for i, (s, L, r) in
            enumerate((s, L, r) for s in ("Ann", "Bob") for L in "AB" for r in ("1", "2", "3"))]


def cfg(split="third_test", settings=("cross_modality",)):
    return config_from_dict({
        "experiment": {"name": "t", "seeds": [0], "split": split, "settings": list(settings)},
        "data": {"source": "folder", "root": "/x", "labels": ["A", "B"], "prep": {"audio_pca": 6, "video_pca": 4}},
        "eval": {"snr_db": [0.0], "Cs": [0.1, 1.0], "cv_folds": 3, "backend": "sklearn"},
    })


def test_third_test_split_trains_on_reps_1_2_tests_rep_3():
    utts = corpus()
    (tr, te), = pipeline.speaker_splits(utts, cfg(), seed=0)
    assert {utts[i].repetition for i in tr} == {"1", "2"} and {utts[i].repetition for i in te} == {"3"}
    assert len(tr) == 8 and len(te) == 4
    # every speaker on both sides: the protocol is not speaker-disjoint
    assert {utts[i].speaker for i in tr} == {utts[i].speaker for i in te} == {"Ann", "Bob"}
    # numeric take ids compare as numbers: "10" is after "9"
    more = [av_utt("A", "Ann", r) for r in ("1", "2", "9", "10")]
    (_, te), = pipeline.repetition_split(more)
    assert [more[i].repetition for i in te] == ["10"]


def test_third_test_needs_repetition_ids():
    utts = corpus()
    utts[3].repetition = None
    with pytest.raises(ConfigError, match="needs a repetition id for every utterance; 1 have none"):
        pipeline.speaker_splits(utts, cfg(), seed=0)
    with pytest.raises(ConfigError, match="split"):
        cfg(split="thirds")


def test_c_selection_groups_follow_the_split():
    utts = corpus()
    (tr, te), = pipeline.speaker_splits(utts, cfg(), seed=0)
    fold = pipeline.prepare_fold(cfg(), utts, tr, te, seed=0, device="cpu", progress=False)
    ctx = FoldContext(cfg(), fold, {}, 0, "cpu", progress=False)
    assert sorted(set(ctx.cv_groups("train"))) == ["1", "2"]  # CV holds out a repetition
    ctx_folds = FoldContext(cfg(split="kfold"), fold, {}, 0, "cpu", progress=False)
    assert sorted(set(ctx_folds.cv_groups("train"))) == ["Ann", "Bob"]
    # the groups reach the C selection: a raw-video classifier with CV over the two repetitions
    y = ctx.labels("train")
    X = np.random.default_rng(0).normal(size=(8, 3)) + (y == "A")[:, None] * 3.0
    r = ctx.classify(X, y, ctx.cv_groups("train"), X, y)
    assert r["accuracy"] == 1.0
    assert r["C"] in (0.1, 1.0) and 0.0 <= r["accuracy"] <= 1.0


def test_prepare_fold_skips_and_lists_a_bad_clip():
    utts = corpus()
    bad = av_utt("B", "Bob", "3", seed=99, audio_s=0.002)  # 100-byte-like wave beside a 0.64 s video
    utts[-1] = bad
    (tr, te), = pipeline.speaker_splits(utts, cfg(), seed=0)
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        fold = pipeline.prepare_fold(cfg(), utts, tr, te, seed=0, device="cpu", progress=False)
    assert [d["utterance_id"] for d in fold.skipped["test"]] == ["Bob/B3"]
    assert "audio lasts 0.002 s but video lasts 0.640 s" in fold.skipped["test"][0]["reason"]
    assert fold.test.n_utterances == 3 and "fit" not in fold.skipped
    assert [u.utterance_id for u in fold.test_utts] == ["Ann/A3", "Ann/B3", "Bob/A3"]


def test_feature_audio_corpus_skips_noise_with_a_reason():
    utts = corpus(features=True)
    c = cfg(settings=("cross_modality", "fusion"))
    (tr, te), = pipeline.speaker_splits(utts, c, seed=0)
    fold = pipeline.prepare_fold(c, utts, tr, te, seed=0, device="cpu", progress=False)
    assert fold.test_noisy == {} and "cannot be added" in fold.noise_skipped
    assert fold.train.audio.shape[1] == 10 * 6
