"""AVLetters as distributed (MATLAB v4 lip sequences + HTK MFCC files) and the HTK reader."""
import warnings

import numpy as np
import pytest
import scipy.io

from bimodal.errors import DataError
from data_prep.dataset import AVDataset, PrepConfig, Preprocessor
from data_prep.htk import parm_kind_name, read_htk, read_htk_header, write_htk
from data_prep.readers import read_avletters

MFCC_E_D = 326  # 6 (MFCC) | _E 0o100 | _D 0o400


def write_lips(path, T, seed=0):
    """A MATLAB v4 ``-lips.mat`` as the corpus ships it: vid (4800, T) column-major, siz = [60 80 T]."""
    frames = np.random.default_rng(seed).integers(0, 255, (T, 60, 80)).astype(np.uint8)
    frames[:, :, :10] = 250  # bright left edge: orientation check
    vid = np.stack([f.ravel(order="F") for f in frames], axis=1).astype(np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"vid": vid, "siz": np.array([[60.0, 80.0, T]])}, format="4")
    return frames


def write_mfcc(path, T, seed=0, dims=26, kind=MFCC_E_D):
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.random.default_rng(seed).normal(size=(T, dims)).astype(np.float32)
    write_htk(path, frames, 200000, kind)  # 20 ms frames
    return frames


def make_corpus(root, speakers=("Ann", "Bob"), letters="AB", reps=(1, 2, 3), T=12):
    """``root/Lips/<L><rep>_<Spk>-lips.mat`` + ``root/Audio/mfcc/Clean/<L><rep>_<Spk>.mfcc`` (2 MFCC frames per video frame)."""
    k = 0
    for spk in speakers:
        for L in letters:
            for r in reps:
                stem = f"{L}{r}_{spk}"
                write_lips(root / "Lips" / f"{stem}-lips.mat", T + (k % 3), seed=k)
                write_mfcc(root / "Audio" / "mfcc" / "Clean" / f"{stem}.mfcc", 2 * (T + (k % 3)), seed=k)
                k += 1


# ---------------------------------------------------------------- HTK
def test_htk_roundtrip_header_and_kind_names(tmp_path):
    X = write_mfcc(tmp_path / "a.mfcc", 7)
    Y, h = read_htk(tmp_path / "a.mfcc")
    np.testing.assert_array_equal(X, Y)
    assert (h.n_samples, h.samp_period_100ns, h.samp_size, h.parm_kind) == (7, 200000, 104, 326)
    assert h.kind_name == "MFCC_E_D" and h.frame_rate == 50.0 and h.byteorder == ">"
    # big-endian on disk: nSamples = 7 in the first four bytes, most significant first
    assert (tmp_path / "a.mfcc").read_bytes()[:4] == b"\x00\x00\x00\x07"
    assert parm_kind_name(6) == "MFCC" and parm_kind_name(838) == "MFCC_E_D_A"
    assert parm_kind_name(9 | 0o200 | 0o100 | 0o400) == "USER_E_N_D" and parm_kind_name(7 | 0o20000) == "FBANK_0"
    assert parm_kind_name(6 | 0o100000) == "MFCC_T"
    # a little-endian copy is recognised by the header that agrees with the file size
    write_htk(tmp_path / "le.mfcc", X, 100000, MFCC_E_D, byteorder="<")
    Z, hl = read_htk(tmp_path / "le.mfcc")
    np.testing.assert_array_equal(X, Z)
    assert hl.byteorder == "<" and hl.frame_rate == 100.0


@pytest.mark.parametrize("case,field,msg", [
    ("size_vs_kind", "sampSize", "25 floats per frame does not fit kind MFCC_E_D"),
    ("size_not_floats", "sampSize", "not a whole number of 4-byte floats"),
    ("unknown_kind", "parmKind", "unknown HTK parameter base kind 13"),
    ("compressed", "parmKind", "compressed"),
    ("crc", "parmKind", "CRC"),
    ("truncated", "nSamples", "truncated HTK file"),
    ("header_only", "header", "shorter than the 12-byte header"),
    ("expected_dims", "sampSize", "expected 13"),
])
def test_htk_errors_name_file_and_field(tmp_path, case, field, msg):
    p = tmp_path / f"{case}.mfcc"
    if case == "size_vs_kind":  # 25 coefficients cannot be static + delta blocks of equal size
        write_mfcc(p, 4, dims=25)
    elif case == "size_not_floats":
        write_mfcc(p, 4)
        raw = bytearray(p.read_bytes())
        raw[8:10] = (103).to_bytes(2, "big")
        p.write_bytes(bytes(raw))
    elif case == "unknown_kind":
        write_mfcc(p, 4, kind=13)
    elif case == "compressed":
        write_mfcc(p, 4, kind=MFCC_E_D | 0o2000)
    elif case == "crc":
        write_mfcc(p, 4, kind=MFCC_E_D | 0o10000)
    elif case == "truncated":
        write_mfcc(p, 4)
        p.write_bytes(p.read_bytes()[:-10])
    elif case == "header_only":
        p.write_bytes(b"\x00\x00\x00\x04\x00")
    kwargs = {"expected_dims": 13} if case == "expected_dims" else {}
    if case == "expected_dims":
        write_mfcc(p, 4)
    with pytest.raises(DataError, match=msg) as e:
        read_htk(p, **kwargs)
    assert e.value.field == field and str(p) in str(e.value)


