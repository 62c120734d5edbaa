"""Device selection, seeding and numpy/tensor conversion used by every model."""
from __future__ import annotations

import random

import numpy as np
import torch

from .errors import ConfigError, DataError, ShapeError


def resolve_device(device=None) -> torch.device:
    """Return ``torch.device(device)``; ``None`` or ``"auto"`` means CUDA when available, else CPU.

    Raises ConfigError for a name that is no device, or a CUDA device this machine does not have."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"device {device!r}: not a device name (expected auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"device {device!r}: no CUDA GPU is available here (torch.cuda.is_available() is "
                              "False); use --device cpu or auto")
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"device {device!r}: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def make_generator(seed: int | None, device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (random seed if ``None``)."""
    g = torch.Generator(device=resolve_device(device))
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def as_tensor(X, device, dtype=torch.float32, name: str = "X", ndim: int | None = 2) -> tuple[torch.Tensor, bool]:
    """Convert ``X`` (numpy array, tensor or nested list) to a tensor on ``device``.

    Returns ``(tensor, was_numpy)`` so the caller can give back the kind it was given
    (see :func:`restore_type`). Raises :class:`ShapeError` naming ``name`` when ``X`` has the
    wrong number of dimensions, and a ``DataError`` when it holds NaN or infinity.
    """
    was_numpy = not isinstance(X, torch.Tensor)
    t = torch.as_tensor(np.asarray(X) if was_numpy else X)
    t = t.to(device=resolve_device(device), dtype=dtype)
    if ndim is not None and t.ndim != ndim:
        raise ShapeError(f"expected a {ndim}-d array, got shape {tuple(t.shape)}", field=name)
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise DataError("contains NaN or infinite values", field=name)
    return t, was_numpy


def check_paired_rows(audio, video) -> None:
    """Raise :class:`ShapeError` unless ``audio`` and ``video`` have one row per example each."""
    if audio.shape[0] != video.shape[0]:
        raise ShapeError(f"audio has {audio.shape[0]} rows but video has {video.shape[0]}", field="video")


def restore_type(t: torch.Tensor, was_numpy: bool):
    """Give back a numpy array if the input was one, else the tensor (detached)."""
    t = t.detach()
    return t.cpu().numpy() if was_numpy else t


def single_blas_thread():
    """Context manager limiting numpy/scipy's BLAS to one thread (threadpoolctl).

    Call scikit-learn solvers inside it when torch is also used in the process: torch's OpenMP
    threads keep spinning for a while after each op and starve a multi-threaded OpenBLAS on a small
    machine (measured: 9 logistic-regression fits took 10 s with 2 BLAS threads after torch work,
    0.75 s with one).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


class single_torch_thread:
    """Context manager running torch's CPU ops on one intra-op thread (restored on exit).

    For many small CPU ops in a row (the gram classifiers' n × n Newton steps): on a busy
    machine, OpenMP threads spin-waiting for a core make each small op many times slower
    (measured in a loaded fusion run: 0.27 s per batched 10 × 267² Cholesky with 2 threads).
    A no-op for CUDA devices.
    """

    def __init__(self, device=None):
        self.cpu = resolve_device(device).type == "cpu"

    def __enter__(self):
        if self.cpu:
            self._old = torch.get_num_threads()
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self.cpu:
            torch.set_num_threads(self._old)
        return False
