"""The convolutional video front end: bimodal.conv_frontend.ConvFrameAutoencoder and
``PrepConfig(video_frontend="conv")`` in data_prep.dataset. Tiny frames (16x20, a few channels),
fixed seeds, CPU."""
import numpy as np
import pytest
import torch

from bimodal.conv_frontend import ConvFrameAutoencoder
from bimodal.errors import ConfigError, DataError, ShapeError, TrainingDivergedError
from bimodal.persist import Persistable
from data_prep.dataset import PrepConfig, Preprocessor
from data_prep.readers import Utterance

SHAPE = (16, 20)
SMALL = dict(audio_pca=10, video_pca=5, sample_rate=8000, roi_size=SHAPE, mouth_roi="never")
CONV = dict(SMALL, video_frontend="conv", conv_code_dim=8, conv_epochs=2, conv_batch_size=32)


def ellipse_frames(n, shape=SHAPE, seed=0, moving=False):
    """(n, H, W) float32 in [0, 1]: a dark soft-edged ellipse on a brightness gradient, plus noise.

    Independent random ellipses per frame, or (``moving``) one ellipse that drifts sideways and
    opens and closes like a mouth over the frames.
    """
    rng = np.random.default_rng(seed)
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    background = 0.35 + 0.45 * xx / (W - 1) + 0.1 * yy / (H - 1)
    if moving:
        k = np.arange(n)
        phase, drift = rng.uniform(0, 2 * np.pi), rng.uniform(-0.02, 0.02)
        cy = np.full(n, rng.uniform(0.4, 0.6)) * H
        cx = np.clip(rng.uniform(0.35, 0.65) + drift * k, 0.2, 0.8) * W
        ay = (0.18 + 0.1 * np.sin(2 * np.pi * k / 8 + phase)) * H
        ax = np.full(n, rng.uniform(0.2, 0.3)) * W
    else:
        cy, cx = rng.uniform(0.3, 0.7, n) * H, rng.uniform(0.25, 0.75, n) * W
        ay, ax = rng.uniform(0.1, 0.3, n) * H, rng.uniform(0.15, 0.35, n) * W
    r2 = ((yy - cy[:, None, None]) / ay[:, None, None]) ** 2 + ((xx - cx[:, None, None]) / ax[:, None, None]) ** 2
    inside = 1.0 / (1.0 + np.exp(6.0 * (r2 - 1.0)))
    frames = background * (1.0 - 0.85 * inside) + 0.02 * rng.standard_normal((n, H, W))
    return np.clip(frames, 0.0, 1.0).astype(np.float32)


def av_utt(label="a", speaker="s1", T=20, seed=0, fps=25.0, rate=8000):
    """A label-dependent tone and a moving dark ellipse in 16x20 frames (already ROI-sized)."""
    rng = np.random.default_rng(seed + 1000)
    t = np.arange(int(T / fps * rate)) / rate
    f0 = 300 if label == "a" else 900
    audio = (0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.normal(size=t.size)).astype(np.float32)
    video = np.round(ellipse_frames(T, SHAPE, seed, moving=True) * 255).astype(np.uint8)
    uid = f"{speaker}/{label}/{seed}"
    return Utterance(audio, rate, video, fps, label, speaker, uid, f"/synthetic/{uid}.avi")


def corpus():
    return [av_utt(l, s, seed=i) for i, (s, l) in enumerate((s, l) for s in ("s1", "s2") for l in ("a", "b"))]


def model(seed=0, shape=SHAPE, code_dim=8, channels=8):
    return ConvFrameAutoencoder(shape, code_dim=code_dim, channels=channels, device="cpu", seed=seed)


@pytest.fixture(scope="module")
def fitted():
    """A model fitted briefly on 120 random-ellipse frames, and those frames."""
    X = ellipse_frames(120, seed=1)
    return model().fit(X, epochs=2, batch_size=32), X


