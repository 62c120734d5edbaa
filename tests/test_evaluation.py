import numpy as np
import pytest
import torch

import bimodal.evaluation as ev
from bimodal.cca import RegularizedCCA
from bimodal.errors import ConfigError, DataError
from bimodal.evaluation import (confusion_matrix, cross_modal_matching, cross_validate, evaluate_features,
                                shared_representation_eval, summarise)
from bimodal.folds import speaker_folds


def _speakers(n_spk=7, per=5):
    return np.repeat([f"s{i + 1:02d}" for i in range(n_spk)], per)


@pytest.mark.parametrize("n_folds", [2, 3, 7])
def test_kfold_no_speaker_on_both_sides_and_each_utterance_tested_once(n_folds):
    spk = _speakers()
    folds = speaker_folds(spk, n_folds=n_folds, seed=3)
    assert len(folds) == n_folds
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested.tolist()) == list(range(len(spk)))
    for tr, te in folds:
        assert not set(spk[tr]) & set(spk[te])
        assert sorted(np.concatenate([tr, te]).tolist()) == list(range(len(spk)))
        assert len(te) > 0


def test_kfold_is_deterministic_by_seed():
    spk = _speakers(10)
    a = speaker_folds(spk, 5, seed=1)
    b = speaker_folds(spk, 5, seed=1)
    c = speaker_folds(spk, 5, seed=2)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert any(not np.array_equal(x[1], y[1]) for x, y in zip(a, c))


def test_even_odd_split():
    spk = np.array(["s03", "s02", "s10", "s01", "s02", "s07"])
    [(tr, te)] = speaker_folds(spk, split="even_odd")
    assert set(spk[tr]) == {"s02", "s10"}
    assert set(spk[te]) == {"s01", "s03", "s07"}
    # names without digits: 1-based position in sorted order
    [(tr, te)] = speaker_folds(np.array(["bob", "amy", "cat", "dan"]), split="even_odd")
    assert tr.tolist() == [0, 3] and te.tolist() == [1, 2]


def test_loso_and_bad_splits():
    spk = _speakers(4, 2)
    folds = speaker_folds(spk, split="loso")
    assert [set(spk[te]) for _, te in folds] == [{"s01"}, {"s02"}, {"s03"}, {"s04"}]
    with pytest.raises(ConfigError):
        speaker_folds(spk, n_folds=5)
    with pytest.raises(ConfigError):
        speaker_folds(spk, split="random")
    with pytest.raises(DataError):
        speaker_folds(np.array(["s02", "s04"]), split="even_odd")


def test_summarise():
    s = summarise([0.5, 0.7, 0.9])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.7)
    assert s["std"] == pytest.approx(0.2)  # the sample s.d. (ddof 1), as the paper's ±
    assert summarise([0.5, 0.7, 0.9], ddof=0)["std"] == pytest.approx(np.std([0.5, 0.7, 0.9]))
    assert summarise([0.4])["std"] == 0.0
    with pytest.raises(DataError):
        summarise([])
    with pytest.raises(DataError):
        summarise([0.1, float("nan")])


def test_confusion_matrix():
    M = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4)
    assert M.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    R = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4, normalize=True)
    np.testing.assert_allclose(R.sum(1), [1, 1, 1, 0])
    assert R[2, 2] == pytest.approx(2 / 3)
    with pytest.raises(DataError):
        confusion_matrix([0, 5], [0, 1], 3)


def _word_data(n_spk=6, per=30, n_classes=3, d=10, seed=0):
    rng = np.random.default_rng(seed)
    spk = _speakers(n_spk, per)
    y = rng.integers(0, n_classes, len(spk))
    centres = rng.normal(size=(n_classes, d))
    X = centres[y] + 1.2 * rng.normal(size=(len(spk), d))
    return X.astype(np.float32), y, spk


def test_evaluate_features_chooses_C_on_training_data_only(monkeypatch):
    X, y, spk = _word_data()
    [(tr, te)] = speaker_folds(spk, split="even_odd")
    calls = []
    real = ev.select_C

    def spy(Xs, ys, groups, **kw):
        calls.append((np.asarray(Xs).copy(), np.asarray(groups).copy()))
        return real(Xs, ys, groups, **kw)

    monkeypatch.setattr(ev, "select_C", spy)
    r = evaluate_features(X[tr], y[tr], X[te], y[te], spk[tr], Cs=(0.01, 1.0), device="cpu")
    assert len(calls) == 1
    np.testing.assert_array_equal(calls[0][0], X[tr])
    assert not set(calls[0][1]) & set(spk[te])
    assert r["C"] in (0.01, 1.0)
    assert r["accuracy"] > 1 / 3 + 0.2
    assert r["confusion"].sum() == len(te)
    assert r["accuracy"] == pytest.approx(np.trace(r["confusion"]) / len(te))
    assert r["predictions"].shape == (len(te),)


