"""A convolutional autoencoder of single mouth frames: a learned alternative to PCA on the pixels.

Beyond the paper. Ngiam et al. (2011) PCA-whiten the 60x80 mouth crops (32 dims) before the
video RBM; :class:`ConvFrameAutoencoder` instead learns a ``code_dim``-dimensional code per frame
with a small convolutional autoencoder, and ``data_prep.dataset.Preprocessor`` (with
``PrepConfig(video_frontend="conv")``) whitens those codes in place of the pixels, so the RBM /
deep autoencoder stack above is unchanged.

Architecture (``channels`` = 64 by default, every convolution 3x3 with padding 1)::

    frame (1, H, W), standardised by the training set's global pixel mean / std
      3 x [conv 3x3 -> batch norm -> LeakyReLU -> max-pool 2x2]   H x W -> H/2 -> H/4 -> H/8 (floor)
      flatten -> linear -> code (code_dim)                          the bottleneck, no activation
      linear -> (channels, H/8, W/8)
      2 x [upsample -> conv 3x3 -> batch norm -> LeakyReLU]          back to H/4, H/2
      upsample -> conv 3x3 -> 1 channel                              linear output, MSE loss

60x80 crops go 60x80 -> 30x40 -> 15x20 -> 7x10; the decoder upsamples to the exact size each
pooling stage had (15x20, 30x40, 60x80), so odd sizes lose nothing in the output shape. Any
frame of at least 8x8 pixels works.
"""
from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import _train
from .device import as_tensor, make_generator, resolve_device, restore_type
from .errors import ConfigError, DataError, ShapeError
from .options import FineTuneOptions
from .persist import Persistable

N_STAGES = 3           # 2x max-pool stages: the bottleneck map is (H // 8, W // 8)
MIN_SIDE = 2 ** N_STAGES
NEGATIVE_SLOPE = 0.2   # LeakyReLU: no dead units in a net trained for a few epochs only
STD_FLOOR = 1e-6       # a constant training set must not divide by zero
TRANSFORM_BATCH = 256  # frames per forward pass in transform / reconstruct: bounds memory (60x80x64 maps: 315 MB)


