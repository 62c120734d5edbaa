"""Opt-in fast-math switches for training: TF32 matmuls, bf16 autocast and ``torch.compile``.

Every ``fit`` of :class:`bimodal.rbm.RBM`, :class:`bimodal.autoencoder.DeepAutoencoder` and
:class:`bimodal.autoencoder.BimodalAutoencoder` takes the same three keyword arguments (fields of
:class:`bimodal.options.FitOptions`) and hands them to :func:`fast_math` / :func:`maybe_compile`:

``matmul_precision`` : {"highest", "high", "medium"}
    ``torch.set_float32_matmul_precision`` for the duration of ``fit`` (restored afterwards).
    "high" lets CUDA use TF32 tensor cores for fp32 matmuls (~10 bits of mantissa); on a CPU
    without AMX/AVX-512 it changes nothing. Default "highest" = plain fp32.
``autocast_dtype`` : None or torch.bfloat16 / torch.float16
    Runs the matmuls under ``torch.autocast`` in that dtype (parameters, optimiser state and the
    accumulated updates stay fp32). Worth it on GPUs and CPUs with bf16 units; on AVX2-only
    CPUs it is slower.
``compile`` : bool
    ``torch.compile`` the per-batch step (fuses the elementwise work around the matmuls): the same
    step function, wrapped for the one ``fit`` (the RBM's step, ``RBM._step`` behind :meth:`~bimodal.rbm.RBM.training_step`,
    the autoencoders' batch loss); no model keeps compiled code. The first call compiles (tens of
    seconds on a CPU), so it pays off only for long runs. Not measured to pay on CUDA yet
    (``python -m benchmarks.rbm_step --device cuda --compile`` does).

The defaults give the plain fp32 eager path; tests/test_fast_paths.py (and for the RBM's bf16
step tests/test_rbm_steps.py) checks that each switch gives the same model within a stated
tolerance.
"""
from __future__ import annotations

import contextlib

import torch

from .errors import ConfigError

MATMUL_PRECISIONS = ("highest", "high", "medium")
AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)


def check_fast_options(matmul_precision: str = "highest", autocast_dtype=None, compile: bool = False):
    """Validate the three switches; returns ``autocast_dtype`` as a ``torch.dtype`` or None.

    ``autocast_dtype`` may also be given as the strings "bfloat16"/"bf16"/"float16"/"fp16"
    (so it can come from a config file or the command line).
    """
    if matmul_precision not in MATMUL_PRECISIONS:
        raise ConfigError(f"matmul_precision must be one of {MATMUL_PRECISIONS}, got {matmul_precision!r}")
    if isinstance(autocast_dtype, str):
        names = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                 "fp16": torch.float16, "none": None}
        if autocast_dtype.lower() not in names:
            raise ConfigError(f"autocast_dtype must be one of {sorted(names)}, got {autocast_dtype!r}")
        autocast_dtype = names[autocast_dtype.lower()]
    if autocast_dtype is not None and autocast_dtype not in AUTOCAST_DTYPES:
        raise ConfigError(f"autocast_dtype must be None, torch.bfloat16 or torch.float16, got {autocast_dtype!r}")
    if not isinstance(compile, bool):
        raise ConfigError(f"compile must be True or False, got {compile!r}")
    return autocast_dtype


@contextlib.contextmanager
def fast_math(device, matmul_precision: str = "highest", autocast_dtype=None):
    """Context for a training loop: sets the fp32 matmul precision and enters autocast if asked.

    The global matmul precision is restored on exit, so one model's setting never leaks into
    another's.
    """
    autocast_dtype = check_fast_options(matmul_precision, autocast_dtype)
    device = torch.device(device)
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(matmul_precision)
    try:
        if autocast_dtype is None:
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                yield
    finally:
        torch.set_float32_matmul_precision(old)


def autocast(device, autocast_dtype=None):
    """``torch.autocast`` in ``autocast_dtype`` on ``device``'s type, or a no-op context if None.

    For autograd training wrap only the forward pass / loss in it (the backward pass then
    follows the forward dtypes); keep :func:`fast_math` with ``autocast_dtype=None`` around the
    whole loop so that the matmul precision also covers the backward pass.
    """
    if autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype)


def autocast_off(device):
    """Context that disables autocast inside a :func:`fast_math` block (for fp32 bookkeeping)."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


def maybe_compile(fn, compile: bool):
    """``torch.compile(fn)`` (static shapes) if ``compile`` else ``fn`` unchanged."""
    return torch.compile(fn, dynamic=False) if compile else fn
