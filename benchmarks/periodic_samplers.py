"""Samplers on the torus: the exact periodic score in the lifted space, wrapped once or after every step,
against the "Euclidean" mistake of treating angles as numbers.

Target: a 2-D ``VonMisesMixture`` whose modes straddle +-pi (component 1 sits on the seam at theta_1 = pi,
so half of its mass is near +pi and half near -pi; component 3 sits at theta_2 = 2.9), with its exact
heat-kernel score, so every error is the sampler's own.  2000 samples from the same uniform starts on
``[-pi, pi)^2`` at sigma_max = 4 (where the noised density is uniform to ``2 e^-8 = 7e-4``), VE grid
``LogLinear(0.01, 4).sampling_sigmas(steps)`` (geometric, then 0), lifted denoiser ``vm.denoise``.

* **wrap at end**: ``wrap(unnoise.sample(...))``, the design of :mod:`unnoise.torus`.
* **wrap each step**: the same call with ``callback=lambda i, x, den, s: x.copy_(wrap(x))``: every sampler
  here continues from the tensor it hands to the callback, so the in-place wrap is exactly a projection
  after each step with the sampler's history (previous ``D`` or ``eps``) kept, as a forward process's
  per-step projection would do.
* **Euclidean**: a ``GaussianMixture`` fitted to each component's exact samples by their plain
  (unwrapped) means and standard deviations, sampled by the same samplers on ``LogLinear(0.01, 80)`` from
  ``80 z``; the result wrapped for scoring.

Scores: SWD = sliced Wasserstein distance on ``circular_embedding`` (cos, sin: 4-D) to 2000 exact samples
(``unnoise.metrics.sliced_wasserstein``, 256 projections, seed 1), next to the exact-vs-exact floor;
for deterministic samplers also the RMS circular distance ``|wrap(x - x_ref)|`` to a tight RK45 solve of the
probability-flow ODE from the same starts; and for the Euclidean rows the mass in the wrong place:
the total variation between the samples' histogram of theta_1 (36 bins) and the exact bin probabilities.

Run: ``python benchmarks/periodic_samplers.py`` (74 s on one shared CPU core).
"""
from __future__ import annotations

import math
import time

import torch

import unnoise
from unnoise.analytic import GaussianMixture, VonMisesMixture
from unnoise.metrics import sliced_wasserstein
from unnoise.schedules import LogLinear
from unnoise.torus import circular_embedding, wrap

N_POINTS, SIGMA_MIN, SIGMA_MAX, EUCLID_MAX = 2000, 0.01, 4.0, 80.0
BUDGETS = (5, 10, 20, 50, 100)
MEANS = [[math.pi, 0.5], [2.6, -2.0], [-1.0, 2.9]]
KAPPAS = [[8.0, 4.0], [20.0, 6.0], [6.0, 15.0]]
WEIGHTS = [0.4, 0.35, 0.25]
TWO_EVALS = lambda nfe: (nfe + 1) // 2  # noqa: E731  (heun: 2 steps - 1 evaluations)
ONE_EVAL = lambda nfe: nfe  # noqa: E731
SAMPLERS = {"euler": ONE_EVAL, "heun": TWO_EVALS, "ddim": ONE_EVAL, "dpmpp_2m": ONE_EVAL, "ipndm": ONE_EVAL,
            "ddpm": ONE_EVAL}
STOCHASTIC = {"ddpm"}
BINS = 36


def wrap_each_step(i, x, den, sigma):
    x.copy_(wrap(x))


def bin_probabilities(vm: VonMisesMixture, dim: int) -> torch.Tensor:
    """Exact probability of each of BINS equal bins of one angle (its marginal is a 1-D von Mises mixture)."""
    marginal = VonMisesMixture(vm.means[:, dim:dim + 1], vm.concentrations[:, dim:dim + 1], vm.weights)
    fine = 64  # nodes per bin, midpoint rule on a smooth density: error far below the sampling noise
    t = -math.pi + (torch.arange(BINS * fine, dtype=torch.float64) + 0.5) * (2 * math.pi / (BINS * fine))
    p = marginal.log_prob(t[:, None]).exp() * (2 * math.pi / (BINS * fine))
    return p.reshape(BINS, fine).sum(1)


def total_variation(theta: torch.Tensor, probs: torch.Tensor) -> float:
    idx = ((wrap(theta.double()) + math.pi) / (2 * math.pi) * BINS).long().clamp(0, BINS - 1)
    hist = torch.bincount(idx, minlength=BINS).double() / len(theta)
    return 0.5 * float((hist - probs).abs().sum())


def euclidean_fit(vm: VonMisesMixture, generator: torch.Generator) -> GaussianMixture:
    """Each component's plain mean and standard deviation of 100000 exact samples, angles taken as numbers."""
    means, stds = [], []
    for k in range(len(vm.weights)):
        comp = VonMisesMixture(vm.means[k:k + 1], vm.concentrations[k:k + 1])
        x = comp.sample(100000, generator=generator, dtype=torch.float64)
        means.append(x.mean(0))
        stds.append(x.std(0))
    return GaussianMixture(torch.stack(means), torch.stack(stds), vm.weights)


