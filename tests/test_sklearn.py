"""bimodal.sklearn: scikit-learn estimators (SparseRBM, DBN), the multi-view bimodal autoencoder
transformer and the utterance pooling helper. Tiny sizes and few epochs: the file runs in seconds."""
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from bimodal.autoencoder import BimodalAutoencoder
from bimodal.dbn import DBN as LibraryDBN
from bimodal.dbn import BimodalDBN
from bimodal.features import pool_slices
from bimodal.rbm import RBM
from bimodal.sklearn import DBN, BimodalAutoencoderTransformer, SparseRBM, pool_utterances

CPU = "cpu"


def _data(n=60, d=7, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _views(n=80, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4))
    audio = z @ rng.standard_normal((4, 9)) + 0.1 * rng.standard_normal((n, 9))
    video = z @ rng.standard_normal((4, 6)) + 0.1 * rng.standard_normal((n, 6))
    return audio.astype(np.float32), video.astype(np.float32)


def _small_bimodal(**kw):
    params = dict(n_components=5, audio_hidden=(8,), video_hidden=(7,), pretrain_epochs=2, epochs=2, batch_size=20,
                  device=CPU, random_state=0)
    params.update(kw)
    return BimodalAutoencoderTransformer(**params)


# --------------------------------------------------------------------------- scikit-learn's checks
# Every check of check_estimator (legacy=True) runs; none is excluded. check_array_api_input skips
# itself unless SCIPY_ARRAY_API=1 is set (the estimators do not claim array-API support).
@parametrize_with_checks([
    SparseRBM(n_components=8, n_iter=3, device=CPU),
    SparseRBM(n_components=6, n_iter=2, visible="bernoulli", persistent=True, k=2, device=CPU),
    DBN(hidden_layer_sizes=(8, 4), n_iter=2, device=CPU),
])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- same numbers as the library
def test_sparse_rbm_equals_the_library_rbm_on_the_same_seed():
    X = _data()
    est = SparseRBM(n_components=5, n_iter=4, batch_size=16, sparsity_target=0.1, sparsity_cost=3.0, k=2,
                    weight_decay=2e-4, learning_rate=5e-3, device=CPU, random_state=11).fit(X)
    rbm = RBM(7, 5, visible="gaussian", lr=5e-3, k=2, weight_decay=2e-4, sparsity_target=0.1, sparsity_cost=3.0,
              device=CPU, seed=11).fit(X, epochs=4, batch_size=16)
    np.testing.assert_array_equal(est.transform(X), rbm.transform(X))
    np.testing.assert_array_equal(est.components_, rbm.W.t().numpy())
    assert est.model_.history == rbm.history and est.n_iter_ == 4


def test_sparse_rbm_bernoulli_default_learning_rate_is_the_library_one():
    X = (_data() > 0).astype(np.float64)
    est = SparseRBM(n_components=4, visible="bernoulli", n_iter=2, device=CPU, random_state=2).fit(X)
    assert est.model_.lr == 0.05
    rbm = RBM(7, 4, visible="bernoulli", sparsity_target=0.05, sparsity_cost=10.0, device=CPU, seed=2)
    rbm.fit(X.astype(np.float32), epochs=2, batch_size=100)
    np.testing.assert_array_equal(est.transform(X), rbm.transform(X.astype(np.float32)))


def test_dbn_equals_the_library_dbn_on_the_same_seed():
    X = _data()
    est = DBN(hidden_layer_sizes=(6, 3), n_iter=(2, 3), first_layer_learning_rate=2e-3, batch_size=20, device=CPU,
              random_state=5).fit(X)
    lib = LibraryDBN([7, 6, 3], first_visible="gaussian", rbm_params=dict(sparsity_target=0.05, sparsity_cost=10.0),
                     first_layer_params=dict(lr=2e-3), device=CPU, seed=5).fit(X, epochs=[2, 3], batch_size=20)
    np.testing.assert_array_equal(est.transform(X), lib.transform(X))
    assert est.transform(X).shape == (60, 3)
    assert [layer.lr for layer in est.model_.layers] == [2e-3, 0.05]


def test_partial_fit_continues_without_reinitialising():
    X = _data()
    est = SparseRBM(n_components=4, momentum_epochs=1, batch_size=20, device=CPU, random_state=1)
    est.partial_fit(X)
    W1 = est.model_.W.clone()
    est.partial_fit(X)
    assert est.n_iter_ == 2 and len(est.model_.history) == 2 and not torch.equal(W1, est.model_.W)
    # the library, by hand: one epoch under the first momentum, then one under the final one
    rbm = RBM(7, 4, momentum_epochs=1, sparsity_target=0.05, sparsity_cost=10.0, device=CPU, seed=1)
    rbm.fit(X, epochs=1, batch_size=20)
    rbm.momentum_epochs = 0
    rbm.fit(X, epochs=1, batch_size=20)
    np.testing.assert_array_equal(est.transform(X), rbm.transform(X))
    assert est.model_.momentum_epochs == 1  # the schedule is restored after each call


