"""Write a new sampler, register it, and test it against DDIM on an exact mixture.

    .venv/bin/python examples/custom_sampler.py

A sampler is a function ``f(denoiser, x, sigmas, *, generator, callback, progress, **options)``
that starts at ``x`` (noise level ``sigmas[0]``) and returns the sample at ``sigmas[-1]``; it only
calls ``denoiser(x, sigma)``.  ``@unnoise.samplers.register(name)`` makes it available to
``unnoise.sample(..., sampler=name)`` (and to ``unnoise sample`` / ``unnoise compare-samplers``
when registered in an imported module).

The one written here is an exponential midpoint rule (a second-order cousin of DDIM, see
:func:`exp_midpoint`) for the probability-flow ODE.  With the
exact denoiser of a Gaussian mixture the ODE's true solution from each starting point can be
computed to high accuracy (``sampler="rk45"`` with tight tolerances), so each sampler's error is
measured directly, at an equal number of denoiser evaluations (NFE).
"""
from __future__ import annotations

import argparse
import json
import math

import torch

import unnoise


@unnoise.samplers.register("exp_midpoint")
def exp_midpoint(denoiser, x, sigmas, *, callback=None, progress=False):
    """Exponential midpoint rule on the probability-flow ODE: two evaluations per step.

    In ``u = log sigma`` the ODE ``dx/du = x - D(x, e^u)`` has a linear part ``x`` that an explicit
    Runge-Kutta step gets badly wrong for large steps (its factor ``1 + h + h^2/2`` is 1 at ``h = -2``
    where the truth is ``e^-2``).  Treating it exactly, with ``D`` frozen over the step, gives
    ``x' = (sigma'/sigma) x + (1 - sigma'/sigma) D`` (that is DDIM).  Here ``D`` is evaluated at the
    midpoint ``sigma_m = sqrt(sigma sigma')`` reached by a DDIM half step, which makes the step second
    order.  The step to ``sigma = 0`` is the ODE's exact limit ``x = D(x, sigma)``.
    """
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        den = denoiser(x, s)
        if s_next == 0:
            x = den
        else:
            s_mid = math.sqrt(s * s_next)
            x_mid = (s_mid / s) * x + (1 - s_mid / s) * den
            x = (s_next / s) * x + (1 - s_next / s) * denoiser(x_mid, s_mid)
        if callback is not None:
            callback(i, x, den, s)
    return x


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nfe", default="9,19,39", help="comma-separated evaluation budgets (odd: 2 per midpoint step + 1)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--fast", action="store_true", help="fewer samples")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    n = 200 if args.fast else args.n
    gm = unnoise.analytic.GaussianMixture.random(6, 2, generator=torch.Generator().manual_seed(0))
    sched = unnoise.schedules.Karras(sigma_min=0.002, sigma_max=80.0)
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 80.0
    # the ODE's solution from the same starting points, to high accuracy
    reference = unnoise.sample(gm.denoise, x_T, torch.tensor([80.0, 0.002, 0.0]), sampler="rk45",
                               rtol=1e-7, atol=1e-7)
    exact = gm.sample(n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    rows = []
    for budget in (int(b) for b in args.nfe.split(",")):
        # DDIM: one evaluation per step; exp_midpoint: two per step, except one for the step to 0
        for name, steps in (("ddim", budget), ("exp_midpoint", (budget + 1) // 2)):
            out, nfe = unnoise.sample(gm.denoise, x_T, sched.sampling_sigmas(steps), sampler=name, return_nfe=True)
            rms = float(((out - reference) ** 2).sum(1).mean().sqrt())
            swd = unnoise.metrics.sliced_wasserstein(out, exact, generator=torch.Generator().manual_seed(3))
            rows.append({"sampler": name, "nfe": nfe, "steps": steps, "ode_error_rms": rms, "swd_vs_exact": swd})
            print(f"{name:<12} NFE {nfe:>3} ({steps:>2} steps): RMS distance to the ODE solution {rms:.4f}, "
                  f"sliced Wasserstein to exact samples {swd:.4f}")
    print(json.dumps({"rows": rows, "registered": "exp_midpoint" in unnoise.samplers.available()}))
    return rows


if __name__ == "__main__":
    main()
