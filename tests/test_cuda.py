"""The GPU gives the CPU's numbers (run by benchmarks/device_check.sh: ``pytest -m cuda``).

Skipped without CUDA. ``BIMODAL_TEST_DEVICE=cpu`` runs them against the CPU itself (the
comparisons are then trivially equal; it checks that the tests work where no GPU is lent).
Tolerances: float32 maths on two devices differ by summation order, ~1e-6 relative per matmul;
the float64 gram solvers agree to 1e-8.
"""
import os

import numpy as np
import pytest
import torch

from bimodal.autoencoder import BimodalAutoencoder
from bimodal.classifiers import GramLinearSVM, GramLogisticRegression, select_C
from bimodal.rbm import RBM

DEVICE = os.environ.get("BIMODAL_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                 reason="needs a CUDA device (or BIMODAL_TEST_DEVICE=cpu)")]


@pytest.fixture(autouse=True)
def exact_fp32():
    """TF32 off for the comparisons (some builds default it on for cuDNN / matmuls)."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(old)


def _binary(n=200, d=24, seed=0):
    rng = np.random.default_rng(seed)
    protos = rng.random((4, d)) < 0.4
    X = protos[rng.integers(0, 4, n)]
    return np.where(rng.random((n, d)) < 0.05, ~X, X).astype(np.float32)


def test_rbm_cd_step_matches_cpu():
    v0 = torch.as_tensor(_binary(20))
    noise = torch.rand(20, 16, generator=torch.Generator().manual_seed(2))
    out = {}
    for dev in ("cpu", DEVICE):
        rbm = RBM(24, 16, visible="bernoulli", lr=0.05, sparsity_target=0.1, sparsity_cost=0.5, device=dev, seed=3)
        recon = rbm.training_step(v0.to(dev), 0.05, 0.5, torch.Generator(device=dev).manual_seed(0),
                                  noise.to(dev))
        out[dev] = (float(recon), {k: v.cpu() for k, v in rbm.state_dict().items()})
    assert out[DEVICE][0] == pytest.approx(out["cpu"][0], rel=1e-5)
    for k, v in out["cpu"][1].items():
        torch.testing.assert_close(out[DEVICE][1][k], v, atol=1e-6, rtol=1e-5)


def test_rbm_fit_on_device_learns_like_cpu():
    X = _binary()
    cpu = RBM(24, 16, visible="bernoulli", device="cpu", seed=0).fit(X, epochs=5, batch_size=20)
    dev = RBM(24, 16, visible="bernoulli", device=DEVICE, seed=0).fit(X, epochs=5, batch_size=20)
    assert dev.W.device.type == torch.device(DEVICE).type
    # different random streams per device: same learning curve within sampling noise
    assert dev.history[-1] == pytest.approx(cpu.history[-1], rel=0.15)
    assert dev.history[-1] < dev.history[0]


def test_autoencoder_encode_and_training_step_match_cpu():
    rng = np.random.default_rng(0)
    a, v = rng.standard_normal((64, 10)).astype(np.float32), rng.standard_normal((64, 6)).astype(np.float32)
    cpu = BimodalAutoencoder.random_init([10, 8], [6, 8], 5, device="cpu", seed=0)
    dev = BimodalAutoencoder.random_init([10, 8], [6, 8], 5, device=DEVICE, seed=0)
    np.testing.assert_allclose(dev.encode(audio=a, video=v), cpu.encode(audio=a, video=v), atol=1e-5)
    np.testing.assert_allclose(dev.encode(video=v), cpu.encode(video=v), atol=1e-5)
    # full-batch, no augmentation: no random numbers, so the devices take the same steps
    kw = dict(epochs=3, batch_size=64, fractions=(0.0, 0.0, 1.0), seed=0)
    cpu.fit(audio=a, video=v, **kw)
    dev.fit(audio=a, video=v, **kw)
    np.testing.assert_allclose(dev.history, cpu.history, rtol=1e-4)
    np.testing.assert_allclose(dev.encode(audio=a, video=v), cpu.encode(audio=a, video=v), atol=1e-4)


def test_gram_classifiers_and_C_search_match_cpu():
    rng = np.random.default_rng(1)
    y = np.tile(np.arange(4), 30)
    X = (rng.standard_normal((4, 300))[y] * 0.4 + rng.standard_normal((120, 300))).astype(np.float32)
    groups = np.repeat(np.arange(6), 20)
    for cls in (GramLinearSVM, GramLogisticRegression):
        a = cls(C=0.1, device="cpu").fit(X, y).decision_function(X)
        b = cls(C=0.1, device=DEVICE).fit(X, y).decision_function(X)
        np.testing.assert_allclose(b, a, atol=1e-5)
    _, t_cpu = select_C(X, y, groups, Cs=(0.01, 1.0), backend="gram", device="cpu")
    _, t_dev = select_C(X, y, groups, Cs=(0.01, 1.0), backend="gram", device=DEVICE)
    np.testing.assert_allclose(t_dev["per_fold"], t_cpu["per_fold"], atol=0.02)  # a near-tie may flip one of 40


def test_experiment_features_on_device_match_cpu():
    from bimodal.dbn import BimodalDBN
    from data_prep.dataset import AVDataset
    from experiments import pipeline

    rng = np.random.default_rng(2)
    utt = np.repeat(np.arange(8), rng.integers(1, 7, 8))
    ds = AVDataset(audio=rng.standard_normal((len(utt), 10)).astype(np.float32),
                   video=rng.standard_normal((len(utt), 6)).astype(np.float32), utt=utt, labels=np.arange(8) % 2,
                   speakers=np.array(["s"] * 8), utterance_ids=np.array([str(i) for i in range(8)]),
                   label_names=["a", "b"])
    feats = {}
    for dev in ("cpu", DEVICE):
        models = {"bimodal_dbn": BimodalDBN([10, 8], [6, 8], 5, device=dev, seed=0),
                  "bimodal_dae": BimodalAutoencoder.random_init([10, 8], [6, 8], 5, device=dev, seed=0)}
        codes = pipeline.window_codes(models, ds, ["bimodal_dae.both", "bimodal_dbn.both"])
        assert all(c.device.type == torch.device(dev).type for c in codes.values())
        feats[dev] = {k: pipeline.utterance_features(c, ds, (1, 3)) for k, c in codes.items()}
    for k in feats["cpu"]:
        np.testing.assert_allclose(feats[DEVICE][k], feats["cpu"][k], atol=1e-5)


def test_fast_math_on_device_agrees():
    X = _binary()
    plain = RBM(24, 16, visible="bernoulli", device=DEVICE, seed=0).fit(X, epochs=3, batch_size=20, seed=5)
    tf32 = RBM(24, 16, visible="bernoulli", device=DEVICE, seed=0).fit(X, epochs=3, batch_size=20, seed=5,
                                                                      matmul_precision="high")
    bf16 = RBM(24, 16, visible="bernoulli", device=DEVICE, seed=0).fit(X, epochs=3, batch_size=20, seed=5,
                                                                      autocast_dtype=torch.bfloat16)
    assert np.abs(tf32.transform(X) - plain.transform(X)).mean() < 0.05  # TF32 rounding flips a few samples
    assert bf16.history[-1] == pytest.approx(plain.history[-1], rel=0.1)
    assert np.abs(bf16.transform(X) - plain.transform(X)).mean() < 0.05
