"""HTK-compatible ``MFCC_E_D`` features computed from a waveform: HCopy's analysis in numpy.

AVLetters ships its audio only as HTK ``MFCC_E_D`` files (``Audio/mfcc/Clean/*.mfcc``); extra
audio-visual data (GRID, ...) has to be turned into the *same* features before the two can be
mixed. :func:`htk_mfcc` follows HTK's HCopy as the HTK Book 3.4, chapter 5 ("Speech Input/Output")
and the HTK 3.4 sources (HSigP.c, HParm.c) describe it, one step per function below:

1. samples on HTK's 16-bit integer scale (HTK works on ``short`` samples; the MELFLOOR of 1.0 and
   the energy are on that scale);
2. frames of WINDOWSIZE every TARGETRATE, the first at sample 0, ``floor((N - win) / step) + 1``
   of them (HParm: ``nFr = (nSamp - frSize) / frRate + 1``);
3. per frame: ZMEANSOURCE, the raw energy (RAWENERGY), pre-emphasis (``s[i] -= k s[i-1]`` from
   the end, then ``s[0] *= 1 - k``), Hamming window (HSigP ``PreEmphasise``, ``Ham``);
4. magnitude (USEPOWER=F) of the FFT of the next power of two, summed into NUMCHANS triangular
   filters equally spaced on HTK's mel scale ``1127 ln(1 + f/700)`` between LOFREQ and HIFREQ,
   logged with HTK's floor ``log(max(x, 1.0))`` (HSigP ``InitFBank``, ``Wave2FBank``);
5. DCT-II ``c_j = sqrt(2/N) sum_k m_k cos(pi j (k - 1/2) / N)``, j = 1..NUMCEPS, times
   ``1 + L/2 sin(pi j / L)`` when CEPLIFTER L > 0 (HSigP ``FBank2MFCC``, ``WeightCepstrum``);
6. per utterance: log energy normalised (ENORMALISE: ``1 - (max E - E) * ESCALE``, E first
   clamped SILFLOOR dB below the maximum; HSigP ``NormaliseLogEnergy``), then the regression
   deltas over DELTAWINDOW frames (HTK Book eq. 5.16). Output order is HTK's:
   ``[c1..c12, E, dc1..dc12, dE]``.

Checked against HTK's own output for a public recording (tests/test_mfcc.py: HCopy's MFCC_0_D_A frames
of TIMIT's SA1 from wav2letter's tests): the cepstra and C0 match to 5e-5 and HTK 3's regression
deltas of them to 4e-6. The energy term, ENORMALISE and the V1COMPAT delta edges are not in that
reference: they rest on the HTK Book and sources and on AVLetters' own files (below).

AVLetters' settings, measured on its 312 files (``python -m benchmarks.avletters_mfcc_settings``)
------------------------------------------------------------------------------------------------
* TARGETRATE 20 ms, MFCC_E_D, NUMCEPS 12 (headers);
* ENORMALISE on: max E is exactly 1.0 in every file; min E -0.07..0.33 never reaches the SILFLOOR
  clamp (29-46 dB per utterance if ESCALE is HTK's 0.1, which fits speech; 1.0 would give 3-5 dB);
* DELTAWINDOW 2, with V1COMPAT's edges: inside, the stored deltas are HTK's +-2-frame regression
  of the stored statics to float precision (windows 1 and 3 miss by 2.8 and 1.3); the first and
  last two are ``x[t+1] - x[t]`` and ``x[t] - x[t-1]`` exactly (HParm ``AddDiffs``), not HTK 3's
  replicated frames (off by up to 1.9). V1COMPAT also makes HTK ignore ZMEANSOURCE;
* no lifter (CEPLIFTER 0): the per-coefficient stds fall from 1.28 (c1) to 0.2 (c11), the profile
  of unliftered cepstra; lifter 22 would multiply c12 4.6 times more than c1. On FSDD speech this
  module's unliftered c1..c12 stds are 1.1-1.8 x AVLetters', liftered ones 3.9-22 x;
* NUMCHANS >= 13: no column is identically zero, as c_N would be with N <= 12 channels;
* 20 ms < WINDOWSIZE <= 40 ms: 310 of 312 clips of T video frames (25 fps) have 2T - 1 audio
  frames, HTK's count for such a window if audio and video span the same time.

Assumed, because the files cannot tell: the sample rate and band (HIFREQ 8 kHz, so 16 and 44.1 kHz
sources get the same filterbank; 8 kHz audio needs ``hi_freq`` <= 4000), WINDOWSIZE 25 ms, and HTK's
defaults NUMCHANS 20, PREEMCOEF 0.97, Hamming window, magnitude filterbank, raw energy, ESCALE 0.1,
SILFLOOR 50 dB.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bimodal.errors import ConfigError, DataError
from data_prep.windows import deltas

#: HTK's log of a non-positive energy (HMath: ``LZERO`` for arguments below ``MINLARG``).
LZERO = -1.0e10
MINLARG = 2.45e-308
#: HSigP ``Wave2FBank``: filterbank outputs are floored at 1.0 before the log.
MELFLOOR = 1.0
#: Full scale of HTK's 16-bit samples.
SHORT_SCALE = 32768.0


@dataclass(frozen=True)
class HTKMFCCOptions:
    """HCopy configuration variables of an MFCC_E_D analysis (HTK Book 3.4, ch. 5).

    Each field is named after its HTK variable; the comment gives HTK's default. Values differ
    from HTK's defaults only where AVLetters' files measure them or where the files cannot tell
    and HTK has no usable default (see the module docstring).
    """

    target_rate_100ns: int = 200000       # TARGETRATE (HTK: 0, must be set); AVLetters: 200000 = 20 ms
    window_size_100ns: int = 250000       # WINDOWSIZE (HTK: 256000); assumed 25 ms, AVLetters: in (20, 40] ms
    zmean_source: bool = False            # ZMEANSOURCE (HTK: F); ignored by HTK under V1COMPAT
    pre_em_coef: float = 0.97             # PREEMCOEF (HTK: 0.97)
    use_hamming: bool = True              # USEHAMMING (HTK: T)
    use_power: bool = False               # USEPOWER (HTK: F): magnitude, not power, into the filterbank
    num_chans: int = 20                   # NUMCHANS (HTK: 20)
    lo_freq: float = -1.0                 # LOFREQ (HTK: -1 = 0 Hz)
    hi_freq: float = 8000.0               # HIFREQ (HTK: -1 = Nyquist); assumed 8 kHz for rate-independent bands
    num_ceps: int = 12                    # NUMCEPS (HTK: 12); AVLetters: 12
    cep_lifter: int = 0                   # CEPLIFTER (HTK: 22); AVLetters: unliftered
    raw_energy: bool = True               # RAWENERGY (HTK: T): energy before pre-emphasis and window
    e_normalise: bool = True              # ENORMALISE (HTK: T); AVLetters: max E = 1.0 in every file
    e_scale: float = 0.1                  # ESCALE (HTK: 0.1)
    sil_floor_db: float = 50.0            # SILFLOOR (HTK: 50.0 dB)
    delta_window: int = 2                 # DELTAWINDOW (HTK: 2); AVLetters: 2. 0 here: no _D (MFCC_E)
    v1_compat: bool = True                # V1COMPAT (HTK: F); AVLetters: simple differences at the edges

    def __post_init__(self):
        positive = {"TARGETRATE": self.target_rate_100ns, "WINDOWSIZE": self.window_size_100ns,
                    "NUMCHANS": self.num_chans, "NUMCEPS": self.num_ceps, "ESCALE": self.e_scale}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"HTK option {name} must be positive, got {value}")
        if not 0.0 <= self.pre_em_coef < 1.0:
            raise ConfigError(f"HTK option PREEMCOEF must be in [0, 1), got {self.pre_em_coef}")
        if self.cep_lifter < 0 or self.delta_window < 0 or self.sil_floor_db < 0:
            raise ConfigError("HTK options CEPLIFTER, DELTAWINDOW and SILFLOOR must not be negative, got "
                              f"{self.cep_lifter}, {self.delta_window}, {self.sil_floor_db}")
        if self.hi_freq >= 0 and self.lo_freq >= self.hi_freq:
            raise ConfigError(f"HTK option LOFREQ ({self.lo_freq} Hz) must lie below HIFREQ ({self.hi_freq} Hz)")

    @property
    def parm_kind(self) -> int:
        """HTK parmKind of :func:`htk_mfcc`'s output: MFCC (6) | _E (0o100) | _D (0o400) = 326."""
        return 6 | 0o100 | (0o400 if self.delta_window > 0 else 0)


