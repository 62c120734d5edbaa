import numpy as np
import pytest
import torch

from bimodal import RBM
from bimodal.errors import ConfigError, DataError, ShapeError, TrainingDivergedError
from bimodal.rbm import bernoulli_log_pseudo_likelihood


def binary_structured(n=400, d=24, seed=0):
    """Binary data from 3 prototypes with 5% bit flips: easy structure for an RBM."""
    rng = np.random.default_rng(seed)
    protos = rng.random((3, d)) < 0.5
    X = protos[rng.integers(0, 3, n)]
    flips = rng.random((n, d)) < 0.05
    return (X ^ flips).astype(np.float32)


def whitened_low_rank(n=600, d=16, r=3, seed=0):
    """Whitened data lying mostly in an r-dimensional subspace (plus small noise)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, r))
    X = Z @ rng.standard_normal((r, d)) + 0.1 * rng.standard_normal((n, d))
    X = X - X.mean(0)
    U, S, Vt = np.linalg.svd(X, full_matrices=False)
    return (U * np.sqrt(n)).astype(np.float32)[:, :d]  # every column: mean 0, variance 1


def test_cd1_lowers_reconstruction_error_bernoulli():
    X = binary_structured()
    rbm = RBM(24, 16, visible="bernoulli", lr=0.05, device="cpu", seed=0).fit(X, epochs=15, batch_size=20)
    assert len(rbm.history) == 15
    assert rbm.history[-1] < 0.6 * rbm.history[0], rbm.history


def test_gaussian_rbm_beats_mean_on_whitened_data():
    X = whitened_low_rank()
    rbm = RBM(16, 32, visible="gaussian", lr=5e-3, device="cpu", seed=0).fit(X, epochs=30, batch_size=20)
    mse = float(((rbm.reconstruct(X) - X) ** 2).mean())
    # Predicting the mean (0) costs the per-dimension variance, 1.0.
    assert mse < 0.7, f"Gaussian RBM reconstruction MSE {mse:.3f} not below the mean baseline 1.0"
    assert np.isfinite(rbm.history).all()


def test_sparsity_moves_mean_activation_towards_target():
    X = binary_structured()
    kw = dict(visible="bernoulli", lr=0.05, device="cpu", seed=0)
    plain = RBM(24, 32, **kw).fit(X, epochs=10, batch_size=20)
    sparse = RBM(24, 32, sparsity_target=0.05, sparsity_cost=2.0, **kw).fit(X, epochs=10, batch_size=20)
    m_plain, m_sparse = float(plain.transform(X).mean()), float(sparse.transform(X).mean())
    assert abs(m_sparse - 0.05) < abs(m_plain - 0.05) - 0.1, (m_plain, m_sparse)


@pytest.mark.parametrize("visible", ["gaussian", "bernoulli"])
def test_free_energy_gradient_matches_autograd(visible):
    torch.manual_seed(0)
    rbm = RBM(7, 5, visible=visible, device="cpu", seed=1, init_std=0.5)
    with torch.no_grad():
        rbm.b_v.normal_()
        rbm.b_h.normal_()
    v = torch.randn(4, 7, dtype=torch.float32, requires_grad=True)
    rbm.free_energy_t(v).sum().backward()
    assert torch.allclose(rbm.free_energy_grad(v.detach()), v.grad, atol=1e-5)
    # And the analytic gradient agrees with central finite differences (in float64).
    rbm64 = rbm.double()
    x = v.detach().double()
    eps, i, j = 1e-5, 2, 3
    xp, xm = x.clone(), x.clone()
    xp[i, j] += eps
    xm[i, j] -= eps
    with torch.no_grad():
        fd = float((rbm64.free_energy_t(xp)[i] - rbm64.free_energy_t(xm)[i]) / (2 * eps))
        analytic = float(rbm64.free_energy_grad(x)[i, j])
    assert abs(fd - analytic) < 1e-6, (fd, analytic)


@pytest.mark.parametrize("visible", ["gaussian", "bernoulli"])
def test_cd_gradient_is_free_energy_difference_gradient(visible):
    """gradient(v+, h+, v-, h-) = -d/dθ [mean F(v+) - mean F(v-)] when h are hidden probabilities."""
    rbm = RBM(6, 4, visible=visible, device="cpu", seed=2, init_std=0.3)
    g = torch.Generator().manual_seed(0)
    v_pos, v_neg = torch.rand(5, 6, generator=g), torch.rand(5, 6, generator=g)
    with torch.no_grad():
        dW, db_v, db_h = rbm.gradient(v_pos, rbm.hidden_prob(v_pos), v_neg, rbm.hidden_prob(v_neg))
    params = [rbm.W, rbm.b_v, rbm.b_h]
    for p in params:
        p.requires_grad_(True)
    objective = rbm.free_energy_t(v_pos).mean() - rbm.free_energy_t(v_neg).mean()
    gW, gbv, gbh = torch.autograd.grad(objective, params)
    assert torch.allclose(dW, -gW, atol=1e-6)
    assert torch.allclose(db_v, -gbv, atol=1e-6)
    assert torch.allclose(db_h, -gbh, atol=1e-6)


def test_pcd_and_cdk_lower_error():
    X = binary_structured()
    pcd = dict(persistent=True, final_momentum=0.5)  # PCD is noisy with momentum 0.9
    for kw in (pcd, dict(k=3), dict(pcd, k=2)):
        rbm = RBM(24, 16, visible="bernoulli", lr=0.05, device="cpu", seed=0, **kw).fit(X, epochs=15, batch_size=20)
        assert rbm.history[-1] < 0.7 * rbm.history[0], (kw, rbm.history)
    # PCD really is a different algorithm from CD (chains persist), so the weights differ.
    cd = RBM(24, 16, visible="bernoulli", device="cpu", seed=0).fit(X, epochs=2, batch_size=20)
    pcd = RBM(24, 16, visible="bernoulli", device="cpu", seed=0, persistent=True).fit(X, epochs=2, batch_size=20)
    assert not torch.equal(cd.W, pcd.W)
    # A short last batch (95 = 4 * 20 + 15) must not restart the chains: one chain per batch row.
    pcd.fit(X[:95], epochs=1, batch_size=20)
    assert pcd._chain.shape == (20, 16)


def test_divergence_raises_with_learning_rate_hint():
    rng = np.random.default_rng(0)
    X = (1000.0 * rng.standard_normal((200, 10))).astype(np.float32)
    rbm = RBM(10, 8, visible="gaussian", lr=1e3, device="cpu", seed=0)
    with pytest.raises(TrainingDivergedError, match="learning rate"):
        rbm.fit(X, epochs=20, batch_size=20)
    # The parameters left behind are finite, never NaN.
    assert torch.isfinite(rbm.W).all()
    assert np.isfinite(rbm.transform(X)).all()


def test_digits_at_least_as_good_as_sklearn():
    from sklearn.datasets import load_digits
    from sklearn.neural_network import BernoulliRBM

    X = (load_digits().data / 16 > 0.5).astype(np.float32)
    hidden, epochs, batch, lr = 64, 10, 10, 0.05
    ours = RBM(64, hidden, visible="bernoulli", lr=lr, device="cpu", seed=0).fit(X, epochs=epochs, batch_size=batch)
    sk = BernoulliRBM(n_components=hidden, learning_rate=lr, n_iter=epochs, batch_size=batch, random_state=0).fit(X)
    rec_ours = float(((ours.reconstruct(X) - X) ** 2).mean())
    sk_recon = 1.0 / (1.0 + np.exp(-(sk.transform(X) @ sk.components_ + sk.intercept_visible_)))
    rec_sk = float(((sk_recon - X) ** 2).mean())
    pl_ours = float(ours.pseudo_likelihood(X).mean())
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)
    pl_sk = float(bernoulli_log_pseudo_likelihood(t(X), t(sk.components_.T), t(sk.intercept_visible_),
                                                  t(sk.intercept_hidden_)).mean())
    msg = f"ours: recon MSE {rec_ours:.4f}, log-PL {pl_ours:.3f}; sklearn: recon MSE {rec_sk:.4f}, log-PL {pl_sk:.3f}"
    assert rec_ours <= rec_sk, msg
    assert pl_ours >= pl_sk, msg


def test_exact_pseudo_likelihood_matches_sklearn_estimate_in_expectation():
    """Our exact log-PL is the mean of sklearn's one-random-bit estimator over all bits."""
    from sklearn.neural_network import BernoulliRBM

    X = binary_structured(n=50)
    sk = BernoulliRBM(n_components=8, n_iter=3, random_state=0).fit(X)
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)
    exact = bernoulli_log_pseudo_likelihood(t(X), t(sk.components_.T), t(sk.intercept_visible_),
                                            t(sk.intercept_hidden_)).numpy()
    sk.random_state = None  # else every call flips the same bits (a fresh RandomState(0) each time)
    np.random.seed(0)
    estimates = np.mean([sk.score_samples(X) for _ in range(400)], axis=0)
    assert np.allclose(exact, estimates, rtol=0.1, atol=0.5), np.abs(exact - estimates).max()


