import warnings

import cv2
import numpy as np
import pytest

from data_prep.mouth_roi import find_mouth_roi, mouth_frames, track_mouth


def face(mouth_xy=(80, 118), H=160, W=160, open_h=8):
    """A drawn face: skin ellipse on a mid-grey background, dark eyes, dark mouth ellipse."""
    img = np.full((H, W), 110, np.uint8)
    cv2.ellipse(img, (W // 2, H // 2), (int(W * 0.38), int(H * 0.46)), 0, 0, 360, 200, -1)
    for ex in (W // 2 - 25, W // 2 + 25):
        cv2.ellipse(img, (ex, int(H * 0.38)), (9, 5), 0, 0, 360, 30, -1)
    cv2.ellipse(img, mouth_xy, (18, open_h), 0, 0, 360, 25, -1)
    return img


@pytest.mark.parametrize("mouth", [(80, 118), (68, 124), (93, 114)])
def test_finds_drawn_mouth_without_cascade(mouth):
    # No cascade here (OpenCV 5 wheels ship none): the whole frame is the face box and the
    # dark-blob search in its lower third must land on the drawn mouth, wherever it is.
    with pytest.warns(UserWarning, match="no face found"):
        crops = track_mouth(face(mouth)[None].repeat(3, 0), size=(60, 80), face_detector=None)
    box = find_mouth_roi(face(mouth), face_detector=None)
    assert box.method == "dark_blob" and not box.face_found
    assert abs(box.cx - mouth[0]) < 2 and abs(box.cy - mouth[1]) < 2
    # The crop is centred on the mouth: its darkest pixels are in the middle of the 60x80 crop.
    ys, xs = np.nonzero(crops[0] < 80)
    assert abs(ys.mean() - 30) < 4 and abs(xs.mean() - 40) < 4


def test_face_box_from_detector_restricts_search():
    # With a face box from a detector, the eyes (upper face) and a dark blob outside the face
    # box must not be picked; the mouth box scales with the face width.
    img = face((80, 118))
    cv2.circle(img, (10, 150), 6, 0, -1)  # dark spot outside the face box
    box = find_mouth_roi(img, face_detector=lambda f: [(20, 10, 120, 140)])
    assert box.face_found and box.method == "dark_blob"
    assert abs(box.cx - 80) < 2 and abs(box.cy - 118) < 2
    assert box.w == pytest.approx(60) and box.h == pytest.approx(45)


def test_tracking_is_smooth_and_follows_motion():
    T = 15
    xs = np.linspace(70, 90, T).round().astype(int)
    frames = np.stack([face((x, 118)) for x in xs])
    frames[7] = face((40, 118))  # one-frame glitch: a jump the median filter must remove
    crops = track_mouth(frames, face_detector=lambda f: [(0, 0, 160, 160)])
    assert crops.shape == (T, 60, 80) and crops.dtype == np.uint8
    centres = np.array([np.nonzero(c < 80)[1].mean() for c in crops])
    # In crop coordinates the mouth stays near the centre: the track followed the slow motion.
    assert np.abs(centres[[0, 3, 11, 14]] - 40).max() < 6


def test_mouth_roi_modes():
    small = np.random.default_rng(0).integers(0, 255, (5, 60, 80), dtype=np.uint8)
    np.testing.assert_array_equal(mouth_frames(small, "auto"), small)  # already ROI-sized: untouched
    big = np.stack([face()] * 2)
    assert mouth_frames(big, "never").shape == (2, 60, 80)
    from data_prep.mouth_roi import haar_face_detector

    if haar_face_detector(big[0]):  # a build with Haar cascades finds the face: no fallback warning
        out = mouth_frames(big, "auto")
    else:
        with pytest.warns(UserWarning):
            out = mouth_frames(big, "auto")
    # auto on a full face tracked the mouth: crop is darker in the centre than the plain resize.
    assert out[:, 25:35, 30:50].mean() < mouth_frames(big, "never")[:, 25:35, 30:50].mean() - 50


def test_haar_cascades_find_face_and_mouth_when_bundled():
    # OpenCV 4.x wheels bundle the Haar cascades (the project pins them); then the frontal-face
    # cascade finds a drawn face and the mouth lands inside its lower third, on the drawn mouth.
    from data_prep.mouth_roi import haar_face_detector, load_cascade

    if load_cascade(("haarcascade_frontalface_default.xml",)) is None:
        pytest.skip(f"this OpenCV build ({cv2.__version__}) ships no Haar cascades")
    img = face((80, 118))
    faces = haar_face_detector(img)
    assert faces, "the frontal-face cascade found no face in the drawn face"
    box = find_mouth_roi(img)
    assert box.face_found and box.method in ("cascade", "dark_blob")
    assert abs(box.cx - 80) < 6 and abs(box.cy - 118) < 6


def test_face_found_flags_per_frame_leave_the_crops_unchanged():
    from data_prep.mouth_roi import mouth_frames_with_faces, track_mouth_boxes

    frames = np.stack([face((80, 118))] * 6)
    # a detector that finds the face in even frames only
    calls = iter(range(100))
    boxes, found = track_mouth_boxes(frames, face_detector=lambda f: [(0, 0, 160, 160)] if next(calls) % 2 == 0 else [])
    assert found.tolist() == [True, False] * 3 and boxes.shape == (6, 4)
    crops, flags = mouth_frames_with_faces(frames, "always")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no-face warning when this OpenCV has no cascades
        np.testing.assert_array_equal(crops, mouth_frames(frames, "always"))
    assert flags.shape == (6,) and flags.dtype == bool
    small = frames[:, :60, :80]
    assert mouth_frames_with_faces(small, "auto")[1] is None  # not tracked: no flags


def test_cascades_are_per_thread():
    # detectMultiScale on one CascadeClassifier from two threads at once fails inside OpenCV
    # (scaleIdx assertion): the Preprocessor tracks mouths on a thread pool, so each thread gets its own.
    from concurrent.futures import ThreadPoolExecutor

    from data_prep.mouth_roi import load_cascade

    names = ("haarcascade_frontalface_default.xml",)
    if load_cascade(names) is None:
        pytest.skip(f"this OpenCV build ({cv2.__version__}) ships no Haar cascades")
    assert load_cascade(names) is load_cascade(names)
    with ThreadPoolExecutor(2) as pool:
        other = pool.submit(load_cascade, names).result()
    assert other is not load_cascade(names)
    frames = np.stack([face((80 + d, 118)) for d in range(-6, 7)] * 2)
    single = [find_mouth_roi(f) for f in frames]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(find_mouth_roi, frames))
    assert threaded == single
