"""Extra unlabelled audio-visual corpora (``data.extra_av``): fitted to the target's front end, seen by
every unsupervised stage and never by a classifier."""
import dataclasses

import numpy as np
import pytest

from bimodal.errors import ConfigError, DataError, ShapeError
from data_prep.dataset import AVDataset, Preprocessor
from data_prep.extra_av import (ExtraRecording, adapt_to_target, choose_crop_scale, intensity_statistics,
                                match_intensity, read_extra_recordings, standardised_mean)
from data_prep.mouth_roi import crop_boxes
from data_prep.utterance import Utterance
from experiments import pipeline
from experiments.config import prep_config
from media import write_av
from test_experiments import tiny_config


def _faces(T=6, H=120, W=160, seed=0):
    """Frames with a dark ellipse (a 'mouth') at the centre that opens and closes, on a gradient."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((T, H, W), np.uint8)
    base = np.tile(np.linspace(90, 170, W), (H, 1))
    for t in range(T):
        f = base.copy()
        cv2.ellipse(f, (W // 2, H // 2), (W // 6, 4 + 3 * (t % 3)), 0, 0, 360, 30, -1)
        out[t] = np.clip(f + rng.normal(0, 3, f.shape), 0, 255).astype(np.uint8)
    return out


def _recording(frames, uid="s/a"):
    T, H, W = frames.shape
    u = Utterance(np.zeros(16000 * T // 25, np.float32), 16000, frames, 25.0, "(unlabelled)", "s", uid, uid)
    return ExtraRecording.in_memory(u, np.tile([W / 2, H / 2, W / 2, W / 2 * 0.75], (T, 1)))


def test_match_intensity_sets_every_crop_to_the_target_statistics():
    crops = np.random.default_rng(0).integers(0, 120, (5, 12, 16)).astype(np.uint8)
    out = match_intensity(crops, mean=140.0, std=20.0)
    assert out.dtype == np.uint8 and out.shape == crops.shape
    m, s = intensity_statistics(out)
    assert m == pytest.approx(140.0, abs=0.6) and s == pytest.approx(20.0, abs=0.6)
    # each crop, not only the average
    assert np.allclose(out.reshape(5, -1).mean(1), 140.0, atol=0.6)


def test_crop_scale_is_the_one_that_made_the_target():
    frames = _faces()
    rec = _recording(frames)
    boxes = rec.boxes.copy()
    boxes[:, 2:] *= 0.8
    target = crop_boxes(frames, boxes, (30, 40))
    scale, distances = choose_crop_scale(target, [rec], (30, 40))
    assert scale == 0.8
    assert distances[0.8] < 0.05 < min(d for s, d in distances.items() if s != 0.8)


def test_adapted_crops_have_the_target_size_and_intensities_and_keep_the_waveform():
    frames = _faces()
    target = (crop_boxes(frames, _recording(frames).boxes, (30, 40)) * 0.5 + 40).astype(np.uint8)
    utts, info = adapt_to_target([_recording(frames)], target, (30, 40), audio_features_rate=None, progress=False)
    (u,) = utts
    assert u.video.shape == (6, 30, 40) and u.video.dtype == np.uint8
    assert u.audio is not None and u.audio_features is None  # the target has waveforms: kept
    assert u.utterance_id == "extra/s/a" and u.label == "(unlabelled)" and u.speaker == "extra:s"
    assert info.scale == 1.0 and info.n_recordings == 1
    assert intensity_statistics(u.video)[0] == pytest.approx(intensity_statistics(target)[0], abs=1.0)
    # the target's mean image is matched closely once scale and intensity agree
    assert np.sqrt(((standardised_mean(u.video) - standardised_mean(target)) ** 2).mean()) < 0.05


def test_windows_join_and_refuse_other_sizes():
    a = AVDataset(np.ones((3, 4), np.float32), np.ones((3, 2), np.float32), np.array([0, 0, 1]), np.array([0, 1]),
                  np.array(["s1", "s2"], dtype=object), np.array(["u1", "u2"], dtype=object), ["x", "y"])
    b = AVDataset(np.zeros((2, 4), np.float32), np.zeros((2, 2), np.float32), np.array([0, 0]), np.array([0]),
                  np.array(["e"], dtype=object), np.array(["extra/e"], dtype=object), ["(unlabelled)"])
    ab = a.concat(b)
    assert ab.audio.shape == (5, 4) and ab.video.shape == (5, 2) and ab.n_utterances == 3
    assert ab.utt.tolist() == [0, 0, 1, 2, 2]
    assert ab.label_names == ["x", "y", "(unlabelled)"] and ab.labels.tolist() == [0, 1, 2]
    with pytest.raises(ShapeError, match="join"):
        a.concat(dataclasses.replace(b, audio=np.zeros((2, 5), np.float32)))


def test_extra_av_config_is_checked():
    for bad in ({"extra_av_scale": -1.0}, {"extra_av_scale": float("nan")}, {"extra_av_track_every": 0},
                {"extra_av": [""]}):
        with pytest.raises(ConfigError, match="extra_av"):
            tiny_config("/nonexistent", data=bad)


def test_missing_extra_av_folder_names_the_key(tmp_path):
    with pytest.raises(DataError, match="data.extra_av"):
        read_extra_recordings(tmp_path / "nope", progress=False)


@pytest.fixture(scope="module")
def extra_corpus(tmp_path_factory):
    """Three full-frame 'talking' clips with a sound track, in the folder layout."""
    root = tmp_path_factory.mktemp("extra")
    rng = np.random.default_rng(1)
    for i in range(3):
        folder = root / "x" / "any"
        folder.mkdir(parents=True, exist_ok=True)
        t = np.arange(16000) / 16000
        audio = (0.3 * np.sin(2 * np.pi * (300 + 100 * i) * t) + 0.01 * rng.normal(size=t.size))[None]
        write_av(folder / f"c{i}.mp4", _faces(T=25, seed=i), audio=audio)
    return root


def test_extra_recordings_are_decoded_when_used_and_not_kept(tmp_path, extra_corpus, monkeypatch):
    """A corpus of any size fits: reading tracks each recording and lets its video go; a second
    read takes the boxes from the cache without decoding; adapting decodes each one again."""
    import data_prep.readers as readers

    decoded = []
    read_entry = readers._read_entry
    monkeypatch.setattr(readers, "_read_entry", lambda e: decoded.append(e.utterance_id) or read_entry(e))
    recs = read_extra_recordings(extra_corpus, (30, 40), cache_dir=tmp_path, progress=False)
    assert sorted(decoded) == sorted(r.utterance_id for r in recs) and len(recs) == 3
    assert all(r.boxes.shape == (25, 4) for r in recs)
    assert not any(isinstance(v, np.ndarray) and v.ndim == 3 for r in recs for v in vars(r).values())
    decoded.clear()
    again = read_extra_recordings(extra_corpus, (30, 40), cache_dir=tmp_path, progress=False)
    assert decoded == []  # boxes from the cache
    for a, b in zip(recs, again):
        np.testing.assert_array_equal(a.boxes, b.boxes)
    target = np.concatenate([crop_boxes(r.load().video, r.boxes, (30, 40)) for r in recs])
    decoded.clear()
    utts, info = adapt_to_target(again, target, (30, 40), scale=1.0, progress=False)
    assert sorted(decoded) == sorted(r.utterance_id for r in recs)  # once each, for its crops
    assert [u.video.shape for u in utts] == [(25, 30, 40)] * 3


@pytest.mark.parametrize("scale", [1.0, 0.0])  # 0: the recording is also among those that choose the scale
def test_a_recording_that_changed_since_tracking_is_skipped_by_name(scale):
    frames = _faces()
    rec = _recording(frames)
    short = dataclasses.replace(rec, boxes=rec.boxes[:-1], name="clip.mp4")
    with pytest.warns(UserWarning, match="(?s)clip.mp4.*6 frames but 5 tracked boxes"):
        utts, _ = adapt_to_target([short, rec], crop_boxes(frames, rec.boxes, (30, 40)), (30, 40), scale=scale,
                                  progress=False)
    assert len(utts) == 1


def test_box_cache_follows_the_files_and_names_skipped_recordings_again(tmp_path, extra_corpus, monkeypatch):
    import os
    import shutil

    import data_prep.readers as readers

    corpus = tmp_path / "corpus"
    shutil.copytree(extra_corpus, corpus)
    (corpus / "x" / "any" / "broken.mp4").write_bytes(b"not a video")
    decoded = []
    read_entry = readers._read_entry
    monkeypatch.setattr(readers, "_read_entry", lambda e: decoded.append(e.utterance_id) or read_entry(e))
    for _ in range(2):  # tracked, then from the cache: the broken file is named both times
        with pytest.warns(UserWarning, match="(?s)skipped 1 of 4 recordings.*broken.mp4"):
            recs = read_extra_recordings(corpus, (30, 40), cache_dir=tmp_path / "cache", progress=False)
        assert len(recs) == 3
    assert len(decoded) == 4
    clip = corpus / "x" / "any" / "c0.mp4"
    os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 10**9))  # rewritten: tracked again
    decoded.clear()
    with pytest.warns(UserWarning, match="broken.mp4"):
        read_extra_recordings(corpus, (30, 40), cache_dir=tmp_path / "cache", progress=False)
    assert len(decoded) == 4


def test_extra_recordings_reach_every_unsupervised_stage_and_no_classifier(tmp_path, extra_corpus, monkeypatch):
    """A planted marker: the extra recordings' windows are in what the RBMs and the autoencoders
    are fitted on, and in nothing a classifier is fitted or scored on."""
    from bimodal.autoencoder import BimodalAutoencoder
    from bimodal.rbm import RBM
    from experiments.settings import FoldContext, SETTINGS

    cfg = tiny_config(tmp_path / "corpus", data={"extra_av": [str(extra_corpus)], "extra_av_scale": 0.0},
                      experiment={"settings": ["cross_modality"]})
    utts = pipeline.load_utterances(cfg, progress=False)
    tr, te = pipeline.speaker_splits(utts, cfg, 0)[0]
    fold = pipeline.prepare_fold(cfg, utts, tr, te, 0, "cpu", progress=False)
    n_train, n_extra = len(fold.train.audio), len(fold.extra_av.audio)
    assert n_extra == 3 * (25 - 4 + 1)  # every window of the three 1 s clips
    assert fold.extra_av.video.shape[1] == fold.train.video.shape[1]
    assert all(str(i).startswith("extra/") for i in fold.extra_av.utterance_ids)
    assert not any(str(i).startswith("extra/") for ds in (fold.train, fold.test) for i in ds.utterance_ids)
    (info,) = fold.extra_av_info
    assert info["root"] == str(extra_corpus) and info["n_recordings"] == 3 and info["scale"] > 0
    # the whitening is the corpus' own: the same as fitted without any extra corpus
    own = Preprocessor(prep_config(cfg), device="cpu").fit(fold.train_utts, progress=False)
    for mine, theirs in ((fold.prep.audio_whitener, own.audio_whitener), (fold.prep.video_whitener, own.video_whitener)):
        for k, v in theirs.state_dict().items():
            np.testing.assert_allclose(mine.state_dict()[k], v, rtol=1e-6, atol=1e-6)

    seen = {"rbm": [], "ae": [], "clf": []}
    rbm_fit, ae_fit = RBM.fit, BimodalAutoencoder.fit

    def rbm_recording(self, X, *a, **k):
        seen["rbm"].append(int(X.shape[0]))
        return rbm_fit(self, X, *a, **k)

    def ae_recording(self, *a, audio=None, video=None, **k):
        seen["ae"].append(int(video.shape[0]))
        return ae_fit(self, *a, audio=audio, video=video, **k)

    monkeypatch.setattr(RBM, "fit", rbm_recording)
    monkeypatch.setattr(BimodalAutoencoder, "fit", ae_recording)
    models = pipeline.train_feature_models(cfg, fold, 0, "cpu", progress=False)
    # first layers of both modalities and the joint RBM; every autoencoder
    assert seen["rbm"] and all(n == n_train + n_extra for n in seen["rbm"])
    assert seen["ae"] and all(n == n_train + n_extra for n in seen["ae"])

    classify = FoldContext.classify

    def clf_recording(self, Xtr, ytr, groups, Xte, yte):
        seen["clf"].append((len(Xtr), len(Xte), set(map(str, ytr)) | set(map(str, yte))))
        return classify(self, Xtr, ytr, groups, Xte, yte)

    monkeypatch.setattr(FoldContext, "classify", clf_recording)
    SETTINGS["cross_modality"](FoldContext(cfg, fold, models, 0, "cpu", False))
    assert seen["clf"]
    for n_tr, n_te, labels in seen["clf"]:
        assert (n_tr, n_te) == (fold.train.n_utterances, fold.test.n_utterances)
        assert "(unlabelled)" not in labels and labels <= set(cfg.data.labels)


def test_adaptations_are_not_reused_across_preprocessing_settings(tmp_path, extra_corpus, monkeypatch):
    import data_prep.extra_av as extra_av

    calls = []
    adapt = extra_av.adapt_to_target
    monkeypatch.setattr(extra_av, "adapt_to_target", lambda *a, **k: calls.append(1) or adapt(*a, **k))
    cfg = tiny_config(tmp_path / "corpus", data={"extra_av": [str(extra_corpus)]})
    utts = pipeline.load_utterances(cfg, progress=False)
    tr, te = pipeline.speaker_splits(utts, cfg, 0)[0]
    small_roi = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, prep={**cfg.data.prep, "roi_size": [30, 40]}))
    for c in (cfg, cfg, small_roi):
        pipeline.extra_av_corpora(c, Preprocessor(prep_config(c), device="cpu"), [utts[i] for i in tr], progress=False)
    assert len(calls) == 2  # the same settings reuse it; another ROI size adapts again


def test_extra_av_ratio_draws_that_many_windows_per_own_window(tmp_path, extra_corpus):
    cfg = tiny_config(tmp_path / "corpus", data={"extra_av": [str(extra_corpus)], "extra_av_ratio": 0.1},
                      experiment={"settings": ["cross_modality"]})
    utts = pipeline.load_utterances(cfg, progress=False)
    tr, te = pipeline.speaker_splits(utts, cfg, 0)[0]
    folds = [pipeline.prepare_fold(cfg, utts, tr, te, s, "cpu", progress=False) for s in (0, 0, 1)]
    n_train = len(folds[0].train.audio)
    assert len(folds[0].extra_av.audio) == round(0.1 * n_train) < 3 * 22
    assert len(folds[0].learning.audio) == n_train + round(0.1 * n_train)
    np.testing.assert_array_equal(folds[0].extra_av.video, folds[1].extra_av.video)  # seeded by the run's seed
    assert not np.array_equal(folds[0].extra_av.video, folds[2].extra_av.video)


def test_mirrored_crops_join_the_learning_windows_only(tmp_path):
    """data.mirror_video: every learning utterance's crops mirrored left-right, as unlabelled
    windows beside the corpus' own; train and test windows (what classifiers see) and the whitening
    are those of the run without it."""
    cfg = tiny_config(tmp_path / "corpus", experiment={"settings": ["cross_modality"]})
    mirrored = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, mirror_video=True))
    utts = pipeline.load_utterances(cfg, progress=False)
    tr, te = pipeline.speaker_splits(utts, cfg, 0)[0]
    plain = pipeline.prepare_fold(cfg, utts, tr, te, 0, "cpu", progress=False)
    fold = pipeline.prepare_fold(mirrored, utts, tr, te, 0, "cpu", progress=False)
    for a, b in ((plain.train, fold.train), (plain.test, fold.test)):
        np.testing.assert_array_equal(a.video, b.video)
        np.testing.assert_array_equal(a.audio, b.audio)
    assert plain.extra_av is None
    assert len(fold.extra_av.video) == len(fold.train.video)  # one mirrored window per own window
    assert all(str(i).startswith("mirror/") for i in fold.extra_av.utterance_ids)
    assert len(fold.learning.video) == 2 * len(fold.train.video)
    # the same sound, other pixels: mirroring is a change of the video only
    np.testing.assert_array_equal(fold.extra_av.audio, fold.train.audio)
    assert not np.allclose(fold.extra_av.video, fold.train.video)
    u = fold.train_utts[0]
    (m,) = pipeline.mirrored_utterances([u])
    np.testing.assert_array_equal(m.video[:, :, 0], np.asarray(u.video)[:, :, -1])
    assert m.label == "(unlabelled)" and m.utterance_id == f"mirror/{u.utterance_id}"
    audio_only = dataclasses.replace(plain, train_utts=[dataclasses.replace(v, video=None) for v in plain.train_utts])
    with pytest.raises(ConfigError, match="data.mirror_video.*no video"):
        pipeline.with_mirrored_windows(audio_only, progress=False)


def test_whitening_on_both_corpora_is_fitted_on_the_extra_frames_too(tmp_path, extra_corpus):
    """data.extra_av_whitening = "both": the fold's whiteners are those of the corpus' fitting
    utterances and the adapted extra recordings together; the classes and the frame cache stay the
    corpus' own, and the windows the models see are whitened by that basis."""
    from experiments.config import with_overrides

    cfg = tiny_config(tmp_path / "corpus", data={"extra_av": [str(extra_corpus)], "extra_av_whitening": "both"},
                      experiment={"settings": ["cross_modality"]})
    utts = pipeline.load_utterances(cfg, progress=False)
    tr, te = pipeline.speaker_splits(utts, cfg, 0)[0]
    cache: dict = {}
    fold = pipeline.prepare_fold(cfg, utts, tr, te, 0, "cpu", progress=False, frame_cache=cache)
    target = pipeline.prepare_fold(with_overrides(cfg, {"data.extra_av_whitening": "target"}, "test"), utts, tr, te, 0,
                                   "cpu", progress=False)
    train_utts = [utts[i] for i in tr]
    extra_utts, _, _ = pipeline.extra_av_corpora(cfg, Preprocessor(prep_config(cfg), device="cpu"), train_utts,
                                                 progress=False)
    assert len(extra_utts) == 3
    both = Preprocessor(prep_config(cfg), device="cpu").fit(train_utts + extra_utts, progress=False)
    for w, expected, own in ((fold.prep.audio_whitener, both.audio_whitener, target.prep.audio_whitener),
                             (fold.prep.video_whitener, both.video_whitener, target.prep.video_whitener)):
        for k, v in expected.state_dict().items():
            np.testing.assert_allclose(w.state_dict()[k], v, rtol=1e-5, atol=1e-5)
        assert not np.allclose(w.state_dict()["mean"], own.state_dict()["mean"], atol=1e-3)  # the extra frames count
    np.testing.assert_allclose(fold.prep.video_delta_scale, both.video_delta_scale, rtol=1e-5)
    assert fold.prep.label_names == target.prep.label_names == sorted({u.label for u in train_utts})
    assert not any("extra/" in str(k[1]) for k in cache)  # the adapted crops are not cached
    assert len(fold.extra_av.audio) == len(target.extra_av.audio) and not np.allclose(fold.train.video,
                                                                                       target.train.video)


