"""Training throughput benchmark: ``bimodal bench`` / ``python -m benchmarks.run``.

Everything is measured in one run on one device, so the printed ratios compare like with like:

(a) Bernoulli RBM CD-1 against ``sklearn.neural_network.BernoulliRBM`` (PCD-1, no momentum):
    same data, sizes, batch size, epochs and learning rate; our RBM runs with momentum 0 and no
    weight decay (sklearn has neither), as plain CD-1 and as PCD-1 (sklearn's own algorithm).
    Reconstruction error of both is the same deterministic mean-field MSE,
    ``mean((X - sigmoid(sigmoid(X W + b_h) W^T + b_v))^2)``, computed by one function.
(b) Gaussian RBM and bimodal autoencoder fine-tuning at *our* paper-like sizes: audio 4 frames
    x 200 = 800 inputs, video 4 x 64 = 256 inputs, 1024 hidden per modality, 1024 shared,
    batch 100.
(c) The fraction of the device's dense fp32 matmul rate (measured here: 4096^3 on GPU, 2048^3
    on CPU) that each training run reaches, with training FLOPs counted analytically
    (CD-1: 5 matmuls of 2*B*V*H per batch; autoencoder: forward 2*B*n_in*n_out per layer,
    backward twice that, minus the unused input gradient of the first layers).
(d) Peak memory: ``torch.cuda.max_memory_allocated`` per stage on GPU; on CPU the process's
    peak RSS (``ru_maxrss``) after each stage and how much that stage raised it.
(e) Wall time of each ``bimodal demo`` stage, read from the demo's results.json
    (``--demo-results PATH``, key ``timings``); the demo is not run here.
(f) The paper's C search for one fold of utterance features (``select_C`` over a grid of 5 Cs with
    3 speaker-grouped inner folds, then the final fit and test): our exact row-space solver
    (``backend="gram"``, what ``auto`` picks for n ≤ d) against scikit-learn's ``LinearSVC``,
    on synthetic features of the paper's shape (pooled sigmoid activations driven by a class
    and a speaker latent); same chosen C and test accuracy expected, ratio of wall times printed.
(g) Time to quality: scikit-learn's ``BernoulliRBM`` with its defaults (lr 0.1, batch 10, PCD-1)
    trains 20 epochs; our RBM with *our* defaults (CD-1, lr 0.05, momentum 0.5 -> 0.9, weight
    decay, batch 100) trains epoch by epoch until it reaches sklearn's final mean-field
    reconstruction error and exact pseudo-likelihood (on a fixed subset of rows); the wall time
    ratios sklearn / ours are printed (evaluation excluded from both times).
(h) Small steps, on scikit-learn's own digits binarised as a new user would (4 one-pixel shifts,
    7188 x 64, 256 hidden): microseconds per CD-1 batch at batch 10, 20, 100, 1000 for ours and
    sklearn, against the step's five matmuls timed alone at the same shapes (what its arithmetic
    costs at that size) and against its FLOPs at the large-matmul rate of (c); then (g)'s time to
    quality with batch 20 for both.

Timings are wall-clock seconds of ``fit`` (including its one host sync per epoch), best of
``--repeats``. On a shared CPU, check the load (printed) first: OpenMP threads that spin-wait
for a busy core make torch ops many times slower; ``--threads 1`` is the robust setting then.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bimodal.autoencoder import BimodalAutoencoder
from bimodal.device import resolve_device
from bimodal.errors import DataError
from bimodal.fast import MATMUL_PRECISIONS, check_fast_options
from bimodal.io import atomic_write_json
from bimodal.provenance import provenance
from bimodal.rbm import RBM

log = logging.getLogger(__name__)

FULL = dict(rbm_visible=784, rbm_hidden=1000, rbm_rows=10000, rbm_epochs=3, batch_sizes=(10, 100),
            audio=800, video=256, hidden=1024, shared=1024, ae_rows=10000, ae_epochs=2, batch=100,
            matmul_cpu=2048, matmul_gpu=4096,
            svm_train_speakers=10, svm_test_speakers=3, svm_classes=26, svm_dims=6144,
            svm_Cs=(0.001, 0.01, 0.1, 1.0, 10.0), svm_cv=3,
            ttq_visible=784, ttq_hidden=256, ttq_rows=5000, ttq_sklearn_epochs=20, ttq_max_epochs=60,
            steps_hidden=256, steps_batches=(10, 20, 100, 1000), steps_ttq_batch=20, steps_digits_copies=4,
            steps_sklearn_epochs=20, steps_max_epochs=20)
QUICK = dict(rbm_visible=196, rbm_hidden=128, rbm_rows=2000, rbm_epochs=2, batch_sizes=(10, 100),
             audio=100, video=32, hidden=128, shared=128, ae_rows=2000, ae_epochs=1, batch=100,
             matmul_cpu=512, matmul_gpu=1024,
             svm_train_speakers=6, svm_test_speakers=2, svm_classes=10, svm_dims=1536,
             svm_Cs=(0.01, 0.1, 1.0), svm_cv=3,
             ttq_visible=196, ttq_hidden=64, ttq_rows=1000, ttq_sklearn_epochs=20, ttq_max_epochs=40,
             steps_hidden=64, steps_batches=(10, 100), steps_ttq_batch=20, steps_digits_copies=1,
             steps_sklearn_epochs=20, steps_max_epochs=20)
STAGES = ("rbm", "gaussian", "autoencoder", "svm", "ttq", "steps")


# ---------------------------------------------------------------- measuring
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int = 1) -> float:
    """Best wall time of ``fn()`` over ``repeats`` runs, with the device synchronised around each."""
    best = math.inf
    for _ in range(max(1, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_rate(device: torch.device, n: int, repeats: int = 3, matmul_precision: str = "highest") -> float:
    """Measured dense fp32 ``n x n @ n x n`` rate in FLOP/s (2 n^3 FLOPs per product)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(matmul_precision)
    try:
        a @ b  # warm-up (library initialisation, clocks)
        seconds = timed(lambda: [a @ b for _ in range(repeats)], device) / repeats
    finally:
        torch.set_float32_matmul_precision(old)
    return 2.0 * n ** 3 / seconds


