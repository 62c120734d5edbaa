import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification

from bimodal.classifiers import (StandardizedClassifier, TorchLinearSVM, TorchLogisticRegression, fit_predict,
                                 make_classifier, select_C)
from bimodal.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def noisy_data():
    # 4 classes, label noise and overlap: accuracy is well away from both 0 and 100 %.
    X, y = make_classification(n_samples=900, n_features=30, n_informative=8, n_redundant=4, n_classes=4,
                               flip_y=0.15, class_sep=0.8, random_state=0)
    X = X * np.linspace(0.1, 20, X.shape[1]) + 5.0  # unequal scales: standardisation matters
    return X[:600], y[:600] + 10, X[600:], y[600:] + 10  # labels not 0..K-1


@pytest.mark.parametrize("kind", ["svm", "logreg"])
def test_torch_and_sklearn_agree_within_one_point(noisy_data, kind):
    Xtr, ytr, Xte, yte = noisy_data
    acc_t = np.mean(fit_predict(Xtr, ytr, Xte, kind=kind, backend="torch", C=0.1, device="cpu") == yte)
    acc_s = np.mean(fit_predict(Xtr, ytr, Xte, kind=kind, backend="sklearn", C=0.1) == yte)
    assert 0.3 < acc_s < 0.95, acc_s  # the comparison means something only away from 0 and 1
    assert abs(acc_t - acc_s) <= 0.01, (acc_t, acc_s)


@pytest.mark.parametrize("kind", ["svm", "logreg"])
def test_accuracy_beats_chance(noisy_data, kind):
    Xtr, ytr, Xte, yte = noisy_data
    acc = StandardizedClassifier(kind, "torch", C=1.0, device="cpu").fit(Xtr, ytr).score(Xte, yte)
    assert acc > 0.25 + 0.2, acc  # 4 balanced classes: chance 0.25


def test_svm_solves_the_liblinear_problem():
    from sklearn.svm import LinearSVC

    X, y = make_classification(n_samples=300, n_features=10, n_classes=3, n_informative=5, random_state=2)
    X = (X - X.mean(0)) / X.std(0)
    ours = TorchLinearSVM(C=0.5, device="cpu").fit(X, y)
    ref = LinearSVC(C=0.5, tol=1e-8, max_iter=100000).fit(X, y)
    np.testing.assert_allclose(ours.coef_.numpy(), ref.coef_, atol=2e-3)
    np.testing.assert_allclose(ours.intercept_.numpy(), ref.intercept_, atol=2e-3)

    def objective(W, b):  # liblinear's primal, divided by C n as documented
        T = 2 * np.eye(3)[y] - 1
        hinge = np.maximum(0, 1 - T * (X @ W.T + b)) ** 2
        return (0.5 * ((W ** 2).sum() + (b ** 2).sum()) + 0.5 * hinge.sum()) / (0.5 * len(y))

    assert ours.objective_ == pytest.approx(objective(ours.coef_.numpy(), ours.intercept_.numpy()), rel=1e-5)
    assert ours.objective_ <= objective(ref.coef_, ref.intercept_) * (1 + 1e-5)


def test_logreg_solves_the_sklearn_problem():
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=300, n_features=10, n_classes=3, n_informative=5, random_state=3)
    X = (X - X.mean(0)) / X.std(0)
    ours = TorchLogisticRegression(C=0.5, device="cpu").fit(X, y)
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=2e-3)


def test_binary_labels_mapped_and_decision_is_one_column():
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    labels = np.where(y == 1, 7, -3)
    clf = TorchLinearSVM(device="cpu").fit(X, labels)
    assert clf.classes_.tolist() == [-3, 7]
    d = clf.decision_function(X)
    assert d.shape == (200,)
    assert set(np.unique(clf.predict(X))) <= {-3, 7}
    assert clf.score(X, labels) > 0.8
    # tensor in -> tensor out
    assert isinstance(clf.decision_function(torch.as_tensor(X, dtype=torch.float32)), torch.Tensor)


def test_fit_is_deterministic(noisy_data):
    Xtr, ytr, _, _ = noisy_data
    Xtr = (Xtr - Xtr.mean(0)) / Xtr.std(0)
    a = TorchLogisticRegression(C=1.0, device="cpu").fit(Xtr, ytr).coef_
    b = TorchLogisticRegression(C=1.0, device="cpu").fit(Xtr, ytr).coef_
    assert torch.equal(a, b)


def test_make_classifier_backends_and_errors():
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    assert isinstance(make_classifier("svm", "sklearn"), LinearSVC)
    assert isinstance(make_classifier("logreg", "sklearn"), LogisticRegression)
    assert isinstance(make_classifier("svm", "torch"), TorchLinearSVM)
    with pytest.raises(ConfigError):
        make_classifier("tree")
    with pytest.raises(ConfigError):
        make_classifier("svm", "jax")
    with pytest.raises(ConfigError):
        TorchLinearSVM(C=0)
    with pytest.raises(DataError):
        TorchLinearSVM().fit(np.ones((4, 2)), np.zeros(4, dtype=int))
    with pytest.raises(DataError):
        TorchLinearSVM().fit(np.full((2, 2), np.nan), np.array([0, 1]))


