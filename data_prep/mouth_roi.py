"""Mouth region of interest: find it in a full-face frame, track it smoothly, crop to 60x80.

Detection order for one frame
-----------------------------
1. Face box: OpenCV's Haar frontal-face cascade when this OpenCV build has ``CascadeClassifier``
   and the XML files (``cv2.data.haarcascades``, or a folder in ``$BIMODAL_HAAR_DIR``).
   OpenCV 5 wheels ship neither, so without them (or when no face is found) the whole frame is
   taken as the face box and a warning is issued once per video.
2. Mouth inside the lower third of the face box: a mouth cascade (``haarcascade_mcs_mouth.xml``
   or ``haarcascade_smile.xml``) when available, otherwise the largest dark blob (lips / open
   mouth are darker than skin) found with an inverted Otsu threshold. If neither finds anything
   the centre of the lower third is used.
3. Box size is a fixed fraction of the face width with the 60:80 aspect ratio.

Tracking smooths the per-frame box centres (running median then zero-phase exponential
smoothing) and uses one box size per video, so crops do not jitter or zoom.
"""
from __future__ import annotations

import logging
import os
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from bimodal.errors import DataError

log = logging.getLogger(__name__)

#: Mouth box width as a fraction of face width (mouth corners plus a margin).
MOUTH_WIDTH_FRACTION = 0.5


@dataclass
class MouthBox:
    """A mouth box in pixel coordinates of the frame (centre and size) and how it was found."""

    cx: float
    cy: float
    w: float
    h: float
    face_found: bool
    method: str  # "cascade", "dark_blob" or "region_centre"


def _haar_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("BIMODAL_HAAR_DIR")
    if env:
        dirs.append(Path(env))
    try:
        import cv2

        dirs.append(Path(cv2.data.haarcascades))
    except (ImportError, AttributeError):
        pass
    return dirs


@lru_cache(maxsize=None)
def _cascade_file(names: tuple[str, ...]) -> str | None:
    """Path of the first loadable cascade among ``names`` in the Haar folders, or None."""
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        return None
    for d in _haar_dirs():
        for n in names:
            p = d / n
            if p.is_file() and not cv2.CascadeClassifier(str(p)).empty():
                return str(p)
    return None


_THREAD_CASCADES = threading.local()


def load_cascade(names: tuple[str, ...]):
    """The first cascade among ``names`` found in the Haar folders, or None when unavailable.

    One classifier per thread: ``CascadeClassifier.detectMultiScale`` keeps per-call scratch data in
    the object and fails (``scaleIdx`` assertion) when two threads use one classifier at once, as the
    Preprocessor's and readers' thread pools would.
    """
    path = _cascade_file(names)
    if path is None:
        return None
    cache = getattr(_THREAD_CASCADES, "by_path", None)
    if cache is None:
        cache = _THREAD_CASCADES.by_path = {}
    if path not in cache:
        import cv2

        cache[path] = cv2.CascadeClassifier(path)
    return cache[path]