class MemoryMeter:
    """Peak memory of one stage: CUDA allocator peak on GPU, process peak-RSS growth on CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._rss0 = _peak_rss_mb()
        self.result = {}
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.result = {"peak_cuda_allocated_mb": torch.cuda.max_memory_allocated(self.device) / 2 ** 20}
        else:
            peak = _peak_rss_mb()
            self.result = {"peak_rss_mb": peak, "peak_rss_increase_mb": peak - self._rss0}
        return False


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


# ---------------------------------------------------------------- data and FLOP counts
def binary_data(n_rows: int, n_visible: int, seed: int = 0) -> np.ndarray:
    """Binary rows with structure an RBM can learn: 20 random prototypes with 5 % of bits flipped."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((20, n_visible)) < 0.3
    X = prototypes[rng.integers(0, 20, n_rows)]
    return np.where(rng.random((n_rows, n_visible)) < 0.05, ~X, X).astype(np.float32)


def whitened_data(n_rows: int, n_dims: int, seed: int = 0) -> np.ndarray:
    """Zero-mean unit-variance Gaussian rows (stand-in for PCA-whitened features)."""
    return np.random.default_rng(seed).standard_normal((n_rows, n_dims), dtype=np.float32)


def cd1_flops(n_rows: int, n_visible: int, n_hidden: int) -> float:
    """FLOPs of one CD-1 epoch: 5 matmuls of 2*B*V*H per batch (v->h, h->v, v->h, two outer products)."""
    return 5 * 2.0 * n_rows * n_visible * n_hidden


def autoencoder_flops(n_rows: int, layers, input_layers: int) -> float:
    """FLOPs of one training epoch of an MLP given as ``[(n_in, n_out), ...]``.

    Forward 2*B*n_in*n_out per layer, backward the same for the weight gradient and again for
    the input gradient, except for the ``input_layers`` layers fed directly by the data.
    """
    per_row = sum(2.0 * a * b for a, b in layers)
    input_grad_saved = sum(2.0 * a * b for a, b in layers[:input_layers])
    return n_rows * (3 * per_row - input_grad_saved)


def bimodal_layers(audio: int, video: int, hidden: int, shared: int):
    """Matmul shapes of the bimodal autoencoder with one hidden layer per modality; input layers first."""
    return [(audio, hidden), (video, hidden), (2 * hidden, shared), (shared, hidden), (shared, hidden),
            (hidden, audio), (hidden, video)]


def mean_field_recon_mse(X: torch.Tensor, W: torch.Tensor, b_v: torch.Tensor, b_h: torch.Tensor) -> float:
    """``mean((X - sigmoid(sigmoid(X W + b_h) W^T + b_v))^2)`` — the same error for both RBMs."""
    with torch.no_grad():
        h = torch.sigmoid(torch.addmm(b_h, X, W))
        return float(((X - torch.sigmoid(torch.addmm(b_v, h, W.t()))) ** 2).mean())