def test_standardisation_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    Xtr = rng.normal(size=(50, 3))
    ytr = (Xtr[:, 0] > 0).astype(int)
    clf = StandardizedClassifier("svm", "torch", device="cpu").fit(Xtr, ytr)
    np.testing.assert_allclose(clf.mean_.numpy(), Xtr.mean(0), atol=1e-5)
    # Shifting the test set must change predictions (it is not re-standardised with its own stats).
    Xte = rng.normal(size=(40, 3))
    p0, p1 = clf.predict(Xte), clf.predict(Xte + np.array([100.0, 0, 0]))
    assert (p1 == 1).all() and not (p0 == 1).all()


def _grouped_data(n_speakers=6, per=40, seed=0):
    X, y = make_classification(n_samples=n_speakers * per, n_features=12, n_informative=6, n_classes=3,
                               flip_y=0.1, random_state=seed)
    groups = np.repeat([f"spk{i}" for i in range(n_speakers)], per)
    return X, y, groups


def test_select_C_picks_from_grid_and_never_mixes_speakers():
    X, y, groups = _grouped_data(per=25)
    Cs = (0.001, 0.1, 10.0)
    seen = []

    def on_fold(C, fold, tr, va):
        assert not set(groups[tr]) & set(groups[va])
        seen.append((C, fold, frozenset(va.tolist())))

    best, table = select_C(X, y, groups, Cs=Cs, kind="svm", backend="torch", n_folds=3, device="cpu",
                           on_fold=on_fold)
    assert best in Cs
    assert len(seen) == len(Cs) * 3
    # each C is validated on every sample exactly once
    for C in Cs:
        vals = [v for c, _, v in seen if c == C]
        assert sorted(i for v in vals for i in v) == list(range(len(y)))
    assert table["Cs"] == list(Cs) and np.argmax(table["mean"]) == Cs.index(best)
    assert all(0.0 <= m <= 1.0 for m in table["mean"])


def test_select_C_ties_go_to_the_smallest_C():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 30)
    X = rng.normal(size=(60, 3))
    X[:, 0] = (2 * y - 1) * (5 + rng.random(60))  # wide margin: every C classifies perfectly
    groups = np.repeat(np.arange(6), 10)
    best, table = select_C(X, y, groups, Cs=(10.0, 1.0, 100.0), device="cpu")
    assert min(table["mean"]) == max(table["mean"]) == 1.0
    assert best == 1.0


def test_select_C_needs_two_speakers():
    X, y, _ = _grouped_data(n_speakers=2, per=10)
    with pytest.raises(DataError):
        select_C(X, y, np.zeros(len(y)), Cs=(1.0,), device="cpu")


def test_global_standardisation_keeps_relative_feature_sizes():
    """A sparse code has a few informative units and many near-constant ones. z-scoring blows the
    near-constant units' noise up to the informative units' size; one global scale does not."""
    from bimodal.classifiers import StandardizedClassifier, standardizer

    rng = np.random.default_rng(0)
    n, k = 120, 4
    y = np.arange(n) % k
    centres = rng.normal(size=(k, 10)) * 1.0
    informative = centres[y] + rng.normal(scale=1.0, size=(n, 10))
    quiet = rng.normal(scale=1e-3, size=(n, 600))  # near-constant units: pure noise
    X = np.hstack([informative, quiet]).astype(np.float32)
    Xte_inf = centres[np.arange(n) % k] + rng.normal(scale=1.0, size=(n, 10))
    Xte = np.hstack([Xte_inf, rng.normal(scale=1e-3, size=(n, 600))]).astype(np.float32)
    acc = {m: StandardizedClassifier("svm", "sklearn", C=0.1, standardize=m).fit(X, y).score(Xte, y)
           for m in ("global", "zscore")}
    assert acc["global"] > acc["zscore"] + 0.15, acc
    mean, scale = standardizer(torch.as_tensor(X), "global")
    assert scale.ndim == 0 and abs(float(scale) - float(np.sqrt(X.var(0).mean()))) < 1e-4
    # one global scale: multiplying every feature by a constant changes nothing
    a = StandardizedClassifier("svm", "sklearn", C=0.1).fit(X, y).predict(Xte)
    b = StandardizedClassifier("svm", "sklearn", C=0.1).fit(X * 7.0, y).predict(Xte * 7.0)
    assert np.array_equal(a, b)
    with pytest.raises(ConfigError, match="standardize"):
        StandardizedClassifier(standardize="minmax")
