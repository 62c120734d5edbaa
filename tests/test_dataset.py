import os

import numpy as np
import pytest
import soundfile as sf

from bimodal.errors import DataError
from data_prep.audio import load_wav, log_spectrogram, resample
from data_prep.dataset import AVDataset, PrepConfig, Preprocessor, load_or_build
from data_prep.readers import Utterance, read_folder, read_fsdd
from data_prep.video import write_video

SMALL = dict(audio_pca=10, video_pca=5, sample_rate=8000)


def utt(label="a", speaker="s1", T=20, fps=25.0, rate=8000, dur=None, seed=0, uid=None):
    """A label-dependent tone plus a moving bright bar in a 60x80 frame."""
    rng = np.random.default_rng(seed)
    dur = T / fps if dur is None else dur
    t = np.arange(int(dur * rate)) / rate
    f0 = 300 if label == "a" else 900
    audio = (0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.normal(size=t.size)).astype(np.float32)
    video = rng.integers(0, 60, (T, 60, 80)).astype(np.uint8)
    for k in range(T):
        video[k, 20:40, (3 * k) % 70:(3 * k) % 70 + 10] = 200
    uid = uid or f"{speaker}/{label}/{seed}"
    return Utterance(audio, rate, video, fps, label, speaker, uid, f"/data/{uid}.avi")


def corpus():
    return [utt(l, s, seed=i) for i, (s, l) in enumerate([(s, l) for s in ("s1", "s2") for l in ("a", "b")])]


def test_shapes_alignment_and_order():
    cfg = PrepConfig(**SMALL)
    train = corpus()
    pre = Preprocessor(cfg, device="cpu", n_workers=1).fit(train, progress=False)
    ds = pre.transform(train + [utt("b", "s3", T=30, seed=9)], progress=False)
    n_win = [17, 17, 17, 17, 27]  # T - frames_per_window + 1 with stride 1
    assert len(ds) == sum(n_win) and ds.n_utterances == 5
    # default front end: 10 audio frames of 10 whitened dims (derivatives before the PCA) per window
    assert ds.audio.shape == (sum(n_win), 10 * 10) and ds.video.shape == (sum(n_win), 4 * 5 * 2)
    assert ds.audio.dtype == np.float32 and np.isfinite(ds.audio).all() and np.isfinite(ds.video).all()
    np.testing.assert_array_equal(ds.utt, np.repeat(np.arange(5), n_win))
    assert ds.label_names == ["a", "b"] and ds.labels.tolist() == [0, 1, 0, 1, 1]
    assert list(ds.speakers) == ["s1", "s1", "s2", "s2", "s3"]
    # Overlapping windows (stride 1): frame 1 of window i is frame 0 of window i+1.
    D = 5 * 2
    np.testing.assert_array_equal(ds.video[1, :D], ds.video[0, D:2 * D])
    # The audio whitener saw mean-normalised frames with their derivatives: white on the training data.
    A = np.concatenate([pre.audio_whitener.transform(pre.audio_input(pre.frames(u)[0], u)) for u in train])
    np.testing.assert_allclose(np.cov(A, rowvar=False), np.eye(10), atol=0.02)


def test_unpooled_audio_window_size():
    # every audio frame of the window's span, derivatives after the whitening (audio_window_frames=0)
    cfg = PrepConfig(**SMALL, audio_pool_to_video=False, deltas=2, audio_deltas=2, audio_deltas_before_pca=False,
                     audio_window_frames=0, window_stride=2)
    train = corpus()
    ds = Preprocessor(cfg, device="cpu", n_workers=1).fit(train, progress=False).transform(train, progress=False)
    assert ds.audio.shape[1] == 16 * 10 * 3  # 4 frames at 25 fps = 160 ms = 16 audio frames
    assert ds.video.shape[1] == 4 * 5 * 3
    assert len(ds) == 4 * len(range(0, 17, 2))