# ---------------------------------------------------------------- stages
def bench_rbm_vs_sklearn(sizes: dict, device: torch.device, fast: dict, repeats: int, lr: float = 0.05,
                         with_compile: bool = False, with_float64: bool = False) -> list[dict]:
    """(a): rows for our CD-1 / PCD-1 and sklearn's BernoulliRBM at each batch size."""
    from sklearn.neural_network import BernoulliRBM

    V, H, N, E = sizes["rbm_visible"], sizes["rbm_hidden"], sizes["rbm_rows"], sizes["rbm_epochs"]
    X = binary_data(N, V)
    Xt = torch.as_tensor(X, device=device)
    rows = []
    variants = [("ours CD-1", dict(persistent=False), {}), ("ours PCD-1", dict(persistent=True), {})]
    if with_compile:
        variants.append(("ours CD-1 compiled", dict(persistent=False), {"compile": True}))
    for B in sizes["batch_sizes"]:
        sk = BernoulliRBM(n_components=H, learning_rate=lr, batch_size=B, n_iter=E, random_state=0)
        with MemoryMeter(torch.device("cpu")) as mem:
            t_sk = timed(lambda: sk.fit(X), torch.device("cpu"), repeats)
        err_sk = mean_field_recon_mse(Xt, torch.as_tensor(sk.components_.T, device=device),
                                      torch.as_tensor(sk.intercept_visible_, device=device),
                                      torch.as_tensor(sk.intercept_hidden_, device=device))
        rows.append(dict(model="sklearn BernoulliRBM (PCD-1)", device="cpu", batch_size=B, seconds=t_sk,
                         examples_per_s=N * E / t_sk, recon_mse=err_sk, dtype=str(sk.components_.dtype),
                         **mem.result))
        if with_float64:
            # numpy's default dtype: sklearn then computes in float64 (it preserves float32 and
            # float64 input); reported for information, the ratios above use float32 for both.
            sk64 = BernoulliRBM(n_components=H, learning_rate=lr, batch_size=B, n_iter=E, random_state=0)
            t64 = timed(lambda: sk64.fit(X.astype(np.float64)), torch.device("cpu"), repeats)
            rows.append(dict(model="sklearn BernoulliRBM float64 input", device="cpu", batch_size=B, seconds=t64,
                             examples_per_s=N * E / t64, dtype=str(sk64.components_.dtype),
                             recon_mse=mean_field_recon_mse(Xt, *(torch.as_tensor(a, device=device, dtype=torch.float32)
                                                                  for a in (sk64.components_.T, sk64.intercept_visible_,
                                                                            sk64.intercept_hidden_)))))
        for name, algo, extra in variants:
            def make():
                return RBM(V, H, visible="bernoulli", lr=lr, momentum=0.0, final_momentum=0.0, weight_decay=0.0,
                           device=device, seed=0, **algo)
            opts = dict(fast, **extra)
            make().fit(Xt[: 20 * B], epochs=1, batch_size=B, **opts)  # warm-up (and compilation)
            models = []
            with MemoryMeter(device) as mem:
                seconds = timed(lambda: models.append(make().fit(Xt, epochs=E, batch_size=B, **opts)), device,
                                repeats)
            m = models[-1]
            dtype = "float32" if opts.get("autocast_dtype") is None else f"float32+{opts['autocast_dtype']}"
            rows.append(dict(model=name, device=str(device), batch_size=B, dtype=dtype, seconds=seconds,
                             examples_per_s=N * E / seconds, recon_mse=mean_field_recon_mse(Xt, m.W, m.b_v, m.b_h),
                             speedup_vs_sklearn=t_sk / seconds,
                             gflops=cd1_flops(N * E, V, H) / seconds / 1e9, **mem.result))
    return rows


def bench_gaussian_rbms(sizes: dict, device: torch.device, fast: dict, repeats: int) -> list[dict]:
    """(b)/(c): first-layer Gaussian RBMs of each modality at our paper-like sizes."""
    rows = []
    B, N, E, H = sizes["batch"], sizes["ae_rows"], sizes["ae_epochs"], sizes["hidden"]
    for name, V in (("audio", sizes["audio"]), ("video", sizes["video"])):
        X = torch.as_tensor(whitened_data(N, V), device=device)
        RBM(V, H, visible="gaussian", device=device).fit(X[: 20 * B], epochs=1, batch_size=B, **fast)  # warm-up
        with MemoryMeter(device) as mem:
            seconds = timed(lambda: RBM(V, H, visible="gaussian", device=device, seed=0).fit(
                X, epochs=E, batch_size=B, **fast), device, repeats)
        rows.append(dict(model=f"Gaussian RBM {name} {V}->{H}", batch_size=B, seconds=seconds,
                         examples_per_s=N * E / seconds, gflops=cd1_flops(N * E, V, H) / seconds / 1e9,
                         **mem.result))
    return rows


