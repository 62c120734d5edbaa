import os

import numpy as np
import pytest
import soundfile as sf

from bimodal.errors import DataError
from data_prep.audio import load_wav, log_spectrogram, resample
from data_prep.dataset import AVDataset, PrepConfig, Preprocessor
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


def test_the_frame_cache_gives_the_same_windows_and_misses_when_a_setting_or_file_changes(tmp_path, monkeypatch):
    # the experiments' one cache: each utterance's frames on disk, keyed by the preprocessing and the files
    from experiments import pipeline
    from experiments.config import config_from_dict

    root = tmp_path / "corpus"
    for i, u in enumerate(corpus()):
        d = root / u.speaker / u.label
        d.mkdir(parents=True, exist_ok=True)
        write_video(d / f"u{i}.avi", u.video, u.fps)
        sf.write(d / f"u{i}.wav", u.audio, u.sample_rate)

    def config(**prep):
        return config_from_dict({"experiment": {"settings": ["cross_modality"]},
                                 "data": {"source": "folder", "root": str(root), "labels": ["a", "b"],
                                          "cache_dir": str(tmp_path / "cache"), "prep": {**SMALL, **prep}}})

    cfg = config()
    utts = pipeline.load_utterances(cfg, progress=False)
    path = pipeline.frame_cache_path(cfg, utts)
    assert path.parent == tmp_path / "cache" and pipeline.load_frame_cache(path) == {}  # nothing cached yet
    cache = {}
    first = pipeline.prepare_fold(cfg, utts, [0, 1], [2, 3], 0, "cpu", progress=False, frame_cache=cache)
    assert list(first.test.speakers) == ["s2", "s2"]
    pipeline.save_frame_cache(cache, path)

    def no_recompute(self, u, *args):
        raise AssertionError(f"frames of {u.utterance_id} recomputed despite the cache")

    with monkeypatch.context() as m:  # a hit: every frame from the file, the same windows
        m.setattr(Preprocessor, "_frames", no_recompute)
        again = pipeline.prepare_fold(cfg, utts, [0, 1], [2, 3], 0, "cpu", progress=False,
                                      frame_cache=pipeline.load_frame_cache(path))
    for a, b in ((first.train, again.train), (first.test, again.test)):
        np.testing.assert_array_equal(a.audio, b.audio)
        np.testing.assert_array_equal(a.video, b.video)
    # another preprocessing setting, or a changed input file (new mtime), is another cache entry
    other = pipeline.frame_cache_path(config(audio_pca=8), utts)
    assert other != path and pipeline.load_frame_cache(other) == {}
    f = root / "s2" / "a" / "u2.avi"  # the utterance's file (Utterance.path)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    touched = pipeline.frame_cache_path(cfg, pipeline.load_utterances(cfg, progress=False))
    assert touched not in (path, other)
    w = f.with_suffix(".wav")  # the sound the reader takes instead of the video's own
    os.utime(w, ns=(w.stat().st_atime_ns, w.stat().st_mtime_ns + 10**9))
    assert pipeline.frame_cache_path(cfg, pipeline.load_utterances(cfg, progress=False)) not in (path, other, touched)


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


def test_a_pickled_preprocessor_leaves_its_frame_cache_behind():
    """A Ray task's fold is a pickled copy: it must not carry the experiment's whole frame memo, and
    it must still transform (computing the frames it needs) exactly as the original does."""
    import pickle

    train = corpus()
    cache = {}
    pre = Preprocessor(PrepConfig(**SMALL), device="cpu", n_workers=1, frame_cache=cache).fit(train, progress=False)
    assert len(cache) == len(train)
    blob = pickle.dumps(pre)
    copy = pickle.loads(blob)
    assert copy.frame_cache is None and pre.frame_cache is cache and len(cache) == len(train)
    assert len(blob) < len(pickle.dumps(cache))  # the frames really were left out
    a, b = pre.transform(train, progress=False), copy.transform(train, progress=False)
    assert np.array_equal(a.video, b.video) and np.array_equal(a.audio, b.audio)


