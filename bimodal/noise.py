"""Additive white Gaussian noise at a chosen signal-to-noise ratio (the paper's noisy-audio tests).

Signal power is the mean square of the clean wave over the *whole* utterance, silences
included (the usual definition for these benchmarks; it makes the SNR of a mostly silent
recording lower in its speech parts than the nominal value). The drawn noise is rescaled so its
sample mean square is exactly ``P_signal / 10**(snr_db / 10)``, so the measured SNR equals the
requested one up to float rounding, not just in expectation.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import ConfigError, DataError, ShapeError


def _wave(x, name) -> tuple[np.ndarray, bool]:
    is_tensor = isinstance(x, torch.Tensor)
    a = np.asarray(x.detach().cpu() if is_tensor else x, dtype=np.float64)
    if a.size == 0:
        raise DataError("empty waveform", field=name)
    if not np.all(np.isfinite(a)):
        raise DataError("waveform contains NaN or infinite samples", field=name)
    return a, is_tensor


def _generator(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ConfigError(f"rng must be a numpy Generator or an int seed, got {type(rng).__name__}")


def signal_power(wave) -> float:
    """Mean square of ``wave`` over all its samples."""
    a, _ = _wave(wave, "wave")
    return float(np.mean(a * a))


def add_noise(wave, noise, snr_db: float):
    """Add ``noise`` scaled so that ``10 log10(P_wave / P_scaled_noise) == snr_db`` exactly.

    Parameters
    ----------
    wave : array or tensor, any shape (samples, or samples × channels). noise : same shape.
    snr_db : target SNR in dB (finite; may be negative).

    Returns
    -------
    noisy : same kind and shape as ``wave``, float32.
    """
    a, is_tensor = _wave(wave, "wave")
    n, _ = _wave(noise, "noise")
    if a.shape != n.shape:
        raise ShapeError(f"noise shape {n.shape} differs from wave shape {a.shape}", field="noise")
    if not np.isfinite(snr_db):
        raise ConfigError(f"snr_db must be finite, got {snr_db}")
    p_sig = np.mean(a * a)
    if p_sig == 0.0:
        raise DataError("the clean wave is silent (zero power): an SNR is undefined", field="wave")
    p_noise = np.mean(n * n)
    if p_noise == 0.0:
        raise DataError("the noise is all zeros and cannot be scaled to an SNR", field="noise")
    target = p_sig / 10.0 ** (snr_db / 10.0)
    out = (a + n * np.sqrt(target / p_noise)).astype(np.float32)
    return torch.from_numpy(out).to(wave.device) if is_tensor else out


def add_white_noise(wave, snr_db: float, rng):
    """``wave`` plus white Gaussian noise at exactly ``snr_db`` dB (see module docstring).

    Parameters
    ----------
    wave : 1-d (or any shape) array or tensor, the clean utterance.
    snr_db : target SNR in dB; 0 dB means noise as loud as the signal.
    rng : ``numpy.random.Generator`` or int seed (same seed ⇒ same noise).

    Returns
    -------
    noisy : same kind and shape as ``wave``, float32.

    Raises
    ------
    DataError for a silent, empty or non-finite wave.
    """
    a, _ = _wave(wave, "wave")
    noise = _generator(rng).standard_normal(a.shape)
    return add_noise(wave, noise, snr_db)


def snr_db(clean, noisy) -> float:
    """Measured SNR in dB: ``10 log10(mean(clean²) / mean((noisy − clean)²))``.

    Returns ``inf`` when ``noisy`` equals ``clean``; raises DataError for a silent ``clean``.
    """
    c, _ = _wave(clean, "clean")
    x, _ = _wave(noisy, "noisy")
    if c.shape != x.shape:
        raise ShapeError(f"noisy shape {x.shape} differs from clean shape {c.shape}", field="noisy")
    p_sig = np.mean(c * c)
    if p_sig == 0.0:
        raise DataError("the clean wave is silent (zero power): an SNR is undefined", field="clean")
    p_noise = np.mean((x - c) ** 2)
    return float("inf") if p_noise == 0.0 else float(10.0 * np.log10(p_sig / p_noise))