# ---------------------------------------------------------------------- the model
@pytest.mark.parametrize("shape", [SHAPE, (9, 13), (15, 21)])
def test_shapes_dtypes_and_layouts(shape):
    m = model(shape=shape, code_dim=6, channels=4)
    X = ellipse_frames(5, shape)
    H, W = shape
    assert m.sizes[-1] == (H // 8, W // 8)
    for given in (X, X.reshape(5, H * W)):
        codes = m.transform(given)
        assert isinstance(codes, np.ndarray) and codes.shape == (5, 6) and codes.dtype == np.float32
        rec = m.reconstruct(given)  # the decoder's upsampling restores odd sides exactly
        assert isinstance(rec, np.ndarray) and rec.shape == given.shape and rec.dtype == np.float32
    np.testing.assert_array_equal(m.transform(X), m.transform(X.reshape(5, -1)))
    t = m.transform(torch.from_numpy(X))  # tensor in -> tensor out
    assert isinstance(t, torch.Tensor) and t.shape == (5, 6) and not t.requires_grad
    assert m.transform(X[:0]).shape == (0, 6) and m.reconstruct(X[:0]).shape == (0, H, W)


def test_reconstruction_beats_the_mean_image_on_held_out_frames():
    train, test = ellipse_frames(300, seed=1), ellipse_frames(100, seed=2)
    m = model(channels=16).fit(train, epochs=4, batch_size=32, lr=3e-3)
    mean_image_mse = float(((test - train.mean(0)) ** 2).mean())
    mse = float(((m.reconstruct(test) - test) ** 2).mean())
    assert mse < 0.7 * mean_image_mse, (mse, mean_image_mse)  # measured: 0.55
    assert len(m.history) == 4 and m.history[-1] < 0.5 * m.history[0]
    # the standardisation is the training set's global pixel statistics
    assert float(m.pixel_mean) == pytest.approx(float(train.mean()), rel=1e-5)
    assert float(m.pixel_std) == pytest.approx(float(train.std()), rel=1e-4)


def test_seeds_fix_the_codes():
    X = ellipse_frames(64, seed=3)
    a = model(seed=5).fit(X, epochs=1, batch_size=16).transform(X)
    b = model(seed=5).fit(X, epochs=1, batch_size=16).transform(X)
    c = model(seed=6).fit(X, epochs=1, batch_size=16).transform(X)
    d = model(seed=5).fit(X, epochs=1, batch_size=16, seed=99).transform(X)  # another shuffling seed
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-2 and np.abs(a - d).max() > 1e-4


def test_transform_is_deterministic_and_independent_of_the_batch(fitted):
    m, X = fitted
    assert not m.training  # fit leaves eval mode: batch norm uses its running statistics
    codes = m.transform(X)
    np.testing.assert_array_equal(codes, m.transform(X))
    np.testing.assert_allclose(m.transform(X, batch_size=7), codes, atol=1e-5)
    np.testing.assert_allclose(m.transform(X[:3]), codes[:3], atol=1e-5)  # other frames do not matter
    m.train()  # even if someone switches to training mode, transform runs in eval mode
    np.testing.assert_allclose(m.transform(X[:3]), codes[:3], atol=1e-5)
    assert float(np.abs(codes[0] - codes[1]).max()) > 1e-3  # and the codes do depend on the frame


@pytest.mark.parametrize("bad", [(4, 16, 21), (4, 321), (4, 1, 16, 20), (320,)])
def test_bad_shapes_raise_shape_error_naming_the_field(fitted, bad):
    m, _ = fitted
    with pytest.raises(ShapeError, match=r"\(N, 16, 20\) or \(N, 320\)") as e:
        m.transform(np.zeros(bad, np.float32))
    assert e.value.field == "frames" and "'frames'" in str(e.value)
    with pytest.raises(ShapeError):
        model().fit(np.zeros(bad, np.float32), epochs=1)


def test_bad_settings_and_data_raise_clear_errors(fitted):
    m, X = fitted
    for kwargs, msg in [(dict(frame_shape=(4, 20)), "H, W >= 8"), (dict(frame_shape=(16,)), "frame_shape"),
                        (dict(code_dim=0), "code_dim"), (dict(channels=0), "channels")]:
        with pytest.raises(ConfigError, match=msg):
            ConvFrameAutoencoder(**{"frame_shape": SHAPE, **kwargs}, device="cpu")
    with pytest.raises(ConfigError, match="batch_size >= 1"):
        model().fit(X, epochs=1, batch_size=0)
    with pytest.raises(ConfigError, match="unknown training option"):
        model().fit(X, epoch=1)
    with pytest.raises(ShapeError, match="at least one frame"):
        model().fit(X[:0], epochs=1)
    with pytest.raises(ConfigError, match="batch_size"):
        m.transform(X, batch_size=0)
    bad = X.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        m.transform(bad)


def test_a_non_finite_loss_raises_training_diverged():
    with pytest.raises(TrainingDivergedError, match="epoch 1.*lower learning rate"):
        model().fit(ellipse_frames(32, seed=4), epochs=2, batch_size=16, lr=1e30)


def test_save_load_round_trip(fitted, tmp_path):
    m, X = fitted
    m.save(tmp_path / "conv.pt")
    for back in (ConvFrameAutoencoder.load(tmp_path / "conv.pt", device="cpu"),
                 ConvFrameAutoencoder.from_arrays(m.to_arrays(), device="cpu")):
        assert isinstance(back, ConvFrameAutoencoder) and back.config() == m.config()
        assert back.history == m.history and bool(back.fitted)
        np.testing.assert_array_equal(back.transform(X), m.transform(X))
        np.testing.assert_array_equal(back.reconstruct(X[:4]), m.reconstruct(X[:4]))
    assert type(Persistable.load(tmp_path / "conv.pt", device="cpu")) is ConvFrameAutoencoder


# ---------------------------------------------------------------------- the preprocessing pipeline
# The default "pca" path, recorded with data_prep/dataset.py before the conv front end was added
# (sign-free statistics: PCA eigenvectors have no fixed sign across LAPACK builds).
RECORDED_PCA = {
    "abs_sum": 3061.4624779919395,
    "sq_sum": 3975.4341812577554,
    "abs_rows": [[0.192426, 1.16113, 1.07885, 1.039445, 0.359464, 0.016877],
                 [0.784037, 0.751924, 0.64568, 0.719961, 0.516647, 1.37224],
                 [0.2203, 1.650057, 2.224822, 0.312088, 0.030591, 0.106624]],
    "delta_scale": [0.1437644213438034, 0.11689874529838562, 0.3553926944732666, 0.4002074897289276,
                    0.4720759987831116],
}


def test_the_default_pca_front_end_is_unchanged():
    train = corpus()
    cfg = PrepConfig(**SMALL)
    assert cfg.video_frontend == "pca" and cfg == PrepConfig(**SMALL, video_frontend="pca")
    pre = Preprocessor(cfg, device="cpu", n_workers=1).fit(train, progress=False)
    ds = pre.transform(train + [av_utt("b", "s3", T=24, seed=9)], progress=False)
    assert pre.video_model is None and pre.video_whitener.n_features == SHAPE[0] * SHAPE[1]  # pixels
    V = ds.video.astype(np.float64)
    assert V.shape == (89, 4 * 5 * 2)
    assert float(np.abs(V).sum()) == pytest.approx(RECORDED_PCA["abs_sum"], rel=1e-4)
    assert float((V ** 2).sum()) == pytest.approx(RECORDED_PCA["sq_sum"], rel=1e-4)
    np.testing.assert_allclose(np.abs(V[[0, 40, 80], :6]), RECORDED_PCA["abs_rows"], atol=1e-4)
    np.testing.assert_allclose(pre.video_delta_scale, RECORDED_PCA["delta_scale"], rtol=1e-4)
    vid = pre.frames(train[0])[1]
    assert pre.video_features(vid) is vid  # identity: the whitener sees the pixels
    assert pre.video_window_to_frames(ds.video[:2]).shape == (2, 4, *SHAPE)


def test_conv_front_end_windows_persistence_and_limits(tmp_path):
    train = corpus()
    cfg = PrepConfig(**CONV)
    pre = Preprocessor(cfg, device="cpu", n_workers=1, seed=3).fit(train, progress=False)
    ds = pre.transform(train, progress=False)
    per_frame = cfg.video_pca * (1 + cfg.deltas)
    assert ds.video.shape == (4 * 17, per_frame * cfg.frames_per_window) == (68, 40)
    assert ds.video.dtype == np.float32 and np.isfinite(ds.video).all()
    # The conv model learned on every training frame; the whitener saw its 8-dim codes, not pixels.
    assert isinstance(pre.video_model, ConvFrameAutoencoder) and len(pre.video_model.history) == 2
    assert pre.video_whitener.n_features == 8
    codes = np.concatenate([pre.video_features(pre.frames(u)[1]) for u in train])
    assert codes.shape == (80, 8) and codes.dtype == np.float32
    np.testing.assert_allclose(np.cov(pre.video_whitener.transform(codes), rowvar=False), np.eye(5), atol=0.05)
    # Same seed -> same windows; the audio does not depend on the video front end.
    again = Preprocessor(cfg, device="cpu", n_workers=1, seed=3).fit(train, progress=False).transform(train,
                                                                                                   progress=False)
    np.testing.assert_array_equal(again.video, ds.video)
    pca = Preprocessor(PrepConfig(**SMALL), device="cpu", n_workers=1).fit(train, progress=False)
    np.testing.assert_array_equal(pca.transform(train, progress=False).audio, ds.audio)
    # Saved in the same .npz as the whiteners; the reloaded preprocessor gives the same windows.
    pre.save(tmp_path / "pre.npz")
    back = Preprocessor.load(tmp_path / "pre.npz", device="cpu")
    assert back.cfg == cfg and isinstance(back.video_model, ConvFrameAutoencoder)
    np.testing.assert_array_equal(back.transform(train, progress=False).video, ds.video)
    # No linear way back from whitened codes to pixels.
    with pytest.raises(DataError, match="no linear inverse") as e:
        pre.video_window_to_frames(ds.video[:2])
    assert e.value.field == "video_frontend"
    with pytest.raises(DataError, match="no conv front end is fitted"):
        Preprocessor(cfg, device="cpu").video_features(pre.frames(train[0])[1])


def test_a_conv_preprocessor_file_without_its_model_is_refused(tmp_path):
    train = corpus()
    pre = Preprocessor(PrepConfig(**{**CONV, "conv_epochs": 0}), device="cpu", n_workers=1).fit(train, progress=False)
    pre.video_model = None  # as if written by a version that did not save it
    pre.save(tmp_path / "pre.npz")
    with pytest.raises(DataError, match="holds no conv front end"):
        Preprocessor.load(tmp_path / "pre.npz", device="cpu")


@pytest.mark.parametrize("kwargs,msg", [
    (dict(video_frontend="cnn"), "video_frontend must be one of"),
    (dict(conv_code_dim=0), "conv_code_dim"),
    (dict(conv_epochs=-1), "conv_epochs"),
    (dict(conv_batch_size=0), "conv_batch_size"),
    (dict(conv_batch_size=2.5), "conv_batch_size"),
    (dict(conv_lr=0.0), "conv_lr"),
    (dict(conv_lr=float("nan")), "conv_lr"),
    (dict(video_frontend="conv", video_pca=32, conv_code_dim=16), "video_pca \\(32\\) must be <= conv_code_dim"),
])
def test_prep_config_checks_the_conv_settings(kwargs, msg):
    with pytest.raises(ConfigError, match=msg):
        PrepConfig(**kwargs)


def test_prep_config_round_trips_the_conv_settings():
    cfg = PrepConfig(**CONV, conv_lr=3e-4)
    assert PrepConfig.from_dict(cfg.to_dict()) == cfg
    assert {"video_frontend", "conv_code_dim", "conv_epochs", "conv_batch_size", "conv_lr"} <= set(cfg.to_dict())


def test_extra_frames_train_the_conv_front_end_and_not_the_whiteners(monkeypatch):
    train = corpus()
    seen = []
    fit = ConvFrameAutoencoder.fit

    def recording(self, X, *a, **k):
        seen.append(len(X))
        return fit(self, X, *a, **k)

    monkeypatch.setattr(ConvFrameAutoencoder, "fit", recording)
    extra = ellipse_frames(30, seed=7).reshape(30, -1)
    cfg = PrepConfig(**CONV)
    with_extra = Preprocessor(cfg, device="cpu", n_workers=1, seed=3).fit(train, progress=False, extra_video=extra)
    without = Preprocessor(cfg, device="cpu", n_workers=1, seed=3).fit(train, progress=False)
    assert seen == [80 + 30, 80]  # 4 utterances x 20 frames, plus the extra frames
    # the conv model differs, the whiteners are fitted on the training utterances' frames alone
    assert not np.allclose(with_extra.video_features(train[0].video.reshape(20, -1) / 255.0),
                           without.video_features(train[0].video.reshape(20, -1) / 255.0))
    assert with_extra.video_whitener.n_features == without.video_whitener.n_features == 8
    probe = np.ones((1, without.audio_whitener.n_features))
    np.testing.assert_array_equal(with_extra.audio_whitener.transform(probe), without.audio_whitener.transform(probe))
    # the PCA front end ignores them
    pca = PrepConfig(**SMALL)
    a = Preprocessor(pca, device="cpu", n_workers=1).fit(train, progress=False, extra_video=extra)
    b = Preprocessor(pca, device="cpu", n_workers=1).fit(train, progress=False)
    np.testing.assert_array_equal(a.transform(train, progress=False).video, b.transform(train, progress=False).video)
