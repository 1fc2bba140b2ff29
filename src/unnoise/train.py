"""Training loop: AdamW, EMA, warm-up + cosine LR, mixed precision, gradient accumulation,
data-parallel training over processes, crash-safe checkpoints and exact resume.

One loop trains every kind of model: a module and an *objective* that maps this rank's rows
``(x0, sigma, noise, cond)`` to per-example losses (:class:`DenoisingObjective` for a denoiser, the
default; :class:`unnoise.guidance.ClassifierObjective`; :class:`unnoise.nets.autoencoder.AutoencoderObjective`).
Everything below (randomness, data path, checkpoints, resume) is the same for all of them.

How randomness is organised (this is what makes 1 and N processes, and resumed and
uninterrupted runs, agree):

* ``batch_size`` is the *global* batch of one optimizer step (all processes, all accumulation
  micro-batches together).
* Every process draws the *whole* global batch's randomness from identically seeded generators:
  the example indices from an epoch permutation (seeded by ``(seed, epoch)``, so the data position
  is just ``(epoch, offset)``), sigmas, condition dropout and augmentation draws from ``generator`` (CPU) and the noise from
  ``noise_generator`` (on the training device).  Rank ``r`` of ``W`` then takes rows
  ``[r B/W, (r+1) B/W)`` and splits them into ``grad_accum`` micro-batches.  DDP averages the
  gradients, so the update equals the single-process update on the same global batch up to
  float summation order.  Only the local rows of the data are gathered; drawing the noise for the
  whole global batch costs one RNG call of ``B`` examples per process, small next to the network.
* A checkpoint stores all generator states (as byte tensors), the global torch RNG of every rank
  (used by dropout), the data position, the optimizer moments and the step, so ``--resume``
  continues bitwise identically on the same hardware.

Data loading: the data are a map-style dataset whose items are ``(x0, cond)`` (``cond`` a dict of
tensors, ``{}`` when unconditional; an in-memory tensor is wrapped in
:class:`unnoise.data.memory.TensorDataset`).  Batch ``k`` is a pure function of ``k``: it holds
the examples at global positions ``[k B, (k+1) B)`` of the concatenated epoch permutations, so
the data position is derived from the step, prefetching cannot disturb it, and a resumed run
reads exactly the batches an uninterrupted one would (also mid-epoch).  Each rank reads only its
own rows of every batch.  In-memory tensors are gathered directly (on the GPU when they fit);
other datasets are read by a ``torch.utils.data.DataLoader`` with ``num_workers`` worker
processes (decoding happens there), pinned memory and prefetch on CUDA.
"""
from __future__ import annotations

import contextlib
import importlib
import copy
import json
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import checkpoint
from . import distributed as dist
from .data import check_finite
from .data.datasets import unnormalise
from .data.memory import TensorDataset
from .denoiser import Denoiser
from .losses import WEIGHTINGS, denoising_loss
from .plotting import plot_loss, plot_points
from .samplers import sample

