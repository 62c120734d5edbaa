"""Linear classifiers on the device, their scikit-learn twins, standardisation and choice of C.

The paper's downstream classifier is a linear SVM on utterance features. :class:`TorchLinearSVM`
and :class:`TorchLogisticRegression` solve the same convex problems as scikit-learn's
``LinearSVC`` (squared hinge, L2, one-vs-rest) and ``LogisticRegression`` (multinomial, L2) with
full-batch L-BFGS on the device: deterministic, and fast on a GPU when C is searched over a grid
for every fold. ``backend="sklearn"`` in :func:`make_classifier` gives the CPU reference, and
``backend="gram"`` (:class:`GramLinearSVM`, :class:`GramLogisticRegression`, :mod:`bimodal.gram`)
solves the same problems exactly in the n-dimensional span of the training rows — seconds instead
of minutes for the C grid when n ≪ d, on the CPU or the GPU. ``backend="auto"`` picks the fastest
exact path for the data's shape and device (:func:`resolve_backend`).

Objectives (``W`` weights, ``b`` intercepts, ``n`` samples; the minimiser is what sklearn computes):

* SVM, per class ``k`` one-vs-rest with targets ``t_ik = ±1``:
  ``0.5 (|w_k|² + b_k²) + C Σ_i max(0, 1 − t_ik (w_k·x_i + b_k))²``.
  The intercept is penalised like liblinear's (a constant feature of value 1, i.e.
  ``intercept_scaling=1``) unless ``penalize_intercept=False``. With two classes one problem is
  solved and ``decision_function`` returns one column, as in sklearn.
* Logistic regression: ``0.5 |W|² + C Σ_i −log softmax(W x_i + b)_{y_i}``, intercept not
  penalised (as sklearn's lbfgs solver).

Both are divided by ``C n`` before optimising (same minimiser, better scaled for L-BFGS's
tolerances).
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

from .device import resolve_device, single_blas_thread, single_torch_thread
from .errors import ConfigError, DataError, ShapeError, TrainingDivergedError
from .folds import speaker_folds

log = logging.getLogger(__name__)

DEFAULT_CS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


# ----------------------------------------------------------------------------- input helpers
def _features(X, device, name="X") -> torch.Tensor:
    t = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
    t = t.detach().to(device=device, dtype=torch.float32)
    if t.ndim != 2:
        raise ShapeError(f"expected features of shape (n_samples, n_features), got {tuple(t.shape)}", field=name)
    if t.shape[0] == 0:
        raise DataError("no samples", field=name)
    if not bool(torch.isfinite(t).all()):
        raise DataError("features contain NaN or infinite values", field=name)
    return t


def _labels(y, n, name="y") -> np.ndarray:
    a = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    if a.ndim != 1 or a.shape[0] != n:
        raise ShapeError(f"expected labels of shape ({n},), got {a.shape}", field=name)
    if not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise DataError(f"labels must be integers, got dtype {a.dtype}", field=name)
    return a.astype(np.int64)


# ----------------------------------------------------------------------------- estimators
class _TorchLinear:
    """Shared fit machinery: label mapping, L-BFGS loop, prediction."""

    def __init__(self, C=1.0, max_iter=500, tol=1e-6, device=None, seed=0):
        if not (isinstance(C, (int, float)) and math.isfinite(C) and C > 0):
            raise ConfigError(f"C must be a positive finite number, got {C!r}")
        self.C = float(C)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.device = device
        self.seed = seed

    # sklearn-like parameter access, so select_C / clone-style code can copy an estimator
    def get_params(self, deep=True):
        return {k: getattr(self, k) for k in self._param_names}

    def set_params(self, **params):
        for k, v in params.items():
            if k not in self._param_names:
                raise ConfigError(f"unknown parameter {k!r}; valid: {sorted(self._param_names)}")
            setattr(self, k, v)
        return self

    def _n_outputs(self, n_classes):
        raise NotImplementedError

    def _loss(self, scores, targets):
        raise NotImplementedError

    def _penalty(self, W, b):
        raise NotImplementedError

    def fit(self, X, y):
        """Fit on ``X (n, d)`` (numpy or tensor) and integer labels ``y (n,)``. Returns self."""
        dev = resolve_device(self.device)
        Xt = _features(X, dev)
        y = _labels(y, Xt.shape[0])
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise DataError(f"need at least two classes to fit, got only {self.classes_.tolist()}", field="y")
        self.n_features_in_ = Xt.shape[1]
        targets = self._targets(torch.as_tensor(y_idx, device=dev), len(self.classes_))
        k = self._n_outputs(len(self.classes_))
        W = torch.zeros(Xt.shape[1], k, device=dev, requires_grad=True)
        b = torch.zeros(k, device=dev, requires_grad=True)
        scale = 1.0 / (self.C * Xt.shape[0])
        opt = torch.optim.LBFGS([W, b], lr=1, max_iter=self.max_iter, history_size=20,
                                tolerance_grad=self.tol, tolerance_change=1e-12,
                                line_search_fn="strong_wolfe")

        def objective():
            return self._loss(Xt @ W + b, targets) / Xt.shape[0] + scale * self._penalty(W, b)

        def closure():
            opt.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        opt.step(closure)  # one call runs up to max_iter L-BFGS iterations
        with torch.no_grad():
            loss = objective()  # step() returns the *starting* loss, so evaluate the end point
        if not (torch.isfinite(loss) and torch.isfinite(W).all() and torch.isfinite(b).all()):
            raise TrainingDivergedError(f"{type(self).__name__} fit gave a non-finite loss or weights (C={self.C})")
        self.n_iter_ = opt.state[opt._params[0]].get("n_iter", None)
        self.objective_ = float(loss)  # the (C n)-scaled objective at the solution
        self.coef_ = W.detach().T.contiguous()  # (k, d) like sklearn
        self.intercept_ = b.detach()
        return self

    def decision_function(self, X):
        """Scores ``(n, n_classes)`` (``(n,)`` for a binary SVM); same kind as ``X``."""
        self._check_fitted()
        dev = self.coef_.device
        was_numpy = not isinstance(X, torch.Tensor)
        Xt = _features(X, dev)
        if Xt.shape[1] != self.n_features_in_:
            raise ShapeError(f"expected {self.n_features_in_} features, got {Xt.shape[1]}", field="X")
        s = Xt @ self.coef_.T + self.intercept_
        if s.shape[1] == 1:
            s = s[:, 0]
        return s.cpu().numpy() if was_numpy else s

    def predict(self, X):
        """Predicted labels (values of ``classes_``) as a numpy int64 array ``(n,)``."""
        s = self.decision_function(torch.as_tensor(X) if not isinstance(X, torch.Tensor) else X)
        idx = (s > 0).long() if s.ndim == 1 else s.argmax(1)
        return self.classes_[idx.cpu().numpy()]

    def score(self, X, y):
        """Mean accuracy on ``(X, y)``."""
        y = _labels(y, len(X))
        return float(np.mean(self.predict(X) == y))

    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise ConfigError(f"{type(self).__name__} is not fitted; call fit(X, y) first")


class TorchLinearSVM(_TorchLinear):
    """One-vs-rest linear SVM, squared hinge loss, L2 penalty (= sklearn ``LinearSVC`` defaults).

    Parameters
    ----------
    C : inverse regularisation strength (> 0).
    max_iter : L-BFGS iterations at most.
    tol : stop when the largest gradient entry of the (C n)-scaled objective is below this.
    penalize_intercept : True penalises the intercept like liblinear (sklearn's behaviour).
    device : None → CUDA if available. seed : kept for a uniform interface; the fit draws no random
        numbers (zero start, full-batch L-BFGS), so it is deterministic on the CPU.

    Attributes
    ----------
    classes_ : numpy (K,) the sorted labels. coef_ : tensor (K, d) — (1, d) for two classes.
    intercept_ : tensor (K,). n_iter_ : L-BFGS iterations used.
    """

    _param_names = ("C", "max_iter", "tol", "device", "seed", "penalize_intercept")

    def __init__(self, C=1.0, max_iter=500, tol=1e-6, device=None, seed=0, penalize_intercept=True):
        super().__init__(C=C, max_iter=max_iter, tol=tol, device=device, seed=seed)
        self.penalize_intercept = bool(penalize_intercept)

    def _n_outputs(self, n_classes):
        return 1 if n_classes == 2 else n_classes

    def _targets(self, y_idx, n_classes):
        if n_classes == 2:
            return (2.0 * y_idx.float() - 1.0)[:, None]
        return 2.0 * torch.nn.functional.one_hot(y_idx, n_classes).float() - 1.0

    def _loss(self, scores, targets):
        return torch.clamp(1.0 - targets * scores, min=0.0).pow(2).sum()

    def _penalty(self, W, b):
        return 0.5 * (W.pow(2).sum() + (b.pow(2).sum() if self.penalize_intercept else 0.0))


class TorchLogisticRegression(_TorchLinear):
    """Multinomial logistic regression with an L2 penalty (= sklearn ``LogisticRegression``, lbfgs).

    Parameters as :class:`TorchLinearSVM`; the intercept is never penalised.
    ``predict_proba(X)`` gives class probabilities ``(n, K)``.
    """

    _param_names = ("C", "max_iter", "tol", "device", "seed")

    def _n_outputs(self, n_classes):
        return n_classes

    def _targets(self, y_idx, n_classes):
        return y_idx

    def _loss(self, scores, targets):
        return torch.nn.functional.cross_entropy(scores, targets, reduction="sum")

    def _penalty(self, W, b):
        return 0.5 * W.pow(2).sum()

    def predict_proba(self, X):
        was_numpy = not isinstance(X, torch.Tensor)
        s = self.decision_function(torch.as_tensor(X) if was_numpy else X)
        p = torch.softmax(s, dim=1)
        return p.cpu().numpy() if was_numpy else p


class _GramFit:
    """``fit`` through :mod:`bimodal.gram` (row-space Newton, float64); prediction as the torch twins."""

    def fit(self, X, y):
        """Fit on ``X (n, d)`` (numpy or tensor) and integer labels ``y (n,)``. Returns self."""
        from . import gram

        Xt = _features(X, resolve_device(self.device))
        y = _labels(y, Xt.shape[0])
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise DataError(f"need at least two classes to fit, got only {self.classes_.tolist()}", field="y")
        self.n_features_in_ = Xt.shape[1]
        with single_torch_thread(Xt.device):
            coef, intercept, self.n_iter_ = gram.fit_primal(Xt, y_idx, len(self.classes_), self._kind, self.C,
                                                            max_iter=self.max_iter)
        self.coef_ = coef.to(torch.float32)  # (k, d); one row for two classes, as sklearn
        self.intercept_ = intercept.to(torch.float32)
        return self


class GramLinearSVM(_GramFit, TorchLinearSVM):
    """:class:`TorchLinearSVM`'s problem (= ``LinearSVC``, penalised intercept) solved exactly by the
    finite Newton method in the span of the training rows (:func:`bimodal.gram.svm_newton`).

    ``max_iter`` bounds the Newton steps (it converges in a few); ``tol`` is not used. The
    intercept is always penalised, as liblinear's.
    """

    _kind = "svm"

    def __init__(self, C=1.0, max_iter=100, tol=1e-6, device=None, seed=0):
        super().__init__(C=C, max_iter=max_iter, tol=tol, device=device, seed=seed, penalize_intercept=True)


class GramLogisticRegression(_GramFit, TorchLogisticRegression):
    """``LogisticRegression``'s problem (L2, intercept not penalised; multinomial, binomial with one
    column for two classes as scikit-learn) solved by truncated Newton in the span of the training
    rows (:func:`bimodal.gram.logreg_newton`)."""

    _kind = "logreg"

    def __init__(self, C=1.0, max_iter=100, tol=1e-6, device=None, seed=0):
        super().__init__(C=C, max_iter=max_iter, tol=tol, device=device, seed=seed)

    def predict_proba(self, X):
        was_numpy = not isinstance(X, torch.Tensor)
        s = self.decision_function(torch.as_tensor(X) if was_numpy else X)
        if s.ndim == 1:
            p1 = torch.sigmoid(s)[:, None]
            p = torch.cat([1.0 - p1, p1], 1)
        else:
            p = torch.softmax(s, dim=1)
        return p.cpu().numpy() if was_numpy else p


BACKENDS = ("auto", "gram", "torch", "sklearn")


def resolve_backend(backend: str, n_samples: int, n_features: int, device=None) -> str:
    """The solver ``backend="auto"`` means for data of this shape on this device; others unchanged.

    ``auto`` is the fastest exact path: ``"gram"`` when ``n_samples <= n_features`` (the problem
    lives in the n-dimensional span of the rows; measured 3-30x faster than liblinear on the CPU
    for utterance features), else ``"sklearn"`` (liblinear / lbfgs) on a CPU and ``"torch"``
    (full-batch L-BFGS) on a GPU, where the row-space Newton systems would be d × d.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if n_samples <= n_features:
        return "gram"
    return "torch" if resolve_device(device).type == "cuda" else "sklearn"


