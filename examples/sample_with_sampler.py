"""Sample with the sampler of your choice, from a trained run or from an exact mixture.

    .venv/bin/python examples/sample_with_sampler.py --sampler heun --steps 10
    .venv/bin/python examples/sample_with_sampler.py --sampler ddim --option eta=0.5
    .venv/bin/python examples/sample_with_sampler.py --checkpoint runs/mine --sampler dpmpp_2m --out s.npy

Without ``--checkpoint`` the denoiser is the exact one of an 8-Gaussian ring
(``unnoise.analytic.GaussianMixture.ring``), so the sliced Wasserstein distance printed against
exact samples is the sampler's own error.  ``unnoise.samplers.available()`` lists the samplers and
``unnoise.samplers.sampler_options(name)`` their options.
"""
from __future__ import annotations

import argparse
import ast
import json

import numpy as np
import torch

import unnoise


def parse_option(text: str):
    """``KEY=VALUE`` with VALUE read as a Python literal when it is one (numbers, True, 'text')."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--option expects KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sampler", default="dpmpp_2m", choices=unnoise.samplers.available())
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="sampler option, repeatable")
    p.add_argument("--checkpoint", default=None, help="a run directory written by 'unnoise train'")
    p.add_argument("--n", type=int, default=2000, help="number of samples")
    p.add_argument("--out", default=None, help="save the samples (.npy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true", help="fewer samples")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.fast:
        args.n = 500
    options = dict(parse_option(o) for o in args.option)
    print(f"{args.sampler}: options {unnoise.samplers.sampler_options(args.sampler)}, using {options or 'defaults'}")
    g = torch.Generator().manual_seed(args.seed)
    result = {"sampler": args.sampler, "steps": args.steps}
    if args.checkpoint:
        x = unnoise.load(args.checkpoint).sample(args.n, sampler=args.sampler, steps=args.steps, generator=g,
                                                 **options)
    else:
        ring = unnoise.analytic.GaussianMixture.ring(k=8, radius=2.0, std=0.1)
        sigmas = unnoise.schedules.Karras(sigma_min=0.002, sigma_max=80.0).sampling_sigmas(args.steps)
        x_T = torch.randn(args.n, 2, generator=g) * sigmas[0]
        x, nfe = unnoise.sample(ring.denoise, x_T, sigmas, sampler=args.sampler, generator=g, return_nfe=True,
                                **options)
        exact = ring.sample(args.n, generator=torch.Generator().manual_seed(args.seed + 1))
        exact2 = ring.sample(args.n, generator=torch.Generator().manual_seed(args.seed + 2))
        swd = unnoise.metrics.sliced_wasserstein(x, exact, generator=torch.Generator().manual_seed(0))
        floor = unnoise.metrics.sliced_wasserstein(exact2, exact, generator=torch.Generator().manual_seed(0))
        result.update(nfe=nfe, swd=swd, swd_floor=floor)
    if args.out:
        np.save(args.out, x.numpy())
    result["finite"] = bool(torch.isfinite(x).all())
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
