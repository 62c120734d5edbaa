"""Experiment configuration: plain dataclasses, loaded from TOML, every key checked.

The dataclass defaults below ARE the base config: the per-setting configs of the synthetic corpus
(``experiments/configs/*.toml``) and the paper configs state only what differs from them, and a
config may start from another with a top-level ``base = "other.toml"`` (e.g. the ablation table is
the demo plus variants). A value lives in one place.

A config file has the sections ``[experiment]``, ``[data]``, ``[model]``, ``[pretrain]``,
``[finetune]``, ``[eval]`` and optionally ``[[ablation]]`` variants. A key that does not exist is a
:class:`~bimodal.errors.ConfigError` that lists the valid keys, so a typo never silently falls back
to a default. ``data.prep`` is passed to :class:`data_prep.dataset.PrepConfig` and checked against
its fields the same way. The whole config is validated when it is loaded, before any work.
"""
from __future__ import annotations

import copy
import dataclasses
import math
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the `tomli` package
    import tomli as tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from bimodal.augment import DEFAULT_FRACTIONS, check_fractions
from bimodal.autoencoder import DEFAULT_KL_WEIGHT, SHARED_KINDS
from bimodal.errors import ConfigError
from bimodal.options import OPTIMIZERS, CDOptions, FineTuneOptions
from bimodal.rbm import DEFAULT_FINAL_MOMENTUM, DEFAULT_LR, DEFAULT_WEIGHT_DECAY, SPARSITY_UPDATES
from data_prep.dataset import PrepConfig
from data_prep.readers import READERS

SETTING_NAMES = ("cross_modality", "fusion", "shared_representation", "mcgurk", "matching")


@dataclass
class ExperimentConfig:
    name: str = "experiment"  # load_config: the file's own name (e.g. "fusion" for fusion.toml) unless it sets one
    description: str = ""
    settings: list[str] = field(default_factory=lambda: list(SETTING_NAMES))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    n_folds: int = 3  # speaker folds; every speaker is tested once per seed
    # "kfold" (k speaker folds, bimodal.folds.speaker_folds), "even_odd" (CUAVE protocol: even train, odd test), "third_test"
    # (AVLetters protocol: every speaker's last repetition tests, the others train; C is then
    # cross-validated over repetitions, not speakers) or "recordings" (corpora whose utterances are
    # cut from longer recordings, GRID: with one speaker a fixed 1 / n_folds of the recordings tests,
    # the same for every seed, and C is cross-validated over recordings; with several speakers,
    # speaker folds as "kfold"; pipeline.recording_split)
    split: str = "kfold"
    device: str = "auto"
    # Also train and report the paper's section 4.7 comparisons in the video-only table: shallow
    # video-only autoencoder, video-only deep autoencoder without audio reconstruction, bimodal DBN.
    section47_rows: bool = False