def haar_face_detector(frame: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Faces ``(x, y, w, h)`` found by the frontal-face Haar cascade; [] when it is unavailable."""
    casc = load_cascade(("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"))
    if casc is None:
        return []
    H, W = frame.shape
    faces = casc.detectMultiScale(frame, scaleFactor=1.1, minNeighbors=4, minSize=(max(8, W // 6), max(8, H // 6)))
    return [tuple(int(v) for v in f) for f in faces]


def _dark_blob_centre(region: np.ndarray) -> tuple[float, float] | None:
    """Centroid of the largest dark connected blob not touching the region's side/bottom edges."""
    import cv2

    blur = cv2.GaussianBlur(region, (5, 5), 0)
    if int(blur.max()) - int(blur.min()) < 10:  # flat region: nothing to find
        return None
    _, mask = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    n, lab, stats, cents = cv2.connectedComponentsWithStats(mask, connectivity=8)
    h, w = region.shape
    best, best_area = None, 0
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        # Blobs touching the left, right or bottom edge are background or neck, not the mouth.
        if x == 0 or y + bh >= h or x + bw >= w:
            continue
        if area > best_area:
            best, best_area = i, area
    if best is None:
        return None
    return float(cents[best][0]), float(cents[best][1])


def find_mouth_roi(frame: np.ndarray, face_detector: Callable | None = haar_face_detector,
                   aspect: float = 60 / 80) -> MouthBox:
    """Locate the mouth in one grayscale frame.

    Parameters
    ----------
    frame : (H, W) uint8 grayscale image.
    face_detector : callable frame → list of ``(x, y, w, h)`` face boxes (largest is used);
        None or an empty result means "no face": the whole frame is the face box.
    aspect : box height / width (0.75 for the 60x80 crops).

    Returns
    -------
    MouthBox with centre, size, whether a face was found and which method placed the mouth.
    """
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise DataError(f"expected a 2-d grayscale frame, got shape {frame.shape}", field="frame")
    H, W = frame.shape
    faces = face_detector(frame) if face_detector is not None else []
    if faces:
        fx, fy, fw, fh = max(faces, key=lambda b: b[2] * b[3])
        face_found = True
    else:
        fx, fy, fw, fh = 0, 0, W, H
        face_found = False
    # Lower third of the face, central 70% of its width: where the mouth is on a frontal face.
    rx0, rx1 = fx + int(0.15 * fw), fx + int(0.85 * fw)
    ry0, ry1 = fy + int(2 * fh / 3), fy + fh
    rx0, ry0 = max(rx0, 0), max(ry0, 0)
    rx1, ry1 = min(rx1, W), min(ry1, H)
    region = np.ascontiguousarray(frame[ry0:ry1, rx0:rx1])
    bw = MOUTH_WIDTH_FRACTION * fw
    bh = aspect * bw
    cx, cy, method = (rx0 + rx1) / 2, (ry0 + ry1) / 2, "region_centre"
    if region.size:
        casc = load_cascade(("haarcascade_mcs_mouth.xml", "haarcascade_smile.xml"))
        hits = []
        if casc is not None and face_found:
            hits = casc.detectMultiScale(region, scaleFactor=1.1, minNeighbors=5)
        if len(hits):
            x, y, w, h = max(hits, key=lambda b: b[2] * b[3])
            cx, cy, method = rx0 + x + w / 2, ry0 + y + h / 2, "cascade"
        else:
            c = _dark_blob_centre(region)
            if c is not None:
                cx, cy, method = rx0 + c[0], ry0 + c[1], "dark_blob"
    return MouthBox(cx=cx, cy=cy, w=bw, h=bh, face_found=face_found, method=method)


def _smooth(x: np.ndarray, median: int, alpha: float) -> np.ndarray:
    """Running median (removes single-frame detection jumps) then forward-backward EMA (no lag)."""
    from scipy.ndimage import median_filter

    if median > 1 and len(x) > 1:
        x = median_filter(x, size=min(median, len(x)), mode="nearest")
    y = np.array(x, dtype=np.float64)
    for t in range(1, len(y)):  # per-frame scalar recursion; T is a few hundred at most
        y[t] = alpha * y[t] + (1 - alpha) * y[t - 1]
    for t in range(len(y) - 2, -1, -1):
        y[t] = alpha * y[t] + (1 - alpha) * y[t + 1]
    return y


def crop_resize(frame: np.ndarray, cx: float, cy: float, w: float, h: float,
                size: tuple[int, int] = (60, 80)) -> np.ndarray:
    """Crop the box centred at (cx, cy) (edges replicated outside the frame), resize to ``size`` (H, W)."""
    import cv2

    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    x1, y1 = x0 + max(1, int(round(w))), y0 + max(1, int(round(h)))
    H, W = frame.shape
    pad = max(0, -x0, -y0, x1 - W, y1 - H)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, x1, y0, y1 = x0 + pad, x1 + pad, y0 + pad, y1 + pad
    crop = frame[y0:y1, x0:x1]
    return cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def track_mouth_boxes(frames: np.ndarray, size: tuple[int, int] = (60, 80),
                      face_detector: Callable | None = haar_face_detector, median: int = 5, alpha: float = 0.5,
                      name: str | None = None, every: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Find and smooth the mouth box in every frame of a full-face video (no cropping, no warning).

    Parameters are those of :func:`track_mouth`, and ``every``: detect in every ``every``-th frame
    (and the last) only, the centres of the frames between linearly interpolated before the
    smoothing; detection dominates the cost (~11 ms a 360x288 frame), and a seated talker's head
    moves little in a few frames. ``face_found`` of an undetected frame is that of the nearest
    detected one.

    Returns
    -------
    boxes : (T, 4) float64 ``[cx, cy, w, h]`` per frame: smoothed centres, one size per video.
    face_found : (T,) bool, whether the face detector found a face in each frame (where it did
        not, the whole frame was taken as the face box).
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise DataError(f"expected (T, H, W) frames, got shape {frames.shape}", path=name, field="frames")
    if int(every) < 1:
        raise DataError(f"track every {every} frames: expected a positive integer", path=name, field="every")
    T = len(frames)
    at = np.unique(np.r_[np.arange(0, T, int(every)), T - 1])
    found = [find_mouth_roi(frames[t], face_detector, aspect=size[0] / size[1]) for t in at]
    t_all = np.arange(T)
    cx = _smooth(np.interp(t_all, at, [b.cx for b in found]), median, alpha)
    cy = _smooth(np.interp(t_all, at, [b.cy for b in found]), median, alpha)
    w = float(np.median([b.w for b in found]))
    h = w * size[0] / size[1]
    boxes = np.stack([cx, cy, np.full_like(cx, w), np.full_like(cx, h)], axis=1)
    nearest = np.abs(t_all[:, None] - at[None, :]).argmin(axis=1)
    return boxes, np.array([b.face_found for b in found], dtype=bool)[nearest]


def crop_boxes(frames: np.ndarray, boxes: np.ndarray, size: tuple[int, int] = (60, 80)) -> np.ndarray:
    """Crop box ``t`` (``[cx, cy, w, h]``) of frame ``t`` and resize to ``size``: (T, H, W) → (T, *size) uint8."""
    out = np.empty((len(frames), size[0], size[1]), dtype=np.uint8)
    for t, (f, (cx, cy, w, h)) in enumerate(zip(frames, boxes)):
        out[t] = crop_resize(f, cx, cy, w, h, size)
    return out


def _warn_no_face(face_found: np.ndarray, name: str | None) -> None:
    n_noface = int((~face_found).sum())
    if n_noface:
        warnings.warn(f"{name or 'video'}: no face found in {n_noface} of {len(face_found)} frames; "
                      "used the whole frame as the face box (mouth searched in its lower third)",
                      stacklevel=3)


def track_mouth(frames: np.ndarray, size: tuple[int, int] = (60, 80), face_detector: Callable | None = haar_face_detector,
                median: int = 5, alpha: float = 0.5, name: str | None = None) -> np.ndarray:
    """Find, smooth and crop the mouth in every frame of a full-face video.

    Parameters
    ----------
    frames : (T, H, W) uint8 grayscale.
    size : output (height, width).
    face_detector : see :func:`find_mouth_roi`.
    median : running-median length (frames) for the box centre.
    alpha : exponential-smoothing weight of the current frame (1 = no smoothing).
    name : file name used in the warning when no face is found.

    Returns
    -------
    (T, size[0], size[1]) uint8 mouth crops.
    """
    boxes, face_found = track_mouth_boxes(frames, size, face_detector, median, alpha, name)
    _warn_no_face(face_found, name)
    return crop_boxes(np.asarray(frames), boxes, size)


def resize_frames(frames: np.ndarray, size: tuple[int, int] = (60, 80)) -> np.ndarray:
    """Resize every frame to ``size`` (H, W) without any cropping."""
    import cv2

    frames = np.asarray(frames)
    if frames.shape[1:] == tuple(size):
        return frames.astype(np.uint8, copy=False)
    return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames])


