"""Compute log-likelihoods with the probability-flow ODE and DDPM's variational bound.

    .venv/bin/python examples/likelihood.py                  # on an exact 2-D mixture (checked against the truth)
    .venv/bin/python examples/likelihood.py --checkpoint runs/mine --data points.npy

``unnoise.likelihood.nll`` integrates the probability-flow ODE from the data (at ``sigma_min``) to
``sigma_max`` and adds the change of log-density; it returns nats per example.  With an exact
denoiser it reproduces the exact ``-log p`` of the mixture smoothed by ``N(0, sigma_min^2 I)``.
``unnoise.likelihood.ddpm_elbo`` is the discrete-time bound, which is never below the exact NLL.
"""
from __future__ import annotations

import argparse
import json

import torch

import unnoise
from unnoise.likelihood import bits_per_dim, ddpm_elbo, nll


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="a run directory written by 'unnoise train'")
    p.add_argument("--data", default=None, help="with --checkpoint: a .npy file of examples to score")
    p.add_argument("--n", type=int, default=64, help="examples to score")
    p.add_argument("--fast", action="store_true", help="fewer examples, looser tolerances")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    tol = 1e-4 if args.fast else 1e-5
    n = 16 if args.fast else args.n
    if args.checkpoint:
        from unnoise.checkpoint import load
        from unnoise.data import load_array
        from unnoise.train import standardise
        if not args.data:
            raise SystemExit("--checkpoint needs --data, the examples to score")
        denoiser, schedule, config = load(args.checkpoint)
        x = load_array(args.data)[:n]
        stats = config["data"].get("normalization")
        if stats:  # the model lives in standardised units: score there (add log|std| per dim for data units)
            mean, std = torch.tensor(stats["mean"]), torch.tensor(stats["std"])
            x = ((x.reshape(len(x), -1) - mean) / std).reshape(x.shape)
        with torch.no_grad():
            est = nll(denoiser, x, sigma_max=schedule.sigma_max, rtol=tol, atol=tol,
                      divergence="exact" if x[0].numel() <= 32 else "hutchinson",
                      generator=torch.Generator().manual_seed(0))
        result = {"nll_nats": float(est.mean()), "bits_per_dim": float(bits_per_dim(est.mean(), x[0].numel()))}
        del standardise
    else:
        gm = unnoise.analytic.GaussianMixture.random(4, 2, generator=torch.Generator().manual_seed(0))
        x = gm.sample(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        est = nll(gm.denoise, x, sigma_max=80.0, sigma_min=1e-3, rtol=tol, atol=tol)
        exact = -gm.log_prob(x, 1e-3)
        # DDPM's bound works in the VP chain's units; score the same points on the DDPM schedule
        sched = unnoise.schedules.DDPM(num_steps=200 if args.fast else 1000)
        bound = ddpm_elbo(gm.denoise, sched, x)
        exact0 = -gm.log_prob(x, 0.0)
        result = {"nll_ode": float(est.mean()), "nll_exact": float(exact.mean()),
                  "max_abs_error": float((est - exact).abs().max()),
                  "elbo_bound": float(bound.mean()), "nll_exact_sigma0": float(exact0.mean()),
                  "bits_per_dim": float(bits_per_dim(est.mean(), 2))}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