def test_whitening_on_extra_utterances_skips_the_unusable_and_keeps_the_corpus_classes():
    train = corpus()
    own = Preprocessor(PrepConfig(**SMALL), device="cpu", n_workers=1).fit(train, progress=False)
    extra = [utt("z", "x", seed=20 + i, uid=f"extra/{i}") for i in range(2)]
    short = utt("z", "x", T=2, seed=30, uid="extra/short")  # too short for a window
    pre = Preprocessor(PrepConfig(**SMALL), device="cpu", n_workers=1)
    with pytest.warns(UserWarning, match="skipped 1"):
        pre.fit(train, progress=False, extra_whitening=extra + [short])
    assert pre.skipped == [] and pre.label_names == own.label_names == ["a", "b"]
    assert not np.allclose(pre.video_whitener.state_dict()["mean"], own.video_whitener.state_dict()["mean"])
    with pytest.warns(UserWarning, match="none of the 1 extra recordings is usable"):
        alone = Preprocessor(PrepConfig(**SMALL), device="cpu", n_workers=1).fit(train, progress=False,
                                                                                  extra_whitening=[short])
    for k, v in own.video_whitener.state_dict().items():  # the corpus' own whitening
        np.testing.assert_allclose(alone.video_whitener.state_dict()[k], v, rtol=1e-6)


# ---------------------------------------------------------------- the paper's audio front end (issue 9)
def speech_like(label, speaker, seed, T=30, fps=25.0, rate=16000):
    """A tone whose pitch glides (so frames and their derivatives vary) plus noise, with a moving bar."""
    u = utt(label, speaker, T=T, fps=fps, rate=rate, seed=seed)
    rng = np.random.default_rng(seed + 100)
    t = np.arange(len(u.audio)) / rate
    f = (300 if label == "a" else 900) * (1 + 0.5 * t) + 40 * seed
    u.audio = (0.3 * np.sin(2 * np.pi * np.cumsum(f) / rate) * (1 + np.sin(2 * np.pi * 3 * t))
               + 0.02 * rng.normal(size=t.size)).astype(np.float32)
    return u


def speech_corpus(n_speakers=4, reps=3, T=30):
    return [speech_like(l, f"s{s}", seed=10 * s + 3 * r + (l == "b"), T=T)
            for s in range(n_speakers) for l in ("a", "b") for r in range(reps)]


def test_paper_front_end_483_dims_before_pca():
    pre = Preprocessor(PrepConfig(audio_pca=20, video_pca=5), device="cpu", n_workers=1)
    u = speech_like("a", "s1", seed=1)
    spec = pre.frames(u)[0]
    assert spec.shape[1] == 161  # 20 ms window at 16 kHz
    X = pre.audio_input(spec, u)
    assert X.shape == (spec.shape[0], 483) and X.dtype == np.float32
    # mean normalisation over time: every static dimension averages zero over the utterance
    np.testing.assert_allclose(X[:, :161].mean(0), 0, atol=1e-4)
    # the derivatives are those of the raw spectrogram (a constant offset does not change them)
    from data_prep.windows import deltas
    np.testing.assert_allclose(X[:, 161:], deltas(spec, 2)[:, 161:], atol=1e-4)
    pre.fit(speech_corpus(2, 2), progress=False)
    assert pre.audio_whitener.n_features == 483 and pre.audio_whitener.n_components == 20


def test_ten_audio_frames_per_window():
    from data_prep.windows import audio_window_offsets, av_windows

    # 4 video frames at 25 fps span 16 audio frames at 100/s; 10 of them are kept, first and last included
    np.testing.assert_array_equal(audio_window_offsets(16, 10), [0, 2, 3, 5, 7, 8, 10, 12, 13, 15])
    a = np.arange(100, dtype=np.float32)[:, None]  # audio frame j holds the number j
    v = np.zeros((25, 1), np.float32)
    aw, vw = av_windows(a, v, 25.0, 100.0, 4, 1, pool=False, audio_window_frames=10)
    assert aw.shape == (22, 10) and vw.shape == (22, 4)
    np.testing.assert_array_equal(aw[0], [0, 2, 3, 5, 7, 8, 10, 12, 13, 15])
    np.testing.assert_array_equal(aw[5], 20 + aw[0])  # window 5 starts at video frame 5 = 200 ms
    # a fitted preprocessor's windows: 10 audio frames of audio_pca dims each
    train = speech_corpus(2, 2)
    ds = Preprocessor(PrepConfig(audio_pca=12, video_pca=5), device="cpu", n_workers=1).fit(
        train, progress=False).transform(train, progress=False)
    assert ds.audio.shape[1] == 10 * 12


