import numpy as np
import pytest

from bimodal.errors import DataError
from data_prep.video import read_video, write_video


def moving_square(T=12, H=60, W=80):
    f = np.full((T, H, W), 40, np.uint8)
    for t in range(T):
        f[t, 20:40, 5 + 4 * t:25 + 4 * t] = 220
    return f


def test_write_read_round_trip(tmp_path):
    frames = moving_square()
    p = write_video(tmp_path / "v.avi", frames, 25)
    back, fps = read_video(p)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert fps == pytest.approx(25)
    # MJPEG is lossy but close; the square must be where it was written in every frame.
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 4
    cols = (back[:, 30, :] > 128).argmax(axis=1)
    np.testing.assert_array_less(np.abs(cols - (5 + 4 * np.arange(12))), 3)


@pytest.mark.parametrize("case", ["missing", "empty", "garbage", "truncated"])
def test_bad_video_names_file(tmp_path, case):
    p = tmp_path / f"{case}.avi"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "garbage":
        p.write_bytes(b"\x00garbage" * 100)
    elif case == "truncated":
        write_video(p, np.random.default_rng(0).integers(0, 255, (20, 60, 80), dtype=np.uint8), 25)
        b = p.read_bytes()
        p.write_bytes(b[: len(b) // 2])
    with pytest.raises(DataError) as e:
        read_video(p)
    assert str(p) in str(e.value)