def main():
    torch.set_num_threads(1)  # small tensors: thread hand-offs would dominate
    vm = VonMisesMixture(MEANS, KAPPAS, WEIGHTS)
    g = torch.Generator().manual_seed(0)
    exact, exact2 = vm.sample(N_POINTS, generator=g), vm.sample(N_POINTS, generator=g)
    x_T = (torch.rand(N_POINTS, 2, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    z_T = torch.randn(N_POINTS, 2, generator=g, dtype=torch.float64) * EUCLID_MAX
    gm = euclidean_fit(vm, torch.Generator().manual_seed(4))
    probs = bin_probabilities(vm, 0)
    seam = float(probs[:3].sum() + probs[-3:].sum())  # exact mass within pi/6 of +-pi

    def swd(x):
        return sliced_wasserstein(circular_embedding(wrap(x)), circular_embedding(exact),
                                  generator=torch.Generator().manual_seed(1))

    def circ_err(x, ref):
        return float(wrap(x.double() - ref).pow(2).mean().sqrt())

    def near_seam(x):
        return float((wrap(x[:, 0].double()).abs() > 5 * math.pi / 6).double().mean())

    t0 = time.time()
    print(f"exact-vs-exact floor: SWD = {swd(exact2):.4f}; theta_1 histogram TV "
          f"{total_variation(exact2[:, 0], probs):.3f} (n = {N_POINTS}); exact mass within pi/6 of +-pi in theta_1: "
          f"{seam:.3f}")
    ref = unnoise.sample(vm.denoise, x_T.clone(), torch.tensor([SIGMA_MAX, SIGMA_MIN, 0.0], dtype=torch.float64),
                         sampler="rk45", rtol=1e-8, atol=1e-8)
    print(f"reference: rk45 rtol = atol = 1e-8 ({time.time() - t0:.0f} s)")
    print(f"| sampler | wrap | {' | '.join(f'NFE {b}' for b in BUDGETS)} |")
    print("|---|---|" + "---|" * len(BUDGETS))
    for name, steps_for in SAMPLERS.items():
        for mode, callback in (("at end", None), ("each step", wrap_each_step)):
            cells = []
            for budget in BUDGETS:
                sig = LogLinear(SIGMA_MIN, SIGMA_MAX).sampling_sigmas(steps_for(budget))
                out, nfe = unnoise.sample(vm.denoise, x_T.clone(), sig, sampler=name, return_nfe=True,
                                          callback=callback, generator=torch.Generator().manual_seed(2))
                out = wrap(out)
                cell = f"{swd(out):.3f} ({nfe})"
                if name not in STOCHASTIC:
                    cell += f" / {circ_err(out, ref):.2g}"
                cells.append(cell)
            print(f"| {name} | {mode} | {' | '.join(cells)} |", flush=True)
    print(f"({time.time() - t0:.0f} s)")
    crossed = torch.zeros(N_POINTS, dtype=torch.bool)
    last = [torch.floor((x_T + math.pi) / (2 * math.pi))]

    def count_crossings(i, x, den, sigma):  # the 2 pi-cell of the lift changed since the previous step
        cell = torch.floor((x + math.pi) / (2 * math.pi))
        crossed.logical_or_((cell != last[0]).any(1))
        last[0] = cell

    unnoise.sample(vm.denoise, x_T.clone(), LogLinear(SIGMA_MIN, SIGMA_MAX).sampling_sigmas(20), sampler="dpmpp_2m",
                   callback=count_crossings)
    print("particles whose lift crosses +-pi between two steps (dpmpp_2m, 20 NFE): "
          f"{float(crossed.double().mean()):.3f}")
    print("Euclidean: GaussianMixture fitted by unwrapped moments; means", [[round(v, 2) for v in m.tolist()]
                                                                          for m in gm.means],
          "stds", [[round(v, 2) for v in s.tolist()] for s in gm.stds])
    gm_exact = gm.sample(N_POINTS, generator=torch.Generator().manual_seed(5))
    print(f"| exact samples of the fitted GaussianMixture | SWD {swd(gm_exact):.3f} | theta_1 TV "
          f"{total_variation(gm_exact[:, 0], probs):.3f} | within pi/6 of +-pi {near_seam(gm_exact):.3f} |")
    print(f"| sampler | {' | '.join(f'NFE {b}' for b in BUDGETS)} |")
    print("|---|" + "---|" * len(BUDGETS))
    for name, steps_for in SAMPLERS.items():
        cells = []
        for budget in BUDGETS:
            sig = LogLinear(SIGMA_MIN, EUCLID_MAX).sampling_sigmas(steps_for(budget))
            out, nfe = unnoise.sample(gm.denoise, z_T.clone(), sig, sampler=name, return_nfe=True,
                                      generator=torch.Generator().manual_seed(2))
            cells.append(f"{swd(out):.3f} ({nfe}) / TV {total_variation(out[:, 0], probs):.2f}, "
                         f"seam {near_seam(out):.2f}")
        print(f"| {name} | {' | '.join(cells)} |", flush=True)
    out = wrap(unnoise.sample(vm.denoise, x_T.clone(), LogLinear(SIGMA_MIN, SIGMA_MAX).sampling_sigmas(20),
                              sampler="dpmpp_2m"))
    print(f"periodic dpmpp_2m, 20 NFE, wrap at end: theta_1 TV {total_variation(out[:, 0], probs):.3f}, "
          f"within pi/6 of +-pi {near_seam(out):.3f}")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
