"""Options of a training run: :class:`TrainConfig`, the learning-rate schedule :func:`lr_at`, and
:class:`TrainingDiverged`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..losses import ALL_WEIGHTINGS

PRECISIONS = ("fp32", "bf16", "fp16")
LR_DECAYS = ("none", "cosine")

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
    skipped (no update, no EMA) and counted; ``max_bad_steps`` of them in a row stop the run (decided on the
    device: the run stops at the next log or checkpoint step, ``log_every`` steps late at most, with nothing
    updated after the divergence).
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
        if self.weighting not in ALL_WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose one of {', '.join(ALL_WEIGHTINGS)}")
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