@pytest.mark.parametrize("legacy_audio", [False, True])
def test_every_gaussian_rbm_input_has_unit_variance(legacy_audio):
    """Audio and video windows of the training set: every dimension's variance is 1 (within 20 %),
    derivative blocks included (issue 9: they used to sit near 0.1).

    Whitening and derivative scales are fitted on frames; windows sample an utterance's first and
    last frames less often than its middle ones, so on short clips a component that captures
    utterance edges drifts from 1 in the windows (30-frame clips: 0.55-2.0 for one such component);
    60-frame clips keep every dimension within 20 % and the average within 5 %."""
    extra = dict(audio_pool_to_video=True, audio_deltas_before_pca=False, audio_deltas=1,
                 audio_mean_norm=False) if legacy_audio else {}
    train = speech_corpus(T=60)
    pre = Preprocessor(PrepConfig(audio_pca=12, video_pca=6, **extra), device="cpu", n_workers=1).fit(
        train, progress=False)
    ds = pre.transform(train, progress=False)
    for name, X in (("audio", ds.audio), ("video", ds.video)):
        var = X.var(axis=0)
        assert 0.8 < var.min() and var.max() < 1.2 and abs(var.mean() - 1) < 0.05, (name, var.min(), var.max())
    assert pre.video_delta_scale.shape == (6,) and (pre.video_delta_scale < 0.9).all()  # were not unit before
    assert (pre.audio_delta_scale is not None) == legacy_audio
    # without the scaling the video derivative dimensions are far from unit variance
    raw = Preprocessor(PrepConfig(audio_pca=12, video_pca=6, scale_deltas=False, **extra), device="cpu",
                       n_workers=1).fit(train, progress=False).transform(train, progress=False)
    assert raw.video.reshape(len(raw), 4, 12)[:, :, 6:].var(axis=0).max() < 0.8


def test_delta_scales_are_saved_with_the_preprocessor(tmp_path):
    train = speech_corpus(2, 2)
    pre = Preprocessor(PrepConfig(audio_pca=12, video_pca=5), device="cpu", n_workers=1).fit(train, progress=False)
    back = Preprocessor.load(pre.save(tmp_path / "p.npz"), device="cpu")
    np.testing.assert_array_equal(back.video_delta_scale, pre.video_delta_scale)
    a, b = pre.transform(train, progress=False), back.transform(train, progress=False)
    np.testing.assert_allclose(a.video, b.video, atol=1e-6)
    np.testing.assert_allclose(a.audio, b.audio, atol=1e-5)


def test_fit_skips_a_truncated_wav_instead_of_aborting(tmp_path):
    """A folder corpus with one truncated WAV (100 bytes beside a 0.88 s video): the fit goes on
    without it and lists it."""
    vids = {}
    for i, (spk, lab) in enumerate([("s1", "a"), ("s1", "b"), ("s2", "a"), ("s2", "b")]):
        d = tmp_path / spk / lab
        d.mkdir(parents=True)
        u = utt(lab, spk, T=22, rate=16000, seed=i)
        write_video(d / "u0.avi", u.video, 25.0)
        sf.write(d / "u0.wav", u.audio, 16000)
        vids[spk, lab] = d
    bad = vids["s2", "b"] / "u0.wav"
    bad.write_bytes(bad.read_bytes()[:100])
    utts = read_folder(tmp_path, progress=False)  # decodes: the problem shows only against the video
    assert len(utts) == 4
    pre = Preprocessor(PrepConfig(**SMALL), device="cpu", n_workers=1)
    with pytest.raises(DataError, match="video lasts 0.880 s"):
        pre.fit(utts, progress=False)
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        pre.fit(utts, progress=False, strict=False)
    assert [d["utterance_id"] for d in pre.skipped] == ["s2/b/u0"]
    assert "video lasts 0.880 s" in pre.skipped[0]["reason"]
    with pytest.warns(UserWarning):
        ds = pre.transform(utts, progress=False, strict=False)
    assert ds.n_utterances == 3 and "s2/b/u0" not in set(ds.utterance_ids)


def test_preprocessor_saved_before_the_new_front_end_still_loads(tmp_path):
    """Files written before issue 9 have no audio_deltas_before_pca key: they load with the previous front end."""
    import json

    legacy = dict(audio_pool_to_video=True, audio_deltas_before_pca=False, audio_deltas=1, audio_mean_norm=False,
                  scale_deltas=False, audio_window_frames=0)
    train = corpus()
    pre = Preprocessor(PrepConfig(**SMALL, **legacy), device="cpu", n_workers=1).fit(train, progress=False)
    path = pre.save(tmp_path / "p.npz")
    with np.load(path) as z:
        arrays = dict(z)
    old = json.loads(str(arrays["cfg_json"]))
    for k in legacy:
        if k != "audio_pool_to_video":
            old.pop(k)
    arrays["cfg_json"] = np.array(json.dumps(old))
    np.savez(tmp_path / "old.npz", **arrays)
    back = Preprocessor.load(tmp_path / "old.npz", device="cpu")
    assert back.cfg.audio_deltas_before_pca is False and back.cfg.audio_mean_norm is False
    np.testing.assert_allclose(back.transform(train, progress=False).audio, pre.transform(train, progress=False).audio,
                               atol=1e-5)
