"""The feature registry: one name per feature, each naming a defined model, inputs and layer."""
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
    rows = registry.fusion_rows()
    assert rows["bimodal_dae.both+rbm.audio"] == ("bimodal_dae.both", "rbm.audio")
    assert [f.name for f in registry.row_features("video_dae.video+rbm.audio")] == ["video_dae.video", "rbm.audio"]
