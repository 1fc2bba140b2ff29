"""The training loop: :class:`Trainer` (construction, reading the data, one optimizer step, the EMA,
:meth:`Trainer.fit`).  Checkpoints, signals, the log and previews are in the neighbouring modules."""
from __future__ import annotations

import contextlib
import copy
import importlib
import time

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .. import checkpoint
from .. import distributed as dist
from ..data import check_finite
from ..data.memory import TensorDataset
from ..denoiser import Denoiser
from ..devices import resolve_device, threads_for_small_model
from ..processes import Gaussian
from . import previews, signals, state
from .config import TrainConfig, TrainingDiverged, lr_at
from .ledger import Ledger
from .log import log
from .objective import DenoisingObjective, _LossModule
from .order import EpochSampler, _RankBatches
from .state import _on_rank0


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
            objective = DenoisingObjective(cfg.weighting, cfg.min_snr_gamma, process=schedule.forward)
        self.objective = objective
        # the forward process draws the noise (objectives trained without a schedule get Gaussian noise)
        self.forward = schedule.forward if schedule is not None else Gaussian()
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
        self.example_shape = _shape(x_first)  # a tuple, or a dict of tuples for dict-valued examples
        shape_fn = getattr(objective, "noise_shape", None)
        self.noise_shape = tuple(shape_fn(denoiser, self.example_shape)) if shape_fn and \
            not isinstance(x_first, dict) else self.example_shape
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
        threads_for_small_model(self.denoiser, self.device)  # a tiny network on a busy CPU: one thread
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
        # fused AdamW on accelerators skips a non-finite step on the device (found_inf); on the CPU the default
        # implementation (bitwise the results of every earlier version; see _apply)
        self._fused = fused_optimizer(self.device)
        self.opt = torch.optim.AdamW(self.denoiser.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                     **({"fused": True} if self._fused else {}))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self._params = list(self.denoiser.parameters())
        self._ema_params = list(self.ema.parameters())
        self._buffers = list(zip(self.ema.buffers(), self.denoiser.buffers()))
        self.step_count = 0
        # loss, metrics, grad norm and skip counters stay on the device; read once per log interval
        self.ledger = Ledger(self.device, cfg.max_bad_steps)
        self._stop_flag = None  # with N processes: the all-reduced stop request of the last step (device)
        self.history: list[dict] = []
        self.stopped_by: str | None = None  # "SIGINT"/"SIGTERM" when fit() stopped early on a signal
        self.sample_fn = None  # optional sample_fn(trainer, path): preview writer for non-vector data
        self._stop_signal = None
        self._tb = None
        if run_dir:
            n_params = sum(p.numel() for p in self.denoiser.parameters())
            need = checkpoint.estimate_checkpoint_bytes(n_params) * (cfg.keep_checkpoints + 1)
            _on_rank0(lambda: checkpoint.check_run_dir(run_dir, need), self.device)
        self._locked = bool(run_dir) and dist.is_main()  # the run directory's writer lock, released by fit()
        if cfg.resume_from:
            try:
                self.resume(cfg.resume_from)
            except BaseException:
                self.release()
                raise

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
            # checked for NaN/inf at construction; the epoch's permutation lives where the data are
            idx = self.sampler.indices(self.step_count * self.config.batch_size, self.config.batch_size,
                                       device=self.data.x.device)[self.rows]
            x0, cond = self.data.gather(idx)
        else:
            if self._loader is None or self._loader[0] != self.step_count:
                self._loader = [self.step_count, iter(self._data_loader(self.step_count))]
            x0, cond = next(self._loader[1])
            self._loader[0] += 1
            # checked on the host, before the copy: no read of device memory
            if not all(torch.isfinite(v).all() for v in _tensors(x0) if v.is_floating_point()):
                raise ValueError(f"training batch {self.step_count} contains NaN or inf values; check the data "
                                 "(unnoise never trains on non-finite inputs)")
        x0 = _map(x0, self._to_device)
        cond = {k: self._to_device(v) for k, v in cond.items()}
        return x0, cond

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` on the training device without waiting: from pinned memory, asynchronously, on CUDA."""
        if t.device == self.device or self.device.type != "cuda":
            return t.to(self.device)
        if t.device.type == "cpu" and not t.is_pinned():
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

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
        shape = {k: (n, *s) for k, s in self.noise_shape.items()} if isinstance(self.noise_shape, dict) \
            else (n, *self.noise_shape)
        dtype = x0.dtype if isinstance(x0, torch.Tensor) and x0.is_floating_point() else torch.float32
        noise = self.forward.noise(shape, self.noise_generator, self.device, dtype)
        if cfg.cond_dropout > 0 and any(k in cond for k in getattr(self.denoiser, "nulls", {})):
            cond = self.denoiser.null_cond(cond, self._to_device(drop[rows]))
        if self.augment is not None:
            x0 = self.augment(x0, self._to_device(u[rows]))
        return x0, self._to_device(sigma[rows]), _map(noise, lambda v: v[rows]), cond

    # ------------------------------------------------------------------ one step
    def _lr(self) -> float:
        return lr_at(self.config, self.step_count)

    def _autocast(self):
        if self.config.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def step(self) -> torch.Tensor:
        """One optimizer step on the next global batch; returns its loss averaged over all ranks, a 0-dim tensor
        on the training device (``float()`` reads it back, which on a GPU waits for the step to finish).

        Nothing is read back from an accelerator: a NaN/inf loss or gradient skips the update and the EMA on the
        device (``ok`` below; on the CPU, where the read is free, by a branch), counted in ``skipped_steps``; the
        loss, metrics, grad norm and counters stay in :attr:`ledger` until :meth:`fit` reads them once per log
        interval.
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
                    out = self.model(_map(x0, lambda v: v[rows]), sigma[rows], _map(noise, lambda v: v[rows]),
                                     {k: v[rows] for k, v in cond.items()})
                loss = out["loss"].float().mean()
                self.scaler.scale(loss / cfg.grad_accum).backward()
            for key, value in out.items():
                total = value.detach().float().sum()
                sums[key] = total if key not in sums else sums[key] + total
        # one collective for the loss, the objective's metrics and (N processes) "a rank was asked to stop"
        names = ["loss"] + sorted(k for k in sums if k != "loss")
        parts = [sums[k] for k in names]
        if dist.active():
            parts.append(torch.full((), float(self._stop_signal is not None), device=self.device))
        stats = dist.all_reduce_sum(torch.stack(parts))
        means = stats[:len(names)] / cfg.batch_size
        if dist.active():
            self._stop_flag = stats[-1]
        self.scaler.unscale_(self.opt)
        grads = [p.grad for p in self._params if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        ok = torch.isfinite(means[0]) & torch.isfinite(grad_norm) & self.ledger.live()
        self._apply(ok, grad_norm)
        self.step_count += 1
        overflow = torch.isfinite(means[0]) if self.scaler.is_enabled() else None
        self.ledger.record(self.step_count, names, means, grad_norm, ok, overflow)
        return means[0]

    def _apply(self, ok: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """The optimizer step and the EMA where the device bool ``ok`` holds, a no-op otherwise.

        On an accelerator nothing is read: fused AdamW skips on ``found_inf = ~ok`` and the EMA is weighted by
        ``ok``.  On the CPU ``ok`` is host memory, so reading it costs nothing: the default AdamW and the plain EMA
        run only when it holds (bitwise the results of every earlier version)."""
        params = [p for p in self._params if p.grad is not None]
        if self._fused:
            if self.config.grad_clip and params:
                torch.nn.utils.clip_grads_with_norm_(params, self.config.grad_clip, grad_norm)
            self.opt.grad_scale, self.opt.found_inf = None, (~ok).float()
            self.opt.step()
            self.scaler.update()  # fp16: the scale follows the overflow recorded by unscale_ (no-op otherwise)
            self._update_ema(ok)
        elif bool(ok):  # see fused_optimizer: the CPU (elsewhere a synchronisation)
            if self.config.grad_clip and params:
                torch.nn.utils.clip_grads_with_norm_(params, self.config.grad_clip, grad_norm)
            self.opt.step()
            self._update_ema()

    def _ddp(self):
        model = self.model
        return getattr(model, "_orig_mod", model)  # unwrap torch.compile

    @torch.no_grad()
    def _update_ema(self, ok: torch.Tensor | None = None):
        """The EMA of the weights as foreach operations over all tensors; with the device bool ``ok`` weighted by
        it (weight 0 leaves the EMA exactly as it was) without reading it."""
        # warm-up of the decay so early EMA weights are not dominated by the random init
        decay = min(self.config.ema_decay, (1 + self.step_count) / (10 + self.step_count))
        if ok is None:
            torch._foreach_lerp_(self._ema_params, self._params, 1 - decay)  # bitwise the per-tensor lerp_
            for b_ema, b in self._buffers:
                b_ema.copy_(b)
            return
        diff = torch._foreach_sub(self._params, self._ema_params)
        for dtype in {p.dtype for p in self._params}:
            idx = [i for i, p in enumerate(self._params) if p.dtype == dtype]
            torch._foreach_mul_([diff[i] for i in idx], ok.to(dtype) * (1 - decay))
        torch._foreach_add_(self._ema_params, diff)
        for b_ema, b in self._buffers:
            b_ema.copy_(torch.where(ok, b, b_ema))

    # ------------------------------------------------------------------ host state (read once per log interval)
    def _host(self) -> dict:
        """The ledger read back (one host read); raises :class:`TrainingDiverged` when the run diverged."""
        state = self.ledger.read()
        if state["diverged_at"]:
            cfg = self.config
            last = checkpoint.latest_checkpoint(self.run_dir) if self.run_dir and \
                checkpoint.list_step_dirs(self.run_dir) else "none written"
            raise TrainingDiverged(
                f"{state['bad_in_row']} steps in a row had a NaN/inf loss or gradient (step {state['diverged_at']}, "
                f"noticed at step {self.step_count}; {state['skipped_steps']} skipped in all); stopping without "
                f"saving (nothing was updated after step {state['diverged_at']}). Last good checkpoint: {last}. "
                f"Lower the learning rate, check the data, or raise --max-bad-steps (now {cfg.max_bad_steps})")
        return state

    @property
    def skipped_steps(self) -> int:
        """Steps skipped for a NaN/inf loss or gradient (reads the device)."""
        return self.ledger.read()["skipped_steps"]

    @skipped_steps.setter
    def skipped_steps(self, value: int):
        self.ledger.set(skipped_steps=value)

    @property
    def bad_in_row(self) -> int:
        """Non-finite steps in a row up to now, fp16 overflows not counted (reads the device)."""
        return self.ledger.read()["bad_in_row"]

    @bad_in_row.setter
    def bad_in_row(self, value: int):
        self.ledger.set(bad_in_row=value)

    @property
    def loss_smooth(self) -> float | None:
        """Exponential moving average (0.98) of the finite losses; None before the first (reads the device)."""
        return self.ledger.read()["loss_smooth"]

    @loss_smooth.setter
    def loss_smooth(self, value: float | None):
        self.ledger.set(loss_smooth=float("nan") if value is None else value)

    @property
    def last_grad_norm(self) -> float:
        """Gradient norm of the last step (reads the device)."""
        return self.ledger.read()["grad_norm"]

    @property
    def last_metrics(self) -> dict[str, float]:
        """The objective's extra per-example values of the last step, global batch means (reads the device)."""
        return self.ledger.read()["metrics"]

    def request_stop(self, reason: str = "request") -> None:
        """Ask :meth:`fit` to save a checkpoint and return after the current step (all ranks agree)."""
        self._stop_signal = reason

    # ------------------------------------------------------------------ the loop
    def fit(self, progress: bool = True) -> list[dict]:
        """Train until ``config.steps``; returns the logged history.

        SIGINT/SIGTERM (or :meth:`request_stop`) finish the current step, save a checkpoint and
        return early with ``stopped_by`` set (with N processes at the next log or checkpoint step, where the
        ranks read back their agreed stop flag).  Raises :class:`TrainingDiverged` after
        ``max_bad_steps`` consecutive non-finite steps (the last checkpoint stays as it was), noticed at the
        next log or checkpoint step: between those steps nothing is read back from the device.
        """
        cfg = self.config
        main = dist.is_main()
        if self.run_dir and main and not self._locked:  # a second fit(): hold the run directory again
            checkpoint.lock_run_dir(self.run_dir)
            self._locked = True
        bar = tqdm(total=cfg.steps, initial=self.step_count, desc="training", disable=not (progress and main),
                   dynamic_ncols=True)
        handlers = signals.install(self)
        t_last, seen = time.perf_counter(), 0
        self._stop_agreed = False
        try:
            while self.step_count < cfg.steps:
                self.step()
                seen += cfg.batch_size
                bar.update(1)
                step = self.step_count
                log_now = step % cfg.log_every == 0 or step == cfg.steps
                save_now = bool(cfg.checkpoint_every) and step % cfg.checkpoint_every == 0 and step < cfg.steps
                preview_now = bool(cfg.sample_every) and step % cfg.sample_every == 0
                if dist.active():  # the ranks agree on a stop at the steps where all of them read back
                    self._stop_agreed = (log_now or save_now or preview_now) and bool(self._stop_flag > 0)
                else:
                    self._stop_agreed = self._stop_signal is not None
                if not (log_now or save_now or preview_now or self._stop_agreed):
                    continue  # no host read: the device keeps going
                host = self._host()  # raises TrainingDiverged (noticed here, nothing updated since)
                if log_now:
                    now = time.perf_counter()
                    rate = seen / max(now - t_last, 1e-9)
                    t_last, seen = now, 0
                    smooth = host["loss_smooth"] if host["loss_smooth"] is not None else float("nan")
                    bar.set_postfix(loss=f"{smooth:.4f}", ex_s=f"{rate:.0f}", skipped=host["skipped_steps"])
                    log(self, {"step": step, "loss": host["loss"], "loss_smooth": smooth,
                               "lr": lr_at(cfg, step - 1), "grad_norm": host["grad_norm"],
                               "examples_per_s": rate, "skipped_steps": host["skipped_steps"],
                               "epoch": step * cfg.batch_size // len(self.data), **host["metrics"]})
                if self._stop_agreed:
                    self.stopped_by = self._stop_signal or "another rank"
                    self.save()
                    break
                if save_now:
                    self.save()
                if preview_now:
                    self.write_samples()
            else:
                self.save()
        finally:
            signals.restore(self, handlers)
            bar.close()
            if self._tb is not None:
                self._tb.flush()
            self.release()
        return self.history

    def release(self) -> None:
        """Give up this trainer's hold of the run directory's writer lock (:mod:`unnoise.checkpoint.lock`);
        :meth:`fit` does so when it returns (a later :meth:`fit` takes it again)."""
        if self._locked:
            self._locked = False
            checkpoint.unlock_run_dir(self.run_dir)

    # ------------------------------------------------------------------ previews and checkpoints
    def write_samples(self, n: int = 1000, steps: int = 50) -> str | None:
        """Write ``run_dir/samples/step_<step>.png``: EMA samples (DDIM, fixed starting noise) beside
        the data for vector data, or whatever ``sample_fn(trainer, path)`` draws.  Rank 0 only."""
        return previews.write_samples(self, n, steps)

    def save(self) -> None:
        """Write a training checkpoint (``run_dir/checkpoints/step_*``, ``latest``), the top-level
        ``config.json``/``model.safetensors`` and the loss curve.  All ranks must call it; rank 0 writes.

        A failed write (e.g. disk full) raises ``OSError`` and leaves the previous checkpoint intact.
        """
        state.save(self)

    def resume(self, source: str) -> str:
        """Load the newest complete checkpoint of run directory ``source`` (or a ``step_*``
        directory) into this trainer: weights, EMA, optimizer, scaler, RNG states, data position,
        step and logged history.  Returns the checkpoint path.  Raises ``ValueError`` naming the
        file when it is corrupt or belongs to a different model."""
        return state.resume(self, source)


def fused_optimizer(device: torch.device) -> bool:
    """Whether the Trainer uses fused AdamW on ``device``: on CUDA, XPU and MPS (one kernel for all tensors, and a
    skipped step decided on the device by ``found_inf``, with no host read).  Not on the CPU, where reading the
    skip decision costs nothing (host memory, no queue to drain) and the default implementation keeps results
    bitwise those of every earlier version; the fused path is tested on the CPU too (tests/test_hot_path.py)."""
    return device.type in ("cuda", "xpu", "mps")


def _map(x, fn):
    """``fn`` applied to a tensor, or to every tensor of a dict (examples may be dicts of tensors, as ``cond`` is)."""
    return {k: fn(v) for k, v in x.items()} if isinstance(x, dict) else fn(x)


def _tensors(x) -> list:
    return list(x.values()) if isinstance(x, dict) else [x]


def _shape(x):
    """One example's shape: a tuple, or a dict of tuples."""
    return {k: tuple(v.shape) for k, v in x.items()} if isinstance(x, dict) else tuple(x.shape)