@dataclass
class DataConfig:
    source: str = "synth"  # synth | folder | avletters | cuave | grid
    root: str = ""  # dataset folder; for synth, empty means the default cache folder
    labels: list[str] = field(default_factory=lambda: [str(d) for d in range(10)])  # classification vocabulary
    mcgurk_labels: list[str] = field(default_factory=lambda: ["ga", "ba", "da"])
    synth_speakers: int = 12
    synth_repetitions: int = 5
    synth_seed: int = 0
    synth_vocabulary: list[str] = field(default_factory=lambda: ["digits", "syllables"])
    # optional folder of unlabelled WAVs (searched recursively, e.g. ../shared/data/fsdd/recordings):
    # whitened by each fold's audio whitener and added to the audio DBN's pretraining, as the paper
    # added TIMIT (experiments.pipeline.load_extra_audio); a relative path is taken from the working directory
    extra_audio: str = ""
    # Unlabelled audio-visual corpora (GRID trees or ROOT/<speaker>/<label>/<utt>.<video> folders) whose
    # recordings join every unsupervised stage (first-layer RBMs, bimodal DBN, autoencoder fine-tuning),
    # never the classifiers; their mouth crops and audio are put into this corpus' front end first
    # (data_prep.extra_av: box scale chosen by mean-image distance to the training crops, intensities
    # matched, HTK MFCCs for a corpus that ships them); the whitening: extra_av_whitening
    extra_av: list[str] = field(default_factory=list)
    extra_av_scale: float = 0.0  # mouth box scale for the extra corpora; 0 = chosen (data_prep.extra_av)
    # How many extra windows join the learning data: ratio x the corpus' own learning windows, drawn at
    # random (seeded by the run's seed) from every extra recording; 0 = all of them. A ratio keeps the
    # epochs' meaning (passes over this corpus' windows) and with it the momentum schedule and the
    # weight the sparsity term gets, and bounds the cost: an epoch costs (1 + ratio) x as much.
    extra_av_ratio: float = 0.0
    extra_av_track_every: int = 2  # detect the mouth in every k-th frame of the extra videos
    # What the whitening (audio and video PCA, the deltas' scales) is fitted on when there are extra
    # corpora: "target", this corpus' fitting utterances alone (the classifiers see only this corpus, so
    # its variation sets the basis), or "both", those and extra recordings with extra_av_ratio x as
    # many frames (all of them at ratio 0), so the basis also keeps what the extra faces and voices
    # add. Chosen, or not, by a tune grid over it.
    extra_av_whitening: str = "target"
    # Beyond the paper: the learning utterances' mouth crops mirrored left-right (with their own sound)
    # join every unsupervised stage as unlabelled recordings, as the extra corpora do: twice the
    # learning windows, of the same faces; never the classifiers, never the whitening
    # (experiments.pipeline.with_mirrored_windows). Chosen, or not, by `bimodal tune --stages mirror`.
    mirror_video: bool = False
    cache_dir: str = ""
    # GRID (data.source = "grid"): each word of data.labels is cut from its sentence by the .align
    # timings, widened by this margin on each side (data_prep.grid.cut_span)
    grid_margin_s: float = 0.04
    # What the unsupervised stages (whitening, RBMs, bimodal DBN, autoencoder fine-tuning, CCA) learn
    # from: "utterances" (the labelled training utterances) or "recordings" (every window of the
    # training recordings the utterances were cut from, GRID sentences trimmed to their speech;
    # never a test recording). The classifiers always see the labelled utterances only.
    learn_from: str = "utterances"
    prep: dict = field(default_factory=dict)  # data_prep.dataset.PrepConfig fields (its defaults: the paper's)


@dataclass
class ModelConfig:
    audio_hidden: list[int] = field(default_factory=lambda: [512])  # hidden layer sizes above the audio input
    video_hidden: list[int] = field(default_factory=lambda: [512])
    shared: int = 512  # joint RBM hidden units = shared layer of the autoencoder
    tied: bool = False
    shared_layer: str = "deterministic"  # or "variational"


@dataclass
class PretrainConfig:
    enabled: bool = True  # False: random initialisation (ablation)
    epochs: int = 20
    batch_size: int = 64
    # The library's default for Gaussian visibles is 1e-3 (Hinton's guide; the paper configs use it);
    # the synthetic corpus' short runs use 5e-3.
    lr_gaussian: float = 5e-3
    # The values the library shares with the config are the library's (one place each):
    lr_bernoulli: float = DEFAULT_LR["bernoulli"]
    final_momentum: float = DEFAULT_FINAL_MOMENTUM  # after the RBM's first momentum epochs (0.5 before)
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    # Chosen by `bimodal tune` on AVLetters' training repetitions (target over the paper's grid
    # {0.01, 0.03, 0.05, 0.07}, cost over {1, 3, 10}; docs/tuning.md). At the old cost of 0.1 the
    # bias step lr * cost was too small to matter: mean hidden activations stayed near 0.4.
    sparsity_target: float = 0.05  # 0 disables the sparsity penalty
    sparsity_cost: float = 10.0
    # The first-layer RBM of one modality may take its own sparsity (None: the values above, which
    # every deeper layer and the joint RBM use). The audio RBM's cost, 0.1, was chosen by `bimodal
    # tune grid_digits` on GRID's training sentences, clean and noisy (docs/grid.md): the video
    # value 10 applied to the audio RBM made its features fall below raw audio under noise.
    audio_sparsity_target: float | None = None
    audio_sparsity_cost: float | None = 0.1
    video_sparsity_target: float | None = None
    video_sparsity_cost: float | None = None
    # Where every RBM's sparsity term acts (bimodal.rbm.RBM's sparsity_update): "velocity" (inside
    # the momentum, as Lee's code; a cost weighs cost / (1 - momentum) in the paper's form) or
    # "separate" (a step of its own after each CD update, as Lee et al. 2008 write it).
    sparsity_update: str = "velocity"
    cd_k: int = 1
    persistent: bool = False


