"""One (seed, speaker fold) of an experiment: preprocess, train the feature models, pool features.

Read top to bottom: :func:`load_utterances` reads the corpus named by the config,
:func:`prepare_fold` fits the whitening on the training speakers only and cuts windows,
:func:`train_feature_models` pretrains the bimodal DBN greedily (:func:`pretrain_bimodal_dbn`)
and fine-tunes the deep autoencoders (:func:`fine_tune_model`), :func:`window_codes` runs
windows through them and :func:`utterance_features` pools the codes over S equal slices of each
utterance.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bimodal.autoencoder import BimodalAutoencoder
from bimodal.dbn import BimodalDBN
from bimodal.errors import ConfigError, DataError
from bimodal.features import pool_slices
from bimodal.noise import add_white_noise
from data_prep.dataset import sample_rows
from data_prep.utterance import UNLABELLED

from . import registry
from .config import Config, prep_config

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- data
def load_utterances(cfg: Config, progress: bool = True, skipped: list | None = None) -> list:
    """All utterances of the dataset the config names (the synthetic corpus is generated if absent).

    Files the reader cannot use are skipped with a warning; pass a list as ``skipped`` to get
    those warnings' texts appended to it (for the results file)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        utts = _read_corpus(cfg, progress)
    for w in caught:
        if issubclass(w.category, UserWarning) and "skipped" in str(w.message):  # the readers' skip lists
            log.warning("%s", w.message)
            if skipped is not None:
                skipped.append(str(w.message))
        else:  # not ours to swallow
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return utts


def _read_corpus(cfg: Config, progress: bool) -> list:
    from data_prep import readers

    d = cfg.data
    if d.source == "grid":  # read through the per-process views, which learning_recordings shares
        utts, _ = grid_views(cfg, progress)
    else:  # the synthetic corpus has a default folder; every other source needs data.root
        root = (Path(d.root) if d.root else None) if d.source == "synth" else _need_root(d)
        utts = readers.read_corpus(d.source, root, progress=progress, **reader_options(cfg))
    if "mcgurk" in cfg.experiment.settings and any(u.audio is None for u in utts):
        raise ConfigError(f"the McGurk setting dubs waveforms, but the {d.source!r} corpus' audio is precomputed "
                          "feature frames (no waveforms); drop 'mcgurk' from experiment.settings")
    wanted = set(d.labels) | set(d.mcgurk_labels if "mcgurk" in cfg.experiment.settings else [])
    utts = [u for u in utts if u.label in wanted]
    have = {u.label for u in utts}
    missing = sorted(set(d.labels) - have)
    if missing:
        raise DataError(f"no utterances for label(s) {missing} named in data.labels", path=d.root or None,
                        field="data.labels")
    if "mcgurk" in cfg.experiment.settings and not set(d.mcgurk_labels) <= have:
        raise DataError(f"the McGurk setting needs utterances labelled {d.mcgurk_labels} (data.mcgurk_labels); "
                        f"missing {sorted(set(d.mcgurk_labels) - have)}. Drop it with "
                        "--set 'experiment.settings=[\"cross_modality\", \"fusion\", \"shared_representation\", "
                        "\"matching\"]'", path=d.root or None, field="data.mcgurk_labels")
    return utts


def reader_options(cfg: Config) -> dict:
    """The options ``data.source``'s reader (:data:`data_prep.readers.READERS`) takes from the config,
    besides the root and ``progress``."""
    d = cfg.data
    mismatch = {"max_av_length_mismatch_s": prep_config(cfg).max_av_length_mismatch_s}
    if d.source == "synth":
        return dict(seed=d.synth_seed, n_speakers=d.synth_speakers, repetitions=d.synth_repetitions,
                    vocabulary=tuple(d.synth_vocabulary))
    if d.source == "avletters":
        return mismatch
    if d.source == "grid":
        return dict(vocabulary=list(d.labels), margin_s=float(d.grid_margin_s), **mismatch)
    return {}


def grid_views(cfg: Config, progress: bool = True, warn: bool = True) -> tuple[list, list]:
    """(word tokens of ``data.labels``, trimmed sentences) of the GRID corpus under ``data.root``,
    decoded once per process for a given root, vocabulary and margin (the folds and the recordings
    view share them). ``warn``: issue the reader's skip warnings again when the views are reused."""
    import warnings

    d = cfg.data
    options = reader_options(cfg)
    key = (str(_need_root(d).resolve()), tuple(d.labels), float(d.grid_margin_s),
           float(prep_config(cfg).max_av_length_mismatch_s), d.learn_from == "recordings")
    if _GRID_VIEWS.get("key") != key:
        _GRID_VIEWS.clear()  # one corpus held at a time: its frames are large
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            views = _read_grid_views(key[0], options, sentences=d.learn_from == "recordings", progress=progress)
        _GRID_VIEWS.update(key=key, views=views, warnings=[(w.message, w.category) for w in caught])
    if warn:
        for message, category in _GRID_VIEWS["warnings"]:
            warnings.warn(message, category, stacklevel=2)
    return _GRID_VIEWS["views"]


_GRID_VIEWS: dict = {}