def test_dbn_partial_fit_trains_every_layer_one_epoch():
    X = _data()
    est = DBN(hidden_layer_sizes=(5, 3), device=CPU, random_state=0).partial_fit(X).partial_fit(X)
    assert est.n_iter_ == (2, 2) and [len(h) for h in est.model_.history] == [2, 2]
    # after a fit with per-layer epochs, partial_fit continues each layer's momentum schedule
    est = DBN(hidden_layer_sizes=(5, 3), n_iter=(6, 2), device=CPU, random_state=0).fit(X)
    lib = LibraryDBN([7, 5, 3], rbm_params=dict(sparsity_target=0.05, sparsity_cost=10.0), device=CPU,
                     seed=0).fit(X, epochs=[6, 2])
    lib.layers[0].momentum_epochs, lib.layers[1].momentum_epochs = 0, 3  # 5 - 6 epochs done, 5 - 2
    lib.fit(X, epochs=1)
    np.testing.assert_array_equal(est.partial_fit(X).transform(X), lib.transform(X))
    assert est.n_iter_ == (7, 3) and [layer.momentum_epochs for layer in est.model_.layers] == [5, 5]


# --------------------------------------------------------------------------- scikit-learn behaviour
def test_grid_search_over_two_sparsity_targets_picks_one():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    X = (rng.standard_normal((80, 6)) + 1.5 * y[:, None]).astype(np.float32)
    pipe = Pipeline([("rbm", SparseRBM(n_components=8, n_iter=3, batch_size=20, device=CPU, random_state=0)),
                     ("svm", LinearSVC())])
    search = GridSearchCV(pipe, {"rbm__sparsity_target": [0.05, 0.2]}, cv=2).fit(X, y)
    assert search.best_params_["rbm__sparsity_target"] in (0.05, 0.2)
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert search.best_estimator_.named_steps["rbm"].model_.sparsity_target == search.best_params_[
        "rbm__sparsity_target"]


@pytest.mark.parametrize("make", [lambda: SparseRBM(n_components=5, n_iter=2, device=CPU, random_state=3),
                                  lambda: DBN(hidden_layer_sizes=(5, 4), n_iter=2, device=CPU, random_state=3)])
def test_clone_and_refit_give_the_same_transform(make):
    X = _data()
    est = make().fit(X)
    again = clone(est).fit(X)
    assert not hasattr(clone(est), "model_")
    np.testing.assert_array_equal(est.transform(X), again.transform(X))
    np.testing.assert_array_equal(est.transform(X), est.fit(X).transform(X))  # fit re-initialises


def test_random_state_none_or_randomstate():
    X = _data()
    a = SparseRBM(n_components=4, n_iter=1, device=CPU, random_state=np.random.RandomState(0)).fit(X)
    b = SparseRBM(n_components=4, n_iter=1, device=CPU, random_state=np.random.RandomState(0)).fit(X)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert SparseRBM(n_components=4, n_iter=1, device=CPU).fit(X).transform(X).shape == (60, 4)
    with pytest.raises(ValueError):
        SparseRBM(random_state="seven", device=CPU).fit(X)


@pytest.mark.parametrize("make", [lambda: SparseRBM(n_components=5, n_iter=2, device=CPU, random_state=3),
                                  lambda: DBN(hidden_layer_sizes=(5, 4), n_iter=2, device=CPU, random_state=3)])
def test_pickle_round_trip(make):
    X = _data()
    est = make().fit(X)
    blob = pickle.dumps(est)
    back = pickle.loads(blob)
    np.testing.assert_array_equal(est.transform(X), back.transform(X))
    assert back.get_params() == est.get_params() and back.device_ == torch.device(CPU)
    # the torch state travels as CPU tensors and the fit counters with it: training on continues alike
    np.testing.assert_array_equal(est.partial_fit(X).transform(X), back.partial_fit(X).transform(X))


