"""The training log: ``metrics.jsonl`` (one JSON record per logged step), TensorBoard scalars with
``--tensorboard``, and reading the log back on resume."""
from __future__ import annotations

import json
import math
import os

from .. import distributed as dist


def log(trainer, record: dict) -> None:
    """Append ``record`` to the trainer's history, ``run_dir/metrics.jsonl`` and TensorBoard (rank 0)."""
    trainer.history.append(record)
    if not (trainer.run_dir and dist.is_main()):
        return
    clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in record.items()}
    with open(os.path.join(trainer.run_dir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(clean) + "\n")
    if trainer.config.tensorboard:
        if trainer._tb is None:
            # optional dependency (the tensorboard package, checked at start), only with --tensorboard
            from torch.utils.tensorboard import SummaryWriter
            trainer._tb = SummaryWriter(os.path.join(trainer.run_dir, "tensorboard"))
        for k, v in clean.items():
            if k != "step" and v is not None:
                trainer._tb.add_scalar(f"train/{k}", v, record["step"])


def read_history(path: str, step: int) -> list[dict]:
    """The records of ``metrics.jsonl`` up to step ``step``; a line cut short by a crash ends the log."""
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut short by a crash ends the usable log
                if rec.get("step", 0) <= step:
                    out.append(rec)
    return out
