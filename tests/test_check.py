"""``bimodal data check``: counts, skip reasons, duration and tracking statistics, montage, exit status."""
import cv2
import numpy as np
import pytest
import scipy.io
import soundfile as sf

from bimodal.cli import main
from data_prep.check import check_corpus
from media import write_av
from test_mouth_roi import face

FPS, T, RATE = 25, 50, 16000


def tone(seconds, freq=300.0):
    t = np.arange(int(round(seconds * RATE))) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """6 clips of drawn faces (160x160, tracked): 3 usable, 2 the reader skips, 1 the A/V check skips."""
    root = tmp_path_factory.mktemp("corpus")
    faces = np.stack([face((80 + int(4 * np.sin(t / 3)), 118)) for t in range(T)])
    half_blank = faces.copy()
    half_blank[T // 2:] = 128  # flat grey: no face to find in the second half
    for rel, frames, audio in [("s1/yes/a", faces, tone(2.0)), ("s1/no/b", faces, tone(2.0)),
                               ("s2/yes/c", half_blank, tone(2.0)),
                               ("s2/no/silent", faces, None),        # no sound track, no wav
                               ("s2/no/half", faces, tone(1.0)),     # sound track half the video
                               ("s1/no/long", faces, None)]:         # wav beside it, 0.5 s too long
        p = root / f"{rel}.avi"
        p.parent.mkdir(parents=True, exist_ok=True)
        write_av(p, frames, FPS, audio, RATE)
    sf.write(root / "s1" / "no" / "long.wav", tone(2.5), RATE)
    return root


def test_report_counts_skips_and_statistics(corpus, tmp_path):
    rep = check_corpus(corpus, montage=tmp_path / "m.png", frames_per_speaker=4, progress=False, n_workers=2)
    assert (rep.found, len(rep.usable), rep.n_skipped, rep.ok) == (6, 3, 3, True)
    assert rep.per_speaker() == {"s1": 2, "s2": 1} and rep.per_label() == {"yes": 2, "no": 1}
    reasons = "\n".join(rep.skipped)
    assert "silent.avi: field 'audio': no audio stream" in reasons
    assert "half.avi: field 'duration': audio lasts 1.000 s but video lasts 2.000 s" in reasons
    assert "long.avi: field 'duration': audio lasts 2.500 s" in reasons  # the Preprocessor's limit, 0.2 s
    by_id = {c.utterance_id: c for c in rep.clips}
    assert by_id["s1/no/long"].mismatch_s == pytest.approx(0.5) and by_id["s1/yes/a"].mismatch_s < 0.01
    assert all(c.tracked and c.n_frames == T for c in rep.usable)
    # frames 25..49 of clip c are flat grey: no face there, whatever the detector finds elsewhere
    assert by_id["s2/yes/c"].no_face_frames >= T // 2
    assert by_id["s2/yes/c"].no_face_frames > by_id["s1/yes/a"].no_face_frames
    text = rep.format()
    assert "clips found: 6   usable: 3   skipped: 3" in text
    assert "speakers (2): s1 2, s2 1" in text and "labels (2): no 1, yes 2" in text
    assert "audio min 2.000 / median 2.000 / max 2.000 s" in text
    assert "1 of 4 clip(s) over the 0.2 s limit" in text  # the reader's two skips have no A/V numbers
    assert f"no face in {by_id['s2/yes/c'].no_face_frames} of 50 frames: {corpus / 's2' / 'yes' / 'c.avi'}" in text
    # montage: one row per speaker (first clip by id), 4 frames each, mouth crops of 60x80
    assert rep.montage_rows == ["s1/no/b", "s2/yes/c"]
    c = by_id["s2/yes/c"]
    assert c.crops.shape == (4, 60, 80) and c.crop_frames.tolist() == [0, 16, 33, 49]
    assert not c.crop_faces[-1]  # frame 49 is grey: titled "no face" in red
    img = cv2.imread(str(tmp_path / "m.png"))
    assert img is not None and img.shape[1] > img.shape[0] > 150


def test_cli_exit_status_and_output(corpus, tmp_path, capsys):
    png = tmp_path / "montage.png"
    assert main(["-q", "data", "check", str(corpus), "--montage", str(png), "--frames", "3"]) == 0
    out = capsys.readouterr().out
    assert "usable: 3" in out and f"montage: {png}" in out and png.is_file()
    bad = tmp_path / "bad"
    (bad / "s9" / "x").mkdir(parents=True)
    write_av(bad / "s9" / "x" / "silent.avi", np.stack([face()] * 10), FPS)
    png2 = tmp_path / "none.png"
    assert main(["-q", "data", "check", str(bad), "--montage", str(png2)]) == 1
    out = capsys.readouterr().out
    assert "usable: 0   skipped: 1" in out and "silent.avi" in out and "NOTHING USABLE" in out
    assert not png2.exists()
    assert main(["-q", "data", "check", str(tmp_path / "nowhere"), "--montage", str(png2)]) == 1
    assert "dataset folder does not exist" in capsys.readouterr().out


def test_audio_only_and_cropped_lip_sources(tmp_path):
    fsdd = tmp_path / "fsdd"
    fsdd.mkdir()
    for name, secs in (("0_ann_0", 0.5), ("1_ann_0", 0.4), ("1_bob_0", 0.1)):  # 0.1 s < one 4-frame window
        sf.write(fsdd / f"{name}.wav", tone(secs), RATE)
    rep = check_corpus(fsdd, source="fsdd", montage=tmp_path / "f.png", progress=False)
    assert (rep.found, len(rep.usable)) == (3, 2)
    assert "1_bob_0.wav: field 'frames': utterance too short" in rep.skipped[0]
    assert rep.montage is None and "montage: none (no video)" in rep.format()

    lips = tmp_path / "avl"
    lips.mkdir()
    frames = np.random.default_rng(0).integers(0, 255, (12, 60, 80)).astype(np.uint8)
    vid = np.stack([f.ravel(order="F") for f in frames], axis=1).astype(np.float64)
    scipy.io.savemat(lips / "A1_Bill-lips.mat", {"vid": vid, "siz": np.array([[60, 80, 12]])})
    sf.write(lips / "A1_Bill.wav", tone(12 / 25), RATE)
    rep = check_corpus(lips, source="avletters", montage=tmp_path / "a.png", frames_per_speaker=3, progress=False)
    (c,) = rep.usable
    # already-cropped lips are not tracked: the montage shows the frames themselves
    assert not c.tracked and c.crop_frames.tolist() == [0, 6, 11]
    np.testing.assert_array_equal(c.crops, frames[[0, 6, 11]])
    assert "not needed, frames are already about the 60x80 crop size" in rep.format() and rep.montage.is_file()
