import numpy as np
import pytest
import torch

from bimodal import DBN, RBM, BimodalDBN
from bimodal.dbn import concatenated_rbm
from bimodal.errors import ConfigError, DataError, ShapeError
from helpers import paired_data


def test_dbn_greedy_training_and_transform_shapes():
    a, _ = paired_data(n=300, r=3)
    dbn = DBN([12, 16, 8], first_visible="gaussian", rbm_params={"lr": 0.05},
              first_layer_params={"lr": 5e-3}, device="cpu", seed=0).fit(a, epochs=[6, 4], batch_size=25)
    assert [r.visible for r in dbn.layers] == ["gaussian", "bernoulli"]
    assert dbn.layers[0].lr == 5e-3 and dbn.layers[1].lr == 0.05
    assert [len(h) for h in dbn.history] == [6, 4]
    # Each layer learned: its reconstruction error went down.
    assert all(h[-1] < h[0] for h in dbn.history), dbn.history
    top = dbn.transform(a)
    assert top.shape == (300, 8) and top.dtype == np.float32
    assert dbn.transform(a, layer=0).shape == (300, 16)
    # The up-pass is the composition of the layers' hidden probabilities.
    expected = dbn.layers[1].transform(dbn.layers[0].transform(a))
    assert np.allclose(top, expected)
    # The second layer was trained on the first layer's hidden probabilities.
    assert dbn.layers[1].history == dbn.history[1]


def test_bimodal_dbn_shapes_dtypes_and_save_load(tmp_path):
    a, v = paired_data(n=300, r=3)
    bdbn = BimodalDBN([12, 16], [10, 14], joint_hidden=9, first_layer_params={"lr": 5e-3}, device="cpu", seed=0)
    bdbn.fit(a, v, epochs=3, batch_size=50)
    assert bdbn.joint.n_visible == 16 + 14 and bdbn.joint.visible == "bernoulli"
    h = bdbn.transform(audio=a, video=v)
    assert h.shape == (300, 9) and h.dtype == np.float32 and ((h > 0) & (h < 1)).all()
    ht = bdbn.transform(torch.from_numpy(a), torch.from_numpy(v))
    assert isinstance(ht, torch.Tensor) and ht.dtype == torch.float32
    assert len(bdbn.history["joint"]) == 3 and len(bdbn.history["audio"]) == 1
    bdbn.save(tmp_path / "bdbn.pt")
    back = BimodalDBN.load(tmp_path / "bdbn.pt", device="cpu")
    assert torch.equal(back.transform(torch.from_numpy(a), torch.from_numpy(v)), ht)
    assert back.history == bdbn.history
    with pytest.raises(ConfigError, match="both"):
        bdbn.transform(audio=a, video=None)
    with pytest.raises(ShapeError, match="rows"):
        bdbn.transform(audio=a, video=v[:10])
    with pytest.raises(DataError, match="BimodalDBN"):
        DBN.load(tmp_path / "bdbn.pt")


def test_dbn_save_load_roundtrip(tmp_path):
    a, _ = paired_data(n=100, r=3)
    dbn = DBN([12, 8, 4], device="cpu", seed=1).fit(a, epochs=2, batch_size=20)
    dbn.save(tmp_path / "dbn.pt")
    back = DBN.load(tmp_path / "dbn.pt", device="cpu")
    x = torch.from_numpy(a)
    assert torch.equal(dbn.transform(x), back.transform(x))
    assert back.history == dbn.history and back.layers[0].history == dbn.layers[0].history


def test_concatenated_rbm_baseline():
    a, v = paired_data(n=300, r=3)
    rbm = concatenated_rbm(a, v, n_hidden=20, lr=5e-3, epochs=8, batch_size=25, device="cpu", seed=0)
    assert isinstance(rbm, RBM) and rbm.n_visible == 22
    X = np.hstack([a, v])
    assert rbm.transform(X).shape == (300, 20)
    assert rbm.history[-1] < rbm.history[0]


def test_dbn_rejects_bad_config():
    with pytest.raises(ConfigError):
        DBN([10])
    with pytest.raises(ConfigError, match="n_hidden"):
        DBN([10, 5], rbm_params={"n_hidden": 3})


@pytest.mark.parametrize("only", ["audio", "video"])
def test_bimodal_dbn_fit_only_one_modality_trains_the_full_fits_dbn(only):
    a, v = paired_data(n=200)
    extra = np.random.default_rng(5).standard_normal((40, a.shape[1])).astype(np.float32)

    def make():
        return BimodalDBN([a.shape[1], 8], [v.shape[1], 8], 6, device="cpu", seed=2)

    full = make().fit(a, v, epochs=2, batch_size=20, extra_audio=extra)
    part = make().fit(a, v, epochs=2, batch_size=20, extra_audio=extra, only=only)
    init = make()
    other = "video" if only == "audio" else "audio"
    for name, t in getattr(part, only).state_dict().items():
        assert torch.equal(t, getattr(full, only).state_dict()[name]), name
    for name, t in getattr(part, other).state_dict().items():
        assert torch.equal(t, getattr(init, other).state_dict()[name]), name
    assert torch.equal(part.joint.W, init.joint.W) and part.history["joint"] == []
    assert len(part.history[only][0]) == 2 and part.history[other] == [[]]
    with pytest.raises(ConfigError, match="only"):
        make().fit(a, v, epochs=1, only="joint")