def test_numpy_and_tensor_roundtrip_types_and_seed_reproducibility():
    X = binary_structured(n=60)
    a = RBM(24, 8, visible="bernoulli", device="cpu", seed=3).fit(X, epochs=2, batch_size=10)
    b = RBM(24, 8, visible="bernoulli", device="cpu", seed=3).fit(torch.from_numpy(X), epochs=2, batch_size=10)
    assert torch.equal(a.W, b.W) and torch.equal(a.b_h, b.b_h)
    c = RBM(24, 8, visible="bernoulli", device="cpu", seed=4).fit(X, epochs=2, batch_size=10)
    assert not torch.equal(a.W, c.W)
    assert isinstance(a.transform(X), np.ndarray) and a.transform(X).shape == (60, 8)
    out = a.reconstruct(torch.from_numpy(X))
    assert isinstance(out, torch.Tensor) and out.shape == (60, 24)
    assert isinstance(a.free_energy(X), np.ndarray) and a.free_energy(X).shape == (60,)
    s = a.sample(n_samples=5, n_steps=3)
    assert s.shape == (5, 24) and ((s >= 0) & (s <= 1)).all()
    assert isinstance(a.sample(init=X[:4], n_steps=2), np.ndarray)


def test_save_load_roundtrip(tmp_path):
    X = whitened_low_rank(n=100)
    rbm = RBM(16, 6, visible="gaussian", sparsity_target=0.1, sparsity_cost=0.5, device="cpu", seed=0)
    rbm.fit(X, epochs=3, batch_size=20)
    rbm.save(tmp_path / "rbm.pt")
    back = RBM.load(tmp_path / "rbm.pt", device="cpu")
    assert torch.equal(rbm.transform(torch.from_numpy(X)), back.transform(torch.from_numpy(X)))
    assert back.history == rbm.history and back.config() == rbm.config()