def make_classifier(kind="svm", backend="torch", C=1.0, device=None, seed=0, max_iter=None):
    """A linear classifier by name.

    Parameters
    ----------
    kind : "svm" (squared-hinge linear SVM) or "logreg" (multinomial logistic regression).
    backend : "torch" (device, L-BFGS), "gram" (device, exact row-space Newton; fast when
        n ≪ d) or "sklearn" (``LinearSVC`` / ``LogisticRegression`` on CPU). "auto" depends on
        the data's shape: resolve it first with :func:`resolve_backend`.
    C : inverse regularisation strength. device, seed : as everywhere; sklearn ignores device.
    max_iter : None → each backend's default for this project (torch 500, gram 100 Newton steps,
        LinearSVC 5000, LogisticRegression 2000).
    """
    if kind not in ("svm", "logreg"):
        raise ConfigError(f"kind must be 'svm' or 'logreg', got {kind!r}")
    if backend == "gram":
        cls = GramLinearSVM if kind == "svm" else GramLogisticRegression
        return cls(C=C, max_iter=100 if max_iter is None else max_iter, device=device, seed=seed)
    if backend == "auto":
        raise ConfigError("backend 'auto' depends on the data's shape; call resolve_backend(backend, n, d, device) "
                          "first (StandardizedClassifier and select_C do)")
    if backend == "torch":
        cls = TorchLinearSVM if kind == "svm" else TorchLogisticRegression
        return cls(C=C, max_iter=500 if max_iter is None else max_iter, device=device, seed=seed)
    if backend == "sklearn":
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import LinearSVC

        if kind == "svm":
            return LinearSVC(C=C, max_iter=5000 if max_iter is None else max_iter, random_state=seed)
        return LogisticRegression(C=C, max_iter=2000 if max_iter is None else max_iter, random_state=seed)
    raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")