@dataclass
class FinetuneConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = FineTuneOptions.lr
    optimizer: str = FineTuneOptions.optimizer
    fractions: list[float] = field(default_factory=lambda: list(DEFAULT_FRACTIONS))  # video-only, audio-only, both
    corruption: float = 0.0
    l1_shared: float = 0.0
    kl_weight: float = DEFAULT_KL_WEIGHT


@dataclass
class EvalConfig:
    classifier: str = "svm"  # svm | logreg
    # Feature scaling before the classifier: "global" (centre, one scale for all features) or
    # "zscore" (per feature). z-scoring sparse learned features inflates their near-constant units;
    # "global" won the cross-validation on AVLetters' training repetitions (docs/tuning.md).
    standardize: str = "global"
    # Which single-modality tables cross_modality fills; ["video"] = the paper's Table 1 only (no
    # audio-only deep autoencoder is trained then).
    cross_modality_modalities: list[str] = field(default_factory=lambda: ["video", "audio"])
    backend: str = "auto"  # auto | gram | torch | sklearn (auto: the fastest exact solver, classifiers.resolve_backend)
    Cs: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    cv_folds: int = 3  # inner speaker-grouped folds for choosing C
    slices: list[int] = field(default_factory=lambda: [1, 3])
    snr_db: list[float] = field(default_factory=lambda: [20.0, 10.0, 0.0, -10.0])
    cca_components: int = 16
    matching_similarity: str = "cosine"


@dataclass
class AblationVariant:
    name: str = ""
    set: dict = field(default_factory=dict)  # dotted key -> value, e.g. {"finetune.fractions" = [0, 0, 1]}


@dataclass
class Config:
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ablation: list[AblationVariant] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_CHOICES = {
    ("experiment", "split"): ("kfold", "even_odd", "third_test", "recordings"),
    ("data", "learn_from"): ("utterances", "recordings"),
    ("eval", "standardize"): ("global", "zscore"),
    # every corpus reader but FSDD's, which is audio-only and joins an experiment as data.extra_audio
    ("data", "source"): tuple(s for s in READERS if s != "fsdd"),
    ("model", "shared_layer"): SHARED_KINDS,
    ("finetune", "optimizer"): OPTIMIZERS,
    ("eval", "classifier"): ("svm", "logreg"),
    ("pretrain", "sparsity_update"): SPARSITY_UPDATES,
    ("eval", "backend"): ("auto", "gram", "torch", "sklearn"),
    ("eval", "matching_similarity"): ("cosine", "euclidean"),
}


# Keys and values that were renamed so that one name means one thing; the old spelling is an error
# that says the new one, never silently ignored.
_RENAMED_KEYS = {("pretrain", "momentum"): "final_momentum"}
_RENAMED_VALUES = {("experiment", "split"): {"folds": "kfold"}}


