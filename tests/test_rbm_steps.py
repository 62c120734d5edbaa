"""The RBM's one training step, ``RBM.training_step`` (what ``fit`` runs for every batch), is the
update as written in the papers.

Tolerances (CPU, float32): one step equals the textbook formulas to 1e-6 and, with momentum 0 and
no regularisers, ``lr`` times minus the autograd gradient of the free-energy difference to 1e-6;
whole fits (several epochs, every sampling variant) agree with fits of the textbook form
(``benchmarks.rbm_step.TextbookRBM``: gradient tensors first, then decay, sparsity and momentum) to
1e-5, because both consume the same random draws in the same order and differ only in float
rounding; bf16 autocast agrees with the fp32 step within 10 % on the final reconstruction error and
0.05 mean absolute difference of the hidden features (bf16 keeps ~3 significant digits and sampled
hidden states flip where a probability lands within that error of its uniform draw).
"""
import numpy as np
import pytest
import torch

from benchmarks.rbm_step import TextbookRBM
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


def _model(params, cls=RBM):
    return cls(24, 16, device="cpu", seed=3, weight_decay=1e-3, **params)


def _data(params, n=200):
    return binary_prototypes(n) if params["visible"] == "bernoulli" else gaussian(n)


# ---------------------------------------------------------------- one step == the formulas
@pytest.mark.parametrize("sparsity", [None, 0.1])
def test_one_cd1_step_equals_the_textbook_update(sparsity):
    params = dict(visible="bernoulli", lr=0.05, sparsity_target=sparsity, sparsity_cost=0.5 if sparsity else 0.0)
    rbm = _model(params)
    v0 = torch.as_tensor(binary_prototypes(20))
    rbm.vel_W.normal_(0, 1e-3, generator=torch.Generator().manual_seed(1))  # non-zero momentum state
    before = {k: t.clone() for k, t in rbm.state_dict().items()}
    noise = torch.rand(20, 16, generator=torch.Generator().manual_seed(2))
    lr, momentum = 0.05, 0.7
    recon = rbm.training_step(v0, lr, momentum, torch.Generator().manual_seed(0), noise)

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


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("batch", [20, 7])
def test_one_step_follows_the_free_energy_gradient(visible, batch):
    """With momentum 0 and no regularisers a step moves every parameter by
    ``-lr * d/dθ [mean F(v_data) - mean F(v_model)]``, the CD-1 negative phase held fixed
    (autograd through :meth:`RBM.free_energy_t`)."""
    params = dict(visible=visible, lr=0.05)
    rbm = RBM(24, 16, device="cpu", seed=3, weight_decay=0.0, **params)
    rbm.b_v.normal_(0, 0.1, generator=torch.Generator().manual_seed(4))
    rbm.b_h.normal_(0, 0.1, generator=torch.Generator().manual_seed(5))
    v0 = torch.as_tensor(_data(params, n=batch))
    noise = torch.rand(batch, 16, generator=torch.Generator().manual_seed(2))
    before = [p.detach().clone() for p in (rbm.W, rbm.b_v, rbm.b_h)]
    with torch.no_grad():
        _, _, v_neg, _ = rbm.gibbs_phases(v0, torch.Generator().manual_seed(0), noise)
    rbm.training_step(v0, 0.05, 0.0, torch.Generator().manual_seed(0), noise)

    probe = RBM(24, 16, device="cpu", seed=3, weight_decay=0.0, **params)
    leaves = [torch.nn.Parameter(p.clone()) for p in before]  # requires_grad, for autograd
    probe.W, probe.b_v, probe.b_h = leaves
    with torch.enable_grad():
        loss = probe.free_energy_t(v0).mean() - probe.free_energy_t(v_neg).mean()
        grads = torch.autograd.grad(loss, leaves)
    for name, new, old, grad in zip(("W", "b_v", "b_h"), (rbm.W, rbm.b_v, rbm.b_h), before, grads):
        torch.testing.assert_close(new - old, -0.05 * grad, atol=1e-6, rtol=1e-5, msg=name)


def test_training_state_holds_the_parameters_as_one_augmented_matrix():
    """theta = [[W, b_v], [b_h, 0]]: one matmul of augmented rows gives each conditional with its
    bias, a step's corner stays unused, and store() writes everything back."""
    from bimodal.rbm import TrainingState

    rbm = _model(dict(visible="bernoulli", **SPARSE))
    rbm.b_v.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    rbm.b_h.normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
    state = TrainingState(rbm)
    assert state.theta.shape == (25, 17) and state.theta[24, 16] == 0
    torch.testing.assert_close(state.theta[:24, :16], rbm.W, rtol=0, atol=0)
    torch.testing.assert_close(state.theta[:24, 16], rbm.b_v, rtol=0, atol=0)
    torch.testing.assert_close(state.theta[24, :16], rbm.b_h, rtol=0, atol=0)
    v = torch.as_tensor(binary_prototypes(5))
    rows = state.rows(5)
    torch.testing.assert_close(state.hidden(state.augment(v), rows.h0), rbm.hidden_prob(v), atol=1e-6, rtol=0)
    assert torch.equal(rows.h0_aug[:, 16], torch.ones(5))  # the ones column is untouched
    h = (torch.rand(5, 16, generator=torch.Generator().manual_seed(3)) < 0.5).float()
    rows.h_state.copy_(h)
    torch.testing.assert_close(state.visible(rows.h_state_aug, rows.v1), rbm.visible_mean(h), atol=1e-6, rtol=0)
    X = torch.as_tensor(binary_prototypes(40))
    rbm._step(state, state.augment(X[:20]), 0.05, 0.5, torch.Generator().manual_seed(0))
    assert abs(float(state.velocity[24, 16])) < 1e-6  # the phases' batch sizes cancel
    assert not torch.equal(state.W, rbm.W)  # the step trained the state, not yet the model
    state.store(rbm)
    assert torch.equal(state.W, rbm.W) and torch.equal(state.vel_b_h, rbm.vel_b_h)


