"""unnoise's samplers against diffusers' schedulers at 5 and 10 denoiser evaluations.

Both sides sample the same Gaussian mixture through the same exact denoiser under the same DDPM
noise process (linear betas 1e-4..0.02 over 1000 steps), from the same starting noise, and are
scored by the sliced Wasserstein distance (SWD) to exact mixture samples of the same size.  The
exact-vs-exact SWD (two independent exact sample sets) is the floor of the metric.

* diffusers: DDIM, Euler, Heun, DPM-Solver++ 2M and 3M, UniPC and DEIS, each run under every
  timestep spacing (leading, leading + steps_offset=1, linspace, trailing) and, where the
  scheduler supports them, Karras and exponential sigmas; the best configuration per scheduler is
  reported.  The denoiser is converted to diffusers' convention: the model sees ``x_t = s x``
  and returns ``eps = (x - D(x, sigma)) / sigma`` with ``x = x_t * sqrt(1 + sigma^2)``, where
  ``sigma`` is the scheduler's own sigma for the step when it keeps one (so a rounded timestep
  never costs diffusers accuracy) and ``sqrt((1 - abar_t) / abar_t)`` otherwise (DDIM).
* unnoise: every registered sampler (``unnoise.samplers.available()``) on the trailing grid,
  the Karras grid over the same VP sigma range, and, for deterministic samplers, the automatic
  grid of ``unnoise.compare.auto_grid``: ``unnoise.samplers.optimize_sigmas`` from sigma_max = 157
  down to a lower end from ``AUTO_SIGMA_MIN`` (then 0), the lower end picked by the RMS error
  against the exact ODE map on a separate pilot batch.

Besides SWD, deterministic rows report the RMS distance of each sample to the exact
probability-flow ODE map of its own starting noise (tight Dormand-Prince): free of sampling noise,
it separates samplers whose SWD sits at the floor.

NFE are real denoiser calls on both sides: for a budget each sampler/scheduler gets the largest
number of steps whose counted calls fit (Heun: 3 steps = 5 calls).  The unnoise DDIM/Euler rows
on the trailing grid reproduce diffusers' DDIM/Euler (trailing) as a cross-check.

Run: ``.venv/bin/python benchmarks/samplers_vs_diffusers.py [--write-docs]``
(a few minutes on one CPU core).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time

import torch

import unnoise
from unnoise import compare, samplers, schedules

BUDGETS = (5, 10)
# title -> (mixture, samples per run); 2-D runs are cheap, so they get more samples (less metric noise)
PROBLEMS = {"2-D ring of 8 (ring2d)": ("ring2d", 40000), "16-D random mixture of 8 (random16d)": ("random16d", 10000)}
SPACINGS = {"leading": {"timestep_spacing": "leading"},
            "leading+1": {"timestep_spacing": "leading", "steps_offset": 1},
            "linspace": {"timestep_spacing": "linspace"},
            "trailing": {"timestep_spacing": "trailing"}}
SIGMA_KINDS = ("use_karras_sigmas", "use_exponential_sigmas")
AUTO_SIGMA_MIN = (0.0, 0.1, 0.5)  # candidate lower ends of the automatic grid (0: the schedule's own)
AUTO_EVALS = 40  # sampler runs per optimize_sigmas call (pilot batch of 64)
REF_FACTOR = 5  # exact reference samples per evaluated sample: the metric's noise is then mostly the run's own


def diffusers_schedulers():
    from diffusers import (DDIMScheduler, DEISMultistepScheduler, DPMSolverMultistepScheduler,
                           EulerDiscreteScheduler, HeunDiscreteScheduler, UniPCMultistepScheduler)
    return {
        # clip_sample defaults to True for DDIM (x0 clamped to [-1, 1]); the mixture lives beyond that
        "DDIM": (DDIMScheduler, {"clip_sample": False}),
        "Euler": (EulerDiscreteScheduler, {}),
        "Heun": (HeunDiscreteScheduler, {}),
        "DPM++2M": (DPMSolverMultistepScheduler, {"solver_order": 2, "algorithm_type": "dpmsolver++"}),
        "DPM++3M": (DPMSolverMultistepScheduler, {"solver_order": 3, "algorithm_type": "dpmsolver++"}),
        "UniPC": (UniPCMultistepScheduler, {}),
        "DEIS": (DEISMultistepScheduler, {}),
    }


def diffusers_configs(cls, base):
    import inspect
    params = inspect.signature(cls.__init__).parameters
    for sp_name, sp in SPACINGS.items():
        yield sp_name, {**base, **sp}
        for kind in SIGMA_KINDS:
            if kind in params:
                yield f"{sp_name}, {kind[4:-7]} sigmas", {**base, **sp, kind: True}


def run_diffusers(cls, cfg, steps, denoise, z):
    """Sample with a diffusers scheduler; returns ``(x0, real denoiser calls)``."""
    s = cls(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
            prediction_type="epsilon", **cfg)
    s.set_timesteps(steps)
    abar = s.alphas_cumprod.double()
    own = getattr(s, "sigmas", None)
    x = z * s.init_noise_sigma
    calls = 0
    for i, t in enumerate(s.timesteps):
        inp = s.scale_model_input(x, t)
        sigma = float(own[i]) if own is not None else math.sqrt((1 - abar[int(t)]) / abar[int(t)])
        xs = inp.double() * math.sqrt(1 + sigma**2)  # scale-free x = x_t / s
        eps = (xs - denoise(xs, sigma)) / sigma
        calls += 1
        x = s.step(eps.to(x.dtype), t, x).prev_sample
    return x, calls


def schedule_key(cls, cfg, steps):
    """What a configuration actually runs: its timesteps and sigmas (or alphas) after set_timesteps."""
    s = cls(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
            prediction_type="epsilon", **cfg)
    s.set_timesteps(steps)
    own = getattr(s, "sigmas", None)
    extra = tuple(own.tolist()) if own is not None else None
    rest = tuple(sorted((k, v) for k, v in cfg.items() if k not in ("timestep_spacing", "steps_offset")
                        and not k.startswith("use_")))
    return cls.__name__, rest, tuple(s.timesteps.tolist()), extra


def fit_diffusers(cls, cfg, budget, denoise, probe):
    for steps in range(budget, 0, -1):
        try:
            _, calls = run_diffusers(cls, cfg, steps, denoise, probe)
        except Exception:  # noqa: BLE001 - a configuration diffusers rejects for this step count
            continue
        if calls <= budget:
            return steps
    return None


class SlicedW2:
    """Sliced Wasserstein-2 distance to one fixed reference sample, as ``unnoise.metrics.sliced_wasserstein``
    (same directions for a seed, quantiles at ``(i + 1/2)/k`` with linear interpolation) but with the
    reference's projections sorted once, since every run is scored against the same reference."""

    def __init__(self, reference, num_projections=256, seed=0):
        ref = reference.reshape(len(reference), -1).double()
        dirs = torch.randn(ref.shape[1], num_projections, generator=torch.Generator().manual_seed(seed),
                           dtype=torch.float64)
        self.dirs = dirs / dirs.norm(dim=0, keepdim=True)
        self.ref_sorted = (ref @ self.dirs).sort(0).values
        self.cache = {}

    def _ref_quantiles(self, k):
        if k not in self.cache:
            q = (torch.arange(k, dtype=torch.float64) + 0.5) / k
            pos = q * (len(self.ref_sorted) - 1)  # torch.quantile's linear interpolation
            lo = pos.floor().long()
            hi = (lo + 1).clamp(max=len(self.ref_sorted) - 1)
            w = (pos - lo)[:, None]
            self.cache[k] = self.ref_sorted[lo] * (1 - w) + self.ref_sorted[hi] * w
        return self.cache[k]

    def __call__(self, x):
        x = x.reshape(len(x), -1).double()
        if not torch.all(torch.isfinite(x)):
            return float("inf")
        if len(x) > len(self.ref_sorted):
            raise ValueError("evaluate at most as many samples as the reference holds")
        px = (x @ self.dirs).sort(0).values
        return float(((px - self._ref_quantiles(len(x))) ** 2).mean().sqrt())


