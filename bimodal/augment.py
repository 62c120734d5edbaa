"""Training-time augmentation of the bimodal autoencoder (Ngiam et al. 2011, Sec. 3.2).

Each minibatch mixes rows with the audio zeroed (video only), rows with the video zeroed
(audio only) and rows with both present, while the loss always reconstructs both clean
modalities; optionally a fraction of the input units is masked to zero (denoising).
All functions work on device tensors and draw from a ``torch.Generator`` on that device.
"""
from __future__ import annotations

import math

import torch

from .device import check_paired_rows
from .errors import ConfigError, ShapeError

VIDEO_ONLY, AUDIO_ONLY, BOTH = 0, 1, 2
KIND_NAMES = ("video_only", "audio_only", "both")
NO_AUGMENTATION = (0.0, 0.0, 1.0)
# The paper's mix: a third of each batch video only, a third audio only, a third both.
DEFAULT_FRACTIONS = (1 / 3, 1 / 3, 1 / 3)


def check_fractions(fractions) -> tuple[float, float, float]:
    """Validate ``(video_only, audio_only, both)``: three non-negative numbers summing to 1."""
    try:
        f = tuple(float(x) for x in fractions)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"fractions must be three numbers (video_only, audio_only, both), got {fractions!r}") from exc
    if len(f) != 3 or min(f) < 0 or not math.isclose(sum(f), 1.0, abs_tol=1e-6):
        raise ConfigError(f"fractions must be three non-negative numbers (video_only, audio_only, both) "
                          f"summing to 1, got {fractions!r}")
    return f


def kind_counts(n_rows: int, fractions) -> tuple[int, int, int]:
    """Rows of each kind in a batch of ``n_rows``: largest-remainder rounding, so counts sum to ``n_rows``."""
    f = check_fractions(fractions)
    exact = [x * n_rows for x in f]
    counts = [int(math.floor(x)) for x in exact]
    for i in sorted(range(3), key=lambda i: exact[i] - counts[i], reverse=True)[: n_rows - sum(counts)]:
        counts[i] += 1
    return tuple(counts)


def zero_modality(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Copy of ``x`` (N, D) with the rows where ``mask`` (N,) is True set to zero."""
    if mask.shape != (x.shape[0],):
        raise ShapeError(f"mask must have shape ({x.shape[0]},), got {tuple(mask.shape)}", field="mask")
    return x * (~mask.bool()).to(x.dtype).unsqueeze(1)


def augment_batch(audio: torch.Tensor, video: torch.Tensor, fractions=DEFAULT_FRACTIONS,
                  generator: torch.Generator | None = None):
    """Zero one modality in a random subset of rows.

    Parameters
    ----------
    audio, video : (B, Da), (B, Dv) tensors of one minibatch.
    fractions : (video_only, audio_only, both)
        Share of rows with the audio zeroed, with the video zeroed, and left intact. Counts are
        exact per batch (see :func:`kind_counts`); which rows get which kind is random.
    generator : torch.Generator on the tensors' device.

    Returns
    -------
    audio_in, video_in : inputs with the chosen rows zeroed (new tensors).
    kind : (B,) int64 — ``VIDEO_ONLY`` (0), ``AUDIO_ONLY`` (1) or ``BOTH`` (2) per row.
    """
    check_paired_rows(audio, video)
    n = audio.shape[0]
    n_video_only, n_audio_only, _ = kind_counts(n, fractions)
    # A random permutation assigns kinds so that counts are exact and positions random.
    order = torch.randperm(n, generator=generator, device=audio.device)
    kind = torch.full((n,), BOTH, dtype=torch.long, device=audio.device)
    kind[order[:n_video_only]] = VIDEO_ONLY
    kind[order[n_video_only:n_video_only + n_audio_only]] = AUDIO_ONLY
    return zero_modality(audio, kind == VIDEO_ONLY), zero_modality(video, kind == AUDIO_ONLY), kind


def mask_inputs(x: torch.Tensor, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Masking noise: set each unit of ``x`` to zero independently with probability ``fraction``."""
    if not 0.0 <= float(fraction) < 1.0:
        raise ConfigError(f"corruption fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= fraction
    return x * keep.to(x.dtype)