@pytest.mark.parametrize("case,msg", [
    ("mismatch", "exceeds max_av_length_mismatch_s"),
    ("short", "too short"),
    ("rate", "expected 8000 Hz"),
    ("nan", "NaN"),
])
def test_bad_utterances_name_the_file(case, msg):
    pre = Preprocessor(PrepConfig(**SMALL, resample=False), device="cpu", n_workers=1).fit(corpus(), progress=False)
    u = {"mismatch": utt(dur=1.5, uid="bad/mismatch"), "short": utt(T=3, uid="bad/short"),
         "rate": utt(rate=16000, uid="bad/rate"), "nan": utt(uid="bad/nan")}[case]
    if case == "nan":
        u.audio[5] = np.nan
    with pytest.raises(DataError, match=msg) as e:
        pre.transform([u], progress=False)
    assert u.path in str(e.value)


def test_audio_transform_and_persistence(tmp_path):
    cfg = PrepConfig(**SMALL)
    train = corpus()
    pre = Preprocessor(cfg, device="cpu", n_workers=1).fit(train, progress=False)
    clean = pre.transform(train, progress=False)
    calls = []

    def noisy(wave, rate, u):
        calls.append(u.utterance_id)
        return wave + np.random.default_rng(0).normal(0, 0.3, wave.shape).astype(np.float32)

    dirty = pre.transform(train, audio_transform=noisy, progress=False)
    assert sorted(calls) == sorted(u.utterance_id for u in train)
    np.testing.assert_array_equal(dirty.video, clean.video)
    assert np.abs(dirty.audio - clean.audio).mean() > 0.1
    # Save / load: the reloaded preprocessor produces identical windows.
    pre.save(tmp_path / "pre.npz")
    pre2 = Preprocessor.load(tmp_path / "pre.npz", device="cpu")
    assert pre2.cfg == cfg
    again = pre2.transform(train, progress=False)
    np.testing.assert_array_equal(again.audio, clean.audio)
    clean.save(tmp_path / "ds.npz")
    ds = AVDataset.load(tmp_path / "ds.npz")
    np.testing.assert_array_equal(ds.video, clean.video)
    assert list(ds.utterance_ids) == list(clean.utterance_ids) and ds.label_names == ["a", "b"]
    sub = ds.subset(np.array([False, True, False, True]))
    assert sub.n_utterances == 2 and set(sub.utt) == {0, 1} and list(sub.speakers) == ["s1", "s2"]
    np.testing.assert_array_equal(sub.audio, ds.audio[np.isin(ds.utt, [1, 3])])


def test_audio_only_windows_match_av_dims():
    train = corpus()
    pre = Preprocessor(PrepConfig(**SMALL), device="cpu", n_workers=1).fit(train, progress=False)
    av = pre.transform(train, progress=False)
    ao = pre.transform_audio_only(train, progress=False)
    assert ao.video is None and ao.audio.shape[1] == av.audio.shape[1]
    np.testing.assert_allclose(ao.audio[:17], av.audio[:17], atol=1e-4)  # same 25 fps grid, same windows
    with pytest.raises(DataError, match="mix of audio-visual and audio-only"):
        pre.transform([train[0], Utterance(train[1].audio, 8000, None, None, "a", "s1", "x", "x.wav")],
                      progress=False)


def test_load_or_build_caches(tmp_path):
    root = tmp_path / "corpus"
    for i, u in enumerate(corpus()):
        d = root / u.speaker / u.label
        d.mkdir(parents=True, exist_ok=True)
        write_video(d / f"u{i}.avi", u.video, u.fps)
        sf.write(d / f"u{i}.wav", u.audio, u.sample_rate)
    calls = []

    def reader(r, **kw):
        calls.append(r)
        return read_folder(r, **kw)

    kw = dict(reader=reader, cfg=PrepConfig(**SMALL), train_speakers=["s1"], cache_dir=tmp_path / "cache",
              device="cpu", progress=False)
    pre, out = load_or_build(root, **kw)
    assert len(calls) == 1 and set(out) == {"train", "test"}
    assert list(out["test"].speakers) == ["s2", "s2"]
    pre2, out2 = load_or_build(root, **kw)
    assert len(calls) == 1  # cache hit: nothing read
    np.testing.assert_array_equal(out2["test"].audio, out["test"].audio)
    np.testing.assert_array_equal(pre2.video_whitener.components_, pre.video_whitener.components_)
    # A changed input file (new mtime) invalidates the cache.
    f = root / "s2" / "a" / "u2.wav"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    load_or_build(root, **kw)
    assert len(calls) == 2