def test_unpickling_where_the_device_is_missing_falls_back_to_the_cpu():
    X = _data()
    est = SparseRBM(n_components=3, n_iter=1, device=CPU, random_state=0).fit(X)
    blob = pickle.dumps(est.set_params(device="cuda:99"))  # a device no test machine has
    with pytest.warns(RuntimeWarning, match="unpickling on the CPU"):
        back = pickle.loads(blob)
    assert back.device_ == torch.device(CPU) and back.model_.W.device.type == CPU
    np.testing.assert_array_equal(back.transform(X), est.transform(X))


def test_outputs_are_float32_numpy_and_feature_names():
    X = _data()
    est = SparseRBM(n_components=3, n_iter=1, device=CPU, random_state=0).fit(X.astype(np.float64))
    for inp in (X, X.astype(np.float64), X.tolist(), torch.from_numpy(X)):
        out = est.transform(inp)
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (60, 3)
    assert list(est.get_feature_names_out()) == ["sparserbm0", "sparserbm1", "sparserbm2"]
    assert est.n_features_in_ == 7
    dbn = DBN(hidden_layer_sizes=(4, 2), n_iter=1, device=CPU, random_state=0).fit(X)
    assert list(dbn.get_feature_names_out()) == ["dbn0", "dbn1"]


def test_verbose_prints_the_reconstruction_error(capsys):
    SparseRBM(n_components=3, n_iter=2, verbose=1, device=CPU, random_state=0).fit(_data())
    out = capsys.readouterr().out
    assert "[SparseRBM] epoch 1, reconstruction MSE" in out and "epoch 2" in out


def test_bad_parameters_raise_value_errors_naming_them():
    X = _data()
    with pytest.raises(ValueError, match="visible"):
        SparseRBM(visible="poisson", device=CPU).fit(X)
    with pytest.raises(ValueError, match="sparsity_target"):
        SparseRBM(sparsity_target=2.0, device=CPU).fit(X)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        DBN(hidden_layer_sizes=(), device=CPU).fit(X)


# --------------------------------------------------------------------------- the bimodal transformer
def test_bimodal_transformer_codes_are_the_library_encode_with_zeroed_audio():
    Xa, Xv = _views()
    est = _small_bimodal().fit([Xa, Xv])
    codes = est.transform([None, Xv])
    assert isinstance(codes, np.ndarray) and codes.dtype == np.float32 and codes.shape == (80, 5)
    np.testing.assert_array_equal(codes, est.model_.encode(audio=np.zeros_like(Xa), video=Xv))
    np.testing.assert_array_equal(est.transform([Xa, None]), est.model_.encode(audio=Xa, video=np.zeros_like(Xv)))
    np.testing.assert_array_equal(est.transform([Xa, Xv]), est.fit_transform([Xa, Xv]))
    assert list(est.get_feature_names_out())[:2] == ["bimodalautoencodertransformer0",
                                                      "bimodalautoencodertransformer1"]
    assert est.n_features_per_view_ == (9, 6) and est.dbn_ is not None


def test_bimodal_transformer_equals_the_library_pipeline_on_the_same_seed():
    Xa, Xv = _views()
    est = _small_bimodal(fractions=(0.5, 0.25, 0.25), sparsity_target=0.1, sparsity_cost=3.0, random_state=4)
    est.fit([Xa, Xv])
    dbn = BimodalDBN([9, 8], [6, 7], 5, rbm_params=dict(sparsity_target=0.1, sparsity_cost=3.0), device=CPU,
                     seed=4).fit(audio=Xa, video=Xv, epochs=2, batch_size=20)
    dae = BimodalAutoencoder.from_dbn(dbn, device=CPU, seed=4).fit(audio=Xa, video=Xv, fractions=(0.5, 0.25, 0.25),
                                                                    epochs=2, batch_size=20, seed=4)
    np.testing.assert_array_equal(est.transform([None, Xv]), dae.encode(video=Xv))
    assert est.model_.history == dae.history


def test_bimodal_transformer_without_pretraining_and_pickle():
    Xa, Xv = _views()
    est = _small_bimodal(pretrain=False).fit([Xa, Xv])
    assert est.dbn_ is None
    lib = BimodalAutoencoder.random_init([9, 8], [6, 7], 5, device=CPU, seed=0).fit(
        audio=Xa, video=Xv, epochs=2, batch_size=20, seed=0)
    np.testing.assert_array_equal(est.transform([Xa, None]), lib.encode(audio=Xa))
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.transform([None, Xv]), est.transform([None, Xv]))
    np.testing.assert_array_equal(clone(est).fit([Xa, Xv]).transform([Xa, Xv]), est.transform([Xa, Xv]))
    pre = pickle.loads(pickle.dumps(_small_bimodal().fit([Xa, Xv])))
    assert isinstance(pre.dbn_, BimodalDBN) and pre.transform([Xa, Xv]).shape == (80, 5)


