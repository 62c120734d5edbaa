"""Unlabelled audio-visual speech from other corpora, put into a target corpus' front end.

Ngiam et al. (2011) learned their AVLetters features from more than AVLetters: CUAVE, AVLetters2
and 23 speakers of their own. Another corpus' faces and voices only help if they reach the models
in the target's own input space, so each extra recording is adapted to the target:

* **Mouth crops.** The mouth is tracked in the full-face video (:mod:`data_prep.mouth_roi`) and the
  tracked box is scaled by one factor per corpus, chosen among :data:`CROP_SCALES` to bring the mean
  of the per-image standardised crops closest (RMS over pixels) to that of the target's training
  crops: a label-free criterion on training data only, which matches how much of the face a crop
  holds (AVLetters' pre-cropped lips fill more of the frame than the tracker's default box).
  Then every crop's intensities are mapped affinely to the target's average per-image mean and
  standard deviation, so lighting and camera gain do not separate the corpora.
* **Audio.** When the target ships HTK MFCC_E_D frames and no waveforms (AVLetters), the extra
  waveform is turned into the same features (:func:`data_prep.mfcc.htk_mfcc`, at the target's frame
  rate), and each coefficient is then scaled so that its standard deviation over the extra corpus,
  after the per-utterance mean normalisation the front end applies, equals the target's: the same
  analysis of another microphone, room and level gives cepstra of another spread (GRID's are about
  twice AVLetters'), which the target's whitening would pass on as several times its unit variance.
  When the target has waveforms, the extra waveform is used as it is.
* **Whitening** stays fitted on the target's training utterances only: the classifiers see the
  target alone, so the PCA basis describes the target's variation; extra data is expressed in it
  (:func:`closeness` reports how well it fits there).

Only the unsupervised stages see these recordings (``experiments.pipeline``): never the
classifiers, whose labels come from the target alone.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from bimodal.errors import DataError
from bimodal.io import atomic_savez

from .container import MAX_AV_MISMATCH_S
from .mouth_roi import crop_boxes, is_mouth_sized, track_mouth_boxes
from .utterance import UNLABELLED, Utterance, _map_files, default_workers

log = logging.getLogger(__name__)

#: Scales of the tracked mouth box tried by :func:`choose_crop_scale`.
CROP_SCALES = (0.6, 0.7, 0.8, 0.9, 1.0, 1.2)
#: Recordings (the first ones, in corpus order) that decide the crop scale.
SCALE_RECORDINGS = 40
#: Version of the tracked-box cache; part of its key (2: keyed without decoding, boxes by recording path,
#: the skipped recordings' reasons kept).
BOXES_VERSION = 2


@dataclass
class ExtraRecording:
    """One extra recording, read when needed: ``load()`` decodes it (full-face ``video`` and sound
    track, an :class:`~data_prep.utterance.Utterance`); ``boxes`` ``(T, 4)`` are its tracked mouth
    boxes ``[cx, cy, w, h]`` per frame (:func:`data_prep.mouth_roi.track_mouth_boxes`).

    Nothing holds the decoded video between uses, so a corpus of any size costs the memory of the
    recordings being worked on at one time, not of the corpus."""

    name: str
    utterance_id: str
    load: Callable[[], Utterance]
    boxes: np.ndarray | None = None
    files: tuple = ()  # the files it is read from (their sizes and times key the box cache)

    @classmethod
    def in_memory(cls, u: Utterance, boxes: np.ndarray) -> "ExtraRecording":
        """A recording already decoded (``u``) with its boxes."""
        return cls(str(u.path), str(u.utterance_id), lambda: u, np.asarray(boxes, np.float64))


def read_extra_recordings(root, roi_size=(60, 80), track_every: int = 2, cache_dir=None,
                          progress: bool = True) -> list[ExtraRecording]:
    """Every usable recording under ``root`` with its tracked mouth boxes, not kept decoded.

    ``root`` is a GRID tree (``ROOT/alignments/`` beside the speaker folders: each sentence,
    trimmed to its speech) or the generic folder layout (``ROOT/<speaker>/<label>/<utt>.<video>``,
    labels ignored). Each recording is decoded, tracked and let go in turn (a few at a time, on
    threads). Boxes are cached under ``cache_dir`` (keyed by the files' paths, sizes and
    modification times and the tracking settings), since tracking costs ~11 ms a frame; a
    recording that cannot be read, or has no video or no sound track, is left out with one warning.

    Raises
    ------
    DataError naming ``data.extra_av`` when the folder is missing or holds no audio-visual recording.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("an extra audio-visual corpus must be a folder (GRID or ROOT/<speaker>/<label>/<utt>.<video>)",
                        path=root, field="data.extra_av")
    recordings = _list_corpus(root)
    cache = _boxes_cache_path(root, recordings, roi_size, track_every, cache_dir)
    cached = _load_boxes(cache)
    if cached is None:
        def track(r: ExtraRecording) -> np.ndarray:
            u = r.load()
            if u.video is None or u.audio is None:
                raise DataError("needs both video and a sound track", path=r.name, field="data.extra_av")
            T, H, W = np.asarray(u.video).shape
            if is_mouth_sized((H, W), tuple(roi_size)):  # already a mouth crop ("auto"): the whole frame
                return np.tile([W / 2, H / 2, W, H], (T, 1)).astype(np.float64)
            return track_mouth_boxes(np.asarray(u.video), tuple(roi_size), name=u.path, every=track_every)[0]

        tracked = _map_files(track, recordings, progress, "extra AV: reading and mouth tracking")
        boxes = {r.name: b for r, b in zip(recordings, tracked) if not isinstance(b, DataError)}
        skipped = {r.name: str(b) for r, b in zip(recordings, tracked) if isinstance(b, DataError)}
        if boxes:  # the skipped ones are kept with their reasons, to be named again on a cache hit
            atomic_savez(cache, names=np.array(list(boxes)), lengths=np.array([len(b) for b in boxes.values()]),
                         boxes=np.concatenate(list(boxes.values())), skipped=np.array(list(skipped), dtype=str),
                         reasons=np.array(list(skipped.values()), dtype=str))
            log.info("extra AV: tracked %d recordings, boxes cached in %s", len(boxes), cache)
    else:
        boxes, skipped = cached
    if skipped:
        reasons = list(skipped.values())
        warnings.warn(f"extra AV {root}: skipped {len(reasons)} of {len(recordings)} recordings:\n  "
                      + "\n  ".join(reasons[:50]) + (f"\n  ... and {len(reasons) - 50} more" if len(reasons) > 50 else ""),
                      stacklevel=2)
    usable = [replace(r, boxes=boxes[r.name]) for r in recordings if r.name in boxes]
    if not usable:
        raise DataError(f"none of the {len(recordings)} recordings is usable (listed in the warning)", path=root,
                        field="data.extra_av")
    return usable


