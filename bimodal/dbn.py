"""Deep belief networks: greedy layer-wise stacks of RBMs, the bimodal DBN of Ngiam et al. (2011)
and the shallow baseline of one RBM on concatenated audio + video inputs."""
from __future__ import annotations

import logging

import torch
from torch import nn

from .device import as_tensor, check_paired_rows, resolve_device, restore_type
from .errors import ConfigError, ShapeError
from .options import CDOptions
from .persist import Persistable
from .rbm import RBM

log = logging.getLogger(__name__)


def _per_layer(value, n_layers: int, name: str) -> list:
    """An int for every layer, or a list with one entry per layer."""
    if isinstance(value, (list, tuple)):
        if len(value) != n_layers:
            raise ConfigError(f"{name} lists {len(value)} values for {n_layers} layers")
        return [int(v) for v in value]
    return [int(value)] * n_layers


class DBN(Persistable, nn.Module):
    """Greedy layer-wise stack of RBMs (Hinton, Osindero & Teh 2006).

    Parameters
    ----------
    sizes : sequence of int
        ``[n_visible, n_hidden_1, ..., n_hidden_L]``; layer ``i`` is an ``RBM(sizes[i], sizes[i+1])``.
    first_visible : {"gaussian", "bernoulli"}
        Visible type of the first RBM; all higher RBMs have Bernoulli visibles (they model the
        hidden probabilities of the layer below).
    rbm_params : dict, optional
        Keyword arguments of :class:`RBM` for every layer (``lr``, ``k``, ``persistent``,
        ``sparsity_target``, ...). ``lr`` left out picks the RBM default for its visible type.
    first_layer_params : dict, optional
        Overrides of ``rbm_params`` for the first layer only (e.g. a small Gaussian ``lr``).
    device, seed
        Layer ``i`` is seeded with ``seed + i``.
    """

    def __init__(self, sizes, first_visible: str = "gaussian", rbm_params: dict | None = None,
                 first_layer_params: dict | None = None, device=None, seed: int | None = 0):
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2:
            raise ConfigError(f"DBN: sizes needs at least [n_visible, n_hidden], got {sizes}")
        self.sizes, self.first_visible = sizes, first_visible
        self.rbm_params = dict(rbm_params or {})
        self.first_layer_params = dict(first_layer_params or {})
        for bad in ("n_visible", "n_hidden", "visible", "device", "seed"):
            if bad in self.rbm_params or bad in self.first_layer_params:
                raise ConfigError(f"DBN: {bad!r} is set by the DBN itself, not in rbm_params")
        self.seed, self.device = seed, resolve_device(device)
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            params = dict(self.rbm_params, **(self.first_layer_params if i == 0 else {}))
            layers.append(RBM(n_in, n_out, visible=first_visible if i == 0 else "bernoulli",
                              device=self.device, seed=None if seed is None else seed + i, **params))
        self.layers = nn.ModuleList(layers)
        self.history: list[list[float]] = [[] for _ in layers]

    def config(self) -> dict:
        return dict(sizes=self.sizes, first_visible=self.first_visible, rbm_params=self.rbm_params,
                    first_layer_params=self.first_layer_params, seed=self.seed)

    def fit(self, X, epochs=None, *, options: CDOptions | None = None, **training):
        """Train the layers bottom-up, each on the hidden probabilities of the one below.

        Parameters
        ----------
        X : (N, sizes[0]) array or tensor
        epochs : int or sequence of int, optional
            Epochs of every layer, or one per layer; default ``options.epochs``.
        options : CDOptions, optional
            Training-loop settings of every layer's :meth:`RBM.fit`.
        **training
            Fields of :class:`bimodal.options.CDOptions` (``batch_size``, ``progress``,
            ``matmul_precision``, ...), overriding ``options``. Leave ``seed`` at None to give each
            layer its own seed.

        ``history[i]`` is layer ``i``'s per-epoch reconstruction MSE. Returns ``self``.
        """
        t, _ = self._input(X)
        options = CDOptions.build(options, **training)
        epochs = _per_layer(options.epochs if epochs is None else epochs, len(self.layers), "epochs")
        with torch.no_grad():
            for i, (rbm, n_epochs) in enumerate(zip(self.layers, epochs)):
                log.info("DBN layer %d/%d: %s, %d epochs", i + 1, len(self.layers), rbm.extra_repr(), n_epochs)
                rbm.fit(t, options=CDOptions.build(options, epochs=n_epochs))
                self.history[i] = list(rbm.history)
                t = rbm.hidden_prob(t)
        return self

    def up_pass(self, t: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Hidden probabilities of layer ``layer`` (tensor in, tensor out)."""
        n = len(self.layers)
        stop = layer % n + 1 if layer < 0 else layer + 1
        if not 1 <= stop <= n:
            raise ConfigError(f"DBN has {n} layers, layer={layer} is out of range")
        for rbm in self.layers[:stop]:
            t = rbm.hidden_prob(t)
        return t

    @torch.no_grad()
    def transform(self, X, layer: int = -1):
        """Deterministic up-pass: hidden probabilities of layer ``layer`` (default the top), (N, sizes[layer+1])."""
        t, was_numpy = self._input(X)
        return restore_type(self.up_pass(t, layer), was_numpy)

    def _input(self, X, name: str = "X"):
        t, was_numpy = as_tensor(X, self.device, name=name)
        if t.shape[1] != self.sizes[0]:
            raise ShapeError(f"DBN expects {self.sizes[0]} inputs, got {t.shape[1]} columns", field=name)
        return t, was_numpy

    def _set_history(self, history) -> None:
        # A DBN's history is one list per layer; give each RBM back its own.
        self.history = [list(h) for h in history]
        for rbm, h in zip(self.layers, self.history):
            rbm.history = list(h)


class BimodalDBN(Persistable, nn.Module):
    """Bimodal DBN (Ngiam et al. 2011, Fig. 2d): one DBN per modality and a joint RBM on the
    concatenated top-layer hidden probabilities ``[audio_top, video_top]``.

    Parameters
    ----------
    audio_sizes, video_sizes : sequence of int
        Layer sizes of each modality's DBN, input first.
    joint_hidden : int
        Hidden units of the joint (shared) RBM.
    audio_visible, video_visible : {"gaussian", "bernoulli"}
        First-layer visible type of each modality.
    rbm_params, first_layer_params : dict, optional
        As in :class:`DBN`, used for both modality DBNs.
    audio_first_layer_params, video_first_layer_params : dict, optional
        Overrides of ``first_layer_params`` for one modality's first RBM (e.g. its own sparsity).
    joint_params : dict, optional
        RBM keyword arguments of the joint RBM (default: ``rbm_params``).
    """

    def __init__(self, audio_sizes, video_sizes, joint_hidden: int, audio_visible: str = "gaussian",
                 video_visible: str = "gaussian", rbm_params: dict | None = None,
                 first_layer_params: dict | None = None, joint_params: dict | None = None, device=None,
                 seed: int | None = 0, audio_first_layer_params: dict | None = None,
                 video_first_layer_params: dict | None = None):
        super().__init__()
        self.device, self.seed = resolve_device(device), seed
        self.audio_sizes, self.video_sizes = [int(s) for s in audio_sizes], [int(s) for s in video_sizes]
        self.joint_hidden = int(joint_hidden)
        self.audio_visible, self.video_visible = audio_visible, video_visible
        self.rbm_params = dict(rbm_params or {})
        self.first_layer_params = dict(first_layer_params or {})
        self.joint_params = dict(self.rbm_params if joint_params is None else joint_params)
        self.audio_first_layer_params = dict(audio_first_layer_params or {})
        self.video_first_layer_params = dict(video_first_layer_params or {})
        s = None if seed is None else int(seed)
        self.audio = DBN(self.audio_sizes, audio_visible, self.rbm_params,
                         {**self.first_layer_params, **self.audio_first_layer_params}, self.device,
                         None if s is None else s)
        self.video = DBN(self.video_sizes, video_visible, self.rbm_params,
                         {**self.first_layer_params, **self.video_first_layer_params}, self.device,
                         None if s is None else s + 100)
        self.joint = RBM(self.audio_sizes[-1] + self.video_sizes[-1], self.joint_hidden, visible="bernoulli",
                         device=self.device, seed=None if s is None else s + 200, **self.joint_params)
        self.history: dict = {"audio": [], "video": [], "joint": []}

    def _set_history(self, history) -> None:
        self.history = dict(history)
        self.audio._set_history(self.history.get("audio", []))
        self.video._set_history(self.history.get("video", []))
        self.joint.history = list(self.history.get("joint", []))

    def config(self) -> dict:
        return dict(audio_sizes=self.audio_sizes, video_sizes=self.video_sizes, joint_hidden=self.joint_hidden,
                    audio_visible=self.audio_visible, video_visible=self.video_visible, rbm_params=self.rbm_params,
                    first_layer_params=self.first_layer_params, joint_params=self.joint_params, seed=self.seed,
                    audio_first_layer_params=self.audio_first_layer_params,
                    video_first_layer_params=self.video_first_layer_params)

    def fit(self, audio, video, epochs=None, joint_epochs: int | None = None, *, extra_audio=None,
            only: str | None = None, options: CDOptions | None = None, **training):
        """Train the audio DBN, the video DBN, then the joint RBM on their concatenated tops.

        Parameters
        ----------
        audio, video : (N, audio_sizes[0]), (N, video_sizes[0]) paired rows
        epochs : int or sequence of int, optional
            Epochs of the modality DBNs (int or one per layer); default ``options.epochs``.
        joint_epochs : int, optional
            Epochs of the joint RBM; default the last entry of ``epochs``.
        extra_audio : (M, audio_sizes[0]), optional
            Unpaired audio rows added to the audio DBN's training set only (the paper's extra
            unlabelled audio); the joint RBM sees the paired rows alone.
        only : {"audio", "video"}, optional
            Train that modality's DBN alone (the audio one with ``extra_audio``) and stop; the other
            modality's DBN and the joint RBM keep their initialisation. Every RBM samples from its
            own seeded generator, so that DBN is the one the full fit trains.
        options, **training
            Training-loop settings of every RBM, as in :meth:`DBN.fit`.

        Returns ``self``.
        """
        if only not in (None, "audio", "video"):
            raise ConfigError(f"BimodalDBN.fit: only must be None, 'audio' or 'video', got {only!r}")
        options = CDOptions.build(options, **training)
        epochs = options.epochs if epochs is None else epochs
        a, v = self._inputs(audio, video)
        a_pre = a
        if extra_audio is not None and len(extra_audio) and only != "video":
            extra, _ = self.audio._input(extra_audio, "extra_audio")
            a_pre = torch.cat([a, extra])
            log.info("audio DBN pretrained on %d paired + %d extra audio rows", len(a), len(extra))
        if only != "video":
            self.audio.fit(a_pre, epochs=epochs, options=options)
        if only != "audio":
            self.video.fit(v, epochs=epochs, options=options)
        if only is None:
            if joint_epochs is None:
                joint_epochs = epochs[-1] if isinstance(epochs, (list, tuple)) else epochs
            with torch.no_grad():
                top = torch.cat([self.audio.up_pass(a), self.video.up_pass(v)], dim=1)
            self.joint.fit(top, options=CDOptions.build(options, epochs=int(joint_epochs)))
        self.history = {"audio": self.audio.history, "video": self.video.history, "joint": list(self.joint.history)}
        return self

    @torch.no_grad()
    def transform(self, audio, video):
        """Joint hidden probabilities ``(N, joint_hidden)`` given both modalities."""
        a, v, was_numpy = self._inputs(audio, video, return_kind=True)
        top = torch.cat([self.audio.up_pass(a), self.video.up_pass(v)], dim=1)
        return restore_type(self.joint.hidden_prob(top), was_numpy)

    def _inputs(self, audio, video, return_kind: bool = False):
        if audio is None or video is None:
            raise ConfigError("BimodalDBN needs both audio and video (use BimodalAutoencoder for one modality)")
        a, was_numpy = self.audio._input(audio, "audio")
        v, _ = self.video._input(video, "video")
        check_paired_rows(a, v)
        return (a, v, was_numpy) if return_kind else (a, v)


def concatenated_rbm(audio, video, n_hidden: int, visible: str = "gaussian", *, device=None, seed: int | None = 0,
                     options: CDOptions | None = None, **params) -> RBM:
    """The shallow bimodal baseline: one RBM trained on ``[audio, video]`` concatenated inputs.

    ``params``: :class:`RBM` constructor arguments (``lr``, ``k``, ...) and the training-loop
    fields of :class:`bimodal.options.CDOptions` (``epochs``, ``batch_size``, ``progress``, ...;
    ``seed`` is the model's). Returns the fitted :class:`RBM`; its features are
    ``rbm.transform(np.hstack([audio, video]))``.
    """
    training = {k: params.pop(k) for k in list(params) if k in CDOptions.field_names() and k != "seed"}
    a, _ = as_tensor(audio, device, name="audio")
    v, _ = as_tensor(video, device, name="video")
    check_paired_rows(a, v)
    X = torch.cat([a, v], dim=1)
    rbm = RBM(X.shape[1], n_hidden, visible=visible, device=device, seed=seed, **params)
    return rbm.fit(X, options=options, **training)