# ----------------------------------------------------------------------------- standardising pipeline
STANDARDIZE_MODES = ("global", "zscore")


def standardizer(Xt: torch.Tensor, mode: str = "global") -> tuple[torch.Tensor, torch.Tensor]:
    """Training mean ``(d,)`` and scale (``(d,)`` or a scalar tensor).

    ``"zscore"``: each feature's std, or 1 where it is below ``1e-8`` (only centred).
    ``"global"``: one scale for all features, the root of their mean variance. It keeps the
    relative sizes of the features: z-scoring a sparse code blows its near-constant units up to the
    size of its informative ones, which cost 5-7 points of cross-validated accuracy on AVLetters'
    learned features (docs/tuning.md); one scale still makes the C grid mean the same for every
    feature set.
    """
    if mode not in STANDARDIZE_MODES:
        raise ConfigError(f"standardize must be one of {STANDARDIZE_MODES}, got {mode!r}")
    std = Xt.std(0, unbiased=False)
    if mode == "zscore":
        return Xt.mean(0), torch.where(std > 1e-8, std, torch.ones_like(std))
    g = std.pow(2).mean().sqrt()
    return Xt.mean(0), torch.where(g > 1e-8, g, torch.ones_like(g))


class StandardizedClassifier:
    """Standardise features with training statistics (:func:`standardizer`), then a linear classifier.

    With ``standardize="zscore"`` features whose training std is below ``1e-8`` are only centred
    (no division by ~0); ``"global"`` (default) centres and divides by one scale. For the
    torch and gram backends data stay on the classifier's device; for sklearn they are numpy on
    the CPU.

    Parameters
    ----------
    kind, backend, C, device, seed, max_iter : see :func:`make_classifier`; ``backend="auto"`` is
        resolved by :func:`resolve_backend` at ``fit`` (attribute ``backend_``).
    standardize : "global" or "zscore", see :func:`standardizer`.
    """

    def __init__(self, kind="svm", backend="torch", C=1.0, device=None, seed=0, max_iter=None,
                 standardize="global"):
        if standardize not in STANDARDIZE_MODES:
            raise ConfigError(f"standardize must be one of {STANDARDIZE_MODES}, got {standardize!r}")
        self.standardize = standardize
        self.kind, self.backend, self.C = kind, backend, C
        self.device, self.seed, self.max_iter = device, seed, max_iter
        self.backend_ = None if backend == "auto" else backend
        self.classifier = None if backend == "auto" else make_classifier(kind, backend, C, device=device, seed=seed,
                                                                          max_iter=max_iter)

    def _prepare(self, X, name):
        dev = torch.device("cpu") if self.backend_ == "sklearn" else resolve_device(self.device)
        return _features(X, dev, name)

    def fit(self, X, y):
        if self.backend == "auto":
            shape = np.shape(X) if not isinstance(X, torch.Tensor) else tuple(X.shape)
            self.backend_ = resolve_backend("auto", *shape[:2], self.device) if len(shape) == 2 else "sklearn"
            self.classifier = make_classifier(self.kind, self.backend_, self.C, device=self.device, seed=self.seed,
                                              max_iter=self.max_iter)
        Xt = self._prepare(X, "X_train")
        y = _labels(y, Xt.shape[0], "y_train")
        self.mean_, self.scale_ = standardizer(Xt, self.standardize)
        Z = (Xt - self.mean_) / self.scale_
        if self.backend_ == "sklearn":
            import warnings

            from sklearn.exceptions import ConvergenceWarning

            with warnings.catch_warnings(), single_blas_thread():
                # Accuracy, not the last digit of the weights, is what we report; a capped solver is logged.
                warnings.simplefilter("ignore", ConvergenceWarning)
                self.classifier.fit(Z.numpy(), y)
        else:
            self.classifier.fit(Z, y)
        self.classes_ = np.asarray(self.classifier.classes_)
        return self

    def _transform(self, X):
        if not hasattr(self, "mean_"):
            raise ConfigError("StandardizedClassifier is not fitted; call fit(X, y) first")
        Z = (self._prepare(X, "X") - self.mean_) / self.scale_
        return Z.numpy() if self.backend_ == "sklearn" else Z

    def decision_function(self, X):
        with single_blas_thread():
            s = self.classifier.decision_function(self._transform(X))
        return s if isinstance(s, np.ndarray) else s.cpu().numpy()

    def predict(self, X):
        with single_blas_thread():
            return np.asarray(self.classifier.predict(self._transform(X))).astype(np.int64)

    def score(self, X, y):
        y = _labels(y, len(X))
        return float(np.mean(self.predict(X) == y))


