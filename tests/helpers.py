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


def nest_metrics(flat: dict) -> dict:
    """``{"a/b/c": v}`` back into nested dicts (the inverse of ``claims.flat_metrics``)."""
    out: dict = {}
    for key, value in flat.items():
        *path, leaf = key.split("/")
        node = out
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def count_syncs(monkeypatch, fn, names=("cpu", "item", "tolist", "numpy", "__bool__", "__int__", "__float__")) -> dict:
    """Run ``fn()`` counting calls of the tensor methods ``names`` (host syncs); returns the counts."""
    import torch

    calls = {n: 0 for n in names}
    for name in calls:
        original = getattr(torch.Tensor, name)

        def counting(self, *a, _name=name, _orig=original, **k):
            calls[_name] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counting)
    fn()
    monkeypatch.undo()
    return calls


def binary_prototypes(n=200, d=24, seed=0):
    """Binary rows copied from 4 random prototypes with 5% bit flips (easy structure for an RBM)."""
    rng = np.random.default_rng(seed)
    protos = rng.random((4, d)) < 0.4
    X = protos[rng.integers(0, 4, n)]
    return np.where(rng.random((n, d)) < 0.05, ~X, X).astype(np.float32)


def gaussian(n=200, d=24, seed=0):
    """Standard normal rows, float32."""
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
