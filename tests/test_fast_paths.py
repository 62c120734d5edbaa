"""The fast-math switches give the same models as plain fp32 eager training (bimodal.fast, issue 4).

Tolerances (CPU, float32) (the RBM's one step against the formulas, and its bf16 run:
tests/test_rbm_steps.py):
* ``matmul_precision="high"`` (TF32 on CUDA; no-op on AVX2 CPUs) agrees to 1e-3;
* bf16 autocast: the final reconstruction error / loss within 10 % relative, and hidden features
  within 0.05 mean absolute difference (bf16 keeps ~3 significant digits, and the sampled hidden
  states flip where a probability lands within that error of its uniform draw);
* ``torch.compile`` (slow: compiles ~20 s on 2 cores) agrees to 1e-4.
No test here times anything.
"""
import json

import numpy as np
import pytest
import torch

from benchmarks.run import autoencoder_flops, bimodal_layers, cd1_flops, read_demo_timings
from bimodal.autoencoder import BimodalAutoencoder, DeepAutoencoder
from bimodal.errors import ConfigError, DataError
from bimodal.fast import check_fast_options, fast_math
from bimodal.rbm import RBM
from helpers import binary_prototypes, count_syncs, gaussian


def _rbm(**kw):
    params = dict(visible="bernoulli", lr=0.05, device="cpu", seed=3)
    params.update(kw)
    return RBM(24, 16, **params)


# ---------------------------------------------------------------- RBM loop (the step itself: test_rbm_steps.py)
def test_fit_makes_one_host_sync_per_epoch(monkeypatch):
    data = binary_prototypes(240)
    calls = count_syncs(monkeypatch, lambda: _rbm().fit(data, epochs=3, batch_size=10), ("tolist", "item", "cpu"))
    assert calls == {"tolist": 3, "item": 0, "cpu": 0}


def test_fit_chunks_give_same_model_as_one_chunk(monkeypatch):
    """Rows are permuted chunk by chunk (bounded memory); the chunk size must not change the maths."""
    import bimodal.rbm as rbm_module

    X = binary_prototypes(240)
    a = _rbm().fit(X, epochs=2, batch_size=10)
    monkeypatch.setattr(rbm_module, "_CHUNK_ELEMENTS", 16 * 10 * 3)  # 3 batches per chunk
    b = _rbm().fit(X, epochs=2, batch_size=10)
    # Same permutation and batches; only the noise draws are split differently, so compare
    # what the data determine: the learnt features on average, and the error curve.
    assert np.allclose(a.history, b.history, rtol=0.1)
    assert np.abs(a.transform(X) - b.transform(X)).mean() < 0.05


# ---------------------------------------------------------------- precision switches
def test_rbm_high_matmul_precision_agrees():
    X = binary_prototypes(240)
    plain = _rbm().fit(X, epochs=3, batch_size=20)
    high = _rbm().fit(X, epochs=3, batch_size=20, matmul_precision="high")
    np.testing.assert_allclose(high.transform(X), plain.transform(X), atol=1e-3)
    assert torch.get_float32_matmul_precision() == "highest"  # restored after fit


def test_autoencoder_bf16_autocast_agrees():
    X = gaussian(200, 12)
    plain = DeepAutoencoder([12, 8, 4], device="cpu").fit(X, epochs=5, batch_size=20, lr=3e-3)
    bf16 = DeepAutoencoder([12, 8, 4], device="cpu").fit(X, epochs=5, batch_size=20, lr=3e-3,
                                                         autocast_dtype="bf16")
    assert plain.history[-1] < plain.history[0]  # it learnt something to compare
    assert bf16.history[-1] == pytest.approx(plain.history[-1], rel=0.1)
    assert np.abs(bf16.encode(X) - plain.encode(X)).mean() < 0.05


def test_bimodal_autoencoder_fast_options_agree():
    a, v = gaussian(160, 10, 1), gaussian(160, 6, 2)

    def fit(**kw):
        return BimodalAutoencoder([10, 8], [6, 8], 5, device="cpu").fit(a, v, epochs=3, batch_size=20, **kw)

    plain, high, bf16 = fit(), fit(matmul_precision="high"), fit(autocast_dtype=torch.bfloat16)
    np.testing.assert_allclose(high.history, plain.history, rtol=1e-3)
    assert bf16.history[-1] == pytest.approx(plain.history[-1], rel=0.1)
    assert np.abs(bf16.encode(a, v) - plain.encode(a, v)).mean() < 0.05