def _read_grid_views(root: str, options: dict, sentences: bool, progress: bool) -> tuple:
    """Tokens and (only when ``sentences``: they are ~4x the tokens' memory) the trimmed sentences,
    from one decode of each recording."""
    from data_prep import readers
    from data_prep.grid import SENTENCE_LABEL

    utts = readers.read_corpus("grid", root, view=("tokens", "sentences") if sentences else "tokens",
                               progress=progress, **options)
    tokens = [u for u in utts if u.label != SENTENCE_LABEL]
    sentences = [u for u in utts if u.label == SENTENCE_LABEL]
    log.info("GRID: %d tokens of %d words from %d sentences under %s", len(tokens), len(set(options["vocabulary"])),
             len(sentences), root)
    return tokens, sentences


def learning_recordings(cfg: Config, train_utts: list) -> list:
    """The recordings the unsupervised stages learn from with ``data.learn_from = "recordings"``:
    those a training utterance was cut from (``Utterance.group``), so no test recording is among them."""
    _, sentences = grid_views(cfg, progress=False, warn=False)
    groups = {u.group for u in train_utts}
    return [s for s in sentences if s.group in groups]


def _need_root(d) -> Path:
    if not d.root:
        raise ConfigError(f"data.root must name the dataset folder when data.source = {d.source!r}")
    return Path(d.root)


