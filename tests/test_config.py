from pathlib import Path

import pytest

from bimodal.errors import ConfigError, DataError
from experiments.config import PretrainConfig, apply_override, config_from_dict, load_config, tomllib, with_overrides

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
    assert cfg.pretrain.epochs == 3 and cfg.pretrain.batch_size == PretrainConfig().batch_size


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
    ("finetune.lr=0.0", "finetune.lr must be a positive number"),
    ("eval.Cs=[0.1, -1.0]", "eval.Cs must be a non-empty list of positive numbers"),
    # issue 18: each of these passed the load check and failed after training, or not at all
    ("finetune.fractions=[1, 1, 1]", "finetune.fractions must be three non-negative numbers .* summing to 1"),
    ("finetune.fractions=[nan, 1, 1]", r"finetune.fractions\[0\]: expected a finite number"),
    ("eval.Cs=[inf]", r"eval.Cs\[0\]: expected a finite number"),
    ("pretrain.cd_k=0", "pretrain.cd_k must be a positive integer"),
    ("model.shared=0", "model.shared must be a positive integer"),
    ("model.audio_hidden=[]", "model.audio_hidden must be a non-empty list"),
    ("finetune.corruption=1.0", r"finetune.corruption must be a masking probability in \[0, 1\)"),
    ("experiment.device='gpu0'", "experiment.device = 'gpu0': not a device name"),
    ("pretrain.final_momentum=nan", "pretrain.final_momentum: expected a finite number"),
    ("pretrain.final_momentum=1.5", r"pretrain.final_momentum must be in \[0, 1\)"),
    ("pretrain.weight_decay=-1e-4", "pretrain.weight_decay must be a non-negative number"),
    ("pretrain.weight_decay=nan", "pretrain.weight_decay: expected a finite number"),
    ("pretrain.sparsity_cost=-1", "pretrain.sparsity_cost must be a non-negative number"),
    ("finetune.l1_shared=-0.1", "finetune.l1_shared must be a non-negative number"),
    ("eval.snr_db=[nan]", r"eval.snr_db\[0\]: expected a finite number"),
    ("eval.cv_folds=1", "eval.cv_folds must be at least 2"),
    ("data.prep.audio_pca=2.5", "data.prep.audio_pca: expected int, got float 2.5"),
    ("data.prep.audio_pca='40'", "data.prep.audio_pca: expected int, got str '40'"),
    ("data.prep.pca_eps=nan", "data.prep.pca_eps: expected a finite number"),
    ("experiment.seeds=[0, 0]", "experiment.seeds must be distinct non-negative integers"),
    ("experiment.seeds=[]", "experiment.seeds must be at least one seed"),
    ("pretrain.momentum=0.9", "pretrain.momentum is now called pretrain.final_momentum"),
    ("experiment.split='folds'", "experiment.split = 'folds' is now called 'kfold'"),
])
def test_bad_numbers_fail_when_the_config_is_loaded(override, message):
    """Before any preprocessing or training: the whole config is checked at load time."""
    from bimodal.cli import CONFIG_DIR

    with pytest.raises(ConfigError, match=message):
        load_config(CONFIG_DIR / "demo.toml", [override])


def test_extract_names_a_missing_model_file(tmp_path):
    from experiments.extract import extract_features

    with pytest.raises(DataError, match=r"nonexistent\.pt.*model file not found"):
        extract_features(tmp_path / "nonexistent.pt", tmp_path, tmp_path / "f.npz")


def test_a_config_starts_from_its_base(tmp_path):
    (tmp_path / "parent.toml").write_text('[experiment]\nname = "parent"\nseeds = [4]\n[model]\nshared = 40\n'
                                          'audio_hidden = [30, 20]\n[data.prep]\naudio_pca = 12\n')
    (tmp_path / "child.toml").write_text('base = "parent.toml"\n[model]\naudio_hidden = [8]\n[data.prep]\n'
                                         'video_pca = 6\n')
    cfg = load_config(tmp_path / "child.toml")
    # tables merge key by key; a list replaces the base's list; the name is the file's own
    assert cfg.model.shared == 40 and cfg.model.audio_hidden == [8] and cfg.experiment.seeds == [4]
    assert cfg.data.prep == {"audio_pca": 12, "video_pca": 6} and cfg.experiment.name == "child"
    # dataclass defaults below both
    assert cfg.model.video_hidden == config_from_dict({}).model.video_hidden
    (tmp_path / "loop.toml").write_text('base = "loop2.toml"\n')
    (tmp_path / "loop2.toml").write_text('base = "loop.toml"\n')
    with pytest.raises(ConfigError, match="'base' chain loops"):
        load_config(tmp_path / "loop.toml")
    (tmp_path / "flat.toml").write_text('experiment = "x"\n')
    with pytest.raises(ConfigError, match=r"\[experiment\] must be a table"):
        load_config(tmp_path / "flat.toml")
    (tmp_path / "orphan.toml").write_text('base = "missing.toml"\n')
    with pytest.raises(ConfigError, match=r"missing\.toml: config file not found \(the base of"):
        load_config(tmp_path / "orphan.toml")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_state_only_what_differs(path):
    """A value lives in one place: no shipped config sets a key to the value it would get anyway
    (from the dataclass defaults, PrepConfig's defaults, or its base file)."""
    import dataclasses

    from data_prep.dataset import PrepConfig
    from experiments.config import read_config_tables

    own = tomllib.loads(path.read_text())
    base = read_config_tables(path.parent / own["base"]) if "base" in own else {}
    inherited = config_from_dict({k: v for k, v in base.items() if k != "ablation"}).to_dict()
    prep_defaults = dataclasses.asdict(PrepConfig())
    repeated = []
    for section, table in own.items():
        if not isinstance(table, dict):
            continue
        for key, value in table.items():
            if section == "data" and key == "prep":
                below = {**prep_defaults, **inherited["data"]["prep"]}
                repeated += [f"data.prep.{k}" for k, v in value.items() if k in below and _same(v, below[k])]
            elif _same(value, inherited[section][key]):
                repeated.append(f"{section}.{key}")
    assert repeated == []


def _same(a, b) -> bool:
    as_list = (lambda x: list(x) if isinstance(x, (list, tuple)) else x)
    return as_list(a) == as_list(b)


def test_ablation_variants_are_checked_as_whole_configs_at_load(tmp_path):
    """A variant's bad value fails when the config is loaded, not when its turn to run comes."""
    from bimodal.cli import CONFIG_DIR

    path = tmp_path / "abl.toml"
    path.write_text(f'base = "{CONFIG_DIR / "demo.toml"}"\n[[ablation]]\nname = "bad"\n'
                    'set = { "finetune.fractions" = [1.0, 1.0, 1.0] }\n')
    with pytest.raises(ConfigError, match="ablation 'bad'.*finetune.fractions"):
        load_config(path)


def test_prep_config_is_built_once_per_config():
    from bimodal.cli import CONFIG_DIR
    from experiments.config import prep_config

    cfg = load_config(CONFIG_DIR / "demo.toml", ["data.prep.video_pca=16"])
    assert prep_config(cfg) is prep_config(cfg) and prep_config(cfg).video_pca == 16
    cfg.data.prep["video_pca"] = 8  # a changed section gives a new object, never a stale one
    assert prep_config(cfg).video_pca == 8