def is_mouth_sized(frame_shape, size: tuple[int, int] = (60, 80), auto_factor: float = 1.5) -> bool:
    """Whether frames of ``frame_shape`` (H, W) are already about a mouth crop of ``size``: each side
    within ``auto_factor`` of it (what ``mouth_roi="auto"`` resizes instead of tracking)."""
    H, W = frame_shape
    return H <= auto_factor * size[0] and W <= auto_factor * size[1]


def mouth_frames(frames: np.ndarray, mode: str = "auto", size: tuple[int, int] = (60, 80),
                 name: str | None = None, auto_factor: float = 1.5, track_every: int = 1) -> np.ndarray:
    """Apply ``PrepConfig.mouth_roi``: "always" track, "never" only resize, "auto" track unless the
    frames are already about the ROI size (each side within ``auto_factor`` of ``size``);
    ``track_every``: see :func:`track_mouth_boxes` (``every``)."""
    crops, face_found = mouth_frames_with_faces(frames, mode, size, name, auto_factor, track_every)
    if face_found is not None:
        _warn_no_face(face_found, name)
    return crops


def mouth_frames_with_faces(frames: np.ndarray, mode: str = "auto", size: tuple[int, int] = (60, 80),
                            name: str | None = None, auto_factor: float = 1.5, track_every: int = 1
                            ) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`mouth_frames` without its warning, also saying in which frames a face was found.

    Returns
    -------
    crops : (T, size[0], size[1]) uint8, exactly what :func:`mouth_frames` returns.
    face_found : (T,) bool per frame when the mouth was tracked; None when the frames were only
        resized (``mode="never"``, or "auto" with frames already about the ROI size).
    """
    if mode not in ("auto", "always", "never"):
        raise DataError(f"mouth_roi must be 'auto', 'always' or 'never', got {mode!r}", field="mouth_roi")
    if mode == "never" or (mode == "auto" and is_mouth_sized(np.asarray(frames).shape[1:], size, auto_factor)):
        return resize_frames(frames, size), None
    boxes, face_found = track_mouth_boxes(frames, size, name=name, every=track_every)
    return crop_boxes(np.asarray(frames), boxes, size), face_found
