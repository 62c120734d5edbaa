"""The autoencoders' per-batch fine-tuning step and their training options."""
import pytest
import torch
import torch.nn.functional as F

from bimodal import BimodalAutoencoder, DeepAutoencoder
from bimodal.autoencoder import fine_tune_step
from bimodal.errors import ConfigError
from bimodal.options import FineTuneOptions
from helpers import paired_data


def test_fine_tune_step_is_one_gradient_descent_step():
    ae = DeepAutoencoder([6, 4, 3], device="cpu", seed=0)
    x = torch.as_tensor(paired_data(n=8, da=6)[0])
    params = list(ae.parameters())
    before = [p.detach().clone() for p in params]
    grads = torch.autograd.grad(F.mse_loss(ae.decoder(ae.encoder(x)), x), params)
    optimizer = torch.optim.SGD(params, lr=0.1)

    loss = fine_tune_step(lambda batch, g: F.mse_loss(ae.decoder(ae.encoder(batch["x"])), batch["x"]),
                          {"x": x}, None, optimizer, "cpu")
    assert not loss.requires_grad
    for p, p0, grad in zip(params, before, grads):
        torch.testing.assert_close(p.detach(), p0 - 0.1 * grad, atol=1e-7, rtol=0)


def test_options_object_and_keywords_fine_tune_the_same_model():
    a, v = paired_data(n=120)

    def model():
        return BimodalAutoencoder([12, 8], [10, 8], 5, device="cpu", seed=0)

    by_keywords = model().fit(a, v, epochs=2, batch_size=30, lr=3e-3, optimizer="sgd")
    options = FineTuneOptions(epochs=2, batch_size=30, lr=3e-3, optimizer="sgd")
    by_object = model().fit(a, v, options=options)
    assert by_object.history == by_keywords.history
    assert all(torch.equal(p, q) for p, q in zip(by_object.parameters(), by_keywords.parameters()))
    assert model().fit(a, v, options=options, lr=1e-2).history != by_keywords.history  # a keyword overrides


@pytest.mark.parametrize("kwargs,match", [(dict(lr=0.0), "lr > 0"), (dict(optimizer="lbfgs"), "optimizer"),
                                          (dict(fraction=(0, 0, 1)), "unknown training option"),
                                          (dict(epochs=-1), "epochs")])
def test_bad_fine_tuning_options_raise_config_error(kwargs, match):
    a, v = paired_data(n=20)
    with pytest.raises(ConfigError, match=match):
        DeepAutoencoder([12, 4], device="cpu").fit(a, **kwargs)
    with pytest.raises(ConfigError, match=match):
        BimodalAutoencoder([12, 8], [10, 8], 5, device="cpu").fit(a, v, **kwargs)
