import pytest

from bimodal.cli import main


def test_unknown_config_key_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[finetune]\nepoch = 3\n")
    assert main(["-q", "reproduce", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "'epoch'" in err and "valid keys" in err and "epochs" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_unknown_config_name_lists_the_shipped_ones(tmp_path, capsys):
    assert main(["-q", "reproduce", "no_such_config", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no_such_config" in err and "demo" in err and "fusion" in err


def test_override_with_bad_key_is_rejected(tmp_path, capsys):
    assert main(["-q", "demo", "--out", str(tmp_path), "--set", "pretrain.epochz=1"]) == 2
    assert "'epochz'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, usage", [(["bench", "--help"], "bimodal bench"),
                                         (["data", "synth", "--help"], "bimodal data synth")])
def test_subcommands_own_their_options(argv, usage, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0 and usage in capsys.readouterr().out
