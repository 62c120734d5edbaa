import numpy as np
import pytest

from bimodal.errors import DataError
from data_prep.windows import align_audio_to_video, av_windows, cut_windows, deltas, trim_to_common_length


def test_deltas_of_linear_ramp():
    X = np.arange(10, dtype=np.float32)[:, None] * np.array([[1.0, -2.0]], np.float32)
    D = deltas(X, order=2)
    assert D.shape == (10, 6)
    np.testing.assert_allclose(D[2:-2, 2:4], [[1.0, -2.0]] * 6, atol=1e-6)  # slope away from the edges
    np.testing.assert_allclose(D[4:-4, 4:6], 0, atol=1e-6)                  # no curvature
    assert deltas(X, order=0).shape == (10, 2)


def test_align_pools_the_right_audio_frames():
    # Audio frame j holds value j: at 25 fps and 100 frames/s video frame t owns frames 4t..4t+3.
    audio = np.arange(40, dtype=np.float32)[:, None]
    pooled = align_audio_to_video(audio, 10, 25.0, 100.0)
    np.testing.assert_allclose(pooled[:, 0], 4 * np.arange(10) + 1.5)
    # 30 fps: frames own 4,3,3,4,3,3... audio frames; the boundaries follow the frame centres.
    p30 = align_audio_to_video(audio, 9, 30.0, 100.0)
    np.testing.assert_allclose(p30[:3, 0], [1.5, 5.0, 8.0])
    with pytest.raises(DataError, match="do not cover"):
        align_audio_to_video(audio[:30], 10, 25.0, 100.0)


@pytest.mark.parametrize("pool,fps", [(True, 25.0), (False, 25.0), (False, 30.0), (True, 30.0)])
def test_window_counts_and_dims(pool, fps):
    T_v, Da, Dv, fpw, stride = 20, 6, 3, 4, 2
    n_audio = int(T_v / fps * 100) + 1  # a centred STFT gives 1 + n_samples // hop frames
    a = np.random.default_rng(0).normal(size=(T_v if pool else n_audio, Da)).astype(np.float32)
    v = np.random.default_rng(1).normal(size=(T_v, Dv)).astype(np.float32)
    aw, vw = av_windows(a, v, fps, 100.0, fpw, stride, pool)
    k = fpw if pool else round(fpw * 100 / fps)
    assert vw.shape == (len(range(0, T_v - fpw + 1, stride)), fpw * Dv)
    assert aw.shape == (vw.shape[0], k * Da)
    # Window i is frames [2i, 2i+4) concatenated frame-major.
    np.testing.assert_array_equal(vw[3], v[6:10].ravel())
    if not pool:
        a0 = int(np.ceil(6 * 100 / fps - 1e-9))
        np.testing.assert_array_equal(aw[3], a[a0:a0 + k].ravel())


def test_too_short_and_mismatch_errors():
    with pytest.raises(DataError, match="too short"):
        av_windows(np.zeros((3, 2)), np.zeros((3, 2)), 25.0, name="u.avi")
    ns, nv = trim_to_common_length(16000, 16000, 26, 25.0, 0.2)
    assert (ns, nv) == (16000, 25)
    with pytest.raises(DataError, match="clip.avi.*exceeds max_av_length_mismatch_s"):
        trim_to_common_length(16000, 16000, 40, 25.0, 0.2, name="clip.avi")


def test_cut_windows_frame_major():
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    W = cut_windows(X, 3, 1)
    assert W.shape == (4, 6)
    np.testing.assert_array_equal(W[1], [2, 3, 4, 5, 6, 7])