def mel(freq_hz):
    """HTK's mel scale, ``1127 ln(1 + f / 700)`` (HSigP ``Mel``)."""
    return 1127.0 * np.log1p(np.asarray(freq_hz, dtype=np.float64) / 700.0)


def frame_geometry(rate: float, options: HTKMFCCOptions = HTKMFCCOptions()) -> tuple[int, int]:
    """(window, step) in samples at ``rate`` Hz.

    HParm truncates ``WINDOWSIZE / sampPeriod`` and ``TARGETRATE / sampPeriod``; the tiny
    tolerance keeps an exact ratio (882.0 at 44.1 kHz) from truncating to one sample less
    through rounding error.
    """
    samp_period = 1e7 / rate
    return (int(options.window_size_100ns / samp_period + 1e-9),
            int(options.target_rate_100ns / samp_period + 1e-9))


def fft_size(frame_len: int) -> int:
    """HTK's FFT length: the smallest power of two, at least 2, that holds the frame (InitFBank)."""
    n = 2
    while frame_len > n:
        n *= 2
    return n


def mel_filterbank(frame_len: int, rate: float, options: HTKMFCCOptions = HTKMFCCOptions()
                   ) -> tuple[np.ndarray, np.ndarray]:
    """HTK's triangular mel filterbank as a matrix (HSigP ``InitFBank`` / ``Wave2FBank``).

    Returns
    -------
    weights : (NUMCHANS, fftN / 2) float64; ``weights @ |X[0:fftN/2]|`` is the filterbank output,
        ``X`` the FFT of the (zero-padded) frame. Filter ``j`` rises from the centre of filter
        ``j - 1`` (LOFREQ's mel for the first) to its own centre and falls to the centre of filter
        ``j + 1`` (HIFREQ's mel for the last). Only FFT bins ``klo..khi`` contribute, as in HTK:
        never the DC bin.
    centres_mel : (NUMCHANS + 2,) mel positions ``[mlo, cf_1 .. cf_NUMCHANS, mhi]``.
    """
    n_fft = fft_size(frame_len)
    half = n_fft // 2
    # HParm passes the sample period to InitFBank as a `long`: 226 (not 226.76) x 100 ns at 44.1 kHz.
    samp_period = int(1e7 / rate + 1e-9)
    bin_hz = 1e7 / (samp_period * n_fft)
    # HTK indexes FFT bins from 1; bin k is frequency (k - 1) * bin_hz. Here k = index + 1.
    k = np.arange(1, half + 1)
    mel_k = mel((k - 1) * bin_hz)
    klo, khi = 2, half
    mlo, mhi = 0.0, float(mel(half * bin_hz))
    if options.lo_freq >= 0:
        mlo = float(mel(options.lo_freq))
        klo = max(2, int(options.lo_freq * samp_period * 1e-7 * n_fft + 2.5))
    if options.hi_freq >= 0:
        mhi = float(mel(options.hi_freq))
        khi = min(half, int(options.hi_freq * samp_period * 1e-7 * n_fft + 0.5))
    n_ch = options.num_chans
    # Channel centres equally spaced in mel; cf[0] = mlo and cf[n_ch + 1] = mhi close the triangles.
    cf = mlo + np.arange(n_ch + 2) / (n_ch + 1) * (mhi - mlo)
    weights = np.zeros((n_ch, half), dtype=np.float64)
    for i in range(half):
        if not klo <= k[i] <= khi:
            continue
        # lo = the channel whose centre lies at or below this bin (0: below the first centre)
        lo = int(np.searchsorted(cf[1:n_ch + 2], mel_k[i], side="left"))
        lo_weight = (cf[lo + 1] - mel_k[i]) / (cf[lo + 1] - cf[lo])
        if lo > 0:
            weights[lo - 1, i] += lo_weight          # falling edge of channel lo
        if lo < n_ch:
            weights[lo, i] += 1.0 - lo_weight        # rising edge of channel lo + 1
    return weights, cf