def test_bimodal_transformer_failing_fine_tune_leaves_it_unfitted(monkeypatch):
    """A fit that fails after pretraining sets no fitted attribute (sklearn's contract)."""
    Xa, Xv = _views()

    def fail(*args, **kwargs):
        raise RuntimeError("fine-tuning failed")

    monkeypatch.setattr(BimodalAutoencoder, "fit", fail)
    est = _small_bimodal()
    with pytest.raises(RuntimeError, match="fine-tuning failed"):
        est.fit([Xa, Xv])
    assert not any(hasattr(est, a) for a in ("dbn_", "model_", "device_"))


def test_bimodal_transformer_bad_input_names_the_argument():
    Xa, Xv = _views()
    est = _small_bimodal()
    with pytest.raises(ValueError, match=r"Xs must hold 2 views"):
        est.fit([Xa])
    with pytest.raises(ValueError, match=r"Xs must hold 2 views"):
        est.fit([Xa, Xv, Xv])
    with pytest.raises(ValueError, match=r"Xs must be a list"):
        est.fit(Xa)
    with pytest.raises(ValueError, match=r"Xs.*audio 80, video 79"):
        est.fit([Xa, Xv[:-1]])
    with pytest.raises(ValueError, match=r"Xs.*both views"):
        est.fit([None, Xv])
    est.fit([Xa, Xv])
    with pytest.raises(ValueError, match=r"Xs: both views are None"):
        est.transform([None, None])
    with pytest.raises(ValueError, match=r"Xs.*different numbers of rows"):
        est.transform([Xa[:10], Xv[:11]])
    with pytest.raises(ValueError, match=r"Xs\[1\] \(video\) has 5 columns"):
        est.transform([None, Xv[:, :5]])
    with pytest.raises(ValueError, match=r"Xs\[0\] \(audio\)"):
        est.transform([np.full((3, 9), np.nan), None])
    with pytest.raises(ValueError, match="fractions"):
        _small_bimodal(fractions=(0.5, 0.5, 0.5)).fit([Xa, Xv])
    with pytest.raises(ValueError, match="video_visible"):
        _small_bimodal(pretrain=False, video_visible="poisson").fit([Xa, Xv])


# --------------------------------------------------------------------------- pooling
def test_pool_utterances_shapes_values_and_order():
    codes = np.arange(14, dtype=np.float32).reshape(7, 2)
    ids = np.array(["b", "b", "a", "a", "a", "b", "a"])  # 'b' first, windows need not be contiguous
    feats, order = pool_utterances(codes, ids)
    assert list(order) == ["b", "a"] and feats.shape == (2, 2 * 4) and feats.dtype == np.float32
    b = codes[[0, 1, 5]]
    np.testing.assert_allclose(feats[0], np.concatenate([b.mean(0), b[0], b[1], b[2]]))
    a = codes[[2, 3, 4, 6]]  # 4 windows, S=3 → slices of 2, 1, 1
    np.testing.assert_allclose(feats[1], np.concatenate([a.mean(0), a[:2].mean(0), a[2], a[3]]))
    # the same as pool_slices with integer indices
    np.testing.assert_array_equal(feats, pool_slices(codes, np.array([0, 0, 1, 1, 1, 0, 1]), 2, slices=(1, 3)))
    f1, ids1 = pool_utterances(torch.from_numpy(codes), [3, 3, 1, 1, 1, 3, 1], slices=(2,))
    assert isinstance(f1, np.ndarray) and f1.shape == (2, 4) and list(ids1) == [3, 1]


def test_pool_utterances_errors_name_the_argument():
    with pytest.raises(ValueError, match="utterance_ids"):
        pool_utterances(np.zeros((4, 2)), [0, 0, 1])
    with pytest.raises(ValueError, match="codes"):
        pool_utterances(np.zeros(4), [0, 0, 1, 1])


def test_sparsity_update_reaches_the_library_rbms():
    X = _data()
    rbm = SparseRBM(5, n_iter=2, sparsity_update="separate", device=CPU, random_state=0).fit(X)
    dbn = DBN((5, 4), n_iter=2, sparsity_update="separate", device=CPU, random_state=0).fit(X)
    assert rbm.model_.sparsity_update == "separate"
    assert {layer.sparsity_update for layer in dbn.model_.layers} == {"separate"}
    velocity = SparseRBM(5, n_iter=2, device=CPU, random_state=0).fit(X)
    assert not np.allclose(velocity.transform(X), rbm.transform(X))  # the form changes the training