def _reference_phases(rbm, v0, g, noise, chain):
    """The Gibbs phases written out with the public conditionals, independently of the step's
    buffers: returns (h0, v1, v_neg, h_neg, chain after)."""
    gaussian = rbm.visible == "gaussian"
    sample = rbm.sample_visible or rbm.persistent

    def negative_visible(h):
        mean = rbm.visible_mean(h)
        if not sample:
            return mean
        if gaussian:
            return mean + torch.randn(mean.shape, generator=g)
        return (torch.rand(mean.shape, generator=g) < mean).float()

    h0 = rbm.hidden_prob(v0)
    h_state = (noise < h0).float()
    v1 = rbm.visible_mean(h_state)
    n = len(v0)
    if rbm.persistent:
        chain = h_state.clone() if chain is None or len(chain) < n else chain
        h_state = chain[:n].clone()
    v_neg = negative_visible(h_state) if sample else v1
    for step in range(rbm.k):
        if step > 0:
            v_neg = negative_visible(h_state)
        h_neg = rbm.hidden_prob(v_neg)
        if step < rbm.k - 1 or rbm.persistent:
            h_state = (torch.rand(h_neg.shape, generator=g) < h_neg).float()
    if rbm.persistent:
        chain = chain.clone()
        chain[:n] = h_state
    return h0, v1, v_neg, h_neg, chain


@pytest.mark.parametrize("case", list(CASES))
def test_gibbs_phases_equal_an_independent_sampler(case):
    """Every sampling variant (CD-k, PCD with its chains over a full then a short batch, sampled
    visibles, Gaussian and Bernoulli) draws the same states as the phases written out by hand."""
    params = CASES[case]
    rbm = _model(params)
    rbm.b_v.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    rbm.b_h.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
    rbm.W.normal_(0, 0.3, generator=torch.Generator().manual_seed(3))
    X = torch.as_tensor(_data(params, n=27))
    chain = None
    for i, v0 in enumerate((X[:20], X[20:])):  # 20 rows, then a short batch of 7
        noise = torch.rand(len(v0), 16, generator=torch.Generator().manual_seed(10 + i))
        got = rbm.gibbs_phases(v0, torch.Generator().manual_seed(20 + i), noise)
        *want, chain = _reference_phases(rbm, v0, torch.Generator().manual_seed(20 + i), noise, chain)
        for name, a, b in zip(("h0", "v1", "v_neg", "h_neg"), got, want):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=f"{name}, batch {i}")
        if rbm.persistent:
            torch.testing.assert_close(rbm._chain, chain, atol=0, rtol=0)


# ---------------------------------------------------------------- whole fits == the textbook form
@pytest.mark.parametrize("case", list(CASES))
def test_fit_equals_textbook_form_fit(case):
    params = CASES[case]
    X = _data(params, n=190)  # 190 rows: a short last batch (PCD advances only its first chains)
    ref = _model(params, TextbookRBM).fit(X, epochs=4, batch_size=20, seed=7)
    fit = _model(params).fit(X, epochs=4, batch_size=20, seed=7)
    assert not torch.allclose(ref.W, _model(params).W, atol=1e-3)  # it learnt something to compare
    for name, tensor in ref.state_dict().items():
        torch.testing.assert_close(fit.state_dict()[name], tensor, atol=1e-5, rtol=1e-4, msg=name)
    np.testing.assert_allclose(fit.history, ref.history, rtol=1e-5)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_bf16_autocast_agrees_with_fp32(visible):
    params = dict(visible=visible, lr=0.05 if visible == "bernoulli" else 5e-3, **SPARSE)
    X = _data(params, n=240)
    ref = _model(params).fit(X, epochs=4, batch_size=20)
    bf16 = _model(params).fit(X, epochs=4, batch_size=20, autocast_dtype=torch.bfloat16)
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


@pytest.mark.parametrize("kwargs,match", [(dict(update="reference"), "unknown training option"),
                                          (dict(epoch=3), "unknown training option"),
                                          (dict(batch_size=0), "batch_size"),
                                          (dict(options=dict(epochs=3)), "CDOptions")])
