import pytest
import torch

from bimodal.augment import AUDIO_ONLY, BOTH, VIDEO_ONLY, augment_batch, kind_counts, mask_inputs, zero_modality
from bimodal.errors import ConfigError


def test_zero_modality_zeroes_exactly_the_masked_rows():
    x = torch.arange(1, 13, dtype=torch.float32).reshape(4, 3)
    mask = torch.tensor([True, False, True, False])
    out = zero_modality(x, mask)
    assert (out[mask] == 0).all() and torch.equal(out[~mask], x[~mask])
    assert x.min() > 0  # the input is not modified


@pytest.mark.parametrize("fractions,n,expected", [((1 / 3, 1 / 3, 1 / 3), 99, (33, 33, 33)),
                                                  ((1 / 3, 1 / 3, 1 / 3), 100, None),
                                                  ((0.5, 0.25, 0.25), 40, (20, 10, 10)),
                                                  ((0, 0, 1), 17, (0, 0, 17))])
def test_augment_batch_counts(fractions, n, expected):
    g = torch.Generator().manual_seed(0)
    a, v = torch.rand(n, 5) + 1.0, torch.rand(n, 7) + 1.0  # strictly positive: zeros come from augmentation
    a_in, v_in, kind = augment_batch(a, v, fractions, g)
    counts = tuple(int((kind == k).sum()) for k in (VIDEO_ONLY, AUDIO_ONLY, BOTH))
    if expected is None:
        assert sum(counts) == n and max(counts) - min(counts) <= 1
    else:
        assert counts == expected
    audio_zeroed = (a_in == 0).all(1)
    video_zeroed = (v_in == 0).all(1)
    assert torch.equal(audio_zeroed, kind == VIDEO_ONLY)
    assert torch.equal(video_zeroed, kind == AUDIO_ONLY)
    assert not (audio_zeroed & video_zeroed).any()
    keep = kind == BOTH
    assert torch.equal(a_in[keep], a[keep]) and torch.equal(v_in[keep], v[keep])


def test_augment_rows_are_random_but_seeded():
    a, v = torch.ones(30, 2), torch.ones(30, 2)
    k1 = augment_batch(a, v, generator=torch.Generator().manual_seed(1))[2]
    k2 = augment_batch(a, v, generator=torch.Generator().manual_seed(1))[2]
    k3 = augment_batch(a, v, generator=torch.Generator().manual_seed(2))[2]
    assert torch.equal(k1, k2) and not torch.equal(k1, k3)


def test_kind_counts_rejects_bad_fractions():
    with pytest.raises(ConfigError, match="summing to 1"):
        kind_counts(10, (0.5, 0.5, 0.5))
    with pytest.raises(ConfigError):
        kind_counts(10, (0.5, 0.5))
    assert kind_counts(10, (0.25, 0.25, 0.5)) in {(3, 2, 5), (2, 3, 5)}


def test_mask_inputs_masks_the_requested_fraction():
    x = torch.rand(200, 100) + 0.5
    out = mask_inputs(x, 0.3, torch.Generator().manual_seed(0))
    frac = float((out == 0).float().mean())
    # Binomial(20000, 0.3): standard deviation ≈ 0.0032.
    assert abs(frac - 0.3) < 0.015, frac
    kept = out != 0
    assert torch.equal(out[kept], x[kept])
    assert mask_inputs(x, 0.0) is x
    with pytest.raises(ConfigError):
        mask_inputs(x, 1.5)