def bench_bimodal_autoencoder(sizes: dict, device: torch.device, fast: dict, repeats: int) -> dict:
    """(b)/(c): bimodal autoencoder fine-tuning (Adam, augmentation on) at our paper-like sizes."""
    B, N, E = sizes["batch"], sizes["ae_rows"], sizes["ae_epochs"]
    A, Vd, H, S = sizes["audio"], sizes["video"], sizes["hidden"], sizes["shared"]
    audio = torch.as_tensor(whitened_data(N, A, 1), device=device)
    video = torch.as_tensor(whitened_data(N, Vd, 2), device=device)

    def make():
        return BimodalAutoencoder([A, H], [Vd, H], S, device=device, seed=0)

    make().fit(audio[: 20 * B], video[: 20 * B], epochs=1, batch_size=B, **fast)  # warm-up
    with MemoryMeter(device) as mem:
        seconds = timed(lambda: make().fit(audio, video, epochs=E, batch_size=B, **fast), device, repeats)
    flops = autoencoder_flops(N * E, bimodal_layers(A, Vd, H, S), input_layers=2)
    return dict(model=f"bimodal autoencoder [{A},{H}]+[{Vd},{H}] -> {S}", batch_size=B, seconds=seconds,
                examples_per_s=N * E / seconds, gflops=flops / seconds / 1e9, **mem.result)


def synthetic_utterance_features(n_speakers: int, n_classes: int, dims: int, latent: int = 32, seed: int = 0):
    """Synthetic utterance features of the paper's shape: one utterance per (speaker, class), a
    latent = class prototype + speaker offset + noise, mapped to ``dims`` sigmoid activations (like
    pooled hidden probabilities) plus a little noise. Returns ``X (U, dims)`` float32, ``y``, ``speaker``."""
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((n_classes, latent))
    offsets = 0.7 * rng.standard_normal((n_speakers, latent))
    mixing = 2.0 * rng.standard_normal((latent, dims)) / np.sqrt(latent)
    bias = rng.standard_normal(dims) - 2.0
    speaker = np.repeat(np.arange(n_speakers), n_classes)
    y = np.tile(np.arange(n_classes), n_speakers)
    z = prototypes[y] + offsets[speaker] + 1.5 * rng.standard_normal((len(y), latent))
    X = 1.0 / (1.0 + np.exp(-(z @ mixing + bias))) + 0.05 * rng.standard_normal((len(y), dims))
    return X.astype(np.float32), y, speaker


def bench_svm_c_search(sizes: dict, device: torch.device, reference: bool = True) -> list[dict]:
    """(f): select_C + final fit/test of one fold, row-space solver vs LinearSVC (``reference=False``:
    ours only; LinearSVC takes ~13 min at the full sizes on one loaded CPU core)."""
    from bimodal.classifiers import StandardizedClassifier, select_C

    n_tr, n_te = sizes["svm_train_speakers"], sizes["svm_test_speakers"]
    X, y, speaker = synthetic_utterance_features(n_tr + n_te, sizes["svm_classes"], sizes["svm_dims"])
    train, test = speaker < n_tr, speaker >= n_tr
    rows = []
    for backend, dev in (("gram", device), ("sklearn", torch.device("cpu")))[:2 if reference else 1]:
        out = {}

        def run():
            C, table = select_C(X[train], y[train], speaker[train], Cs=sizes["svm_Cs"], kind="svm", backend=backend,
                                n_folds=sizes["svm_cv"], device=dev)
            clf = StandardizedClassifier("svm", backend, C, device=dev).fit(X[train], y[train])
            out.update(C=C, cv_mean=table["mean"], accuracy=clf.score(X[test], y[test]))

        seconds = timed(run, dev)
        rows.append(dict(model="ours (row-space Newton)" if backend == "gram" else "sklearn LinearSVC",
                         backend=backend, device=str(dev), seconds=seconds, **out))
    if reference:
        rows[0]["speedup_vs_sklearn"] = rows[1]["seconds"] / rows[0]["seconds"]
        rows[0]["same_C"] = rows[0]["C"] == rows[1]["C"]
    return rows


