"""Small synthetic data sets shared by the model tests."""
import numpy as np


def paired_data(n=400, da=12, dv=10, r=2, seed=0):
    """Audio and video driven by one shared latent of ``r`` dims, each standardised (whitened-like)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, r))
    a = z @ rng.standard_normal((r, da)) + 0.1 * rng.standard_normal((n, da))
    v = np.tanh(z @ rng.standard_normal((r, dv))) + 0.1 * rng.standard_normal((n, dv))
    return _standardise(a), _standardise(v)


def _standardise(x):
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)
