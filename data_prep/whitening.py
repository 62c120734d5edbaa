"""PCA whitening: project on the top principal components and scale each to unit variance."""
from __future__ import annotations

import logging
import warnings

import numpy as np

from bimodal.errors import DataError, ShapeError

log = logging.getLogger(__name__)


class PCAWhitener:
    """PCA whitening fitted with a float64 covariance (or Gram) eigendecomposition.

    ``transform(X) = (X - mean) @ components.T / sqrt(variances + eps)``, so on the training
    data the output has (almost exactly) identity covariance.

    Parameters
    ----------
    n_components : number of principal components kept (paper: 100 audio, 32 video).
    eps : added to each component variance before the square root; keeps near-zero
        components from being blown up.

    Attributes (after ``fit``)
    --------------------------
    mean_ : (D,) float64.
    components_ : (n_components, D) float64, orthonormal rows, largest variance first.
    variances_ : (n_components,) float64 eigenvalues of the covariance.
    """

    def __init__(self, n_components: int, eps: float = 1e-5):
        if int(n_components) < 1:
            raise DataError(f"n_components must be >= 1, got {n_components}", field="n_components")
        self.n_components = int(n_components)
        self.eps = float(eps)
        self.mean_ = self.components_ = self.variances_ = None

    @property
    def n_features(self) -> int:
        self._check_fitted()
        return self.components_.shape[1]

    def fit(self, X, chunk: int = 8192) -> "PCAWhitener":
        """Fit on ``X`` (N, D); needs N > n_components and D >= n_components.

        Uses the D×D covariance when N >= D and the N×N Gram matrix otherwise (cheaper for
        few high-dimensional samples, e.g. 4800-pixel frames). Sums are accumulated in float64
        in chunks so float32 input is never copied whole.
        """
        X = np.asarray(X)
        if X.ndim != 2:
            raise ShapeError(f"expected (N, D) data, got shape {X.shape}", field="X")
        N, D = X.shape
        k = self.n_components
        if k > D:
            raise DataError(f"n_components={k} exceeds the data dimension {D}", field="n_components")
        if N <= k:
            raise DataError(f"need more than n_components={k} samples to fit, got {N}", field="X")
        if not np.isfinite(X).all():
            raise DataError("training data for PCA holds NaN or infinite values", field="X")
        mean = np.zeros(D)
        for i in range(0, N, chunk):
            mean += X[i:i + chunk].sum(axis=0, dtype=np.float64)
        mean /= N
        if N >= D:
            C = np.zeros((D, D))
            for i in range(0, N, chunk):
                Xc = X[i:i + chunk].astype(np.float64) - mean
                C += Xc.T @ Xc
            C /= N - 1
            vals, vecs = _top_eigh(C, k)
            comps = vecs.T
        else:
            Xc = X.astype(np.float64) - mean
            G = Xc @ Xc.T / (N - 1)
            vals, vecs = _top_eigh(G, k)
            # Eigenvectors of the covariance from those of the Gram matrix: v = Xcᵀ u / ||Xcᵀ u||.
            comps = (Xc.T @ vecs).T
            comps /= np.maximum(np.linalg.norm(comps, axis=1, keepdims=True), 1e-300)
        vals = np.maximum(vals, 0.0)
        # Sign convention (largest |loading| positive) so the same data always gives the same basis.
        signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
        comps *= np.where(signs == 0, 1.0, signs)[:, None]
        tiny = vals < 10 * self.eps
        if tiny.any():
            warnings.warn(f"PCAWhitener: {int(tiny.sum())} of {k} components have variance < {10 * self.eps:g} "
                          f"(data rank too low?); they are scaled by at most 1/sqrt(eps)", stacklevel=2)
        self.mean_, self.components_, self.variances_ = mean, comps, vals
        log.debug("PCA: %d -> %d dims, %.1f%% variance kept", D, k,
                  100 * vals.sum() / max(np.trace(C) if N >= D else np.trace(G), 1e-300))
        return self

    def _check_fitted(self):
        if self.components_ is None:
            raise DataError("PCAWhitener is not fitted; call fit() first", field="components_")

    def _check_X(self, X, D, name):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != D:
            raise ShapeError(f"expected (N, {D}), got shape {X.shape}", field=name)
        return X

    def transform(self, X) -> np.ndarray:
        """(N, D) → (N, n_components) float32 whitened coefficients."""
        self._check_fitted()
        X = self._check_X(X, self.n_features, "X")
        scale = 1.0 / np.sqrt(self.variances_ + self.eps)
        W = (self.components_ * scale[:, None]).T  # (D, k)
        return ((X.astype(np.float64) - self.mean_) @ W).astype(np.float32)

    def inverse_transform(self, Z) -> np.ndarray:
        """(N, n_components) → (N, D) float32 reconstruction in the input space."""
        self._check_fitted()
        Z = self._check_X(Z, self.n_components, "Z")
        scale = np.sqrt(self.variances_ + self.eps)
        return (Z.astype(np.float64) * scale @ self.components_ + self.mean_).astype(np.float32)

    def state_dict(self) -> dict:
        """Plain numpy arrays; ``from_state_dict`` inverts it (and it fits into an npz)."""
        self._check_fitted()
        return {"n_components": np.int64(self.n_components), "eps": np.float64(self.eps),
                "mean": self.mean_, "components": self.components_, "variances": self.variances_}

    @classmethod
    def from_state_dict(cls, state: dict) -> "PCAWhitener":
        try:
            w = cls(int(state["n_components"]), float(state["eps"]))
            w.mean_ = np.asarray(state["mean"], dtype=np.float64)
            w.components_ = np.asarray(state["components"], dtype=np.float64)
            w.variances_ = np.asarray(state["variances"], dtype=np.float64)
        except KeyError as exc:
            raise DataError(f"whitener state lacks key {exc}", field=str(exc.args[0])) from exc
        if w.components_.shape != (w.n_components, w.mean_.shape[0]):
            raise ShapeError(f"components shape {w.components_.shape} does not match "
                             f"({w.n_components}, {w.mean_.shape[0]})", field="components")
        return w

    def save(self, path) -> None:
        from bimodal.io import atomic_savez

        atomic_savez(path, **self.state_dict())

    @classmethod
    def load(cls, path) -> "PCAWhitener":
        from bimodal.io import read_npz

        state = read_npz(path, "PCA whitener file")
        try:
            return cls.from_state_dict(state)
        except DataError as exc:  # name the file the broken state came from
            raise type(exc)(f"not a PCA whitener file: {exc}", path=path) from exc
        except (TypeError, ValueError) as exc:  # e.g. an n_components array that is not a number
            raise DataError(f"not a PCA whitener file: {exc}", path=path) from exc


def _top_eigh(M: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest ``k`` eigenpairs of a symmetric matrix, descending.

    For a few components of a large matrix (e.g. 32 of the 4800 pixels of a 60x80 mouth) Lanczos
    iteration (ARPACK) needs only matrix-vector products and is ~10x faster than the dense
    solver, which must tridiagonalise the whole matrix; a fixed start vector keeps it deterministic.
    """
    from scipy.linalg import eigh

    n = M.shape[0]
    if n >= 512 and k < n // 8:
        from scipy.sparse.linalg import eigsh

        vals, vecs = eigsh(M, k=k, which="LA", v0=np.ones(n, dtype=M.dtype), tol=0)
        order = np.argsort(vals)[::-1]
        return vals[order].copy(), vecs[:, order].copy()
    vals, vecs = eigh(M, subset_by_index=[n - k, n - 1])
    return vals[::-1].copy(), vecs[:, ::-1].copy()