def test_fsdd_real_recordings(fsdd_root):
    utts = read_fsdd(fsdd_root, speakers=["george", "jackson"], labels=["0", "1", "6"], progress=False,
                     limit_per_class_speaker=4)
    assert len(utts) == 24
    wave, rate = load_wav(fsdd_root / "0_george_0.wav")
    up = resample(wave, rate, 16000, device="cpu")
    assert rate == 8000 and abs(len(up) - 2 * len(wave)) <= 1
    S = log_spectrogram(up, 16000, device="cpu")
    assert S.shape == (1 + len(up) // 160, 161) and np.isfinite(S).all()
    pre = Preprocessor(PrepConfig(audio_pca=20, sample_rate=16000), device="cpu", n_workers=2)
    pre.fit(utts, progress=False)
    ds = pre.transform(utts, progress=False)
    assert ds.video is None and ds.audio.shape[1] == 10 * 20 and np.isfinite(ds.audio).all()  # 10 audio frames
    assert ds.n_utterances == 24 and ds.label_names == ["0", "1", "6"]
    # Digits differ: mean log spectra (below 4 kHz, the band 8 kHz audio has; loud frames only) of
    # two different digits are further apart than two repetitions of the same digit.
    spec = {}
    for u in utts:
        s = log_spectrogram(resample(u.audio, 8000, 16000, device="cpu"), 16000, device="cpu")[:, :80]
        loud = s[s.mean(1) > np.percentile(s.mean(1), 50)]
        spec.setdefault((u.speaker, u.label), []).append(loud.mean(0))
    same = np.mean([np.linalg.norm(v[i] - v[j]) for v in spec.values() for i in range(4) for j in range(i + 1, 4)])
    diff = np.mean([np.linalg.norm(spec[(s, a)][i] - spec[(s, b)][j]) for s in ("george", "jackson")
                    for a, b in (("0", "1"), ("0", "6"), ("1", "6")) for i in range(4) for j in range(4)])
    assert diff > 1.5 * same, (diff, same)


def test_non_strict_transform_skips_and_lists_bad_utterances():
    train = corpus()
    pre = Preprocessor(PrepConfig(**SMALL), device="cpu", n_workers=1).fit(train, progress=False)
    short = utt(T=3, uid="bad/short")
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 of 3 utterances.*bad/short.avi.*too short"):
        ds = pre.transform([train[0], short, train[1]], progress=False, strict=False)
    assert ds.n_utterances == 2 and list(ds.utterance_ids) == [train[0].utterance_id, train[1].utterance_id]


def test_broken_preprocessor_file_names_the_file(tmp_path):
    import json

    import numpy as np

    from bimodal.errors import DataError
    from data_prep.dataset import Preprocessor, PrepConfig

    p = tmp_path / "prep.npz"
    np.savez(p, cfg_json=np.array(json.dumps(PrepConfig().to_dict())), label_names=np.array(["a"]),
             audio_components=np.zeros((2, 3)))  # a whitener state without its mean
    with pytest.raises(DataError) as e:
        Preprocessor.load(p)
    assert str(p) in str(e.value) and "audio_whitener" in str(e.value)


def test_frame_cache_shares_crops_between_clean_and_noisy_audio(monkeypatch):
    import numpy as np

    import data_prep.dataset as dataset
    from data_prep.dataset import Preprocessor
    from data_prep.readers import Utterance

    rng = np.random.default_rng(0)
    u = Utterance(rng.standard_normal(16000).astype(np.float32), 16000,
                  rng.integers(0, 255, (25, 60, 80), dtype=np.uint8), 25.0, "a", "s1", "s1_a_1", "x.avi")
    calls = []
    real = dataset.mouth_frames
    monkeypatch.setattr(dataset, "mouth_frames", lambda *a, **k: calls.append(1) or real(*a, **k))

    def noisy(wave, rate, utt):
        return wave + 0.5

    noisy.cache_key = "plus-half"
    prep = Preprocessor(device="cpu", frame_cache={})
    clean_spec, clean_vid, _ = prep.frames(u)
    noisy_spec, noisy_vid, _ = prep.frames(u, noisy)
    assert noisy_vid is clean_vid and len(calls) == 1  # crops computed once and shared
    assert not np.allclose(noisy_spec, clean_spec)  # the audio really is the transformed one
    assert prep.frames(u, noisy)[0] is noisy_spec  # and cached
