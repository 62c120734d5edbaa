"""Deep autoencoders: unrolled DBNs (Hinton & Salakhutdinov 2006) and the bimodal / cross-modality
deep autoencoders of Ngiam et al. (2011).

Hidden units are sigmoid; output units are linear for Gaussian (whitened) inputs and sigmoid for
binary ones; the loss is squared error. Fine-tuning uses Adam by default (``optimizer="adam"``,
robust to the different gradient scales of pretrained and random layers, no schedule to tune);
``optimizer="sgd"`` gives plain SGD with momentum as in the original papers.

Weight layout: every layer stores ``W`` with shape ``(n_in, n_out)`` and computes
``sigmoid(x @ W + b)``, exactly like :meth:`bimodal.rbm.RBM.hidden_prob`, so a pretrained RBM's
weights drop in unchanged (encoder: ``W``, ``b_h``; decoder: ``W.T``, ``b_v``).
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .augment import DEFAULT_FRACTIONS, NO_AUGMENTATION, augment_batch, check_fractions, mask_inputs
from .dbn import DBN, BimodalDBN
from .device import as_tensor, check_paired_rows, make_generator, resolve_device, restore_type
from .errors import ConfigError, ShapeError, TrainingDivergedError
from .fast import autocast, fast_math, maybe_compile
from .options import FineTuneOptions
from .persist import Persistable

log = logging.getLogger(__name__)

MODALITIES = ("audio", "video")
OUTPUT_KINDS = ("linear", "sigmoid")
SHARED_KINDS = ("deterministic", "variational")
DEFAULT_KL_WEIGHT = 1e-3  # variational shared layer; the experiment config starts from the same number


def _init_weight(n_in: int, n_out: int, g: torch.Generator) -> torch.Tensor:
    # Glorot-scaled normal: the randomly initialised (no pretraining) ablation must still train.
    return torch.randn(n_in, n_out, generator=g) * math.sqrt(2.0 / (n_in + n_out))


class Encoder(nn.Module):
    """Sigmoid layers ``sizes[0] → sizes[1] → ... → sizes[-1]``; ``weights[i]`` is (sizes[i], sizes[i+1])."""

    def __init__(self, sizes, g: torch.Generator):
        super().__init__()
        self.sizes = [int(s) for s in sizes]
        self.weights = nn.ParameterList([nn.Parameter(_init_weight(a, b, g)) for a, b in zip(sizes[:-1], sizes[1:])])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(b)) for b in sizes[1:]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for W, b in zip(self.weights, self.biases):
            x = torch.sigmoid(torch.addmm(b, x, W))
        return x


class Decoder(nn.Module):
    """Mirror of an :class:`Encoder` with layer sizes ``sizes`` (given input first): maps
    ``sizes[-1] → ... → sizes[0]``; sigmoid hidden layers, ``output`` activation on the last.

    With ``tied_to`` the weights are the encoder's transposed (not separate parameters).
    """

    def __init__(self, sizes, output: str, g: torch.Generator, tied_to: Encoder | None = None):
        super().__init__()
        if output not in OUTPUT_KINDS:
            raise ConfigError(f"output must be one of {OUTPUT_KINDS}, got {output!r}")
        self.sizes, self.output = [int(s) for s in sizes], output
        # Stored in decoding order: layer j maps sizes[L-j] → sizes[L-j-1].
        pairs = list(zip(self.sizes[1:], self.sizes[:-1]))[::-1]
        object.__setattr__(self, "_tied_to", tied_to)  # a plain reference: not registered twice
        self.weights = nn.ParameterList([] if tied_to is not None else
                                        [nn.Parameter(_init_weight(a, b, g)) for a, b in pairs])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(b)) for _, b in pairs])

    def weight(self, j: int) -> torch.Tensor:
        if self._tied_to is not None:
            return self._tied_to.weights[len(self.biases) - 1 - j].t()
        return self.weights[j]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        last = len(self.biases) - 1
        for j, b in enumerate(self.biases):
            a = torch.addmm(b, h, self.weight(j))
            h = a if (j == last and self.output == "linear") else torch.sigmoid(a)
        return h


def _make_optimizer(params, options: FineTuneOptions) -> torch.optim.Optimizer:
    if options.optimizer == "adam":
        # fused: one kernel for the whole parameter update instead of ~10 per tensor.
        return torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay, fused=True)
    return torch.optim.SGD(params, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay,
                           foreach=True)


_CHUNK_ELEMENTS = 1 << 24


def fine_tune_step(batch_loss, batch: dict, g: torch.Generator, optimizer: torch.optim.Optimizer, device,
                   autocast_dtype=None) -> torch.Tensor:
    """One minibatch of fine-tuning; returns its loss (0-d, detached).

    Forward pass and loss (``batch_loss(batch, g)``: input augmentation / corruption, encoder,
    decoder, reconstruction error and penalties), backward pass, optimiser step. With
    ``autocast_dtype`` the forward pass runs under autocast; the backward pass follows its dtypes
    and the parameters stay fp32.
    """
    with autocast(device, autocast_dtype):
        loss = batch_loss(batch, g)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _train(model: nn.Module, data: dict, batch_loss, options: FineTuneOptions, desc: str) -> None:
    """Minibatch training loop shared by the autoencoders; appends per-epoch mean loss to ``history``.

    ``data`` maps names to device tensors with the same number of rows; ``batch_loss(batch, g)``
    returns the scalar loss of one minibatch (see :func:`fine_tune_step`). ``options.seed`` None
    means the model's seed. One host sync per epoch (loss + divergence check).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _make_optimizer(params, options)
    g = make_generator(model.seed if options.seed is None else options.seed, model.device)
    loss_fn = maybe_compile(batch_loss, options.compile)
    n = next(iter(data.values())).shape[0]
    model.train()
    try:
        with fast_math(model.device, options.matmul_precision):  # also covers the backward matmuls
            for epoch in tqdm(range(options.epochs), desc=desc, disable=not options.progress, leave=False):
                total = torch.zeros((), device=model.device)
                for batch in _shuffled_batches(data, options.batch_size, g, model.device):
                    loss = fine_tune_step(loss_fn, batch, g, optimizer, model.device, options.autocast_dtype)
                    total += loss.float() * next(iter(batch.values())).shape[0]
                _end_epoch(model, params, total / n, epoch, options.lr, desc)
    finally:
        model.eval()