def rms(a, b):
    return float(((a.double() - b.double()) ** 2).sum(1).mean().sqrt())


def bench_problem(mixture, n, seed, log):
    gm = compare.builtin_mixture(mixture)
    dim = gm.dim
    sched = schedules.DDPM()
    g = torch.Generator().manual_seed(seed + 100)
    exact, exact_n = gm.sample(REF_FACTOR * n, generator=g), gm.sample(n, generator=g)
    swd = SlicedW2(exact, num_projections=128 if dim == 2 else 256, seed=seed)
    floor = swd(exact_n)
    z = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    probe = torch.randn(2, dim, generator=torch.Generator().manual_seed(seed + 7))

    def denoise(x, sigma):
        return gm.denoise(x, sigma)

    t0 = time.perf_counter()
    ode = compare.ode_map(denoise, z.double() * sched.sigma_max, sched.sigma_max)
    ode_swd = swd(ode)

    results = {"n": n, "floor": floor, "ode_swd": ode_swd, "diffusers": {}, "unnoise": {}}
    # ---------------------------------------------------------------- diffusers
    for name, (cls, base) in diffusers_schedulers().items():
        for budget in BUDGETS:
            best, seen = None, set()
            for label, cfg in diffusers_configs(cls, base):
                steps = fit_diffusers(cls, cfg, budget, denoise, probe)
                if steps is None:
                    continue
                key = schedule_key(cls, cfg, steps)
                if key in seen:  # e.g. Karras sigmas come out the same under several spacings
                    continue
                seen.add(key)
                try:
                    out, calls = run_diffusers(cls, cfg, steps, denoise, z.clone())
                except Exception as err:  # noqa: BLE001
                    log(f"  diffusers {name} [{label}] failed: {err}")
                    continue
                d, e = swd(out), rms(out, ode)
                log(f"  [{time.perf_counter() - t0:5.0f}s] diffusers {name:<8} NFE {calls:>2} ({steps:>2} steps) "
                    f"[{label}]: SWD {d:.4f}, ODE error {e:.4f}")
                if best is None or d < best[0]:
                    best = (d, calls, steps, label, e)
            results["diffusers"][(name, budget)] = best
    log(f"  diffusers done in {time.perf_counter() - t0:.0f} s")
    # ---------------------------------------------------------------- unnoise
    optimize = getattr(samplers, "optimize_sigmas", None)
    auto_cache = {}

    def grid(kind, steps, name):
        if kind != "auto":
            return sched.sampling_sigmas(steps, kind)
        if (steps, name) not in auto_cache:  # tuned on a pilot batch of its own, never on the evaluation
            auto_cache[steps, name] = compare.auto_grid(denoise, (dim,), steps, name, sched.sigma_min,
                                                        sched.sigma_max, lower_ends=AUTO_SIGMA_MIN, seed=seed,
                                                        max_evals=AUTO_EVALS)
        return auto_cache[steps, name]

    kinds = ["trailing", "karras"] + (["auto"] if optimize is not None else [])
    for name in samplers.available():
        stochastic = compare.is_stochastic(denoise, name, sched.sampling_sigmas(3, "karras"), probe)
        for budget in BUDGETS:
            best = None
            for kind in kinds:
                if kind == "auto" and (stochastic or compare.is_adaptive(name)):
                    continue
                opts = {}
                try:
                    if compare.is_adaptive(name):
                        tol, _ = compare.fit_tolerance(denoise, name, budget, grid(kind, 2, name), z[:256])
                        if tol is None:
                            continue
                        steps, opts = 2, {"rtol": tol, "atol": tol}
                    else:
                        steps, _ = compare.fit_steps(denoise, name, budget,
                                                     lambda st: sched.sampling_sigmas(st, "karras"), probe)
                        if steps is None:
                            continue
                    sig = grid(kind, steps, name)
                    out, calls = unnoise.sample(denoise, z * sig[0], sig, sampler=name, return_nfe=True,
                                                generator=torch.Generator().manual_seed(seed + 1), **opts)
                except (ValueError, RuntimeError) as err:
                    log(f"  unnoise {name} [{kind}] failed: {err}")
                    continue
                d, e = swd(out), (math.nan if stochastic else rms(out, ode))
                log(f"  [{time.perf_counter() - t0:5.0f}s] unnoise   {name:<20} NFE {calls:>2} ({steps:>2} steps) "
                    f"[{kind}]: SWD {d:.4f}, ODE error {e:.4f}")
                if best is None or d < best[0]:
                    best = (d, calls, steps, kind, e)
            results["unnoise"][(name, budget)] = best
    log(f"  unnoise done in {time.perf_counter() - t0:.0f} s")
    return results