def bench_rbm_time_to_quality(sizes: dict, device: torch.device, fast: dict) -> dict:
    """(g): wall time for our RBM (our defaults) to reach sklearn BernoulliRBM's quality after its epochs."""
    V, H, N = sizes["ttq_visible"], sizes["ttq_hidden"], sizes["ttq_rows"]
    return time_to_quality(binary_data(N, V, seed=1), H, device, fast, sklearn_batch=10, our_batch=100,
                           sklearn_epochs=sizes["ttq_sklearn_epochs"], max_epochs=sizes["ttq_max_epochs"])


def time_to_quality(X: np.ndarray, n_hidden: int, device: torch.device, fast: dict, sklearn_batch: int,
                    our_batch: int, sklearn_epochs: int = 20, max_epochs: int = 60) -> dict:
    """Seconds for scikit-learn's ``BernoulliRBM`` (its defaults: lr 0.1, PCD-1; ``sklearn_batch``)
    to train ``sklearn_epochs`` epochs on the binary rows ``X``, and for our RBM (our defaults,
    ``our_batch``) to reach its mean-field reconstruction error and its exact pseudo-likelihood
    (on a fixed subset of 500 rows), epoch by epoch; the evaluation is timed by neither."""
    from sklearn.neural_network import BernoulliRBM

    from bimodal.rbm import bernoulli_log_pseudo_likelihood

    N, V = X.shape
    Xt = torch.as_tensor(X, device=device)
    probe = Xt[: min(N, 500)]  # exact pseudo-likelihood costs rows * V * H: a fixed subset

    def quality(W, b_v, b_h):
        return (mean_field_recon_mse(Xt, W, b_v, b_h),
                float(bernoulli_log_pseudo_likelihood(probe, W, b_v, b_h).mean()))

    sk = BernoulliRBM(n_components=n_hidden, batch_size=sklearn_batch, n_iter=sklearn_epochs, random_state=0)
    t_sk = timed(lambda: sk.fit(X), torch.device("cpu"))
    target_mse, target_pl = quality(*(torch.as_tensor(a, device=device, dtype=torch.float32)
                                      for a in (sk.components_.T, sk.intercept_visible_, sk.intercept_hidden_)))
    rbm = RBM(V, n_hidden, visible="bernoulli", device=device, seed=0)  # our defaults
    elapsed, t_mse, t_pl, curve = 0.0, None, None, []
    for epoch in range(1, max_epochs + 1):
        if epoch > rbm.momentum_epochs:  # one fit per epoch: keep the momentum schedule of one long fit
            rbm.momentum = rbm.final_momentum
        elapsed += timed(lambda: rbm.fit(Xt, epochs=1, batch_size=our_batch, **fast), device)
        mse, pl = quality(rbm.W, rbm.b_v, rbm.b_h)
        curve.append(dict(epoch=epoch, seconds=elapsed, recon_mse=mse, pseudo_likelihood=pl))
        if t_mse is None and mse <= target_mse:
            t_mse = (epoch, elapsed)
        if t_pl is None and pl >= target_pl:
            t_pl = (epoch, elapsed)
        if t_mse is not None and t_pl is not None:
            break
    return dict(sizes=f"{N} rows, {V}->{n_hidden}", sklearn_seconds=t_sk, sklearn_epochs=sklearn_epochs,
                sklearn_batch=sklearn_batch, our_batch=our_batch,
                target_recon_mse=target_mse, target_pseudo_likelihood=target_pl,
                ours_epochs_to_recon=t_mse and t_mse[0], ours_seconds_to_recon=t_mse and t_mse[1],
                ours_epochs_to_pl=t_pl and t_pl[0], ours_seconds_to_pl=t_pl and t_pl[1],
                ratio_recon=t_mse and t_sk / t_mse[1], ratio_pl=t_pl and t_sk / t_pl[1], curve=curve)


def digits_data(copies: int = 4) -> np.ndarray:
    """scikit-learn's 8x8 digits binarised for an RBM: intensities scaled to [0, 1], each image
    shifted by one pixel right, left, down and up (``copies`` of those four shifts, 1797 rows
    each; the shifts of scikit-learn's RBM example, without its unshifted originals) and
    thresholded at 0.5: (1797 * copies, 64) float32 in {0, 1}."""
    from sklearn.datasets import load_digits

    shifts = ((0, 1), (0, -1), (1, 0), (-1, 0))
    if not 1 <= copies <= len(shifts):
        raise ValueError(f"digits_data: copies must be 1..{len(shifts)}, got {copies}")
    images = load_digits().images / 16.0
    shifted = []
    for dy, dx in shifts[:copies]:
        out = np.zeros_like(images)
        out[:, max(dy, 0):8 + min(dy, 0), max(dx, 0):8 + min(dx, 0)] = \
            images[:, max(-dy, 0):8 + min(-dy, 0), max(-dx, 0):8 + min(-dx, 0)]
        shifted.append(out)
    return (np.concatenate(shifted).reshape(-1, 64) > 0.5).astype(np.float32)