PRECISIONS = ("fp32", "bf16", "fp16")
LR_DECAYS = ("none", "cosine")


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other name (``cpu``, ``cuda:1``, ``mps``) as given.

    Raises one-line ValueError for a name torch does not know (``tpu``), a device type this torch
    build or machine does not have, or a CUDA index beyond the devices present."""
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"device must be a name such as 'cpu' or 'cuda:0', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} requested but this machine has {count} CUDA device(s) "
                             f"(cuda:0 to cuda:{count - 1}); choose one of them")
        return dev
    backend = getattr(torch, dev.type, None) if dev.type != "mps" else getattr(torch.backends, "mps", None)
    available = getattr(backend, "is_available", None)
    if available is None or dev.type in ("meta", "lazy"):
        raise ValueError(f"device type {dev.type!r} is not supported for training or sampling; use auto, cpu, "
                         "cuda, cuda:N or mps")
    if not available():
        raise ValueError(f"device {device!r} requested but it is not available on this machine; use --device cpu")
    return dev


class TrainingDiverged(FloatingPointError, ValueError):
    """Too many consecutive steps with a NaN/inf loss or gradient."""


@dataclass
class TrainConfig:
    """Options of a training run (all stored in the checkpoint's config.json).

    ``batch_size`` is the global batch per optimizer step: it is split evenly over the processes
    and then over ``grad_accum`` micro-batches.  The learning rate rises linearly over ``warmup``
    steps, then stays at ``lr`` (``lr_decay="none"``) or follows a cosine down to ``min_lr`` at
    ``steps`` (``"cosine"``).  ``precision``: ``fp32``, ``bf16`` (autocast, CPU or CUDA) or
    ``fp16`` (autocast + gradient scaling, CUDA only).  A step whose loss or gradient is NaN/inf is
    skipped (no update, no EMA) and counted; ``max_bad_steps`` of them in a row stop the run.
    ``checkpoint_every``/``sample_every``: steps between training checkpoints / preview samples
    (0 = only at the end / never); the newest ``keep_checkpoints`` step directories are kept (0 = all).
    ``resume_from``: a run directory (or ``step_*`` directory) whose newest checkpoint the trainer
    loads on construction (see :meth:`Trainer.resume`).  ``cond_dropout``: probability that an
    example's conditions are replaced by their null values (the denoiser's
    :meth:`~unnoise.denoiser.Denoiser.null_cond`), so one model learns the unconditional denoiser
    too (classifier-free guidance).  ``num_workers``: DataLoader worker processes for datasets
    that are not in memory (-1: 2 on CPU, 4 on CUDA; 0: read in the training process).
    """

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    weighting: str = "uniform"
    min_snr_gamma: float = 5.0
    cond_dropout: float = 0.1
    warmup: int = 0
    seed: int = 0
    log_every: int = 25
    checkpoint_every: int = 0
    device: str = "auto"
    extra: dict = field(default_factory=dict)
    lr_decay: str = "none"
    min_lr: float = 0.0
    grad_accum: int = 1
    precision: str = "fp32"
    compile: bool = False
    compile_backend: str = "inductor"
    keep_checkpoints: int = 3
    max_bad_steps: int = 10
    sample_every: int = 0
    tensorboard: bool = False
    resume_from: str = ""
    num_workers: int = -1

    def validate(self):
        """Raise ValueError naming the first option that is out of range."""
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")
        if self.lr <= 0:
            raise ValueError(f"learning rate must be positive, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
        if not 0 <= self.cond_dropout < 1:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.num_workers < -1:
            raise ValueError(f"num_workers must be >= 0 (or -1 for automatic), got {self.num_workers}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"unknown lr_decay {self.lr_decay!r}; choose one of {', '.join(LR_DECAYS)}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr}")
        for name in ("grad_accum", "max_bad_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("warmup", "checkpoint_every", "keep_checkpoints", "sample_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def lr_at(config: TrainConfig, step: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then constant or cosine.

    warm-up: ``lr (step + 1) / warmup`` for ``step < warmup``; cosine: with
    ``t = (step - warmup) / (steps - warmup)``, ``min_lr + (lr - min_lr) (1 + cos(pi t)) / 2``.
    """
    w = config.warmup
    if w and step < w:
        return config.lr * (step + 1) / w
    if config.lr_decay == "cosine":
        t = min(1.0, (step - w) / max(1, config.steps - w))
        return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
    return config.lr


class EpochSampler:
    """Example indices without replacement, epoch after epoch.  The permutation of epoch ``e`` is
    ``randperm(N)`` under seed ``(seed, e)`` and global position ``p`` holds example
    ``perm(p // N)[p % N]``, so every batch is a pure function of its position."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._perms: dict[int, torch.Tensor] = {}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (2**63))
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}  # keep at most two
            self._perms[epoch] = torch.randperm(self.n, generator=g)
        return self._perms[epoch]

    def indices(self, start: int, k: int) -> torch.Tensor:
        """The ``(k,)`` examples at global positions ``[start, start + k)``."""
        parts, pos = [], start
        while pos < start + k:
            epoch, offset = divmod(pos, self.n)
            chunk = self._permutation(epoch)[offset:offset + start + k - pos]
            parts.append(chunk)
            pos += len(chunk)
        return torch.cat(parts)

    def state(self, position: int) -> dict:
        epoch, offset = divmod(position, self.n)
        return {"epoch": epoch, "offset": offset, "num_examples": self.n}

    def check_state(self, state: dict) -> None:
        if state.get("num_examples") != self.n:
            raise ValueError(f"the checkpoint was trained on {state.get('num_examples')} examples but this run has "
                             f"{self.n}; resume with the same data")


class _RankBatches(torch.utils.data.Sampler):
    """Batch sampler for the DataLoader: this rank's rows of global batch ``start``, ``start + 1``, ..."""

    def __init__(self, sampler: EpochSampler, batch_size: int, rows: slice, start: int):
        self.sampler, self.batch_size, self.rows, self.start = sampler, batch_size, rows, start

    def __iter__(self):
        step = self.start
        while True:
            yield self.sampler.indices(step * self.batch_size, self.batch_size)[self.rows].tolist()
            step += 1