def test_whitening_utterances_reach_the_ratio_with_whole_recordings():
    frames = [(None, np.zeros((10, 4)), 25.0)] * 3  # 30 fitting frames
    extra = [Utterance(np.zeros(8), 16000, np.zeros((n, 2, 2), np.uint8), 25.0, "(unlabelled)", "x", f"e{i}", f"e{i}")
             for i, n in enumerate([5, 12, 7, 20, 9])]
    cfg = tiny_config("/nonexistent", data={"extra_av": ["/x"], "extra_av_whitening": "both", "extra_av_ratio": 1.0})
    for seed in range(10):
        chosen = pipeline.whitening_utterances(cfg, extra, frames, seed)
        order = np.random.default_rng(seed).permutation(len(extra))  # the seeded order they are taken in
        picked = [extra[i] for i in order[:len(chosen)]]
        assert chosen == sorted(picked, key=lambda u: u.utterance_id)  # a prefix of that order, in corpus order
        n = sum(len(u.video) for u in chosen)
        assert n >= 30 and n - len(picked[-1].video) < 30  # stopped at the recording that reached 30 frames
        assert chosen == pipeline.whitening_utterances(cfg, extra, frames, seed)  # seeded
    every = tiny_config("/nonexistent", data={"extra_av": ["/x"], "extra_av_whitening": "both"})
    assert pipeline.whitening_utterances(every, extra, frames, 0) == extra  # ratio 0: every recording
    target = tiny_config("/nonexistent", data={"extra_av": ["/x"]})
    assert pipeline.whitening_utterances(target, extra, frames, 0) is None


