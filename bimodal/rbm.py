"""Restricted Boltzmann machines with Gaussian or Bernoulli visible units and Bernoulli hidden units.

Training is contrastive divergence (CD-k) or persistent CD (PCD, Tieleman 2008) on minibatches
with momentum, L2 weight decay and the sparse-RBM regulariser of Lee, Ekanadham & Ng (2008).
Defaults follow Hinton's "A Practical Guide to Training RBMs" (2010): weights ~ N(0, 0.01^2),
momentum 0.5 for the first 5 epochs then 0.9, visible *means* (not samples) in the negative phase,
and a much smaller learning rate for Gaussian visibles (1e-3) than for Bernoulli ones (0.05).
The weight decay default, 1e-4, is the experiment config's.

One training step, :meth:`RBM.training_step`, is the update as the papers write it; ``fit`` runs
it for every batch, also under the opt-in TF32 / bf16 autocast / ``torch.compile`` switches of
:mod:`bimodal.fast`. It works on a :class:`TrainingState`, the parameters with each bias as an
extra row / column of the weight matrix, so that a step is a handful of matmuls into preallocated
buffers: what matters at small batches, where the arithmetic takes microseconds and each tensor
operation's overhead as long. tests/test_rbm_steps.py checks it against the formulas.

Gaussian visibles have unit variance, so the data must be standardised / PCA-whitened first.

Energy functions (v visible, h hidden, W of shape (n_visible, n_hidden)):

* Bernoulli: ``E(v, h) = -v.b_v - h.b_h - v W h``
* Gaussian : ``E(v, h) = ||v - b_v||^2 / 2 - h.b_h - v W h``

and the free energy ``F(v) = -log sum_h exp(-E(v, h))`` is
``-v.b_v - sum_j softplus(b_h + vW)_j`` (Bernoulli) or
``||v - b_v||^2 / 2 - sum_j softplus(b_h + vW)_j`` (Gaussian), up to a constant.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .device import as_tensor, make_generator, resolve_device, restore_type
from .errors import ConfigError, ShapeError, TrainingDivergedError
from .fast import fast_math, maybe_compile
from .options import CDOptions
from .persist import Persistable

log = logging.getLogger(__name__)

VISIBLE_KINDS = ("gaussian", "bernoulli")
# Library defaults; the experiment config (PretrainConfig) starts from the same numbers.
DEFAULT_LR = {"gaussian": 1e-3, "bernoulli": 0.05}
DEFAULT_MOMENTUM = 0.5  # for the first DEFAULT_MOMENTUM_EPOCHS epochs of each fit
DEFAULT_FINAL_MOMENTUM = 0.9
DEFAULT_MOMENTUM_EPOCHS = 5
DEFAULT_WEIGHT_DECAY = 1e-4
# Where the sparsity term acts (RBM's sparsity_update): in the velocity, or a separate step after it.
SPARSITY_UPDATES = ("velocity", "separate")


class RBM(Persistable, nn.Module):
    """Restricted Boltzmann machine with Bernoulli hidden units.

    Parameters
    ----------
    n_visible, n_hidden : int
        Layer sizes.
    visible : {"gaussian", "bernoulli"}
        Visible unit type. Gaussian visibles have unit variance (whiten the data first).
    lr : float or None
        Learning rate; ``None`` → 1e-3 for Gaussian, 0.05 for Bernoulli visibles.
    k : int
        Number of Gibbs steps in the negative phase (CD-k or PCD-k).
    persistent : bool
        Persistent CD: the negative phase continues one Gibbs chain per batch row across
        minibatches (chains live on the device) instead of restarting at the data. PCD is
        noisier with high momentum; ``final_momentum=0.5`` or a smaller ``lr`` helps.
    momentum, final_momentum : float
        Momentum for the first ``momentum_epochs`` epochs of each ``fit``, then ``final_momentum``.
    weight_decay : float
        L2 penalty on ``W`` (not on the biases).
    sparsity_target : float or None
        Target mean activation of every hidden unit (Lee et al. 2008), e.g. 0.05; ``None`` (the
        library default) = off. The experiments turn it on (by default target 0.05, cost 10; tuned per
        corpus and, in some configs, per layer).
    sparsity_cost : float
        Weight λ of the sparsity term: each batch ``lr * λ * (target - q)`` is added to the hidden
        biases' velocity, where ``q`` is a running estimate (decay ``sparsity_decay``) of each hidden
        unit's mean probability. The term rides on the momentum as Hinton's practical guide (2010,
        §11) adds it "to the gradient"; Lee, Ekanadham & Ng (2008) instead take a separate step on
        the regulariser after each CD update. A pull that persists for many batches therefore moves
        the biases by ``lr * λ / (1 - momentum) * (target - q)`` per batch: λ here weighs as
        ``λ / (1 - m)`` in Lee et al.'s form, 2λ under the first ``momentum_epochs`` epochs'
        momentum of 0.5 and 10λ under the final 0.9 (:func:`effective_sparsity_cost`).
        Lee's own sparse (C)RBM code adds it to the gradient that the momentum carries, like this.
    sparsity_update : {"velocity", "separate"}
        Where the sparsity term acts: ``"velocity"`` (above) or ``"separate"``, the form Lee et al.'s
        paper writes: after each CD update (momentum included) the hidden biases take their own step
        ``lr * λ * (target - q)``, which the momentum does not carry, so λ weighs as itself. (Both
        leave out the sigmoid's derivative of the squared penalty's gradient, as Lee's code does.)
    sample_visible : bool
        Sample the visible units in the negative phase of CD instead of using their means
        (Hinton's guide recommends means; Gaussian samples add unit-variance noise). PCD chains
        always sample (they must be a proper Gibbs chain).
    init_std : float
        Standard deviation of the initial weights.
    device : str, torch.device or None
        ``None`` → CUDA if available, else CPU.
    seed : int or None
        Seeds the initial weights (drawn on the CPU so they are device independent) and
        the sampling in ``fit`` / ``sample``.

    Attributes
    ----------
    W : (n_visible, n_hidden) tensor; b_v : (n_visible,); b_h : (n_hidden,)
    history : list of float
        Per-epoch reconstruction MSE: mean over the epoch of ``(v - v1)^2`` where ``v1`` is the
        visible mean one Gibbs step from the data (hidden units sampled), i.e. CD-1's first
        negative-phase state.
    """

    def __init__(self, n_visible: int, n_hidden: int, visible: str = "gaussian", lr: float | None = None,
                 k: int = 1, persistent: bool = False, momentum: float = DEFAULT_MOMENTUM,
                 final_momentum: float = DEFAULT_FINAL_MOMENTUM, momentum_epochs: int = DEFAULT_MOMENTUM_EPOCHS,
                 weight_decay: float = DEFAULT_WEIGHT_DECAY, sparsity_target: float | None = None,
                 sparsity_cost: float = 0.0, sparsity_decay: float = 0.9, sparsity_update: str = "velocity",
                 sample_visible: bool = False, init_std: float = 0.01, device=None, seed: int | None = 0):
        super().__init__()
        if visible not in VISIBLE_KINDS:
            raise ConfigError(f"RBM: visible must be one of {VISIBLE_KINDS}, got {visible!r}")
        if int(n_visible) < 1 or int(n_hidden) < 1:
            raise ConfigError(f"RBM: n_visible and n_hidden must be >= 1, got {n_visible}, {n_hidden}")
        if int(k) < 1:
            raise ConfigError(f"RBM: k (Gibbs steps) must be >= 1, got {k}")
        if sparsity_target is not None and not 0.0 < sparsity_target < 1.0:
            raise ConfigError(f"RBM: sparsity_target must be in (0, 1), got {sparsity_target}")
        if sparsity_update not in SPARSITY_UPDATES:
            raise ConfigError(f"RBM: sparsity_update must be one of {SPARSITY_UPDATES}, got {sparsity_update!r}")
        self.n_visible, self.n_hidden, self.visible = int(n_visible), int(n_hidden), visible
        self.lr = DEFAULT_LR[visible] if lr is None else float(lr)
        self.k, self.persistent = int(k), bool(persistent)
        self.momentum, self.final_momentum, self.momentum_epochs = float(momentum), float(final_momentum), int(
            momentum_epochs)
        self.weight_decay = float(weight_decay)
        self.sparsity_target = None if sparsity_target is None else float(sparsity_target)
        self.sparsity_cost, self.sparsity_decay = float(sparsity_cost), float(sparsity_decay)
        self.sparsity_update = sparsity_update
        self.sample_visible, self.init_std = bool(sample_visible), float(init_std)
        self.seed = seed
        self.device = resolve_device(device)
        self.history: list[float] = []
        self._n_fits = 0

        g = make_generator(seed, "cpu")
        W = torch.randn(self.n_visible, self.n_hidden, generator=g) * self.init_std
        # Parameters are updated by hand (CD is not the gradient of a loss), so no autograd.
        self.W = nn.Parameter(W, requires_grad=False)
        self.b_v = nn.Parameter(torch.zeros(self.n_visible), requires_grad=False)
        self.b_h = nn.Parameter(torch.zeros(self.n_hidden), requires_grad=False)
        # Velocities (momentum) and the running mean hidden probability of the sparsity term.
        self.register_buffer("vel_W", torch.zeros_like(W))
        self.register_buffer("vel_b_v", torch.zeros(self.n_visible))
        self.register_buffer("vel_b_h", torch.zeros(self.n_hidden))
        self.register_buffer("hidden_mean", torch.full((self.n_hidden,), self.sparsity_target or 0.0))
        self._chain: torch.Tensor | None = None  # PCD hidden states, (batch, n_hidden)
        self.to(self.device)

    def config(self) -> dict:
        return dict(n_visible=self.n_visible, n_hidden=self.n_hidden, visible=self.visible, lr=self.lr, k=self.k,
                    persistent=self.persistent, momentum=self.momentum, final_momentum=self.final_momentum,
                    momentum_epochs=self.momentum_epochs, weight_decay=self.weight_decay,
                    sparsity_target=self.sparsity_target, sparsity_cost=self.sparsity_cost,
                    sparsity_decay=self.sparsity_decay, sparsity_update=self.sparsity_update,
                    sample_visible=self.sample_visible,
                    init_std=self.init_std, seed=self.seed)

    def extra_repr(self) -> str:
        return f"{self.n_visible} -> {self.n_hidden}, visible={self.visible}, lr={self.lr:g}, k={self.k}, " \
               f"persistent={self.persistent}"

    # ---------------------------------------------------------------- conditionals (tensors only)
    def hidden_prob(self, v: torch.Tensor) -> torch.Tensor:
        """p(h=1 | v) = sigmoid(b_h + v W), shape (N, n_hidden)."""
        return torch.addmm(self.b_h, v, self.W).sigmoid_()  # in place: no second (N, H) buffer

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        """E[v | h]: b_v + h W^T (Gaussian) or sigmoid of it (Bernoulli), shape (N, n_visible)."""
        a = torch.addmm(self.b_v, h, self.W.t())
        return a if self.visible == "gaussian" else a.sigmoid_()

    def _sample_hidden(self, p: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return (torch.rand(p.shape, generator=g, device=p.device, dtype=p.dtype) < p).to(p.dtype)

    def _sample_visible_into(self, mean: torch.Tensor, g: torch.Generator) -> None:
        """Replace the visible means ``mean`` (a view into a state buffer) by a sample, in place."""
        if self.visible == "gaussian":
            mean.add_(torch.randn(mean.shape, generator=g, device=mean.device, dtype=mean.dtype))
        else:
            _less_into(mean, torch.rand(mean.shape, generator=g, device=mean.device, dtype=mean.dtype), mean)

    def free_energy_t(self, v: torch.Tensor) -> torch.Tensor:
        """Free energy of each row of the tensor ``v``, shape (N,)."""
        hidden_term = F.softplus(torch.addmm(self.b_h, v, self.W)).sum(dim=1)
        if self.visible == "gaussian":
            return 0.5 * ((v - self.b_v) ** 2).sum(dim=1) - hidden_term
        return -(v @ self.b_v) - hidden_term

    def free_energy_grad(self, v: torch.Tensor) -> torch.Tensor:
        """Analytic dF/dv for each row of the tensor ``v``, shape (N, n_visible)."""
        back = self.hidden_prob(v) @ self.W.t()
        return (v - self.b_v - back) if self.visible == "gaussian" else (-self.b_v - back)

    # ---------------------------------------------------------------- learning
    def gradient(self, v_pos: torch.Tensor, h_pos: torch.Tensor, v_neg: torch.Tensor, h_neg: torch.Tensor):
        """CD estimate of the log-likelihood gradient (ascent direction), averaged over the batch.

        ``<v h^T>_data - <v h^T>_model`` and the matching bias terms, which equals
        ``-d/dθ [mean F(v_pos) - mean F(v_neg)]`` when ``h_pos``, ``h_neg`` are hidden
        probabilities. Weight decay is not included. Returns ``(dW, db_v, db_h)``.
        """
        inv_pos, inv_neg = 1.0 / v_pos.shape[0], 1.0 / v_neg.shape[0]
        dW = torch.addmm(v_neg.t() @ h_neg, v_pos.t(), h_pos, beta=-inv_neg, alpha=inv_pos)
        db_v = v_pos.mean(0) - v_neg.mean(0)
        db_h = h_pos.mean(0) - h_neg.mean(0)
        return dW, db_v, db_h

    def gibbs_phases(self, v0: torch.Tensor, generator: torch.Generator, noise: torch.Tensor | None = None):
        """Positive and negative phase of CD-k / PCD-k on the minibatch ``v0`` (B, n_visible).

        Positive phase: ``h0 = p(h | v0)`` and a binary sample of it (``noise < h0``). Negative
        phase: ``k`` Gibbs steps h → v → h, started from that sample (CD-k) or from the persistent
        chains (PCD-k, which then advance). ``noise`` (B, n_hidden): the uniform draws of the first
        hidden sample; drawn from ``generator`` when omitted. The same phases as a training step
        (:meth:`_phases`), with the same draws.

        Returns
        -------
        h0 : (B, n_hidden) hidden probabilities of the data.
        v1 : (B, n_visible) visible mean one Gibbs step from the data (the reconstruction).
        v_neg, h_neg : negative-phase visible state and its hidden probabilities.
        """
        state = TrainingState(self)
        v0 = state.augment(v0)
        rows = state.rows(v0.shape[0])
        v_neg, h_neg = self._phases(state, rows, v0, generator, noise)
        V, H = self.n_visible, self.n_hidden
        return rows.h0.clone(), rows.v1.clone(), v_neg[:, :V].clone(), h_neg[:, :H].clone()

    def _phases(self, state: "TrainingState", rows: "_Rows", v0: torch.Tensor, generator: torch.Generator,
                noise: torch.Tensor | None = None):
        """:meth:`gibbs_phases` on the augmented rows ``v0`` (B, n_visible + 1) of ``state``, into
        the buffers ``rows`` (``state.rows(B)``): ``rows.h0`` the data's hidden probabilities,
        ``rows.v1`` the reconstruction. Returns the augmented negative phase ``(v_neg, h_neg)``
        (views of ``rows``' buffers, valid until the next step)."""
        if noise is None:
            noise = self._hidden_noise(v0, generator)
        _less_into(rows.h_state, noise, state.hidden(v0, rows.h0))  # the first hidden sample
        state.visible(rows.h_state_aug, rows.v1)
        n_rows = v0.shape[0]
        if self.persistent:
            if self._chain is None or self._chain.shape[0] < n_rows:
                self._chain = rows.h_state.clone()  # chains start at the data, one per batch row
            rows.h_state.copy_(self._chain[:n_rows])  # a short last batch advances only the first chains
        # Negative phase: k Gibbs steps h -> v -> h from the data's hidden sample (CD-k) or from the
        # persistent chains (PCD-k). PCD chains must be a real Markov chain, so PCD always samples
        # the visibles.
        sample = self.sample_visible or self.persistent
        v_neg = rows.v1_aug  # CD's visible mean one step from the data: the reconstruction
        for step in range(self.k):
            if step > 0 or sample:
                mean = state.visible(rows.h_state_aug, rows.v_neg)
                if sample:
                    self._sample_visible_into(mean, generator)
                v_neg = rows.v_neg_aug
            h_neg = state.hidden(v_neg, rows.h_neg)
            if step < self.k - 1 or self.persistent:
                noise = torch.rand(h_neg.shape, generator=generator, device=h_neg.device, dtype=h_neg.dtype)
                _less_into(rows.h_state, noise, h_neg)
        if self.persistent:
            self._chain[:n_rows] = rows.h_state
        return v_neg, rows.h_neg_aug

    def training_step(self, v0: torch.Tensor, lr: float, momentum: float, generator: torch.Generator,
                      noise: torch.Tensor | None = None) -> torch.Tensor:
        """One CD-k / PCD-k update on the minibatch ``v0`` (B, n_visible), in place: the one training
        step of the RBM (:meth:`_step`, what ``fit`` runs for every batch).

        Hinton (2002), Tieleman (2008) for PCD, Lee et al. (2008) for the sparsity term and
        Hinton's practical guide (2010) for momentum and weight decay::

            grad_W   = <v h^T>_data - <v h^T>_model - weight_decay * W
            grad_b_v = <v>_data - <v>_model
            grad_b_h = <h>_data - <h>_model + sparsity_cost * (sparsity_target - q)
            velocity = momentum * velocity + lr * grad;   θ = θ + velocity

        where ``<.>`` are batch means and ``q`` is a running mean (decay ``sparsity_decay``) of each
        hidden unit's probability on the data. With ``sparsity_update="separate"`` the sparsity term
        leaves ``grad_b_h`` and ``b_h += lr * sparsity_cost * (sparsity_target - q)`` follows the update.

        ``noise`` (B, n_hidden), optional: the uniform draws that sample the first hidden state
        (``fit`` draws them for many batches at once); drawn from ``generator`` when omitted.
        Returns the batch's summed squared reconstruction error as a 0-d device tensor (no host
        sync), the reconstruction being the visible mean one Gibbs step from the data.
        """
        state = TrainingState(self)
        self._step(state, state.augment(v0), lr, momentum, generator, noise)
        state.store(self)
        return state.squared_error[0].clone()

    def _step(self, state: "TrainingState", v0: torch.Tensor, lr: float, momentum: float,
              generator: torch.Generator, noise: torch.Tensor | None = None) -> None:
        """:meth:`training_step` on ``state`` (:class:`TrainingState`) and its augmented rows
        ``v0`` (B, n_visible + 1); the batch's squared reconstruction error is added to
        ``state.squared_error``.

        Every CD statistic comes from two matmuls into the velocity: ``[v 1]^T [h 1]`` holds
        ``<v h^T>``, ``<v>`` (last column) and ``<h>`` (last row), so a step is about twenty tensor
        operations, which is what a small batch costs (the arithmetic is a few microseconds)."""
        rows = state.rows(v0.shape[0])
        v_neg, h_neg = self._phases(state, rows, v0, generator, noise)
        state.accumulate(momentum, lr / v0.shape[0], (v0, rows.h0_aug), (v_neg, h_neg))
        # ... - lr * weight_decay * W
        if self.weight_decay:
            state.vel_W.add_(state.W, alpha=-lr * self.weight_decay)
        # ... + lr * sparsity_cost * (sparsity_target - q), in the velocity or as a step of its own
        pull = self._sparsity_pull(rows.h0)
        if pull is not None and self.sparsity_update == "velocity":
            state.vel_b_h.add_(pull, alpha=lr * self.sparsity_cost)
        # θ = θ + velocity
        state.theta.add_(state.velocity)
        if pull is not None and self.sparsity_update == "separate":
            state.b_h.add_(pull, alpha=lr * self.sparsity_cost)
        # squared reconstruction error (the ones columns cancel)
        if torch.compiler.is_compiling():  # inductor mis-guards the aliased views of rows.diff
            state.squared_error.add_(((rows.v1_aug - v0) ** 2).sum())
        else:
            torch.sub(rows.v1_aug, v0, out=rows.diff)
            state.squared_error.addmv_(rows.diff_row, rows.diff_flat)

    def _hidden_noise(self, v: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.rand((v.shape[0], self.n_hidden), generator=generator, device=v.device)

    def _sparsity_pull(self, h_pos: torch.Tensor) -> torch.Tensor | None:
        """Lee et al. (2008): update the running mean ``q`` of each hidden unit's probability on
        the data and return ``sparsity_target - q`` (n_hidden,); None when sparsity is off."""
        if self.sparsity_target is None or self.sparsity_cost <= 0:
            return None
        self.hidden_mean.mul_(self.sparsity_decay).add_(h_pos.float().mean(0), alpha=1.0 - self.sparsity_decay)
        return self.sparsity_target - self.hidden_mean

    def _parameters_finite(self) -> torch.Tensor:
        return torch.isfinite(self.W).all() & torch.isfinite(self.b_v).all() & torch.isfinite(self.b_h).all()

    @torch.no_grad()
    def fit(self, X, *, options: CDOptions | None = None, **training):
        """Train on ``X`` by CD-k / PCD-k. Returns ``self``; appends to ``history``.

        Parameters
        ----------
        X : (N, n_visible) array or tensor
        options : CDOptions, optional
            The training-loop settings in one object; keyword arguments override its fields.
        **training
            Fields of :class:`bimodal.options.CDOptions`: ``epochs`` (10), ``batch_size`` (100),
            ``progress``, ``seed`` (default: derived from the model's seed and the number of fits),
            and the opt-in fast math ``matmul_precision``, ``autocast_dtype``, ``compile`` (see
            :mod:`bimodal.fast`), which all run the one step (:meth:`training_step`'s :meth:`_step`).

        The hot loop has no host synchronisation: each chunk of rows is permuted on the device
        with one gather and its hidden-sampling noise drawn with one call, batches are views of
        it, and the error is accumulated on the device (one sync per epoch).

        Raises
        ------
        TrainingDivergedError
            If the epoch's reconstruction error or any parameter is not finite (checked once per
            epoch). The parameters are restored to the end of the last finite epoch first.
        """
        opts = CDOptions.build(options, **training)
        X, _ = as_tensor(X, self.device, name="X")
        if X.shape[1] != self.n_visible:
            raise ShapeError(f"RBM has {self.n_visible} visible units, X has {X.shape[1]} columns", field="X")
        seed = opts.seed
        if seed is None:
            seed = None if self.seed is None else self.seed + 1000 * (self._n_fits + 1)
        self._n_fits += 1
        g = make_generator(seed, self.device)
        self._chain = None
        # compile: a local wrapper of the same step (torch.compile caches the code; the model keeps nothing).
        step = maybe_compile(self._step, opts.compile)
        with fast_math(self.device, opts.matmul_precision, opts.autocast_dtype):
            self._fit_epochs(X, opts, step, g)
        return self

    def _fit_epochs(self, X, opts: CDOptions, step, g):
        n, batch_size = X.shape[0], opts.batch_size
        state = TrainingState(self)  # the parameters as the step works on them; written back each epoch
        state.rows(min(n, batch_size)), state.rows(n % batch_size or batch_size)  # made outside a compiled step
        # Rows per chunk: whole batches, ~16M noise values at most, so memory stays bounded.
        chunk = max(1, _CHUNK_ELEMENTS // (batch_size * self.n_hidden)) * batch_size
        try:
            for epoch in tqdm(range(opts.epochs), desc=f"RBM {self.n_visible}->{self.n_hidden}",
                              disable=not opts.progress, leave=False):
                momentum = self.momentum if epoch < self.momentum_epochs else self.final_momentum
                snapshot = (state.theta.clone(), self.hidden_mean.clone())
                perm = torch.randperm(n, generator=g, device=self.device)
                state.squared_error.zero_()
                for c0 in range(0, n, chunk):
                    rows = state.augment(X[perm[c0:c0 + chunk]])
                    noise = self._hidden_noise(rows, g)
                    for start in range(0, rows.shape[0], batch_size):
                        step(state, rows[start:start + batch_size], self.lr, momentum, g,
                             noise[start:start + batch_size])
                state.store(self)  # the model's tensors are current after every epoch
                mse = state.squared_error[0] / (n * self.n_visible)
                mse_value, finite = torch.stack([mse, self._parameters_finite().to(mse.dtype)]).tolist()  # one sync
                if not (math.isfinite(mse_value) and finite):
                    state.theta.copy_(snapshot[0])  # stored by the finally below
                    state.velocity.zero_()
                    self.hidden_mean.copy_(snapshot[1])
                    self._chain = None
                    raise TrainingDivergedError(
                        f"RBM ({self.visible} visible, {self.n_visible}->{self.n_hidden}) training diverged at epoch "
                        f"{epoch + 1}: reconstruction error {mse_value} / non-finite parameters. "
                        f"Try a lower learning rate than lr={self.lr:g} (Gaussian visibles typically need 1e-3..1e-2) "
                        f"and check that the data are whitened. Parameters were restored to the last finite epoch.")
                self.history.append(mse_value)
                log.debug("RBM epoch %d: recon MSE %.6g", epoch + 1, mse_value)
        finally:  # an interrupted fit leaves the model as far as it got, as its running means and chains
            state.store(self)

    # ---------------------------------------------------------------- sklearn-style inference
    @torch.no_grad()
    def transform(self, X):
        """Hidden probabilities p(h=1 | X), shape (N, n_hidden); numpy in → numpy out."""
        t, was_numpy = self._input(X)
        return restore_type(self.hidden_prob(t), was_numpy)

    @torch.no_grad()
    def reconstruct(self, X):
        """Deterministic reconstruction E[v | h = p(h | X)], shape (N, n_visible)."""
        t, was_numpy = self._input(X)
        return restore_type(self.visible_mean(self.hidden_prob(t)), was_numpy)

    @torch.no_grad()
    def free_energy(self, X):
        """Free energy F(x) of each row, shape (N,)."""
        t, was_numpy = self._input(X)
        return restore_type(self.free_energy_t(t), was_numpy)

    @torch.no_grad()
    def pseudo_likelihood(self, X):
        """Exact log pseudo-likelihood of each row (sum over all visible bits), shape (N,).

        Only for Bernoulli visibles; see :func:`bernoulli_log_pseudo_likelihood`.
        """
        if self.visible != "bernoulli":
            raise ConfigError("pseudo_likelihood is defined here for Bernoulli visible units only")
        t, was_numpy = self._input(X)
        return restore_type(bernoulli_log_pseudo_likelihood(t, self.W, self.b_v, self.b_h), was_numpy)

    @torch.no_grad()
    def sample(self, n_samples: int | None = None, n_steps: int = 100, init=None, seed: int | None = None,
               mean: bool = True):
        """Run Gibbs chains v → h → v ``n_steps`` times.

        Parameters
        ----------
        n_samples : int, optional
            Number of chains started from random visibles (N(0, 1) for Gaussian, Bernoulli(0.5)
            otherwise). Ignored when ``init`` is given.
        init : array or tensor (N, n_visible), optional
            Starting visible states; the output has the same kind.
        mean : bool
            Return the visible means of the last step (True) or a sample of it.

        Returns
        -------
        (N, n_visible) array or tensor.
        """
        g = make_generator(self.seed if seed is None else seed, self.device)
        if init is not None:
            v, was_numpy = self._input(init)
        else:
            if n_samples is None or int(n_samples) < 1:
                raise ConfigError("RBM.sample: give n_samples >= 1 or init")
            shape = (int(n_samples), self.n_visible)
            v = (torch.randn(shape, generator=g, device=self.device) if self.visible == "gaussian"
                 else (torch.rand(shape, generator=g, device=self.device) < 0.5).float())
            was_numpy = False
        for _ in range(int(n_steps)):
            h = self._sample_hidden(self.hidden_prob(v), g)
            m = self.visible_mean(h)
            if self.visible == "gaussian":
                v = m + torch.randn(m.shape, generator=g, device=m.device)
            else:
                v = (torch.rand(m.shape, generator=g, device=m.device) < m).float()
        return restore_type(m if mean else v, was_numpy) if n_steps > 0 else restore_type(v, was_numpy)

    def _input(self, X):
        t, was_numpy = as_tensor(X, self.device, name="X")
        if t.shape[1] != self.n_visible:
            raise ShapeError(f"RBM has {self.n_visible} visible units, X has {t.shape[1]} columns", field="X")
        return t, was_numpy


_CHUNK_ELEMENTS = 1 << 24


def effective_sparsity_cost(sparsity_cost: float, momentum: float) -> float:
    """The weight of :class:`RBM`'s sparsity term in Lee et al.'s (2008) separate-step form:
    added to the velocity, a steady pull is amplified by the momentum's geometric series,
    ``sparsity_cost / (1 - momentum)``."""
    if not 0 <= momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
    return float(sparsity_cost) / (1.0 - float(momentum))


class TrainingState:
    """An :class:`RBM`'s parameters and velocities as one ``(n_visible + 1, n_hidden + 1)`` matrix
    each, the form its training step works on::

        theta = [[W,     b_v],        velocity = [[vel_W,     vel_b_v],
                 [b_h^T, 0  ]]                    [vel_b_h^T, 0      ]]

    With the visible rows augmented by a column of ones, ``[v 1] theta[:, :H]`` is ``b_h + v W``;
    with the hidden rows augmented, ``[h 1] theta[:V, :]^T`` is ``b_v + h W^T``; and
    ``[v 1]^T [h 1]`` holds ``sum v h^T``, ``sum v`` (last column), ``sum h`` (last row) and the
    batch size (the corner, which the phases' difference cancels and nothing reads). So every
    conditional is one matmul written into a preallocated buffer and every CD statistic comes from
    two matmuls into the velocity. ``W``, ``b_v``, ``b_h``, ``vel_W``, ``vel_b_v``, ``vel_b_h`` are
    views of the two matrices. Built from the model (a copy); :meth:`store` writes it back.
    """

    def __init__(self, rbm: "RBM"):
        V, H = rbm.n_visible, rbm.n_hidden
        self.n_visible, self.n_hidden, self.bernoulli = V, H, rbm.visible == "bernoulli"
        kw = dict(device=rbm.W.device, dtype=rbm.W.dtype)
        self.theta = torch.zeros(V + 1, H + 1, **kw)
        self.velocity = torch.zeros(V + 1, H + 1, **kw)
        self.W, self.b_v, self.b_h = self.theta[:V, :H], self.theta[:V, H], self.theta[V, :H]
        self.vel_W, self.vel_b_v, self.vel_b_h = self.velocity[:V, :H], self.velocity[:V, H], self.velocity[V, :H]
        self.to_hidden, self.to_visible = self.theta[:, :H], self.theta[:V, :].t()  # (V+1, H), (H+1, V)
        #: made under autocast (``fit``'s ``autocast_dtype``): the matmuls then run in its low precision
        self.autocast = torch.is_autocast_enabled(kw["device"].type)
        #: summed squared reconstruction error of the steps so far, shape (1,) (no host sync)
        self.squared_error = torch.zeros(1, **kw)
        self._rows: dict[int, _Rows] = {}
        for mine, model in zip(self._views(), _trained_tensors(rbm)):
            mine.copy_(model)

    def _views(self):
        return self.W, self.b_v, self.b_h, self.vel_W, self.vel_b_v, self.vel_b_h

    def store(self, rbm: "RBM") -> None:
        """Write the parameters and velocities back into ``rbm``."""
        for mine, model in zip(self._views(), _trained_tensors(rbm)):
            model.copy_(mine)

    def augment(self, v: torch.Tensor) -> torch.Tensor:
        """``[v 1]``: the rows ``v`` (N, n_visible) with a column of ones appended."""
        out = torch.ones(v.shape[0], self.n_visible + 1, device=self.theta.device, dtype=self.theta.dtype)
        out[:, :self.n_visible] = v
        return out

    def rows(self, n: int) -> "_Rows":
        """The buffers of a batch of ``n`` rows (made once per batch size)."""
        if n not in self._rows:
            self._rows[n] = _Rows(n, self.n_visible, self.n_hidden, self.theta.device, self.theta.dtype)
        return self._rows[n]

    def hidden(self, v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out = p(h=1 | v) = sigmoid([v 1] theta[:, :H])`` from augmented rows ``v``; returns ``out``."""
        return self._matmul_into(v, self.to_hidden, out).sigmoid_()

    def visible(self, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out = E[v | h]`` from augmented hidden rows ``h``; returns ``out``."""
        self._matmul_into(h, self.to_visible, out)
        return out.sigmoid_() if self.bernoulli else out

    def _matmul_into(self, x: torch.Tensor, w: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out = x @ w`` into a view of a buffer: one BLAS call with ``out=``, or the product then a
        copy under autocast (``out=`` would bypass its low precision) and when compiling (Dynamo
        breaks the graph at a non-contiguous ``out=``)."""
        if self.autocast or torch.compiler.is_compiling():
            return out.copy_(x @ w)
        return torch.mm(x, w, out=out)

    def accumulate(self, momentum: float, alpha: float, positive, negative) -> None:
        """``velocity = momentum * velocity + alpha * (x_pos^T y_pos - x_neg^T y_neg)`` in place,
        ``positive = (x_pos, y_pos)``, ``negative = (x_neg, y_neg)`` augmented row batches.

        Under autocast it is one low-precision matmul over the stacked batch ``[pos; neg]`` (the
        difference of the two phases is accumulated inside the matmul, then rounded once); the
        bias terms (the ones column and row) come out of it too, so in float16 a bias increment far
        below the velocity's magnitude can round away (bfloat16 keeps float32's range)."""
        (x_pos, y_pos), (x_neg, y_neg) = positive, negative
        if self.autocast:
            low = torch.get_autocast_dtype(self.theta.device.type)
            xs = torch.cat([x_pos * alpha, x_neg * -alpha]).to(low)
            ys = torch.cat([y_pos, y_neg]).to(low)
            self.velocity.mul_(momentum).add_(xs.t() @ ys)
        else:
            self.velocity.addmm_(x_pos.t(), y_pos, beta=momentum, alpha=alpha)
            self.velocity.addmm_(x_neg.t(), y_neg, alpha=-alpha)


class _Rows:
    """Buffers of one batch size for :class:`TrainingState`: the augmented hidden and visible
    states (``*_aug``, a column of ones last) and views of their units (no ``_aug``)."""

    def __init__(self, n: int, n_visible: int, n_hidden: int, device, dtype):
        for name, width in (("h0", n_hidden), ("h_state", n_hidden), ("h_neg", n_hidden), ("v1", n_visible),
                            ("v_neg", n_visible)):
            aug = torch.ones(n, width + 1, device=device, dtype=dtype)
            setattr(self, name + "_aug", aug)
            setattr(self, name, aug[:, :width])
        self.diff = torch.empty(n, n_visible + 1, device=device, dtype=dtype)  # reconstruction minus data
        self.diff_row, self.diff_flat = self.diff.view(1, -1), self.diff.view(-1)


def _less_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``out = (a < b)`` as 0/1 in ``out``'s dtype, written into a view of a state buffer: one
    kernel with ``out=`` in eager mode, a copy when compiling (Dynamo breaks the graph at an
    ``out=`` tensor that is not contiguous)."""
    if torch.compiler.is_compiling():
        out.copy_(a < b)
    else:
        torch.lt(a, b, out=out)


def _trained_tensors(rbm: "RBM"):
    return rbm.W, rbm.b_v, rbm.b_h, rbm.vel_W, rbm.vel_b_v, rbm.vel_b_h


def bernoulli_log_pseudo_likelihood(X: torch.Tensor, W: torch.Tensor, b_v: torch.Tensor, b_h: torch.Tensor,
                                    chunk: int = 256) -> torch.Tensor:
    """Exact log pseudo-likelihood ``sum_i log p(x_i | x_-i)`` of each binary row of ``X``.

    ``log p(x_i | x_-i) = -softplus(F(x) - F(x with bit i flipped))`` for the Bernoulli RBM with
    weights ``W`` (D, H) and biases ``b_v`` (D,), ``b_h`` (H,). scikit-learn's ``score_samples``
    is a one-random-bit estimate of the same quantity (times D); this is its exact value, so two
    models can be compared without sampling noise. Shape (N,).
    """
    out = []
    for start in range(0, X.shape[0], chunk):
        x = X[start:start + chunk]
        a = torch.addmm(b_h, x, W)  # (n, H)
        flip = 1.0 - 2.0 * x  # change of each bit when flipped, (n, D)
        # F(x) - F(x^i) = flip_i b_i + sum_j [softplus(a_j + flip_i W_ij) - softplus(a_j)]
        a_flipped = a[:, None, :] + flip[:, :, None] * W[None, :, :]  # (n, D, H)
        delta = flip * b_v + (F.softplus(a_flipped) - F.softplus(a)[:, None, :]).sum(-1)
        out.append(-F.softplus(delta).sum(1))
    return torch.cat(out)
