"""Real talking faces: the four GRID clips of ../shared/data/grid-samples (MPEG-1 360x288, 25 fps, 3 s,
MP2 44.1 kHz stereo sound track inside the .mpg, no WAV), read, tracked and windowed."""
import numpy as np
import pytest

from data_prep.dataset import PrepConfig, Preprocessor
from data_prep.mouth_roi import crop_boxes, track_mouth_boxes
from data_prep.readers import read_folder

#: The centring test tracks every 3rd frame (25 per clip): the Haar detector costs ~30 ms a frame
#: on a 360x288 face, and 300 frames would take the test past a few seconds.
STEP = 3


@pytest.fixture(scope="module")
def grid(grid_root):
    utts = read_folder(grid_root, progress=False, strict=True)
    # what mouth_frames(mode="auto") does to these full faces, keeping the boxes and face flags
    tracked = [track_mouth_boxes(u.video[::STEP], (60, 80)) for u in utts]
    return utts, tracked


def darkest_band_in_middle_third(crops: np.ndarray) -> np.ndarray:
    """Per crop: is the darkest 5-row horizontal band (row means, smoothed) centred in rows 20..39 of 60?"""
    rows = crops.astype(np.float64).mean(axis=2)                       # (T, 60)
    k = np.ones(5) / 5
    smooth = np.stack([np.convolve(r, k, mode="valid") for r in rows])  # band j covers rows j..j+4
    centre = smooth.argmin(axis=1) + 2
    return (centre >= 20) & (centre < 40)


def test_grid_clips_read_with_their_embedded_sound_track(grid):
    utts, _ = grid
    assert [u.utterance_id for u in utts] == ["s1/bin/bbaf2n", "s1/bin/brbk7n", "s1/bin/lbax4n", "s1/bin/lwbsza"]
    for u in utts:
        audio_s, video_s = len(u.audio) / u.sample_rate, len(u.video) / u.fps
        assert u.sample_rate == 44100 and u.audio.dtype == np.float32 and u.audio.ndim == 1
        assert u.video.shape == (75, 288, 360) and u.fps == 25.0
        assert audio_s == pytest.approx(3.0, abs=0.05) and abs(audio_s - video_s) <= 0.040
        assert 0.05 < np.abs(u.audio).max() <= 1.0  # a real, non-silent, non-clipped-to-garbage track


def test_grid_mouth_crops_are_60x80_and_centred_on_the_mouth(grid):
    """Check used: in a crop centred on the mouth, the darkest horizontal band (the lip line / open
    mouth, darker than skin above and below) lies in the middle third of the crop's rows. It must hold
    in >= 80 % of the frames of every clip (measured: 100 % on the every-3rd-frame tracks used here,
    97-100 % when all 75 frames are tracked), while the same boxes moved up or down by a third of the
    crop height must put it there in <= 20 % (measured: 0 % here, 0-1.3 % on all frames), so the check
    tells a mouth-centred crop from a nose- or chin-centred one. (Moved by half a crop height it is
    not specific: the shadow under the lower lip / chin can then sit mid-crop.) The face detector must
    also have found the face in nearly every frame (measured: every frame of every clip)."""
    utts, tracked = grid
    for u, (boxes, faces) in zip(utts, tracked):
        frames = u.video[::STEP]
        crops = crop_boxes(frames, boxes)
        assert crops.shape == (25, 60, 80) and crops.dtype == np.uint8
        assert faces.mean() >= 0.9, u.path
        assert darkest_band_in_middle_third(crops).mean() >= 0.8, u.path
        for dy in (-1 / 3, 1 / 3):
            moved = boxes.copy()
            moved[:, 1] += dy * boxes[:, 3]
            assert darkest_band_in_middle_third(crop_boxes(frames, moved)).mean() <= 0.2, (u.path, dy)


@pytest.mark.slow
def test_grid_windows_are_cut(grid):
    # Whole clips through the Preprocessor's thread pool (2 workers: the Haar cascades must not be
    # shared between threads), tracked once thanks to the frame cache.
    utts, _ = grid
    pre = Preprocessor(PrepConfig(), device="cpu", n_workers=2, frame_cache={})
    ds = pre.fit_transform(utts, progress=False)
    # 2.978 s of sound (114 MP2 frames) covers 74 of the 75 video frames: 74 - 4 + 1 windows per clip
    assert ds.n_utterances == 4 and len(ds) == 4 * 71
    # the paper's front end: 10 audio frames of 100 whitened (spectrogram + deltas) dims per window
    assert ds.audio.shape == (284, 10 * 100) and ds.video.shape == (284, 4 * 64)
    assert np.isfinite(ds.audio).all() and np.isfinite(ds.video).all()
