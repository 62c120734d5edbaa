"""Files read back are safe and their errors are clear: model files hold only tensors and plain
data, damaged files raise DataError naming them, results JSON is strict, written files follow
the umask."""
import json
import os
import pickle
import stat

import numpy as np
import pytest
import torch

from bimodal.errors import DataError
from bimodal.io import atomic_write_bytes, atomic_write_json

PLAIN = (type(None), bool, int, float, str)


class _WritesMarker:
    """Unpickling this creates the file ``marker``: proof that a load ran code from the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _rbm_payload(history):
    from bimodal import RBM

    rbm = RBM(4, 3, device="cpu", seed=0)
    return {"class": "RBM", "config": rbm.config(), "state_dict": rbm.state_dict(), "history": history}


def _assert_plain(value):
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        for v in value.values():
            _assert_plain(v)
    elif isinstance(value, list):
        for v in value:
            _assert_plain(v)
    else:
        assert type(value) in PLAIN, (type(value), value)


# ---------------------------------------------------------------- model files
def test_model_file_with_a_code_running_object_is_refused_and_never_run(tmp_path):
    from bimodal.persist import Persistable

    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save(_rbm_payload([_WritesMarker(marker)]), path)
    with pytest.raises(DataError, match="holds objects other than tensors and plain data") as info:
        Persistable.load(path, device="cpu")
    assert str(path) in str(info.value) and "could run code" in str(info.value)
    assert not marker.exists()


def test_model_file_with_a_pickled_callable_is_refused(tmp_path):
    from bimodal import RBM

    path = tmp_path / "callable.pt"
    torch.save(_rbm_payload([os.system]), path)
    with pytest.raises(DataError, match="holds objects other than tensors and plain data .*system"):
        RBM.load(path, device="cpu")


def test_model_file_of_an_older_version_with_numpy_scalars_says_what_to_do(tmp_path):
    from bimodal import RBM

    path = tmp_path / "old.pt"
    payload = _rbm_payload([np.float64(0.5)])
    payload["config"]["seed"] = np.int64(0)
    torch.save(payload, path)
    with pytest.raises(DataError, match="holds objects other than tensors and plain data") as info:
        RBM.load(path, device="cpu")
    assert str(path) in str(info.value) and "retrain" in str(info.value)


@pytest.mark.parametrize("damage", ["truncated", "junk", "empty", "plain pickle"])
def test_damaged_model_file_is_not_a_bimodal_model_file(tmp_path, damage):
    from bimodal import RBM

    path = RBM(4, 3, device="cpu", seed=0).save(tmp_path / "rbm.pt")
    data = path.read_bytes()
    path.write_bytes({"truncated": data[:len(data) // 2], "junk": b"not a model file at all\n" * 10, "empty": b"",
                      "plain pickle": pickle.dumps({"class": "RBM"})}[damage])
    with pytest.raises(DataError, match="is not a bimodal model file") as info:
        RBM.load(path, device="cpu")
    assert str(info.value).startswith(str(path))


def _models():
    from bimodal import RBM, BimodalAutoencoder, BimodalDBN, DeepAutoencoder
    from bimodal.conv_frontend import ConvFrameAutoencoder
    from bimodal.dbn import DBN

    # numpy scalars and tuples, as callers pass them, must come back as equal plain values
    return [
        RBM(np.int64(5), 3, lr=np.float32(0.01), device="cpu", seed=np.int64(2)),
        DBN((5, 4, 3), rbm_params={"k": np.int64(2), "momentum": np.float64(0.4)}, device="cpu", seed=np.int64(1)),
        BimodalDBN((5, 4), (6, 4), 3, joint_params={"sparsity_target": np.float64(0.1)}, device="cpu",
                   seed=np.int64(0)),
        DeepAutoencoder((5, 4, 3), tied=np.bool_(True), device="cpu", seed=np.int64(3)),
        BimodalAutoencoder((5, 4), (6, 4), 3, input_modalities=("audio", "video"), kl_weight=np.float64(0.5),
                           device="cpu", seed=np.int64(4)),
        ConvFrameAutoencoder(frame_shape=(np.int64(16), 16), code_dim=np.int64(4), channels=2, device="cpu",
                             seed=np.int64(5)),
    ]


@pytest.mark.parametrize("index", range(6))
def test_every_model_class_saves_plain_data_and_round_trips(tmp_path, index):
    from bimodal.persist import Persistable

    model = _models()[index]
    if isinstance(model.history, dict):
        model.history = {"audio": [[np.float64(0.5)]], "video": [[0.25]], "joint": [np.float32(0.125)]}
        model._set_history(model.history)
    elif model.history and isinstance(model.history[0], list):
        model._set_history([[np.float64(0.5)] for _ in model.history])
    else:
        model.history = [np.float64(0.5), 0.25]
    path = model.save(tmp_path / "model.pt")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    _assert_plain(payload["config"])
    _assert_plain(payload["history"])
    loaded = Persistable.load(path, device="cpu")
    assert type(loaded) is type(model)
    assert loaded.config() == model.config()
    assert loaded.history == model.history
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a.cpu(), b.cpu())


def test_save_refuses_a_config_value_that_is_not_plain_data(tmp_path):
    from bimodal import RBM

    rbm = RBM(4, 3, device="cpu", seed=0)
    rbm.history = [object()]
    with pytest.raises(DataError, match=r"history\[0\].*only tensors and plain data"):
        rbm.save(tmp_path / "rbm.pt")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- npz files
def _whitener_file(tmp_path):
    from data_prep.whitening import PCAWhitener

    w = PCAWhitener(3).fit(np.random.default_rng(0).standard_normal((50, 6)))
    path = tmp_path / "whitener.npz"
    w.save(path)
    return path


def _damaged_npz_loaders():
    from data_prep.dataset import AVDataset, Preprocessor
    from data_prep.whitening import PCAWhitener

    return {"whitener": (PCAWhitener.load, "PCA whitener file"), "dataset": (AVDataset.load, "dataset file"),
            "preprocessor": (Preprocessor.load, "preprocessor file")}


@pytest.mark.parametrize("kind", ["whitener", "dataset", "preprocessor"])
@pytest.mark.parametrize("damage", ["truncated", "junk", "npy"])
def test_damaged_npz_raises_data_error_naming_the_file(tmp_path, kind, damage):
    load, what = _damaged_npz_loaders()[kind]
    path = _whitener_file(tmp_path)  # any npz: each damage makes it unreadable before its keys matter
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "junk":
        path.write_bytes(b"not an npz archive\n" * 10)
    else:
        with open(path, "wb") as f:
            np.save(f, np.arange(3))
    with pytest.raises(DataError, match=f"not a readable {what}") as info:
        load(path)
    assert str(info.value).startswith(str(path))


def test_whitener_file_missing_an_array_names_the_file_and_the_key(tmp_path):
    from data_prep.whitening import PCAWhitener

    path = _whitener_file(tmp_path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "components"}
    np.savez(path, **arrays)
    with pytest.raises(DataError, match="components") as info:
        PCAWhitener.load(path)
    assert str(info.value).startswith(str(path))


def test_preprocessor_file_missing_label_names_names_the_file_and_the_key(tmp_path):
    from data_prep.dataset import Preprocessor

    path = tmp_path / "prep.npz"
    np.savez(path, cfg_json=np.array(json.dumps({})))
    with pytest.raises(DataError, match="label_names") as info:
        Preprocessor.load(path)
    assert str(info.value).startswith(str(path))


# ---------------------------------------------------------------- JSON and file modes
def test_non_finite_number_in_results_json_names_the_key_and_writes_nothing(tmp_path):
    path = tmp_path / "results.json"
    results = {"runs": [{"metrics": {"fusion/clean/raw": {"audio": float("nan"), "video": 0.5}}}]}
    with pytest.raises(DataError, match=r"runs\[0\]\.metrics\.fusion/clean/raw\.audio") as info:
        atomic_write_json(path, results)
    assert str(path) in str(info.value)
    with pytest.raises(DataError, match=r"scores\[1\]"):
        atomic_write_json(path, {"scores": np.array([0.5, np.inf], dtype=np.float32)})
    assert not list(tmp_path.iterdir())


def test_written_file_mode_follows_the_umask_and_an_existing_file_keeps_its_mode(tmp_path):
    old = os.umask(0o022)
    try:
        new = atomic_write_bytes(tmp_path / "new.bin", b"x")
        existing = tmp_path / "existing.bin"
        existing.write_bytes(b"old")
        existing.chmod(0o640)
        atomic_write_bytes(existing, b"new")
    finally:
        os.umask(old)
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640 and existing.read_bytes() == b"new"


# ---------------------------------------------------------------- resume
@pytest.mark.parametrize("content", ['{"seed": 0, "fold": 0, "metr', "", "\xff\xfe"])
def test_resume_with_a_corrupt_fold_results_file_names_it(tmp_path, content):
    from experiments.config import config_from_dict
    from experiments.runner import run_experiment

    cfg = config_from_dict({"experiment": {"name": "tiny", "seeds": [0], "n_folds": 2},
                            "data": {"source": "synth", "root": str(tmp_path / "corpus"),
                                     "cache_dir": str(tmp_path / "cache")}})
    done = tmp_path / "out" / "checkpoints" / "seed0_fold0" / "results.json"
    done.parent.mkdir(parents=True)
    done.write_bytes(content.encode("latin-1"))
    with pytest.raises(DataError, match="delete this file") as info:
        run_experiment(cfg, tmp_path / "out", device="cpu", resume=True, progress=False, write_report=False)
    assert str(info.value).startswith(str(done)) and "--resume" in str(info.value)


def test_resume_with_a_corrupt_config_json_names_it(tmp_path):
    from experiments.runner import _check_resumable
    from test_experiments import tiny_config

    (tmp_path / "config.json").write_text('{"experiment": ')
    with pytest.raises(DataError, match="config.json.*unreadable.*new --out folder"):
        _check_resumable(tiny_config(tmp_path / "c"), tmp_path, resume=True)


def test_frame_cache_never_unpickles(tmp_path):
    """The frame cache is arrays and a JSON index: a pickle planted under its name is never run."""
    import pickle

    from experiments import pipeline

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "frames-0123.npz"
    path.write_bytes(pickle.dumps({"k": Payload()}))
    assert pipeline.load_frame_cache(path) == {} and not marker.exists()
    cache = {("a.wav", "u1", None): (np.ones((3, 2), np.float32), np.full((4, 6), 0.5, np.float32), 25.0),
             ("a.wav", "u1", "white-noise snr=0.0"): (np.zeros((3, 2), np.float32), None, 25.0)}
    cache[("a.wav", "u1", "white-noise snr=0.0")] = (np.zeros((3, 2), np.float32), cache[("a.wav", "u1", None)][1], 25.0)
    pipeline.save_frame_cache(cache, path)
    back = pipeline.load_frame_cache(path)
    assert set(back) == set(cache)
    for k in cache:
        np.testing.assert_array_equal(back[k][0], cache[k][0])
        assert np.abs(back[k][1] - cache[k][1]).max() < 1 / 255 and back[k][2] == 25.0
    assert back[("a.wav", "u1", None)][1] is back[("a.wav", "u1", "white-noise snr=0.0")][1]  # shared again