def bench_small_steps(sizes: dict, device: torch.device, fast: dict, repeats: int, peak_flops: float) -> dict:
    """(h): what one CD-1 step costs at small batches, on the binarised digits (:func:`digits_data`),
    against its arithmetic: per batch size, our step and sklearn's (one epoch each, per batch; ours
    without building the model), the five matmuls of the step alone at those shapes (what its
    arithmetic costs here), and the bound at ``peak_flops`` (the large-matmul rate of (c)); then
    time to quality against sklearn at batch ``steps_ttq_batch``."""
    from sklearn.neural_network import BernoulliRBM

    X = digits_data(sizes["steps_digits_copies"])
    N, V = X.shape
    H = sizes["steps_hidden"]
    Xt = torch.as_tensor(X, device=device)
    rows = []
    for B in sizes["steps_batches"]:
        n_batches = -(-N // B)
        t_ours = math.inf
        for i in range(max(1, repeats) + 1):  # the first is a warm-up
            rbm = RBM(V, H, visible="bernoulli", device=device, seed=0)
            t = timed(lambda: rbm.fit(Xt, epochs=1, batch_size=B, **fast), device)
            t_ours = min(t_ours, t) if i else t_ours
        sk = BernoulliRBM(n_components=H, batch_size=B, n_iter=1, random_state=0)
        t_sk = timed(lambda: sk.fit(X), torch.device("cpu"), repeats)
        v, W = Xt[:B].contiguous(), torch.randn(V, H, device=device) * 0.01
        h = torch.rand(B, H, device=device)

        def five_matmuls():  # v -> h, h -> v, v -> h, and the two outer products
            for _ in range(n_batches):
                v @ W, h @ W.t(), v @ W, v.t() @ h, v.t() @ h

        five_matmuls()
        t_mm = timed(five_matmuls, device, repeats)
        rows.append(dict(batch_size=B, ours_us=t_ours / n_batches * 1e6, sklearn_us=t_sk / n_batches * 1e6,
                         matmuls_us=t_mm / n_batches * 1e6, bound_us=cd1_flops(B, V, H) / peak_flops * 1e6,
                         ours_over_matmuls=t_ours / t_mm, sklearn_over_ours=t_sk / t_ours))
    ttq = time_to_quality(X, H, device, fast, sklearn_batch=sizes["steps_ttq_batch"],
                          our_batch=sizes["steps_ttq_batch"], sklearn_epochs=sizes["steps_sklearn_epochs"],
                          max_epochs=sizes["steps_max_epochs"])
    return dict(sizes=f"{N} rows, {V}->{H}", per_step=rows, time_to_quality=ttq)


def read_demo_timings(path) -> dict:
    """(e): ``timings`` (stage -> seconds) from a ``bimodal demo`` results.json."""
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DataError("demo results file does not exist (run `bimodal demo` first)", path=path) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the demo results as JSON: {exc}", path=path) from exc
    timings = results.get("timings") if isinstance(results, dict) else None
    if not isinstance(timings, dict) or not all(isinstance(v, (int, float)) for v in timings.values()):
        raise DataError("expected a dict of stage name -> seconds", path=path, field="timings")
    return {str(k): float(v) for k, v in timings.items()}


# ---------------------------------------------------------------- printing
def _table(rows, columns) -> str:
    cells = [[c for c, _ in columns]] + [[fmt(r.get(c)) if r.get(c) is not None else "" for c, fmt in columns]
                                         for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(row, widths)) for row in cells)


def _f(spec):
    return lambda x: format(x, spec)


def _reached_lines(q: dict) -> list[str]:
    def reached(ep, sec, ratio):
        return f"epoch {ep}, {sec:.2f} s, ratio sklearn/ours {ratio:.2f}x" if ep else "not reached"

    return ["    ours reaches its recon MSE: "
            + reached(q["ours_epochs_to_recon"], q["ours_seconds_to_recon"], q["ratio_recon"]),
            "    ours reaches its pseudo-likelihood: "
            + reached(q["ours_epochs_to_pl"], q["ours_seconds_to_pl"], q["ratio_pl"])]