def _shuffled_batches(data: dict, batch_size: int, g: torch.Generator, device):
    """Minibatches (dicts of row views) of one epoch in a random order drawn from ``g``.

    Each chunk of rows is permuted with one gather per tensor (bounded memory); batches are views of it.
    """
    n = next(iter(data.values())).shape[0]
    width = sum(v.shape[1] for v in data.values())
    chunk = max(1, _CHUNK_ELEMENTS // (batch_size * width)) * batch_size
    perm = torch.randperm(n, generator=g, device=device)
    for c0 in range(0, n, chunk):
        idx = perm[c0:c0 + chunk]
        rows = {k: v[idx] for k, v in data.items()}
        for start in range(0, idx.shape[0], batch_size):
            yield {k: v[start:start + batch_size] for k, v in rows.items()}


def _end_epoch(model: nn.Module, params: list, mean_loss: torch.Tensor, epoch: int, lr: float, desc: str) -> None:
    """Append the epoch's mean loss to ``model.history``; raise if it or any parameter is not finite."""
    with torch.no_grad():
        finite = torch.stack([torch.isfinite(p).all() for p in params]).all()
        value, ok = torch.stack([mean_loss, finite.to(mean_loss.dtype)]).tolist()  # one sync per epoch
    if not (math.isfinite(value) and ok):
        raise TrainingDivergedError(
            f"{desc} fine-tuning diverged at epoch {epoch + 1} (loss {value}, parameters finite: {bool(ok)}). "
            f"Try a lower learning rate than lr={lr:g} and check that the inputs are whitened.")
    model.history.append(value)
    log.debug("%s epoch %d: loss %.6g", desc, epoch + 1, value)


class DeepAutoencoder(Persistable, nn.Module):
    """Single-modality deep autoencoder: encoder ``sizes[0] → ... → sizes[-1]`` and mirrored decoder.

    Parameters
    ----------
    sizes : sequence of int
        ``[n_input, h_1, ..., h_code]``.
    output : {"linear", "sigmoid"}
        Output units: linear for Gaussian/whitened inputs, sigmoid for values in [0, 1].
    tied : bool
        Decoder weights are the encoder's transposed (default: separate, untied weights).
    device, seed
        Random initialisation (Glorot-scaled normal) is drawn on the CPU from ``seed``.
    """

    def __init__(self, sizes, output: str = "linear", tied: bool = False, device=None, seed: int | None = 0):
        super().__init__()
        self.sizes, self.output, self.tied, self.seed = [int(s) for s in sizes], output, bool(tied), seed
        if len(self.sizes) < 2:
            raise ConfigError(f"DeepAutoencoder: sizes needs at least [n_input, n_code], got {sizes}")
        self.device = resolve_device(device)
        g = make_generator(seed, "cpu")
        self.encoder = Encoder(self.sizes, g)
        self.decoder = Decoder(self.sizes, output, g, tied_to=self.encoder if self.tied else None)
        self.history: list[float] = []
        self.to(self.device)

    def config(self) -> dict:
        return dict(sizes=self.sizes, output=self.output, tied=self.tied, seed=self.seed)

    def fit(self, X, *, corruption: float = 0.0, options: FineTuneOptions | None = None, **training):
        """Minimise the mean squared reconstruction error of ``X``. Returns ``self``.

        Parameters
        ----------
        X : (N, sizes[0]) array or tensor
        corruption : float
            Masks that fraction of input units to zero (denoising); the target is clean.
        options : FineTuneOptions, optional
            The training-loop settings in one object; keyword arguments override its fields.
        **training
            Fields of :class:`bimodal.options.FineTuneOptions`: ``epochs`` (10), ``batch_size``
            (100), ``lr`` (1e-3), ``optimizer`` ("adam" or "sgd"), ``momentum``, ``weight_decay``,
            ``progress``, ``seed`` (default: the model's), ``matmul_precision``,
            ``autocast_dtype``, ``compile`` (see :mod:`bimodal.fast`).
        """
        options = FineTuneOptions.build(options, **training)
        x, _ = self._input(X)

        def batch_loss(batch, g):
            inp = mask_inputs(batch["x"], corruption, g)
            return F.mse_loss(self.decoder(self.encoder(inp)).float(), batch["x"])

        _train(self, {"x": x}, batch_loss, options, "DeepAutoencoder")
        return self

    @torch.no_grad()
    def encode(self, X):
        """Top-layer code, (N, sizes[-1])."""
        x, was_numpy = self._input(X)
        return restore_type(self.encoder(x), was_numpy)

    transform = encode

    @torch.no_grad()
    def reconstruct(self, X):
        """Decoder output for ``X``, (N, sizes[0])."""
        x, was_numpy = self._input(X)
        return restore_type(self.decoder(self.encoder(x)), was_numpy)

    def _input(self, X):
        x, was_numpy = as_tensor(X, self.device, name="X")
        if x.shape[1] != self.sizes[0]:
            raise ShapeError(f"autoencoder expects {self.sizes[0]} inputs, got {x.shape[1]} columns", field="X")
        return x, was_numpy


@torch.no_grad()
def _copy_encoder(enc: Encoder, dbn: DBN) -> None:
    for i, rbm in enumerate(dbn.layers):
        enc.weights[i].copy_(rbm.W)
        enc.biases[i].copy_(rbm.b_h)


@torch.no_grad()
def _copy_decoder(dec: Decoder, dbn: DBN) -> None:
    n = len(dbn.layers)
    for j in range(n):
        rbm = dbn.layers[n - 1 - j]
        if dec._tied_to is None:
            dec.weights[j].copy_(rbm.W.t())
        dec.biases[j].copy_(rbm.b_v)


def unroll(dbn: DBN, tied: bool = False, device=None) -> DeepAutoencoder:
    """Unroll a trained :class:`DBN` into a :class:`DeepAutoencoder`.

    Encoder layer ``i`` gets RBM ``i``'s ``W`` and hidden bias; the mirrored decoder gets the
    transposed weights and visible biases, as separate parameters (untied, fine-tuned
    independently) unless ``tied``. Output units are linear if the first RBM is Gaussian.
    The encoder output equals ``dbn.transform(X)`` (the deterministic up-pass).
    """
    ae = DeepAutoencoder(dbn.sizes, output="linear" if dbn.first_visible == "gaussian" else "sigmoid", tied=tied,
                         device=dbn.device if device is None else device, seed=dbn.seed)
    _copy_encoder(ae.encoder, dbn)
    _copy_decoder(ae.decoder, dbn)
    return ae


class BimodalAutoencoder(Persistable, nn.Module):
    """Bimodal deep autoencoder (Ngiam et al. 2011, Fig. 3b) and its single-input variants.

    Audio and video encoders feed one shared layer; an audio decoder and a video decoder
    reconstruct both modalities from it::

        audio ─ enc_a ─┐                ┌─ out_a ─ dec_a ─ audio_hat
                       ├─ shared code ──┤
        video ─ enc_v ─┘                └─ out_v ─ dec_v ─ video_hat

    ``input_modalities=("video",)`` is the paper's video-only deep autoencoder (video in, audio and
    video out); ``("audio",)`` the symmetric one. Both decoders always exist.

    Parameters
    ----------
    audio_sizes, video_sizes : sequence of int
        Encoder layer sizes per modality, input first, e.g. ``[Da, 256, 128]``.
    shared : int
        Units of the shared layer.
    input_modalities : tuple of {"audio", "video"}
    audio_output, video_output : {"linear", "sigmoid"}
    shared_layer : {"deterministic", "variational"}
        Deterministic: sigmoid shared units. Variational: Gaussian latent with mean and
        log-variance heads (linear), reparameterised sample in training, KL to N(0, I) weighted by
        ``kl_weight`` (KL averaged over batch and latent units); ``encode`` returns the mean.
    kl_weight : float
        Default KL weight for ``fit`` (variational only).
    tied : bool
        Modality decoders use their encoder's weights transposed, and the shared → modality-top
        layer uses the shared weights transposed where that modality is an input.
    device, seed
    """

    def __init__(self, audio_sizes, video_sizes, shared: int, input_modalities=MODALITIES,
                 audio_output: str = "linear", video_output: str = "linear", shared_layer: str = "deterministic",
                 kl_weight: float = DEFAULT_KL_WEIGHT, tied: bool = False, device=None, seed: int | None = 0):
        super().__init__()
        input_modalities = tuple(input_modalities)
        if not input_modalities or any(m not in MODALITIES for m in input_modalities) or \
                len(set(input_modalities)) != len(input_modalities):
            raise ConfigError(f"input_modalities must be a non-empty subset of {MODALITIES}, got {input_modalities!r}")
        if shared_layer not in SHARED_KINDS:
            raise ConfigError(f"shared_layer must be one of {SHARED_KINDS}, got {shared_layer!r}")
        self.input_modalities = tuple(m for m in MODALITIES if m in input_modalities)
        self.sizes = {"audio": [int(s) for s in audio_sizes], "video": [int(s) for s in video_sizes]}
        self.outputs = {"audio": audio_output, "video": video_output}
        self.shared, self.shared_layer, self.kl_weight = int(shared), shared_layer, float(kl_weight)
        self.tied, self.seed, self.device = bool(tied), seed, resolve_device(device)
        g = make_generator(seed, "cpu")
        self.encoders = nn.ModuleDict({m: Encoder(self.sizes[m], g) for m in self.input_modalities})
        n_top_in = sum(self.sizes[m][-1] for m in self.input_modalities)
        self.shared_W = nn.Parameter(_init_weight(n_top_in, self.shared, g))
        self.shared_b = nn.Parameter(torch.zeros(self.shared))
        if shared_layer == "variational":
            self.logvar_W = nn.Parameter(torch.zeros(n_top_in, self.shared))
            self.logvar_b = nn.Parameter(torch.full((self.shared,), -2.0))  # start with small noise
        # Shared code → each modality's top layer, then the mirrored modality decoder.
        self.top_W = nn.ParameterDict({m: nn.Parameter(_init_weight(self.shared, self.sizes[m][-1], g))
                                       for m in MODALITIES if not self._top_tied(m)})
        self.top_b = nn.ParameterDict({m: nn.Parameter(torch.zeros(self.sizes[m][-1])) for m in MODALITIES})
        self.decoders = nn.ModuleDict({
            m: Decoder(self.sizes[m], self.outputs[m], g,
                       tied_to=self.encoders[m] if (self.tied and m in self.input_modalities) else None)
            for m in MODALITIES})
        self.history: list[float] = []
        self.to(self.device)

    def _top_tied(self, m: str) -> bool:
        return self.tied and m in self.input_modalities

    def _shared_rows(self, m: str) -> slice:
        """Rows of ``shared_W`` that belong to modality ``m``'s top layer."""
        start = 0
        for other in self.input_modalities:
            if other == m:
                return slice(start, start + self.sizes[m][-1])
            start += self.sizes[other][-1]
        raise KeyError(m)

    def config(self) -> dict:
        return dict(audio_sizes=self.sizes["audio"], video_sizes=self.sizes["video"], shared=self.shared,
                    input_modalities=list(self.input_modalities), audio_output=self.outputs["audio"],
                    video_output=self.outputs["video"], shared_layer=self.shared_layer, kl_weight=self.kl_weight,
                    tied=self.tied, seed=self.seed)

    # ---------------------------------------------------------------- construction
    @classmethod
    def random_init(cls, audio_sizes, video_sizes, shared: int, **kwargs) -> "BimodalAutoencoder":
        """Randomly initialised model (the no-pretraining ablation); ``kwargs`` as the constructor."""
        return cls(audio_sizes, video_sizes, shared, **kwargs)

    @classmethod
    @torch.no_grad()
    def from_dbn(cls, dbn: BimodalDBN, tied: bool = False, input_modalities=MODALITIES,
                 shared_layer: str = "deterministic", kl_weight: float = DEFAULT_KL_WEIGHT, device=None,
                 seed: int | None = None) -> "BimodalAutoencoder":
        """Initialise from a trained :class:`BimodalDBN`.

        Encoders come from the modality DBNs (``W``, ``b_h``), the shared layer from the joint RBM
        (``W``, ``b_h``), the shared → top layers from the joint RBM's transposed weights and visible
        biases (audio half / video half), and the modality decoders from the DBNs' transposed weights
        and visible biases. For a single-input model (e.g. video only) the shared layer takes the
        joint RBM's rows for that modality only (the other modality's contribution, zero at test
        time, is dropped); fine-tuning then adapts it. For ``shared_layer="variational"`` the mean
        head gets the joint weights and the log-variance head starts at zero weights.
        """
        a_top = dbn.audio_sizes[-1]
        model = cls(dbn.audio_sizes, dbn.video_sizes, dbn.joint_hidden, input_modalities=input_modalities,
                    audio_output="linear" if dbn.audio_visible == "gaussian" else "sigmoid",
                    video_output="linear" if dbn.video_visible == "gaussian" else "sigmoid",
                    shared_layer=shared_layer, kl_weight=kl_weight, tied=tied,
                    device=dbn.device if device is None else device, seed=dbn.seed if seed is None else seed)
        joint_rows = {"audio": slice(0, a_top), "video": slice(a_top, a_top + dbn.video_sizes[-1])}
        for m in MODALITIES:
            sub = getattr(dbn, m)
            if m in model.input_modalities:
                _copy_encoder(model.encoders[m], sub)
                model.shared_W[model._shared_rows(m)].copy_(dbn.joint.W[joint_rows[m]])
            _copy_decoder(model.decoders[m], sub)
            if not model._top_tied(m):
                model.top_W[m].copy_(dbn.joint.W[joint_rows[m]].t())
            model.top_b[m].copy_(dbn.joint.b_v[joint_rows[m]])
        model.shared_b.copy_(dbn.joint.b_h)
        return model

    @classmethod
    @torch.no_grad()
    def shallow_from_rbm(cls, rbm, n_other: int, modality: str = "video", device=None,
                         seed: int | None = None) -> "BimodalAutoencoder":
        """The paper's shallow single-input autoencoder (Ngiam et al. 2011, Fig. 2a), from one RBM.

        ``modality`` (video by default) → one hidden layer (the RBM's hidden units, shared by both
        outputs) → both modalities reconstructed, with no further layers. The input → hidden weights
        and the hidden → ``modality`` reconstruction start from the RBM (``W``, ``b_h``; ``W^T``,
        ``b_v``); the hidden → other-modality weights start random. Outputs are linear for a Gaussian
        RBM. ``n_other`` is the other modality's input dimension.
        """
        if modality not in MODALITIES:
            raise ConfigError(f"modality must be one of {MODALITIES}, got {modality!r}")
        other = "audio" if modality == "video" else "video"
        out = "linear" if rbm.visible == "gaussian" else "sigmoid"
        sizes = {modality: [rbm.n_visible], other: [int(n_other)]}
        model = cls(sizes["audio"], sizes["video"], rbm.n_hidden, input_modalities=(modality,),
                    **{f"{modality}_output": out}, device=rbm.device if device is None else device,
                    seed=rbm.seed if seed is None else seed)
        model.shared_W.copy_(rbm.W)
        model.shared_b.copy_(rbm.b_h)
        model.top_W[modality].copy_(rbm.W.t())
        model.top_b[modality].copy_(rbm.b_v)
        return model

    # ---------------------------------------------------------------- forward (tensors)
    def _code(self, inputs: dict, g: torch.Generator | None = None):
        """Shared code from the input tensors; returns ``(code, mu, logvar)`` (mu/logvar None if deterministic).

        With ``g`` given (training) the variational code is a reparameterised sample, else the mean.
        """
        tops = torch.cat([self.encoders[m](inputs[m]) for m in self.input_modalities], dim=1)
        pre = torch.addmm(self.shared_b, tops, self.shared_W)
        if self.shared_layer == "deterministic":
            return torch.sigmoid(pre), None, None
        logvar = torch.addmm(self.logvar_b, tops, self.logvar_W)
        if g is None:
            return pre, pre, logvar
        eps = torch.randn(pre.shape, generator=g, device=pre.device, dtype=pre.dtype)
        return pre + eps * torch.exp(0.5 * logvar), pre, logvar

    def _top_weight(self, m: str) -> torch.Tensor:
        return self.shared_W[self._shared_rows(m)].t() if self._top_tied(m) else self.top_W[m]

    def _decode(self, code: torch.Tensor) -> dict:
        out = {}
        for m in MODALITIES:
            a = torch.addmm(self.top_b[m], code, self._top_weight(m))
            if len(self.sizes[m]) == 1:
                # No hidden layer for this modality (shallow autoencoder): the shared layer maps
                # straight to the output units, so the output activation applies here.
                out[m] = a if self.outputs[m] == "linear" else torch.sigmoid(a)
            else:
                out[m] = self.decoders[m](torch.sigmoid(a))
        return out

    # ---------------------------------------------------------------- training
    def fit(self, audio, video, *, fractions=DEFAULT_FRACTIONS, corruption: float = 0.0, l1_shared: float = 0.0,
            kl_weight: float | None = None, modality_weights=(1.0, 1.0), options: FineTuneOptions | None = None,
            **training):
        """Fine-tune on paired ``audio`` (N, Da) and ``video`` (N, Dv); returns ``self``.

        Loss per minibatch: ``w_a * MSE(audio_hat, audio) + w_v * MSE(video_hat, video)`` (MSE = mean
        over elements, targets always the clean inputs) ``+ l1_shared * mean|code|`` ``+ kl_weight *
        KL`` (variational). ``history`` gets the per-epoch mean loss.

        Parameters
        ----------
        audio, video : (N, Da), (N, Dv) paired rows
        fractions : (video_only, audio_only, both)
            With both modalities as inputs each minibatch is augmented by
            :func:`bimodal.augment.augment_batch`; ``(0, 0, 1)`` turns augmentation off.
            Single-input models ignore it.
        corruption : float
            Masks that fraction of input units (denoising).
        l1_shared : float
            Weight of the L1 penalty on the shared code.
        kl_weight : float, optional
            KL weight of the variational shared layer; default the model's ``kl_weight``.
        modality_weights : (w_a, w_v)
            Weights of the two reconstruction errors.
        options, **training
            Training-loop settings, as in :meth:`DeepAutoencoder.fit`.
        """
        options = FineTuneOptions.build(options, **training)
        a, v, _ = self._paired(audio, video)
        fractions = check_fractions(fractions)
        kl_weight = self.kl_weight if kl_weight is None else float(kl_weight)
        w_a, w_v = (float(w) for w in modality_weights)
        augment = len(self.input_modalities) == 2 and fractions != NO_AUGMENTATION

        def batch_loss(batch, g):
            inputs = dict(batch)
            if augment:
                inputs["audio"], inputs["video"], _ = augment_batch(batch["audio"], batch["video"], fractions, g)
            if corruption:
                inputs = {m: mask_inputs(x, corruption, g) for m, x in inputs.items()}
            code, mu, logvar = self._code(inputs, g)
            out = self._decode(code)
            loss = w_a * F.mse_loss(out["audio"].float(), batch["audio"]) + \
                w_v * F.mse_loss(out["video"].float(), batch["video"])
            if l1_shared:
                loss = loss + l1_shared * code.abs().mean()
            if mu is not None and kl_weight:
                loss = loss + kl_weight * 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()
            return loss

        _train(self, {"audio": a, "video": v}, batch_loss, options, "BimodalAutoencoder")
        return self

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def encode(self, audio=None, video=None):
        """Shared representation ``(N, shared)`` from whichever modalities are given.

        A missing input modality is fed as zeros, as in augmented training. For the variational
        shared layer this is the mean (deterministic). The output is numpy if the first given
        input is numpy.
        """
        inputs, was_numpy = self._inference_inputs(audio, video)
        code, _, _ = self._code(inputs)
        return restore_type(code, was_numpy)

    transform = encode

    @torch.no_grad()
    def reconstruct(self, audio=None, video=None):
        """``(audio_hat, video_hat)`` from whichever modalities are given (missing ones as zeros)."""
        inputs, was_numpy = self._inference_inputs(audio, video)
        code, _, _ = self._code(inputs)
        out = self._decode(code)
        return restore_type(out["audio"], was_numpy), restore_type(out["video"], was_numpy)

    def _check(self, X, m: str):
        x, was_numpy = as_tensor(X, self.device, name=m)
        if x.shape[1] != self.sizes[m][0]:
            raise ShapeError(f"{m} must have {self.sizes[m][0]} columns, got {x.shape[1]}", field=m)
        return x, was_numpy

    def _paired(self, audio, video):
        if audio is None or video is None:
            raise ConfigError("BimodalAutoencoder.fit needs both audio and video (they are the targets)")
        a, was_numpy = self._check(audio, "audio")
        v, _ = self._check(video, "video")
        check_paired_rows(a, v)
        return a, v, was_numpy

    def _inference_inputs(self, audio, video):
        given = {m: x for m, x in (("audio", audio), ("video", video)) if x is not None}
        if not given:
            raise ConfigError("give audio, video or both")
        extra = [m for m in given if m not in self.input_modalities]
        if extra:
            raise ConfigError(f"this autoencoder takes only {self.input_modalities} as input, got {extra[0]}")
        tensors, kinds = {}, []
        for m, x in given.items():
            tensors[m], was_numpy = self._check(x, m)
            kinds.append(was_numpy)
        n = {t.shape[0] for t in tensors.values()}
        if len(n) != 1:
            raise ShapeError(f"audio and video row counts differ: {sorted(n)}", field="video")
        rows = n.pop()
        for m in self.input_modalities:
            if m not in tensors:
                tensors[m] = torch.zeros(rows, self.sizes[m][0], device=self.device)
        return tensors, kinds[0]
