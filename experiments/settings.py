"""The paper's evaluation settings, one function each, run on one (seed, fold).

Each function takes a :class:`FoldContext` and returns ``(metrics, artifacts)``: ``metrics`` is a
nested dict whose leaves are numbers (summarised over seeds and folds), ``artifacts`` holds what
plots need (confusion matrices, prediction lists).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from bimodal.cca import RegularizedCCA
from bimodal.errors import ConfigError
from bimodal.evaluation import cross_modal_matching, evaluate_features

from . import registry
from .config import Config
from .pipeline import (FoldData, label_strings, mcgurk_utterance, recording_of, splits_by_recording, utterance_features,
                       window_codes)

log = logging.getLogger(__name__)


@dataclass
class FoldContext:
    cfg: Config
    fold: FoldData
    models: dict
    seed: int
    device: object
    progress: bool = True
    _cache: dict = field(default_factory=dict)

    def dataset(self, split: str, snr: float | None = None):
        if split == "train":
            return self.fold.train
        return self.fold.test if snr is None else self.fold.test_noisy[float(snr)]

    def features(self, name: str, split: str, snr: float | None = None) -> np.ndarray:
        """Utterance features (U, D) of the registry feature ``name`` on ``split`` (noisy test audio at ``snr``)."""
        if registry.feature(name).video_only:
            snr = None  # audio noise does not change features computed from video alone
        key = (name, split, snr)
        if key not in self._cache:
            ds = self.dataset(split, snr)
            codes = window_codes(self.models, ds, [name])[name]  # on the models' device, windows uploaded once
            self._cache[key] = utterance_features(codes, ds, self.cfg.eval.slices)  # one host copy, pooled
        return self._cache[key]

    def labels(self, split: str) -> np.ndarray:
        return label_strings(self.dataset(split))

    def speakers(self, split: str) -> np.ndarray:
        return np.asarray(self.dataset(split).speakers)

    def cv_groups(self, split: str = "train", ds=None) -> np.ndarray:
        """Groups the cross-validation that picks C holds out, matching the test protocol: speakers,
        repetitions with ``experiment.split = "third_test"`` (whose test set is a repetition), or
        recordings with ``"recordings"`` on one speaker (whose test set is other recordings).
        One entry per utterance of ``ds`` (default: the ``split`` dataset)."""
        ds = self.dataset(split) if ds is None else ds
        if self.cfg.experiment.split == "third_test":
            if ds.repetitions is None:
                raise ConfigError("experiment.split = 'third_test' needs repetition ids; this dataset has none")
            return np.asarray(ds.repetitions)
        if splits_by_recording(self.cfg, ds.speakers):
            lookup = {str(u.utterance_id): recording_of(u) for u in self.fold.train_utts + self.fold.test_utts}
            # the training recordings' own windows (FoldData.recordings): a recording's id is its group
            return np.array([lookup.get(str(i), str(i)) for i in ds.utterance_ids], dtype=object)
        return np.asarray(ds.speakers)

    def task_mask(self, split: str, labels=None) -> np.ndarray:
        return np.isin(self.labels(split), list(labels or self.cfg.data.labels))

    def classify(self, Xtr, ytr, groups, Xte, yte) -> dict:
        """C chosen by grouped CV on the training set (``groups``: :meth:`cv_groups`), then fit and test.

        Labels are strings; the result adds ``predict(X)`` → label strings and ``labels`` (the class
        names in the order of the confusion matrix's rows)."""
        e = self.cfg.eval
        backend = e.backend  # "auto": the fastest exact solver for this shape and device (classifiers.resolve_backend)
        names = np.array(sorted(set(ytr) | set(yte)), dtype=object)
        code = {n: i for i, n in enumerate(names)}
        r = evaluate_features(Xtr, np.array([code[y] for y in ytr]), Xte, np.array([code[y] for y in yte]), groups,
                              kind=e.classifier, backend=backend, Cs=tuple(e.Cs), n_folds=e.cv_folds,
                              device=self.device, seed=self.seed, standardize=e.standardize)
        model = r["model"]
        r["predict"] = lambda X: names[model.predict(X)]
        r["labels"] = names.tolist()
        return r

    def train_test(self, train_name: str, test_name: str, snr: float | None = None, labels=None) -> dict:
        """Classifier trained on ``train_name`` features of training speakers, tested on ``test_name``
        features of test speakers (restricted to ``labels``, default the task vocabulary)."""
        mtr, mte = self.task_mask("train", labels), self.task_mask("test", labels)
        Xtr = self.features(train_name, "train")[mtr]
        Xte = self.features(test_name, "test", snr)[mte]
        return self.classify(Xtr, self.labels("train")[mtr], self.cv_groups("train")[mtr], Xte,
                             self.labels("test")[mte])


# --------------------------------------------------------------------------- settings
def cross_modality(ctx: FoldContext):
    """Features learned from both modalities, classifier trained and tested on one modality.

    One table per modality, rows :func:`experiments.registry.setting_rows` (each named by its
    feature)."""
    metrics, artifacts = {}, {}
    for modality, rows in registry.setting_rows("cross_modality", ctx.cfg).items():
        metrics[modality] = {}
        for row, (feat,) in rows.items():
            r = ctx.train_test(feat, feat)
            metrics[modality][row] = r["accuracy"]
            artifacts[f"{modality}/{row}"] = {"confusion": r["confusion"], "labels": r["labels"], "C": r["C"]}
    return metrics, artifacts


def fusion(ctx: FoldContext):
    """Multimodal fusion, classifier trained on clean features, tested on clean and noisy audio.

    Rows: :func:`experiments.registry.setting_rows` (a row concatenating features is named
    ``a+b``). Video features are not affected by audio noise. The noisy conditions are left out
    when the corpus has no waveforms to add noise to (precomputed audio features, e.g.
    AVLetters' MFCCs: ``FoldData.noise_skipped`` says why).
    """
    m = ctx.cfg.data.labels
    mtr, mte = ctx.task_mask("train", m), ctx.task_mask("test", m)
    ytr, yte, groups = ctx.labels("train")[mtr], ctx.labels("test")[mte], ctx.cv_groups("train")[mtr]
    metrics, artifacts = {}, {}
    for row, names in registry.setting_rows("fusion", ctx.cfg)["fusion"].items():
        Xtr = np.concatenate([ctx.features(n, "train") for n in names], axis=1)[mtr]
        # one classifier per row, tested at every noise level
        conditions = [("clean", None)] + [(f"{snr:g}dB", snr) for snr in ctx.cfg.eval.snr_db
                                          if float(snr) in ctx.fold.test_noisy]
        tests = {label: np.concatenate([ctx.features(n, "test", snr) for n in names], axis=1)[mte]
                 for label, snr in conditions}
        r = ctx.classify(Xtr, ytr, groups, tests["clean"], yte)
        metrics.setdefault("clean", {})[row] = r["accuracy"]
        artifacts[f"clean/{row}"] = {"confusion": r["confusion"], "labels": r["labels"]}
        for label, snr in conditions[1:]:
            acc = float(np.mean(r["predict"](tests[label]) == yte))
            metrics.setdefault(label, {})[row] = acc
    shift = {f"{snr:g}dB": {name: feature_shift(ctx.features(name, "test")[mte], ctx.features(name, "test", snr)[mte])
                            for name in registry.SHIFT_FEATURES}
             for snr in ctx.cfg.eval.snr_db if float(snr) in ctx.fold.test_noisy}
    if shift:
        metrics[SHIFT_KEY] = shift
    return metrics, artifacts


#: fusion's per-SNR feature shift (:func:`feature_shift`) of :data:`experiments.registry.SHIFT_FEATURES`
#: is kept under this key, beside the conditions
SHIFT_KEY = "shift"


def feature_shift(clean: np.ndarray, noisy: np.ndarray) -> float:
    """How far audio noise moves pooled utterance features, relative to how far apart clean
    utterances are: mean ||noisy - clean|| over utterances / mean ||clean - clean mean||. 0 = no
    change; about 1 = noise moves a feature as far as one utterance is from the average one."""
    clean, noisy = np.asarray(clean, np.float64), np.asarray(noisy, np.float64)
    spread = np.linalg.norm(clean - clean.mean(axis=0), axis=1).mean()
    return float(np.linalg.norm(noisy - clean, axis=1).mean() / max(spread, 1e-12))


def shared_representation(ctx: FoldContext):
    """Train the classifier on one modality's shared codes, test on the other's ("hearing to see").

    Rows: :func:`experiments.registry.setting_rows`, one per method with its (audio, video) features."""
    metrics = {"audio->video": {}, "video->audio": {}}
    m = ctx.cfg.data.labels
    mtr, mte = ctx.task_mask("train", m), ctx.task_mask("test", m)
    ytr, yte, groups = ctx.labels("train")[mtr], ctx.labels("test")[mte], ctx.cv_groups("train")[mtr]
    for name, (fa, fv) in registry.setting_rows("shared_representation", ctx.cfg)["shared_representation"].items():
        za_tr, zv_tr = _shared_views(ctx, name, fa, fv, "train")
        za_te, zv_te = _shared_views(ctx, name, fa, fv, "test")
        metrics["audio->video"][name] = ctx.classify(za_tr[mtr], ytr, groups, zv_te[mte], yte)["accuracy"]
        metrics["video->audio"][name] = ctx.classify(zv_tr[mtr], ytr, groups, za_te[mte], yte)["accuracy"]
        if name in registry.CCA_BASELINES:
            metrics.setdefault("cca_shrinkage", {})[name] = ctx._cache[("cca", fa, fv, "shrinkage")]
    metrics["chance"] = 1.0 / len(ctx.cfg.data.labels)
    return metrics, {}


def _shared_views(ctx: FoldContext, method: str, audio_feat: str, video_feat: str, split: str):
    """Pooled ``(audio, video)`` utterance features on ``split`` of a shared-representation method
    (:data:`experiments.registry.SHARED_METHODS`): its features themselves, or a CCA baseline's
    projections of them (:func:`_cca_views`)."""
    if method in registry.CCA_BASELINES:
        views = _cca_views(ctx, audio_feat, video_feat)
        return views[:2] if split == "train" else views[2:]
    return ctx.features(audio_feat, split), ctx.features(video_feat, split)


def _cca_views(ctx: FoldContext, audio_feat: str, video_feat: str):
    """Regularised CCA fitted on the corpus' own paired windows the other feature learning sees
    (:attr:`FoldData.own_learning`, no extra corpus: raw windows, or the RBMs' hidden activations of them), its shrinkage
    chosen by CV over the groups C is chosen over (:meth:`FoldContext.cv_groups`); every split's
    windows are projected and then pooled over slices like every other feature.

    Returns pooled ``(audio train, video train, audio test, video test)`` utterance features.
    """
    key = ("cca", audio_feat, video_feat)
    if key not in ctx._cache:
        train, test, learning = ctx.dataset("train"), ctx.dataset("test"), ctx.fold.own_learning
        tr = window_codes(ctx.models, train, [audio_feat, video_feat])
        te = window_codes(ctx.models, test, [audio_feat, video_feat])
        fit = tr if learning is train else window_codes(ctx.models, learning, [audio_feat, video_feat])
        n = min(ctx.cfg.eval.cca_components, tr[audio_feat].shape[1], tr[video_feat].shape[1])
        groups = np.asarray(ctx.cv_groups(ds=learning))[np.asarray(learning.utt)]  # one per window
        cca = RegularizedCCA(n_components=n, n_folds=ctx.cfg.eval.cv_folds, device=ctx.device).fit(
            fit[audio_feat], fit[video_feat], groups=groups)
        log.info("%s/%s CCA: shrinkage %g, training correlations %s", audio_feat, video_feat, cca.shrinkage_,
                 np.round(cca.correlations_[:4], 3).tolist())
        slices = ctx.cfg.eval.slices
        ctx._cache[key] = (utterance_features(cca.transform_audio(tr[audio_feat]), train, slices),
                           utterance_features(cca.transform_video(tr[video_feat]), train, slices),
                           utterance_features(cca.transform_audio(te[audio_feat]), test, slices),
                           utterance_features(cca.transform_video(te[video_feat]), test, slices))
        ctx._cache[key + ("shrinkage",)] = cca.shrinkage_
    return ctx._cache[key]


def matching(ctx: FoldContext):
    """Cross-modal matching of test utterances: audio-only codes as queries, video-only as candidates."""
    mte = ctx.task_mask("test")
    labels = np.unique(ctx.labels("test")[mte], return_inverse=True)[1]  # word ids: same-word candidates
    sim = ctx.cfg.eval.matching_similarity
    out = {}
    for name, (fa, fv) in registry.setting_rows("matching", ctx.cfg)["matching"].items():
        za_te, zv_te = _shared_views(ctx, name, fa, fv, "test")
        out[name] = cross_modal_matching(za_te[mte], zv_te[mte], labels, metric=sim)
    out["chance_top1"] = 1.0 / int(mte.sum())
    return out, {}


def mcgurk(ctx: FoldContext):
    """Classifier on congruent /ga/ /ba/ /da/ bimodal codes; then visual /ga/ dubbed with audio /ba/."""
    labels = list(ctx.cfg.data.mcgurk_labels)
    if not {"ga", "ba", "da"} <= set(labels):
        raise ValueError(f"the McGurk setting needs data.mcgurk_labels to hold ga, ba and da, got {labels}")
    feat = registry.MCGURK_FEATURE
    mtr, mte = ctx.task_mask("train", labels), ctx.task_mask("test", labels)
    Xtr = ctx.features(feat, "train")[mtr]
    ytr = ctx.labels("train")[mtr]
    r = ctx.classify(Xtr, ytr, ctx.cv_groups("train")[mtr], ctx.features(feat, "test")[mte], ctx.labels("test")[mte])
    predict = r["predict"]
    rows = {}
    yte = ctx.labels("test")[mte]
    pred_congruent = np.asarray(r["labels"], dtype=object)[r["predictions"]]
    for syl in ("ga", "ba", "da"):
        rows[f"{syl}/{syl}"] = _distribution(pred_congruent[yte == syl], labels)
    # dubbed stimuli: each test speaker's /ga/ video with the /ba/ audio of the same repetition index
    stimuli = _dubbed(ctx.fold.test_utts, video_label="ga", audio_label="ba")
    if stimuli:
        ds = ctx.fold.prep.transform(stimuli, progress=False)
        codes = window_codes(ctx.models, ds, [feat])[feat]
        rows["ga/ba"] = _distribution(predict(utterance_features(codes, ds, ctx.cfg.eval.slices)), labels)
    return {"congruent_accuracy": r["accuracy"], "predictions": rows}, {"n_dubbed": len(stimuli)}


def _distribution(pred, labels) -> dict:
    pred = np.asarray(pred)
    n = max(len(pred), 1)
    return {lab: float(np.sum(pred == lab)) / n for lab in labels}


def _dubbed(utts, video_label: str, audio_label: str) -> list:
    by_speaker: dict = {}
    for u in utts:
        by_speaker.setdefault((u.speaker, u.label), []).append(u)
    out = []
    for (speaker, label), vids in sorted(by_speaker.items()):
        if label != video_label:
            continue
        auds = by_speaker.get((speaker, audio_label), [])
        for v, a in zip(sorted(vids, key=lambda u: u.utterance_id), sorted(auds, key=lambda u: u.utterance_id)):
            out.append(mcgurk_utterance(a, v))
    return out


SETTINGS = {
    "cross_modality": cross_modality,
    "fusion": fusion,
    "shared_representation": shared_representation,
    "mcgurk": mcgurk,
    "matching": matching,
}
