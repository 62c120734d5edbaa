"""Does the RBM's fused training step pay? ``python -m benchmarks.rbm_step [--threads 1] [--repeats 5]``.

Times one CD-1 epoch of :meth:`bimodal.rbm.RBM.fit` (sparsity on, weight decay on: what the
experiment configs train) with the library's step against the *textbook* form of the same
update, at the sizes the configs use: first layers of 100..1000 visible units (audio PCA / MFCC
windows, video PCA windows), the joint layer's 2048 visible units, 512..1536 hidden units,
batches of 64..256. Each row prints the best-of-``--repeats`` seconds per epoch of both (the runs
of the two are interleaved, so a change of machine load hits both) and the library step's gain.
``--compile`` adds a column for ``fit(compile=True)`` (compilation excluded by a warm-up fit).

The library's step (:meth:`RBM.training_step`, on a :class:`bimodal.rbm.TrainingState`) keeps
each bias as an extra row / column of the weight matrix, writes every conditional into a
preallocated buffer and takes all the CD statistics with two ``addmm_`` into the velocity; the
textbook form (:class:`TextbookRBM`) forms the gradient ``(dW, db_v, db_h)`` with
:meth:`RBM.gradient` first and then applies weight decay, sparsity and momentum on each tensor.
Both run the same Gibbs phases on the same random draws; tests/test_rbm_steps.py checks that they
train the same model.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

from bimodal.device import resolve_device
from bimodal.rbm import RBM

# (n_visible, n_hidden, batch): first layers (video 4 x 64 PCA = 256, audio 26 MFCC x 10 = 260,
# spectrogram PCA 100 x 10 = 1000), the joint RBM (1024 + 1024 = 2048), small and large batches.
SIZES = [(100, 512, 64), (256, 1536, 100), (260, 512, 100), (1000, 1024, 100), (1000, 1536, 64),
         (2048, 1024, 100), (2048, 1536, 256), (256, 512, 256)]
QUICK_SIZES = [(100, 512, 64), (260, 512, 100)]


class TextbookRBM(RBM):
    """An :class:`RBM` whose training step is the update written term by term as in the papers."""

    def _step(self, state, v0, lr, momentum, generator, noise=None):
        V, H = self.n_visible, self.n_hidden
        rows = state.rows(v0.shape[0])
        v_neg, h_neg = self._phases(state, rows, v0, generator, noise)  # the same Gibbs phases and draws
        v0, h0, v_neg, h_neg = v0[:, :V], rows.h0, v_neg[:, :V], h_neg[:, :H]
        state.squared_error += torch.nn.functional.mse_loss(rows.v1, v0, reduction="sum")
        dW, db_v, db_h = self.gradient(v0, h0, v_neg, h_neg)
        dW = dW - self.weight_decay * state.W
        pull = self._sparsity_pull(h0)
        if pull is not None:
            db_h = db_h + self.sparsity_cost * pull
        for param, velocity, grad in ((state.W, state.vel_W, dW), (state.b_v, state.vel_b_v, db_v),
                                      (state.b_h, state.vel_b_h, db_h)):
            velocity.mul_(momentum).add_(lr * grad)
            param.add_(velocity)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epoch(cls, V: int, H: int, B: int, X: torch.Tensor, device, **fit) -> float:
    model = cls(V, H, visible="gaussian", lr=1e-3, weight_decay=1e-4, sparsity_target=0.05, sparsity_cost=10.0,
                device=device, seed=0)
    _sync(device)
    t0 = time.perf_counter()
    model.fit(X, epochs=1, batch_size=B, seed=1, **fit)
    _sync(device)
    return time.perf_counter() - t0


def bench(sizes, device, repeats: int, batches: int, with_compile: bool = False) -> list[dict]:
    variants = {"library": (RBM, {}), "textbook": (TextbookRBM, {})}
    if with_compile:
        variants["compiled"] = (RBM, {"compile": True})
    rows = []
    for V, H, B in sizes:
        X = torch.randn(batches * B, V, generator=torch.Generator().manual_seed(0)).to(device)
        for cls, fit in variants.values():
            time_epoch(cls, V, H, B, X[:2 * B], device, **fit)  # warm-up (and compilation)
        best = dict.fromkeys(variants, math.inf)
        for _ in range(repeats):  # interleaved: load changes hit all
            for name, (cls, fit) in variants.items():
                best[name] = min(best[name], time_epoch(cls, V, H, B, X, device, **fit))
        row = dict(n_visible=V, n_hidden=H, batch=B, **{f"{k}_s": v for k, v in best.items()},
                   library_gain=best["textbook"] / best["library"] - 1.0)
        if with_compile:
            row["compile_gain"] = best["library"] / best["compiled"] - 1.0
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rbm_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=5, help="best of this many epochs per step form")
    p.add_argument("--batches", type=int, default=20, help="minibatches per timed epoch")
    p.add_argument("--quick", action="store_true", help="two small sizes only")
    p.add_argument("--compile", action="store_true", help="also time fit(compile=True) (slow warm-up)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}, "
          f"{args.batches} batches per epoch, best of {args.repeats}")
    head = f"{'visible':>7} {'hidden':>6} {'batch':>5} {'textbook s':>10} {'library s':>10} {'library gain':>12}"
    print(head + (f" {'compiled s':>10} {'compile gain':>12}" if args.compile else ""), flush=True)
    rows = bench(QUICK_SIZES if args.quick else SIZES, device, args.repeats, args.batches, args.compile)
    for r in rows:
        line = (f"{r['n_visible']:>7} {r['n_hidden']:>6} {r['batch']:>5} {r['textbook_s']:>10.4f} "
                f"{r['library_s']:>10.4f} {r['library_gain']:>+12.1%}")
        print(line + (f" {r['compiled_s']:>10.4f} {r['compile_gain']:>+12.1%}" if args.compile else ""))
    for key in ("library_gain", "compile_gain") if args.compile else ("library_gain",):
        gains = sorted(r[key] for r in rows)
        print(f"{key.replace('_', ' ')}: median {gains[len(gains) // 2]:+.1%}, min {gains[0]:+.1%}, "
              f"max {gains[-1]:+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
