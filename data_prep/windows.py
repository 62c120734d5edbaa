"""Temporal derivatives, audio/video alignment and cutting utterances into fixed windows.

Timing conventions
------------------
* Video frame ``t`` covers ``[t / fps, (t + 1) / fps)`` seconds.
* Audio frame ``j`` (centred STFT, ``log_spectrogram``) is centred at ``j / audio_rate``.
* An audio frame belongs to the video frame whose span contains its centre.
"""
from __future__ import annotations

import math

import numpy as np

from bimodal.errors import DataError, ShapeError


def deltas(X: np.ndarray, order: int = 1, width: int = 2) -> np.ndarray:
    """Append temporal derivatives (HTK regression formula) to per-frame features.

    ``d_t = sum_{n=1..width} n (x_{t+n} - x_{t-n}) / (2 sum n^2)`` with edge frames replicated;
    the second order is the same formula applied to the first.

    Parameters
    ----------
    X : (T, D) frames of one utterance in time order.
    order : 0 (features only), 1 (+ deltas) or 2 (+ deltas + delta-deltas).
    width : regression half-width in frames.

    Returns
    -------
    (T, D * (1 + order)) float32, blocks ``[X, dX, ddX]`` along the feature axis.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ShapeError(f"expected (T, D) frames, got shape {X.shape}", field="X")
    if order not in (0, 1, 2):
        raise DataError(f"deltas order must be 0, 1 or 2, got {order}", field="deltas")
    out = [X]
    cur = X
    denom = 2.0 * sum(n * n for n in range(1, width + 1))
    for _ in range(order):
        P = np.pad(cur, ((width, width), (0, 0)), mode="edge")
        T = cur.shape[0]
        d = np.zeros_like(cur)
        for n in range(1, width + 1):
            d += n * (P[width + n:width + n + T] - P[width - n:width - n + T])
        cur = d / denom
        out.append(cur)
    return np.concatenate(out, axis=1).astype(np.float32, copy=False)


def video_frame_bounds(n_video: int, fps: float, audio_rate: float) -> np.ndarray:
    """Audio-frame index boundaries ``b`` (n_video + 1,): video frame t owns audio frames b[t]:b[t+1]."""
    t = np.arange(n_video + 1, dtype=np.float64)
    # A tiny tolerance keeps exact multiples (t/fps == j/rate) from flipping with rounding error.
    return np.ceil(t * audio_rate / fps - 1e-9).astype(np.int64)


def align_audio_to_video(audio: np.ndarray, n_video: int, fps: float, audio_rate: float = 100.0) -> np.ndarray:
    """Mean-pool audio frames within each video frame's time span.

    Parameters
    ----------
    audio : (T_a, D) audio frames at ``audio_rate`` frames/s.
    n_video : number of video frames to produce.
    fps : video frame rate.
    audio_rate : audio frame rate (1 / hop).

    Returns
    -------
    (n_video, D) float32.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise ShapeError(f"expected (T_a, D) audio frames, got shape {audio.shape}", field="audio")
    if fps > audio_rate:
        raise DataError(f"video rate {fps} fps exceeds the audio frame rate {audio_rate}/s; "
                        "some video frames would own no audio frame", field="fps")
    b = video_frame_bounds(n_video, fps, audio_rate)
    counts = np.diff(b)
    if b[-1] > audio.shape[0] or (counts <= 0).any():
        raise DataError(f"{audio.shape[0]} audio frames do not cover {n_video} video frames at {fps} fps "
                        f"(need {b[-1]})", field="audio")
    cs = np.concatenate([np.zeros((1, audio.shape[1]), np.float64), np.cumsum(audio, axis=0, dtype=np.float64)])
    return ((cs[b[1:]] - cs[b[:-1]]) / counts[:, None]).astype(np.float32)


def trim_to_common_length(n_audio_samples: int, sample_rate: int, n_video: int, fps: float,
                          max_mismatch_s: float = 0.2, name=None) -> tuple[int, int]:
    """Check audio and video durations agree and return the trimmed lengths.

    Returns
    -------
    (n_audio_samples, n_video_frames) covering the same, shorter duration.

    Raises
    ------
    DataError naming ``name`` when the durations differ by more than ``max_mismatch_s``.
    """
    da, dv = n_audio_samples / sample_rate, n_video / fps
    if abs(da - dv) > max_mismatch_s:
        raise DataError(f"audio lasts {da:.3f} s but video lasts {dv:.3f} s ({n_video} frames at {fps:g} fps); "
                        f"difference exceeds max_av_length_mismatch_s={max_mismatch_s}", path=name,
                        field="duration")
    nv = min(n_video, int(math.floor(da * fps + 1e-9)))
    ns = min(n_audio_samples, int(round(nv / fps * sample_rate)))
    return ns, nv


def window_starts(n_frames: int, frames_per_window: int, stride: int) -> np.ndarray:
    """Start indices of all windows that fit in ``n_frames`` frames."""
    if frames_per_window < 1 or stride < 1:
        raise DataError(f"frames_per_window and window_stride must be >= 1, got {frames_per_window}, {stride}",
                        field="frames_per_window")
    if n_frames < frames_per_window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_frames - frames_per_window + 1, stride, dtype=np.int64)