def _check_type(value, tp, where: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # "X | None": TOML has no null, but a dict view of a config does
        if value is None:
            return None
        (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
        origin = typing.get_origin(tp)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int or tp is bool or tp is str or tp is dict:
        ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
        if not ok:
            raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        items = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            raise ConfigError(f"{where}: expected a list of {len(items)} values, got {value!r}")
        return tuple(_check_type(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, items)))
    raise TypeError(f"unsupported config type {tp}")  # pragma: no cover - programming error


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for old in sorted(data):
        if (where, old) in _RENAMED_KEYS:
            raise ConfigError(f"{where}.{old} is now called {where}.{_RENAMED_KEYS[where, old]} (same meaning)")
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(repr(k) for k in unknown)} in [{where}]; "
                          f"valid keys: {', '.join(names)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key)
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            if not isinstance(value, list):
                raise ConfigError(f"{key}: expected a list of tables, got {value!r}")
            kwargs[name] = [_build(typing.get_args(tp)[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
        else:
            kwargs[name] = _check_type(value, tp, key)
            renamed = _RENAMED_VALUES.get((where, name), {})
            if isinstance(kwargs[name], str) and kwargs[name] in renamed:
                new_name = renamed[kwargs[name]]
                raise ConfigError(f"{key} = {value!r} is now called {new_name!r} (same meaning)")
            choices = _CHOICES.get((where, name))
            if choices and kwargs[name] not in choices:
                raise ConfigError(f"{key} = {value!r}; expected one of {', '.join(choices)}")
    return cls(**kwargs)


def config_from_dict(data: dict, source: str = "<dict>") -> Config:
    """Build and validate a :class:`Config` from nested dicts (as parsed from TOML)."""
    try:
        cfg = _build(Config, data, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    _validate(cfg, source)
    return cfg


_POSITIVE_INT = (lambda v: v >= 1, "a positive integer")
_POSITIVE = (lambda v: v > 0, "a positive number")
_NON_NEGATIVE = (lambda v: v >= 0, "a non-negative number")
_SPARSITY_TARGET = (lambda v: 0 <= v < 1, "in [0, 1) (0 disables the penalty)")
# The range of every single number of the config (None, "the default", is always allowed).
_RANGES = {
    "experiment": {"n_folds": (lambda v: v >= 2, "at least 2")},
    "pretrain": {"epochs": _POSITIVE_INT, "batch_size": _POSITIVE_INT, "cd_k": _POSITIVE_INT,
                 "lr_gaussian": _POSITIVE, "lr_bernoulli": _POSITIVE,
                 "final_momentum": (lambda v: 0 <= v < 1, "in [0, 1)"), "weight_decay": _NON_NEGATIVE,
                 "sparsity_target": _SPARSITY_TARGET, "audio_sparsity_target": _SPARSITY_TARGET,
                 "video_sparsity_target": _SPARSITY_TARGET, "sparsity_cost": _NON_NEGATIVE,
                 "audio_sparsity_cost": _NON_NEGATIVE, "video_sparsity_cost": _NON_NEGATIVE},
    "finetune": {"epochs": _POSITIVE_INT, "batch_size": _POSITIVE_INT, "lr": _POSITIVE,
                 "corruption": (lambda v: 0 <= v < 1, "a masking probability in [0, 1)"),
                 "l1_shared": _NON_NEGATIVE, "kl_weight": _NON_NEGATIVE},
    "model": {"shared": (lambda v: v >= 1, "a positive integer (units of the shared layer)")},
    "eval": {"cv_folds": (lambda v: v >= 2, "at least 2 (inner folds that choose C)"), "cca_components": _POSITIVE_INT},
    "data": {"synth_speakers": _POSITIVE_INT, "synth_repetitions": _POSITIVE_INT,
             "grid_margin_s": (lambda v: 0 <= v < 1, "in [0, 1) seconds"),
             "extra_av_scale": (lambda v: 0 <= v <= 3, "a box scale in (0, 3] or 0 (chosen)"),
             "extra_av_ratio": (lambda v: 0 <= v <= 1000, "a non-negative number (0 = every extra window)"),
             "extra_av_track_every": _POSITIVE_INT},
}


def _validate(cfg: Config, source: str) -> None:
    """Every value in range, every combination meaningful, every library object constructible:
    the checks that would otherwise fail after hours of training, made when the config is loaded."""
    def bad(key: str, expected: str, value):
        raise ConfigError(f"{source}: {key} must be {expected}, got {value!r}")

    for section, rules in _RANGES.items():
        for key, (ok, expected) in rules.items():
            value = getattr(getattr(cfg, section), key)
            if value is not None and not ok(value):
                bad(f"{section}.{key}", expected, value)
    e = cfg.experiment
    unknown = sorted(set(e.settings) - set(SETTING_NAMES))
    if unknown:
        raise ConfigError(f"{source}: experiment.settings has unknown setting(s) {unknown}; "
                          f"valid: {list(SETTING_NAMES)}")
    if not e.seeds:
        bad("experiment.seeds", "at least one seed", e.seeds)
    if any(s < 0 for s in e.seeds) or len(set(e.seeds)) != len(e.seeds):
        # a repeated seed repeats identical runs, which the spread and the paired tests would count as independent
        bad("experiment.seeds", "distinct non-negative integers", e.seeds)
    _check_device_name(e.device, f"{source}: experiment.device")

    ft = cfg.finetune
    try:  # the library's own options objects, as the pipeline will make them
        FineTuneOptions(epochs=ft.epochs, batch_size=ft.batch_size, lr=ft.lr, optimizer=ft.optimizer)
        CDOptions(epochs=cfg.pretrain.epochs, batch_size=cfg.pretrain.batch_size)
    except ConfigError as err:
        raise ConfigError(f"{source}: [finetune] / [pretrain]: {err}") from None
    try:
        check_fractions(ft.fractions)
    except ConfigError:
        bad("finetune.fractions", "three non-negative numbers (video-only, audio-only, both) summing to 1",
            cfg.finetune.fractions)

    m = cfg.model
    for key in ("audio_hidden", "video_hidden"):
        if not getattr(m, key) or any(n < 1 for n in getattr(m, key)):
            bad(f"model.{key}", "a non-empty list of positive layer sizes", getattr(m, key))

    ev = cfg.eval
    if not ev.Cs or any(not c > 0 for c in ev.Cs):
        bad("eval.Cs", "a non-empty list of positive numbers", ev.Cs)
    if not ev.slices or any(s < 1 for s in ev.slices):
        bad("eval.slices", "a non-empty list of positive integers", ev.slices)
    if set(ev.cross_modality_modalities) - {"audio", "video"} or not ev.cross_modality_modalities:
        bad("eval.cross_modality_modalities", "a non-empty subset of ['video', 'audio']", ev.cross_modality_modalities)

    d = cfg.data
    if not d.labels or len(set(d.labels)) != len(d.labels):
        bad("data.labels", "a non-empty list of distinct labels", d.labels)
    prep = prep_config(cfg, source)  # PrepConfig's own checks, and the field types
    if d.learn_from == "recordings" and d.source != "grid":
        raise ConfigError(f"{source}: data.learn_from = 'recordings' needs a corpus of recordings cut into "
                          f"utterances (data.source = 'grid'), got data.source = {d.source!r}")
    if d.source == "grid":
        odd = [w for w in d.labels if w in ("digits", "letters") or w != w.lower()]
        if odd:
            raise ConfigError(f"{source}: data.labels are the GRID words to classify, lower case (e.g. \"zero\" .. "
                              f"\"nine\", \"a\" .. \"z\" without \"w\"); got {odd}")
    if any(not str(r).strip() for r in d.extra_av):
        bad("data.extra_av", "a list of corpus folders", d.extra_av)
    if d.extra_av_whitening not in ("target", "both"):
        bad("data.extra_av_whitening", "'target' or 'both'", d.extra_av_whitening)
    if d.extra_av_whitening == "both" and not d.extra_av:
        raise ConfigError(f"{source}: data.extra_av_whitening = 'both' fits the whitening on this corpus and the extra "
                          "corpora, but data.extra_av names none")
    if d.extra_av and prep.mouth_roi != "auto":
        raise ConfigError(f"{source}: data.extra_av tracks the mouth in full-face recordings and uses mouth-sized ones "
                          f"as they are, as data.prep.mouth_roi = 'auto' does; got mouth_roi = {prep.mouth_roi!r}")

    for v in cfg.ablation:
        where = f"{source}: ablation {v.name!r}"
        for key in v.set:
            _lookup_dotted(Config(), key, where)
        with_overrides(cfg, v.set, source=where)  # each variant is checked as a whole config, before any run


def _check_device_name(device: str, where: str) -> None:
    """``device`` names a torch device ("auto", "cpu", "cuda", "cuda:1", ...); whether it exists is
    checked when a run starts (:func:`bimodal.device.resolve_device`)."""
    if device == "auto":
        return
    try:
        import torch

        torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"{where} = {device!r}: not a device name (expected auto, cpu, cuda or cuda:N)") from None


def config_record(cfg: Config) -> dict:
    """The config as a results file records it: every value in effect, ``data.prep`` expanded to
    all :class:`PrepConfig` fields (the TOMLs state only what differs from the defaults)."""
    record = cfg.to_dict()
    record["data"]["prep"] = prep_config(cfg).to_dict()
    return record


def prep_config(cfg: Config, source: str = "config"):
    """The :class:`data_prep.dataset.PrepConfig` that ``cfg.data.prep`` describes (keys checked)."""
    names = [f.name for f in dataclasses.fields(PrepConfig)]
    unknown = sorted(set(cfg.data.prep) - set(names))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))} in [data.prep]; "
                          f"valid keys: {', '.join(names)}")
    key = repr(sorted(cfg.data.prep.items()))
    cached = cfg.__dict__.get("_prep_config")
    if cached is not None and cached[0] == key:  # one PrepConfig per config, however often it is asked for
        return cached[1]
    hints = typing.get_type_hints(PrepConfig)
    values = {k: _check_type(v, hints[k], f"{source}: data.prep.{k}") for k, v in cfg.data.prep.items()}
    try:
        prep = PrepConfig(**values)
    except ConfigError as e:
        raise ConfigError(f"{source}: data.prep: {e}") from None
    cfg.__dict__["_prep_config"] = (key, prep)
    return prep