def fit_predict(Xtr, ytr, Xte, kind="svm", backend="torch", C=1.0, device=None, seed=0, max_iter=None,
                standardize="global"):
    """Standardise with training statistics, fit on ``(Xtr, ytr)``, return predictions for ``Xte``.

    Returns numpy int64 ``(n_test,)`` labels.
    """
    clf = StandardizedClassifier(kind, backend, C, device=device, seed=seed, max_iter=max_iter,
                                 standardize=standardize)
    return clf.fit(Xtr, ytr).predict(Xte)


# ----------------------------------------------------------------------------- choice of C
def select_C(X, y, groups, Cs=DEFAULT_CS, kind="svm", backend="torch", n_folds=3, seed=0, device=None,
             max_iter=None, on_fold=None, standardize="global"):
    """Choose C by cross-validation grouped by speaker (no speaker in both inner train and validation).

    Call it with the *training* speakers' data only; the outer test speakers must not be passed.

    Parameters
    ----------
    X : (n, d) features. y : (n,) int labels. groups : (n,) group of each sample — the speaker,
        or any other unit that must not straddle inner train and validation (e.g. a repetition).
    Cs : candidate values. n_folds : inner folds (reduced to the number of groups if larger).
    backend : as :class:`StandardizedClassifier`. With ``"gram"`` (what ``"auto"`` picks when
        n ≤ d) each inner fold is standardised and reduced to its rows' span once, and the grid is
        solved as one path, smallest C first, each solution warm-starting the next.
    on_fold : optional callable ``on_fold(C, fold, train_idx, val_idx)`` called before each fit
        (used by tests to check that folds never share a speaker).
    standardize : feature scaling of every inner fit, see :func:`standardizer`.

    Returns
    -------
    best_C : the C with the highest mean validation accuracy; ties go to the smallest C
        (strongest regularisation).
    table : dict ``{"Cs": [...], "mean": [...], "std": [...], "per_fold": [[acc per fold] per C],
        "n_folds": k}``.
    """

    Cs = [float(c) for c in Cs]
    if not Cs:
        raise ConfigError("Cs must contain at least one value")
    shape = np.shape(X) if not isinstance(X, torch.Tensor) else tuple(X.shape)
    if backend == "auto" and len(shape) == 2:
        backend = resolve_backend(backend, *shape, device)
    dev = torch.device("cpu") if backend == "sklearn" else resolve_device(device)
    Xt = _features(X, dev)
    y = _labels(y, Xt.shape[0])
    groups = np.asarray(groups)
    if groups.shape != (Xt.shape[0],):
        raise ShapeError(f"expected groups of shape ({Xt.shape[0]},), got {groups.shape}", field="groups")
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise DataError(f"select_C needs at least 2 groups for grouped CV, got {n_groups}", field="groups")
    folds = speaker_folds(groups, n_folds=min(n_folds, n_groups), seed=seed)
    per_fold = np.zeros((len(Cs), len(folds)))
    for f, (tr, va) in enumerate(folds):
        if len(np.unique(y[tr])) < 2:
            raise DataError(f"inner fold {f} has a single class in training; use fewer folds", field="y")
        tr_t = torch.as_tensor(tr, device=dev)
        va_t = torch.as_tensor(va, device=dev)
        if backend == "gram":  # one basis per fold, the whole grid solved as a warm-started path
            if on_fold is not None:
                for C in Cs:
                    on_fold(C, f, tr, va)
            with single_torch_thread(dev):
                per_fold[:, f] = _gram_grid_accuracies(Xt[tr_t], y[tr], Xt[va_t], y[va], Cs, kind, max_iter,
                                                       standardize)
            continue
        for i, C in enumerate(Cs):
            if on_fold is not None:
                on_fold(C, f, tr, va)
            clf = StandardizedClassifier(kind, backend, C, device=dev, seed=seed, max_iter=max_iter,
                                         standardize=standardize)
            per_fold[i, f] = clf.fit(Xt[tr_t], y[tr]).score(Xt[va_t], y[va])
    mean = per_fold.mean(1)
    best = int(np.flatnonzero(mean == mean.max())[np.argmin(np.array(Cs)[mean == mean.max()])])
    log.info("select_C: %s", ", ".join(f"C={c:g}: {m:.3f}" for c, m in zip(Cs, mean)))
    table = {"Cs": Cs, "mean": mean.tolist(), "std": per_fold.std(1).tolist(),
             "per_fold": per_fold.tolist(), "n_folds": len(folds)}
    return Cs[best], table


def _gram_grid_accuracies(Xtr, ytr, Xva, yva, Cs, kind, max_iter=None, standardize="global") -> np.ndarray:
    """Validation accuracy for every C of ``Cs`` (in the given order) from one row-space basis of the
    standardised training rows; the same numbers as fitting a gram-backend
    :class:`StandardizedClassifier` per C."""
    from . import gram

    mean, scale = standardizer(Xtr, standardize)
    classes, y_idx = np.unique(ytr, return_inverse=True)
    rs = gram.RowSpace((Xtr - mean) / scale, intercept_column=(kind == "svm"))
    cross = rs.cross((Xva - mean) / scale)
    Y = gram.targets(torch.as_tensor(y_idx, device=Xtr.device), len(classes), kind)
    path = gram.solve_path(rs, Y, kind, Cs, max_iter)
    accs = []
    for C in Cs:
        s = gram.scores(cross, path[float(C)])
        idx = (s[:, 0] > 0).long() if s.shape[1] == 1 else s.argmax(1)
        accs.append(float(np.mean(classes[idx.cpu().numpy()] == yva)))
    return np.asarray(accs)
