"""The feature registry: one name per feature, each naming a defined model, inputs and layer."""
import dataclasses

import pytest

from bimodal.errors import ConfigError
from experiments import registry
from experiments.registry import FEATURES, MODELS, Feature


def test_every_name_is_source_dot_inputs_and_every_model_is_defined():
    for name, f in FEATURES.items():
        source, _, inputs = name.partition(".")
        assert name == f.name and inputs == f.inputs, name
        assert f.model is None or f.model in MODELS, name
        # a model's features carry its name, except the RBMs, which live inside the bimodal DBN
        assert source == (f.model or "raw") or (source, f.model, f.layer) == ("rbm", "bimodal_dbn", "hidden"), name


def test_a_misspelt_entry_fails_when_it_is_written():
    with pytest.raises(ConfigError, match="layer one of"):
        Feature("bimodal_dae.video", "bimodal_dae", "video", "middle", "typo")
    with pytest.raises(ConfigError, match="only the 'input' layer has no model"):
        Feature("raw.video", None, "video", "shared", "no model")
    with pytest.raises(ConfigError, match="MODELS does not define"):
        Feature("bimodal_ae.video", "bimodal_ae", "video", "shared", "unknown model")
    with pytest.raises(ConfigError, match="unknown feature 'rbm_video'; known features: raw.audio"):
        registry.feature("rbm_video")


def test_rows_of_the_tables():
    assert registry.table_rows("cross_modality", "video") == [
        "raw.video", "rbm.video", "video_dae.video", "bimodal_dae.video", "bimodal_dae_noaug.video"]
    assert registry.table_rows("section47") == ["video_shallow_ae.video", "video_dae_no_audio.video",
                                                "bimodal_dbn.video"]
    assert [f.name for f in registry.row_features("video_dae.video+rbm.audio")] == ["video_dae.video", "rbm.audio"]


def _config(settings, **kw):
    from experiments.config import Config

    cfg = Config()
    return dataclasses.replace(cfg, experiment=dataclasses.replace(cfg.experiment, settings=settings, **kw))


def test_every_setting_reads_the_rows_declared_for_it():
    everything = _config(["cross_modality", "fusion", "shared_representation", "matching", "mcgurk"],
                         section47_rows=True)
    cross = registry.setting_rows("cross_modality", everything)
    assert list(cross) == ["video", "audio"]
    assert list(cross["video"]) == registry.table_rows("cross_modality", "video") + registry.table_rows("section47")
    assert all(names == (row,) for table in cross.values() for row, names in table.items())
    fusion = registry.setting_rows("fusion", everything)["fusion"]
    assert list(fusion) == ["rbm.audio", "rbm.video", "video_dae.video", "bimodal_dae.both", "bimodal_dbn.both",
                            "bimodal_dae.both+rbm.audio", "video_dae.video+rbm.audio"]
    assert fusion["bimodal_dae.both+rbm.audio"] == ("bimodal_dae.both", "rbm.audio")
    # fusion alone does not train the video-only deep autoencoder for its rows
    assert not any("video_dae" in row for row in registry.setting_rows("fusion", _config(["fusion"]))["fusion"])
    assert registry.setting_rows("matching", everything)["matching"] == registry.SHARED_METHODS
    assert set(registry.SHARED_METHODS) == {"bimodal_dae", *registry.CCA_BASELINES}
    # the features read are exactly the rows' (and fusion's shift features), and each is trained for
    read = registry.features_read(everything)
    rows = {n for s in everything.experiment.settings for t in registry.setting_rows(s, everything).values()
            for names in t.values() for n in names}
    assert read == rows | set(registry.SHIFT_FEATURES)
    from experiments.pipeline import needed_models

    assert {registry.feature(n).model for n in read} - {None} <= set(needed_models(everything))
    assert registry.features_read(_config(["mcgurk"])) == {registry.MCGURK_FEATURE}
    with pytest.raises(ConfigError, match="unknown setting 'lipreading'"):
        registry.setting_rows("lipreading", everything)
