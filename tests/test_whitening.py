import numpy as np
import pytest

from bimodal.errors import DataError
from data_prep.whitening import PCAWhitener


def correlated(n, d, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d)) * np.linspace(3, 0.1, d)
    return (rng.normal(size=(n, d)) @ A + rng.normal(size=d) * 5).astype(np.float32)


@pytest.mark.parametrize("n,d,k", [(2000, 20, 8), (30, 200, 10)])  # covariance and Gram paths
def test_identity_covariance_on_training_data(n, d, k):
    X = correlated(n, d)
    Z = PCAWhitener(k, eps=1e-8).fit(X).transform(X)
    assert Z.shape == (n, k) and Z.dtype == np.float32
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(Z, rowvar=False), np.eye(k), atol=2e-3)


def test_matches_sklearn_pca_subspace():
    from sklearn.decomposition import PCA

    X = correlated(500, 12)
    w = PCAWhitener(5).fit(X)
    ref = PCA(5).fit(X)
    np.testing.assert_allclose(w.variances_, ref.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(np.abs(w.components_ @ ref.components_.T), np.eye(5), atol=1e-4)


def test_inverse_round_trip_full_rank_and_state(tmp_path):
    X = correlated(400, 10)
    w = PCAWhitener(10).fit(X)
    np.testing.assert_allclose(w.inverse_transform(w.transform(X)), X, atol=1e-3)
    w2 = PCAWhitener.from_state_dict(w.state_dict())
    np.testing.assert_array_equal(w2.transform(X), w.transform(X))
    w.save(tmp_path / "w.npz")
    np.testing.assert_array_equal(PCAWhitener.load(tmp_path / "w.npz").transform(X), w.transform(X))
    # Reduced rank loses information: the round trip is no longer exact.
    w3 = PCAWhitener(3).fit(X)
    assert np.abs(w3.inverse_transform(w3.transform(X)) - X).mean() > 0.05


def test_errors():
    X = correlated(50, 6)
    with pytest.raises(DataError, match="exceeds the data dimension 6"):
        PCAWhitener(7).fit(X)
    with pytest.raises(DataError, match="more than n_components=5 samples"):
        PCAWhitener(5).fit(X[:5])
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        PCAWhitener(2).fit(bad)
    with pytest.raises(DataError, match="not fitted"):
        PCAWhitener(2).transform(X)
    with pytest.raises(DataError, match=r"\(N, 6\)"):
        PCAWhitener(2).fit(X).transform(X[:, :5])
