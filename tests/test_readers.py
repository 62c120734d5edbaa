import json

import numpy as np
import pytest
import scipy.io
import soundfile as sf

from bimodal.errors import ConfigError, DataError
from data_prep.readers import READERS, read_avletters, read_corpus, read_cuave, read_folder, read_fsdd, scan_folder
from data_prep.video import write_video


def make_av(path_stem, T=10, fps=25, rate=8000, seed=0):
    rng = np.random.default_rng(seed)
    write_video(path_stem.with_suffix(".avi"), rng.integers(0, 255, (T, 60, 80), dtype=np.uint8), fps)
    sf.write(path_stem.with_suffix(".wav"), rng.normal(0, 0.1, int(T / fps * rate)).astype(np.float32), rate)


def test_read_folder_layout_and_order(tmp_path):
    for spk in ("s2", "s1"):
        for lab in ("b", "a"):
            (tmp_path / spk / lab).mkdir(parents=True)
            make_av(tmp_path / spk / lab / "u0")
    entries = scan_folder(tmp_path)
    assert [e.utterance_id for e in entries] == ["s1/a/u0", "s1/b/u0", "s2/a/u0", "s2/b/u0"]
    utts = read_folder(tmp_path, speakers=["s2"], progress=False)
    assert [(u.speaker, u.label) for u in utts] == [("s2", "a"), ("s2", "b")]
    u = utts[0]
    assert u.video.shape == (10, 60, 80) and u.fps == 25 and u.sample_rate == 8000 and len(u.audio) == 3200


def test_read_folder_skips_bad_files_with_warning(tmp_path):
    (tmp_path / "s1" / "a").mkdir(parents=True)
    make_av(tmp_path / "s1" / "a" / "good")
    make_av(tmp_path / "s1" / "a" / "badwav")
    (tmp_path / "s1" / "a" / "badwav.wav").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 unusable.*badwav.wav.*empty"):
        utts = read_folder(tmp_path, progress=False)
    assert [u.utterance_id for u in utts] == ["s1/a/good"]
    with pytest.raises(DataError, match="badwav.wav"):
        read_folder(tmp_path, strict=True, progress=False)


def test_read_corpus_dispatches_by_source_name_and_names_the_known_ones(tmp_path):
    (tmp_path / "s1" / "a").mkdir(parents=True)
    make_av(tmp_path / "s1" / "a" / "u0")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "bimodal-synth-corpus", "utterances": [
        {"audio": "s1/a/u0.wav", "phonemes": [["_", 0.0, 0.1], ["b", 0.12, 0.2]]}]}))
    u, = read_corpus("folder", tmp_path, progress=False)
    assert u.utterance_id == "s1/a/u0" and u.video.shape == (10, 60, 80)
    assert u.onset_s == pytest.approx(0.12)  # the generic layout's reader reads the manifest's onsets
    assert set(READERS) == {"folder", "avletters", "cuave", "fsdd", "grid", "synth"}
    with pytest.raises(ConfigError, match="unknown corpus source 'lrs3'; known sources: folder, avletters"):
        read_corpus("lrs3", tmp_path)


def test_folder_with_nothing_recognisable(tmp_path):
    (tmp_path / "s1" / "a").mkdir(parents=True)
    (tmp_path / "s1" / "a" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="no recognisable files"):
        read_folder(tmp_path, progress=False)


def test_read_avletters_mat(tmp_path):
    T = 6
    frames = np.random.default_rng(0).integers(0, 255, (T, 60, 80)).astype(np.float64)
    frames[:, 0, :] = 255  # top row bright: orientation check
    # MATLAB column-major: vid(:, t) = frame_t(:)
    vid = np.stack([f.ravel(order="F") for f in frames], axis=1)
    scipy.io.savemat(tmp_path / "A1_Bill-lips.mat", {"vid": vid, "siz": np.array([[60, 80, T]])})
    sf.write(tmp_path / "A1_Bill.wav", np.zeros(int(T / 25 * 16000), np.float32), 16000)
    scipy.io.savemat(tmp_path / "B2_Anya-lips.mat", {"vid": vid, "siz": np.array([[60, 80, T]])})  # no wav
    scipy.io.savemat(tmp_path / "C1_Bill-lips.mat", {"vid": vid[:, :3], "siz": np.array([[60, 80, T]])})
    sf.write(tmp_path / "C1_Bill.wav", np.zeros(1000, np.float32), 16000)
    with pytest.warns(UserWarning, match=r"(?s)skipped 2.*B2_Anya.wav.*C1_Bill-lips.mat.*field 'vid'"):
        utts = read_avletters(tmp_path, progress=False)
    assert len(utts) == 1
    u = utts[0]
    assert (u.label, u.speaker, u.utterance_id, u.fps) == ("A", "Bill", "Bill/A1", 25.0)
    np.testing.assert_array_equal(u.video, frames.astype(np.uint8))


def test_read_cuave_segments(tmp_path):
    fps, rate, T = 30, 8000, 40
    frames = np.zeros((T, 120, 160), np.uint8)
    frames[:, :, :] = (np.arange(T) * 5)[:, None, None]  # frame t has intensity 5t
    write_video(tmp_path / "s01m_still.avi", frames, fps)
    sf.write(tmp_path / "s01m_still.wav", np.linspace(0, 1, int(T / fps * rate)).astype(np.float32), rate)
    (tmp_path / "s01m_still.txt").write_text("1 10 zero\n# comment\n21 35 five\n")
    write_video(tmp_path / "s02f.avi", frames, fps)  # no label file → skipped
    sf.write(tmp_path / "s02f.wav", np.zeros(100, np.float32), rate)
    with pytest.warns(UserWarning, match=r"s02f.avi.*no label file"):
        utts = read_cuave(tmp_path, progress=False)
    assert [(u.label, u.speaker, u.utterance_id) for u in utts] == [("zero", "s01m", "s01m_still/000"),
                                                                  ("five", "s01m", "s01m_still/001")]
    u = utts[1]
    assert u.video.shape == (15, 120, 160)
    assert abs(int(u.video[0].mean()) - 100) <= 3  # frame 21 (1-based) = index 20 → 100
    assert len(u.audio) == 4000 and abs(u.audio[0] - 20 / 40) < 0.01  # audio cut at the same time


def test_read_fsdd(fsdd_root):
    utts = read_fsdd(fsdd_root, speakers=["george"], labels=["3"], progress=False, limit_per_class_speaker=3)
    assert [u.utterance_id for u in utts] == ["george/3/0", "george/3/1", "george/3/2"]
    assert all(u.video is None and u.sample_rate == 8000 and u.label == "3" for u in utts)
