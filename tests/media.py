"""Small video files with (or without) a sound track inside, written with PyAV for the reader tests."""
from fractions import Fraction

import numpy as np


def write_av(path, frames, fps=25, audio=None, rate=16000):
    """Mux grey frames (T, H, W) uint8 as MPEG-4 video and, if given, ``audio`` (C, N) float in [-1, 1]
    as 16-bit PCM (lossless, so tests can compare samples) into ``path`` (.avi/.mov/.mp4)."""
    import av

    frames = np.asarray(frames, dtype=np.uint8)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1000))
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.options = {"qscale": "2"}  # high quality: pixel checks stay meaningful
        if audio is not None:
            audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
            as_ = out.add_stream("pcm_s16le", rate=rate, layout="stereo" if len(audio) == 2 else "mono")
        for f in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(f, format="gray").reformat(format="yuv420p")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if audio is not None:
            pcm = np.clip(np.rint(audio * 32767), -32768, 32767).astype(np.int16)
            step = 1024
            for i in range(0, pcm.shape[1], step):
                chunk = np.ascontiguousarray(pcm[:, i:i + step].T.reshape(1, -1))  # packed s16
                af = av.AudioFrame.from_ndarray(chunk, format="s16", layout=as_.layout.name)
                af.sample_rate, af.pts = rate, i
                for pkt in as_.encode(af):
                    out.mux(pkt)
            for pkt in as_.encode():
                out.mux(pkt)
    return path