def load_config(path, overrides: list[str] | None = None) -> Config:
    """Read a TOML config file (and the ``base`` chain it starts from), apply ``section.key=value``
    overrides, validate the whole config.

    ``experiment.name`` is the file's own, or its stem when it sets none (never inherited from a base).
    """
    path = Path(path)
    data = read_config_tables(path)
    if isinstance(data.setdefault("experiment", {}), dict):  # else _build names the bad table
        data["experiment"].setdefault("name", path.stem)
    for ov in overrides or []:
        data = apply_override(data, ov, source=str(path))
    return config_from_dict(data, source=str(path))


def read_config_tables(path: Path, _chain: tuple = ()) -> dict:
    """The TOML tables of ``path`` merged onto those of its ``base`` (a path relative to the file),
    recursively: tables merge key by key, any other value (lists included) replaces the base's."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found" + (f" (the base of {_chain[-1]})" if _chain else ""))
    if path.resolve() in _chain:
        raise ConfigError(f"{path}: 'base' chain loops: {' -> '.join(map(str, _chain + (path.resolve(),)))}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be the path of another config file, got {base!r}")
    inherited = read_config_tables(path.parent / base, _chain + (path.resolve(),))
    if isinstance(inherited.get("experiment"), dict):
        inherited["experiment"].pop("name", None)
    return _merge_tables(inherited, data)


def _merge_tables(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in top.items():
        out[k] = _merge_tables(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def apply_override(data: dict, override: str, source: str = "override") -> dict:
    """Return a copy of ``data`` with ``"section.key=value"`` set (value parsed as TOML, else a string)."""
    if "=" not in override:
        raise ConfigError(f"{source}: override {override!r} must look like section.key=value")
    key, raw = override.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    data = copy.deepcopy(data)
    node = data
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return data


def _lookup_dotted(cfg, key: str, where: str):
    parts = key.split(".")
    if tuple(parts[:2]) in _RENAMED_KEYS:
        raise ConfigError(f"{where}: {key} is now called {parts[0]}.{_RENAMED_KEYS[tuple(parts[:2])]} (same meaning)")
    node = cfg
    for p in parts:
        if isinstance(node, dict):
            return node
        if not dataclasses.is_dataclass(node) or p not in {f.name for f in dataclasses.fields(node)}:
            valid = [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []
            raise ConfigError(f"{where}: '{key}' names no config key ('{p}' not in {valid})")
        node = getattr(node, p)
    return node


def with_overrides(cfg: Config, settings: dict, source: str = "variant") -> Config:
    """A new validated config: ``cfg`` with dotted keys in ``settings`` replaced."""
    data = cfg.to_dict()
    data.pop("ablation", None)
    for key, value in settings.items():
        _lookup_dotted(cfg, key, source)
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return config_from_dict(data, source=source)
