"""Regularised canonical correlation analysis, the raw-CCA and RBM-CCA baselines of the paper.

Plain CCA on a few hundred wide vectors finds training correlations of ~1 by construction (with
``n < d`` any direction of one view can be matched exactly in the other) and projections that are
noise on new speakers. :class:`RegularizedCCA` shrinks both covariance matrices toward a multiple
of the identity,

    C_aa(r) = (1 - r) C_aa + r (tr C_aa / d_a) I,   likewise C_vv(r),

and takes the top singular vectors of ``C_aa(r)^{-1/2} C_av C_vv(r)^{-1/2}``. ``r`` in ``[0, 1]``
(0 = plain CCA, 1 = PLS-like) is chosen by :meth:`RegularizedCCA.fit` from a grid by
speaker-grouped cross-validation: the sum of the top ``n_components`` canonical correlations on
held-out speakers. Each covariance is eigendecomposed once per fold; every ``r`` then costs one
SVD, so the whole grid is cheap.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from .device import resolve_device
from .errors import ConfigError, DataError, ShapeError

log = logging.getLogger(__name__)

DEFAULT_SHRINKAGE = (0.0, 1e-3, 1e-2, 0.03, 0.1, 0.3, 0.6)
# Relative eigenvalue floor: keeps the unregularised (r = 0) fit finite when n < d; it does not
# regularise in any useful sense (those directions still get a 1e6-fold gain).
_EIG_FLOOR = 1e-12


class RegularizedCCA:
    """CCA with both covariances shrunk toward the identity (ridge), shrinkage chosen by grouped CV.

    Parameters
    ----------
    n_components : canonical directions kept (at most ``min(d_a, d_v)``).
    shrinkage : one value in ``[0, 1]`` (used as is) or a grid to choose from by cross-validation
        over ``groups`` (speakers) in :meth:`fit`.
    n_folds : folds of the grouped CV (at most the number of groups).
    device : where the linear algebra runs (float64).

    Attributes after fit
    --------------------
    shrinkage_ : the chosen value. cv_ : ``{shrinkage: mean held-out sum of correlations}`` (None
    without a search). correlations_ : (n_components,) training canonical correlations.
    """

    def __init__(self, n_components: int = 16, shrinkage=DEFAULT_SHRINKAGE, n_folds: int = 3, device=None):
        self.n_components = int(n_components)
        grid = np.atleast_1d(np.asarray(shrinkage, dtype=np.float64))
        if grid.size == 0 or not np.all((grid >= 0) & (grid <= 1)):
            raise ConfigError(f"shrinkage must be values in [0, 1], got {shrinkage!r}")
        self.grid = tuple(float(g) for g in grid)
        self.n_folds = int(n_folds)
        self.device = resolve_device(device)

    # ------------------------------------------------------------------ fitting
    def fit(self, Xa, Xv, groups=None) -> "RegularizedCCA":
        """Fit on paired rows ``Xa (n, d_a)``, ``Xv (n, d_v)``; ``groups (n,)`` (speakers) are
        needed when ``shrinkage`` is a grid of more than one value."""
        a, v = self._t(Xa, "Xa"), self._t(Xv, "Xv")
        if a.shape[0] != v.shape[0]:
            raise ShapeError(f"paired rows needed: audio has {a.shape[0]}, video {v.shape[0]}", field="Xv")
        k_max = min(a.shape[1], v.shape[1])
        if not 1 <= self.n_components <= k_max:
            raise ConfigError(f"n_components must be in [1, {k_max}] for these shapes, got {self.n_components}")
        self.cv_ = None
        if len(self.grid) == 1:
            self.shrinkage_ = self.grid[0]
        else:
            if groups is None:
                raise ConfigError("groups (the speaker of each row) are needed to choose the shrinkage by CV")
            self.shrinkage_, self.cv_ = self._choose(a, v, np.asarray(groups))
            log.info("CCA shrinkage %.3g chosen by grouped CV (%s)", self.shrinkage_,
                     ", ".join(f"{r:g}: {s:.3f}" for r, s in self.cv_.items()))
        stats = _Stats(a, v)
        self.mean_a_, self.mean_v_ = stats.mean_a, stats.mean_v
        self.wa_, self.wv_, _ = stats.solve(self.shrinkage_, self.n_components)
        # measured on the projections: with shrinkage the singular values are not correlations
        self.correlations_ = _column_corr((a - self.mean_a_) @ self.wa_, (v - self.mean_v_) @ self.wv_).cpu().numpy()
        self.n_audio_, self.n_video_ = a.shape[1], v.shape[1]
        return self

    def _choose(self, a, v, groups):
        uniq = np.unique(groups)
        if len(groups) != a.shape[0]:
            raise ShapeError(f"groups has {len(groups)} entries for {a.shape[0]} rows", field="groups")
        n_folds = min(self.n_folds, len(uniq))
        if n_folds < 2:
            raise DataError(f"choosing the CCA shrinkage needs rows of at least 2 groups, got {len(uniq)}",
                            field="groups")
        fold_of = {g: i % n_folds for i, g in enumerate(uniq)}
        fold = torch.as_tensor(np.array([fold_of[g] for g in groups]), device=self.device)
        scores = {r: [] for r in self.grid}
        for f in range(n_folds):
            tr, te = fold != f, fold == f
            stats = _Stats(a[tr], v[tr])
            for r in self.grid:
                wa, wv, _ = stats.solve(r, self.n_components)
                za, zv = (a[te] - stats.mean_a) @ wa, (v[te] - stats.mean_v) @ wv
                scores[r].append(float(_column_corr(za, zv).sum()))
        cv = {r: float(np.mean(s)) for r, s in scores.items()}
        return max(cv, key=cv.get), cv

    # ------------------------------------------------------------------ projecting
    def transform_audio(self, Xa) -> np.ndarray:
        """Audio rows ``(n, d_a)`` → shared space ``(n, n_components)`` (float32)."""
        self._check()
        a = self._t(Xa, "Xa", self.n_audio_)
        return ((a - self.mean_a_) @ self.wa_).float().cpu().numpy()

    def transform_video(self, Xv) -> np.ndarray:
        """Video rows ``(n, d_v)`` → shared space ``(n, n_components)`` (float32)."""
        self._check()
        v = self._t(Xv, "Xv", self.n_video_)
        return ((v - self.mean_v_) @ self.wv_).float().cpu().numpy()

    def _check(self):
        if not hasattr(self, "wa_"):
            raise ConfigError("RegularizedCCA is not fitted; call fit(Xa, Xv, groups) first")

    def _t(self, X, name, n_features=None) -> torch.Tensor:
        t = X.detach() if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
        t = t.to(self.device, torch.float64)
        if t.ndim != 2 or t.shape[0] == 0:
            raise ShapeError(f"expected a non-empty 2-d array, got shape {tuple(t.shape)}", field=name)
        if n_features is not None and t.shape[1] != n_features:
            raise ShapeError(f"expected {n_features} columns, got {t.shape[1]}", field=name)
        if not bool(torch.isfinite(t).all()):
            raise DataError("contains NaN or infinite values", field=name)
        return t


class _Stats:
    """Means, eigendecomposed covariances and cross-covariance of one training set."""

    def __init__(self, a: torch.Tensor, v: torch.Tensor):
        n = a.shape[0]
        if n < 2:
            raise DataError(f"CCA needs at least 2 paired rows, got {n}", field="Xa")
        self.mean_a, self.mean_v = a.mean(0), v.mean(0)
        ac, vc = a - self.mean_a, v - self.mean_v
        self.eig_a = torch.linalg.eigh(ac.T @ ac / (n - 1))
        self.eig_v = torch.linalg.eigh(vc.T @ vc / (n - 1))
        self.c_av = ac.T @ vc / (n - 1)

    @staticmethod
    def _inv_sqrt(eig, r: float) -> torch.Tensor:
        lam, q = eig.eigenvalues.clamp_min(0), eig.eigenvectors
        target = lam.mean()  # tr(C) / d
        shrunk = (1 - r) * lam + r * target
        shrunk = shrunk.clamp_min(_EIG_FLOOR * float(lam.max().clamp_min(1e-300)))
        return (q * shrunk.rsqrt()) @ q.T

    def solve(self, r: float, k: int):
        """Projections ``(d_a, k)``, ``(d_v, k)`` and the ``k`` training correlations at shrinkage ``r``."""
        ia, iv = self._inv_sqrt(self.eig_a, r), self._inv_sqrt(self.eig_v, r)
        u, s, vh = torch.linalg.svd(ia @ self.c_av @ iv, full_matrices=False)
        return ia @ u[:, :k], iv @ vh[:k].T, s[:k].cpu().numpy()


def _column_corr(za: torch.Tensor, zv: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each column of ``za`` with the same column of ``zv`` (0 for a constant)."""
    za, zv = za - za.mean(0), zv - zv.mean(0)
    den = (za.norm(dim=0) * zv.norm(dim=0)).clamp_min(1e-300)
    return (za * zv).sum(0) / den


def heldout_correlations(cca: RegularizedCCA, Xa, Xv) -> np.ndarray:
    """Canonical correlations of a fitted CCA on new paired rows, per component ``(n_components,)``."""
    za = torch.as_tensor(cca.transform_audio(Xa), dtype=torch.float64)
    zv = torch.as_tensor(cca.transform_video(Xv), dtype=torch.float64)
    return _column_corr(za, zv).numpy()
