import numpy as np
import pytest
import torch

from bimodal.errors import ConfigError, DataError, ShapeError
from bimodal.noise import add_noise, add_white_noise, signal_power, snr_db


def _speechlike(n=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    env = np.where((t > 0.2) & (t < 0.7), 1.0, 0.0)  # silence around a voiced stretch
    return (env * (0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.normal(size=n))).astype(np.float32)


@pytest.mark.parametrize("target", [-10.0, -5.0, 0.0, 5.0, 20.0])
def test_measured_snr_equals_requested(target):
    x = _speechlike()
    noisy = add_white_noise(x, target, rng=7)
    assert noisy.dtype == np.float32 and noisy.shape == x.shape
    assert abs(snr_db(x, noisy) - target) < 0.01


def test_noise_power_follows_whole_utterance_power():
    x = _speechlike()
    noisy = add_white_noise(x, 0.0, rng=1)
    noise = noisy.astype(np.float64) - x
    assert np.mean(noise ** 2) == pytest.approx(signal_power(x), rel=1e-4)
    # noise is white: present in the silent parts too, and roughly uncorrelated with itself at lag 1
    assert np.mean(noise[:1000] ** 2) > 0.5 * signal_power(x)
    assert abs(np.corrcoef(noise[:-1], noise[1:])[0, 1]) < 0.05


def test_deterministic_per_seed_and_generator():
    x = _speechlike()
    a = add_white_noise(x, 5.0, rng=3)
    b = add_white_noise(x, 5.0, rng=np.random.default_rng(3))
    c = add_white_noise(x, 5.0, rng=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_tensor_in_tensor_out():
    x = torch.from_numpy(_speechlike())
    y = add_white_noise(x, 10.0, rng=0)
    assert isinstance(y, torch.Tensor)
    assert abs(snr_db(x, y) - 10.0) < 0.01


def test_add_noise_with_given_noise():
    x = _speechlike()
    hum = np.sin(np.arange(len(x)) * 0.01)
    assert abs(snr_db(x, add_noise(x, hum, -3.0)) - (-3.0)) < 0.01
    with pytest.raises(ShapeError):
        add_noise(x, hum[:10], 0.0)


def test_silent_or_bad_input_raises():
    with pytest.raises(DataError, match="silent"):
        add_white_noise(np.zeros(100, dtype=np.float32), 0.0, rng=0)
    with pytest.raises(DataError):
        snr_db(np.zeros(10), np.ones(10))
    with pytest.raises(DataError):
        add_white_noise(np.array([1.0, np.nan]), 0.0, rng=0)
    with pytest.raises(ConfigError):
        add_white_noise(_speechlike(), 0.0, rng=None)
    with pytest.raises(ConfigError):
        add_white_noise(_speechlike(), float("inf"), rng=0)
    assert snr_db(np.ones(4), np.ones(4)) == float("inf")


def test_speech_active_mask_is_the_voiced_stretch():
    from bimodal.noise import speech_active_mask

    x = _speechlike()
    mask = speech_active_mask(x, 16000)
    assert mask.dtype == bool and mask.shape == x.shape
    i = np.arange(x.size)
    assert np.array_equal(mask, (i >= 3200) & (i < 11200))  # 20 ms frames 10..34: the voiced 0.2-0.7 s


def test_noise_floor_less_than_35_db_down_is_not_speech():
    from bimodal.noise import speech_active_mask

    x = _speechlike().astype(np.float64)
    x += 10 ** (-32 / 20) * 0.3 * np.random.default_rng(5).normal(size=x.size)  # floor 32 dB below the vowel
    active = speech_active_mask(x, 16000)
    t = np.arange(x.size) / 16000
    assert active[(t > 0.21) & (t < 0.69)].all() and not active[(t < 0.18) | (t > 0.72)].any()


@pytest.mark.parametrize("target", [-5.0, 0.0, 10.0])
def test_snr_of_the_speech_active_part(target):
    x = _speechlike()
    noisy = add_white_noise(x, target, rng=3, rate=16000)
    voiced = slice(int(0.2 * 16000), int(0.7 * 16000))
    assert abs(snr_db(x[voiced], noisy[voiced]) - target) < 0.1
    assert abs(snr_db(x, noisy, rate=16000) - target) < 0.01
    # the whole-utterance definition would call this ~3 dB worse (half the samples are silence)
    assert snr_db(x, noisy) < target - 2.5