def cut_windows(frames: np.ndarray, frames_per_window: int = 4, stride: int = 1,
                starts: np.ndarray | None = None) -> np.ndarray:
    """Concatenate ``frames_per_window`` consecutive frames into one vector per window.

    Parameters
    ----------
    frames : (T, D) per-frame features in time order.
    frames_per_window : frames per window.
    stride : frames between window starts (ignored when ``starts`` is given).
    starts : explicit start indices.

    Returns
    -------
    (n_windows, frames_per_window * D) float32, frame-major: ``[frame0 features, frame1 ...]``.
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 2:
        raise ShapeError(f"expected (T, D) frames, got shape {frames.shape}", field="frames")
    if starts is None:
        starts = window_starts(frames.shape[0], frames_per_window, stride)
    if len(starts) == 0:
        return np.zeros((0, frames_per_window * frames.shape[1]), np.float32)
    idx = np.asarray(starts)[:, None] + np.arange(frames_per_window)[None, :]
    if idx.max() >= frames.shape[0]:
        raise DataError(f"window reaches frame {idx.max()} of only {frames.shape[0]}", field="frames")
    return frames[idx].reshape(len(starts), -1)


def audio_window_offsets(span: int, n_out: int = 0) -> np.ndarray:
    """Which of a window's ``span`` audio frames it keeps: ``n_out`` frames whose positions are
    evenly spread from the first to the last frame of the span, each the nearest frame
    (``n_out = 0``: all ``span`` frames).

    Nearest frames, not interpolated or averaged ones, so every kept frame is a real (whitened,
    unit-variance) audio frame and no formant transition is blurred. At 100 audio frames/s and
    25 fps a 4-frame window spans 16 audio frames; 10 kept frames are about 16 ms apart. When the
    span is shorter than ``n_out`` (e.g. 50 frames/s MFCCs: 8 frames) some frames repeat.
    """
    if span < 1:
        raise DataError(f"a window must span at least one audio frame, got {span}", field="audio_window_frames")
    n_out = int(n_out) or span
    return np.rint(np.linspace(0, span - 1, n_out)).astype(np.int64)


def window_plan(n_audio: int, n_video: int | None, fps: float, audio_rate: float = 100.0,
                frames_per_window: int = 4, stride: int = 1, pool: bool = True, audio_window_frames: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Where each window of one utterance starts.

    Returns
    -------
    video_starts : (n,) first video frame of each window.
    audio_index : (n, k) audio frames of each window (with pooling the video-rate audio frames;
        without, the ``audio_window_offsets`` of the window's span starting at its first video frame).
    """
    if pool:
        n_frames = n_audio if n_video is None else min(n_audio, n_video)
        starts = window_starts(n_frames, frames_per_window, stride)
        return starts, starts[:, None] + np.arange(frames_per_window)[None, :]
    span = int(round(frames_per_window * audio_rate / fps))
    offsets = audio_window_offsets(span, audio_window_frames)
    if n_video is None:  # audio-only: the nominal video grid the audio covers
        n_video = int(math.floor((n_audio - 1) * fps / audio_rate)) + 1 if n_audio > 0 else 0
    starts = window_starts(n_video, frames_per_window, stride)
    a0 = np.ceil(starts * audio_rate / fps - 1e-9).astype(np.int64)
    keep = a0 + span <= n_audio
    starts, a0 = starts[keep], a0[keep]
    return starts, a0[:, None] + offsets[None, :]


def av_windows(audio: np.ndarray, video: np.ndarray | None, fps: float, audio_rate: float = 100.0,
               frames_per_window: int = 4, stride: int = 1, pool: bool = True, name=None,
               audio_window_frames: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Cut aligned (audio window, video window) pairs from one utterance.

    Parameters
    ----------
    audio : (T_a, Da) audio frame features. With ``pool=True`` these are already one per video
        frame (``align_audio_to_video``); with ``pool=False`` they are at ``audio_rate``.
    video : (T_v, Dv) video frame features, or None for audio-only utterances (``fps`` then gives
        the nominal frame grid the audio is cut on).
    fps : video frame rate.
    frames_per_window, stride : window length and step in video frames.
    pool : see above; without pooling a window covers the ``round(frames_per_window * audio_rate / fps)``
        audio frames starting at its first video frame, of which it keeps ``audio_window_frames``
        (see :func:`audio_window_offsets`; 0 = all).
    name : used in error messages.

    Returns
    -------
    audio_windows : (n, k * Da) float32; video_windows : (n, frames_per_window * Dv) float32 or None.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise ShapeError(f"expected (T_a, D) audio frames, got shape {audio.shape}", field="audio")
    starts, aidx = window_plan(audio.shape[0], None if video is None else video.shape[0], fps, audio_rate,
                               frames_per_window, stride, pool, audio_window_frames)
    if len(starts) == 0:
        nv = "-" if video is None else video.shape[0]
        raise DataError(f"utterance too short: {nv} video frames / {audio.shape[0]} audio frames, "
                        f"a window needs {frames_per_window} video frames", path=name, field="frames")
    aw = audio[aidx].reshape(len(starts), -1)
    vw = None if video is None else cut_windows(video, frames_per_window, starts=starts)
    return aw, vw