def report_text(result: dict) -> str:
    mem_col = ("peak_cuda_allocated_mb", _f(".0f")) if result["device"].startswith("cuda") else \
        ("peak_rss_increase_mb", _f(".0f"))
    rate = result["matmul_gflops"]
    out = [f"device {result['device']}, torch threads {result['threads']}, load average {result['load_average']}, "
           f"fast options {result['fast_options']}",
           f"(c) measured dense fp32 matmul rate ({result['matmul_n']}^3): {rate:.1f} GFLOP/s"]
    if result.get("rbm_vs_sklearn"):
        out += ["", "(a) Bernoulli RBM {rbm_visible}->{rbm_hidden}, {rbm_rows} rows, {rbm_epochs} epochs, "
                "lr 0.05".format(**result["sizes"])]
        for r in result["rbm_vs_sklearn"]:
            if "gflops" in r:
                r["matmul_fraction"] = r["gflops"] / rate
        out.append(_table(result["rbm_vs_sklearn"], [
            ("model", str), ("batch_size", str), ("dtype", str), ("examples_per_s", _f(".0f")),
            ("speedup_vs_sklearn", _f(".2f")), ("recon_mse", _f(".5f")), ("gflops", _f(".1f")),
            ("matmul_fraction", _f(".0%")), mem_col]))
    big = result.get("gaussian_rbm", []) + [r for r in [result.get("bimodal_autoencoder")] if r]
    if big:
        out += ["", "(b) {} sizes: audio {audio}, video {video}, {hidden} hidden per modality, {shared} shared, batch "
                "{batch}".format("quick" if result["quick"] else "our paper-like (audio 4x200, video 4x64)",
                                 **result["sizes"])]
        for r in big:
            r["matmul_fraction"] = r["gflops"] / rate
        out.append(_table(big, [("model", str), ("batch_size", str), ("examples_per_s", _f(".0f")),
                                ("gflops", _f(".1f")), ("matmul_fraction", _f(".0%")), mem_col]))
    if result.get("svm_c_search"):
        rows = result["svm_c_search"]
        z = result["sizes"]
        out += ["", f"(f) SVM C search, one fold: {z['svm_train_speakers'] * z['svm_classes']} training utterances x "
                    f"{z['svm_dims']} dims, {z['svm_classes']} classes, Cs {list(z['svm_Cs'])}, "
                    f"{z['svm_cv']} inner folds"]
        out.append(_table(rows, [("model", str), ("device", str), ("seconds", _f(".2f")), ("C", _f("g")),
                                 ("accuracy", _f(".3f")), ("speedup_vs_sklearn", _f(".1f"))]))
        if len(rows) > 1:
            out.append(f"    ratio sklearn / ours: {rows[0]['speedup_vs_sklearn']:.1f}x, same C: {rows[0]['same_C']}, "
                       f"accuracy difference: {rows[0]['accuracy'] - rows[1]['accuracy']:+.3f}")
    if result.get("rbm_time_to_quality"):
        q = result["rbm_time_to_quality"]
        out += ["", f"(g) RBM time to quality ({q['sizes']}): sklearn BernoulliRBM {q['sklearn_epochs']} epochs "
                    f"{q['sklearn_seconds']:.2f} s -> recon MSE {q['target_recon_mse']:.5f}, "
                    f"pseudo-likelihood {q['target_pseudo_likelihood']:.2f}",
                *_reached_lines(q)]
    if result.get("small_steps"):
        z = result["small_steps"]
        out += ["", f"(h) small steps, binarised digits ({z['sizes']}), CD-1, microseconds per batch; "
                    "matmuls = the step's five matmuls alone, bound = its FLOPs at the rate of (c)"]
        out.append(_table(z["per_step"], [("batch_size", str), ("ours_us", _f(".0f")), ("sklearn_us", _f(".0f")),
                                          ("matmuls_us", _f(".0f")), ("bound_us", _f(".1f")),
                                          ("ours_over_matmuls", _f(".2f")), ("sklearn_over_ours", _f(".2f"))]))
        q = z["time_to_quality"]
        out += [f"    time to quality, batch {q['our_batch']} both: sklearn BernoulliRBM {q['sklearn_epochs']} epochs "
                f"{q['sklearn_seconds']:.2f} s -> recon MSE {q['target_recon_mse']:.5f}, "
                f"pseudo-likelihood {q['target_pseudo_likelihood']:.2f}", *_reached_lines(q)]
    if result.get("demo_timings"):
        out += ["", f"(e) bimodal demo stage wall times ({result['demo_results']})"]
        out.append(_table([{"stage": k, "seconds": v} for k, v in result["demo_timings"].items()],
                          [("stage", str), ("seconds", _f(".2f"))]))
    return "\n".join(out)


