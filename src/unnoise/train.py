"""Training loop: AdamW, EMA of weights, gradient clipping, progress bar, checkpoints."""
from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from . import checkpoint
from .data import check_finite
from .denoiser import Denoiser
from .losses import WEIGHTINGS, denoising_loss


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return torch.device(device)


@dataclass
class TrainConfig:
    """Options of a training run (all stored in the checkpoint's config.json)."""

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    weighting: str = "uniform"
    min_snr_gamma: float = 5.0
    label_dropout: float = 0.1
    warmup: int = 0
    seed: int = 0
    log_every: int = 25
    checkpoint_every: int = 0
    device: str = "auto"
    extra: dict = field(default_factory=dict)

    def validate(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")
        if self.lr <= 0:
            raise ValueError(f"learning rate must be positive, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
        if not 0 <= self.label_dropout < 1:
            raise ValueError(f"label_dropout must be in [0, 1), got {self.label_dropout}")


class Trainer:
    """Trains a :class:`Denoiser` on an in-memory tensor of examples ``(N, ...)``.

    Args:
        denoiser: the wrapped network.
        schedule: gives the training sigmas.
        data: ``(N, ...)`` float tensor (already normalised).
        labels: optional ``(N,)`` integer class labels; dropped to the null class with
            probability ``config.label_dropout`` so the model also learns the unconditional denoiser.
        run_dir: where checkpoints, ``metrics.jsonl`` and ``loss.png`` go (None: nothing written).
        info: extra JSON stored in the checkpoint config (e.g. data statistics).
        augment: optional ``augment(x0, generator) -> x0`` applied to each training batch (e.g. a random
            horizontal flip of images, :func:`unnoise.data.images.random_flip`).
    """

    def __init__(self, denoiser: Denoiser, schedule, data: torch.Tensor, config: TrainConfig | None = None,
                 labels: torch.Tensor | None = None, run_dir: str | None = None, info: dict | None = None,
                 augment=None):
        self.config = config or TrainConfig()
        self.config.validate()
        if data.ndim < 2 or data.shape[0] < 1:
            raise ValueError(f"training data must have shape (N, ...), got {tuple(data.shape)}")
        check_finite(data, "training data")
        if labels is not None and len(labels) != len(data):
            raise ValueError(f"{len(labels)} labels for {len(data)} examples")
        self.device = resolve_device(self.config.device)
        self.denoiser = denoiser.to(self.device)
        self.ema = copy.deepcopy(self.denoiser).eval().requires_grad_(False)
        self.schedule = schedule
        self.data = data.to(self.device)
        self.labels = None if labels is None else labels.long().to(self.device)
        self.run_dir = run_dir
        self.info = info or {}
        self.augment = augment
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.opt = torch.optim.AdamW(self.denoiser.parameters(), lr=self.config.lr,
                                     weight_decay=self.config.weight_decay)
        self.step_count = 0
        self.history: list[dict] = []
        if run_dir:
            os.makedirs(run_dir, exist_ok=True)
            if not os.access(run_dir, os.W_OK):
                raise PermissionError(f"run directory {run_dir!r} is not writable")

    # ------------------------------------------------------------------ one step
    def _batch(self):
        n = self.config.batch_size
        idx = torch.randint(0, len(self.data), (n,), generator=self.generator).to(self.device)
        x0 = self.data[idx]
        if self.augment is not None:
            x0 = self.augment(x0, self.generator)
        cond = None
        if self.labels is not None:
            cond = self.labels[idx].clone()
            drop = torch.rand(n, generator=self.generator).to(self.device) < self.config.label_dropout
            null = getattr(self.denoiser.net, "num_classes", 0)
            cond[drop] = null
        sigma = self.schedule.sample_training_sigmas(n, self.generator).to(self.device)
        noise = torch.randn(x0.shape, generator=self.generator).to(self.device)
        return x0, sigma, noise, cond

    def _lr(self) -> float:
        w = self.config.warmup
        return self.config.lr * min(1.0, (self.step_count + 1) / w) if w else self.config.lr

    def step(self) -> float:
        self.denoiser.train()
        x0, sigma, noise, cond = self._batch()
        for group in self.opt.param_groups:
            group["lr"] = self._lr()
        loss = denoising_loss(self.denoiser, x0, sigma, self.config.weighting, cond=cond, noise=noise,
                              min_snr_gamma=self.config.min_snr_gamma)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.denoiser.parameters(), self.config.grad_clip)
        self.opt.step()
        self._update_ema()
        self.step_count += 1
        return float(loss.detach())

    @torch.no_grad()
    def _update_ema(self):
        # warm-up of the decay so early EMA weights are not dominated by the random init
        decay = min(self.config.ema_decay, (1 + self.step_count) / (10 + self.step_count))
        for p_ema, p in zip(self.ema.parameters(), self.denoiser.parameters()):
            p_ema.lerp_(p, 1 - decay)
        for b_ema, b in zip(self.ema.buffers(), self.denoiser.buffers()):
            b_ema.copy_(b)

    # ------------------------------------------------------------------ the loop
    def fit(self, progress: bool = True) -> list[dict]:
        """Train for ``config.steps`` steps; returns the logged history."""
        cfg = self.config
        bar = tqdm(total=cfg.steps, initial=self.step_count, desc="training", disable=not progress,
                   dynamic_ncols=True)
        running, t0, seen = None, time.perf_counter(), 0
        while self.step_count < cfg.steps:
            loss = self.step()
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {self.step_count}; lower the learning rate")
            running = loss if running is None else 0.98 * running + 0.02 * loss
            seen += cfg.batch_size
            bar.update(1)
            if self.step_count % cfg.log_every == 0 or self.step_count == cfg.steps:
                rate = seen / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{running:.4f}", ex_s=f"{rate:.0f}")
                record = {"step": self.step_count, "loss": loss, "loss_smooth": running, "lr": self._lr(),
                          "examples_per_s": rate}
                self.history.append(record)
                self._log(record)
            if cfg.checkpoint_every and self.step_count % cfg.checkpoint_every == 0:
                self.save()
        bar.close()
        self.save()
        return self.history

    def _log(self, record):
        if self.run_dir:
            with open(os.path.join(self.run_dir, "metrics.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")

    def save(self):
        """Write the checkpoint (raw and EMA weights) and the loss curve to ``run_dir``."""
        if not self.run_dir:
            return
        info = dict(self.info)
        info["train"] = {k: v for k, v in asdict(self.config).items()}
        info["step"] = self.step_count
        checkpoint.save(self.run_dir, self.denoiser, self.schedule, ema=self.ema, info=info)
        if self.history:
            from .plotting import plot_loss
            plot_loss(self.history, os.path.join(self.run_dir, "loss.png"))