@pytest.mark.slow
def test_rbm_torch_compile_agrees():
    X = binary_prototypes(240)
    plain = _rbm().fit(X, epochs=3, batch_size=20)
    compiled = _rbm().fit(X, epochs=3, batch_size=20, compile=True)
    np.testing.assert_allclose(compiled.history, plain.history, rtol=1e-4)
    np.testing.assert_allclose(compiled.transform(X), plain.transform(X), atol=1e-4)
    assert not any(callable(v) for v in vars(compiled).values())  # the model keeps no compiled function
    # PCD draws inside the step: the compiled step still trains the same model.
    plain = _rbm(persistent=True).fit(X, epochs=2, batch_size=20)
    compiled = _rbm(persistent=True).fit(X, epochs=2, batch_size=20, compile=True)
    np.testing.assert_allclose(compiled.history, plain.history, rtol=1e-4)
    # both places of the sparsity term (the velocity, a separate step) compile to the same training
    for form in ("velocity", "separate"):
        sparse = dict(sparsity_target=0.05, sparsity_cost=3.0, sparsity_update=form)
        plain = _rbm(**sparse).fit(X, epochs=2, batch_size=20)
        compiled = _rbm(**sparse).fit(X, epochs=2, batch_size=20, compile=True)
        np.testing.assert_allclose(compiled.history, plain.history, rtol=1e-4)
        torch.testing.assert_close(compiled.b_h, plain.b_h, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs", [dict(matmul_precision="fast"), dict(autocast_dtype="int8"),
                                    dict(autocast_dtype=torch.float64), dict(compile="yes")])
def test_bad_fast_options_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        check_fast_options(**kwargs)
    with pytest.raises(ConfigError):
        _rbm().fit(binary_prototypes(240), epochs=1, **kwargs)


def test_fast_math_restores_precision_on_error():
    with pytest.raises(RuntimeError):
        with fast_math("cpu", "medium"):
            assert torch.get_float32_matmul_precision() == "medium"
            raise RuntimeError("boom")
    assert torch.get_float32_matmul_precision() == "highest"


# ---------------------------------------------------------------- benchmark helpers (no timing)
def test_flop_counts():
    assert cd1_flops(100, 784, 500) == 5 * 2 * 100 * 784 * 500
    layers = bimodal_layers(800, 256, 1024, 1024)
    fwd = 2 * 1024 * (800 + 256 + 2048 + 1024 + 1024 + 800 + 256)
    # backward: weight gradient for every layer, input gradient for all but the two input layers
    assert autoencoder_flops(1, layers, input_layers=2) == 3 * fwd - 2 * 1024 * (800 + 256)


def test_rbm_step_benchmark_rows(capsys):
    from benchmarks.rbm_step import bench, main

    (row,) = bench([(8, 6, 5)], torch.device("cpu"), repeats=1, batches=2)
    assert row["textbook_s"] > 0 and row["library_s"] > 0
    assert row["library_gain"] == pytest.approx(row["textbook_s"] / row["library_s"] - 1)
    assert main(["--quick", "--repeats", "1", "--batches", "2"]) == 0
    assert "library gain: median" in capsys.readouterr().out


def test_demo_timings_read_and_validated(tmp_path):
    good = tmp_path / "results.json"
    good.write_text(json.dumps({"timings": {"synth": 1.5, "pretrain": 2}}))
    assert read_demo_timings(good) == {"synth": 1.5, "pretrain": 2.0}
    with pytest.raises(DataError, match="does not exist"):
        read_demo_timings(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"timings": {"synth": "fast"}}))
    with pytest.raises(DataError, match="timings"):
        read_demo_timings(bad)