def fmt(entry):
    if entry is None:
        return "-"
    d, calls, steps, label, e = entry
    return f"{d:.4f} ({calls} NFE, {label})"


def fmt_err(entry):
    return "-" if entry is None or math.isnan(entry[4]) else f"{entry[4]:.4f}"


def report(all_results, seconds):
    lines = []
    for title, res in all_results.items():
        n = res["n"]
        lines.append(f"**{title}** — {n} samples per run against {REF_FACTOR * n} exact samples.  Floors: {n} exact "
                     f"samples score SWD {res['floor']:.4f}; the exact ODE map of the same starting noise "
                     f"scores {res['ode_swd']:.4f} (the best a deterministic sampler can expect here)\n")
        lines.append("| | " + " | ".join(f"SWD at NFE <= {b} (config)" for b in BUDGETS) + " | "
                     + " | ".join(f"ODE error at {b}" for b in BUDGETS) + " |")
        lines.append("|---|" + "---|" * (2 * len(BUDGETS)))
        dif = res["diffusers"]

        def line(label, table, key):
            cells = [fmt(table.get((key, b))) for b in BUDGETS] + [fmt_err(table.get((key, b))) for b in BUDGETS]
            return f"| {label} | " + " | ".join(cells) + " |"
        for name in diffusers_schedulers():
            lines.append(line(f"diffusers {name}", dif, name))
        uni = res["unnoise"]
        names = sorted({k[0] for k in uni},
                       key=lambda nm: uni.get((nm, BUDGETS[0]))[0] if uni.get((nm, BUDGETS[0])) else math.inf)
        for name in names:
            lines.append(line(f"unnoise {name}", uni, name))
        lines.append("")
        over = [nm for nm in names if all(uni.get((nm, b)) is None for b in BUDGETS)]
        if over:
            lines.append(f"- no run fits {max(BUDGETS)} NFE: {', '.join(over)}")
        for b in BUDGETS:
            best_d = min((v for k, v in dif.items() if k[1] == b and v), key=lambda v: v[0])
            best_u_name, best_u = min(((k[0], v) for k, v in uni.items() if k[1] == b and v),
                                      key=lambda kv: kv[1][0])
            best_d_name = next(k[0] for k, v in dif.items() if v is best_d)
            verdict = "lower" if best_u[0] < best_d[0] else "NOT lower"
            best_de = min((v for k, v in dif.items() if k[1] == b and v), key=lambda v: v[4])
            best_ue = min((v for k, v in uni.items() if k[1] == b and v and not math.isnan(v[4])),
                          key=lambda v: v[4])
            lines.append(f"- NFE <= {b}: best unnoise `{best_u_name}` SWD {best_u[0]:.4f} vs best diffusers "
                         f"{best_d_name} {best_d[0]:.4f} ({verdict}; ratio {best_u[0] / best_d[0]:.2f}; "
                         f"floors {res['floor']:.4f} / {res['ode_swd']:.4f}); smallest ODE error in the table: unnoise "
                         f"{best_ue[4]:.4f} vs diffusers {best_de[4]:.4f} (ratio {best_ue[4] / best_de[4]:.2f})")
        lines.append("")
    lines.append(f"Total time {seconds:.0f} s, torch {torch.__version__}, "
                 f"diffusers {__import__('diffusers').__version__}.")
    return "\n".join(lines)