def test_extra_av_whitening_config_is_checked():
    with pytest.raises(ConfigError, match="data.extra_av_whitening"):
        tiny_config("/nonexistent", data={"extra_av": ["/x"], "extra_av_whitening": "extra"})
    with pytest.raises(ConfigError, match="names none"):
        tiny_config("/nonexistent", data={"extra_av_whitening": "both"})


def test_tune_whitening_stage_is_a_grid_over_the_folds_it_makes():
    from experiments import tune as tune_mod
    from experiments.config import with_overrides

    cfg = tiny_config("/nonexistent", data={"extra_av": ["/x"]})
    tune_mod.check_grids(cfg, {"whitening": tune_mod.WHITENING_GRID})  # a grid the inner folds can follow
    keys = {tune_mod.prep_key(with_overrides(cfg, o, "test")) for o in tune_mod.candidates(tune_mod.WHITENING_GRID)}
    assert len(keys) == 2  # each whitening gets its own inner folds
    with pytest.raises(ConfigError, match="names none"):  # refused before any training without extra corpora
        tune_mod.check_grids(tiny_config("/nonexistent"), {"whitening": tune_mod.WHITENING_GRID})
    rows = [{"overrides": {"data.extra_av_whitening": w}, "score": s} for w, s in (("target", 0.50), ("both", 0.53))]
    assert tune_mod.choose(rows, "whitening", 208) == {"data.extra_av_whitening": "target"}  # within one SE