# ---------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bimodal bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    p.add_argument("--quick", action="store_true", help="small sizes (well under a minute on 2 CPU cores)")
    p.add_argument("--out", default=None, help="write the numbers to this JSON file (atomically)")
    p.add_argument("--demo-results", default=None, help="results.json of `bimodal demo`: print its stage timings")
    p.add_argument("--threads", type=int, default=None,
                   help="torch and BLAS threads (default: torch's default); same for sklearn")
    p.add_argument("--repeats", type=int, default=1, help="best of this many timed runs")
    p.add_argument("--matmul-precision", default="highest", choices=MATMUL_PRECISIONS,
                   help="'high' = TF32 matmuls on CUDA")
    p.add_argument("--autocast-dtype", default=None, help="bfloat16 / float16: autocast our training")
    p.add_argument("--compile", action="store_true", help="also time our RBM with torch.compile (slow first call)")
    p.add_argument("--stages", default=",".join(STAGES),
                   help=f"comma-separated subset of {','.join(STAGES)} (default: all): rbm = (a), gaussian and "
                        "autoencoder = (b), svm = (f) C search, ttq = (g) time to quality, steps = (h) small "
                        "steps on the digits")
    p.add_argument("--no-svm-reference", action="store_true",
                   help="(f) times our solver only, not LinearSVC (minutes at the full sizes)")
    p.add_argument("--sklearn-float64", action="store_true",
                   help="also time sklearn on float64 input (numpy's default dtype; sklearn then computes in float64)")
    return p


def main(argv=None) -> int:
    """Run the benchmark with command-line arguments ``argv``; print the table; return 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `bimodal bench -- --quick`: argparse REMAINDER keeps the separator
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    fast = dict(matmul_precision=args.matmul_precision,
                autocast_dtype=check_fast_options(args.matmul_precision, args.autocast_dtype))
    threads = args.threads
    limiter = None
    if threads is not None:
        torch.set_num_threads(threads)
        from threadpoolctl import threadpool_limits  # installed with scikit-learn

        limiter = threadpool_limits(limits=threads)
    sizes = dict(QUICK if args.quick else FULL)
    stages = [x.strip() for x in args.stages.split(",") if x.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        from bimodal.errors import ConfigError

        raise ConfigError(f"--stages: unknown stage(s) {unknown}; valid: {', '.join(STAGES)}")
    try:
        demo = read_demo_timings(args.demo_results) if args.demo_results else None
        n_mm = sizes["matmul_gpu"] if device.type == "cuda" else sizes["matmul_cpu"]
        result = dict(device=str(device), threads=torch.get_num_threads(),
                      load_average=[round(x, 2) for x in os.getloadavg()], quick=args.quick,
                      fast_options={k: str(v) for k, v in fast.items()}, sizes=sizes, matmul_n=n_mm,
                      matmul_gflops=matmul_rate(device, n_mm) / 1e9)
        log.info("matmul rate %.1f GFLOP/s", result["matmul_gflops"])
        stage_seconds = result["stage_seconds"] = {}

        def stage(name, key, fn):
            if name in stages:
                t0 = time.perf_counter()
                result[key] = fn()
                stage_seconds[key] = time.perf_counter() - t0

        stage("rbm", "rbm_vs_sklearn", lambda: bench_rbm_vs_sklearn(
            sizes, device, fast, args.repeats, with_compile=args.compile, with_float64=args.sklearn_float64))
        stage("gaussian", "gaussian_rbm", lambda: bench_gaussian_rbms(sizes, device, fast, args.repeats))
        stage("autoencoder", "bimodal_autoencoder",
              lambda: bench_bimodal_autoencoder(sizes, device, fast, args.repeats))
        stage("svm", "svm_c_search", lambda: bench_svm_c_search(sizes, device, reference=not args.no_svm_reference))
        stage("ttq", "rbm_time_to_quality", lambda: bench_rbm_time_to_quality(sizes, device, fast))
        stage("steps", "small_steps", lambda: bench_small_steps(sizes, device, fast, args.repeats,
                                                                result["matmul_gflops"] * 1e9))
        result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        result["demo_results"], result["demo_timings"] = args.demo_results, demo
        result["peak_rss_mb"] = _peak_rss_mb()
        if device.type == "cuda":
            result["gpu_name"] = torch.cuda.get_device_name(device)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    text = report_text(result)
    print(text)
    if args.out:
        result["provenance"] = provenance(device=device)
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    from bimodal.errors import BimodalError

    try:
        sys.exit(main())
    except BimodalError as e:
        print(f"bimodal bench: error: {e}", file=sys.stderr)
        sys.exit(2)
