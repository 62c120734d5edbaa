import numpy as np
import pytest
import soundfile as sf

from bimodal.errors import DataError
from data_prep.audio import load_wav, log_spectrogram, resample


def tone(freq, rate, dur=0.5):
    t = np.arange(int(rate * dur)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_load_wav_stereo_to_mono_and_rate(tmp_path):
    x = tone(440, 8000)
    st = np.stack([x, np.zeros_like(x)], axis=1)
    p = tmp_path / "a.wav"
    sf.write(p, st, 8000)
    wave, rate = load_wav(p)
    assert rate == 8000 and wave.dtype == np.float32 and wave.ndim == 1
    np.testing.assert_allclose(wave, x / 2, atol=1e-3)


@pytest.mark.parametrize("case", ["missing", "empty", "garbage", "truncated", "rate"])
def test_load_wav_bad_input_names_file(tmp_path, case):
    p = tmp_path / f"{case}.wav"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "garbage":
        p.write_bytes(b"not a wav file at all" * 10)
    elif case == "truncated":
        sf.write(p, tone(440, 8000), 8000)
        p.write_bytes(p.read_bytes()[:30])
    elif case == "rate":
        sf.write(p, tone(440, 8000), 8000)
    with pytest.raises(DataError) as e:
        load_wav(p, expected_rate=16000 if case == "rate" else None)
    assert str(p) in str(e.value)
    if case == "rate":
        assert "8000" in str(e.value) and "16000" in str(e.value)


def test_resample_keeps_frequency_and_length():
    x = tone(1000, 8000, 1.0)
    y = resample(x, 8000, 16000, device="cpu")
    assert y.shape == (16000,)
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 16000 / len(y) - 1000) < 2


def test_log_spectrogram_shape_and_peak():
    rate = 16000
    x = tone(2000, rate, 1.0)
    S = log_spectrogram(x, rate, device="cpu")
    assert S.shape == (1 + len(x) // 160, 161) and S.dtype == np.float32
    assert np.isfinite(S).all()
    # 20 ms window at 16 kHz → 50 Hz bins: 2000 Hz is bin 40.
    assert np.bincount(S.argmax(axis=1)).argmax() == 40


def test_log_spectrogram_too_short():
    with pytest.raises(DataError, match="fewer than one"):
        log_spectrogram(np.zeros(100, np.float32), 16000, device="cpu")
