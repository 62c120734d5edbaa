"""Additive white Gaussian noise at a chosen signal-to-noise ratio (the paper's noisy-audio tests).

Two definitions of the SNR, chosen by passing the sample ``rate`` or not:

* whole utterance (no ``rate``): signal power is the mean square of the clean wave over all its
  samples, silences included; in a padded recording the speech is then cleaner than nominal.
* speech-active part (``rate`` given; what the experiments use): signal and noise powers are
  the mean squares over the samples of the *speech-active frames* only. The voice-activity rule
  (:func:`speech_active_mask`): cut the clean wave into non-overlapping 20 ms frames; a frame is
  speech-active when its energy (mean square) is within ``ACTIVE_THRESHOLD_DB`` = 35 dB of the
  loudest frame of the utterance *and* more than ``FLOOR_MARGIN_DB`` = 3 dB above the noise floor
  (the 10th-percentile frame energy). The rule is energy-based, so it needs no labels and works on
  any corpus; 35 dB keeps weak consonants (fricatives and bursts are 15-30 dB below the vowels), the
  floor margin drops leading and trailing silences even when the recording's background is less
  than 35 dB below the speech.

Either way the drawn noise is rescaled so its sample mean square (over the same samples as the
signal's) is exactly ``P_signal / 10**(snr_db / 10)``: the measured SNR equals the requested one
up to float rounding, not just in expectation.
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


ACTIVE_FRAME_MS = 20.0
ACTIVE_THRESHOLD_DB = 35.0
FLOOR_MARGIN_DB = 3.0


def speech_active_mask(wave, rate: int, frame_ms: float = ACTIVE_FRAME_MS,
                       threshold_db: float = ACTIVE_THRESHOLD_DB) -> np.ndarray:
    """Samples of the speech-active frames (the module docstring's rule), ``(n_samples,)`` bool.

    Parameters
    ----------
    wave : 1-d clean waveform. rate : its sample rate in Hz.
    frame_ms : frame length; a last partial frame is a frame of its own.
    threshold_db : a frame is active when its energy is within this many dB of the loudest frame.
    """
    a, _ = _wave(wave, "wave")
    if a.ndim != 1:
        raise ShapeError(f"expected a 1-d waveform, got shape {a.shape}", field="wave")
    if rate is None or rate <= 0:
        raise ConfigError(f"rate must be a positive sample rate, got {rate!r}")
    if not threshold_db > 0:
        raise ConfigError(f"threshold_db must be positive, got {threshold_db}")
    n = max(1, int(round(rate * frame_ms / 1000.0)))
    n_frames = -(-a.size // n)
    padded = np.zeros(n_frames * n)
    padded[:a.size] = a * a
    counts = np.full(n_frames, n, dtype=np.float64)
    counts[-1] = a.size - (n_frames - 1) * n
    energy = padded.reshape(n_frames, n).sum(1) / counts
    if energy.max() == 0.0:
        raise DataError("the clean wave is silent (zero power): no speech-active part", field="wave")
    # within threshold_db of the loudest frame, and clear of the recording's noise floor (the 10th
    # percentile frame energy: a frame within FLOOR_MARGIN_DB of it is background, not speech)
    active = (energy >= energy.max() * 10.0 ** (-threshold_db / 10.0)) & \
        (energy > np.percentile(energy, 10) * 10.0 ** (FLOOR_MARGIN_DB / 10.0))
    if not active.any():  # a flat recording (no floor to tell speech from): all of it
        active[:] = True
    return np.repeat(active, n)[:a.size]


def _reference(a: np.ndarray, rate) -> np.ndarray:
    """The samples the SNR is defined over: all, or the speech-active ones when ``rate`` is given."""
    return np.ones(a.shape, bool) if rate is None else speech_active_mask(a.ravel(), rate).reshape(a.shape)


def signal_power(wave) -> float:
    """Mean square of ``wave`` over all its samples."""
    a, _ = _wave(wave, "wave")
    return float(np.mean(a * a))


def add_noise(wave, noise, snr_db: float, rate: int | None = None):
    """Add ``noise`` scaled so that ``10 log10(P_wave / P_scaled_noise) == snr_db`` exactly.

    Parameters
    ----------
    wave : array or tensor, any shape (samples, or samples × channels). noise : same shape.
    snr_db : target SNR in dB (finite; may be negative).
    rate : sample rate of a 1-d ``wave``; given, both powers are taken over the speech-active
        samples only (see the module docstring), else over all samples.

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
    ref = _reference(a, rate) if np.any(a) else np.ones(a.shape, bool)
    p_sig = np.mean(a[ref] ** 2)
    if p_sig == 0.0:
        raise DataError("the clean wave is silent (zero power): an SNR is undefined", field="wave")
    p_noise = np.mean(n[ref] ** 2)
    if p_noise == 0.0:
        raise DataError("the noise is all zeros and cannot be scaled to an SNR", field="noise")
    target = p_sig / 10.0 ** (snr_db / 10.0)
    out = (a + n * np.sqrt(target / p_noise)).astype(np.float32)
    return torch.from_numpy(out).to(wave.device) if is_tensor else out


def add_white_noise(wave, snr_db: float, rng, rate: int | None = None):
    """``wave`` plus white Gaussian noise at exactly ``snr_db`` dB (see module docstring).

    Parameters
    ----------
    wave : 1-d (or any shape) array or tensor, the clean utterance.
    snr_db : target SNR in dB; 0 dB means noise as loud as the signal.
    rng : ``numpy.random.Generator`` or int seed (same seed ⇒ same noise).
    rate : sample rate; given, the SNR is that of the speech-active part (module docstring).

    Returns
    -------
    noisy : same kind and shape as ``wave``, float32.

    Raises
    ------
    DataError for a silent, empty or non-finite wave.
    """
    a, _ = _wave(wave, "wave")
    noise = _generator(rng).standard_normal(a.shape)
    return add_noise(wave, noise, snr_db, rate)


def snr_db(clean, noisy, rate: int | None = None) -> float:
    """Measured SNR in dB: ``10 log10(mean(clean²) / mean((noisy − clean)²))``, the means over all
    samples, or over the speech-active samples of ``clean`` when ``rate`` is given.

    Returns ``inf`` when ``noisy`` equals ``clean``; raises DataError for a silent ``clean``.
    """
    c, _ = _wave(clean, "clean")
    x, _ = _wave(noisy, "noisy")
    if c.shape != x.shape:
        raise ShapeError(f"noisy shape {x.shape} differs from clean shape {c.shape}", field="noisy")
    if not np.any(c):
        raise DataError("the clean wave is silent (zero power): an SNR is undefined", field="clean")
    ref = _reference(c, rate)
    p_sig = np.mean(c[ref] ** 2)
    p_noise = np.mean((x - c)[ref] ** 2)
    return float("inf") if p_noise == 0.0 else float(10.0 * np.log10(p_sig / p_noise))
