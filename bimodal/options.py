"""Training-loop options: how a model is trained, as opposed to what the model is.

Every ``fit`` takes these as keyword arguments (``rbm.fit(X, epochs=5, batch_size=50)``) or as one
frozen object (``rbm.fit(X, options=CDOptions(epochs=5))``); keyword arguments override the
object's fields. The values are checked when the object is made, before any training.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .errors import ConfigError
from .fast import check_fast_options

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class FitOptions:
    """Settings of every training loop.

    Parameters
    ----------
    epochs : int
        Passes over the data.
    batch_size : int
        Rows per minibatch (the last one may be shorter).
    progress : bool
        Show a tqdm bar per epoch loop.
    seed : int or None
        Seeds the shuffling and sampling of this fit; ``None`` derives it from the model's seed.
    matmul_precision, autocast_dtype, compile
        Opt-in fast math, see :mod:`bimodal.fast`; the defaults are plain fp32 eager.
    """

    epochs: int = 10
    batch_size: int = 100
    progress: bool = False
    seed: int | None = None
    matmul_precision: str = "highest"
    autocast_dtype: torch.dtype | str | None = None
    compile: bool = False

    def __post_init__(self):
        # Frozen: normalise through object.__setattr__ ("bf16" -> torch.bfloat16).
        object.__setattr__(self, "autocast_dtype",
                           check_fast_options(self.matmul_precision, self.autocast_dtype, self.compile))
        if int(self.epochs) < 0 or int(self.batch_size) < 1:
            raise ConfigError(f"fit: need epochs >= 0 and batch_size >= 1, got epochs={self.epochs}, "
                              f"batch_size={self.batch_size}")
        object.__setattr__(self, "epochs", int(self.epochs))
        object.__setattr__(self, "batch_size", int(self.batch_size))

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls))

    @classmethod
    def build(cls, options=None, **overrides):
        """``options`` (default: all defaults) with the fields in ``overrides`` replaced.

        Raises
        ------
        ConfigError
            If ``options`` is not a ``cls`` or an override names no field of ``cls``.
        """
        if options is None:
            options = cls()
        elif not isinstance(options, cls):
            raise ConfigError(f"options must be a {cls.__name__}, got {type(options).__name__}")
        unknown = sorted(set(overrides) - cls.field_names())
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; {cls.__name__} has "
                              f"{sorted(cls.field_names())}")
        return dataclasses.replace(options, **overrides) if overrides else options


@dataclass(frozen=True)
class CDOptions(FitOptions):
    """Contrastive-divergence training of an RBM (:meth:`bimodal.rbm.RBM.fit`).

    The learning rate, momentum schedule, weight decay and sparsity are the RBM's own
    constructor parameters (they define the model's training objective and are saved with it);
    every batch is one RBM step (:meth:`bimodal.rbm.RBM.training_step`'s body, on the fit's
    :class:`bimodal.rbm.TrainingState`), whatever the fast-math switches.
    """


@dataclass(frozen=True)
class FineTuneOptions(FitOptions):
    """Gradient-descent fine-tuning of an autoencoder (``DeepAutoencoder.fit``, ``BimodalAutoencoder.fit``).

    Parameters
    ----------
    lr : float
        Learning rate.
    optimizer : {"adam", "sgd"}
        Adam, or SGD with ``momentum``.
    momentum : float
        SGD momentum (ignored by Adam).
    weight_decay : float
        L2 penalty on every parameter, applied by the optimiser.
    """

    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not self.lr > 0:
            raise ConfigError(f"fit: need lr > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