def cross_check(n=2000, seed=0, steps=10):
    """unnoise ddim/euler/heun vs diffusers DDIM/Euler/Heun on the trailing grid: max |difference| of samples."""
    gm = compare.builtin_mixture("ring2d")
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    sched = schedules.DDPM()
    table = diffusers_schedulers()
    out = {}
    for name, key in (("ddim", "DDIM"), ("euler", "Euler"), ("heun", "Heun")):
        cls, base = table[key]
        ref, _ = run_diffusers(cls, {**base, "timestep_spacing": "trailing"}, steps, gm.denoise, z.clone())
        sig = sched.sampling_sigmas(steps, "trailing")
        # diffusers' DDIM starts at x_T = z, i.e. scale-free z * sqrt(1 + sigma^2); Euler/Heun at z * sigma
        start = z * math.sqrt(1 + float(sig[0]) ** 2) if name == "ddim" else z * sig[0]
        mine = unnoise.sample(gm.denoise, start, sig, sampler=name)
        out[key] = float((mine - ref).abs().max())
    return out


SECTION = ("<!-- samplers_vs_diffusers:start -->", "<!-- samplers_vs_diffusers:end -->")


def write_docs(text, path):
    header = "## Samplers vs diffusers at 5 and 10 denoiser evaluations\n\n"
    intro = ("Measured by `.venv/bin/python benchmarks/samplers_vs_diffusers.py --write-docs`: both libraries in one "
             "process, the same exact Gaussian-mixture denoiser, the same DDPM noise process (linear betas "
             "1e-4..0.02, 1000 steps), the same starting noise.  NFE are counted denoiser calls; each sampler or "
             "scheduler gets the most steps that fit the budget.  Each cell gives the sliced Wasserstein distance "
             "(SWD, lower is better) to exact samples of the best configuration, its real NFE and the configuration "
             "(diffusers: timestep spacing x Karras/exponential sigmas; unnoise: trailing, karras or the automatic "
             "grid `auto`).  *ODE error* is that configuration's RMS distance to the exact probability-flow ODE map "
             "of the same starting noise (deterministic samplers only): it has no sampling noise, so it still ranks "
             "samplers whose SWD has reached the floor of the metric.  Stochastic samplers are scored by SWD "
             "alone.\n\n"
             "Reading the numbers: diffusers is given the exact sigma of each step (a real model would see a "
             "rounded timestep) and the best of up to 12 configurations per scheduler.  unnoise's `auto` grid is "
             "tuned once per sampler, budget and problem, away from the evaluation samples "
             "(`unnoise.compare.auto_grid`: three `optimize_sigmas` searches of 40 runs on a 64-point pilot, "
             "judged against an accurate ODE solve of 256 other points); that one-off cost is not counted in "
             "the NFE.  Where an SWD is at or below the floors given above its table, differences are within "
             "the noise of the metric and the ODE error is the number that separates the samplers.\n\n")
    block = f"{SECTION[0]}\n{header}{intro}{text}\n{SECTION[1]}\n"
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    if SECTION[0] in old:
        new = re.sub(re.escape(SECTION[0]) + ".*?" + re.escape(SECTION[1]) + "\n?", lambda m: block, old, flags=re.S)
    else:
        new = old.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(new)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=None,
                   help="samples per run (default: 40000 in 2-D, 10000 in 16-D); the reference has 5 times as many")
    p.add_argument("--only", default=None, help="comma-separated mixtures to run (default: ring2d,random16d)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="only print the final tables")
    p.add_argument("--write-docs", action="store_true", help="write the tables into docs/benchmarks.md")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    t0 = time.perf_counter()
    cc = cross_check()
    cc_text = ", ".join(f"{k} {v:.1e}" for k, v in cc.items())
    print(f"cross-check, max |unnoise - diffusers| over 2000 samples, 10 trailing steps: {cc_text}")
    results = {}
    for title, (mixture, n) in PROBLEMS.items():
        if args.only and mixture not in args.only.split(","):
            continue
        log(f"{title}:")
        results[title] = bench_problem(mixture, args.n or n, args.seed, log)
    text = report(results, time.perf_counter() - t0)
    text += (f"\nCross-check (same algorithm, same trailing grid, 10 steps, 2000 samples): "
             f"max |unnoise - diffusers| = {cc_text}.\n")
    print("\n" + text)
    if args.write_docs:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmarks.md")
        write_docs(text, os.path.normpath(path))
        print(f"wrote {os.path.normpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
