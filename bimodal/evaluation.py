"""Speaker-independent evaluation: folds, classifier accuracy, summaries, shared-representation tests
and cross-modal matching (the CCA baseline is :mod:`bimodal.cca`).

Every split here is by speaker: no speaker's utterances are on both the training and the test
side, and C is chosen by an inner speaker-grouped CV on training speakers only
(:func:`bimodal.classifiers.select_C`).
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from .classifiers import DEFAULT_CS, StandardizedClassifier, select_C
from .device import resolve_device
from .errors import ConfigError, DataError, ShapeError
from .folds import speaker_folds

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- summaries
def summarise(values, ddof=1) -> dict:
    """Mean and standard deviation of per-fold numbers.

    ``std`` is the sample standard deviation (``ddof=1``, what the paper's ± are made of) unless
    told otherwise; with a single value it is reported as 0.0.
    Returns ``{"mean", "std", "n"}`` as Python floats / int.
    """
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        raise DataError("cannot summarise an empty list of values", field="values")
    if not np.all(np.isfinite(a)):
        raise DataError(f"values contain NaN or infinity: {a.tolist()}", field="values")
    std = float(a.std(ddof=ddof)) if a.size > ddof else 0.0
    return {"mean": float(a.mean()), "std": std, "n": int(a.size)}


def confusion_matrix(y_true, y_pred, n_classes=None, normalize=False) -> np.ndarray:
    """Confusion counts ``M[i, j]`` = samples of true class ``i`` predicted as ``j``.

    Labels must be ints in ``[0, n_classes)`` (``n_classes`` defaults to ``max label + 1``).
    ``normalize=True`` divides each row by its total (rows of absent classes stay 0), giving
    per-class recall on the diagonal. Returns float64 when normalised, else int64.
    """
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ShapeError(f"y_true has {t.size} labels, y_pred {p.size}", field="y_pred")
    K = int(max(t.max(initial=-1), p.max(initial=-1)) + 1) if n_classes is None else int(n_classes)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= K):
        raise DataError(f"labels must lie in [0, {K})", field="y_true/y_pred")
    M = np.bincount(t * K + p, minlength=K * K).reshape(K, K)
    if not normalize:
        return M
    rows = M.sum(1, keepdims=True)
    return np.divide(M, rows, out=np.zeros((K, K)), where=rows > 0)


# ----------------------------------------------------------------------------- classifier evaluation
def evaluate_features(Xtr, ytr, Xte, yte, groups_tr, kind="svm", backend="torch", Cs=DEFAULT_CS, C=None,
                      n_folds=3, device=None, seed=0, max_iter=None, standardize="global") -> dict:
    """Choose C on training speakers, fit on all training data, test on ``(Xte, yte)``.

    Parameters
    ----------
    Xtr, Xte : (n, d) features. ytr, yte : int labels. groups_tr : (n_train,) training speakers.
    C : fixed C (skips the search). Cs : grid for :func:`~bimodal.classifiers.select_C` (a single
        value also skips the search). n_folds : inner CV folds.

    Returns
    -------
    dict with ``accuracy`` (float), ``C``, ``predictions`` (int64 (n_test,)), ``confusion`` (counts
    over the labels ``0..max+1`` of train and test), ``cv`` (select_C's table or None), ``model``
    (the fitted :class:`~bimodal.classifiers.StandardizedClassifier`, to test on further sets).
    """
    cv = None
    if C is None:
        if len(Cs) == 1:
            C = float(Cs[0])
        else:
            C, cv = select_C(Xtr, ytr, groups_tr, Cs=Cs, kind=kind, backend=backend, n_folds=n_folds,
                             seed=seed, device=device, max_iter=max_iter, standardize=standardize)
    clf = StandardizedClassifier(kind, backend, C, device=device, seed=seed, max_iter=max_iter,
                                 standardize=standardize).fit(Xtr, ytr)
    pred = clf.predict(Xte)
    yte = np.asarray(yte.cpu() if isinstance(yte, torch.Tensor) else yte, dtype=np.int64)
    if yte.shape != pred.shape:
        raise ShapeError(f"expected {pred.shape[0]} test labels, got {yte.shape}", field="yte")
    K = int(max(clf.classes_.max(), yte.max()) + 1)
    return {"accuracy": float(np.mean(pred == yte)), "C": float(C), "predictions": pred,
            "confusion": confusion_matrix(yte, pred, K), "cv": cv, "model": clf}


def cross_validate(features, y, speakers, n_folds=5, seed=0, split="kfold", kind="svm", backend="torch",
                   Cs=DEFAULT_CS, C=None, inner_folds=3, device=None, max_iter=None, progress=True,
                   standardize="global") -> dict:
    """Speaker-independent accuracy over folds.

    Parameters
    ----------
    features : (U, d) array/tensor of utterance features, or a callable
        ``features(train_idx, test_idx) -> (X_train, X_test)`` so that anything learned (a model,
        a whitener) can be fitted on the fold's training speakers only.
    y : (U,) int labels. speakers : (U,) speaker of each utterance.
    n_folds, seed, split : see :func:`speaker_folds`. Others: see :func:`evaluate_features`.

    Returns
    -------
    dict with ``accuracies`` (list per fold), ``summary`` (:func:`summarise`), ``folds`` (per fold:
    accuracy, C, test speakers, n_test).
    """
    y = np.asarray(y, dtype=np.int64)
    speakers = np.asarray(speakers)
    if y.shape != speakers.shape:
        raise ShapeError(f"y has shape {y.shape}, speakers {speakers.shape}", field="speakers")
    folds = speaker_folds(speakers, n_folds=n_folds, seed=seed, split=split)
    if not callable(features):
        X = features
        n = X.shape[0]
        if n != len(y):
            raise ShapeError(f"features have {n} rows, labels {len(y)}", field="features")

        def features(tr, te):
            return X[tr], X[te]

    accs, info = [], []
    for f, (tr, te) in enumerate(tqdm(folds, desc="folds", disable=not progress)):
        Xtr, Xte = features(tr, te)
        r = evaluate_features(Xtr, y[tr], Xte, y[te], speakers[tr], kind=kind, backend=backend, Cs=Cs, C=C,
                              n_folds=inner_folds, device=device, seed=seed, max_iter=max_iter, standardize=standardize)
        accs.append(r["accuracy"])
        info.append({"fold": f, "accuracy": r["accuracy"], "C": r["C"], "n_test": int(len(te)),
                     "test_speakers": sorted(np.unique(speakers[te]).tolist())})
        log.info("fold %d: accuracy %.4f (C=%g)", f, r["accuracy"], r["C"])
    return {"accuracies": accs, "summary": summarise(accs), "folds": info}


# ----------------------------------------------------------------------------- shared representation
def shared_representation_eval(Za_train, Zv_train, ya, Za_test, Zv_test, yt, direction="audio->video",
                               groups_tr=None, kind="svm", backend="torch", Cs=DEFAULT_CS, C=None,
                               n_folds=3, device=None, seed=0, standardize="global") -> dict:
    """The paper's shared-representation test: train on one modality's codes, test on the other's.

    Parameters
    ----------
    Za_train, Zv_train : (n_train, k) training utterances' codes in the shared space from audio only
        and from video only (e.g. :class:`bimodal.cca.RegularizedCCA` projections pooled per utterance,
        or a bimodal autoencoder's encodings of one modality). Only the one named by ``direction`` is used.
    ya : (n_train,) labels. Za_test, Zv_test, yt : the same for test speakers.
    direction : ``"audio->video"`` (train on audio codes, test on video codes) or ``"video->audio"``.
    groups_tr : training speakers for choosing C; required unless C is fixed or Cs has one value.

    Returns
    -------
    :func:`evaluate_features`' dict plus ``direction``.
    """
    if direction == "audio->video":
        Xtr, Xte = Za_train, Zv_test
    elif direction == "video->audio":
        Xtr, Xte = Zv_train, Za_test
    else:
        raise ConfigError(f"direction must be 'audio->video' or 'video->audio', got {direction!r}")
    if C is None and len(Cs) > 1 and groups_tr is None:
        raise ConfigError("groups_tr (training speakers) is needed to choose C; or pass C=")
    r = evaluate_features(Xtr, ya, Xte, yt, groups_tr, kind=kind, backend=backend, Cs=Cs, C=C,
                          n_folds=n_folds, device=device, seed=seed, standardize=standardize)
    r["direction"] = direction
    return r


# ----------------------------------------------------------------------------- cross-modal matching
def cross_modal_matching(query_codes, candidate_codes, labels, metric="cosine", device=None) -> dict:
    """Retrieve each query's partner among all candidates (row ``i`` of both is the same utterance).

    Parameters
    ----------
    query_codes : (U, H) e.g. codes from audio only. candidate_codes : (U, H) e.g. from video only.
    labels : (U,) word label of each utterance (for the same-word restricted top-1).
    metric : ``"cosine"`` (default; codes of different overall magnitude still match) or
        ``"euclidean"`` (similarity = negative Euclidean distance).

    Ranks are pessimistic: a candidate scoring *equal* to the partner counts as ahead of it, so
    constant codes do not get a perfect score.

    Returns
    -------
    dict: ``top1`` (partner ranked first among all U candidates), ``top1_same_word`` (first among
    the candidates with the query's label), ``mrr`` (mean reciprocal rank among all candidates, in
    (0, 1]), ``chance_top1`` (1/U), ``chance_top1_same_word`` (mean 1/#same-label), ``n``.
    """
    dev = resolve_device(device)
    q = _features_t(query_codes, dev, "query_codes")
    c = _features_t(candidate_codes, dev, "candidate_codes")
    if q.shape != c.shape:
        raise ShapeError(f"query {tuple(q.shape)} and candidate {tuple(c.shape)} codes must have the same shape",
                         field="candidate_codes")
    lab = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels), device=dev)
    if lab.shape != (q.shape[0],):
        raise ShapeError(f"expected labels of shape ({q.shape[0]},), got {tuple(lab.shape)}", field="labels")
    if metric == "cosine":
        sim = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(c, dim=1).T
    elif metric == "euclidean":
        sim = -torch.cdist(q, c)
    else:
        raise ConfigError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    partner = sim.diagonal()[:, None]
    not_self = ~torch.eye(q.shape[0], dtype=torch.bool, device=dev)
    ahead = (sim >= partner) & not_self
    rank = 1 + ahead.sum(1)
    same = lab[:, None] == lab[None, :]
    rank_same = 1 + (ahead & same).sum(1)
    return {"top1": float((rank == 1).double().mean()),
            "top1_same_word": float((rank_same == 1).double().mean()),
            "mrr": float((1.0 / rank.double()).mean()),
            "chance_top1": 1.0 / q.shape[0],
            "chance_top1_same_word": float((1.0 / same.sum(1).double()).mean()),
            "n": int(q.shape[0])}


def _features_t(X, dev, name):
    t = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
    t = t.detach().to(dev, torch.float32)
    if t.ndim != 2 or t.shape[0] == 0:
        raise ShapeError(f"expected a non-empty (U, H) array, got shape {tuple(t.shape)}", field=name)
    if not bool(torch.isfinite(t).all()):
        raise DataError("contains NaN or infinite values", field=name)
    return t