def cepstra(log_fbank: np.ndarray, num_ceps: int, cep_lifter: int) -> np.ndarray:
    """Liftered DCT-II of log filterbank frames (HSigP ``FBank2MFCC`` + ``WeightCepstrum``).

    ``c_j = sqrt(2/N) sum_{k=1..N} m_k cos(pi j (k - 1/2) / N)`` for j = 1..``num_ceps``, then
    ``c_j *= 1 + L/2 sin(pi j / L)`` when ``cep_lifter`` L > 0. ``log_fbank``: (T, N).
    """
    n = log_fbank.shape[1]
    j = np.arange(1, num_ceps + 1)[:, None]
    kk = np.arange(1, n + 1)[None, :]
    basis = math.sqrt(2.0 / n) * np.cos(np.pi * j * (kk - 0.5) / n)   # (num_ceps, N)
    c = log_fbank @ basis.T
    if cep_lifter > 0:
        c = c * lifter_weights(num_ceps, cep_lifter)
    return c


def lifter_weights(num_ceps: int, cep_lifter: int) -> np.ndarray:
    """HTK's sinusoidal lifter ``1 + L/2 sin(pi j / L)``, j = 1..num_ceps (HSigP ``GenCepWin``)."""
    j = np.arange(1, num_ceps + 1)
    return 1.0 + cep_lifter / 2.0 * np.sin(np.pi * j / cep_lifter)