class DenoisingObjective:
    """The denoising loss of a :class:`Denoiser` (:func:`unnoise.losses.denoising_loss` per example),
    the Trainer's default objective.

    An *objective* is what the Trainer optimises: ``objective(model, x0, sigma, noise, cond)`` returns
    the ``(B,)`` per-example losses, or a dict of ``(B,)`` per-example values with key ``"loss"`` (the
    others, e.g. an accuracy, are averaged over the global batch and logged).  ``x0``/``cond`` are this
    rank's rows of the batch, ``sigma`` ``(B,)`` is drawn from the schedule's training distribution
    (zeros without a schedule) and ``noise`` is standard normal of shape ``(B, *noise_shape(model,
    example_shape))``.  ``kind`` names the run kind written to ``config.json`` (None here: a diffusion
    run's kind, ``images``, ``text``, ..., comes with the Trainer's ``info``); ``describe()`` the
    objective's settings (stored under ``"objective"``).  The classifier
    (:class:`unnoise.guidance.ClassifierObjective`) and the autoencoder
    (:class:`unnoise.nets.autoencoder.AutoencoderObjective`) train through the same loop this way.
    """

    kind = None

    def __init__(self, weighting: str = "uniform", min_snr_gamma: float = 5.0):
        self.weighting, self.min_snr_gamma = weighting, float(min_snr_gamma)

    def __call__(self, model, x0, sigma, noise, cond):
        return denoising_loss(model, x0, sigma, self.weighting, cond=cond, noise=noise,
                              min_snr_gamma=self.min_snr_gamma, reduce=False)

    def noise_shape(self, model, example_shape) -> tuple:
        """Shape of one example's noise draw: the example's own."""
        return tuple(example_shape)

    def describe(self) -> dict:
        """JSON settings of the objective."""
        return {"name": "denoising", "weighting": self.weighting, "min_snr_gamma": self.min_snr_gamma}


class _LossModule(torch.nn.Module):
    """The trained module plus its objective in one ``forward``, so DDP and torch.compile see a single module."""

    def __init__(self, module: torch.nn.Module, objective):
        super().__init__()
        self.module, self.objective = module, objective

    def forward(self, x0, sigma, noise, cond):
        out = self.objective(self.module, x0, sigma, noise, cond)
        return out if isinstance(out, dict) else {"loss": out}


_EXCEPTIONS = {"PermissionError": PermissionError, "FileNotFoundError": FileNotFoundError,
               "ValueError": ValueError, "OSError": OSError}


def _on_rank0(fn, device):
    """Run ``fn`` on rank 0 only; if it raises, every rank raises the same kind of error."""
    err = None
    if dist.is_main():
        try:
            fn()
        except (OSError, ValueError) as e:
            err = e
    msg = dist.broadcast_text("" if err is None else f"{type(err).__name__}\0{err}", device)
    if err is not None:
        raise err
    if msg:
        name, text = msg.split("\0", 1)
        raise _EXCEPTIONS.get(name, RuntimeError)(f"(rank 0) {text}")