def repetition_split(utts: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """The AVLetters "third test" protocol as one (train, test) pair: every speaker's last
    repetition (highest take id; numeric ids compared as numbers) tests, the others train.

    Raises ConfigError when an utterance has no repetition id (the corpus' reader must set
    ``Utterance.repetition``) or there is only one repetition.
    """
    reps = [u.repetition for u in utts]
    missing = [u.utterance_id for u, r in zip(utts, reps) if r is None]
    if missing:
        raise ConfigError(f"experiment.split = 'third_test' needs a repetition id for every utterance; "
                          f"{len(missing)} have none (e.g. {missing[:3]}); only the avletters reader sets them. "
                          "Use split = 'kfold' or 'even_odd' for this corpus")
    order = sorted(set(reps), key=lambda r: (0, int(r), r) if str(r).isdigit() else (1, 0, str(r)))
    if len(order) < 2:
        raise ConfigError(f"experiment.split = 'third_test' needs at least two repetitions, got {order}")
    last = order[-1]
    is_test = np.array([r == last for r in reps])
    log.info("third-test split: repetitions %s train, repetition %s tests", order[:-1], last)
    return [(np.flatnonzero(~is_test), np.flatnonzero(is_test))]


def load_extra_audio(folder) -> list:
    """Unlabelled audio-only utterances: every ``*.wav`` under ``folder`` (recursively, sorted).

    Each becomes an :class:`~data_prep.readers.Utterance` with ``video=None``, label
    ``"(unlabelled)"`` and speaker ``"extra"``; unreadable files are skipped with one warning.
    Read once per folder and process (the folds share them).
    """
    return list(_extra_audio(str(Path(folder).resolve())))


@functools.lru_cache(maxsize=2)
def _extra_audio(folder: str) -> tuple:
    from data_prep import readers
    from data_prep.audio import load_wav

    root = Path(folder)
    if not root.is_dir():
        raise DataError("data.extra_audio must name a folder of WAV files; it does not exist", path=root,
                        field="data.extra_audio")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav" and not p.name.startswith("."))
    if not files:
        raise DataError("no .wav files found under the folder", path=root, field="data.extra_audio")

    def read(p):
        wave, rate = load_wav(p)
        uid = str(p.relative_to(root).with_suffix(""))
        return readers.Utterance(wave, rate, None, None, UNLABELLED, "extra", f"extra/{uid}", str(p))

    utts = readers._collect(readers._map_files(read, files, False, "extra audio"), False, root)
    log.info("extra audio: %d WAV files from %s", len(utts), root)
    return tuple(utts)


def recording_of(u) -> str:
    """The recording an utterance was cut from (``Utterance.group``), else the utterance itself."""
    return str(u.group if u.group is not None else u.utterance_id)


def splits_by_recording(cfg: Config, speakers) -> bool:
    """Whether ``experiment.split = "recordings"`` splits by recording here: only with one speaker
    among ``speakers`` (with several it is speaker folds, as ``"kfold"``)."""
    return cfg.experiment.split == "recordings" and len(set(speakers)) == 1


def recording_split(utts: list, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (train, test) pair by recording, the same for every seed: within each label, the
    recordings (sorted by id) are dealt round-robin into ``n_folds`` parts and the last part tests,
    so 1 / ``n_folds`` of every label's recordings test and no recording is on both sides. A
    recording holding several tokens goes with the label of its first one."""
    first_label: dict = {}
    for u in utts:
        first_label.setdefault(recording_of(u), u.label)
    test = set()
    for label in sorted(set(first_label.values())):
        recs = sorted(r for r, lab in first_label.items() if lab == label)
        test.update(r for i, r in enumerate(recs) if i % n_folds == n_folds - 1)
    is_test = np.array([recording_of(u) in test for u in utts])
    if is_test.all() or not is_test.any():
        raise ConfigError(f"experiment.split = 'recordings' needs at least {n_folds} recordings of a label "
                          f"(experiment.n_folds = {n_folds}); this corpus has {len(first_label)} recordings")
    log.info("recording split: %d recordings train, %d test (one in %d of each label)",
             len(first_label) - len(test), len(test), n_folds)
    return [(np.flatnonzero(~is_test), np.flatnonzero(is_test))]


def speaker_splits(utts: list, cfg: Config, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) utterance indices per fold: no speaker on both sides, except with
    ``experiment.split = "third_test"`` (:func:`repetition_split`), where no repetition is, and
    with ``"recordings"`` on a one-speaker corpus (:func:`recording_split`), where no recording is."""
    from bimodal.folds import speaker_folds

    if cfg.experiment.split == "third_test":
        return repetition_split(utts)
    if splits_by_recording(cfg, [u.speaker for u in utts]):
        return recording_split(utts, cfg.experiment.n_folds)
    speakers = np.array([u.speaker for u in utts])
    if cfg.experiment.split == "even_odd":
        return speaker_folds(speakers, n_folds=2, seed=seed, split="even_odd")
    return speaker_folds(speakers, n_folds=cfg.experiment.n_folds, seed=seed)


def frame_cache_path(cfg: Config, utts) -> Path:
    """Where the per-utterance frames of this dataset and preprocessing config are kept on disk:
    ``<cache>/frames-<hash>.npz``, the hash over the :class:`PrepConfig` and every input file's path,
    size and modification time, so a changed file or setting never reuses stale frames."""
    import os

    from data_prep.dataset import FRAMES_VERSION, default_cache_dir

    files = []
    if cfg.data.extra_audio:  # their spectrograms are cached too
        utts = list(utts) + load_extra_audio(cfg.data.extra_audio)
    for u in utts:
        st = os.stat(u.path) if u.path and os.path.exists(u.path) else None
        files.append((str(u.path), str(u.utterance_id), st.st_size if st else None, st.st_mtime_ns if st else None))
        wav = Path(u.path).with_suffix(".wav") if u.path else None
        if wav is not None and wav != Path(u.path) and wav.is_file():  # the readers take a video's sound from it
            st = wav.stat()
            files.append((str(wav), str(u.utterance_id), st.st_size, st.st_mtime_ns))
    record = {"prep": prep_config(cfg).to_dict(), "files": files, "version": FRAMES_VERSION}
    if cfg.data.source == "grid":  # the same token ids hold other frames under another margin
        record["grid_margin_s"] = float(cfg.data.grid_margin_s)
    key = json.dumps(record, sort_keys=True, default=str)
    root = Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir()
    return root / f"frames-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def load_frame_cache(path: Path) -> dict:
    """The frame cache saved by :func:`save_frame_cache`, or an empty one (unreadable files are
    ignored and rebuilt). The file holds arrays and a JSON index only, never pickled objects."""
    from bimodal.errors import DataError
    from bimodal.io import read_npz

    if not path.is_file():
        return {}
    try:
        arrays = read_npz(path, "frame cache")
        index = json.loads(str(arrays["index"]))
        # video crops are stored once as uint8 (they are uint8 / 255 exactly) to keep the file small;
        # entries that shared one array (clean and noisy versions of an utterance) share it again
        videos = {j: arrays[f"video{j}"].astype(np.float32) / 255.0
                  for j in {e["video"] for e in index} if j is not None}
        cache = {_as_key(e["key"]): (arrays[f"audio{i}"], None if e["video"] is None else videos[e["video"]],
                                     float(e["fps"]))
                 for i, e in enumerate(index)}
    except (DataError, KeyError, ValueError, TypeError) as e:  # a broken cache is rebuilt, never fatal
        log.warning("ignoring unreadable frame cache %s (%s: %s)", path, type(e).__name__, e)
        return {}
    log.info("frame cache hit: %s (%d entries)", path, len(cache))
    return cache


def _as_key(value):
    """A cache key read back from JSON: its lists are the tuples it was written from."""
    return tuple(_as_key(v) for v in value) if isinstance(value, list) else value


def save_frame_cache(cache: dict, path: Path) -> None:
    """Write ``cache`` (key -> (audio frames, video crops or None, fps)) as an ``.npz`` of arrays
    with a JSON index of the keys (:func:`load_frame_cache`)."""
    import io

    from bimodal.io import atomic_write_bytes

    arrays, index, slot = {}, [], {}
    for i, (k, (spec, vid, fps)) in enumerate(cache.items()):
        arrays[f"audio{i}"] = np.asarray(spec)
        j = None
        if vid is not None:
            if id(vid) not in slot:  # noisy variants share the clean utterance's crops
                slot[id(vid)] = len(slot)
                arrays[f"video{slot[id(vid)]}"] = np.rint(vid * 255.0).astype(np.uint8)
            j = slot[id(vid)]
        index.append({"key": k, "video": j, "fps": float(fps)})
    arrays["index"] = np.array(json.dumps(index))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    log.info("saved frame cache %s (%d entries)", path, len(index))


@dataclass
class FoldData:
    """Windows of one fold. ``test_noisy[snr]`` holds the test set with white noise added to its audio."""

    prep: object
    train: object  # data_prep.dataset.AVDataset
    test: object
    train_utts: list
    test_utts: list
    test_noisy: dict = field(default_factory=dict)
    #: utterances left out of fit / train / test, one dict each (utterance_id, path, reason)
    skipped: dict = field(default_factory=dict)
    #: why no noisy test sets were made, when a setting wanted them but they cannot be (else None)
    noise_skipped: str | None = None
    extra_audio: np.ndarray | None = None  # (M, Da) windows of data.extra_audio, for audio pretraining
    #: windows of the training recordings (``data.learn_from = "recordings"``), unlabelled
    recordings: object | None = None
    recording_utts: list | None = None  # those recordings (Utterances)
    #: windows of the extra audio-visual corpora (``data.extra_av``) in this fold's front end, unlabelled
    extra_av: object | None = None
    #: how the extra corpora were adapted (:class:`data_prep.extra_av.Adaptation` dicts, one per corpus)
    extra_av_info: list = field(default_factory=list)

    @property
    def own_learning(self):
        """This corpus' windows the unsupervised stages learn from: the training recordings when
        there are any, else the labelled training utterances."""
        return self.recordings if self.recordings is not None else self.train

    @property
    def learning(self):
        """The windows the models' unsupervised training sees: :attr:`own_learning` followed by the
        extra audio-visual windows (``data.extra_av``), joined on each access."""
        return self.own_learning if self.extra_av is None else self.own_learning.concat(self.extra_av)


def prepare_fold(cfg: Config, utts, train_idx, test_idx, seed: int, device, progress=True,
                 frame_cache: dict | None = None) -> FoldData:
    """Whitening fitted on the training speakers; train, test and noisy-test windows.

    ``frame_cache`` (one dict for the whole experiment) keeps each utterance's spectrogram and
    mouth crops, which do not depend on the fold, so only the whitening is redone per fold.

    An utterance that cannot be used (a truncated file, audio and video of different lengths, too
    short for a window) is left out with a warning and listed in ``FoldData.skipped`` instead of
    ending the run; ``train_utts`` / ``test_utts`` hold the utterances actually used.
    """
    from data_prep.dataset import Preprocessor

    train_utts = [utts[i] for i in train_idx]
    test_utts = [utts[i] for i in test_idx]
    prep = Preprocessor(prep_config(cfg), device=device, frame_cache=frame_cache, seed=seed)
    skipped = {}

    def used(utts_in, key):
        skipped[key] = list(prep.skipped)
        bad = {d["utterance_id"] for d in prep.skipped}
        return [u for u in utts_in if str(u.utterance_id) not in bad]

    recordings = learning_recordings(cfg, train_utts) if cfg.data.learn_from == "recordings" else None
    fit_utts = recordings or train_utts
    # extra corpora are fitted to the training crops (which need no whitening), before the fit:
    # a conv video front end learns from their frames too
    extra_utts, extra_info, fit_frames = (extra_av_corpora(cfg, prep, fit_utts, progress) if cfg.data.extra_av
                                          else ([], [], []))
    prep.fit(fit_utts, progress=progress, strict=False,
             extra_video=extra_frames(cfg, prep, extra_utts, fit_frames, seed) if extra_utts else None,
             extra_whitening=whitening_utterances(cfg, extra_utts, fit_frames, seed) if extra_utts else None)
    skipped["fit"] = list(prep.skipped)
    if recordings is not None:
        rec = prep.transform(recordings, progress=progress, strict=False)
        skipped["recordings"] = list(prep.skipped)
        prep.label_names = sorted({u.label for u in train_utts})  # the classes, not "(sentence)"
        log.info("feature learning on %d windows of %d training recordings", len(rec), rec.n_utterances)
    train = prep.transform(train_utts, progress=progress, strict=False)
    train_utts = used(train_utts, "train")
    test = prep.transform(test_utts, progress=progress, strict=False)
    test_utts = used(test_utts, "test")
    fold = FoldData(prep, train, test, train_utts, test_utts, skipped={k: v for k, v in skipped.items() if v},
                    recordings=rec if recordings is not None else None, recording_utts=recordings)
    if extra_utts:
        extra = extra_av_dataset(prep, extra_utts, progress)
        if prep.skipped:
            fold.skipped["extra_av"] = list(prep.skipped)
        if cfg.data.extra_av_ratio:
            n_own = len(fold.own_learning.audio)
            extra = extra.sample_windows(int(round(cfg.data.extra_av_ratio * n_own)), seed)
        fold.extra_av, fold.extra_av_info = extra, extra_info
    if cfg.data.mirror_video:
        fold = with_mirrored_windows(fold, progress)
    if cfg.data.extra_audio:
        # whitened by this fold's audio whitener (training speakers only) and windowed like any
        # audio-only utterance, so the rows match the audio RBM's input
        extra = prep.transform_audio_only(load_extra_audio(cfg.data.extra_audio), progress=progress, strict=False)
        fold.extra_audio = extra.audio
        if extra.audio.shape[1] != fold.train.audio.shape[1]:
            raise DataError(f"extra audio windows have {extra.audio.shape[1]} dims, the corpus's {fold.train.audio.shape[1]} "
                            "(set data.prep.audio_only_fps to the corpus's video frame rate)",
                            path=cfg.data.extra_audio, field="data.extra_audio")
    if "fusion" in cfg.experiment.settings and cfg.eval.snr_db:
        if any(u.audio is None for u in test_utts):
            fold.noise_skipped = ("the corpus' audio is precomputed feature frames (no waveforms), so white noise "
                                  "cannot be added: the fusion setting's noisy conditions are skipped")
            log.warning(fold.noise_skipped)
        else:
            # strict: the clean versions of these utterances all passed, and the noisy sets must
            # stay row-aligned with the clean test labels
            for snr in cfg.eval.snr_db:
                fold.test_noisy[float(snr)] = prep.transform(test_utts, audio_transform=noise_transform(snr, seed),
                                                             progress=progress)
    return fold


def extra_av_corpora(cfg: Config, prep, fit_utts: list, progress: bool = True) -> tuple[list, list[dict], list]:
    """The recordings of every ``data.extra_av`` corpus adapted to the crops of ``fit_utts``
    (:func:`extra_av_utterances`), each corpus' :class:`data_prep.extra_av.Adaptation` as a dict, and
    the frames of the usable ``fit_utts`` (``prep.frames``: audio, crops, fps), computed once here."""
    fit_frames = [f for f in map(functools.partial(_frames_or_none, prep), fit_utts) if f is not None]
    if not fit_frames or any(f[1] is None for f in fit_frames):
        raise ConfigError("data.extra_av adds audio-visual recordings to an audio-visual corpus; this corpus' "
                          "training utterances have no usable video (use data.extra_audio for audio alone)")
    utts, infos = [], []
    for root in cfg.data.extra_av:
        u, info = extra_av_utterances(cfg, prep, fit_utts, fit_frames, root, progress)
        utts += u
        infos.append({"root": str(root), **info.to_dict()})
    return utts, infos, fit_frames


def extra_frames(cfg: Config, prep, extra_utts: list, fit_frames: list, seed: int) -> np.ndarray | None:
    """Mouth frames of the extra recordings for a conv video front end to learn from besides the
    training utterances' ((M, H * W) in [0, 1]; ``data.extra_av_ratio`` x as many as the training
    utterances have, drawn with the run's seed); None for the PCA front end, which they never fit."""
    if prep.cfg.video_frontend != "conv":
        return None
    frames = np.concatenate([u.video.reshape(len(u.video), -1) for u in extra_utts])
    if cfg.data.extra_av_ratio:
        frames = frames[sample_rows(len(frames), int(round(extra_frame_quota(cfg, fit_frames))), seed)]
    return frames.astype(np.float32) / 255.0


def extra_frame_quota(cfg: Config, fit_frames: list) -> float:
    """How many extra video frames ``data.extra_av_ratio`` asks for beside the fitting utterances'."""
    return cfg.data.extra_av_ratio * sum(len(f[1]) for f in fit_frames)


def whitening_utterances(cfg: Config, extra_utts: list, fit_frames: list, seed: int) -> list | None:
    """The extra recordings the whitening is fitted on besides the fitting utterances
    (``data.extra_av_whitening = "both"``): whole recordings in a seeded random order, as many as
    reach ``data.extra_av_ratio`` x the fitting utterances' video frames (every one at ratio 0);
    None under "target"."""
    if cfg.data.extra_av_whitening != "both" or not extra_utts:
        return None
    if not cfg.data.extra_av_ratio:
        return list(extra_utts)
    want = extra_frame_quota(cfg, fit_frames)
    order = np.random.default_rng(seed).permutation(len(extra_utts))
    reached = np.cumsum([len(extra_utts[i].video) for i in order]) >= want
    n = int(np.argmax(reached)) + 1 if reached.any() else len(order)
    return [extra_utts[i] for i in np.sort(order[:n])]


def mirrored_utterances(utts: list) -> list:
    """``utts`` with their mouth video mirrored left-right, as unlabelled recordings (id
    ``mirror/<id>``); audio unchanged. Utterances without video are left out."""
    return [dataclasses.replace(u, video=np.ascontiguousarray(np.asarray(u.video)[:, :, ::-1]), label=UNLABELLED,
                                speaker=f"mirror:{u.speaker}", utterance_id=f"mirror/{u.utterance_id}", repetition=None)
            for u in utts if u.video is not None]


def with_mirrored_windows(fold: FoldData, progress: bool = True) -> FoldData:
    """``fold`` with the mirrored windows of its learning utterances (:func:`mirrored_utterances`,
    whitened by the fold's whiteners) appended to its unlabelled extra windows (``fold.extra_av``),
    which every unsupervised stage learns from and no classifier sees. A new FoldData; ``fold`` is
    unchanged. The learning recordings are mirrored when the config learns from recordings."""
    own = fold.recording_utts if fold.recording_utts is not None else fold.train_utts
    mirrored = mirrored_utterances(own)
    if not mirrored:
        raise ConfigError("data.mirror_video mirrors the mouth video of the learning utterances, but this corpus' "
                          "utterances have no video; set data.mirror_video = false")
    ds = extra_av_dataset(fold.prep, mirrored, progress, what="mirrored mouth crops")
    extra = ds if fold.extra_av is None else fold.extra_av.concat(ds)
    skipped = dict(fold.skipped, **({"mirrored": list(fold.prep.skipped)} if fold.prep.skipped else {}))
    return dataclasses.replace(fold, extra_av=extra, skipped=skipped)


def extra_av_dataset(prep, extra_utts: list, progress: bool = True, what: str = "extra audio-visual data"):
    """Windows of the adapted extra recordings, whitened by the fold's whiteners (fitted on the
    corpus alone), as one unlabelled dataset; ``prep.skipped`` lists the unusable ones."""
    # their crops depend on the adaptation, so they never enter the experiment's frame cache
    cache, prep.frame_cache = prep.frame_cache, None
    try:
        ds = prep.transform(extra_utts, progress=progress, strict=False)
    finally:
        prep.frame_cache = cache
    log.info("%s: %d windows of %d recordings", what, len(ds), ds.n_utterances)
    return ds


def extra_av_utterances(cfg: Config, prep, fit_utts: list, fit_frames: list, root, progress: bool = True
                        ) -> tuple[list, object]:
    """One extra corpus adapted to ``fit_frames``, the frames of ``fit_utts``
    (:func:`data_prep.extra_av.adapt_to_target`); kept per process and corpus for the same
    preprocessing, corpus and fitting utterances (the seeds of a split share it)."""
    c = prep.cfg
    rates = {u.audio_frame_rate for u in fit_utts if u.audio is None}
    if len(rates) > 1:
        raise DataError(f"the corpus' audio feature frames come at several rates {sorted(map(str, rates))}",
                        field="audio_frame_rate")
    rate = rates.pop() if rates else None
    ids = hashlib.sha256("\n".join(sorted(str(u.utterance_id) for u in fit_utts)).encode()).hexdigest()
    key = json.dumps([str(Path(cfg.data.root).resolve()) if cfg.data.root else "", c.to_dict(), cfg.data.extra_av_scale,
                      cfg.data.extra_av_track_every, rate, ids], sort_keys=True, default=str)
    root_key = str(Path(root).resolve())
    if _EXTRA_AV.get(root_key, (None,))[0] != key:
        from data_prep.extra_av import adapt_to_target, read_extra_recordings

        _EXTRA_AV.pop(root_key, None)  # a corpus' crops can be large: let the old ones go first
        recordings = read_extra_recordings(root, c.roi_size, cfg.data.extra_av_track_every, cfg.data.cache_dir or None,
                                           progress)
        target = np.concatenate([f[1] for f in fit_frames]) * 255.0
        _EXTRA_AV[root_key] = (key, adapt_to_target(recordings, target, c.roi_size, rate, cfg.data.extra_av_scale,
                                                    progress, [f[0] for f in fit_frames] if rate else None))
    return _EXTRA_AV[root_key][1]


_EXTRA_AV: dict = {}  # resolved corpus root -> (key of the target and settings, its adaptation)


def _frames_or_none(prep, u):
    """``prep.frames(u)``, or None for an utterance the fit will skip as unusable."""
    try:
        return prep.frames(u)
    except DataError:
        return None


def noise_transform(snr_db: float, seed: int):
    """An ``audio_transform`` adding white noise at ``snr_db``, the SNR of the speech-active part
    of the utterance (:func:`bimodal.noise.speech_active_mask`); the noise of each utterance is
    seeded by (seed, utterance id) so it does not depend on the order utterances are processed in."""

    def transform(wave, rate, utterance):
        key = np.frombuffer(str(utterance.utterance_id).encode(), dtype=np.uint8)
        rng = np.random.default_rng([seed, int(snr_db * 100) % (2**31), *key.tolist()])
        return add_white_noise(wave, snr_db, rng, rate=rate)

    transform.cache_key = f"white-noise snr={snr_db!r} seed={seed} reference=speech-active"
    return transform


# --------------------------------------------------------------------------- models
def build_bimodal_dbn(cfg: Config, n_audio: int, n_video: int, seed: int, device) -> BimodalDBN:
    """The bimodal DBN of the config: Gaussian first layers (small learning rate), Bernoulli above."""
    m, p = cfg.model, cfg.pretrain
    rbm_params = dict(lr=p.lr_bernoulli, k=p.cd_k, persistent=p.persistent, final_momentum=p.final_momentum,
                      weight_decay=p.weight_decay, sparsity_target=p.sparsity_target or None,
                      sparsity_cost=p.sparsity_cost, sparsity_update=p.sparsity_update)
    return BimodalDBN([n_audio, *m.audio_hidden], [n_video, *m.video_hidden], m.shared, rbm_params=rbm_params,
                      first_layer_params=dict(lr=p.lr_gaussian), device=device, seed=seed,
                      audio_first_layer_params=modality_sparsity(cfg, "audio"),
                      video_first_layer_params=modality_sparsity(cfg, "video"))


def modality_sparsity(cfg: Config, modality: str) -> dict:
    """The sparsity settings a modality's first RBM takes apart from the shared ones
    (``pretrain.<modality>_sparsity_target`` / ``_cost``); {} when it has none of its own."""
    p, out = cfg.pretrain, {}
    target, cost = getattr(p, f"{modality}_sparsity_target"), getattr(p, f"{modality}_sparsity_cost")
    if target is not None:
        out["sparsity_target"] = target or None
    if cost is not None:
        out["sparsity_cost"] = cost
    return out


def finetune_kwargs(cfg: Config, fractions=None) -> dict:
    f = cfg.finetune
    return dict(epochs=f.epochs, batch_size=f.batch_size, lr=f.lr, optimizer=f.optimizer,
                fractions=tuple(fractions if fractions is not None else f.fractions),
                corruption=f.corruption, l1_shared=f.l1_shared)


def autoencoder(cfg: Config, dbn: BimodalDBN | None, n_audio: int, n_video: int, seed: int, device,
                input_modalities=("audio", "video")) -> BimodalAutoencoder:
    """The unrolled bimodal DBN, or the same architecture randomly initialised when pretraining is off."""
    m = cfg.model
    common = dict(input_modalities=input_modalities, shared_layer=m.shared_layer, kl_weight=cfg.finetune.kl_weight)
    if dbn is not None:
        return BimodalAutoencoder.from_dbn(dbn, tied=m.tied, device=device, seed=seed, **common)
    return BimodalAutoencoder.random_init([n_audio, *m.audio_hidden], [n_video, *m.video_hidden], m.shared,
                                          tied=m.tied, seed=seed, device=device, **common)


def needed_models(cfg: Config) -> list[str]:
    """Checkpoints to train, in :data:`experiments.registry.MODELS` order: those the config's
    features read (:func:`experiments.registry.features_read`), plus the bimodal DBN (every
    autoencoder starts from it) and the bimodal autoencoder (the mouth-from-audio figure)."""
    need = {registry.feature(n).model for n in registry.features_read(cfg)} | {"bimodal_dbn", "bimodal_dae"}
    return [name for name in registry.MODELS if name in need]


def pretrain_bimodal_dbn(cfg: Config, fold: FoldData, seed: int, device, progress: bool = True,
                         only: str | None = None) -> BimodalDBN:
    """The config's bimodal DBN (:func:`build_bimodal_dbn`), pretrained greedily on the fold's
    learning windows (:attr:`FoldData.learning`; the audio DBN also on ``fold.extra_audio``) for
    ``pretrain.epochs`` epochs of ``pretrain.batch_size`` rows.

    With ``pretrain.enabled = false`` no RBM is trained: the DBN keeps its random initialisation,
    so its ``rbm.*`` / ``dbn`` features are those of a random-init network, and the autoencoders
    start from random weights too (:func:`autoencoder`). ``only`` = "audio" / "video": pretrain that
    modality's DBN alone (:meth:`BimodalDBN.fit`), the same DBN the full pretraining gives
    (``bimodal tune`` scores first-RBM features so).
    """
    learning = fold.learning
    Xa, Xv = learning.audio, learning.video
    dbn = build_bimodal_dbn(cfg, Xa.shape[1], Xv.shape[1], seed, device)
    p = cfg.pretrain
    if not p.enabled:
        log.info("pretrain.enabled = false: the bimodal DBN keeps its random initialisation")
        return dbn
    return dbn.fit(audio=Xa, video=Xv, epochs=p.epochs, batch_size=p.batch_size, progress=progress,
                   extra_audio=fold.extra_audio, only=only)


def fine_tune_model(cfg: Config, name: str, models: dict, fold: FoldData, seed: int, device,
                    progress: bool = True) -> BimodalAutoencoder:
    """The autoencoder ``name`` of :data:`experiments.registry.MODELS`, built from the trained
    ``models["bimodal_dbn"]`` (unrolled, or random weights with ``pretrain.enabled = false``; the
    shallow ones on its first RBM) and fine-tuned on the fold's learning windows."""
    spec = registry.MODELS[name]
    learning = fold.learning
    Xa, Xv = learning.audio, learning.video
    n_audio, n_video = Xa.shape[1], Xv.shape[1]
    if spec.kind == "shallow":
        (m,) = spec.inputs
        model = BimodalAutoencoder.shallow_from_rbm(registry.first_rbm(models["bimodal_dbn"], m),
                                                    n_audio if m == "video" else n_video, m, device=device, seed=seed)
    else:
        dbn = models["bimodal_dbn"] if cfg.pretrain.enabled else None
        model = autoencoder(cfg, dbn, n_audio, n_video, seed, device, spec.inputs)
    return model.fit(audio=Xa, video=Xv, seed=seed, progress=progress, **finetune_kwargs(cfg, spec.fractions),
                     **spec.fit_options)


def train_feature_models(cfg: Config, fold: FoldData, seed: int, device, checkpoint_dir: Path | None = None,
                         resume: bool = False, progress: bool = True) -> dict:
    """Greedy pretraining of the bimodal DBN, then fine-tuning of the deep autoencoders.

    Returns a dict of models keyed by their :data:`experiments.registry.MODELS` names (the ones
    :func:`needed_models` lists). Each is saved under ``checkpoint_dir`` as ``<name>.pt`` after it
    is trained and loaded from there with ``resume``.
    """
    models = {}
    for name in needed_models(cfg):
        spec = registry.MODELS[name]
        path = checkpoint_dir / f"{name}.pt" if checkpoint_dir is not None else None
        if resume and path is not None and path.exists():
            log.info("resume: loading %s", path)
            models[name] = (BimodalDBN if spec.kind == "bimodal_dbn" else BimodalAutoencoder).load(path, device=device)
            continue
        log.info("training %s: %s", name, spec.description)
        models[name] = (pretrain_bimodal_dbn(cfg, fold, seed, device, progress) if spec.kind == "bimodal_dbn"
                        else fine_tune_model(cfg, name, models, fold, seed, device, progress))
        if path is not None:
            models[name].save(path)
    return models


# --------------------------------------------------------------------------- features
def device_windows(ds, device) -> dict[str, torch.Tensor]:
    """``audio``, ``video`` and ``utt`` of ``ds`` as tensors on ``device``, uploaded once per dataset
    and device: every feature set of a fold (and every classifier row) reuses the same copy. The
    copies live on the dataset object itself, so they die with it and no other dataset sees them."""
    dev = torch.device(device)
    cache = ds.__dict__.setdefault("_device_windows", {})
    out = {}
    for name, dtype in (("audio", torch.float32), ("video", torch.float32), ("utt", torch.int64)):
        a = getattr(ds, name)
        if a is None:
            continue
        if (name, dev) not in cache:
            cache[(name, dev)] = torch.as_tensor(np.asarray(a)).to(device=dev, dtype=dtype)
        out[name] = cache[(name, dev)]
    return out


def _models_device(models: dict) -> torch.device:
    if not models:
        raise ConfigError("no models given: pass the device the windows should go to")
    return next(next(iter(models.values())).parameters()).device


def window_codes(models: dict, ds, which: list[str], device=None) -> dict[str, torch.Tensor]:
    """Window-level features of ``ds`` for each named feature (:data:`experiments.registry.FEATURES`),
    as tensors on the models' device. The windows are uploaded once per dataset
    (:func:`device_windows`); nothing is copied back to the host here.
    """
    w = device_windows(ds, _models_device(models) if device is None else device)
    out = {}
    with torch.no_grad():
        for name in which:
            out[name] = registry.encode(registry.feature(name), models, w.get("audio"), w.get("video")).to(torch.float32)
            if not bool(torch.isfinite(out[name]).all()):  # one check per feature, not per batch
                raise FloatingPointError(f"feature {name!r} holds non-finite values")
    return out


def utterance_features(codes, ds, slices) -> np.ndarray:
    """Mean of the window codes over S equal slices of each utterance, concatenated over ``slices``.

    ``codes`` (N, H) numpy or tensor; a tensor is pooled on its device and copied to the host
    once, as the pooled (U, H * sum(slices)) float32 array."""
    if isinstance(codes, torch.Tensor):
        utt = device_windows(ds, codes.device)["utt"]
        return pool_slices(codes, utt, ds.n_utterances, slices=tuple(slices)).to(torch.float32).cpu().numpy()
    return np.asarray(pool_slices(codes, ds.utt, ds.n_utterances, slices=tuple(slices)), dtype=np.float32)


def label_strings(ds) -> np.ndarray:
    return np.asarray(ds.label_names, dtype=object)[np.asarray(ds.labels)]


def dub_frame_map(audio_utt, video_utt) -> tuple[np.ndarray, int]:
    """Which frame of ``video_utt`` each frame of a dub onto ``audio_utt``'s audio shows.

    The video is shifted by a whole number of frames so its consonant onset lands on the audio's
    (:func:`data_prep.onsets.consonant_onset`: the corpus manifest's phoneme timing, else the
    energy onset of each utterance's own audio), within half a frame; before its first frame and
    after its last the video holds that frame (a mouth at rest in a padded recording). The dub
    lasts as long as the audio.

    Returns
    -------
    src : (n_frames,) int64 source frame of each dub frame. shift : frames the video is delayed by.
    """
    from data_prep.onsets import consonant_onset

    fps = float(video_utt.fps)
    duration = len(audio_utt.audio) / audio_utt.sample_rate
    n_frames = max(1, int(np.floor(duration * fps + 1e-9)))
    shift = int(round((consonant_onset(audio_utt) - consonant_onset(video_utt)) * fps))
    src = np.clip(np.arange(n_frames) - shift, 0, len(video_utt.video) - 1).astype(np.int64)
    return src, shift


def mcgurk_utterance(audio_utt, video_utt):
    """Audio of one utterance with the video of another, aligned at the consonant onset as a real
    dub would be (:func:`dub_frame_map`): a McGurk stimulus labelled ``"<video>|<audio>"``."""
    from data_prep.onsets import consonant_onset

    src, _ = dub_frame_map(audio_utt, video_utt)
    return dataclasses.replace(
        audio_utt, video=video_utt.video[src], fps=video_utt.fps, onset_s=consonant_onset(audio_utt),
        label=f"{video_utt.label}|{audio_utt.label}",
        utterance_id=f"{video_utt.utterance_id}+{audio_utt.utterance_id}")
