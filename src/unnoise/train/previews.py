"""Preview samples written during training (``--sample-every``)."""
from __future__ import annotations

import os

import torch

from .. import distributed as dist
from ..data.datasets import unnormalise
from ..plotting import plot_points
from ..samplers import sample


@torch.no_grad()
def write_samples(trainer, n: int = 1000, steps: int = 50) -> str | None:
    """Write ``run_dir/samples/step_<step>.png``: EMA samples (DDIM, fixed starting noise) beside
    the data for vector data, or whatever ``sample_fn(trainer, path)`` draws.  Rank 0 only."""
    if not (trainer.run_dir and dist.is_main()):
        return None
    out_dir = os.path.join(trainer.run_dir, "samples")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"step_{trainer.step_count:08d}.png")
    if trainer.sample_fn is not None:
        trainer.sample_fn(trainer, path)
        return path
    shape = trainer.example_shape
    if trainer.kind is not None or not isinstance(shape, tuple) or len(shape) != 1 or shape[0] < 2:
        return None
    n = min(n, len(trainer.data))
    g = torch.Generator().manual_seed(trainer.config.seed + 7)
    sigmas = trainer.schedule.sampling_sigmas(steps)
    process = trainer.schedule.forward
    x = process.prior(process.noise((n, *trainer.example_shape), g), float(sigmas[0])).to(trainer.device)
    out = sample(trainer.ema, x, sigmas, sampler="ddim", generator=g, process=process).cpu()
    stats = trainer.info.get("data", {}).get("normalization") if isinstance(trainer.info.get("data"), dict) else None
    ref = torch.stack([trainer.data[int(i)][0] for i in torch.randperm(len(trainer.data), generator=g)[:n]]).cpu()
    plot_points({"data": unnormalise(ref, stats), f"EMA samples, step {trainer.step_count}": unnormalise(out, stats)},
                path)
    return path
