"""``bimodal extract`` on corpora with unusable or silent clips, and its ``--out`` checks."""
import json
import logging

import numpy as np
import pytest
import soundfile as sf

from bimodal.cli import main
from bimodal.errors import ConfigError, DataError
from data_prep.dataset import PrepConfig, Preprocessor
from data_prep.readers import read_folder
from data_prep.video import write_video

RATE, FPS, T = 8000, 25.0, 20


def write_clip(folder, seed, label):
    """``folder/u0.avi`` + ``u0.wav``: a moving bright bar and a label-dependent tone, 0.8 s."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    t = np.arange(int(T / FPS * RATE)) / RATE
    audio = 0.3 * np.sin(2 * np.pi * (300 if label == "a" else 900) * t) + 0.01 * rng.normal(size=t.size)
    video = rng.integers(0, 60, (T, 60, 80)).astype(np.uint8)
    for k in range(T):
        video[k, 20:40, (3 * k) % 70:(3 * k) % 70 + 10] = 200
    write_video(folder / "u0.avi", video, FPS)
    sf.write(folder / "u0.wav", audio.astype(np.float32), RATE)
    return folder


@pytest.fixture
def corpus(tmp_path):
    """A 4-clip folder corpus and a checkpoint folder holding only its fitted ``preprocessor.npz``
    (enough for the model-free feature ``raw.both``)."""
    root = tmp_path / "corpus"
    for i, (spk, lab) in enumerate([("s1", "a"), ("s1", "b"), ("s2", "a"), ("s2", "b")]):
        write_clip(root / spk / lab, i, lab)
    ckpt = tmp_path / "ckpt"
    pre = Preprocessor(PrepConfig(audio_pca=10, video_pca=5, sample_rate=RATE), device="cpu", n_workers=1)
    pre.fit(read_folder(root, progress=False), progress=False).save(ckpt / "preprocessor.npz")
    return root, ckpt


def extract(root, ckpt, out):
    from experiments.extract import extract_features

    return extract_features(ckpt, root, out, feature="raw.both", slices=(1,), progress=False, device="cpu")


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_bad_clips_are_skipped_and_listed(corpus, tmp_path, suffix):
    root, ckpt = corpus
    wav = root / "s2" / "b" / "u0.wav"
    wav.write_bytes(wav.read_bytes()[:100])  # decodes, but far shorter than its video
    (root / "s1" / "b" / "u0.avi").write_bytes(b"not a video")  # the reader cannot decode it
    if suffix == ".parquet":
        pytest.importorskip("pandas")
        pytest.importorskip("pyarrow")
    with pytest.warns(UserWarning) as caught:
        out = extract(root, ckpt, tmp_path / f"feats{suffix}")
    said = "\n".join(str(w.message) for w in caught)
    assert "s1/b/u0.avi" in said and "s2/b/u0.avi" in said and "video lasts" in said
    if suffix == ".npz":
        z = np.load(out, allow_pickle=False)
        assert z["utterance_ids"].tolist() == ["s1/a/u0", "s2/a/u0"] and np.isfinite(z["features"]).all()
        skipped = [dict(utterance_id=u, path=p, reason=r) for u, p, r in
                   zip(z["skipped_utterance_ids"], z["skipped_paths"], z["skipped_reasons"])]
    else:
        import pandas as pd
        import pyarrow.parquet as pq

        assert pd.read_parquet(out)["utterance_id"].tolist() == ["s1/a/u0", "s2/a/u0"]
        skipped = json.loads(pq.read_schema(out).metadata[b"skipped"])
    assert sorted(d["utterance_id"] for d in skipped) == ["s1/b/u0", "s2/b/u0"]
    by_id = {d["utterance_id"]: d for d in skipped}
    assert by_id["s1/b/u0"]["path"] == str(root / "s1" / "b" / "u0.avi")
    assert "video lasts" in by_id["s2/b/u0"]["reason"] and by_id["s2/b/u0"]["path"].endswith("u0.avi")


def test_nothing_skipped_writes_empty_lists(corpus, tmp_path):
    root, ckpt = corpus
    z = np.load(extract(root, ckpt, tmp_path / "feats.npz"), allow_pickle=False)
    assert len(z["utterance_ids"]) == 4 and z["skipped_utterance_ids"].shape == (0,)


def test_no_usable_clip_is_an_error_naming_the_folder(corpus, tmp_path):
    root, ckpt = corpus
    for wav in root.rglob("*.wav"):
        wav.write_bytes(wav.read_bytes()[:100])
    with pytest.warns(UserWarning, match="skipped 4 of 4"):
        with pytest.raises(DataError, match=rf"^{root}: field '--data': no usable clip"):
            extract(root, ckpt, tmp_path / "feats.npz")
    assert not (tmp_path / "feats.npz").exists()


@pytest.mark.parametrize("name", ["feats.csv", "feats", "feats.npy"])
def test_out_suffix_refused_before_any_work(tmp_path, monkeypatch, capsys, name):
    from experiments import extract as ex

    def no_load(*a, **k):
        raise AssertionError("a model was loaded before --out was checked")

    monkeypatch.setattr(ex, "load_model", no_load)
    # the model and data paths do not exist either: the --out error must come first
    with pytest.raises(ConfigError, match=r"--out .*accepted suffixes: \.npz"):
        ex.extract_features(tmp_path / "missing.pt", tmp_path / "nodata", tmp_path / name)
    assert main(["-q", "extract", "--model", str(tmp_path / "missing.pt"), "--data", str(tmp_path / "nodata"),
                 "--out", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / name}" in err and ".npz" in err and "missing.pt" not in err
    assert not (tmp_path / name).exists()


def test_out_that_is_a_folder_is_refused(tmp_path):
    from experiments.extract import extract_features

    (tmp_path / "feats.npz").mkdir()
    with pytest.raises(ConfigError, match=r"feats\.npz: is an existing folder"):
        extract_features(tmp_path / "missing.pt", tmp_path / "nodata", tmp_path / "feats.npz")


def test_out_under_a_file_is_refused(tmp_path):
    from experiments.extract import extract_features

    (tmp_path / "plain").write_text("x")
    with pytest.raises(ConfigError, match=r"plain is not a folder"):
        extract_features(tmp_path / "missing.pt", tmp_path / "nodata", tmp_path / "plain" / "sub" / "f.npz")


def test_missing_preprocessor_is_named(corpus, tmp_path):
    from experiments.extract import extract_features

    root, ckpt = corpus
    with pytest.raises(DataError, match=r"nope\.npz: field '--preprocessor': preprocessor .*not found"):
        extract_features(ckpt, root, tmp_path / "f.npz", feature="raw.both", preprocessor=tmp_path / "nope.npz")


def test_silent_wav_is_named_in_a_warning(tmp_path, caplog):
    from data_prep.audio import load_wav

    silent, quiet, heard = tmp_path / "silent.wav", tmp_path / "quiet.wav", tmp_path / "heard.wav"
    sf.write(silent, np.zeros(800, np.float32), RATE)
    sf.write(quiet, np.full(800, 1e-8, np.float32), RATE, subtype="FLOAT")
    sf.write(heard, 0.1 * np.sin(np.arange(800, dtype=np.float32)), RATE)
    with caplog.at_level(logging.WARNING, logger="data_prep.audio"):
        for p in (silent, quiet, heard):
            load_wav(p)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(silent) in m and "silent" in m for m in warned)
    assert any(str(quiet) in m and "silent" in m for m in warned)
    assert not any(str(heard) in m for m in warned)
