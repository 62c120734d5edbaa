"""Where the library and the experiment config share a default, it is the same number (issue 12:
RBM weight decay and the variational KL weight used to disagree). The config's own experiment
choices (epochs, batch sizes, the Gaussian learning rate of short runs, sparsity) may differ."""
import pytest

from bimodal.augment import DEFAULT_FRACTIONS
from bimodal.autoencoder import DEFAULT_KL_WEIGHT, BimodalAutoencoder
from bimodal.options import FineTuneOptions
from bimodal.rbm import DEFAULT_FINAL_MOMENTUM, DEFAULT_LR, DEFAULT_WEIGHT_DECAY, RBM
from experiments.config import FinetuneConfig, PretrainConfig


def test_rbm_defaults_are_the_pretraining_config_defaults():
    p = PretrainConfig()
    rbm = RBM(4, 3, visible="bernoulli", device="cpu")
    assert (rbm.lr, rbm.final_momentum, rbm.weight_decay) == (DEFAULT_LR["bernoulli"], DEFAULT_FINAL_MOMENTUM,
                                                               DEFAULT_WEIGHT_DECAY)
    assert (p.lr_bernoulli, p.final_momentum, p.weight_decay) == (rbm.lr, rbm.final_momentum, rbm.weight_decay)


def test_autoencoder_defaults_are_the_fine_tuning_config_defaults():
    f = FinetuneConfig()
    ae = BimodalAutoencoder([4, 3], [4, 3], 2, shared_layer="variational", device="cpu")
    assert ae.kl_weight == DEFAULT_KL_WEIGHT == f.kl_weight
    assert (f.lr, f.optimizer) == (FineTuneOptions().lr, FineTuneOptions().optimizer)
    assert tuple(f.fractions) == pytest.approx(DEFAULT_FRACTIONS)