def _stage_sizes(frame_shape: tuple[int, int]) -> list[tuple[int, int]]:
    """Feature-map size before each pooling stage and after the last: ``[(H, W), (H//2, W//2), ...]``."""
    sizes = [tuple(frame_shape)]
    for _ in range(N_STAGES):
        h, w = sizes[-1]
        sizes.append((h // 2, w // 2))
    return sizes


def _conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    # No conv bias: the batch norm that follows has its own shift.
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.LeakyReLU(NEGATIVE_SLOPE)]


class ConvFrameAutoencoder(Persistable, nn.Module):
    """Convolutional autoencoder of grayscale frames with a linear ``code_dim`` bottleneck.

    scikit-learn-like: :meth:`fit` on training frames, then :meth:`transform` (codes) and
    :meth:`reconstruct` (frames). Numpy in -> numpy out, tensors in -> tensors out.

    Parameters
    ----------
    frame_shape : (H, W)
        Frame size in pixels, both at least 8 (three 2x poolings). Frames are given as
        ``(N, H, W)`` or flattened row-major ``(N, H * W)`` (the layout of
        ``Preprocessor.frames``), float values, normally pixels / 255 in [0, 1].
    code_dim : int
        Size of the per-frame code (the linear bottleneck).
    channels : int
        Feature maps of every convolution (the seed design: 64).
    device : str, torch.device or None
        ``None`` -> CUDA if available, else CPU. Convolutions over tens of thousands of frames
        are slow on a CPU; that path is for tests and small corpora.
    seed : int or None
        Seeds the initial weights (drawn on the CPU, so they do not depend on the device) and,
        unless ``fit`` is given another, the minibatch order.

    Attributes
    ----------
    history : list of float
        Per-epoch mean squared reconstruction error of the *standardised* frames (unit pixel
        variance, so 1.0 is what predicting the mean image gives).
    pixel_mean, pixel_std : 0-d buffers
        Global mean / standard deviation of the pixels of the first ``fit``'s frames.
    """

    def __init__(self, frame_shape=(60, 80), code_dim: int = 64, channels: int = 64, device=None,
                 seed: int | None = 0):
        super().__init__()
        try:
            shape = tuple(int(s) for s in frame_shape)
        except (TypeError, ValueError):
            raise ConfigError(f"ConvFrameAutoencoder: frame_shape must be (H, W), got {frame_shape!r}") from None
        if len(shape) != 2 or min(shape) < MIN_SIDE:
            raise ConfigError(f"ConvFrameAutoencoder: frame_shape must be (H, W) with H, W >= {MIN_SIDE} "
                              f"({N_STAGES} 2x poolings), got {frame_shape!r}")
        if int(code_dim) < 1 or int(channels) < 1:
            raise ConfigError(f"ConvFrameAutoencoder: code_dim and channels must be >= 1, got code_dim={code_dim}, "
                              f"channels={channels}")
        self.frame_shape, self.code_dim, self.channels = shape, int(code_dim), int(channels)
        self.seed = seed
        self.device = resolve_device(device)
        self.sizes = _stage_sizes(shape)
        c, (bh, bw) = self.channels, self.sizes[-1]
        layers: list[nn.Module] = []
        for i in range(N_STAGES):
            layers += _conv_block(1 if i == 0 else c, c) + [nn.MaxPool2d(2)]
        self.encoder = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * bh * bw, self.code_dim))
        self.expand = nn.Linear(self.code_dim, c * bh * bw)
        # Upsample to the exact size each pooling stage had: odd sides (15 -> 7) come back as 15.
        dec: list[nn.Module] = []
        for i in range(N_STAGES - 1, -1, -1):
            dec.append(nn.Upsample(size=self.sizes[i], mode="nearest"))
            dec += _conv_block(c, c) if i > 0 else [nn.Conv2d(c, 1, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("pixel_mean", torch.zeros(()))
        self.register_buffer("pixel_std", torch.ones(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self._init_weights(make_generator(seed, "cpu"))
        self.history: list[float] = []
        # channels-last (NHWC) maps: oneDNN's convolutions and batch norms run faster on them on a
        # CPU (benchmarks/conv_frontend.py; docs/performance.md has the numbers).
        self.to(self.device, memory_format=torch.channels_last)
        self.eval()  # batch norm uses its running statistics except inside fit

    @torch.no_grad()
    def _init_weights(self, g: torch.Generator) -> None:
        # torch's default init draws from the global RNG; redraw everything from the model's own
        # generator (same He-uniform family) so the seed alone fixes the initial weights.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=NEGATIVE_SLOPE, nonlinearity="leaky_relu", generator=g)
                if m.bias is not None:
                    m.bias.zero_()

    def config(self) -> dict:
        return dict(frame_shape=list(self.frame_shape), code_dim=self.code_dim, channels=self.channels,
                    seed=self.seed)

    def extra_repr(self) -> str:
        return f"frame_shape={self.frame_shape}, code_dim={self.code_dim}, channels={self.channels}"

    # ---------------------------------------------------------------- forward (tensors)
    def _standardise(self, x: torch.Tensor) -> torch.Tensor:
        """Flat or 2-D frames (B, H*W) -> standardised images (B, 1, H, W)."""
        return ((x - self.pixel_mean) / self.pixel_std).reshape(-1, 1, *self.frame_shape)

    def encode_t(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (B, code_dim) of *standardised* images (B, 1, H, W)."""
        return self.encoder(x)

    def decode_t(self, code: torch.Tensor) -> torch.Tensor:
        """Standardised images (B, 1, H, W) from codes (B, code_dim)."""
        h = self.expand(code).reshape(-1, self.channels, *self.sizes[-1])
        return self.decoder(h)

    # ---------------------------------------------------------------- training
    def fit(self, frames, *, options: FineTuneOptions | None = None, **training) -> "ConvFrameAutoencoder":
        """Minimise the mean squared error between the standardised frames and their reconstructions.

        Returns ``self``; appends one mean loss per epoch to ``history``. The first ``fit`` sets
        the standardisation (global pixel mean / std of ``frames``); a later ``fit`` continues
        training with it, so codes stay comparable.

        Parameters
        ----------
        frames : (N, H, W) or (N, H * W) array or tensor, N >= 1
            Kept on the model's device whole; minibatches are views of shuffled chunks of it.
        options : FineTuneOptions, optional
            The training-loop settings in one object; keyword arguments override its fields.
        **training
            Fields of :class:`bimodal.options.FineTuneOptions`: ``epochs`` (10), ``batch_size``
            (100), ``lr`` (1e-3), ``seed`` (default: the model's), ``progress`` (tqdm bar),
            ``optimizer`` ("adam" or "sgd"), ``momentum``, ``weight_decay``, and the opt-in fast
            math ``matmul_precision``, ``autocast_dtype``, ``compile`` (see :mod:`bimodal.fast`).

        Raises
        ------
        ShapeError
            If ``frames`` does not match ``frame_shape`` (field ``frames``).
        ConfigError
            For unknown or invalid training options.
        TrainingDivergedError
            If an epoch's loss or any parameter is not finite.
        """
        options = FineTuneOptions.build(options, **training)
        x, _, _ = self._input(frames)
        if x.shape[0] == 0:
            raise ShapeError("fit needs at least one frame, got 0", field="frames")
        if not bool(self.fitted):
            with torch.no_grad():
                std, mean = torch.std_mean(x, correction=0)
                self.pixel_mean.copy_(mean)
                self.pixel_std.copy_(std.clamp_min(STD_FLOOR))
                self.fitted.fill_(True)

        def batch_loss(batch, g):
            target = self._standardise(batch["x"])
            return F.mse_loss(self.decode_t(self.encode_t(target)).float(), target)

        # The autoencoders' shared loop: seeded shuffling, fused Adam, one host sync per epoch,
        # TrainingDivergedError on a non-finite loss or parameter, train() mode inside, eval() after.
        _train(self, {"x": x}, batch_loss, options, "ConvFrameAutoencoder")
        return self

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def transform(self, frames, batch_size: int = TRANSFORM_BATCH):
        """Codes of ``frames``: (N, code_dim) float32; numpy in -> numpy out.

        Runs in eval mode (batch norm with its running statistics), so a frame's code depends on
        that frame only, not on ``batch_size`` or the other frames.
        """
        x, was_numpy, _ = self._input(frames)
        self.eval()
        codes = [self.encode_t(self._standardise(b)) for b in self._chunks(x, batch_size)]
        out = torch.cat(codes) if codes else x.new_zeros((0, self.code_dim))
        return restore_type(out, was_numpy)

    encode = transform

    @torch.no_grad()
    def reconstruct(self, frames, batch_size: int = TRANSFORM_BATCH):
        """Reconstructed frames on the input's pixel scale, in the input's layout ((N, H, W) or
        (N, H * W)); eval mode as :meth:`transform`."""
        x, was_numpy, ndim = self._input(frames)
        self.eval()
        outs = [self.decode_t(self.encode_t(self._standardise(b))) * self.pixel_std + self.pixel_mean
                for b in self._chunks(x, batch_size)]
        out = torch.cat(outs).reshape(-1, x.shape[1]) if outs else x.new_zeros((0, x.shape[1]))
        if ndim == 3:
            out = out.reshape(-1, *self.frame_shape)
        return restore_type(out, was_numpy)

    @staticmethod
    def _chunks(x: torch.Tensor, batch_size: int):
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        return torch.split(x, int(batch_size)) if x.shape[0] else ()

    def _input(self, frames):
        """``(x, was_numpy, ndim)``: ``frames`` as a flat (N, H*W) float32 tensor on the device,
        the kind it was given as and its number of dimensions (2 or 3)."""
        x, was_numpy = as_tensor(frames, self.device, name="frames", ndim=None)
        H, W = self.frame_shape
        ndim = x.ndim
        if ndim == 3 and tuple(x.shape[1:]) == self.frame_shape:
            x = x.reshape(x.shape[0], H * W)
        elif not (ndim == 2 and x.shape[1] == H * W):
            raise ShapeError(f"expected frames of shape (N, {H}, {W}) or (N, {H * W}) for frame_shape "
                             f"{self.frame_shape}, got {tuple(x.shape)}", field="frames")
        return x, was_numpy, ndim

    # ---------------------------------------------------------------- persistence in other files
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The whole model as named numpy arrays (config, history, state dict), for embedding in
        another ``.npz`` file (``Preprocessor.save``); :meth:`from_arrays` rebuilds it."""
        out = {"config_json": np.array(json.dumps(self.config())),
               "history": np.asarray(self.history, dtype=np.float64)}
        out.update({"state." + k: v.detach().cpu().numpy() for k, v in self.state_dict().items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict, device=None) -> "ConvFrameAutoencoder":
        """Rebuild a model from :meth:`to_arrays`' output on ``device`` (default: CUDA if available)."""
        if "config_json" not in arrays:
            raise DataError("not a ConvFrameAutoencoder state (no config_json)", field="config_json")
        try:
            config = json.loads(str(arrays["config_json"]))
            model = cls._from_config(dict(config), device=device)
        except (ValueError, TypeError) as exc:  # not JSON, not a dict, unknown or bad settings
            raise DataError(f"ConvFrameAutoencoder config is not readable: {exc}", field="config_json") from None
        state = {k[len("state."):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("state.")}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:  # missing / unexpected / mis-shaped tensors
            raise DataError(f"ConvFrameAutoencoder state does not match its config: {exc}", field="state") from exc
        model._set_history([float(v) for v in np.asarray(arrays.get("history", []))])
        return model
