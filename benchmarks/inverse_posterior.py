"""Posterior sampling for y = A x + noise: unnoise.inverse vs azula, scored against exact posteriors.

Part 1 (exact posteriors).  A Gaussian-mixture prior observed through a linear operator with
Gaussian noise has a Gaussian-mixture posterior in closed form
(``unnoise.analytic.GaussianMixture.posterior``).  Every method is driven by the *exact* prior
denoiser, so its distance to the exact posterior is the method's own bias plus the sampler's
discretisation error; the sliced Wasserstein distance (SWD) of its samples to exact posterior
samples is averaged over seeds.  Floors: two independent exact sample sets (the metric's floor), and
the exact *posterior* denoiser run through the same DDPM chain (the discretisation floor, what any
method riding that chain can reach at best).

* problem ``8d``: random 5-component mixture in 8-D (``GaussianMixture.random``), ``y = A x + 0.1 n`` with a
  random 3x8 Gaussian matrix ``A`` (entries ``N(0, 1/2)``), ``x`` drawn from the prior;
* problem ``2d``: the 2-D three-component mixture of tests/test_inverse.py, ``x_1`` observed through a
  ``Mask`` with noise 0.1 (a bimodal posterior with mode weights 0.69 / 0.31).

unnoise: ``dps`` (step swept, best reported), ``pgdm``, ``mmps`` (CG iterations = number of
measurements), ``ddnm``, ``smc`` (16 and 64 particles), all on the Karras grid (sigma 80 .. 0.002, then 0)
with DDPM steps.  azula (installed without dependencies, same process, same exact denoiser wrapped as an
azula ``Denoiser`` on its ``VESchedule(1e-3, 80)``): ``DPSSampler`` (``zeta`` swept, best reported) and
``MMPSDenoiser`` (CG, same iterations) under ``DDPMSampler``, on azula's own time grid.  NFE = forward
denoiser calls = steps; VJPs (backward passes) and, for SMC, denoiser rows are reported beside it.

Part 2 (restoration of held-out digits).  Prior: the exact denoiser of a kernel density estimate of 1497
training digits (8x8, scikit-learn, in [-1, 1]): each training digit smoothed by ``N(0, 0.15^2 I)``, computed
from ``unnoise.analytic.EmpiricalDenoiser`` (:class:`SmoothedEmpirical`); 100
held-out digits are measured through ``Blur(sigma=2)`` (circular), ``Downsample(2)``, ``Downsample(4)``
and a 50 % random ``Mask``, all with noise 0.05, and restored with every method at 100 NFE.  Scores:
PSNR to the held-out truth (data range 2) and the consistency ``||A(x) - y|| / sqrt(m)`` (an RMS per
measurement; a sample of the exact posterior sits near the noise level 0.05).  The pseudo-inverse
``A^+ y`` is the no-prior baseline (for the blur it amplifies the noise in the nearly destroyed
frequencies).  This prior stays close to its training set, so PSNR measures how well each method finds
training digits that agree with the measurement more than generalisation.

Run: ``.venv/bin/python benchmarks/inverse_posterior.py`` (about ten minutes on one CPU core;
``--quick`` for a smoke run).
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from unnoise import analytic, inverse, metrics, schedules
from unnoise.data.images import load_digits

F64 = torch.float64


# ------------------------------------------------------------------------------------------ problems
def problem_8d():
    g = torch.Generator().manual_seed(0)
    prior = analytic.GaussianMixture.random(5, 8, generator=g)
    A = torch.randn(3, 8, generator=g, dtype=F64) / math.sqrt(2)
    op = inverse.Matrix(A)
    x_true = prior.sample(1, generator=g, dtype=F64)
    y = op(x_true) + 0.1 * torch.randn(1, 3, generator=g, dtype=F64)
    return "8-D mixture, 3x8 matrix, noise 0.1", prior, op, y, 0.1, (8,)


def problem_2d():
    prior = analytic.GaussianMixture([[-1.3, -1.2], [-0.5, 1.2], [1.5, 0.0]],
                                     [[0.3, 0.4], [0.3, 0.3], [0.5, 0.3]], [0.3, 0.3, 0.4])
    op = inverse.Mask(torch.tensor([1.0, 0.0], dtype=F64))
    y = torch.tensor([[-1.0, 0.0]], dtype=F64)
    return "2-D mixture, mask (x_1 observed), noise 0.1", prior, op, y, 0.1, (2,)


# ------------------------------------------------------------------------------------------ azula
def azula_methods():
    from azula.denoise import DiracPosterior, Denoiser
    from azula.guidance.dps import DPSSampler
    from azula.guidance.mmps import MMPSDenoiser
    from azula.linalg.covariance import IsotropicCovariance
    from azula.noise import VESchedule
    from azula.sample import DDPMSampler

    class Exact(Denoiser):
        def __init__(self, gm):
            super().__init__()
            self.gm, self.schedule = gm, VESchedule(1e-3, 80.0)

        def forward(self, x_t, t, **kwargs):
            _, sigma = self.schedule(t)
            self.calls += 1
            return DiracPosterior(mean=self.gm.denoise(x_t, sigma.reshape(-1).expand(x_t.shape[0])))

    def dps(gm, op, y, noise, z, steps, zeta):
        den = Exact(gm)
        den.calls = 0
        s = DPSSampler(den, y=y, A=op.forward, zeta=zeta, steps=steps, silent=True, dtype=F64)
        return s(z), den.calls

    def mmps(gm, op, y, noise, z, steps, iterations):
        den = Exact(gm)
        den.calls = 0
        guided = MMPSDenoiser(den, y=y, A=op.forward, cov_y=IsotropicCovariance(noise**2), solver="cg",
                              iterations=iterations)
        s = DDPMSampler(guided, steps=steps, silent=True, dtype=F64)
        return s(z), den.calls
    return dps, mmps


# ------------------------------------------------------------------------------------------ part 1
def swd(a, b):
    return metrics.sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(0))


def run_exact(problem, n, budgets, seeds, particles, dps_steps, azula_zetas, extra=()):
    title, prior, op, y, noise, shape = problem
    post = prior.posterior(op, y[0], noise)
    m = int((op.matrix(shape).abs().sum(1) > 0).sum())
    yb = y.expand(n, *y.shape[1:])
    refs = [post.sample(n, generator=torch.Generator().manual_seed(100 + s), dtype=F64) for s in seeds]
    floor = sum(swd(post.sample(n, generator=torch.Generator().manual_seed(200 + s), dtype=F64), r)
                for s, r in zip(seeds, refs)) / len(seeds)
    az_dps, az_mmps = azula_methods()
    rows = {}

    def record(name, nfe_budget, fn):
        vals, info = [], None
        t0 = time.perf_counter()
        for s, ref in zip(seeds, refs):
            out, info = fn(s)
            vals.append(swd(out, ref))
        rows.setdefault(name, {})[nfe_budget] = (sum(vals) / len(vals), info, time.perf_counter() - t0)

    for steps in list(budgets) + list(extra):
        sig = schedules.karras_sigmas(steps, 0.002, 80.0)
        full = steps in budgets

        def start(s):
            return torch.randn(n, *shape, generator=torch.Generator().manual_seed(s), dtype=F64) * sig[0]

        def ours(method, **opt):
            def fn(s):
                out, cost = inverse.sample(prior.denoise, start(s), sig, y=yb, operator=op, noise_std=noise,
                                           method=method, generator=torch.Generator().manual_seed(s + 1),
                                           return_cost=True, **opt)
                return out, cost
            return fn

        def exact_chain(s):
            from unnoise import sample
            out, nfe = sample(post.denoise, start(s), sig, sampler="ddpm", generator=torch.Generator().manual_seed(s + 1),
                              return_nfe=True)
            return out, {"nfe": nfe, "vjps": 0}
        record("exact posterior denoiser, DDPM (discretisation floor)", steps, exact_chain)
        if not full:  # a larger budget only for the exact-in-the-limit method
            record(f"unnoise smc, {particles[-1]} particles", steps, ours("smc", particles=particles[-1]))
            continue
        best = None
        for st in dps_steps:
            record(f"_dps{st}", steps, ours("dps", step=st))
            v = rows[f"_dps{st}"][steps]
            if best is None or v[0] < best[0]:
                best = (v[0], {**v[1], "step": st}, v[2])
        rows.setdefault("unnoise dps (best step)", {})[steps] = best
        record("unnoise pgdm", steps, ours("pgdm"))
        record("unnoise mmps", steps, ours("mmps", iterations=m))
        record("unnoise ddnm", steps, ours("ddnm"))
        for k in particles:
            record(f"unnoise smc, {k} particles", steps, ours("smc", particles=k))
        best = None
        for zeta in azula_zetas:
            def fn(s, zeta=zeta):
                z = torch.randn(n, *shape, generator=torch.Generator().manual_seed(s), dtype=F64) * 80.0
                torch.manual_seed(s + 1)
                out, calls = az_dps(prior, op, yb, noise, z, steps, zeta)
                return out, {"nfe": calls, "vjps": calls, "zeta": zeta}
            record(f"_az{zeta}", steps, fn)
            v = rows[f"_az{zeta}"][steps]
            if best is None or v[0] < best[0]:
                best = v
        rows.setdefault("azula DPSSampler (best zeta)", {})[steps] = best

        def az_m(s):
            z = torch.randn(n, *shape, generator=torch.Generator().manual_seed(s), dtype=F64) * 80.0
            torch.manual_seed(s + 1)
            out, calls = az_mmps(prior, op, yb, noise, z, steps, m)
            return out, {"nfe": calls, "vjps": calls * (m + 1)}
        record("azula MMPSDenoiser + DDPMSampler", steps, az_m)
    rows = {k: v for k, v in rows.items() if not k.startswith("_")}
    return title, floor, rows, post


def fmt_cost(info):
    parts = [f"{info['nfe']} NFE", f"{info.get('vjps', 0)} VJP"]
    if "rows" in info:
        parts.append(f"{info['rows'] // info['nfe']} rows/call")
    for key in ("step", "zeta"):
        if key in info:
            parts.append(f"{key} {info[key]:g}")
    return ", ".join(parts)


def print_exact(title, floor, rows, budgets, n, seeds):
    print(f"\n**{title}**: {n} samples, mean SWD over {len(seeds)} seeds; exact-vs-exact floor {floor:.4f}\n")
    print("| method | " + " | ".join(f"SWD at {b} NFE (cost)" for b in budgets) + " |")
    print("|---|" + "---|" * len(budgets))
    for name, per in rows.items():
        cells = [f"{per[b][0]:.4f} ({fmt_cost(per[b][1])})" if b in per else "-" for b in budgets]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for b in budgets:
        if not any(k.startswith("azula") and b in v for k, v in rows.items()):
            smc = {k: v[b][0] for k, v in rows.items() if "smc" in k and b in v}
            for k, v in smc.items():
                print(f"- {b} NFE (SMC only): `{k}` {v:.4f} = {v / floor:.2f} x the floor {floor:.4f}")
            continue
        ours = {k: v[b][0] for k, v in rows.items() if k.startswith("unnoise")}
        theirs = {k: v[b][0] for k, v in rows.items() if k.startswith("azula")}
        bo, bt = min(ours, key=ours.get), min(theirs, key=theirs.get)
        smc = {k: v for k, v in ours.items() if "smc" in k}
        bs = min(smc, key=smc.get)
        print(f"- {b} NFE: best unnoise `{bo}` {ours[bo]:.4f} vs best azula `{bt}` {theirs[bt]:.4f} "
              f"({'closer' if ours[bo] < theirs[bt] else 'NOT closer'}); best SMC {smc[bs]:.4f} = "
              f"{smc[bs] / floor:.2f} x the floor {floor:.4f}")


# ------------------------------------------------------------------------------------------ part 2
def psnr(x, ref):
    mse = ((x - ref) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


class SmoothedEmpirical:
    """Exact denoiser of the kernel density estimate ``(1/N) sum_i N(x_i, b^2 I)`` of a data set.

    Each component's posterior mean is ``x_i + b^2/(b^2 + sigma^2) (x - x_i)`` and the responsibilities
    are the empirical ones at ``sqrt(b^2 + sigma^2)``, so
    ``D(x, sigma) = sigma^2/(b^2 + sigma^2) D_emp(x, sqrt(b^2 + sigma^2)) + b^2/(b^2 + sigma^2) x``.
    """

    def __init__(self, data, bandwidth):
        self.emp, self.b2 = analytic.EmpiricalDenoiser(data), float(bandwidth) ** 2

    def __call__(self, x, sigma, cond=None):
        s2 = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0]) ** 2
        tot = s2 + self.b2
        out = self.emp(x, tot.sqrt())
        w = (s2 / tot).reshape(-1, *([1] * (x.ndim - 1)))
        return w * out + (1 - w) * x


def run_digits(n_test, steps, particles, dps_step, bandwidth=0.15):
    images, _, _ = load_digits()
    images = images.to(F64)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(images), generator=g)
    train, test = images[perm[300:]], images[perm[:n_test]]
    prior = SmoothedEmpirical(train, bandwidth)
    mask = (torch.rand(1, 8, 8, generator=g) < 0.5).to(F64)
    ops = {"blur 2": inverse.Blur(sigma=2.0, x_shape=(1, 8, 8)), "downsample x2": inverse.Downsample(2, (1, 8, 8)),
           "downsample x4": inverse.Downsample(4, (1, 8, 8)), "50% mask": inverse.Mask(mask)}
    noise = 0.05
    sig = schedules.karras_sigmas(steps, 0.002, 80.0)
    methods = [("dps", {"step": dps_step}), ("pgdm", {"data_var": 0.5}), ("mmps", {"iterations": 5}),
               ("ddnm", {"data_var": 0.5}), ("smc", {"particles": particles})]
    table = {}
    for name, op in ops.items():
        y = op(test) + noise * torch.randn(op(test).shape, generator=g, dtype=F64)
        m = int((op.matrix((1, 8, 8)).abs().sum(1) > 0).sum())

        def consistency(x):
            r = (op(x) - y)
            if isinstance(op, inverse.Mask):
                r = r * op.mask
            return float((r.flatten(1).norm(dim=1) / math.sqrt(m)).mean())
        base = op.pinv(y)
        table.setdefault("pseudo-inverse A^+ y (no prior)", {})[name] = (float(psnr(base, test).mean()),
                                                                         consistency(base), 0.0)
        for method, opt in methods:
            z = torch.randn(n_test, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64) * sig[0]
            t0 = time.perf_counter()
            out = inverse.sample(prior, z, sig, y=y, operator=op, noise_std=noise, method=method,
                                 generator=torch.Generator().manual_seed(2), **opt)
            label = f"unnoise {method}" + (f", {particles} particles" if method == "smc" else "")
            table.setdefault(label, {})[name] = (float(psnr(out, test).mean()), consistency(out),
                                                 time.perf_counter() - t0)
    return table, len(train)


def print_digits(table, n_train, n_test, steps):
    cols = list(next(iter(table.values())).keys())
    print(f"\n**Held-out digits** ({n_test} test images, prior = exact denoiser of the training digits ({n_train}) "
          f"smoothed by N(0, 0.15^2), noise 0.05, {steps} NFE): PSNR dB / consistency ||A(x) - y|| / sqrt(m)\n")
    print("| method | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, per in table.items():
        print(f"| {name} | " + " | ".join(f"{per[c][0]:.2f} / {per[c][1]:.3f}" for c in cols) + " |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--part", default="8d,2d,digits", help="comma-separated parts to run: 8d, 2d, digits")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if args.quick:
        n, seeds, budgets, particles, extra = 200, (0,), (50,), (4,), ()
        dps_steps, zetas, n_test, dig_particles = (0.03,), (1.0,), 10, 4
    else:
        n, seeds, budgets, particles, extra = 1000, (0, 1), (50, 100), (16, 64), (200,)
        dps_steps, zetas, n_test, dig_particles = (0.03, 0.1, 0.3, 1.0, 3.0), (1.0, 3.0, 10.0, 30.0, 100.0), 100, 16
    parts = args.part.split(",")
    for problem in [f() for key, f in (("8d", problem_8d), ("2d", problem_2d)) if key in parts]:
        title, floor, rows, _ = run_exact(problem, n, budgets, seeds, particles, dps_steps, zetas, extra)
        print_exact(title, floor, rows, list(budgets) + list(extra), n, seeds)
    if "digits" in parts:
        table, n_train = run_digits(n_test, 100, dig_particles, 0.1)
        print_digits(table, n_train, n_test, 100)
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
