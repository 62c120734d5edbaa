"""Sound track inside a video container (GRID, LRW/LRS, CUAVE, phone recordings), read with PyAV.

PyAV's wheels bundle their own FFmpeg libraries (``av.libs``), so MPEG-1/MP2, MP4/AAC, AVI/PCM
and the rest decode without anything installed by the system. Video frames are still read by
OpenCV (:func:`data_prep.video.read_video`); this module only decodes the audio.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bimodal.errors import DataError, require_file

from .audio import check_rate, mono
from .windows import trim_to_common_length

log = logging.getLogger(__name__)

#: Default tolerance between a container's audio and video durations (seconds); the same as
#: ``PrepConfig.max_av_length_mismatch_s``, so a clip the reader keeps is not dropped later.
MAX_AV_MISMATCH_S = 0.2


def load_container_audio(path, stream_index: int = 0) -> tuple[np.ndarray, int]:
    """Decode an audio stream of a video (or any FFmpeg-readable) file as float32 mono.

    Parameters
    ----------
    path : the container (``.mpg``, ``.mp4``, ``.avi``, ``.mov`` ...).
    stream_index : which audio stream (0 = the first).

    Returns
    -------
    wave : (n_samples,) float32; several channels are averaged to mono (like :func:`audio.load_wav`).
    rate : the stream's sample rate in Hz (``Preprocessor`` resamples it).

    Raises
    ------
    DataError naming the file when it is missing, empty, cannot be opened, has no audio
    stream, decodes to no samples, holds non-finite samples or has an implausible rate.
    """
    import av

    path = require_file(path, "video file")
    try:
        container = av.open(str(path))
    except Exception as exc:  # av.error.FFmpegError subclasses, OSError
        raise DataError(f"cannot open container ({type(exc).__name__}: {exc})", path=path) from exc
    chunks = []
    with container:
        streams = container.streams.audio
        if len(streams) <= stream_index:
            raise DataError(f"no audio stream in the container (it has {len(streams)}) and no .wav beside it",
                            path=path, field="audio")
        stream = streams[stream_index]
        rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        check_rate(rate, path)
        # Planar float keeps every channel separate whatever the codec's native sample format
        # (s16 packed, fltp, s32 ...); rate and layout are left as they are.
        resampler = av.AudioResampler(format="fltp")
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):  # flush
                chunks.append(out.to_ndarray())
        except av.error.FFmpegError as exc:
            raise DataError(f"cannot decode the audio stream ({type(exc).__name__}: {exc})", path=path,
                            field="audio") from exc
    if not chunks:
        raise DataError("audio stream decodes to no samples", path=path, field="audio")
    data = np.concatenate(chunks, axis=1)  # (channels, samples)
    if data.shape[1] == 0:
        raise DataError("audio stream decodes to no samples", path=path, field="audio")
    return mono(data.T, path, field="audio"), rate


def check_av_durations(wave: np.ndarray, rate: int, frames: np.ndarray, fps: float, path,
                       max_mismatch_s: float = MAX_AV_MISMATCH_S) -> None:
    """Raise a DataError naming ``path`` when audio and video durations differ by more than ``max_mismatch_s``."""
    trim_to_common_length(len(wave), rate, len(frames), fps, max_mismatch_s, path)


def read_audio_for_video(video_path, frames: np.ndarray, fps: float, audio_path=None,
                         max_mismatch_s: float = MAX_AV_MISMATCH_S) -> tuple[np.ndarray, int]:
    """The audio of one video: ``audio_path`` (a WAV beside it) when given, else the container's sound track.

    The container's audio must last as long as the video (within ``max_mismatch_s``): a short or
    long sound track means a broken or mis-muxed file. A separate WAV is checked later, by the
    ``Preprocessor``, as before.
    """
    from .audio import load_wav

    if audio_path is not None and Path(audio_path) != Path(video_path):
        return load_wav(audio_path)
    wave, rate = load_container_audio(video_path)
    check_av_durations(wave, rate, frames, fps, video_path, max_mismatch_s)
    return wave, rate