def test_bad_training_options_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _model(CASES["bernoulli CD-1 sparse"]).fit(binary_prototypes(200), **kwargs)


def test_autocast_dtype_given_by_name_is_normalised():
    assert CDOptions(autocast_dtype="bf16").autocast_dtype is torch.bfloat16


def test_sparsity_term_weighs_as_cost_over_one_minus_momentum(monkeypatch):
    """The sparsity pull rides on the momentum: held steady, it moves the hidden biases by
    lr * cost / (1 - m) * (target - q) per step, Lee et al.'s separate step with that weight."""
    lr, cost, m, target = 0.05, 0.5, 0.9, 0.1
    # decay 1: q stays where it starts, so the pull is constant
    rbm = RBM(24, 16, visible="bernoulli", lr=lr, weight_decay=0.0, sparsity_target=target, sparsity_cost=cost,
              sparsity_decay=1.0, device="cpu", seed=3)
    rbm.hidden_mean.fill_(0.3)
    # Both phases equal: the CD terms cancel exactly and only the sparsity term moves anything.
    monkeypatch.setattr(rbm, "_phases", lambda state, rows, v0, g, noise=None: (v0, rows.h0_aug))  # the positive
    v0 = torch.as_tensor(binary_prototypes(20))
    g = torch.Generator().manual_seed(0)
    W0 = rbm.W.clone()
    for _ in range(150):
        before = rbm.b_h.clone()
        rbm.training_step(v0, lr, m, g)
    per_step = rbm.b_h - before
    expected = lr * effective_sparsity_cost(cost, m) * (target - 0.3)
    torch.testing.assert_close(per_step, torch.full_like(per_step, expected), rtol=1e-4, atol=0)
    torch.testing.assert_close(rbm.W, W0)  # nothing else moved
    assert effective_sparsity_cost(10.0, 0.5) == pytest.approx(20.0)
    with pytest.raises(ConfigError, match="momentum"):
        effective_sparsity_cost(1.0, 1.0)


def test_separate_sparsity_step_weighs_as_its_cost(monkeypatch):
    """Lee et al.'s form (sparsity_update="separate"): the pull moves the hidden biases by exactly
    lr * cost * (target - q) per step whatever the momentum, and never enters the velocity."""
    lr, cost, m, target = 0.05, 0.5, 0.9, 0.1
    rbm = RBM(24, 16, visible="bernoulli", lr=lr, weight_decay=0.0, sparsity_target=target, sparsity_cost=cost,
              sparsity_decay=1.0, sparsity_update="separate", device="cpu", seed=3)
    rbm.hidden_mean.fill_(0.3)
    monkeypatch.setattr(rbm, "_phases", lambda state, rows, v0, g, noise=None: (v0, rows.h0_aug))
    v0 = torch.as_tensor(binary_prototypes(20))
    g = torch.Generator().manual_seed(0)
    for step in range(20):
        before = rbm.b_h.clone()
        rbm.training_step(v0, lr, m, g)
        torch.testing.assert_close(rbm.b_h - before, torch.full((16,), lr * cost * (target - 0.3)), rtol=1e-5, atol=0)
    assert torch.count_nonzero(rbm.vel_b_h) == 0
    with pytest.raises(ConfigError, match="sparsity_update"):
        RBM(4, 3, sparsity_update="lee", device="cpu")


def test_config_sparsity_update_reaches_every_rbm():
    from experiments.config import load_config
    from experiments.pipeline import build_bimodal_dbn

    cfg = load_config("experiments/configs/demo.toml", ['pretrain.sparsity_update="separate"'])
    dbn = build_bimodal_dbn(cfg, 6, 8, seed=0, device="cpu")
    rbms = [m for m in dbn.modules() if isinstance(m, RBM)]
    assert len(rbms) >= 3 and {r.sparsity_update for r in rbms} == {"separate"}
    assert RBM(**{**rbms[0].config(), "device": "cpu"}).sparsity_update == "separate"  # saved with the model


def test_paper_avletters_gives_the_first_video_rbm_its_own_sparsity():
    """The video RBM takes the sparsity chosen for it; the joint and audio RBMs every RBM's."""
    from experiments.config import load_config
    from experiments.pipeline import build_bimodal_dbn
    from experiments.report import _sparsity_weight

    cfg = load_config("experiments/configs/paper_avletters.toml")
    dbn = build_bimodal_dbn(cfg, 26, 64, seed=0, device="cpu")
    (video,), (audio,) = dbn.video.layers, dbn.audio.layers
    assert (video.sparsity_target, video.sparsity_cost) == (0.01, 3.0)
    assert (audio.sparsity_target, audio.sparsity_cost) == (0.05, 10.0)
    assert (dbn.joint.sparsity_target, dbn.joint.sparsity_cost) == (0.05, 10.0)
    pt = {"sparsity_target": 0.05, "final_momentum": 0.9}
    assert "10x after" in _sparsity_weight(pt)
    assert "separate step" in _sparsity_weight({**pt, "sparsity_update": "separate"})