class Trainer:
    """Trains a model on a dataset of ``(x0, cond)`` examples (or an in-memory tensor) by an objective:
    a :class:`Denoiser` by the denoising loss (the default), or any registered network with its own
    objective (the noisy-input classifier, the autoencoder; see :class:`DenoisingObjective`).

    The same code runs in one process or in N processes started by ``torchrun`` (one per device;
    gloo on CPU, NCCL on CUDA): only rank 0 prints and writes files, losses and metrics are
    averaged over ranks.

    Args:
        denoiser: the model trained: a :class:`Denoiser`, or any module registered in
            :mod:`unnoise.nets` (with a ``config``) when ``objective`` is given.
        schedule: gives the training sigmas (may be None for an objective that needs none).
        data: a map-style ``torch.utils.data.Dataset`` whose items are ``(x0, cond)`` in model units
            (``cond`` a dict of tensors: ``{"label": ...}``, ``{"context": ..., "context_mask": ...}``,
            ``{"concat": low_res}``, ``{}``), or an ``(N, ...)`` float tensor (already normalised).
            Conditions are replaced by the denoiser's null values with probability
            ``config.cond_dropout`` per example, so the model also learns the unconditional denoiser.
        run_dir: where checkpoints, ``metrics.jsonl`` and ``loss.png`` go (None: nothing written).
        info: extra JSON stored in the checkpoint config (e.g. data statistics).
        augment: optional ``augment(x0, u) -> x0`` applied to each rank's rows of every batch, with
            ``u`` one uniform number in [0, 1) per example, drawn for the whole global batch, so runs on
            1 and N processes augment identically (e.g. :func:`unnoise.data.images.flip_rows`).
        objective: what is minimised (default: :class:`DenoisingObjective` with the config's
            weighting); its ``kind`` is written to ``config.json`` as ``"kind"``.

    Checkpoints have one format for every kind: ``config.json`` (``"kind"``, the network's name and
    config, the denoiser and schedule where there are, ``info``) + ``model.safetensors`` (``model.*``
    and ``ema.*``) + ``checkpoints/step_*/``.
    """

    def __init__(self, denoiser: Denoiser, schedule, data, config: TrainConfig | None = None,
                 run_dir: str | None = None, info: dict | None = None, augment=None, objective=None):
        self.config = cfg = config or TrainConfig()
        if objective is None:
            if not isinstance(denoiser, Denoiser):
                raise ValueError(f"a {type(denoiser).__name__} is not a Denoiser: pass the objective it is trained "
                                 "by (e.g. unnoise.guidance.ClassifierObjective())")
            objective = DenoisingObjective(cfg.weighting, cfg.min_snr_gamma)
        self.objective = objective
        self.kind = getattr(objective, "kind", None)  # None: a diffusion run (its kind is in ``info``)
        cfg.validate()
        if isinstance(data, torch.Tensor):
            data = TensorDataset(data)
        if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
            raise ValueError("training data must be a tensor (N, ...) or a map-style dataset of (x0, cond) items")
        if len(data) < 1:
            raise ValueError("the training data set is empty")
        x_first, cond_first = data[0]
        if not isinstance(cond_first, dict):
            raise ValueError(f"dataset items must be (x0, cond) with cond a dict of tensors, got {type(cond_first).__name__}")
        self.example_shape = tuple(x_first.shape)
        shape_fn = getattr(objective, "noise_shape", None)
        self.noise_shape = tuple(shape_fn(denoiser, self.example_shape)) if shape_fn else self.example_shape
        if isinstance(data, TensorDataset):
            check_finite(data.x, "training data")
        device = resolve_device(cfg.device)
        if cfg.precision == "fp16" and device.type != "cuda":
            raise ValueError("--precision fp16 needs a CUDA device (gradient scaling); use bf16 on CPU")
        if cfg.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("this GPU does not support bf16; use --precision fp16")
        if cfg.tensorboard:
            try:
                importlib.import_module("torch.utils.tensorboard")
            except ImportError:
                raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.device = dist.setup(device)
        self.rank, self.world_size = dist.rank(), dist.world_size()
        per_rank = cfg.batch_size // self.world_size
        if cfg.batch_size % (self.world_size * cfg.grad_accum):
            raise ValueError(f"batch size {cfg.batch_size} must be divisible by processes x grad_accum = "
                             f"{self.world_size} x {cfg.grad_accum}; choose a multiple of "
                             f"{self.world_size * cfg.grad_accum}")
        self.local_batch, self.micro_batch = per_rank, per_rank // cfg.grad_accum

        self.denoiser = denoiser.to(self.device)
        model = _LossModule(self.denoiser, objective)
        if dist.active():
            # DDP broadcasts rank 0's weights at construction, so every rank starts identical
            model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:
            model = torch.compile(model, backend=cfg.compile_backend)
        self.model = model
        self.ema = copy.deepcopy(self.denoiser).eval().requires_grad_(False)
        self.schedule = schedule
        self.data = self._place_data(data)
        self.run_dir = run_dir
        self.info = info or {}
        self.augment = augment
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.noise_generator = torch.Generator(self.device).manual_seed(cfg.seed + 1_000_003)
        self.sampler = EpochSampler(len(data), cfg.seed)
        self._loader = None  # the DataLoader iterator of a streamed dataset (made on first use)
        self.opt = torch.optim.AdamW(self.denoiser.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.step_count = 0
        self.skipped_steps = 0
        self.bad_in_row = 0
        self.loss_smooth = None
        self.last_grad_norm = float("nan")
        self.last_metrics: dict[str, float] = {}  # the objective's extra per-example values, batch means
        self.history: list[dict] = []
        self.stopped_by: str | None = None  # "SIGINT"/"SIGTERM" when fit() stopped early on a signal
        self.sample_fn = None  # optional sample_fn(trainer, path): preview writer for non-vector data
        self._stop_signal = None
        self._tb = None
        if run_dir:
            n_params = sum(p.numel() for p in self.denoiser.parameters())
            need = checkpoint.estimate_checkpoint_bytes(n_params) * (cfg.keep_checkpoints + 1)
            _on_rank0(lambda: checkpoint.check_run_dir(run_dir, need), self.device)
        if cfg.resume_from:
            self.resume(cfg.resume_from)

    # ------------------------------------------------------------------ data
    def _place_data(self, data):
        if not isinstance(data, TensorDataset) or self.device.type != "cuda":
            return data
        free, _ = torch.cuda.mem_get_info(self.device)
        if data.nbytes < free // 2:
            return data.to(self.device)
        return data.pin_memory()  # too big for the GPU: gather on the host, copy asynchronously

    @property
    def rows(self) -> slice:
        """This rank's rows of every global batch."""
        return slice(self.rank * self.local_batch, (self.rank + 1) * self.local_batch)

    def _read(self):
        """This rank's ``(x0, cond)`` rows of global batch ``step_count``, on the training device."""
        if isinstance(self.data, TensorDataset):
            idx = self.sampler.indices(self.step_count * self.config.batch_size, self.config.batch_size)[self.rows]
            x0, cond = self.data.gather(idx)
        else:
            if self._loader is None or self._loader[0] != self.step_count:
                self._loader = [self.step_count, iter(self._data_loader(self.step_count))]
            x0, cond = next(self._loader[1])
            self._loader[0] += 1
        non_blocking = self.device.type == "cuda"
        x0 = x0.to(self.device, non_blocking=non_blocking)
        cond = {k: v.to(self.device, non_blocking=non_blocking) for k, v in cond.items()}
        if not torch.isfinite(x0).all():
            raise ValueError(f"training batch {self.step_count} contains NaN or inf values; check the data "
                             "(unnoise never trains on non-finite inputs)")
        return x0, cond

    def _data_loader(self, start: int) -> torch.utils.data.DataLoader:
        workers = self.config.num_workers
        if workers < 0:
            workers = 4 if self.device.type == "cuda" else 2
        batches = _RankBatches(self.sampler, self.config.batch_size, self.rows, start)
        return torch.utils.data.DataLoader(self.data, batch_sampler=batches, num_workers=workers,
                                           pin_memory=self.device.type == "cuda",
                                           prefetch_factor=4 if workers else None,
                                           persistent_workers=False)

    def _batch(self):
        """This rank's rows of the next global batch: ``(x0, sigma, noise, cond)``, each ``(B/W, ...)``.

        All randomness is drawn for the whole global batch on every rank (so 1 and N processes agree)."""
        cfg, n, rows = self.config, self.config.batch_size, self.rows
        x0, cond = self._read()
        sigma = self.schedule.sample_training_sigmas(n, self.generator) if self.schedule is not None \
            else torch.zeros(n)
        # drawn whether used or not, so the random streams do not depend on the data or the hooks
        drop = torch.rand(n, generator=self.generator) < cfg.cond_dropout
        u = torch.rand(n, generator=self.generator)
        noise = torch.randn((n, *self.noise_shape), generator=self.noise_generator, device=self.device,
                            dtype=x0.dtype)
        if cfg.cond_dropout > 0 and any(k in cond for k in getattr(self.denoiser, "nulls", {})):
            cond = self.denoiser.null_cond(cond, drop[rows])
        if self.augment is not None:
            x0 = self.augment(x0, u[rows].to(self.device))
        return x0, sigma[rows].to(self.device), noise[rows], cond

    # ------------------------------------------------------------------ one step
    def _lr(self) -> float:
        return lr_at(self.config, self.step_count)

    def _autocast(self):
        if self.config.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def step(self) -> float:
        """One optimizer step on the next global batch; returns its loss averaged over all ranks.

        A NaN/inf loss or gradient skips the update (and the EMA), counted in ``skipped_steps``.
        """
        cfg = self.config
        self.denoiser.train()
        lr = self._lr()
        for group in self.opt.param_groups:
            group["lr"] = lr
        x0, sigma, noise, cond = self._batch()
        self.opt.zero_grad(set_to_none=True)
        sums: dict[str, torch.Tensor] = {}
        m = self.micro_batch
        for i in range(cfg.grad_accum):
            rows = slice(i * m, (i + 1) * m)
            last = i == cfg.grad_accum - 1
            # gradients are all-reduced once, on the last micro-batch
            sync = contextlib.nullcontext() if last or not dist.active() else self._ddp().no_sync()
            with sync:
                with self._autocast():
                    out = self.model(x0[rows], sigma[rows], noise[rows], {k: v[rows] for k, v in cond.items()})
                loss = out["loss"].float().mean()
                self.scaler.scale(loss / cfg.grad_accum).backward()
            for key, value in out.items():
                total = value.detach().float().sum()
                sums[key] = total if key not in sums else sums[key] + total
        # one collective for the loss, the objective's metrics and "a rank was asked to stop"
        names = ["loss"] + sorted(k for k in sums if k != "loss")
        stats = torch.stack([sums[k] for k in names]
                            + [torch.tensor(float(self._stop_signal is not None), device=self.device)])
        dist.all_reduce_sum(stats)
        values = (stats[:-1] / cfg.batch_size).tolist()
        loss_value = values[0]
        self.last_metrics = dict(zip(names[1:], values[1:]))
        self._stop_agreed = bool(stats[-1] > 0)

        self.scaler.unscale_(self.opt)
        grads = [p.grad for p in self.denoiser.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        self.last_grad_norm = float(grad_norm)
        if math.isfinite(loss_value) and math.isfinite(self.last_grad_norm):
            if cfg.grad_clip:
                torch.nn.utils.clip_grads_with_norm_(self.denoiser.parameters(), cfg.grad_clip, grad_norm)
            self.scaler.step(self.opt)
            self.scaler.update()
            self._update_ema()
            self.bad_in_row = 0
        else:
            self.skipped_steps += 1
            if self.scaler.is_enabled() and math.isfinite(loss_value):
                self.scaler.update()  # an fp16 overflow: lower the scale, not a sign of divergence
            else:
                self.bad_in_row += 1
            self.opt.zero_grad(set_to_none=True)
        self.step_count += 1
        return loss_value

    def _ddp(self):
        model = self.model
        return getattr(model, "_orig_mod", model)  # unwrap torch.compile

    @torch.no_grad()
    def _update_ema(self):
        # warm-up of the decay so early EMA weights are not dominated by the random init
        decay = min(self.config.ema_decay, (1 + self.step_count) / (10 + self.step_count))
        for p_ema, p in zip(self.ema.parameters(), self.denoiser.parameters()):
            p_ema.lerp_(p, 1 - decay)
        for b_ema, b in zip(self.ema.buffers(), self.denoiser.buffers()):
            b_ema.copy_(b)

    def request_stop(self, reason: str = "request") -> None:
        """Ask :meth:`fit` to save a checkpoint and return after the current step (all ranks agree)."""
        self._stop_signal = reason

    # ------------------------------------------------------------------ the loop
    def fit(self, progress: bool = True) -> list[dict]:
        """Train until ``config.steps``; returns the logged history.

        SIGINT/SIGTERM (or :meth:`request_stop`) finish the current step, save a checkpoint and
        return early with ``stopped_by`` set.  Raises :class:`TrainingDiverged` after
        ``max_bad_steps`` consecutive non-finite steps (the last checkpoint stays as it was).
        """
        cfg = self.config
        main = dist.is_main()
        bar = tqdm(total=cfg.steps, initial=self.step_count, desc="training", disable=not (progress and main),
                   dynamic_ncols=True)
        handlers = self._install_signal_handlers()
        t_last, seen = time.perf_counter(), 0
        self._stop_agreed = False
        try:
            while self.step_count < cfg.steps:
                loss = self.step()
                if self.bad_in_row >= cfg.max_bad_steps:
                    last = checkpoint.latest_checkpoint(self.run_dir) if self.run_dir and \
                        checkpoint.list_step_dirs(self.run_dir) else "none written"
                    raise TrainingDiverged(
                        f"{self.bad_in_row} steps in a row had a NaN/inf loss or gradient (step {self.step_count}, "
                        f"{self.skipped_steps} skipped in all); stopping without saving. Last good checkpoint: "
                        f"{last}. Lower the learning rate, check the data, or raise --max-bad-steps")
                if math.isfinite(loss):
                    self.loss_smooth = loss if self.loss_smooth is None else 0.98 * self.loss_smooth + 0.02 * loss
                seen += cfg.batch_size
                bar.update(1)
                if self.step_count % cfg.log_every == 0 or self.step_count == cfg.steps:
                    now = time.perf_counter()
                    rate = seen / max(now - t_last, 1e-9)
                    t_last, seen = now, 0
                    bar.set_postfix(loss=f"{self.loss_smooth if self.loss_smooth is not None else float('nan'):.4f}",
                                    ex_s=f"{rate:.0f}", skipped=self.skipped_steps)
                    self._log({"step": self.step_count, "loss": loss,
                               "loss_smooth": self.loss_smooth if self.loss_smooth is not None else float("nan"),
                               "lr": lr_at(cfg, self.step_count - 1), "grad_norm": self.last_grad_norm,
                               "examples_per_s": rate, "skipped_steps": self.skipped_steps,
                               "epoch": self.step_count * cfg.batch_size // len(self.data), **self.last_metrics})
                if self._stop_agreed:
                    self.stopped_by = self._stop_signal or "another rank"
                    self.save()
                    break
                if cfg.checkpoint_every and self.step_count % cfg.checkpoint_every == 0 and self.step_count < cfg.steps:
                    self.save()
                if cfg.sample_every and self.step_count % cfg.sample_every == 0:
                    self.write_samples()
            else:
                self.save()
        finally:
            # Restore the previous handlers with both signals blocked, so one arriving half way
            # waits and then reaches the handler it was meant for; a signal this trainer received
            # but had no step left to act on (e.g. during the final save) is passed on to it too.
            blocked = hasattr(signal, "pthread_sigmask") and bool(handlers)
            if blocked:
                mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(handlers))
            try:
                for sig, old in handlers.items():
                    signal.signal(sig, old)
                unhandled = [] if self._stop_agreed else self._signals_received
                self._signals_received = []
                for signum in dict.fromkeys(unhandled):  # once each
                    if callable(handlers.get(signum)) or handlers.get(signum) == signal.SIG_DFL:
                        signal.raise_signal(signum)  # pending until unblocked below
            finally:
                if blocked:
                    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            bar.close()
            if self._tb is not None:
                self._tb.flush()
        return self.history

    def _install_signal_handlers(self) -> dict:
        """Catch SIGINT/SIGTERM for a clean stop; returns ``{signal: previous handler}`` to restore.

        A signal that is ignored (``SIG_IGN``, e.g. SIGINT of a command started with ``&`` from a
        script, which the shell makes immune to Ctrl-C) stays ignored, and one whose handler was
        not installed from Python (``getsignal`` is None, so it could not be restored) is left as it is.
        """
        self._signals_received = []
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # second Ctrl-C: stop now (files are written atomically)
            self._signals_received.append(signum)
            self._stop_signal = signal.Signals(signum).name

        handlers = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(sig)
            if current is None or current == signal.SIG_IGN:
                continue
            handlers[sig] = signal.signal(sig, handler)
        return handlers

    def _log(self, record: dict) -> None:
        self.history.append(record)
        if not (self.run_dir and dist.is_main()):
            return
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in record.items()}
        with open(os.path.join(self.run_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(clean) + "\n")
        if self.config.tensorboard:
            if self._tb is None:
                # optional dependency (the tensorboard package, checked at start), only with --tensorboard
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(os.path.join(self.run_dir, "tensorboard"))
            for k, v in clean.items():
                if k != "step" and v is not None:
                    self._tb.add_scalar(f"train/{k}", v, record["step"])

    # ------------------------------------------------------------------ previews
    @torch.no_grad()
    def write_samples(self, n: int = 1000, steps: int = 50) -> str | None:
        """Write ``run_dir/samples/step_<step>.png``: EMA samples (DDIM, fixed starting noise) beside
        the data for vector data, or whatever ``sample_fn(trainer, path)`` draws.  Rank 0 only."""
        if not (self.run_dir and dist.is_main()):
            return None
        out_dir = os.path.join(self.run_dir, "samples")
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, f"step_{self.step_count:08d}.png")
        if self.sample_fn is not None:
            self.sample_fn(self, path)
            return path
        if self.kind is not None or len(self.example_shape) != 1 or self.example_shape[0] < 2:
            return None
        n = min(n, len(self.data))
        g = torch.Generator().manual_seed(self.config.seed + 7)
        sigmas = self.schedule.sampling_sigmas(steps)
        x = (torch.randn((n, *self.example_shape), generator=g) * sigmas[0]).to(self.device)
        out = sample(self.ema, x, sigmas, sampler="ddim", generator=g).cpu()
        stats = self.info.get("data", {}).get("normalization") if isinstance(self.info.get("data"), dict) else None
        ref = torch.stack([self.data[int(i)][0] for i in torch.randperm(len(self.data), generator=g)[:n]]).cpu()
        plot_points({"data": unnormalise(ref, stats), f"EMA samples, step {self.step_count}": unnormalise(out, stats)},
                    path)
        return path

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> tuple[dict, dict]:
        """Everything beyond the weights needed to continue exactly: ``(tensors, json)``."""
        tensors: dict[str, torch.Tensor] = {}
        opt_json = checkpoint.flatten_state(self.opt.state_dict(), tensors, "optim")
        scaler_json = checkpoint.flatten_state(self.scaler.state_dict(), tensors, "scaler")
        tensors["rng.generator"] = self.generator.get_state()
        tensors["rng.noise"] = self.noise_generator.get_state()
        # dropout draws from the global RNG of each rank: keep every rank's
        for r, s in enumerate(dist.gather_bytes(torch.get_rng_state(), self.device)):
            tensors[f"rng.torch.rank{r}"] = s
        if self.device.type == "cuda":
            for r, s in enumerate(dist.gather_bytes(torch.cuda.get_rng_state(self.device), self.device)):
                tensors[f"rng.cuda.rank{r}"] = s
        meta = {"step": self.step_count, "data": self.sampler.state(self.step_count * self.config.batch_size),
                "batch_size": self.config.batch_size, "skipped_steps": self.skipped_steps,
                "bad_in_row": self.bad_in_row, "loss_smooth": self.loss_smooth, "world_size": self.world_size,
                "device_type": self.device.type, "lr": self._lr(), "optimizer": opt_json, "scaler": scaler_json}
        return tensors, meta

    def _check_finite_weights(self):
        for name, module in (("weights", self.denoiser), ("EMA weights", self.ema)):
            for pname, p in module.named_parameters():
                if not torch.isfinite(p).all():
                    raise FloatingPointError(f"refusing to write a checkpoint: {name} {pname!r} contain NaN/inf "
                                             f"at step {self.step_count}")

    def save(self):
        """Write a training checkpoint (``run_dir/checkpoints/step_*``, ``latest``), the top-level
        ``config.json``/``model.safetensors`` and the loss curve.  All ranks must call it; rank 0 writes.

        A failed write (e.g. disk full) raises ``OSError`` and leaves the previous checkpoint intact.
        """
        if not self.run_dir:
            return
        self._check_finite_weights()
        tensors, meta = self._state()  # a collective: every rank takes part
        info = dict(self.info) if self.kind is None else {"kind": self.kind, **self.info}
        describe = getattr(self.objective, "describe", None)
        if describe is not None:
            info["objective"] = describe()
        info["train"] = {k: v for k, v in asdict(self.config).items()}
        info["step"] = self.step_count

        def write():
            try:
                checkpoint.save_training_checkpoint(self.run_dir, self.step_count, self.denoiser, self.schedule,
                                                    self.ema, info, tensors, meta, keep=self.config.keep_checkpoints)
            except OSError as err:
                prev = checkpoint.list_step_dirs(self.run_dir)
                kept = f"the previous checkpoint {prev[-1][1]} is intact" if prev else "no earlier checkpoint exists"
                raise OSError(err.errno, f"could not write the checkpoint of step {self.step_count} to "
                                         f"{self.run_dir!r} ({err.strerror or err}); {kept}") from None
            if self.history:
                plot_loss(self.history, os.path.join(self.run_dir, "loss.png"))
        _on_rank0(write, self.device)

    def resume(self, source: str) -> str:
        """Load the newest complete checkpoint of run directory ``source`` (or a ``step_*``
        directory) into this trainer: weights, EMA, optimizer, scaler, RNG states, data position,
        step and logged history.  Returns the checkpoint path.  Raises ``ValueError`` naming the
        file when it is corrupt or belongs to a different model."""
        is_step_dir = os.path.exists(os.path.join(source, checkpoint.STATE_NAME))
        path = source if is_step_dir else checkpoint.latest_checkpoint(source)
        config, weights, st, meta = checkpoint.load_training_checkpoint(path)
        mine = checkpoint.describe_model(self.denoiser, self.schedule)
        if self.kind is not None or config.get("kind") in checkpoint.MODEL_KINDS:
            mine["kind"] = self.kind
        for key, value in mine.items():
            if json.loads(json.dumps(value)) != config.get(key):
                raise ValueError(f"{os.path.join(path, checkpoint.CONFIG_NAME)} was written for a different model: "
                                 f"its {key} is {config.get(key)} but this run has {value}; resume with the "
                                 "same model options")
        data_info = json.loads(json.dumps(self.info.get("data"))) if "data" in self.info else None
        if data_info is not None and config.get("data") is not None and data_info != config["data"]:
            raise ValueError(f"{os.path.join(path, checkpoint.CONFIG_NAME)} was trained on different data "
                             f"(its data entry {config['data']} differs from this run's {data_info}); "
                             "resume with the same data")
        wpath = os.path.join(path, checkpoint.WEIGHTS_NAME)
        for prefix, module in (("model.", self.denoiser), ("ema.", self.ema)):
            state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
            checkpoint.load_state_checked(checkpoint._net(module), state, wpath, prefix.rstrip("."))
            if isinstance(module, Denoiser):
                checkpoint.load_nulls(module, weights, wpath)
        spath = os.path.join(path, checkpoint.STATE_NAME)
        try:
            self.opt.load_state_dict(checkpoint.unflatten_state(meta["optimizer"], st, spath))
            if self.scaler.is_enabled() and meta.get("scaler"):
                self.scaler.load_state_dict(checkpoint.unflatten_state(meta["scaler"], st, spath))
        except (KeyError, ValueError, RuntimeError) as err:
            raise ValueError(f"{spath}: optimizer state does not fit this model ({err})") from None
        self.sampler.check_state(meta["data"])
        if meta.get("batch_size", self.config.batch_size) != self.config.batch_size:
            raise ValueError(f"{path} was trained with batch size {meta['batch_size']}, this run has "
                             f"{self.config.batch_size}; resume with the same --batch-size")
        self.generator.set_state(st["rng.generator"])
        exact = meta.get("device_type") == self.device.type and meta.get("world_size") == self.world_size
        if meta.get("device_type") == self.device.type:
            self.noise_generator.set_state(st["rng.noise"])
        else:  # a generator state of another device type cannot be restored; stay deterministic
            self.noise_generator.manual_seed(self.config.seed + 1_000_003 + int(meta["step"]))
        own = st.get(f"rng.torch.rank{self.rank}")
        if own is not None:
            torch.set_rng_state(own)
        cuda = st.get(f"rng.cuda.rank{self.rank}")
        if cuda is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda, self.device)
        if not exact and dist.is_main():
            warnings.warn(f"{path} was written by {meta.get('world_size')} process(es) on {meta.get('device_type')}; "
                          f"continuing on {self.world_size} on {self.device.type} follows the same data order but is "
                          "not bitwise identical to an uninterrupted run", stacklevel=2)
        self.step_count = int(meta["step"])
        self._loader = None
        self.skipped_steps = int(meta.get("skipped_steps", 0))
        self.bad_in_row = int(meta.get("bad_in_row", 0))
        self.loss_smooth = meta.get("loss_smooth")
        run_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        self.history = self._read_history(os.path.join(run_dir, "metrics.jsonl"))
        if self.run_dir and dist.is_main():  # drop log lines written after the checkpoint
            lines = "".join(json.dumps(h) + "\n" for h in self.history)
            checkpoint.atomic_write_bytes(os.path.join(self.run_dir, "metrics.jsonl"),
                                          lambda p: checkpoint._write_text(p, lines))
        self.history = [{k: (float("nan") if v is None else v) for k, v in h.items()} for h in self.history]
        return path

    def _read_history(self, path: str) -> list[dict]:
        out = []
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        break  # a line cut short by a crash ends the usable log
                    if rec.get("step", 0) <= self.step_count:
                        out.append(rec)
        return out
