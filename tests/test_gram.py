"""The row-space (gram) solvers give scikit-learn's minimisers, for n < d and n > d (bimodal.gram).

Tolerances: LinearSVC / LogisticRegression are run at tol 1e-10 so they are the reference; our
Newton solves stop at a vanishing gradient, so objectives agree to 1e-7 relative and decision
values to 1e-4 absolute (float64 throughout; sklearn's own stopping error dominates).
"""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from bimodal import gram
from bimodal.classifiers import (GramLinearSVM, GramLogisticRegression, StandardizedClassifier, resolve_backend,
                                 select_C)
from bimodal.errors import ConfigError


def _blobs(n, d, k, seed=0, spread=0.35):
    """Class means plus noise, standardised: separable when d ≫ n, overlapping when n ≫ d."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = rng.standard_normal((k, d))[y] * spread + rng.standard_normal((n, d))
    return (X - X.mean(0)) / X.std(0), y


SHAPES = [(60, 400, 5), (300, 20, 4), (80, 200, 2), (250, 30, 2)]  # n < d and n > d, multi-class and binary


@pytest.mark.parametrize("n,d,k", SHAPES)
@pytest.mark.parametrize("C", [0.01, 1.0])
def test_svm_matches_linearsvc(n, d, k, C):
    X, y = _blobs(n, d, k)
    ours = GramLinearSVM(C=C, device="cpu").fit(X, y)
    ref = LinearSVC(C=C, tol=1e-10, max_iter=200000).fit(X, y)
    np.testing.assert_allclose(ours.decision_function(X), ref.decision_function(X), atol=1e-4)
    assert np.array_equal(ours.predict(X), ref.predict(X))
    # liblinear's primal objective: ours is the minimum (never above sklearn's, equal to 1e-7)
    Xt = torch.as_tensor(np.hstack([X, np.ones((n, 1))]))
    T = gram.targets(torch.as_tensor(np.unique(y, return_inverse=True)[1]), k, "svm")
    W = torch.as_tensor(np.vstack([ours.coef_.double().numpy().T, ours.intercept_.double().numpy()[None]]))
    W_ref = torch.as_tensor(np.vstack([ref.coef_.T, ref.intercept_[None]]))
    f_ours = float(gram.svm_objective(Xt, T, W, C).sum())
    f_ref = float(gram.svm_objective(Xt, T, W_ref, C).sum())
    assert f_ours == pytest.approx(f_ref, rel=1e-7)
    assert f_ours <= f_ref * (1 + 1e-9)


@pytest.mark.parametrize("n,d,k", SHAPES)
@pytest.mark.parametrize("C", [0.01, 1.0])
def test_logreg_matches_logisticregression(n, d, k, C):
    X, y = _blobs(n, d, k, seed=1)
    ours = GramLogisticRegression(C=C, device="cpu").fit(X, y)
    ref = LogisticRegression(C=C, tol=1e-12, max_iter=100000).fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    d_ours, d_ref = ours.decision_function(X), ref.decision_function(X)
    if k > 2:  # multinomial intercepts are defined up to a common shift
        d_ours, d_ref = d_ours - d_ours.mean(1, keepdims=True), d_ref - d_ref.mean(1, keepdims=True)
    np.testing.assert_allclose(d_ours, d_ref, atol=1e-3)
    assert np.array_equal(ours.predict(X), ref.predict(X))


def test_exact_line_search_minimises_along_the_direction():
    rng = np.random.default_rng(3)
    F = torch.as_tensor(rng.standard_normal((40, 6)))
    T = torch.as_tensor(np.sign(rng.standard_normal((40, 3))))
    V = torch.as_tensor(rng.standard_normal((6, 3)))
    S = F @ V
    grad = V - 1.4 * F.T @ ((T * S < 1) * (T - S))
    D = -grad + 0.5 * torch.as_tensor(rng.standard_normal((6, 3)))  # a descent direction, not the steepest
    tau = gram._exact_step(V, D, S, F @ D, T, 0.7)
    f_tau = gram.svm_objective(F, T, V + tau * D, 0.7)
    for g in torch.linspace(0, 3, 601, dtype=torch.float64):
        assert (f_tau <= gram.svm_objective(F, T, V + g * D, 0.7) + 1e-9).all()  # no grid point beats it
    assert (tau > 0).all() and ((D * grad).sum(0) < 0).all()


def _grouped(n_groups=6, per=12, d=300, k=4, seed=0):
    X, y = _blobs(n_groups * per, d, k, seed=seed, spread=0.25)
    return X * np.linspace(0.5, 3, d) + 2.0, y, np.repeat(np.arange(n_groups), per)  # standardisation matters


@pytest.mark.parametrize("kind", ["svm", "logreg"])
def test_select_C_gram_path_equals_fold_by_fold_fits(kind):
    """Warm-started path on one basis per fold gives the accuracies of independent fits per C."""
    X, y, groups = _grouped()
    Cs = (1.0, 0.001, 0.1)
    best_g, table_g = select_C(X, y, groups, Cs=Cs, kind=kind, backend="gram", n_folds=3, device="cpu")
    best_s, table_s = select_C(X, y, groups, Cs=Cs, kind=kind, backend="sklearn", n_folds=3)
    assert table_g["Cs"] == list(Cs)
    np.testing.assert_allclose(table_g["per_fold"], table_s["per_fold"], atol=1e-12)
    assert best_g == best_s
    assert 0.3 < max(table_g["mean"]) < 1.0 or min(table_g["mean"]) < max(table_g["mean"])  # C matters here


def test_standardized_gram_agrees_with_sklearn_on_test_predictions():
    X, y, _ = _grouped(seed=2)
    Xte, yte, _ = _grouped(seed=2, n_groups=2)
    a = StandardizedClassifier("svm", "gram", C=0.1, device="cpu").fit(X, y)
    b = StandardizedClassifier("svm", "sklearn", C=0.1).fit(X, y)
    np.testing.assert_allclose(a.decision_function(Xte), b.decision_function(Xte), atol=1e-3)
    assert np.array_equal(a.predict(Xte), b.predict(Xte))


def test_auto_backend_resolution():
    assert resolve_backend("auto", 200, 6144, "cpu") == "gram"
    assert resolve_backend("auto", 5000, 30, "cpu") == "sklearn"
    assert resolve_backend("sklearn", 200, 6144, "cpu") == "sklearn"
    with pytest.raises(ConfigError):
        resolve_backend("jax", 1, 1)
    clf = StandardizedClassifier("svm", "auto", C=1.0, device="cpu").fit(*_blobs(30, 100, 3))
    assert clf.backend_ == "gram" and isinstance(clf.classifier, GramLinearSVM)
    clf = StandardizedClassifier("logreg", "auto", C=1.0, device="cpu").fit(*_blobs(300, 10, 3))
    assert clf.backend_ == "sklearn" and isinstance(clf.classifier, LogisticRegression)


def test_newton_systems_in_class_chunks_give_the_same_solution(monkeypatch):
    X, y = _blobs(40, 120, 5, seed=4)
    whole = GramLinearSVM(C=0.3, device="cpu").fit(X, y)
    monkeypatch.setattr(gram, "_CHUNK_ELEMENTS", 2 * 40 * 40)  # two classes per batched solve
    chunked = GramLinearSVM(C=0.3, device="cpu").fit(X, y)
    torch.testing.assert_close(chunked.coef_, whole.coef_, atol=1e-6, rtol=0)


def test_cpu_fit_runs_on_one_torch_thread_and_restores_the_setting(monkeypatch):
    seen = []
    original = gram.svm_newton_kernel

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return original(*a, **k)

    monkeypatch.setattr(gram, "svm_newton_kernel", spy)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        GramLinearSVM(C=1.0, device="cpu").fit(*_blobs(30, 100, 3))
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)


def test_a_solve_stopped_at_max_iter_is_logged(caplog):
    from bimodal import gram

    rng = np.random.default_rng(0)
    Z = torch.as_tensor(rng.normal(size=(30, 50)))
    y = torch.as_tensor(rng.integers(0, 3, size=30))
    rs = gram.RowSpace(Z, intercept_column=True)
    Y = gram.targets(y, 3, "svm")
    with caplog.at_level("WARNING", logger="bimodal.gram"):
        gram.solve(rs, Y, "svm", 10.0, max_iter=1)
    assert any("stopped at max_iter=1" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="bimodal.gram"):
        gram.solve(rs, Y, "svm", 10.0, max_iter=100)
    assert not caplog.records  # a converged solve says nothing