@pytest.mark.slow
def test_quick_benchmark_writes_consistent_json(tmp_path):
    from benchmarks.run import main

    out = tmp_path / "bench.json"
    assert main(["--quick", "--threads", "1", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    sk = {r["batch_size"]: r for r in result["rbm_vs_sklearn"] if r["model"].startswith("sklearn")}
    for r in result["rbm_vs_sklearn"]:
        if not r["model"].startswith("sklearn"):
            assert r["speedup_vs_sklearn"] == pytest.approx(sk[r["batch_size"]]["seconds"] / r["seconds"])
            assert 0 < r["recon_mse"] < 0.5
    assert result["matmul_gflops"] > 0 and result["bimodal_autoencoder"]["gflops"] > 0
    ours, ref = result["svm_c_search"]
    assert ours["speedup_vs_sklearn"] == pytest.approx(ref["seconds"] / ours["seconds"])
    assert ours["C"] == ref["C"] and ours["accuracy"] == pytest.approx(ref["accuracy"], abs=0.02)
    ttq = result["rbm_time_to_quality"]
    assert ttq["target_recon_mse"] > 0 and len(ttq["curve"]) >= 1
    if ttq["ours_seconds_to_recon"] is not None:
        assert ttq["ratio_recon"] == pytest.approx(ttq["sklearn_seconds"] / ttq["ours_seconds_to_recon"])


def test_svm_c_search_bench_agrees_with_linearsvc():
    from benchmarks.run import bench_svm_c_search

    sizes = dict(svm_train_speakers=4, svm_test_speakers=2, svm_classes=5, svm_dims=300, svm_Cs=(0.01, 1.0),
                 svm_cv=2)
    ours, ref = bench_svm_c_search(sizes, torch.device("cpu"))
    assert ours["backend"] == "gram" and ref["backend"] == "sklearn"
    assert ours["C"] == ref["C"] and ours["same_C"]
    assert ours["accuracy"] == ref["accuracy"] and 0.2 < ours["accuracy"]  # 5 classes: chance 0.2
    np.testing.assert_allclose(ours["cv_mean"], ref["cv_mean"])


def test_time_to_quality_reaches_sklearn_targets_on_a_tiny_problem():
    from benchmarks.run import bench_rbm_time_to_quality

    sizes = dict(ttq_visible=24, ttq_hidden=8, ttq_rows=300, ttq_sklearn_epochs=20, ttq_max_epochs=60)
    q = bench_rbm_time_to_quality(sizes, torch.device("cpu"), {})
    last = q["curve"][-1]
    assert q["ours_epochs_to_recon"] is not None and q["ours_epochs_to_pl"] is not None
    assert last["recon_mse"] <= q["target_recon_mse"] and last["pseudo_likelihood"] >= q["target_pseudo_likelihood"]
    assert q["ratio_pl"] == pytest.approx(q["sklearn_seconds"] / q["ours_seconds_to_pl"])


def test_small_steps_bench_on_the_digits():
    """(h): per-step rows at each batch size, and our RBM reaches sklearn's 20-epoch quality on the
    binarised digits (one shifted copy, 32 hidden units) well within 20 epochs."""
    from benchmarks.run import bench_small_steps, cd1_flops, digits_data

    X = digits_data(4)
    assert X.shape == (7188, 64) and set(np.unique(X)) == {0.0, 1.0}
    images = X.reshape(4, 1797, 8, 8)
    assert not images[0, :, :, 0].any() and not images[1, :, :, 7].any()  # shifted right, then left
    assert not images[2, :, 0, :].any() and not images[3, :, 7, :].any()  # down, then up
    with pytest.raises(ValueError, match="copies"):
        digits_data(5)
    sizes = dict(steps_hidden=32, steps_batches=(10, 100), steps_ttq_batch=20, steps_digits_copies=1,
                 steps_sklearn_epochs=20, steps_max_epochs=20)
    z = bench_small_steps(sizes, torch.device("cpu"), {}, repeats=1, peak_flops=1e10)
    assert [r["batch_size"] for r in z["per_step"]] == [10, 100]
    for r in z["per_step"]:
        assert r["bound_us"] == pytest.approx(cd1_flops(r["batch_size"], 64, 32) / 1e10 * 1e6)
        assert r["ours_us"] > r["bound_us"] / 100 and r["matmuls_us"] > 0
    q = z["time_to_quality"]
    assert q["our_batch"] == q["sklearn_batch"] == 20 and q["sklearn_epochs"] == 20
    assert q["ours_epochs_to_recon"] is not None and q["ours_epochs_to_recon"] <= 10


def test_dbn_passes_fast_options_to_every_rbm():
    from bimodal.dbn import DBN

    X = binary_prototypes(240)
    with pytest.raises(ConfigError, match="matmul_precision"):
        DBN([24, 12, 8], first_visible="bernoulli", device="cpu").fit(X, epochs=1, matmul_precision="tf32")
    plain = DBN([24, 12, 8], first_visible="bernoulli", device="cpu").fit(X, epochs=2, batch_size=20)
    high = DBN([24, 12, 8], first_visible="bernoulli", device="cpu").fit(X, epochs=2, batch_size=20,
                                                                          matmul_precision="high")
    np.testing.assert_allclose(high.transform(X), plain.transform(X), atol=1e-3)