def _list_corpus(root: Path) -> list[ExtraRecording]:
    """A GRID tree's sentences (trimmed to the speech, unlabelled), else the generic layout's
    recordings, listed without decoding."""
    if (root / "alignments").is_dir():
        from .grid import scan_grid

        return [ExtraRecording(str(video), f"{speaker}/{video.stem}", partial(_grid_sentence, (speaker, video, align)),
                               files=(str(video), str(align))) for speaker, video, align in scan_grid(root)]
    from .readers import _read_entry, scan_folder

    return [ExtraRecording(e.video_path, e.utterance_id, partial(_read_entry, e),
                           files=tuple(dict.fromkeys((e.video_path, e.audio_path)))) for e in scan_folder(root)]


def _grid_sentence(item) -> Utterance:
    from .grid import DEFAULT_MARGIN_S, _read_recording

    rec = _read_recording(item, frozenset(), DEFAULT_MARGIN_S, MAX_AV_MISMATCH_S, ("sentences",))
    return replace(rec.sentence, label=UNLABELLED)


def _boxes_cache_path(root: Path, recordings: list[ExtraRecording], roi_size, track_every: int, cache_dir) -> Path:
    from .dataset import default_cache_dir

    files = []
    for r in recordings:
        for f in r.files or (r.name,):
            st = os.stat(f) if os.path.exists(f) else None
            files.append((f, r.utterance_id, st and st.st_size, st and st.st_mtime_ns))
    from .grid import DEFAULT_MARGIN_S

    key = json.dumps({"root": str(root.resolve()), "files": files, "roi": list(roi_size), "every": int(track_every),
                      "version": BOXES_VERSION, "grid_trim": [DEFAULT_MARGIN_S, MAX_AV_MISMATCH_S]},
                     sort_keys=True, default=str)
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    return folder / f"extra-av-boxes-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _load_boxes(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]] | None:
    """The cached boxes by recording path (the usable recordings) and the skipped recordings'
    reasons by path, or None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            names, lengths, flat = z["names"].tolist(), z["lengths"], z["boxes"]
            skipped = dict(zip(z["skipped"].tolist(), z["reasons"].tolist()))
    except Exception as e:  # noqa: BLE001 - a broken cache is re-tracked, never fatal
        log.warning("ignoring unreadable box cache %s (%s)", path, e)
        return None
    if len(names) != len(lengths) or int(np.sum(lengths)) != len(flat):
        log.warning("ignoring inconsistent box cache %s", path)
        return None
    return dict(zip(names, np.split(flat, np.cumsum(lengths)[:-1]))), skipped


def standardised_mean(frames: np.ndarray) -> np.ndarray:
    """Mean over frames of each frame standardised to zero mean and unit variance, ``(H * W,)``."""
    X = np.asarray(frames, dtype=np.float64).reshape(len(frames), -1)
    X = (X - X.mean(1, keepdims=True)) / (X.std(1, keepdims=True) + 1e-6)
    return X.mean(0)


def choose_crop_scale(target_frames: np.ndarray, recordings: list[ExtraRecording], roi_size=(60, 80),
                      scales=CROP_SCALES) -> tuple[float, dict[float, float]]:
    """The box scale whose crops' standardised mean image is nearest (RMS) the target's.

    ``target_frames`` (N, H, W) or (N, H * W): the target's training crops. Returns the chosen scale
    and every candidate's distance. The recordings are decoded one at a time."""
    ref = standardised_mean(target_frames)
    sums, n, bad = {float(s): 0.0 for s in scales}, 0, []
    for r in recordings:
        try:
            video = _checked_video(r, r.load())
        except DataError as exc:  # left out here as adapt_to_target leaves it out
            bad.append(str(exc))
            continue
        for s in sums:
            crops = crop_boxes(video, _scaled(r.boxes, s), tuple(roi_size))
            sums[s] = sums[s] + standardised_mean(crops) * len(crops)
        n += len(video)
    if not n:
        raise DataError(f"none of the {len(recordings)} recordings that choose the mouth box scale is usable:\n  "
                        + "\n  ".join(bad), field="data.extra_av")
    distances = {s: float(np.sqrt(((total / n - ref) ** 2).mean())) for s, total in sums.items()}
    best = min(distances, key=distances.get)
    return best, distances


