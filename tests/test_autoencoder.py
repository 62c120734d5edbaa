import numpy as np
import pytest
import torch

from bimodal import BimodalAutoencoder, BimodalDBN, DBN, DeepAutoencoder, unroll
from bimodal.errors import ConfigError, ShapeError, TrainingDivergedError
from helpers import paired_data


@pytest.fixture(scope="module")
def data():
    return paired_data(n=400, r=2)


@pytest.fixture(scope="module")
def bimodal_dbn(data):
    a, v = data
    return BimodalDBN([12, 16], [10, 16], joint_hidden=12, first_layer_params={"lr": 5e-3}, device="cpu",
                      seed=0).fit(a, v, epochs=4, batch_size=50)


@pytest.mark.parametrize("tied", [False, True])
def test_unrolled_encoder_equals_dbn_up_pass(data, tied):
    a, _ = data
    dbn = DBN([12, 10, 6], device="cpu", seed=0).fit(a, epochs=2, batch_size=50)
    ae = unroll(dbn, tied=tied)
    x = torch.from_numpy(a)
    assert torch.allclose(ae.encode(x), dbn.transform(x), atol=1e-6)
    assert ae.output == "linear" and ae.reconstruct(a).shape == a.shape
    # Decoder starts as the transposed weights; untied copies are separate parameters.
    assert torch.equal(ae.decoder.weight(0), dbn.layers[1].W.t())
    n_params = sum(p.numel() for p in ae.parameters())
    assert (n_params == 12 * 10 + 10 * 6 + 10 + 6 + 10 + 12) if tied else (n_params > 2 * (12 * 10 + 10 * 6))
    ae.fit(a, epochs=3, batch_size=50, lr=1e-2)
    if not tied:
        assert not torch.equal(ae.decoder.weight(0), ae.encoder.weights[1].t())
    assert ae.history[-1] < ae.history[0]


def test_bimodal_autoencoder_shapes_and_dtypes(bimodal_dbn, data):
    a, v = data
    ae = BimodalAutoencoder.from_dbn(bimodal_dbn)
    assert ae.input_modalities == ("audio", "video")
    # Before fine-tuning the shared code is the joint RBM's hidden probability of the DBN tops.
    assert np.allclose(ae.encode(audio=a, video=v), bimodal_dbn.transform(a, v), atol=1e-6)
    code = ae.encode(audio=torch.from_numpy(a))
    assert isinstance(code, torch.Tensor) and code.shape == (400, 12) and code.dtype == torch.float32
    a_hat, v_hat = ae.reconstruct(video=v)
    assert a_hat.shape == a.shape and v_hat.shape == v.shape and a_hat.dtype == np.float32
    # A missing modality is fed as zeros.
    assert np.array_equal(ae.encode(video=v), ae.encode(audio=np.zeros_like(a), video=v))
    with pytest.raises(ConfigError):
        ae.encode()
    with pytest.raises(ShapeError, match="audio"):
        ae.encode(audio=v)


def test_video_only_autoencoder_from_dbn(bimodal_dbn, data):
    a, v = data
    ae = BimodalAutoencoder.from_dbn(bimodal_dbn, input_modalities=("video",))
    assert list(ae.encoders) == ["video"] and ae.shared_W.shape == (16, 12)
    # The shared layer uses the joint RBM's video half of the weights.
    assert torch.equal(ae.shared_W.detach(), bimodal_dbn.joint.W[16:])
    a_hat, v_hat = ae.reconstruct(video=v)
    assert a_hat.shape == a.shape and v_hat.shape == v.shape
    with pytest.raises(ConfigError, match="only"):
        ae.encode(audio=a)
    ae.fit(a, v, epochs=3, batch_size=50, lr=3e-3)
    assert ae.history[-1] < ae.history[0]


def test_trained_bimodal_autoencoder_crosses_modalities(data):
    a, v = data
    ae = BimodalAutoencoder.random_init([12, 24], [10, 24], shared=16, device="cpu", seed=0)
    ae.fit(a, v, epochs=20, batch_size=50, lr=1e-2)
    a_hat, _ = ae.reconstruct(video=v)
    _, v_hat = ae.reconstruct(audio=a)
    mse_a, mse_v = float(((a_hat - a) ** 2).mean()), float(((v_hat - v) ** 2).mean())
    base_a, base_v = float(((a - a.mean(0)) ** 2).mean()), float(((v - v.mean(0)) ** 2).mean())
    msg = f"audio from video {mse_a:.3f} (mean {base_a:.3f}); video from audio {mse_v:.3f} (mean {base_v:.3f})"
    assert mse_a < 0.7 * base_a and mse_v < 0.7 * base_v, msg
    # Without the zeroed-modality augmentation the model never learns to cope with a missing input.
    plain = BimodalAutoencoder.random_init([12, 24], [10, 24], shared=16, device="cpu", seed=0)
    plain.fit(a, v, epochs=20, batch_size=50, lr=1e-2, fractions=(0, 0, 1))
    mse_a_plain = float(((plain.reconstruct(video=v)[0] - a) ** 2).mean())
    assert mse_a < 0.5 * mse_a_plain, f"{msg}; without augmentation audio from video {mse_a_plain:.3f}"


