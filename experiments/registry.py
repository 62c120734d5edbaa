"""Every model the experiments train and every feature they read from one: one entry, one name each.

A **model** is a checkpoint: the file ``<name>.pt`` in a run's ``checkpoints/seed{S}_fold{F}/``
folder, the key of the models dict, and the name the report uses for it.

A **feature** is what the classifiers see for one window: a model, the input modalities it is
given (a modality left out is fed as zeros) and the layer that is read. Its name is
``<source>.<inputs>`` -- ``bimodal_dae.video`` is the bimodal deep autoencoder's shared layer
given video alone -- and that one name is used by the pipeline (:func:`window_codes`), by
``bimodal extract --feature``, by ``results.json`` (``cross_modality/video/bimodal_dae.video``),
by the report and by ``paper_reference.json``. A fusion row that concatenates features is named by
joining theirs with ``+`` (``bimodal_dae.both+rbm.audio``).

Adding a feature or a baseline is one entry in :data:`FEATURES` (and one in :data:`MODELS` when it
needs a model of its own); the settings' tables list the features whose ``tables`` name them.
:func:`setting_rows` is the one place that turns these declarations into the rows of each
setting's tables: the settings fill those rows and the pipeline trains the models they read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from bimodal.errors import ConfigError

if TYPE_CHECKING:
    from .config import Config

INPUTS = {"audio": ("audio",), "video": ("video",), "both": ("audio", "video")}
LAYERS = ("input", "hidden", "shared")


@dataclass(frozen=True)
class ModelSpec:
    """How one checkpoint is trained (``experiments.pipeline.train_feature_models``).

    ``kind``: ``"bimodal_dbn"`` (greedy pretraining of both modality DBNs and the joint RBM),
    ``"dae"`` (the bimodal DBN unrolled into an autoencoder with ``inputs`` as its inputs and
    fine-tuned; ``fractions`` overrides the config's augmentation, ``fit_options`` go to ``fit``) or
    ``"shallow"`` (one hidden layer started from the ``inputs`` modality's first RBM, Fig. 2a).
    """

    name: str
    kind: str
    description: str
    inputs: tuple[str, ...] = ("audio", "video")
    fractions: tuple[float, float, float] | None = None
    fit_options: dict = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("bimodal_dbn", "bimodal_dbn", "bimodal DBN: a DBN per modality, joint RBM on their top layers; "
              "its first layers are the single-modality RBMs"),
    ModelSpec("bimodal_dae", "dae", "bimodal deep autoencoder, fine-tuned on augmented data "
              "(1/3 video only, 1/3 audio only, 1/3 both; always reconstructing both)"),
    ModelSpec("bimodal_dae_noaug", "dae", "bimodal deep autoencoder fine-tuned without augmentation",
              fractions=(0.0, 0.0, 1.0)),
    ModelSpec("video_dae", "dae", "video-only deep autoencoder: video in, audio and video out", inputs=("video",)),
    ModelSpec("audio_dae", "dae", "audio-only deep autoencoder: audio in, audio and video out", inputs=("audio",)),
    ModelSpec("video_shallow_ae", "shallow", "shallow video-only autoencoder from the video RBM (Fig. 2a, "
              "sec. 4.7)", inputs=("video",)),
    ModelSpec("video_dae_no_audio", "dae", "video-only deep autoencoder fine-tuned to reconstruct video "
              "alone (sec. 4.7)", inputs=("video",), fit_options={"modality_weights": (0.0, 1.0)}),
)}


@dataclass(frozen=True)
class Feature:
    """One window-level feature.

    ``model``: the checkpoint it is read from (a key of :data:`MODELS`), None for the whitened
    windows themselves. ``inputs``: ``"audio"``, ``"video"`` or ``"both"``. ``layer``: ``"input"``
    (the windows), ``"hidden"`` (the modality's first RBM: the single-modality RBM baseline) or
    ``"shared"`` (the autoencoder's shared layer, the bimodal DBN's joint layer). ``tables``: the
    result tables it is a row of (``"cross_modality"``, ``"section47"``, ``"fusion"``).
    """

    name: str
    model: str | None
    inputs: str
    layer: str
    description: str
    tables: tuple[str, ...] = ()

    def __post_init__(self):
        if self.inputs not in INPUTS or self.layer not in LAYERS or (self.model is None) != (self.layer == "input"):
            raise ConfigError(f"feature {self.name!r}: inputs must be one of {list(INPUTS)}, layer one of "
                              f"{list(LAYERS)}, and only the 'input' layer has no model")
        if self.model is not None and self.model not in MODELS:
            raise ConfigError(f"feature {self.name!r} reads the model {self.model!r}, which MODELS does not define")

    @property
    def modalities(self) -> tuple[str, ...]:
        return INPUTS[self.inputs]

    @property
    def video_only(self) -> bool:
        """Computed from video alone: audio noise cannot change it."""
        return self.inputs == "video"


def _features():
    out = []
    for m in ("audio", "video"):
        out += [
            Feature(f"raw.{m}", None, m, "input", f"whitened {m} windows", ("cross_modality",)),
            Feature(f"rbm.{m}", "bimodal_dbn", m, "hidden", f"{m} RBM (first layer of the {m} DBN)",
                    ("cross_modality", "fusion")),
            Feature(f"{m}_dae.{m}", f"{m}_dae", m, "shared", f"{m}-only deep autoencoder, {m} in",
                    ("cross_modality", "fusion") if m == "video" else ("cross_modality",)),
            Feature(f"bimodal_dae.{m}", "bimodal_dae", m, "shared", f"bimodal deep autoencoder, {m} in",
                    ("cross_modality",)),
            Feature(f"bimodal_dae_noaug.{m}", "bimodal_dae_noaug", m, "shared",
                    f"bimodal deep autoencoder without augmentation, {m} in", ("cross_modality",)),
        ]
    out += [
        Feature("raw.both", None, "both", "input", "whitened audio and video windows, concatenated"),
        Feature("video_shallow_ae.video", "video_shallow_ae", "video", "shared", "shallow video-only autoencoder",
                ("section47",)),
        Feature("video_dae_no_audio.video", "video_dae_no_audio", "video", "shared",
                "video-only deep autoencoder without audio reconstruction", ("section47",)),
        Feature("bimodal_dbn.video", "bimodal_dbn", "video", "shared", "bimodal DBN joint layer, audio zeroed",
                ("section47",)),
        Feature("bimodal_dae.both", "bimodal_dae", "both", "shared", "bimodal deep autoencoder, both in", ("fusion",)),
        Feature("bimodal_dbn.both", "bimodal_dbn", "both", "shared", "bimodal DBN joint layer, both in", ("fusion",)),
    ]
    return {f.name: f for f in out}


FEATURES: dict[str, Feature] = _features()

# Fusion rows that concatenate features (the paper's "+ audio RBM" rows of its fusion table).
FUSION_COMBINATIONS = (("bimodal_dae.both", "rbm.audio"), ("video_dae.video", "rbm.audio"))

# The paper's CCA baselines (shared representation, matching): CCA fitted on these paired features.
CCA_BASELINES = {"raw_cca": ("raw.audio", "raw.video"), "rbm_cca": ("rbm.audio", "rbm.video")}

#: Rows of the shared-representation and matching tables: method → its (audio, video) features. A
#: classifier (a query) on one is tested on (matched against) the other; a CCA baseline first fits
#: CCA on the pair. Rows name a method, not a feature.
SHARED_METHODS: dict[str, tuple[str, str]] = {"bimodal_dae": ("bimodal_dae.audio", "bimodal_dae.video"),
                                              **CCA_BASELINES}

#: The McGurk setting's classifier reads the bimodal deep autoencoder given both modalities.
MCGURK_FEATURE = "bimodal_dae.both"

#: Besides its rows, fusion reports how far audio noise moves these features (``settings.feature_shift``).
SHIFT_FEATURES = ("raw.audio", "rbm.audio", "bimodal_dae.audio", "bimodal_dae.both")


def feature(name: str) -> Feature:
    """The registry entry of ``name``; a ConfigError lists the known names."""
    if name not in FEATURES:
        raise ConfigError(f"unknown feature {name!r}; known features: {', '.join(FEATURES)}")
    return FEATURES[name]


def table_rows(table: str, inputs: str | None = None) -> list[str]:
    """Names of the features that are rows of ``table`` (restricted to ``inputs``), in registry order."""
    return [f.name for f in FEATURES.values() if table in f.tables and (inputs is None or f.inputs == inputs)]


def setting_rows(setting: str, cfg: Config) -> dict[str, dict[str, tuple[str, ...]]]:
    """The tables ``setting`` fills under ``cfg``: table → row name → the features the row reads, in
    table order.

    * ``cross_modality``: one table per modality of ``eval.cross_modality_modalities`` (video first),
      its rows that modality's features in the ``cross_modality`` table, then (video, with
      ``experiment.section47_rows``) those in ``section47``; a row reads its own feature.
    * ``fusion``: one table, the features in the ``fusion`` table, then :data:`FUSION_COMBINATIONS`
      (row ``a+b`` reads both, concatenated); the rows reading the video-only deep autoencoder only
      when ``cross_modality`` runs too (a fusion-only config does not train that model for them).
    * ``shared_representation``, ``matching``: one table, :data:`SHARED_METHODS`.
    * ``mcgurk``: one table, :data:`MCGURK_FEATURE`.
    """
    if setting == "cross_modality":
        tables = {}
        for modality in ("video", "audio"):
            if modality in cfg.eval.cross_modality_modalities:
                rows = table_rows("cross_modality", modality)
                if modality == "video" and cfg.experiment.section47_rows:
                    rows += table_rows("section47", modality)
                tables[modality] = {name: (name,) for name in rows}
        return tables
    if setting == "fusion":
        rows = {name: (name,) for name in table_rows("fusion")}
        rows.update({"+".join(parts): parts for parts in FUSION_COMBINATIONS})
        if "cross_modality" not in cfg.experiment.settings:
            rows = {k: v for k, v in rows.items() if not any(feature(n).model == "video_dae" for n in v)}
        return {"fusion": rows}
    if setting in ("shared_representation", "matching"):
        return {setting: dict(SHARED_METHODS)}
    if setting == "mcgurk":
        return {"mcgurk": {MCGURK_FEATURE: (MCGURK_FEATURE,)}}
    raise ConfigError(f"unknown setting {setting!r}; known settings: cross_modality, fusion, shared_representation, "
                      "matching, mcgurk")


def features_read(cfg: Config) -> set[str]:
    """Names of the features the config's settings read: their rows' (:func:`setting_rows`), and
    fusion's :data:`SHIFT_FEATURES`."""
    settings = cfg.experiment.settings
    used = {name for s in settings for rows in setting_rows(s, cfg).values() for names in rows.values()
            for name in names}
    if "fusion" in settings:
        used.update(SHIFT_FEATURES)
    return used


def row_features(row: str) -> tuple[Feature, ...]:
    """The features a row name stands for (``a+b`` → both)."""
    return tuple(feature(n) for n in row.split("+"))


def first_rbm(dbn, modality: str):
    """The first RBM of a modality's DBN: the paper's single-modality RBM baseline."""
    return getattr(dbn, modality).layers[0]


def encode(feat: Feature, models: dict, audio: torch.Tensor | None, video: torch.Tensor | None) -> torch.Tensor:
    """Window codes of ``feat``: ``models`` maps checkpoint names to models, ``audio``/``video`` are
    the (N, D) window tensors (on the models' device). Returns (N, H) on that device."""
    from bimodal.dbn import BimodalDBN

    given = {"audio": audio, "video": video}
    missing = [m for m in feat.modalities if given[m] is None]
    if missing:
        raise ConfigError(f"feature {feat.name!r} needs {missing[0]} windows; the dataset has none")
    inputs = {m: given[m] for m in feat.modalities}
    if feat.layer == "input":
        return torch.cat(list(inputs.values()), dim=1) if len(inputs) > 1 else next(iter(inputs.values()))
    if feat.model not in models:
        raise ConfigError(f"feature {feat.name!r} reads the model {feat.model!r}, which was not trained or loaded "
                          f"(have: {', '.join(models) or 'none'})")
    model = models[feat.model]
    if feat.layer == "hidden":
        (m,) = feat.modalities
        return first_rbm(model, m).transform(inputs[m])
    if isinstance(model, BimodalDBN):
        # the joint layer with a missing modality fed as zeros, as the autoencoders get it
        ref = next(iter(inputs.values()))
        zeros = {m: torch.zeros(ref.shape[0], model.audio_sizes[0] if m == "audio" else model.video_sizes[0],
                                device=ref.device) for m in ("audio", "video") if m not in inputs}
        return model.transform(**inputs, **zeros)
    return model.encode(**inputs)