def _checked_video(r: ExtraRecording, u: Utterance) -> np.ndarray:
    """``u`` (the recording ``r`` decoded)'s frames, checked against ``r``'s boxes."""
    video = np.asarray(u.video)
    if len(video) != len(r.boxes):
        raise DataError(f"has {len(video)} frames but {len(r.boxes)} tracked boxes (changed since it was tracked?)",
                        path=r.name, field="data.extra_av")
    return video


def _scaled(boxes: np.ndarray, scale: float) -> np.ndarray:
    out = np.array(boxes, dtype=np.float64)
    out[:, 2:] *= scale
    return out


def intensity_statistics(frames: np.ndarray) -> tuple[float, float]:
    """Average per-image mean and standard deviation of ``frames`` (pixel units)."""
    X = np.asarray(frames, dtype=np.float64).reshape(len(frames), -1)
    return float(X.mean(1).mean()), float(X.std(1).mean())


def match_intensity(crops: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Each crop's pixels mapped affinely to the given per-image mean and standard deviation (uint8)."""
    X = np.asarray(crops, dtype=np.float32)
    axes = tuple(range(1, X.ndim))
    m, s = X.mean(axis=axes, keepdims=True), X.std(axis=axes, keepdims=True)
    return np.clip(np.rint((X - m) / np.maximum(s, 1e-3) * std + mean), 0, 255).astype(np.uint8)


@dataclass
class Adaptation:
    """What :func:`adapt_to_target` did: the chosen box scale with every candidate's distance, the
    target intensity statistics the crops were mapped to and the audio coefficients' scale factors."""

    scale: float
    scale_distances: dict
    target_mean: float
    target_std: float
    n_recordings: int
    audio_scale: list | None = None  # per audio coefficient, the factor the extra features were scaled by

    def to_dict(self) -> dict:
        return {"scale": self.scale, "scale_distances": {str(k): v for k, v in self.scale_distances.items()},
                "target_mean": self.target_mean, "target_std": self.target_std, "n_recordings": self.n_recordings,
                "audio_scale": self.audio_scale}


def centred_std(features: list[np.ndarray]) -> np.ndarray:
    """Per-dimension standard deviation of frames after each utterance's mean is subtracted, ``(F,)``."""
    X = np.concatenate([np.asarray(f, np.float64) - np.asarray(f, np.float64).mean(0) for f in features])
    return X.std(0)


def adapt_to_target(recordings: list[ExtraRecording], target_frames: np.ndarray, roi_size=(60, 80),
                    audio_features_rate: float | None = None, scale: float = 0.0, progress: bool = True,
                    target_audio_features: list[np.ndarray] | None = None) -> tuple[list[Utterance], Adaptation]:
    """Extra recordings as utterances of the target's front end (see the module docstring).

    Parameters
    ----------
    recordings : from :func:`read_extra_recordings` (one corpus).
    target_frames : (N, H, W) or (N, H * W) the target's training mouth crops, pixel values 0..255.
    roi_size : (H, W) of the target's crops.
    audio_features_rate : the target's precomputed audio frames per second (AVLetters' HTK MFCC_E_D:
        50); the extra waveforms become HTK MFCC_E_D frames at that rate (:func:`data_prep.mfcc.htk_mfcc`).
        None when the target has waveforms (the extra waveform is kept).
    scale : box scale; 0 chooses it by :func:`choose_crop_scale` on the first
        :data:`SCALE_RECORDINGS` recordings.
    target_audio_features : the target's training utterances' audio feature frames, (T, F) each;
        with ``audio_features_rate``, the extra features are scaled per coefficient to their spread
        (:func:`centred_std`).

    Returns
    -------
    utterances : label ``"(unlabelled)"``, speaker ``"extra:<speaker>"``, id ``"extra/<id>"``;
        ``video`` (T, H, W) uint8 crops already of the target's ROI size.
    adaptation : :class:`Adaptation`.
    """
    if not recordings:
        raise DataError("no extra recordings to adapt", field="data.extra_av")
    target = np.asarray(target_frames)
    target = target.reshape(len(target), *roi_size) if target.ndim == 2 else target
    distances = {}
    if not scale:
        scale, distances = choose_crop_scale(target, recordings[:SCALE_RECORDINGS], roi_size)
    mean, std = intensity_statistics(target)
    if audio_features_rate is not None:
        from .mfcc import HTKMFCCOptions, htk_mfcc

        # the target's frame period; every other HCopy setting as measured on AVLetters' files
        mfcc_options = replace(HTKMFCCOptions(), target_rate_100ns=int(round(1e7 / audio_features_rate)))

    def one(r: ExtraRecording) -> Utterance | DataError:
        try:
            u = r.load()
            video = _checked_video(r, u)
        except DataError as exc:
            return exc
        crops = match_intensity(crop_boxes(video, _scaled(r.boxes, scale), tuple(roi_size)), mean, std)
        out = replace(u, video=crops, label=UNLABELLED, speaker=f"extra:{u.speaker}",
                      utterance_id=f"extra/{u.utterance_id}", repetition=None)
        if audio_features_rate is not None:
            try:
                feats = htk_mfcc(np.asarray(u.audio, dtype=np.float32), int(u.sample_rate), mfcc_options)
            except DataError as exc:  # name the recording: the analysis knows only samples
                message = str(exc).removeprefix(f"field '{exc.field}': ")
                return DataError(f"{message} (HTK MFCC of the sound track, for the corpus' MFCC front end)",
                                 path=u.path, field=exc.field)
            out = replace(out, audio=None, sample_rate=None, audio_features=feats,
                          audio_frame_rate=float(audio_features_rate))
        return out

    with ThreadPoolExecutor(max_workers=default_workers()) as pool:
        results = list(tqdm(pool.map(one, recordings), total=len(recordings), desc="extra AV: crops and audio",
                            disable=not progress, leave=False))
    bad = [r for r in results if isinstance(r, DataError)]
    if bad:
        warnings.warn(f"extra AV: skipped {len(bad)} of {len(results)} recordings:\n  "
                      + "\n  ".join(str(e) for e in bad[:50]), stacklevel=2)
    utts = [r for r in results if not isinstance(r, DataError)]
    if not utts:
        raise DataError(f"none of the {len(results)} extra recordings is usable (listed in the warning)",
                        field="data.extra_av")
    audio_scale = None
    if audio_features_rate is not None and target_audio_features:
        audio_scale = centred_std(target_audio_features) / np.maximum(centred_std([u.audio_features for u in utts]),
                                                                      1e-9)
        utts = [replace(u, audio_features=(u.audio_features * audio_scale).astype(np.float32)) for u in utts]
    info = Adaptation(float(scale), distances, mean, std, len(utts),
                      None if audio_scale is None else audio_scale.tolist())
    log.info("extra AV: %d recordings, box scale %.2f (distances %s), intensities mapped to mean %.1f / std %.1f",
             len(utts), scale, {k: round(v, 3) for k, v in distances.items()}, mean, std)
    return utts, info


def closeness(target_frames: np.ndarray, extra_frames: np.ndarray, whitener) -> dict:
    """How close extra mouth crops are to the target's, in the target's own whitened space.

    ``target_frames``, ``extra_frames``: (N, H * W) pixels in [0, 1] as the whitener sees them;
    ``whitener``: the target's fitted :class:`~data_prep.whitening.PCAWhitener`.

    Returns the RMS distance of the two standardised mean images, and per whitened component the
    variance of each corpus (the target's is ~1 by construction) and the fraction of each corpus'
    pixel variance the target's components keep.
    """
    T = np.asarray(target_frames, dtype=np.float64)
    E = np.asarray(extra_frames, dtype=np.float64)
    wt, we = np.asarray(whitener.transform(T)), np.asarray(whitener.transform(E))
    back_t, back_e = np.asarray(whitener.inverse_transform(wt)), np.asarray(whitener.inverse_transform(we))

    def kept(X, back):
        centred = X - X.mean(0)
        return float(1.0 - ((X - back) ** 2).sum() / max((centred ** 2).sum(), 1e-12))

    return {"mean_image_rms": float(np.sqrt(((standardised_mean(T) - standardised_mean(E)) ** 2).mean())),
            "target_component_var": wt.var(0).tolist(), "extra_component_var": we.var(0).tolist(),
            "extra_component_mean": we.mean(0).tolist(),
            "target_variance_kept": kept(T, back_t), "extra_variance_kept": kept(E, back_e)}
