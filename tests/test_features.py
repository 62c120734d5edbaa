import numpy as np
import pytest
import torch

from bimodal.errors import ConfigError, DataError, ShapeError
from bimodal.features import pool_slices, window_ranks


def _codes(n, h=2):
    return np.arange(n * h, dtype=np.float32).reshape(n, h)


def test_seven_windows_three_slices_by_hand():
    X = _codes(7)  # rows [0,1], [2,3], ..., [12,13]
    out = pool_slices(X, np.zeros(7, dtype=np.int64), 1, slices=(1, 3))
    # S=1: mean of all rows; S=3 partition of 7 windows: sizes 3, 2, 2.
    expected = [6, 7] + [2, 3] + [7, 8] + [11, 12]
    assert out.shape == (1, 2 * 4)
    np.testing.assert_allclose(out[0], expected)


def test_concatenation_follows_the_order_of_slices():
    X = _codes(7)
    utt = np.zeros(7, dtype=np.int64)
    a = pool_slices(X, utt, 1, slices=(1, 3))
    b = pool_slices(X, utt, 1, slices=(3, 1))
    np.testing.assert_allclose(b[0, :6], a[0, 2:])
    np.testing.assert_allclose(b[0, 6:], a[0, :2])


def test_interleaved_windows_pool_like_contiguous_ones():
    rng = np.random.default_rng(0)
    lens = [5, 3, 9, 4]
    codes = rng.normal(size=(sum(lens), 3)).astype(np.float32)
    utt = np.repeat(np.arange(4), lens)
    # Interleave utterances at random positions, each utterance's windows kept in time order.
    positions = rng.permutation(len(utt))
    rows = np.empty(len(utt), dtype=np.int64)
    start = 0
    for u, k in enumerate(lens):
        rows[np.sort(positions[start:start + k])] = np.flatnonzero(utt == u)
        start += k
    ref = pool_slices(codes, utt, 4, slices=(1, 3))
    got = pool_slices(codes[rows], utt[rows], 4, slices=(1, 3))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    # utterance 2 (9 windows): third slice = mean of its last 3 windows
    np.testing.assert_allclose(ref[2, 3 + 6:], codes[utt == 2][6:].mean(0), rtol=1e-6)


def test_utterance_shorter_than_number_of_slices_uses_centre_windows():
    X = _codes(3)  # utterance 0: 2 windows; utterance 1: 1 window
    utt = np.array([0, 0, 1])
    out = pool_slices(X, utt, 2, slices=(3,))
    # 2 windows, S=3: slice centres at 1/3, 1, 5/3 windows -> windows 0, 1, 1
    np.testing.assert_allclose(out[0], np.concatenate([X[0], X[1], X[1]]))
    np.testing.assert_allclose(out[1], np.concatenate([X[2], X[2], X[2]]))


def test_numpy_and_tensor_agree_and_keep_their_kind():
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(20, 4)).astype(np.float32)
    utt = np.repeat(np.arange(5), [1, 2, 3, 6, 8])
    a = pool_slices(codes, utt, 5)
    b = pool_slices(torch.from_numpy(codes), torch.from_numpy(utt), 5)
    assert isinstance(a, np.ndarray) and isinstance(b, torch.Tensor)
    assert a.shape == (5, 16)
    np.testing.assert_allclose(b.numpy(), a, rtol=1e-6)


def test_window_ranks():
    utt = torch.tensor([1, 0, 1, 1, 0])
    rank, counts = window_ranks(utt, 3)
    assert rank.tolist() == [0, 0, 1, 2, 1]
    assert counts.tolist() == [2, 3, 0]


def test_empty_utterance_is_named():
    with pytest.raises(DataError, match=r"\[2\]"):
        pool_slices(_codes(4), np.array([0, 0, 1, 1]), 3)


def test_bad_inputs():
    with pytest.raises(ShapeError):
        pool_slices(_codes(4), np.array([0, 0, 1]), 2)
    with pytest.raises(DataError):
        pool_slices(_codes(4), np.array([0, 0, 1, 5]), 2)
    with pytest.raises(ConfigError):
        pool_slices(_codes(4), np.array([0, 0, 1, 1]), 2, slices=(0,))
    bad = _codes(4)
    bad[1, 0] = np.nan
    with pytest.raises(DataError):
        pool_slices(bad, np.array([0, 0, 1, 1]), 2)