def test_variational_shared_layer_trains_and_encodes_deterministically(data):
    a, v = data
    ae = BimodalAutoencoder.random_init([12, 16], [10, 16], shared=6, shared_layer="variational", kl_weight=1e-3,
                                        device="cpu", seed=0)
    ae.fit(a, v, epochs=12, batch_size=50, lr=3e-3, corruption=0.1, l1_shared=1e-3)
    assert ae.history[-1] < 0.8 * ae.history[0], ae.history
    c1, c2 = ae.encode(audio=a, video=v), ae.encode(audio=a, video=v)
    assert np.array_equal(c1, c2) and c1.shape == (400, 6)


def test_no_augmentation_and_sgd_options(data):
    a, v = data
    kw = dict(device="cpu", seed=0)
    aug = BimodalAutoencoder.random_init([12, 8], [10, 8], shared=6, **kw).fit(a, v, epochs=3, batch_size=50)
    plain = BimodalAutoencoder.random_init([12, 8], [10, 8], shared=6, **kw).fit(
        a, v, epochs=3, batch_size=50, fractions=(0, 0, 1))
    assert aug.history != plain.history  # augmentation changes what is trained on
    sgd = BimodalAutoencoder.random_init([12, 8], [10, 8], shared=6, **kw).fit(
        a, v, epochs=5, batch_size=25, lr=0.1, optimizer="sgd", momentum=0.9)
    assert sgd.history[-1] < sgd.history[0]
    with pytest.raises(ConfigError, match="optimizer"):
        sgd.fit(a, v, epochs=1, optimizer="lbfgs")
    with pytest.raises(ConfigError, match="fractions"):
        sgd.fit(a, v, epochs=1, fractions=(1, 1, 1))


def test_fine_tuning_divergence_raises(data):
    a, v = data
    ae = BimodalAutoencoder.random_init([12, 8], [10, 8], shared=6, device="cpu", seed=0)
    with pytest.raises(TrainingDivergedError, match="learning rate"):
        ae.fit(a * 1e4, v * 1e4, epochs=5, batch_size=50, lr=1e4, optimizer="sgd", momentum=0.99)


@pytest.mark.parametrize("kwargs", [dict(), dict(tied=True), dict(input_modalities=("audio",)),
                                    dict(shared_layer="variational")])
def test_bimodal_autoencoder_save_load_roundtrip(tmp_path, bimodal_dbn, data, kwargs):
    a, v = data
    ae = BimodalAutoencoder.from_dbn(bimodal_dbn, **kwargs)
    v_in = v if "video" in ae.input_modalities else None
    ae.fit(a, v, epochs=2, batch_size=100)
    ae.save(tmp_path / "ae.pt")
    back = BimodalAutoencoder.load(tmp_path / "ae.pt", device="cpu")
    xa, xv = torch.from_numpy(a), (None if v_in is None else torch.from_numpy(v))
    assert torch.equal(ae.encode(audio=xa, video=xv), back.encode(audio=xa, video=xv))
    assert all(torch.equal(x, y) for x, y in zip(ae.reconstruct(audio=xa, video=xv),
                                                 back.reconstruct(audio=xa, video=xv)))
    assert back.history == ae.history and back.config() == ae.config()


def test_deep_autoencoder_save_load_and_seed(tmp_path, data):
    a, _ = data
    ae1 = DeepAutoencoder([12, 8, 4], device="cpu", seed=5).fit(a, epochs=2, batch_size=50)
    ae2 = DeepAutoencoder([12, 8, 4], device="cpu", seed=5).fit(a, epochs=2, batch_size=50)
    assert ae1.history == ae2.history
    ae1.save(tmp_path / "dae.pt")
    back = DeepAutoencoder.load(tmp_path / "dae.pt", device="cpu")
    assert torch.equal(back.encode(torch.from_numpy(a)), ae1.encode(torch.from_numpy(a)))


def test_shallow_autoencoder_from_rbm_starts_as_the_rbm_and_learns_audio(bimodal_dbn, data):
    """Fig. 2a's shallow video-only autoencoder: its code is the video RBM's hidden layer, its video
    output the RBM's mean reconstruction, and fine-tuning teaches the random audio head."""
    a, v = data
    rbm = bimodal_dbn.video.layers[0]
    ae = BimodalAutoencoder.shallow_from_rbm(rbm, n_other=a.shape[1], modality="video", seed=0)
    assert list(ae.encoders) == ["video"] and ae.sizes == {"audio": [12], "video": [10]}
    np.testing.assert_allclose(ae.encode(video=v), rbm.transform(v), atol=1e-6)
    _, v_hat = ae.reconstruct(video=v)
    expected = rbm.visible_mean(torch.as_tensor(rbm.transform(v))).numpy()
    np.testing.assert_allclose(v_hat, expected, atol=1e-5)  # linear output: Gaussian visibles
    audio_err_before = float(np.mean((ae.reconstruct(video=v)[0] - a) ** 2))
    ae.fit(a, v, epochs=15, batch_size=50, lr=3e-3)
    audio_err_after = float(np.mean((ae.reconstruct(video=v)[0] - a) ** 2))
    assert ae.history[-1] < ae.history[0]
    # the paired data share a latent, so video predicts audio better than predicting the mean
    assert audio_err_after < 0.9 * min(audio_err_before, float(np.mean((a - a.mean(0)) ** 2)))
    with pytest.raises(ConfigError, match="modality"):
        BimodalAutoencoder.shallow_from_rbm(rbm, 12, modality="text")
