"""Sample quality per denoiser evaluation for every sampler on the 2-D ring of 8 Gaussians.

With the exact mixture denoiser any remaining error is the sampler's own.  For each sampler and
NFE budget (5, 10, 20, plus 50 for the stochastic ones) it reports the sliced Wasserstein distance
between 2000 samples and 2000 exact samples, next to the exact-vs-exact floor, and for the
deterministic samplers also the RMS distance to a tight RK45 solve of the probability-flow ODE from
the same starts (cell format: ``SWD (NFE) / ODE error``).  All samplers use
the EDM (Karras, rho = 7) grid between sigma = 0.002 and 80; "auto" rows use the grid chosen by
``unnoise.samplers.optimize_sigmas`` for that sampler and budget.

Run: ``python benchmarks/samplers_ring.py`` (about a minute on one CPU core).  Only unnoise's
own samplers appear here; their agreement with diffusers' schedulers step for step is a unit test
(tests/test_samplers.py).
"""
from __future__ import annotations

import math
import time

import torch

import unnoise
from unnoise.metrics import sliced_wasserstein
from unnoise.schedules import karras_sigmas

N_POINTS, SIGMA_MIN, SIGMA_MAX = 2000, 0.002, 80.0

# sampler -> (options, steps for an NFE budget, budgets)
TWO_EVALS = lambda nfe: (nfe + 1) // 2  # noqa: E731  (2 steps - 1 evaluations)
ONE_EVAL = lambda nfe: nfe  # noqa: E731
SAMPLERS = {
    "ddim": ({}, ONE_EVAL),
    "euler": ({}, ONE_EVAL),
    "heun": ({}, TWO_EVALS),
    "dpmpp_2m": ({}, ONE_EVAL),
    "dpmpp_3m": ({}, ONE_EVAL),
    "unipc": ({}, ONE_EVAL),
    "deis": ({}, ONE_EVAL),
    "gradient_estimation": ({}, ONE_EVAL),
    "flow_euler": ({}, ONE_EVAL),
    "flow_heun": ({}, TWO_EVALS),
    "ddpm": ({}, ONE_EVAL),
    "euler_maruyama": ({}, ONE_EVAL),
    "pc": ({"n_corrector": 1}, lambda nfe: nfe // 2),
    "langevin": ({"n_steps_each": 2}, lambda nfe: (nfe - 1) // 2),
    "edm": ({"S_churn": 10.0}, TWO_EVALS),
}
STOCHASTIC = {"ddpm", "euler_maruyama", "pc", "langevin", "edm"}


def main():
    torch.set_num_threads(1)  # tiny tensors: thread hand-offs would dominate
    torch.manual_seed(0)
    ring = unnoise.analytic.GaussianMixture.ring()
    g = torch.Generator().manual_seed(0)
    exact, exact2 = ring.sample(N_POINTS, generator=g), ring.sample(N_POINTS, generator=g)
    x_T = torch.randn(N_POINTS, 2, generator=g) * SIGMA_MAX

    def swd(x):
        return sliced_wasserstein(x, exact, generator=torch.Generator().manual_seed(1))

    floor = swd(exact2)
    print(f"exact-vs-exact floor: SWD = {floor:.4f} (n = {N_POINTS})")
    # the deterministic samplers all approximate one map x_T -> x_0; their distance to a tight
    # solve of it from the same starts is a far sharper error measure than a distance between samples
    ref = unnoise.sample(ring.denoise, x_T.double(), torch.tensor([SIGMA_MAX, SIGMA_MIN, 0.0], dtype=torch.float64),
                         sampler="rk45", rtol=1e-7, atol=1e-7)
    print(f"| sampler | {' | '.join(f'NFE {b}' for b in (5, 10, 20, 50))} |")
    print("|---|---|---|---|---|")
    t0 = time.time()
    for name, (opts, steps_for) in SAMPLERS.items():
        cells = []
        for budget in (5, 10, 20, 50):
            if budget == 50 and name not in STOCHASTIC:
                cells.append("")
                continue
            steps = steps_for(budget)
            if steps < 1:
                cells.append("n/a")
                continue
            sig = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX)
            out, nfe = unnoise.sample(ring.denoise, x_T.clone(), sig, sampler=name, return_nfe=True,
                                      generator=torch.Generator().manual_seed(2), **opts)
            cell = f"{swd(out):.3f} ({nfe})"
            if name not in STOCHASTIC:
                cell += f" / {float((out.double() - ref).pow(2).mean().sqrt()):.2g}"
            cells.append(cell)
        print(f"| {name} | {' | '.join(cells)} |")
    sig = torch.cat([torch.exp(torch.linspace(math.log(5.0), math.log(0.05), 10)), torch.zeros(1)])
    out, nfe = unnoise.sample(ring.denoise, torch.randn(N_POINTS, 2, generator=g) * 5, sig, sampler="langevin",
                              n_steps_each=20, generator=torch.Generator().manual_seed(2), return_nfe=True)
    print(f"| langevin, 10 geometric levels 5 -> 0.05, 20 steps each | {swd(out):.3f} ({nfe}) |")
    for rtol in (1e-2, 1e-3, 1e-4):
        out, nfe = unnoise.sample(ring.denoise, x_T.clone(), torch.tensor([SIGMA_MAX, SIGMA_MIN, 0.0]),
                                  sampler="rk45", rtol=rtol, atol=rtol, return_nfe=True)
        print(f"| rk45 rtol=atol={rtol:g} | {swd(out):.3f} ({nfe}) / {float((out.double() - ref).pow(2).mean().sqrt()):.2g} |")
    for name in ("euler", "dpmpp_2m", "unipc", "deis", "heun"):
        for budget in (5, 10):
            steps = TWO_EVALS(budget) if name == "heun" else ONE_EVAL(budget)
            sig = unnoise.samplers.optimize_sigmas(ring.denoise, (2,), steps, sampler=name, sigma_min=SIGMA_MIN,
                                                   sigma_max=SIGMA_MAX, generator=torch.Generator().manual_seed(3))
            out, nfe = unnoise.sample(ring.denoise, x_T.clone(), sig, sampler=name, return_nfe=True)
            err = float((out.double() - ref).pow(2).mean().sqrt())
            print(f"| {name} auto grid, NFE {budget} | {swd(out):.3f} ({nfe}) / {err:.2g} | grid {[round(float(s), 3) for s in sig]}")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
