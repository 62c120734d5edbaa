"""Utterance-level features from window-level codes: means over equal time slices.

Ngiam et al. (2011), section 4: a classifier sees one vector per utterance, built by averaging the
window-level hidden activations over ``S`` equal slices of the utterance, for ``S = 1`` (the whole
utterance) and ``S = 3``, and concatenating the means. :func:`pool_slices` does this for every
utterance at once with segment sums (``index_add_``), so it runs on the device with no Python loop
over utterances.

Slice rule
----------
An utterance with ``n`` windows (ranks ``r = 0 .. n-1`` in array order, which is time order) and
``S`` slices:

* ``n >= S``: window ``r`` belongs to slice ``floor(r * S / n)``. The slices partition the windows,
  are contiguous and differ in size by at most one (7 windows, S=3 → sizes 3, 2, 2).
* ``n < S``: a partition would leave slices empty, so each slice ``s`` is the single window that
  contains the slice's centre in continuous time, ``floor((s + 0.5) * n / S)``; slices then share
  windows (2 windows, S=3 → windows 0, 1, 1; 1 window → that window three times).

An utterance with no windows at all has no features and raises :class:`~bimodal.errors.DataError`.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from .errors import ConfigError, DataError, ShapeError

log = logging.getLogger(__name__)


def _codes_tensor(codes) -> tuple[torch.Tensor, bool]:
    """``codes`` as a floating tensor on its own device (numpy → CPU), plus whether it was numpy."""
    was_numpy = not isinstance(codes, torch.Tensor)
    t = torch.as_tensor(np.asarray(codes)) if was_numpy else codes.detach()
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if t.ndim != 2:
        raise ShapeError(f"expected window codes of shape (N, H), got shape {tuple(t.shape)}", field="codes")
    if not bool(torch.isfinite(t).all()):
        raise DataError("window codes contain NaN or infinite values", field="codes")
    return t, was_numpy


def _check_slices(slices) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in slices)
    except TypeError as exc:
        raise ConfigError(f"slices must be a sequence of positive ints, got {slices!r}") from exc
    if not out or any(s < 1 for s in out) or any(s != float(v) for s, v in zip(out, slices)):
        raise ConfigError(f"slices must be a non-empty sequence of positive ints, got {slices!r}")
    return out


def window_ranks(utt: torch.Tensor, n_utterances: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank of every window within its utterance, and the number of windows per utterance.

    Parameters
    ----------
    utt : LongTensor (N,), utterance index of each window, values in ``[0, n_utterances)``.
    n_utterances : int, U.

    Returns
    -------
    rank : LongTensor (N,), 0 for an utterance's first window (in array order), 1 for its second…
    counts : LongTensor (U,), windows per utterance.
    """
    n = utt.shape[0]
    counts = torch.bincount(utt, minlength=n_utterances)
    # A stable sort keeps each utterance's windows in array (= time) order.
    order = torch.sort(utt, stable=True).indices
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(utt)
    rank[order] = torch.arange(n, device=utt.device) - starts[utt[order]]
    return rank, counts


def pool_slices(codes, utt, n_utterances: int, slices=(1, 3)):
    """Utterance features: means of window codes over ``S`` equal time slices, for each ``S``.

    Parameters
    ----------
    codes : array or tensor (N, H), window-level activations.
    utt : int array or tensor (N,), the utterance index of each window, in ``[0, n_utterances)``.
        An utterance's windows need not be contiguous, but their order in the array is time order.
    n_utterances : int, U; every utterance must own at least one window.
    slices : sequence of positive ints, default ``(1, 3)`` as in Ngiam et al.

    Returns
    -------
    features : same kind as ``codes`` (numpy → numpy, tensor → tensor on its device), shape
        ``(U, H * sum(slices))``. Layout: for each ``S`` in the order given, the ``S`` slice means
        in time order, each ``H`` wide: ``[mean(S=1) | slice0(S=3) | slice1(S=3) | slice2(S=3)]``.
        See the module docstring for the slice rule, including utterances shorter than ``S``.

    Raises
    ------
    ShapeError if shapes disagree; DataError for out-of-range indices, non-finite codes or an
    utterance with no windows (the message names it).
    """
    slices = _check_slices(slices)
    x, was_numpy = _codes_tensor(codes)
    device = x.device
    U = int(n_utterances)
    if U < 1:
        raise ConfigError(f"n_utterances must be >= 1, got {n_utterances}")
    u = torch.as_tensor(np.asarray(utt) if not isinstance(utt, torch.Tensor) else utt, device=device)
    if u.ndim != 1 or u.shape[0] != x.shape[0]:
        raise ShapeError(f"expected utterance indices of shape ({x.shape[0]},) to match codes, "
                         f"got {tuple(u.shape)}", field="utt")
    if u.is_floating_point() or u.dtype == torch.bool:
        raise DataError(f"utterance indices must be integers, got dtype {u.dtype}", field="utt")
    u = u.long()
    if u.numel() and (int(u.min()) < 0 or int(u.max()) >= U):
        raise DataError(f"utterance indices must lie in [0, {U}), got range [{int(u.min())}, {int(u.max())}]",
                        field="utt")
    rank, counts = window_ranks(u, U)
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel():
        shown = empty[:10].tolist()
        raise DataError(f"utterance(s) {shown}{' …' if empty.numel() > 10 else ''} have no windows; "
                        f"every utterance needs at least one", field="utt")

    H = x.shape[1]
    order = torch.sort(u, stable=True).indices  # rows grouped by utterance, time order kept
    starts = torch.cumsum(counts, 0) - counts
    blocks = []
    for S in slices:
        n_w = counts[u]
        # Partition rule (n >= S): slice id from the window's relative position.
        slot = u * S + torch.div(rank * S, n_w, rounding_mode="floor")
        sums = torch.zeros(U * S, H, dtype=x.dtype, device=device).index_add_(0, slot, x)
        per_slot = torch.bincount(slot, minlength=U * S).clamp_min(1).to(x.dtype)
        means = sums / per_slot[:, None]
        short = torch.nonzero(counts < S).flatten()
        if short.numel():
            # Centre rule (n < S): slice s is the one window holding the slice's centre.
            n_s = counts[short][:, None]
            s = torch.arange(S, device=device)[None, :]
            centre_rank = torch.div((2 * s + 1) * n_s, 2 * S, rounding_mode="floor")  # (k, S)
            win = order[starts[short][:, None] + centre_rank]  # (k, S) window row indices
            means[(short[:, None] * S + s).flatten()] = x[win.flatten()]
        blocks.append(means.reshape(U, S * H))
    out = torch.cat(blocks, dim=1)
    return out.cpu().numpy() if was_numpy else out