def test_htk_header_only_reader(tmp_path):
    write_mfcc(tmp_path / "h.mfcc", 9)
    h = read_htk_header(tmp_path / "h.mfcc")
    assert h.n_samples == 9 and h.kind_name == "MFCC_E_D"


# ---------------------------------------------------------------- AVLetters reader
def test_read_avletters_as_distributed(tmp_path):
    make_corpus(tmp_path)
    frames = write_lips(tmp_path / "Lips" / "C1_Ann-lips.mat", 10, seed=99)
    mfcc = write_mfcc(tmp_path / "Audio" / "mfcc" / "Clean" / "C1_Ann.mfcc", 20, seed=99)
    utts = read_avletters(tmp_path, progress=False)
    assert len(utts) == 2 * 2 * 3 + 1
    u = next(x for x in utts if x.utterance_id == "Ann/C1")
    assert (u.label, u.speaker, u.repetition, u.fps) == ("C", "Ann", "1", 25.0)
    assert u.audio is None and u.audio_frame_rate == 50.0
    np.testing.assert_array_equal(u.audio_features, mfcc)
    np.testing.assert_array_equal(u.video, frames)  # upright, uint8
    assert u.duration_s == pytest.approx(0.4)
    assert sorted({x.repetition for x in utts}) == ["1", "2", "3"]


def test_read_avletters_skips_and_lists_bad_clips(tmp_path):
    make_corpus(tmp_path, speakers=("Ann",), letters="A")
    clean = tmp_path / "Audio" / "mfcc" / "Clean"
    # length mismatch: 23 video frames (0.92 s) but 31 MFCC frames (0.62 s), as in the full corpus
    write_lips(tmp_path / "Lips" / "B1_Ann-lips.mat", 23)
    write_mfcc(clean / "B1_Ann.mfcc", 31)
    # truncated .mat
    write_lips(tmp_path / "Lips" / "C1_Ann-lips.mat", 12)
    p = tmp_path / "Lips" / "C1_Ann-lips.mat"
    p.write_bytes(p.read_bytes()[:5000])
    write_mfcc(clean / "C1_Ann.mfcc", 24)
    # an .mfcc whose header sampSize disagrees with its kind, and one of an unknown kind
    write_lips(tmp_path / "Lips" / "D1_Ann-lips.mat", 12)
    write_mfcc(clean / "D1_Ann.mfcc", 24, dims=25)
    write_lips(tmp_path / "Lips" / "E1_Ann-lips.mat", 12)
    write_mfcc(clean / "E1_Ann.mfcc", 24, kind=42)
    write_lips(tmp_path / "Lips" / "F1_Ann-lips.mat", 12)  # no audio at all
    with pytest.warns(UserWarning) as rec:
        utts = read_avletters(tmp_path, progress=False)
    msg = "\n".join(str(w.message) for w in rec)
    assert "skipped 5 unusable file(s)" in msg
    assert "B1_Ann-lips.mat + B1_Ann.mfcc: field 'duration': audio lasts 0.620 s but video lasts 0.920 s" in msg
    assert "C1_Ann-lips.mat: cannot read .mat file" in msg
    assert "D1_Ann.mfcc: field 'sampSize'" in msg and "E1_Ann.mfcc: field 'parmKind'" in msg
    assert "no audio F1_Ann.mfcc" in msg
    assert sorted(u.utterance_id for u in utts) == ["Ann/A1", "Ann/A2", "Ann/A3"]
    with pytest.raises(DataError, match="no audio F1_Ann.mfcc"):  # strict: the first unusable file
        read_avletters(tmp_path, progress=False, strict=True)


def test_avletters_wav_beside_wins(tmp_path):
    import soundfile as sf

    make_corpus(tmp_path, speakers=("Ann",), letters="A", reps=(1,))
    sf.write(tmp_path / "A1_Ann.wav", np.zeros(int(12 / 25 * 16000), np.float32), 16000)
    u, = read_avletters(tmp_path, progress=False)
    assert u.audio is not None and u.sample_rate == 16000 and u.audio_features is None
    u, = read_avletters(tmp_path, progress=False, audio="mfcc")
    assert u.audio is None and u.audio_features.shape == (24, 26)


