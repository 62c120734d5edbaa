from pathlib import Path

import pytest

from bimodal.config import apply_override, config_from_dict, load_config, with_overrides
from bimodal.errors import ConfigError, DataError

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "experiments" / "configs").glob("*.toml"))


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"pretrain": {"epoch": 3}})
    msg = str(e.value)
    assert "'epoch'" in msg and "[pretrain]" in msg and "epochs" in msg and "lr_gaussian" in msg


def test_unknown_section_and_prep_key():
    with pytest.raises(ConfigError, match="valid keys: experiment, data"):
        config_from_dict({"modle": {}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'audio_pca_dims' in \[data.prep\]"):
        config_from_dict({"data": {"prep": {"audio_pca_dims": 10}}})


def test_wrong_types_and_choices():
    with pytest.raises(ConfigError, match="finetune.epochs: expected int"):
        config_from_dict({"finetune": {"epochs": "ten"}})
    with pytest.raises(ConfigError, match="expected one of svm, logreg"):
        config_from_dict({"eval": {"classifier": "knn"}})
    with pytest.raises(ConfigError, match="fractions"):
        config_from_dict({"finetune": {"fractions": [0.5, 0.5]}})
    with pytest.raises(ConfigError, match="unknown setting"):
        config_from_dict({"experiment": {"settings": ["fusion", "telepathy"]}})


def test_ints_accepted_as_floats_and_defaults_kept():
    cfg = config_from_dict({"finetune": {"lr": 1}, "pretrain": {"epochs": 3}})
    assert cfg.finetune.lr == 1.0 and isinstance(cfg.finetune.lr, float)
    assert cfg.pretrain.epochs == 3 and cfg.pretrain.batch_size == 100


def test_overrides():
    data = apply_override({}, "finetune.fractions=[0, 0, 1]")
    assert data == {"finetune": {"fractions": [0, 0, 1]}}
    assert apply_override({}, "data.root=/tmp/x")["data"]["root"] == "/tmp/x"  # bare strings allowed
    cfg = with_overrides(config_from_dict({}), {"model.shared": 32})
    assert cfg.model.shared == 32
    with pytest.raises(ConfigError, match="names no config key"):
        with_overrides(config_from_dict({}), {"model.sharde": 32})


def test_ablation_variant_keys_are_checked(tmp_path):
    p = tmp_path / "a.toml"
    p.write_text('[[ablation]]\nname = "x"\nset = { "finetune.fractionz" = [0, 0, 1] }\n')
    with pytest.raises(ConfigError, match="fractionz"):
        load_config(p)


def test_missing_and_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[experiment\nname = 1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_are_valid(path):
    cfg = load_config(path)
    assert cfg.experiment.name == path.stem


@pytest.mark.parametrize("override, message", [
    ("finetune.epochs=-3", "finetune.epochs must be a positive integer"),
    ("pretrain.batch_size=0", "pretrain.batch_size must be a positive integer"),
    ("finetune.lr=0.0", "finetune.lr must be positive"),
    ("eval.Cs=[0.1, -1.0]", "eval.Cs must be positive"),
])
def test_bad_numbers_fail_when_the_config_is_loaded(override, message):
    """Before any preprocessing or training: the whole config is checked at load time."""
    from bimodal.config import load_config
    from bimodal.cli import CONFIG_DIR

    with pytest.raises(ConfigError, match=message):
        load_config(CONFIG_DIR / "demo.toml", [override])


def test_extract_names_a_missing_model_file(tmp_path):
    from experiments.extract import extract_features

    with pytest.raises(DataError, match=r"nonexistent\.pt.*model file not found"):
        extract_features(tmp_path / "nonexistent.pt", tmp_path, tmp_path / "f.npz")
