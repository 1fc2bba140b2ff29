"""``unnoise tune-grid``: tune a sampling grid per step count for a run and store it in the run.

Each grid is found by :func:`unnoise.samplers.tune_grid` with the run's EMA denoiser (unconditional runs
only) and written to ``RUN/tuned_grids.json`` atomically; config.json and the weights are never rewritten.
:meth:`unnoise.Pipeline.grid` (and so ``unnoise sample``) then uses it for that sampler and step count.
"""
from __future__ import annotations

from .. import checkpoint, samplers
from ..devices import resolve_device, threads_for_small_model
from ..runs import load
from .common import add_device_arg


def register(sub):
    p = sub.add_parser("tune-grid", help="tune the sampling grid of a run for given step counts",
                       description="Tune a sampling grid per step count with the run's EMA denoiser and store it "
                                   "in RUN/tuned_grids.json; 'unnoise sample' uses it for that sampler and step "
                                   "count unless --spacing is given.")
    p.add_argument("--checkpoint", required=True, help="run directory written by 'unnoise train'")
    p.add_argument("--steps", required=True, help="comma-separated step counts, e.g. 5,10,20")
    p.add_argument("--sampler", default=None,
                   help=f"deterministic sampler to tune for (default: {samplers.DEFAULT_SAMPLER})")
    p.add_argument("--pilot", type=int, default=64, help="pilot batch size of the search (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pilot batch (default: 0)")
    add_device_arg(p)
    p.set_defaults(func=run)


def parse_steps(text: str) -> list[int]:
    """``"5,10,20"`` -> ``[5, 10, 20]``; ``ValueError`` unless every entry is a positive integer."""
    try:
        steps = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        steps = []
    if not steps or min(steps) < 1:
        raise ValueError(f"--steps must be comma-separated positive integers such as 5,10,20, got {text!r}")
    return sorted(set(steps))


def run(args):
    steps = parse_steps(args.steps)
    if args.pilot < 1:
        raise ValueError(f"--pilot must be a positive integer, got {args.pilot}")
    sampler = args.sampler or samplers.DEFAULT_SAMPLER
    if sampler not in samplers.available():
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(samplers.available())}")
    pipe = load(args.checkpoint, device=resolve_device(args.device))
    threads_for_small_model(pipe.denoiser, pipe.device)
    pipe._require_sampling("tune a grid")
    if pipe.conditional:
        raise ValueError(f"tune-grid tunes unconditional runs only; {args.checkpoint!r} is conditional")
    sched = pipe.schedule
    records = []
    for n in steps:
        rec = samplers.tune_grid(pipe.denoiser, pipe.model_shape, n, sched.sigma_min, sched.sigma_max, sampler,
                                 pilot=args.pilot, seed=args.seed, device=pipe.device)
        rec.update(pilot=args.pilot, seed=args.seed, condition="none")
        records.append(rec)
        print(f"{n} steps ({sampler}): one-off cost {rec['nfe_cost']} NFE on a pilot batch of {args.pilot}; "
              f"sigmas {', '.join(f'{v:.4g}' for v in rec['sigmas'])}")
    path = checkpoint.write_tuned_grids(args.checkpoint, records)
    print(f"wrote {path}")
    return 0