def test_mfcc_corpus_windows(tmp_path):
    make_corpus(tmp_path / "avl")
    cfg = PrepConfig(audio_pca=8, video_pca=6)
    utts = read_avletters(tmp_path / "avl", progress=False)
    train, test = [u for u in utts if u.speaker == "Ann"], [u for u in utts if u.speaker != "Ann"]
    pre = Preprocessor(cfg, device="cpu").fit(train, progress=False)
    tr, te = pre.transform(train, progress=False), pre.transform(test, progress=False)
    assert tr.audio.shape[1] == 10 * 8 and tr.video.shape[1] == 4 * 6 * 2  # 10 audio frames per window
    assert sorted(set(tr.speakers)) == ["Ann"] and sorted(set(te.speakers)) == ["Bob"]
    assert sorted(set(tr.repetitions)) == ["1", "2", "3"]
    # the audio whitener saw the MFCCs themselves (26 dims, no extra derivatives by default)
    assert pre.audio_whitener.n_features == 26
    # repetitions survive the dataset file
    assert list(AVDataset.load(tr.save(tmp_path / "train.npz")).repetitions) == list(tr.repetitions)
    # added noise needs a waveform: a clear error, or a listed skip
    with pytest.raises(DataError, match="needs a waveform"):
        pre.transform(utts[:2], audio_transform=lambda w, r, u: w, progress=False)


def test_shared_avletters(avletters_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the shared subset has no bad clip: nothing may be skipped
        utts = read_avletters(avletters_root, progress=False)
    assert len(utts) == 312
    assert len({u.label for u in utts}) == 26 and len({u.speaker for u in utts}) == 4
    assert {u.video.shape[1:] for u in utts} == {(60, 80)}
    assert {u.repetition for u in utts} == {"1", "2", "3"}
    assert all(u.audio_features.shape[1] == 26 and u.audio_frame_rate == 50.0 for u in utts)
    # about 2 MFCC frames per video frame
    ratio = np.array([len(u.audio_features) / len(u.video) for u in utts])
    assert 1.7 < ratio.min() and ratio.max() < 2.3


def test_load_utterances_for_an_avletters_config(tmp_path):
    from experiments.config import config_from_dict
    from bimodal.errors import ConfigError
    from experiments.pipeline import load_utterances, speaker_splits

    make_corpus(tmp_path)

    def cfg(settings):
        return config_from_dict({"experiment": {"name": "t", "settings": settings, "split": "third_test"},
                                 "data": {"source": "avletters", "root": str(tmp_path), "labels": ["A", "B"]}})

    skipped = []
    utts = load_utterances(cfg(["cross_modality"]), progress=False, skipped=skipped)
    assert len(utts) == 12 and skipped == []
    (tr, te), = speaker_splits(utts, cfg(["cross_modality"]), seed=0)
    assert len(tr) == 8 and {utts[i].repetition for i in te} == {"3"}
    with pytest.raises(ConfigError, match="McGurk setting dubs waveforms"):
        load_utterances(cfg(["cross_modality", "mcgurk"]), progress=False)
    # a bad clip is listed in `skipped`, not fatal
    (tmp_path / "Lips" / "A1_Ann-lips.mat").write_bytes(b"MATLAB")
    utts = load_utterances(cfg(["cross_modality"]), progress=False, skipped=skipped)
    assert len(utts) == 11 and len(skipped) == 1 and "A1_Ann-lips.mat" in skipped[0]


def test_audio_features_of_different_sizes_are_a_clear_error(tmp_path):
    """One MFCC file with 13 coefficients among 26-coefficient ones: fit names that file."""
    from data_prep.dataset import PrepConfig, Preprocessor
    from data_prep.readers import Utterance

    rng = np.random.default_rng(0)

    def utt(i, dims):
        video = rng.integers(0, 255, size=(12, 60, 80), dtype=np.uint8)
        return Utterance(None, None, video, 25.0, "A", f"s{i}", f"s{i}/A1", str(tmp_path / f"A1_s{i}.mfcc"),
                         audio_features=rng.normal(size=(24, dims)).astype(np.float32), audio_frame_rate=50.0,
                         repetition="1")

    cfg = PrepConfig(audio_pca=8, video_pca=4, feature_audio_deltas=0)
    with pytest.raises(DataError, match=r"A1_s2\.mfcc.*\[13, 26\] dimensions"):
        Preprocessor(cfg, device="cpu").fit([utt(0, 26), utt(1, 26), utt(2, 13)], progress=False)
