"""Regularised CCA: the raw-CCA / RBM-CCA baselines of the shared-representation setting."""
import numpy as np
import pytest

from bimodal.cca import RegularizedCCA, heldout_correlations
from bimodal.errors import ConfigError, DataError, ShapeError


def two_views(n, rng, d_a=120, d_v=90, k=3, noise=1.0):
    """Views sharing a k-dim latent signal, each with strong independent noise; 20 rows per group."""
    z = rng.standard_normal((n, k))
    wa, wv = rng.standard_normal((k, d_a)), rng.standard_normal((k, d_v))
    # anisotropic private noise: some directions of each view are loud but carry nothing shared
    sa, sv = np.exp(rng.normal(0, 1, d_a)), np.exp(rng.normal(0, 1, d_v))
    xa = z @ wa + noise * rng.standard_normal((n, d_a)) * sa
    xv = z @ wv + noise * rng.standard_normal((n, d_v)) * sv
    return xa, xv, np.arange(n) // 20


def test_regularised_cca_beats_plain_cca_on_held_out_rows_with_n_below_d():
    # one draw (same mixing) split into 100 training rows (n < d_a = 120, n ~ d_v = 90) and 500 held out
    xa_all, xv_all, groups_all = two_views(600, np.random.default_rng(1))
    xa, xv, groups = xa_all[:100], xv_all[:100], groups_all[:100]
    xa_te, xv_te = xa_all[100:], xv_all[100:]
    plain = RegularizedCCA(n_components=3, shrinkage=0.0).fit(xa, xv)
    ridge = RegularizedCCA(n_components=3).fit(xa, xv, groups=groups)
    # plain CCA fits the training rows perfectly (n < d) and generalises badly
    assert plain.correlations_.min() > 0.999
    r_plain, r_ridge = heldout_correlations(plain, xa_te, xv_te), heldout_correlations(ridge, xa_te, xv_te)
    assert ridge.shrinkage_ > 0 and ridge.cv_[ridge.shrinkage_] > ridge.cv_[0.0]
    assert r_ridge.sum() > r_plain.sum() + 0.5
    assert r_ridge[0] > 0.8
    assert np.all(ridge.correlations_ <= 1 + 1e-9) and ridge.correlations_[0] >= r_ridge[0] - 0.05


def test_projections_are_whitened_and_ordered_on_training_rows():
    rng = np.random.default_rng(2)
    xa, xv, _ = two_views(400, rng, d_a=20, d_v=15)
    cca = RegularizedCCA(n_components=4, shrinkage=0.0).fit(xa, xv)
    za, zv = cca.transform_audio(xa), cca.transform_video(xv)
    assert za.shape == (400, 4) and zv.shape == (400, 4) and za.dtype == np.float32
    # unit variance, uncorrelated components; correlations match the SVD and are sorted
    np.testing.assert_allclose(np.cov(za.T), np.eye(4), atol=1e-4)
    corr = [np.corrcoef(za[:, i], zv[:, i])[0, 1] for i in range(4)]
    np.testing.assert_allclose(corr, cca.correlations_, atol=1e-4)
    assert np.all(np.diff(cca.correlations_) <= 1e-12)


def test_a_grid_needs_groups_and_bad_values_are_rejected():
    x = np.random.default_rng(0).standard_normal((30, 5))
    with pytest.raises(ConfigError, match="groups"):
        RegularizedCCA(n_components=2).fit(x, x)
    with pytest.raises(ConfigError, match="shrinkage"):
        RegularizedCCA(shrinkage=[0.1, 1.5])
    with pytest.raises(ConfigError, match="n_components"):
        RegularizedCCA(n_components=9, shrinkage=0.1).fit(x, x)


def test_unfitted_mismatched_and_non_finite_inputs_are_rejected():
    x = np.random.default_rng(0).standard_normal((30, 5))
    with pytest.raises(ConfigError, match="not fitted"):
        RegularizedCCA(n_components=2, shrinkage=0.1).transform_audio(x)
    with pytest.raises(ShapeError, match="paired rows"):
        RegularizedCCA(n_components=2, shrinkage=0.1).fit(x, x[:20])
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        RegularizedCCA(n_components=2, shrinkage=0.1).fit(bad, x)
    cca = RegularizedCCA(n_components=2, shrinkage=0.1).fit(x, x[:, :4])
    with pytest.raises(ShapeError, match="4 columns"):
        cca.transform_video(x)
