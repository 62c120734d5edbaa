"""The fast CD step that ``RBM.fit`` uses by default trains the same model as the reference step
(``RBM.reference_step``, the update as written in the papers).

Tolerances (CPU, float32): one step of either equals the textbook formulas to 1e-6; whole fits
(several epochs, every sampling variant) agree to 1e-5, because both steps consume the same random
draws in the same order and differ only in float rounding; bf16 autocast agrees with the fp32
reference within 10 % on the final reconstruction error and 0.05 mean absolute difference of the
hidden features (bf16 keeps ~3 significant digits and sampled hidden states flip where a
probability lands within that error of its uniform draw).
"""
import numpy as np
import pytest
import torch

from bimodal.errors import ConfigError
from bimodal.options import CDOptions
from bimodal.rbm import RBM, effective_sparsity_cost
from helpers import binary_prototypes, gaussian


SPARSE = dict(sparsity_target=0.05, sparsity_cost=10.0)
CASES = {
    "gaussian CD-1 sparse": dict(visible="gaussian", lr=5e-3, **SPARSE),
    "bernoulli CD-1 sparse": dict(visible="bernoulli", **SPARSE),
    "bernoulli CD-3 sparse": dict(visible="bernoulli", k=3, **SPARSE),
    "gaussian CD-2": dict(visible="gaussian", lr=5e-3, k=2),
    "bernoulli PCD sparse": dict(visible="bernoulli", persistent=True, **SPARSE),
    "gaussian PCD-2": dict(visible="gaussian", lr=2e-3, persistent=True, k=2),
    "bernoulli CD-1 sampled visibles": dict(visible="bernoulli", sample_visible=True),
}


def _model(params):
    return RBM(24, 16, device="cpu", seed=3, weight_decay=1e-3, **params)


def _data(params, n=200):
    return binary_prototypes(n) if params["visible"] == "bernoulli" else gaussian(n)


# ---------------------------------------------------------------- one step == the formulas
@pytest.mark.parametrize("update", ["reference", "fused"])
@pytest.mark.parametrize("sparsity", [None, 0.1])
def test_one_cd1_step_equals_the_textbook_update(update, sparsity):
    params = dict(visible="bernoulli", lr=0.05, sparsity_target=sparsity, sparsity_cost=0.5 if sparsity else 0.0)
    rbm = _model(params)
    v0 = torch.as_tensor(binary_prototypes(20))
    rbm.vel_W.normal_(0, 1e-3, generator=torch.Generator().manual_seed(1))  # non-zero momentum state
    before = {k: t.clone() for k, t in rbm.state_dict().items()}
    noise = torch.rand(20, 16, generator=torch.Generator().manual_seed(2))
    lr, momentum = 0.05, 0.7
    step = rbm.reference_step if update == "reference" else rbm.contrastive_divergence
    recon = step(v0, lr, momentum, torch.Generator().manual_seed(0), noise)

    # The update written out with the public conditionals and RBM.gradient.
    ref = _model(params)
    ref.load_state_dict(before)
    h0 = ref.hidden_prob(v0)
    v1 = ref.visible_mean((noise < h0).float())
    h1 = ref.hidden_prob(v1)
    dW, db_v, db_h = ref.gradient(v0, h0, v1, h1)
    vel_W = momentum * ref.vel_W + lr * (dW - 1e-3 * ref.W)
    vel_b_v = momentum * ref.vel_b_v + lr * db_v
    vel_b_h = momentum * ref.vel_b_h + lr * db_h
    if sparsity:
        q = 0.9 * ref.hidden_mean + 0.1 * h0.mean(0)
        vel_b_h = vel_b_h + lr * 0.5 * (sparsity - q)
        torch.testing.assert_close(rbm.hidden_mean, q, atol=1e-6, rtol=0)
    torch.testing.assert_close(rbm.vel_W, vel_W, atol=1e-6, rtol=0)
    torch.testing.assert_close(rbm.W, ref.W + vel_W, atol=1e-6, rtol=0)
    torch.testing.assert_close(rbm.b_v, ref.b_v + vel_b_v, atol=1e-6, rtol=0)
    torch.testing.assert_close(rbm.b_h, ref.b_h + vel_b_h, atol=1e-6, rtol=0)
    assert float(recon) == pytest.approx(float(((v0 - v1) ** 2).sum()), rel=1e-5)