def test_cross_validate_with_array_and_with_callable():
    X, y, spk = _word_data()
    seen = []

    def features(tr, te):
        assert not set(spk[tr]) & set(spk[te])
        seen.append(te)
        return X[tr], X[te]

    a = cross_validate(X, y, spk, n_folds=3, C=1.0, device="cpu", progress=False)
    b = cross_validate(features, y, spk, n_folds=3, C=1.0, device="cpu", progress=False)
    assert a["accuracies"] == b["accuracies"]
    assert len(a["accuracies"]) == 3 and a["summary"]["n"] == 3
    assert a["summary"]["mean"] > 1 / 3 + 0.2
    assert sorted(np.concatenate(seen).tolist()) == list(range(len(y)))
    assert sum(f["n_test"] for f in a["folds"]) == len(y)


def _paired_views(n=300, n_classes=3, seed=0):
    """Audio and video views of one class-dependent latent, each in its own basis plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    z = rng.normal(size=(n_classes, 2))[y] * 2 + 0.5 * rng.normal(size=(n, 2))
    Xa = z @ rng.normal(size=(2, 12)) + 0.5 * rng.normal(size=(n, 12))
    Xv = z @ rng.normal(size=(2, 8)) + 0.5 * rng.normal(size=(n, 8)) + 3.0
    return Xa, Xv, y


@pytest.mark.parametrize("direction", ["audio->video", "video->audio"])
def test_cca_shared_representation_transfers_across_modalities(direction):
    Xa, Xv, y = _paired_views()
    tr, te = slice(0, 200), slice(200, 300)
    proj = RegularizedCCA(n_components=2, shrinkage=0.0).fit(Xa[tr], Xv[tr])
    Za, Zv = proj.transform_audio(Xa), proj.transform_video(Xv)
    # The two views land close together in the shared space.
    r = np.corrcoef(Za[te, 0], Zv[te, 0])[0, 1]
    assert r > 0.8
    res = shared_representation_eval(Za[tr], Zv[tr], y[tr], Za[te], Zv[te], y[te], direction=direction,
                                      C=1.0, device="cpu")
    assert res["direction"] == direction
    assert res["accuracy"] > 1 / 3 + 0.25, res["accuracy"]


def test_cca_shapes_and_shared_eval_errors():
    Xa, Xv, y = _paired_views(n=60)
    cca = RegularizedCCA(n_components=2, shrinkage=0.0).fit(Xa, Xv)
    Za, Zv = cca.transform_audio(Xa), cca.transform_video(Xv)
    assert Za.shape == Zv.shape == (60, 2)
    with pytest.raises(ConfigError):
        RegularizedCCA(n_components=20, shrinkage=0.0).fit(Xa, Xv)
    with pytest.raises(ConfigError):
        shared_representation_eval(Za, Zv, y, Za, Zv, y, direction="both", C=1.0)
    with pytest.raises(ConfigError):
        shared_representation_eval(Za, Zv, y, Za, Zv, y)  # no groups to choose C


def test_matching_identical_views_is_perfect_and_shuffled_is_chance():
    rng = np.random.default_rng(0)
    U = 200
    codes = rng.normal(size=(U, 16)).astype(np.float32)
    labels = rng.integers(0, 10, U)
    same = cross_modal_matching(codes, codes.copy(), labels, device="cpu")
    assert same["top1"] == 1.0 and same["top1_same_word"] == 1.0 and same["mrr"] == pytest.approx(1.0)
    other = rng.normal(size=(U, 16)).astype(np.float32)  # no relation to the queries
    r = cross_modal_matching(codes, other, labels, device="cpu")
    assert r["top1"] <= 5 * r["chance_top1"]
    assert r["top1_same_word"] <= 3 * r["chance_top1_same_word"] + 0.05
    assert 0.0 < r["mrr"] < 0.1
    assert r["chance_top1"] == 1 / U


def test_matching_noisy_partner_between_chance_and_perfect_and_euclidean():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(100, 8))
    c = q + 0.6 * rng.normal(size=q.shape)
    labels = np.arange(100) % 5
    for metric in ("cosine", "euclidean"):
        r = cross_modal_matching(torch.as_tensor(q), c, labels, metric=metric, device="cpu")
        assert 0.0 <= r["mrr"] <= 1.0
        assert 0.2 < r["top1"] < 1.0
        assert r["top1_same_word"] >= r["top1"]


def test_matching_constant_codes_are_not_rewarded():
    q = np.ones((10, 3))
    r = cross_modal_matching(q, q, np.zeros(10), device="cpu")
    assert r["top1"] == 0.0 and r["mrr"] == pytest.approx(0.1)
