"""Exact linear SVM and logistic regression solved in the training rows' span: fast when n ≪ d.

Utterance features are wide (``d`` = 4 × 1536 = 6144 at the paper's sizes) while a fold has a
few hundred training utterances. Both objectives of :mod:`bimodal.classifiers` penalise ``|w|²``
and see the data only through ``X w``, so their minimiser lies in the span of the training rows
(representer theorem): ``w = Xᵀ α``, and the problem is the same one written with the Gram
matrix ``G = X Xᵀ (n, n)`` — one ``n² d`` product, after which nothing costs more than ``n³``.
:class:`RowSpace` holds that form (or the plain features when ``n > d``).

* :func:`svm_newton_kernel` / :func:`svm_newton` solve the one-vs-rest squared-hinge L2 SVM
  (liblinear's primal, intercept penalised as a constant feature) by the finite Newton method of
  Keerthi & DeCoste (2005): each step solves the quadratic model on the current margin violators
  (one batched Cholesky, n × n per class) and takes the exact minimiser along that direction
  (the objective is piecewise quadratic, so the line search is exact too). It stops when the
  gradient vanishes to rounding error: the result is LinearSVC's minimiser, not an approximation.
* :func:`logreg_newton` solves L2 logistic regression (multinomial; binomial for two classes, as
  scikit-learn; intercept not penalised) by truncated Newton with exact Hessian-vector products
  in coordinates ``F`` with ``F Fᵀ = G`` (from ``G``'s eigendecomposition).

Everything runs in float64 on the given device (CPU or GPU). A C grid is solved as a path with
warm starts (:func:`solve_path`), and :func:`bimodal.classifiers.select_C` shares one Gram
matrix per inner fold across the whole grid — the work behind ``backend="gram"`` in :mod:`bimodal.classifiers`.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

from .errors import DataError, TrainingDivergedError

log = logging.getLogger(__name__)

DTYPE = torch.float64
_CHUNK_ELEMENTS = 1 << 25  # float64 entries of the batched Newton systems solved at once (256 MB)


class RowSpace:
    """The training rows in the form the solvers use, and the map from solutions back to weights.

    Parameters
    ----------
    Z : tensor (n, d), the (standardised) training features.
    intercept_column : True appends a constant feature of value 1 (liblinear's penalised
        intercept, ``intercept_scaling=1``) before anything else.

    Attributes
    ----------
    kernel : True when ``n ≤ d̃`` (``d̃`` counts the constant column): the solvers then see the
        data only through the Gram matrix ``G = Z̃ Z̃ᵀ (n, n)`` and a solution is a coefficient
        per training row, ``w = Z̃ᵀ α``. Otherwise (``n > d̃``) ``F = Z̃`` and a solution is ``w``.
    G : float64 (n, n) or None. F : float64 (n, p) features with ``F Fᵀ = G`` (built on demand in
        the kernel form from ``G``'s eigenvectors; used by logistic regression).
    """

    def __init__(self, Z: torch.Tensor, intercept_column: bool):
        self.intercept_column = bool(intercept_column)
        self.Z = self._augment(Z)
        n, d = self.Z.shape
        self.kernel = n <= d
        self.G = self.Z @ self.Z.T if self.kernel else None  # the one n² d product per fold
        self._F = None if self.kernel else self.Z
        self._to_alpha = None

    def _augment(self, Z: torch.Tensor) -> torch.Tensor:
        Z = Z.to(DTYPE)
        if self.intercept_column:
            Z = torch.cat([Z, torch.ones(Z.shape[0], 1, dtype=DTYPE, device=Z.device)], 1)
        return Z

    @property
    def F(self) -> torch.Tensor:
        if self._F is None:
            # G = U diag(s) Uᵀ; F = U s^½ has F Fᵀ = G, and v ↦ α = U s^-½ v maps its weights back.
            # Directions with s below 1e-12 of the largest carry no data (only rounding) and are dropped.
            s, U = torch.linalg.eigh(self.G)
            keep = s > 1e-12 * s.max().clamp_min(1e-300)
            s, U = s[keep], U[:, keep]
            self._F = U * s.sqrt()
            self._to_alpha = U / s.sqrt()
        return self._F

    def cross(self, Z: torch.Tensor) -> torch.Tensor:
        """What new rows ``Z (m, d)`` are multiplied with to score them: ``Z̃ Z̃_trainᵀ (m, n)`` in the
        kernel form, ``Z̃ (m, d̃)`` otherwise; ``scores = cross(Z) @ coefficients + b``."""
        Zt = self._augment(Z)
        return Zt @ self.Z.T if self.kernel else Zt

    def coefficients(self, V: torch.Tensor) -> torch.Tensor:
        """Coefficients ``(n, k)`` (kernel) or weights ``(d̃, k)`` of a solution ``V`` in ``F``'s coordinates."""
        return V if self._to_alpha is None else self._to_alpha @ V

    def weights(self, A: torch.Tensor) -> torch.Tensor:
        """Weights ``(d̃, k)`` in the original feature space from coefficients ``A``."""
        return self.Z.T @ A if self.kernel else A


# ----------------------------------------------------------------------------- squared-hinge SVM
def svm_objective(F: torch.Tensor, T: torch.Tensor, V: torch.Tensor, C: float) -> torch.Tensor:
    """Per-class ``0.5 |v_k|² + C Σ_i max(0, 1 − t_ik f_i·v_k)²`` → (k,)."""
    return 0.5 * (V * V).sum(0) + C * torch.clamp(1.0 - T * (F @ V), min=0.0).pow(2).sum(0)


def _exact_step(V, D, S, SD, T, C):
    """Exact minimiser ``τ ≥ 0`` of the SVM objective from ``V`` along ``D`` (see :func:`_exact_step_terms`)."""
    return _exact_step_terms((V * D).sum(0), (D * D).sum(0), S, SD, T, C)


def _exact_step_terms(vd, dd, S, SD, T, C):
    """Exact minimiser ``τ ≥ 0`` of the (piecewise-quadratic, convex) SVM objective along ``D``.

    ``φ'(τ) = v·d + τ|d|² − 2C Σ_{u_i > τ w_i} w_i (u_i − τ w_i)`` with ``u = 1 − t s`` and
    ``w = t δ`` is continuous, nondecreasing and linear between the breakpoints ``u_i / w_i``;
    the root lies in the first linear piece whose own root does not pass the piece's end.
    All classes at once (columns), with a sort and cumulative sums: O(k n log n).
    """
    u, w = 1.0 - T * S, T * SD                                    # (n, k); vd = v·d, dd = |d|² per class
    active = (u > 0) | ((u == 0) & (w < 0))                       # active just after τ = 0
    A0 = (active * w * u).sum(0)
    B0 = (active * w * w).sum(0)
    with torch.no_grad():
        tau_i = torch.where(w != 0, u / torch.where(w != 0, w, torch.ones_like(w)), torch.full_like(u, math.inf))
    toggles = (tau_i > 0) & torch.isfinite(tau_i) & (active == (w > 0))  # leaves (w > 0) or enters (w < 0)
    sign = torch.where(w > 0, -1.0, 1.0).to(u.dtype)
    tau_i = torch.where(toggles, tau_i, torch.full_like(u, math.inf))
    order = torch.argsort(tau_i, dim=0)
    tau_sorted = torch.gather(tau_i, 0, order)
    dA = torch.gather(torch.where(toggles, sign * w * u, torch.zeros_like(u)), 0, order)
    dB = torch.gather(torch.where(toggles, sign * w * w, torch.zeros_like(u)), 0, order)
    zero = torch.zeros(1, u.shape[1], dtype=u.dtype, device=u.device)
    A = A0 + torch.cat([zero, torch.cumsum(dA, 0)], 0)            # (n+1, k): piece j after j toggles
    B = B0 + torch.cat([zero, torch.cumsum(dB, 0)], 0)
    ends = torch.cat([tau_sorted, torch.full_like(zero, math.inf)], 0)
    slope = dd + 2.0 * C * B
    root = (2.0 * C * A - vd) / torch.where(slope > 0, slope, torch.ones_like(slope))
    inside = (root <= ends) | ~torch.isfinite(ends)
    first = torch.argmax(inside.to(torch.int8), dim=0)           # first piece holding the root
    tau = torch.gather(root, 0, first[None])[0]
    return torch.where(dd > 0, tau.clamp_min(0.0), torch.zeros_like(tau))


def svm_newton(F: torch.Tensor, T: torch.Tensor, C: float, V0: torch.Tensor | None = None, max_iter: int = 100,
               tol: float = 1e-10) -> tuple[torch.Tensor, int]:
    """Minimise :func:`svm_objective` for every class column of ``T`` (targets ±1).

    Parameters
    ----------
    F : float64 (n, p) features (a constant column in it gives a penalised intercept).
    T : float64 (n, k) targets ±1. C : > 0. V0 : optional warm start (p, k).
    tol : stop when ``max |gradient| ≤ tol · max(1, C n)`` (the objective's scale).

    Returns
    -------
    V : (p, k) minimiser. n_iter : Newton steps taken.
    """
    n, p = F.shape
    k = T.shape[1]
    V = torch.zeros(p, k, dtype=F.dtype, device=F.device) if V0 is None else V0.clone()
    eye = torch.eye(p, dtype=F.dtype, device=F.device)
    scale = max(1.0, C * n)
    for it in range(1, max_iter + 1):
        S = F @ V
        M = (T * S < 1.0).to(F.dtype)                              # margin violators per class
        grad = V - 2.0 * C * (F.T @ (M * (T - S)))
        if float(grad.abs().max()) <= tol * scale:
            return V, it - 1
        # Newton target: the minimiser of the quadratic valid on this active set,
        # (I + 2C F_aᵀ F_a) v = 2C F_aᵀ t_a, one p×p system per class.
        H = torch.stack([eye + 2.0 * C * (F.T * M[:, j]) @ F for j in range(k)])
        rhs = 2.0 * C * (F.T @ (M * T)).T[..., None]              # (k, p, 1)
        L, info = torch.linalg.cholesky_ex(H)
        target = torch.cholesky_solve(rhs, L)[..., 0].T            # (p, k)
        D = target - V
        tau = _exact_step(V, D, S, F @ D, T, C)
        V = V + tau * D
        if not bool(torch.isfinite(V).all()):
            raise TrainingDivergedError(f"SVM Newton solve gave non-finite weights (C={C})")
    return V, max_iter


def svm_newton_kernel(G: torch.Tensor, T: torch.Tensor, C: float, A0: torch.Tensor | None = None,
                      max_iter: int = 100, tol: float = 1e-10) -> tuple[torch.Tensor, int]:
    """:func:`svm_newton` with the weights written as ``w = Z̃ᵀ α`` and the data seen through
    ``G = Z̃ Z̃ᵀ (n, n)`` only: the same iterates, with n×n systems instead of p×p ones.

    The Newton target on active set ``a`` is ``α_a = (I/(2C) + G_aa)⁻¹ t_a``, ``α`` = 0 elsewhere
    (push-through identity applied to :func:`svm_newton`'s system); all classes are solved in
    one batched Cholesky with the inactive rows masked to ``I/(2C)``. Stops when
    ``|gradient| ≤ tol · max(1, C n)`` in the primal norm. Returns ``α (n, k)`` and the steps.
    """
    n = G.shape[0]
    k = T.shape[1]
    A = torch.zeros(n, k, dtype=G.dtype, device=G.device) if A0 is None else A0.clone()
    eye = torch.eye(n, dtype=G.dtype, device=G.device) / (2.0 * C)
    scale = max(1.0, C * n)
    per_chunk = max(1, _CHUNK_ELEMENTS // (n * n))
    for it in range(1, max_iter + 1):
        S = G @ A
        M = (T * S < 1.0).to(G.dtype)
        R = A - 2.0 * C * M * (T - S)                              # primal gradient = Z̃ᵀ R
        if float((R * (G @ R)).sum(0).max().clamp_min(0).sqrt()) <= tol * scale:
            return A, it - 1
        Mt = M.T                                                   # (k, n)
        target = torch.empty_like(A)
        for c0 in range(0, k, per_chunk):  # classes in chunks: memory bounded by _CHUNK_ELEMENTS
            m = Mt[c0:c0 + per_chunk]
            H = eye + m[:, :, None] * G * m[:, None, :]            # inactive rows = I/(2C)
            L, _ = torch.linalg.cholesky_ex(H)
            target[:, c0:c0 + per_chunk] = torch.cholesky_solve((m * T.T[c0:c0 + per_chunk])[..., None], L)[..., 0].T
        D = target - A
        GD = G @ D
        # _exact_step needs v·d and |d|²: in the kernel form these are αᵀ G d and dᵀ G d.
        tau = _exact_step_terms((A * GD).sum(0), (D * GD).sum(0), S, GD, T, C)
        A = A + tau * D
        if not bool(torch.isfinite(A).all()):
            raise TrainingDivergedError(f"SVM Newton solve gave non-finite weights (C={C})")
    return A, max_iter


# ----------------------------------------------------------------------------- logistic regression
def _probs(S: torch.Tensor) -> torch.Tensor:
    """Class probabilities: softmax over columns, or the sigmoid of a single (binary) column."""
    return torch.sigmoid(S) if S.shape[1] == 1 else torch.softmax(S, dim=1)


def logreg_objective(F, Y, V, b, C):
    """``0.5 |V|² + C Σ_i −log p(y_i | f_i)`` (scalar): multinomial, or binomial with one column
    for two classes as scikit-learn (``Y`` is one-hot (n, K), or (n, 1) of 0/1)."""
    S = F @ V + b
    if S.shape[1] == 1:
        nll = torch.nn.functional.binary_cross_entropy_with_logits(S, Y, reduction="sum")
    else:
        nll = -(Y * torch.log_softmax(S, dim=1)).sum()
    return 0.5 * (V * V).sum() + C * nll


def logreg_newton(F: torch.Tensor, Y: torch.Tensor, C: float, init=None, max_iter: int = 100, tol: float = 1e-10,
                  max_cg: int = 500) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Minimise :func:`logreg_objective` by truncated Newton (conjugate gradients on exact
    Hessian-vector products, Armijo backtracking). The intercept is not penalised.

    Stops when ``max |gradient| ≤ tol · max(1, C n)``. ``init = (V0, b0)`` warm-starts.
    Returns ``V (p, k)``, ``b (k,)`` and the Newton steps taken.
    """
    n, p = F.shape
    k = Y.shape[1]
    if init is None:
        V = torch.zeros(p, k, dtype=F.dtype, device=F.device)
        b = torch.zeros(k, dtype=F.dtype, device=F.device)
    else:
        V, b = init[0].clone(), init[1].clone()
    scale = max(1.0, C * n)
    f = logreg_objective(F, Y, V, b, C)
    for it in range(max_iter):
        P = _probs(F @ V + b)
        G = P - Y
        gV, gb = V + C * (F.T @ G), C * G.sum(0)
        gmax = float(torch.maximum(gV.abs().max(), gb.abs().max()))
        if gmax <= tol * scale:
            return V, b, it

        def hess(dV, db):
            R = F @ dV + db
            Q = P * (1.0 - P) * R if k == 1 else P * (R - (P * R).sum(1, keepdim=True))
            return dV + C * (F.T @ Q), C * Q.sum(0)

        # CG on H d = −g, to a relative residual that tightens as the gradient shrinks.
        dV, db = torch.zeros_like(V), torch.zeros_like(b)
        rV, rb = -gV, -gb
        pV, pb = rV.clone(), rb.clone()
        rr = (rV * rV).sum() + (rb * rb).sum()
        stop = float(rr) * min(0.25, math.sqrt(gmax / scale)) ** 2
        for _ in range(max_cg):
            hV, hb = hess(pV, pb)
            pHp = (pV * hV).sum() + (pb * hb).sum()
            if float(pHp) <= 0:
                break
            a = rr / pHp
            dV, db = dV + a * pV, db + a * pb
            rV, rb = rV - a * hV, rb - a * hb
            rr_new = (rV * rV).sum() + (rb * rb).sum()
            if float(rr_new) <= stop:
                break
            pV, pb = rV + (rr_new / rr) * pV, rb + (rr_new / rr) * pb
            rr = rr_new
        slope = float((gV * dV).sum() + (gb * db).sum())
        step = 1.0
        while True:  # Armijo backtracking; the full Newton step is accepted near the optimum
            f_new = logreg_objective(F, Y, V + step * dV, b + step * db, C)
            if float(f_new) <= float(f) + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        V, b, f = V + step * dV, b + step * db, f_new
        if not bool(torch.isfinite(f)):
            raise TrainingDivergedError(f"logistic regression Newton solve gave a non-finite objective (C={C})")
    return V, b, max_iter


# ----------------------------------------------------------------------------- shared front end
def targets(y_idx: torch.Tensor, n_classes: int, kind: str) -> torch.Tensor:
    """SVM: ±1 one-vs-rest columns; logreg: one-hot columns. Two classes give one column (of ±1 or
    0/1), as scikit-learn's LinearSVC and binary LogisticRegression."""
    if kind == "logreg":
        if n_classes == 2:
            return y_idx.to(DTYPE)[:, None]
        return torch.nn.functional.one_hot(y_idx, n_classes).to(DTYPE)
    if n_classes == 2:
        return (2.0 * y_idx.to(DTYPE) - 1.0)[:, None]
    return 2.0 * torch.nn.functional.one_hot(y_idx, n_classes).to(DTYPE) - 1.0


def solve(rs: RowSpace, Y, kind: str, C: float, warm=None, max_iter=None):
    """One fit: returns the solver's state ``(V, b)`` (pass it back as ``warm``; ``b`` is None for the
    SVM, whose intercept is the constant column's weight) and the iterations used. A solve that
    stops at ``max_iter`` is logged as a warning (as scikit-learn's ConvergenceWarning)."""
    limit = max_iter or 100
    if kind == "svm":
        if rs.kernel:
            V, it = svm_newton_kernel(rs.G, Y, C, A0=None if warm is None else warm[0], max_iter=limit)
        else:
            V, it = svm_newton(rs.F, Y, C, V0=None if warm is None else warm[0], max_iter=limit)
        sol = (V, None)
    else:
        V, b, it = logreg_newton(rs.F, Y, C, init=warm, max_iter=limit)
        sol = (V, b)
    if it >= limit:
        log.warning("%s Newton solve at C=%g stopped at max_iter=%d before converging", kind, C, limit)
    return sol, it


def coefficients(rs: RowSpace, kind: str, sol) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(A, b)`` such that scores of new rows are ``rs.cross(Z) @ A + b`` (``b`` None: no free intercept)."""
    V, b = sol
    return (V if kind == "svm" else rs.coefficients(V)), b


def solve_path(rs: RowSpace, Y, kind: str, Cs, max_iter=None) -> dict:
    """Solutions for every C of ``Cs``, computed in increasing C with warm starts: ``{C: (A, b)}``
    (see :func:`coefficients`)."""
    out, warm = {}, None
    for C in sorted(set(float(c) for c in Cs)):
        warm, _ = solve(rs, Y, kind, C, warm, max_iter)
        out[C] = coefficients(rs, kind, warm)
    return out


def scores(cross: torch.Tensor, coef) -> torch.Tensor:
    """Decision values ``(m, k)`` from ``rs.cross(Z)`` and ``(A, b)``."""
    A, b = coef
    s = cross @ A
    return s if b is None else s + b


def fit_primal(Z: torch.Tensor, y_idx: np.ndarray, n_classes: int, kind: str, C: float, max_iter=None):
    """Fit on standardised features ``Z (n, d)``; returns ``coef (k, d)``, ``intercept (k,)`` in float64
    and the iterations used — the same minimiser as LinearSVC / LogisticRegression."""
    if n_classes < 2:
        raise DataError("need at least two classes to fit", field="y")
    rs = RowSpace(Z, intercept_column=(kind == "svm"))
    Y = targets(torch.as_tensor(y_idx, device=Z.device), n_classes, kind)
    sol, it = solve(rs, Y, kind, C, None, max_iter)
    A, b = coefficients(rs, kind, sol)
    W = rs.weights(A)                                            # (d̃, k)
    if kind == "svm":
        return W[:-1].T.contiguous(), W[-1].contiguous(), it
    return W.T.contiguous(), b, it
