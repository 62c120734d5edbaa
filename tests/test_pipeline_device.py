"""Experiment features stay on the device: windows uploaded once per dataset, codes pooled there,
one host copy of the pooled features, and a number of host syncs that does not grow with the data."""
import gc
import weakref

import numpy as np
import pytest
import torch

from bimodal.autoencoder import BimodalAutoencoder
from bimodal.dbn import BimodalDBN
from bimodal.features import pool_slices
from data_prep.dataset import AVDataset
from experiments import pipeline
from helpers import count_syncs

NAMES = ["raw.audio", "rbm.video", "bimodal_dae.both", "bimodal_dae.video", "bimodal_dbn.both", "bimodal_dbn.video"]


def _dataset(n_utt=12, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, n_utt)  # includes utterances shorter than 3 slices
    utt = np.repeat(np.arange(n_utt), lengths)
    return AVDataset(audio=rng.standard_normal((len(utt), 10)).astype(np.float32),
                     video=rng.standard_normal((len(utt), 6)).astype(np.float32), utt=utt,
                     labels=np.arange(n_utt) % 3, speakers=np.array(["s1"] * n_utt),
                     utterance_ids=np.array([f"u{i}" for i in range(n_utt)]), label_names=["a", "b", "c"])


@pytest.fixture(scope="module")
def models():
    dbn = BimodalDBN([10, 8], [6, 8], 5, device="cpu", seed=0)
    dae = BimodalAutoencoder.random_init([10, 8], [6, 8], 5, device="cpu", seed=0)
    return {"bimodal_dbn": dbn, "bimodal_dae": dae}


def test_device_features_equal_the_host_path(models):
    ds = _dataset()
    codes = pipeline.window_codes(models, ds, NAMES)
    dae, dbn = models["bimodal_dae"], models["bimodal_dbn"]
    host = {"raw.audio": ds.audio, "rbm.video": dbn.video.layers[0].transform(ds.video),
            "bimodal_dae.both": dae.encode(audio=ds.audio, video=ds.video), "bimodal_dae.video": dae.encode(video=ds.video),
            "bimodal_dbn.both": dbn.transform(audio=ds.audio, video=ds.video),
            "bimodal_dbn.video": dbn.transform(audio=np.zeros_like(ds.audio), video=ds.video)}
    for name in NAMES:
        assert isinstance(codes[name], torch.Tensor) and codes[name].device.type == "cpu"
        feats = pipeline.utterance_features(codes[name], ds, (1, 3))
        assert isinstance(feats, np.ndarray) and feats.dtype == np.float32
        np.testing.assert_allclose(feats, pool_slices(host[name], ds.utt, ds.n_utterances, (1, 3)), atol=1e-6)


def test_windows_are_uploaded_once_per_dataset(models):
    ds = _dataset()
    first = pipeline.device_windows(ds, "cpu")
    pipeline.window_codes(models, ds, NAMES)
    again = pipeline.device_windows(ds, "cpu")
    assert all(again[k] is first[k] for k in ("audio", "video", "utt"))
    ref = weakref.ref(first["audio"])
    del ds, first, again
    gc.collect()
    assert ref() is None  # the copies die with their dataset: no module-level cache holds them


def test_a_dataset_never_gets_the_windows_of_another():
    # a new dataset made where a freed one was (the same id() is possible) starts with no copies
    for seed in range(5):
        ds = _dataset(seed=seed)
        np.testing.assert_array_equal(pipeline.device_windows(ds, "cpu")["audio"].numpy(), ds.audio)
        del ds


def test_host_syncs_do_not_grow_with_the_data(models, monkeypatch):
    def features(ds):
        pipeline.device_windows(ds, "cpu")  # the one upload is not a sync we count
        return lambda: [pipeline.utterance_features(c, ds, (1, 3))
                        for c in pipeline.window_codes(models, ds, NAMES).values()]

    small = count_syncs(monkeypatch, features(_dataset(n_utt=6, seed=1)))
    large = count_syncs(monkeypatch, features(_dataset(n_utt=60, seed=2)))
    assert small == large  # per feature set, never per batch, window or utterance
    assert large["cpu"] == len(NAMES)  # one host copy of each pooled feature set
    assert large["item"] == large["tolist"] == 0
