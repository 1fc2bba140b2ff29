"""``unnoise compare-samplers``: quality and wall time of samplers at equal numbers of denoiser calls."""
from __future__ import annotations

import csv
import json
import math
import os
import time

import torch

from .. import compare, io, kinds, samplers, schedules
from ..data import TOY_DATASETS, load_array, toy_dataset
from ..devices import resolve_device, threads_for_small_model
from ..runs import load
from .common import add_device_arg, parse_options

GRIDS = tuple(schedules.SPACINGS) + ("auto",)


def register(sub):
    p = sub.add_parser("compare-samplers", help="compare samplers at equal NFE on a run or a built-in mixture",
                       description="Run samplers at several budgets of real denoiser evaluations (NFE) and "
                                   "measure sample quality (sliced Wasserstein distance, MMD) against reference "
                                   "samples, and wall time.  Writes a table (stdout, CSV, JSON) and a plot.  "
                                   "For each budget a sampler gets the largest number of steps whose measured "
                                   "NFE fits (Heun spends about two calls a step).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="run directory written by 'unnoise train'")
    src.add_argument("--mixture", choices=sorted(compare.MIXTURES),
                     help="a built-in Gaussian mixture with an exact denoiser and exact reference samples")
    p.add_argument("--samplers", default=None,
                   help=f"comma-separated sampler names (default: all: {', '.join(samplers.available())})")
    p.add_argument("--nfe", default="5,10,20,50", help="comma-separated NFE budgets (default: 5,10,20,50)")
    p.add_argument("--n", type=int, default=2000, help="samples per run (default: 2000)")
    p.add_argument("--spacing", default="karras", choices=GRIDS,
                   help="sampling grid: a schedule spacing, or auto (a grid optimised per sampler and budget "
                        "against the exact ODE map on a pilot batch, for deterministic samplers; karras for "
                        "stochastic ones; slower) (default: karras)")
    p.add_argument("--schedule", default="ddpm", choices=schedules.available(),
                   help="noise schedule giving the sigma range for --mixture (default: ddpm)")
    p.add_argument("--reference", default=None,
                   help="with --checkpoint: reference samples, a .npy/.npz/.csv file in data units or a built-in "
                        "2-D set name; without it a fine ODE solve of the model is the reference")
    p.add_argument("--option", action="append", metavar="SAMPLER.KEY=VALUE",
                   help="sampler option, repeatable, e.g. --option ddim.eta=0.5")
    p.add_argument("--out", default="compare_out", help="output directory (default: compare_out)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--raw-weights", action="store_true", help="use the raw weights instead of the EMA weights")
    add_device_arg(p)
    p.set_defaults(func=run)


def _parse_budgets(text):
    try:
        budgets = sorted({int(b) for b in text.split(",") if b.strip()})
    except ValueError:
        raise ValueError(f"--nfe expects comma-separated integers like 5,10,20, got {text!r}") from None
    if not budgets or budgets[0] < 1:
        raise ValueError(f"--nfe budgets must be positive integers, got {text!r}")
    return budgets


def _parse_samplers(text):
    names = samplers.available() if text is None else [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in samplers.available()]
    if unknown or not names:
        raise ValueError(f"unknown sampler(s) {', '.join(unknown) or '(none given)'}; "
                         f"available: {', '.join(samplers.available())}")
    return names


def _parse_sampler_options(pairs, names):
    out = {}
    for key, value in parse_options(pairs).items():
        if "." not in key:
            raise ValueError(f"--option expects SAMPLER.KEY=VALUE (e.g. ddim.eta=0.5), got {key!r}")
        name, opt = key.split(".", 1)
        if name not in names:
            raise ValueError(f"--option names sampler {name!r}, which is not among --samplers")
        if opt not in samplers.sampler_options(name):
            raise ValueError(f"sampler {name!r} has no option {opt!r}; it accepts: "
                             f"{', '.join(samplers.sampler_options(name)) or 'none'}")
        out.setdefault(name, {})[opt] = value
    return out


def _make_grid(schedule, spacing, denoiser, shape, options):
    """``grid(steps, sampler)``; ``auto`` tunes a grid per (steps, deterministic sampler) once, cached."""
    cache = {}

    def grid(steps, name):
        key = (steps, name)
        if key not in cache:
            if spacing != "auto":
                cache[key] = schedule.sampling_sigmas(steps, spacing)
            else:
                sig = None
                if steps >= 2:
                    try:
                        sig = compare.auto_grid(denoiser, shape, steps, name, schedule.sigma_min, schedule.sigma_max,
                                                **options.get(name, {}))
                    except ValueError:
                        sig = None  # stochastic samplers: grid error is not a grid property
                cache[key] = sig if sig is not None else schedule.sampling_sigmas(steps, "karras")
        return cache[key]
    return grid


def _load_reference(spec, n, generator, seed: int = 0):
    """``(reference, floor_swd, n)``: like with like, the samplers' ``n`` samples are scored against a reference of
    the same size as the floor's two sets.  A built-in set: two fresh draws of ``n``.  A data file: its two halves,
    ``n`` (at most half the file) examples each; the floor compares the first with the second, the samplers are
    scored against the second, and ``n`` is lowered to the half when the file is smaller than ``2 n``."""
    if spec in TOY_DATASETS:
        ref = toy_dataset(spec, n, generator)
        return ref, compare.sample_quality(toy_dataset(spec, n, generator), ref, seed)["swd"], n
    if not os.path.exists(spec):
        raise FileNotFoundError(f"--reference {spec!r} is neither a file nor a built-in set "
                                f"({', '.join(sorted(TOY_DATASETS))})")
    data = load_array(spec).float()
    half = len(data) // 2
    if half < 10:
        raise ValueError(f"--reference {spec!r} holds {len(data)} examples; give at least 20 (two halves of 10: one "
                         "for the floor, one to score the samplers against)")
    m = min(n, half)
    if m < n:
        print(f"--reference has {len(data)} examples: {m} samples per sampler are scored against {m} of them, the "
              f"floor compares those with the other {m}")
    held, scored = data[:m], data[half:half + m]
    return scored, compare.sample_quality(held, scored, seed)["swd"], m


def run(args):
    budgets = _parse_budgets(args.nfe)
    names = _parse_samplers(args.samplers)
    options = _parse_sampler_options(args.option, names)
    if args.n < 10:
        raise ValueError(f"--n must be at least 10, got {args.n}")
    io.check_not_input(args.out, {"--checkpoint": args.checkpoint, "--reference": args.reference})
    os.makedirs(args.out, exist_ok=True)
    g = torch.Generator().manual_seed(args.seed + 100)
    postprocess, floor = None, math.nan
    if args.mixture:
        gm = compare.builtin_mixture(args.mixture)
        denoiser, schedule, shape = gm.denoise, schedules.get(args.schedule), (gm.dim,)
        reference = gm.sample(args.n, generator=g)
        floor = compare.sample_quality(gm.sample(args.n, generator=g), reference, args.seed)["swd"]
        source = f"mixture {args.mixture} ({args.schedule} sigma range)"
    else:
        pipe = load(args.checkpoint, ema=not args.raw_weights, device=resolve_device(args.device))
        threads_for_small_model(pipe.denoiser, pipe.device)
        if pipe.denoiser is None or not pipe.kind_entry.can("compare"):
            raise ValueError(f"compare-samplers compares samplers on runs of {kinds.able('compare')}; "
                             f"{args.checkpoint!r} is a {pipe.kind} run")
        schedule, shape, model, device = pipe.schedule, pipe.model_shape, pipe.denoiser, pipe.device

        def denoiser(x, sigma, cond=None):  # the network on its device; samples stay on the CPU
            return model(x.to(device), sigma.to(device)).cpu()

        postprocess = pipe.decode
        if args.reference:
            reference, floor, args.n = _load_reference(args.reference, args.n, g, args.seed)
            if tuple(reference.shape[1:]) != shape and reference[0].numel() != math.prod(shape):
                raise ValueError(f"--reference has examples of shape {tuple(reference.shape[1:])}; "
                                 f"the checkpoint's data have shape {shape}")
            source = f"checkpoint {args.checkpoint} against {args.reference}"
        else:
            fine = "rk45" if "rk45" in samplers.available() else "heun" if "heun" in samplers.available() else "euler"
            opts = {"rtol": 1e-5, "atol": 1e-5} if fine == "rk45" else {}
            sig = schedule.sampling_sigmas(200 if fine != "rk45" else 2, "karras")
            z = torch.randn(args.n, *shape, generator=g) * sig[0]
            print(f"reference: a fine ODE solve ({fine}) of the model itself")
            reference = postprocess(samplers.sample(denoiser, z, sig, sampler=fine, **opts))
            source = f"checkpoint {args.checkpoint} against a fine {fine} solve"

    grid = _make_grid(schedule, args.spacing, denoiser, shape, options)
    print(f"comparing {len(names)} samplers at NFE {', '.join(map(str, budgets))} on {source}, "
          f"{args.spacing} grid, {args.n} samples")
    print(compare.format_table([]))
    t0 = time.perf_counter()
    cost_grid = None if args.spacing != "auto" else (lambda steps, name: schedule.sampling_sigmas(steps, "karras"))
    default = samplers.DEFAULT_SAMPLER

    def log(line):  # mark the sampler unnoise.sample uses when none is named
        print(line + ("  <- default" if line.split()[0] == default else ""))
    rows = compare.compare(denoiser, reference, shape, names, budgets, grid, n=args.n, seed=args.seed,
                           options=options, postprocess=postprocess, log=log, cost_grid=cost_grid)
    print(f"\nreference vs reference SWD (the floor): {floor:.4f}" if math.isfinite(floor) else "")
    for budget in budgets:
        ok = [r for r in rows if r["budget"] == budget and math.isfinite(r["swd"])]
        if ok:
            best = min(ok, key=lambda r: r["swd"])
            print(f"best at NFE <= {budget}: {best['sampler']} (SWD {best['swd']:.4f}, {best['nfe']} NFE)"
                  + (" <- default" if best["sampler"] == default else ""))
    print(f"default sampler (unnoise.sample without sampler=): {default}; default grid: "
          f"schedule.sampling_sigmas(steps) without a spacing")

    csv_path, json_path, png_path = (os.path.join(args.out, f"compare.{e}") for e in ("csv", "json", "png"))
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(json_path, "w") as f:
        json.dump({"source": source, "spacing": args.spacing, "n": args.n, "seed": args.seed, "budgets": budgets,
                   "floor_swd": floor if math.isfinite(floor) else None,
                   "rows": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                            for r in rows]}, f, indent=2)
    compare.plot_comparison(rows, png_path, floor, title=f"{source}, {args.spacing} grid")
    print(f"wrote {csv_path}, {json_path} and {png_path} in {time.perf_counter() - t0:.0f} s")
    return 0