def normalise_log_energy(log_e: np.ndarray, sil_floor_db: float, e_scale: float) -> np.ndarray:
    """ENORMALISE over one utterance (HSigP ``NormaliseLogEnergy``).

    E is clamped at ``max E - SILFLOOR ln(10) / 10`` (SILFLOOR dB below the loudest frame), then
    mapped to ``1 - (max E - E) * ESCALE``: the loudest frame gets exactly 1.0.
    """
    top = log_e.max()
    floor = top - sil_floor_db * math.log(10.0) / 10.0
    return 1.0 - (top - np.maximum(log_e, floor)) * e_scale


def htk_deltas(static: np.ndarray, window: int, v1_compat: bool) -> np.ndarray:
    """HTK's regression deltas of (T, D) frames over +-``window`` frames (HParm ``AddDiffs``).

    Inside, ``d_t = sum_n n (x_{t+n} - x_{t-n}) / (2 sum n^2)``
    (:func:`data_prep.windows.deltas`). At the edges HTK 3 replicates the first and last frame;
    under V1COMPAT the first ``window`` deltas are ``x_{t+1} - x_t`` and the last ``window`` are
    ``x_t - x_{t-1}`` instead (HTK 1.5's simple differences). An utterance too short to have an
    inside (T <= 2 window) gets the replicated regression throughout either way, as in HTK.
    """
    n, d = static.shape
    out = deltas(static, 1, window)[:, d:]
    if v1_compat and n > 2 * window:
        out[:window] = static[1:window + 1] - static[:window]
        out[n - window:] = static[n - window:] - static[n - window - 1:n - 1]
    return out


def _as_short_samples(wave, rate) -> np.ndarray:
    """Validate a mono wave and put it on HTK's 16-bit scale (float64, integer values)."""
    w = np.asarray(wave)
    if w.ndim != 1:
        raise DataError(f"expected a mono 1-d wave, got shape {w.shape}", field="wave")
    if w.size == 0:
        raise DataError("wave holds no samples", field="wave")
    if not (np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)):
        raise DataError(f"wave samples must be integers or floats, got dtype {w.dtype}", field="wave")
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
            or not math.isfinite(rate) or rate <= 0:
        raise DataError(f"sample rate must be a positive number of Hz, got {rate!r}", field="rate")
    if np.issubdtype(w.dtype, np.integer):
        if w.min() < -32768 or w.max() > 32767:
            raise DataError("integer samples must be 16-bit (-32768..32767)", field="wave")
        return w.astype(np.float64)
    if not np.isfinite(w).all():
        raise DataError("wave holds NaN or infinite samples", field="wave")
    peak = float(np.abs(w).max())
    if peak > 2.0:
        # A float wave is read as full scale +-1 (load_wav's convention); a peak far beyond that is
        # almost surely already on the 16-bit scale and would be clipped to a square wave.
        raise DataError(f"float samples reach {peak:g}; expected full scale +-1.0 "
                        "(pass int16 samples for the 16-bit scale)", field="wave")
    # HTK reads 16-bit samples: round and saturate as writing a 16-bit WAV would.
    return np.clip(np.rint(w.astype(np.float64) * SHORT_SCALE), -32768, 32767)


