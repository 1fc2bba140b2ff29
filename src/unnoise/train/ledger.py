"""What the training steps leave behind, kept on the training device: the last loss and metrics, the grad norm,
the smoothed loss and the NaN/inf skip counters (:class:`Ledger`).

A step only launches device work into these tensors; nothing is read back until the loop asks for
:meth:`Ledger.read` (once per log interval, at checkpoints and at the end).  On a GPU every read drains the queue
of launched work, so Python and GPU time would add up instead of overlapping; one read per log interval keeps
the GPU busy.  The decisions a read used to make are taken on the device instead:

* whether the update of a step is applied: ``ok`` (loss and grad norm finite, the run not diverged), a device
  bool the optimizer step and the EMA are gated by (see :meth:`Trainer._apply`);
* divergence: ``max_bad_steps`` non-finite steps in a row set ``diverged_at`` (the step count then) and from
  there on nothing is updated or counted, so when the loop notices it (up to one log interval later) the
  weights, the EMA and the optimizer are exactly those of step ``diverged_at``.
"""
from __future__ import annotations

import math

import torch


class Ledger:
    """Device-side running values of a :class:`~unnoise.train.Trainer` (see the module docstring)."""

    def __init__(self, device: torch.device, max_bad_steps: int):
        self.device, self.max_bad_steps = device, int(max_bad_steps)
        count = dict(dtype=torch.int64, device=device)
        self.loss_smooth = torch.full((), math.nan, dtype=torch.float64, device=device)  # NaN: none yet
        self.skipped = torch.zeros((), **count)
        self.bad_in_row = torch.zeros((), **count)
        self.diverged_at = torch.zeros((), **count)  # 0: not diverged; else the step count at divergence
        self.grad_norm = torch.full((), math.nan, dtype=torch.float32, device=device)
        self.names: list[str] = ["loss"]
        self.last = torch.full((1,), math.nan, dtype=torch.float32, device=device)  # loss, metrics of the last step

    def live(self) -> torch.Tensor:
        """Device bool: the run has not diverged."""
        return self.diverged_at == 0

    def record(self, step: int, names: list[str], means: torch.Tensor, grad_norm: torch.Tensor,
               ok: torch.Tensor, fp16_overflow: torch.Tensor | None) -> None:
        """Account for step ``step`` (1-based: the step count after it) without reading anything back.

        ``means`` are the global batch means of ``names`` (``loss`` first), ``ok`` whether the update was applied,
        ``fp16_overflow`` (fp16 only) whether a skip was a gradient overflow of a finite loss, which lowers the
        loss scale but is no sign of divergence."""
        live = self.live()
        skip = ~ok & live
        bad = skip if fp16_overflow is None else skip & ~fp16_overflow
        self.skipped += skip
        self.bad_in_row.copy_(torch.where(ok, 0, self.bad_in_row + bad))
        self.diverged_at.copy_(torch.where(live & (self.bad_in_row >= self.max_bad_steps), step, self.diverged_at))
        loss = means[0].double()
        smooth = torch.where(torch.isnan(self.loss_smooth), loss, 0.98 * self.loss_smooth + 0.02 * loss)
        self.loss_smooth.copy_(torch.where(torch.isfinite(loss) & live, smooth, self.loss_smooth))
        if names != self.names:
            self.names, self.last = list(names), torch.empty(len(names), dtype=torch.float32, device=self.device)
        self.last.copy_(means)
        self.grad_norm.copy_(grad_norm)

    def read(self) -> dict:
        """Everything as Python numbers, in one host read: ``loss``, ``metrics`` (dict), ``grad_norm``,
        ``loss_smooth`` (None before the first finite loss), ``skipped_steps``, ``bad_in_row``, ``diverged_at``."""
        values = torch.cat([self.last.double(), torch.stack([
            self.grad_norm.double(), self.loss_smooth, self.skipped.double(), self.bad_in_row.double(),
            self.diverged_at.double()])]).tolist()
        k = len(self.names)
        grad_norm, smooth, skipped, bad, diverged = values[k:]
        return {"loss": values[0], "metrics": dict(zip(self.names[1:], values[1:k])), "grad_norm": grad_norm,
                "loss_smooth": None if math.isnan(smooth) else smooth, "skipped_steps": int(skipped),
                "bad_in_row": int(bad), "diverged_at": int(diverged)}

    def set(self, skipped_steps: int | None = None, bad_in_row: int | None = None,
            loss_smooth: float | None = None) -> None:
        """Restore counters (from a checkpoint); a value left None is not changed, ``loss_smooth=None`` only
        when given as ``math.nan``."""
        if skipped_steps is not None:
            self.skipped.fill_(int(skipped_steps))
        if bad_in_row is not None:
            self.bad_in_row.fill_(int(bad_in_row))
        if loss_smooth is not None:
            self.loss_smooth.fill_(float(loss_smooth))
