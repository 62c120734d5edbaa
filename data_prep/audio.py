"""Audio front end: WAV loading, resampling and the log-magnitude spectrogram (Ngiam et al. 2011).

The paper computes spectrograms with 20 ms windows and a 10 ms hop, so audio features run at
100 frames per second; PCA whitening and temporal derivatives happen later (``dataset.py``).
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from bimodal.device import resolve_device
from bimodal.errors import DataError, require_file

log = logging.getLogger(__name__)

#: Sample rates outside this range are almost certainly a broken header, not real audio.
MIN_RATE = 1000
MAX_RATE = 384000
#: A waveform whose peak stays below this fraction of full scale is taken to be silent.
SILENCE_PEAK = 1e-6


def load_wav(path, expected_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read a WAV (or any libsndfile format) as float32 mono.

    Parameters
    ----------
    path : file to read.
    expected_rate : if given, the file's sample rate must equal it (use when resampling is off).

    Returns
    -------
    wave : (n_samples,) float32 in [-1, 1]; stereo is averaged to mono.
    rate : sample rate in Hz.

    Raises
    ------
    DataError naming the file when it is missing, empty, undecodable, has no samples, holds
    non-finite values or has an unexpected / implausible sample rate.
    """
    import soundfile as sf

    path = require_file(path, "audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError subclasses
        raise DataError(f"cannot decode audio ({type(exc).__name__}: {exc})", path=path) from exc
    check_rate(rate, path)
    if expected_rate is not None and rate != expected_rate:
        raise DataError(f"sample rate is {rate} Hz, expected {expected_rate} Hz "
                        "(enable resampling or convert the file)", path=path, field="sample_rate")
    if data.shape[0] == 0:
        raise DataError("audio file holds no samples", path=path)
    return mono(data, path), int(rate)


def check_rate(rate: int, path) -> None:
    """DataError naming ``path`` unless ``MIN_RATE <= rate <= MAX_RATE``."""
    if not (MIN_RATE <= rate <= MAX_RATE):
        raise DataError(f"implausible sample rate {rate} Hz (expected {MIN_RATE}..{MAX_RATE})",
                        path=path, field="sample_rate")


def mono(data: np.ndarray, path, field: str | None = None) -> np.ndarray:
    """(n_samples, channels) → contiguous float32 mono (channels averaged); DataError naming
    ``path`` on NaN or infinite samples, and a logged warning naming it when the mono wave is
    silent (peak below ``SILENCE_PEAK`` of full scale)."""
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        raise DataError("audio holds NaN or infinite samples", path=path, field=field)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak < SILENCE_PEAK:
        # Kept, not skipped: silence is valid audio, but a silent clip in a speech corpus is most
        # likely a broken recording or export, and its features are the spectrogram's floor.
        log.warning("%s: audio is silent (peak %.3g of full scale)", path, peak)
    return np.ascontiguousarray(wave, dtype=np.float32)


def resample(wave: np.ndarray, orig_rate: int, new_rate: int, device=None) -> np.ndarray:
    """Resample a mono wave with ``torchaudio.functional.resample`` (windowed sinc).

    Parameters
    ----------
    wave : (n_samples,) float array.
    orig_rate, new_rate : sample rates in Hz.
    device : torch device for the computation (None → CUDA if available).

    Returns
    -------
    (round(n_samples * new_rate / orig_rate),) float32 numpy array.
    """
    import torchaudio.functional as AF

    if orig_rate == new_rate:
        return np.asarray(wave, dtype=np.float32)
    if orig_rate <= 0 or new_rate <= 0:
        raise DataError(f"sample rates must be positive, got {orig_rate} -> {new_rate}", field="sample_rate")
    t = torch.as_tensor(np.asarray(wave, dtype=np.float32), device=resolve_device(device))
    out = AF.resample(t, int(orig_rate), int(new_rate))
    return out.cpu().numpy().astype(np.float32, copy=False)


def frame_params(rate: int, win_ms: float = 20.0, hop_ms: float = 10.0) -> tuple[int, int]:
    """Window and hop length in samples for the given rate (window ≥ 2 samples)."""
    win = int(round(rate * win_ms / 1000.0))
    hop = int(round(rate * hop_ms / 1000.0))
    if win < 2 or hop < 1:
        raise DataError(f"window {win_ms} ms / hop {hop_ms} ms too short at {rate} Hz", field="win_ms")
    return win, hop


_SPEC_CACHE: dict = {}


def log_spectrogram(wave: np.ndarray, rate: int, win_ms: float = 20.0, hop_ms: float = 10.0,
                    device=None, floor: float = 1e-6) -> np.ndarray:
    """Log-magnitude spectrogram with a Hann window, centred frames.

    Frame ``j`` is centred at time ``j * hop_ms`` (torchaudio ``center=True``), which
    ``windows.align_audio_to_video`` relies on.

    Parameters
    ----------
    wave : (n_samples,) float array at ``rate`` Hz.
    rate : sample rate in Hz.
    win_ms, hop_ms : window and hop in milliseconds (paper: 20 and 10).
    device : where the STFT runs (None → CUDA if available).
    floor : added to the magnitude before the log so silence gives a finite value.

    Returns
    -------
    (T_a, F) float32 numpy array, ``T_a = 1 + n_samples // hop``, ``F = n_fft // 2 + 1``.
    """
    import torchaudio.transforms as T

    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise DataError(f"expected a mono 1-d wave, got shape {wave.shape}", field="wave")
    win, hop = frame_params(rate, win_ms, hop_ms)
    if wave.shape[0] < win:
        raise DataError(f"audio has {wave.shape[0]} samples, fewer than one {win_ms} ms window "
                        f"({win} samples)", field="wave")
    dev = resolve_device(device)
    key = (win, hop, str(dev))
    spec = _SPEC_CACHE.get(key)
    if spec is None:
        # center=True pads by n_fft//2 on each side; reflect padding needs fewer samples than that.
        spec = T.Spectrogram(n_fft=win, win_length=win, hop_length=hop, power=1.0, center=True,
                             pad_mode="reflect").to(dev)
        _SPEC_CACHE[key] = spec
    with torch.no_grad():
        mag = spec(torch.as_tensor(wave, device=dev))  # (F, T_a)
        out = torch.log(mag + floor).T.contiguous()
    return out.cpu().numpy().astype(np.float32, copy=False)