# ---------------------------------------------------------------- whole fits: fused == reference
@pytest.mark.parametrize("case", list(CASES))
def test_fused_fit_equals_reference_fit(case):
    params = CASES[case]
    X = _data(params, n=190)  # 190 rows: a short last batch (PCD advances only its first chains)
    ref = _model(params).fit(X, epochs=4, batch_size=20, seed=7, update="reference")
    fused = _model(params).fit(X, epochs=4, batch_size=20, seed=7)
    assert not torch.allclose(ref.W, _model(params).W, atol=1e-3)  # it learnt something to compare
    for name, tensor in ref.state_dict().items():
        torch.testing.assert_close(fused.state_dict()[name], tensor, atol=1e-5, rtol=1e-4, msg=name)
    np.testing.assert_allclose(fused.history, ref.history, rtol=1e-5)


@pytest.mark.parametrize("update", ["reference", "fused"])
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_bf16_autocast_agrees_with_fp32_reference(visible, update):
    params = dict(visible=visible, lr=0.05 if visible == "bernoulli" else 5e-3, **SPARSE)
    X = _data(params, n=240)
    ref = _model(params).fit(X, epochs=4, batch_size=20, update="reference")
    bf16 = _model(params).fit(X, epochs=4, batch_size=20, update=update, autocast_dtype=torch.bfloat16)
    assert bf16.W.dtype == torch.float32  # parameters stay fp32
    assert not torch.equal(bf16.W, ref.W)  # the low-precision path really ran
    assert bf16.history[-1] == pytest.approx(ref.history[-1], rel=0.1)
    assert np.abs(bf16.transform(X) - ref.transform(X)).mean() < 0.05


# ---------------------------------------------------------------- options
def test_options_object_and_keywords_train_the_same_model():
    X = binary_prototypes(200)
    by_keywords = _model(CASES["bernoulli CD-1 sparse"]).fit(X, epochs=2, batch_size=25, seed=1)
    options = CDOptions(epochs=2, batch_size=50, seed=1)
    by_object = _model(CASES["bernoulli CD-1 sparse"]).fit(X, options=options, batch_size=25)  # keyword wins
    assert torch.equal(by_object.W, by_keywords.W) and by_object.history == by_keywords.history
    assert options.batch_size == 50  # frozen: the override made a new object


@pytest.mark.parametrize("kwargs,match", [(dict(update="fast"), "update"),
                                          (dict(update="reference", compile=True), "compile"),
                                          (dict(epoch=3), "unknown training option"),
                                          (dict(batch_size=0), "batch_size"),
                                          (dict(options=dict(epochs=3)), "CDOptions")])
def test_bad_training_options_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _model(CASES["bernoulli CD-1 sparse"]).fit(binary_prototypes(200), **kwargs)


def test_autocast_dtype_given_by_name_is_normalised():
    assert CDOptions(autocast_dtype="bf16").autocast_dtype is torch.bfloat16


@pytest.mark.parametrize("update", ["reference", "fused"])
def test_sparsity_term_weighs_as_cost_over_one_minus_momentum(update, monkeypatch):
    """The sparsity pull rides on the momentum: held steady, it moves the hidden biases by
    lr * cost / (1 - m) * (target - q) per step, Lee et al.'s separate step with that weight."""
    lr, cost, m, target = 0.05, 0.5, 0.9, 0.1
    # decay 1: q stays where it starts, so the pull is constant
    rbm = RBM(24, 16, visible="bernoulli", lr=lr, weight_decay=0.0, sparsity_target=target, sparsity_cost=cost,
              sparsity_decay=1.0, device="cpu", seed=3)
    rbm.hidden_mean.fill_(0.3)
    # Both phases equal: the CD terms cancel exactly and only the sparsity term moves anything.
    monkeypatch.setattr(rbm, "gibbs_phases", lambda v0, g, noise=None: (
        torch.zeros(len(v0), 16), v0, v0, torch.zeros(len(v0), 16)))
    step = rbm.reference_step if update == "reference" else rbm.contrastive_divergence
    v0 = torch.as_tensor(binary_prototypes(20))
    g = torch.Generator().manual_seed(0)
    W0 = rbm.W.clone()
    for _ in range(150):
        before = rbm.b_h.clone()
        step(v0, lr, m, g)
    per_step = rbm.b_h - before
    expected = lr * effective_sparsity_cost(cost, m) * (target - 0.3)
    torch.testing.assert_close(per_step, torch.full_like(per_step, expected), rtol=1e-4, atol=0)
    torch.testing.assert_close(rbm.W, W0)  # nothing else moved
    assert effective_sparsity_cost(10.0, 0.5) == pytest.approx(20.0)
    with pytest.raises(ConfigError, match="momentum"):
        effective_sparsity_cost(1.0, 1.0)