def htk_static(wave, rate, options: HTKMFCCOptions = HTKMFCCOptions()
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HCopy's per-frame analysis, before energy normalisation and deltas.

    Parameters
    ----------
    wave : (n_samples,) mono samples: floats at full scale +-1 (as ``load_wav`` returns them) or
        16-bit integers.
    rate : sample rate in Hz; must be at least twice HIFREQ.
    options : the HTK configuration.

    Returns
    -------
    cep : (T, NUMCEPS) liftered c1..cNUMCEPS.
    c0 : (T,) HTK's zeroth cepstral coefficient ``sqrt(2/N) sum_k m_k`` (the ``_0`` qualifier;
        not part of MFCC_E_D, returned for checks against ``_0`` references).
    log_energy : (T,) log frame energy (raw or windowed per RAWENERGY; ``LZERO`` for silence).
    All float64, T = ``floor((n_samples - window) / step) + 1``.

    Raises
    ------
    DataError naming the field for a wave that is not 1-d, empty, non-finite, not on a 16-bit
    scale or shorter than one window, and for a rate that is not positive or too low for HIFREQ.
    """
    x = _as_short_samples(wave, rate)
    if options.hi_freq >= 0 and options.hi_freq > rate / 2.0:
        raise DataError(f"{rate} Hz audio has no content up to HIFREQ = {options.hi_freq} Hz (Nyquist "
                        f"{rate / 2.0:g} Hz); resample it or lower hi_freq", field="rate")
    win, step = frame_geometry(rate, options)
    if win < 2 or step < 1:
        raise DataError(f"WINDOWSIZE {options.window_size_100ns} / TARGETRATE {options.target_rate_100ns} "
                        f"(100 ns) give {win} / {step} samples at {rate} Hz", field="rate")
    if x.size < win:
        raise DataError(f"wave has {x.size} samples, fewer than one {win}-sample window "
                        f"({options.window_size_100ns / 1e4:g} ms at {rate} Hz)", field="wave")
    n_frames = (x.size - win) // step + 1
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::step][:n_frames].copy()

    if options.zmean_source and not options.v1_compat:   # HParm ignores ZMEANSOURCE under V1COMPAT
        frames -= frames.mean(axis=1, keepdims=True)
    raw_e = np.einsum("ij,ij->i", frames, frames)        # before pre-emphasis and window (RAWENERGY)
    if options.pre_em_coef > 0:
        k = options.pre_em_coef
        frames[:, 1:] -= k * frames[:, :-1].copy()       # HTK's loop runs backwards: uses unfiltered s[i-1]
        frames[:, 0] *= 1.0 - k
    if options.use_hamming:
        frames *= 0.54 - 0.46 * np.cos(2.0 * np.pi * np.arange(win) / (win - 1))
    windowed_e = np.einsum("ij,ij->i", frames, frames)

    weights, _ = mel_filterbank(win, rate, options)
    spectrum = np.abs(np.fft.rfft(frames, n=fft_size(win), axis=1))[:, :weights.shape[1]]
    if options.use_power:
        spectrum = spectrum ** 2
    log_fbank = np.log(np.maximum(spectrum @ weights.T, MELFLOOR))
    cep = cepstra(log_fbank, options.num_ceps, options.cep_lifter)
    c0 = math.sqrt(2.0 / options.num_chans) * log_fbank.sum(axis=1)
    energy = raw_e if options.raw_energy else windowed_e
    log_energy = np.where(energy < MINLARG, LZERO, np.log(np.maximum(energy, MINLARG)))
    return cep, c0, log_energy


def htk_mfcc(wave, rate, options: HTKMFCCOptions = HTKMFCCOptions()) -> np.ndarray:
    """MFCC_E_D features of one utterance, as HCopy computes them (see the module docstring).

    Parameters
    ----------
    wave : (n_samples,) mono samples, floats at full scale +-1 or 16-bit integers.
    rate : sample rate in Hz (at least 2 x HIFREQ).
    options : HTK configuration; the defaults reproduce AVLetters' settings where measurable.

    Returns
    -------
    (T, 2 (NUMCEPS + 1)) float32 ``[c1..cNUMCEPS, E, dc1..dcNUMCEPS, dE]`` (T, NUMCEPS + 1 with
    DELTAWINDOW 0), one frame every TARGETRATE; write it with
    ``write_htk(path, X, options.target_rate_100ns, options.parm_kind)``.

    Raises
    ------
    DataError naming the field, see :func:`htk_static`.
    """
    cep, _, log_energy = htk_static(wave, rate, options)
    if options.e_normalise:
        log_energy = normalise_log_energy(log_energy, options.sil_floor_db, options.e_scale)
    static = np.concatenate([cep, log_energy[:, None]], axis=1).astype(np.float32)
    if options.delta_window == 0:
        return static
    return np.concatenate([static, htk_deltas(static, options.delta_window, options.v1_compat)], axis=1)
