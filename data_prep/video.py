"""Video reading and writing with OpenCV (grayscale frames).

``write_video`` uses Motion-JPEG in an ``.avi`` container: headless OpenCV wheels both write
and read it without extra codecs, and its per-frame compression keeps frame counts exact.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bimodal.errors import DataError, require_file
from bimodal.io import final_mode

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mpg", ".mpeg", ".mov", ".mkv")
MIN_FPS = 1.0
MAX_FPS = 1000.0


def read_video(path, default_fps: float | None = None) -> tuple[np.ndarray, float]:
    """Decode every frame of a video as 8-bit grayscale.

    Parameters
    ----------
    path : video file.
    default_fps : used only when the container reports no usable frame rate; if None such a
        file is an error.

    Returns
    -------
    frames : (T, H, W) uint8.
    fps : frames per second reported by the container.

    Raises
    ------
    DataError naming the file when it is missing, empty, cannot be opened, yields no frames,
    has fewer frames than its header promises (truncated) or an implausible frame rate.
    """
    import cv2

    path = require_file(path, "video file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError("cannot open video (unknown container/codec or corrupt file)", path=path)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        promised = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if frame.ndim == 3:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise DataError("video decodes to zero frames", path=path)
    if not (MIN_FPS <= fps <= MAX_FPS):
        if default_fps is None:
            raise DataError(f"implausible frame rate {fps!r} (expected {MIN_FPS}..{MAX_FPS})",
                            path=path, field="fps")
        log.warning("%s: frame rate %r unusable, assuming %s", path, fps, default_fps)
        fps = float(default_fps)
    # Containers with an index (AVI, MP4) report the frame count; decoding fewer means truncation.
    # A tolerance of one frame absorbs codecs that count a trailing empty frame.
    if promised > 0 and len(frames) < promised - 1:
        raise DataError(f"truncated video: header promises {promised} frames, decoded {len(frames)}",
                        path=path)
    return np.stack(frames).astype(np.uint8, copy=False), fps


def write_video(path, frames: np.ndarray, fps: float, fourcc: str = "MJPG") -> Path:
    """Write grayscale frames to a video file (atomically: temp file then rename).

    Parameters
    ----------
    path : destination; use ``.avi`` with the default Motion-JPEG codec.
    frames : (T, H, W) uint8 (float input in [0, 255] is rounded and clipped).
    fps : frame rate written in the header.
    fourcc : four-character codec code.

    Returns
    -------
    The path written.
    """
    import os
    import tempfile

    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise DataError(f"expected (T, H, W) frames with T >= 1, got shape {frames.shape}", path=path,
                        field="frames")
    if frames.dtype != np.uint8:
        frames = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    T, H, W = frames.shape
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), float(fps), (W, H), isColor=False)
        if not writer.isOpened():
            raise DataError(f"OpenCV cannot write codec {fourcc!r} to this container", path=path)
        for f in frames:
            writer.write(np.ascontiguousarray(f))
        writer.release()
        os.chmod(tmp, final_mode(path))  # mkstemp makes 0600; the file gets the mode open() would give it
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