def test_bad_input_is_rejected_clearly():
    rbm = RBM(5, 3, visible="bernoulli", device="cpu")
    with pytest.raises(ShapeError, match="5 visible"):
        rbm.transform(np.zeros((2, 4)))
    with pytest.raises(DataError, match="NaN") as e:  # bad values, not a shape problem
        rbm.fit(np.full((4, 5), np.nan), epochs=1)
    assert not isinstance(e.value, ShapeError)
    with pytest.raises(ConfigError, match="visible"):
        RBM(5, 3, visible="poisson")


def test_persistable_load_dispatches_on_the_recorded_class(tmp_path):
    from bimodal import BimodalAutoencoder
    from bimodal.persist import Persistable

    rbm = RBM(6, 4, visible="bernoulli", device="cpu", seed=0)
    rbm.save(tmp_path / "rbm.pt")
    dae = BimodalAutoencoder([6, 5], [4, 3], 2, input_modalities=("video",), device="cpu", seed=0)
    dae.save(tmp_path / "dae.pt")
    assert type(Persistable.load(tmp_path / "rbm.pt", device="cpu")) is RBM
    loaded = Persistable.load(tmp_path / "dae.pt", device="cpu")
    assert type(loaded) is BimodalAutoencoder and loaded.input_modalities == ("video",)
    with pytest.raises(DataError, match="expected 'RBM'"):
        RBM.load(tmp_path / "dae.pt")


def test_persistable_load_names_an_unknown_class(tmp_path):
    from bimodal.persist import Persistable

    rbm = RBM(6, 4, visible="bernoulli", device="cpu", seed=0)
    path = rbm.save(tmp_path / "rbm.pt")
    payload = torch.load(path, weights_only=False)
    payload["class"] = "Perceptron"
    torch.save(payload, path)
    with pytest.raises(DataError, match="'Perceptron', not one of .*'BimodalAutoencoder'.*'RBM'"):
        Persistable.load(path, device="cpu")
