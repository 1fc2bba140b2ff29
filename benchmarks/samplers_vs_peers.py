"""unnoise's default and best samplers against diffusers, k-diffusion and azula at 5, 10 and 20 NFE.

Peers run at 5 and 10 NFE (the issue's goals compare with them there), unnoise also at 20.  Each table runs in
one process (or one process per held-out mixture, merged) on held-out Gaussian mixtures (:func:`mixture`, seeds in ``HELD_OUT``; the
defaults in ``unnoise.samplers`` / ``unnoise.schedules`` were chosen with ``--tune`` on the seeds in ``TRAIN``),
with exact denoisers, the DDPM linear process (betas 1e-4..0.02 over 1000 steps, sigma_max = 157), the same
starting noise ``z`` for every method (``x_T = z`` in VP coordinates, ``157 z`` scale-free), and every denoiser
call counted.  Score: sliced Wasserstein-2 distance (SWD) to exact samples, averaged over the held-out mixtures
of a dimension; the floor is the SWD of a second exact sample of the same size.

* unnoise default: ``unnoise.sample(D, z * s[0], s)`` with ``s = DDPM().sampling_sigmas(nfe)``, no options.
* unnoise best: four deterministic samplers (``UNNOISE_SAMPLERS``) on every grid of
  ``unnoise_grids`` (fixed grids, not tuned per problem).
* diffusers 0.42: DDIM, Euler, Heun, DPM++2M/3M, UniPC, DEIS under every timestep spacing and Karras /
  exponential sigmas (``samplers_vs_diffusers.py``'s driver: the scheduler's own sigma reaches the denoiser).
* k-diffusion 0.1.1 (its ``sampling.py`` loaded from file): euler, heun, lms (orders 2-4), dpmpp_2m,
  dpmpp_2m_sde, dpmpp_3m_sde on Karras, exponential, polyexponential and DDPM-timestep grids.
* azula 0.11: DDIM, Euler, Heun, zAB/vAB, zEAB, xEAB, REAB (orders 2 and 3, zAB also 4), uniform in time on the DDPM process
  written as an azula schedule (log alpha_bar piecewise linear in t = timestep / 1000, 0 at t = 0), from t = 1
  to t = 1/1000, the table's smallest sigma (in a trial run t = 0 gave nearly the same results where they
  were finite; Heun and the EAB samplers divide by sigma = 0 there).
Each peer sampler is reported at its best configuration, chosen on the held-out mixtures themselves (which
only favours the peers).

Run: ``.venv/bin/python benchmarks/samplers_vs_peers.py [--n 1000] [--write-docs]`` (minutes, one core), or one
process per dimension, ``--dims 2 --save a.json`` and ``--dims 16 --save b.json``, then
``--merge a.json b.json --write-docs``;
``--tune`` instead runs the search on the training mixtures that chose the defaults and prints it.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time
import types

import torch

import unnoise
from unnoise import analytic, samplers, schedules

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from samplers_vs_diffusers import (SlicedW2, diffusers_configs, diffusers_schedulers, fit_diffusers,  # noqa: E402
                                   run_diffusers, schedule_key)

BUDGETS = (5, 10, 20)
PEER_BUDGETS = (5, 10)  # the goals compare with peers at 5 and 10; at 20 only the floor matters
DIMS = (2, 16)
TRAIN = tuple(range(4))  # mixture seeds the defaults were chosen on
HELD_OUT = (1000, 1001)  # mixture seeds of the evaluation
SCHED = schedules.DDPM()


def mixture(seed: int, dim: int) -> analytic.GaussianMixture:
    """One mixture of the family: 3-12 components, means ``spread * N(0, I)`` with spread in [1, 3], isotropic
    component stds in ``[lo, lo * (1 + 3u)]`` with ``lo`` in [0.02, 0.22], random weights."""
    g = torch.Generator().manual_seed(seed)
    k = int(torch.randint(3, 13, (1,), generator=g))
    lo = float(0.02 + 0.2 * torch.rand(1, generator=g))
    hi = lo * float(1 + 3 * torch.rand(1, generator=g))
    spread = float(1 + 2 * torch.rand(1, generator=g))
    return analytic.GaussianMixture.random(k, dim, spread=spread, std_range=(lo, hi), generator=g)


class Counted:
    """Counts calls of a denoiser ``D(x, sigma)``, sigma a float or a batch tensor."""

    def __init__(self, gm):
        self.gm, self.calls = gm, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.gm.denoise(x, sigma)


# ----------------------------------------------------------------------------- unnoise
def unnoise_grids(steps):
    """Fixed grids unnoise's best is chosen among: the schedule's spacings and Karras / geometric grids."""
    out = {sp: SCHED.sampling_sigmas(steps, sp) for sp in ("default", "trailing")}
    for rho, lo in ((7.0, 0.05), (math.inf, 0.05), (math.inf, 0.2)):
        out[f"karras rho {rho:g}, min {lo:g}"] = schedules.karras_sigmas(steps, lo, SCHED.sigma_max, rho)
    return out


UNNOISE_SAMPLERS = [("ipndm", {"order": 3}), ("ipndm", {"order": 4}), ("dpmpp_3m", {}), ("unipc", {})]


def label(name, opts):
    return name + "".join(f" {k}={v}" for k, v in opts.items())


def run_unnoise(gm, z, budget, name, opts, grid_fn):
    """Largest step count whose counted NFE fits the budget; returns ``{grid label: (samples, nfe)}``."""
    out = {}
    for steps in range(budget, 0, -1):
        grids = grid_fn(steps)
        d = Counted(gm)
        probe = unnoise.sample(d, z[:2].double() * SCHED.sigma_max, next(iter(grids.values())).double(),
                               sampler=name, **opts)
        del probe
        if d.calls <= budget:
            for glabel, sig in grids.items():
                d = Counted(gm)
                x = unnoise.sample(d, z.double() * float(sig[0]), sig.double(), sampler=name, **opts)
                out[glabel] = (x, d.calls)
            return out
    return out


# ----------------------------------------------------------------------------- k-diffusion
def load_k_sampling():
    """k-diffusion's sampling.py from file; its imports of torchsde, torchdiffeq and its utils are stubbed
    (none of the samplers used here needs them once a noise sampler is passed)."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        return None
    pkg = types.ModuleType("_kd_ref")
    pkg.__path__ = []
    utils = types.ModuleType("_kd_ref.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    stubs = {"_kd_ref": pkg, "_kd_ref.utils": utils}
    for name in ("torchsde", "torchdiffeq"):
        if importlib.util.find_spec(name) is None:
            stub = types.ModuleType(name)
            stub.odeint = stub.BrownianTree = None
            stubs[name] = stub
    sys.modules.update(stubs)  # only while the module is executed: other packages probe for torchsde
    try:
        s = importlib.util.spec_from_file_location("_kd_ref.sampling",
                                                   os.path.join(os.path.dirname(spec.origin), "sampling.py"))
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
    finally:
        for name in stubs:
            sys.modules.pop(name, None)
    return mod


def k_grids(kd, steps):
    lo, hi = SCHED.sigma_min, SCHED.sigma_max
    log_sig = torch.log(SCHED.sigmas)
    t = torch.linspace(len(log_sig) - 1, 0, steps, dtype=torch.float64)  # k-diffusion's DiscreteSchedule.get_sigmas
    low, w = t.floor().long(), t.frac()
    ddpm = torch.exp((1 - w) * log_sig[low] + w * log_sig[(low + 1).clamp(max=len(log_sig) - 1)])
    return {"karras": kd.get_sigmas_karras(steps, lo, hi).double(),
            "exponential": kd.get_sigmas_exponential(steps, lo, hi).double(),
            "polyexponential rho 2": kd.get_sigmas_polyexponential(steps, lo, hi, rho=2.0).double(),
            "DDPM timesteps": torch.cat([ddpm, torch.zeros(1, dtype=torch.float64)])}


K_SAMPLERS = [("euler", {}), ("heun", {}), ("lms", {"order": 2}), ("lms", {"order": 3}),
              ("lms", {"order": 4}), ("dpmpp_2m", {}), ("dpmpp_2m_sde", {}), ("dpmpp_3m_sde", {})]


def run_k(kd, gm, z, budget, name, opts, seed):
    fn = getattr(kd, f"sample_{name}")
    for steps in range(budget, 0, -1):
        grids = k_grids(kd, steps)
        sig = grids["karras"]
        d = Counted(gm)
        kw = dict(opts)
        if "sde" in name:
            kw["noise_sampler"] = lambda s, t, g=torch.Generator().manual_seed(seed): torch.randn(2, z.shape[1],
                                                                                          generator=g).double()
        fn(lambda x, s: d(x, s), z[:2].double() * float(sig[0]), sig, disable=True, **kw)
        if d.calls <= budget:
            out = {}
            for glabel, sig in grids.items():
                d = Counted(gm)
                if "sde" in name:
                    g = torch.Generator().manual_seed(seed)
                    kw["noise_sampler"] = lambda s, t, g=g: torch.randn(z.shape, generator=g).double()
                x = fn(lambda x, s: d(x, s), z.double() * float(sig[0]), sig, disable=True, **kw)
                out[glabel] = (x, d.calls)
            return out
    return {}


# ----------------------------------------------------------------------------- azula
def azula_parts():
    try:
        from azula import sample as az
        from azula.denoise import Denoiser, DiracPosterior
        from azula.noise import Schedule
    except ImportError:
        return None
    log_ab = torch.cat([torch.zeros(1, dtype=torch.float64), torch.log(SCHED.alphas_cumprod)])  # at t = k / T

    class DDPMTime(Schedule):
        """The DDPM chain in azula's continuous time: log alpha_bar piecewise linear in t = timestep / T."""

        def __call__(self, t):
            t = torch.as_tensor(t, dtype=torch.float64)
            u = (t * (len(log_ab) - 1)).clamp(0, len(log_ab) - 1)
            lo = u.floor().long().clamp(max=len(log_ab) - 2)
            w = u - lo
            la = (1 - w) * log_ab[lo] + w * log_ab[lo + 1]
            return torch.exp(0.5 * la), torch.sqrt(-torch.expm1(la))

    class Exact(Denoiser):
        def __init__(self, counted):
            super().__init__()
            self.counted, self.schedule = counted, DDPMTime()

        def forward(self, x_t, t, **kwargs):
            alpha, sigma = self.schedule(t)
            return DiracPosterior(self.counted(x_t / alpha, float(sigma / alpha)))

    samplers_ = {"DDIM": (az.DDIMSampler, {}), "Euler": (az.EulerSampler, {}), "Heun": (az.HeunSampler, {})}
    for o in (2, 3):
        for nm in ("zAB", "vAB", "zEAB", "xEAB", "REAB"):
            samplers_[f"{nm} order {o}"] = (getattr(az, f"{nm}Sampler"), {"order": o})
    samplers_["zAB order 4"] = (az.zABSampler, {"order": 4})
    t_min = 1.0 / SCHED.num_steps  # the table's first timestep: sigma_min
    return samplers_, Exact, DDPMTime(), {"stop at sigma_min": t_min}


def run_azula(parts, gm, z, budget, name):
    samplers_, exact, sched, stops = parts
    cls, opts = samplers_[name]
    alpha_T, _ = sched(torch.tensor(1.0))
    out = {}
    for slabel, stop in stops.items():
        for steps in range(budget, 0, -1):
            d = Counted(gm)
            s = cls(exact(d), start=1.0, stop=stop, steps=steps, silent=True, dtype=torch.float64, **opts)
            s(z[:2].double() * SCHED.sigma_max * alpha_T)
            if d.calls <= budget:
                d = Counted(gm)
                s = cls(exact(d), start=1.0, stop=stop, steps=steps, silent=True, dtype=torch.float64, **opts)
                x = s(z.double() * SCHED.sigma_max * alpha_T)
                alpha_end, _ = sched(torch.tensor(stop))
                out[slabel] = (x / alpha_end, d.calls)
                break
    return out


# ----------------------------------------------------------------------------- the run
def evaluate(seeds, dims, n, log, peers=True):
    """Raw scores: ``raw[dim] = {"floors": [per mixture], "acc": {budget: {"library|sampler": {config:
    [(SWD, NFE) per mixture]}}}}``; peers run at ``PEER_BUDGETS`` only."""
    kd = load_k_sampling() if peers else None
    az = azula_parts() if peers else None
    raw = {}
    t0 = time.perf_counter()
    for dim in dims:
        acc: dict = {}
        fl = []
        for seed in seeds:
            gm = mixture(seed, dim)
            g = torch.Generator().manual_seed(seed + 100)
            exact, exact2 = gm.sample(n, generator=g), gm.sample(n, generator=g)
            swd = SlicedW2(exact, seed=seed)
            fl.append(swd(exact2))
            z = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed + 200))

            def add(key, runs, budget):
                for cfg, (x, calls) in runs.items():
                    acc.setdefault(budget, {}).setdefault("|".join(key), {}).setdefault(cfg, []).append((swd(x), calls))

            for budget in BUDGETS:
                sig = SCHED.sampling_sigmas(budget)
                d = Counted(gm)
                x = unnoise.sample(d, z * float(sig[0]), sig)
                add(("unnoise", "default"), {f"{samplers.DEFAULT_SAMPLER}, default grid": (x, d.calls)}, budget)
                for name, opts in UNNOISE_SAMPLERS:
                    add(("unnoise", label(name, opts)), run_unnoise(gm, z, budget, name, opts, unnoise_grids), budget)
                if not peers or budget not in PEER_BUDGETS:
                    continue
                for name, (cls, base) in diffusers_schedulers().items():
                    runs, seen = {}, set()
                    for clabel, cfg in diffusers_configs(cls, base):
                        steps = fit_diffusers(cls, cfg, budget, gm.denoise, z[:2].double())
                        if steps is None or schedule_key(cls, cfg, steps) in seen:
                            continue
                        seen.add(schedule_key(cls, cfg, steps))
                        try:
                            runs[clabel] = run_diffusers(cls, cfg, steps, gm.denoise, z.double())
                        except Exception as err:  # noqa: BLE001 - a configuration diffusers rejects
                            log(f"  diffusers {name} [{clabel}] failed: {err}")
                    add(("diffusers", name), runs, budget)
                if kd is not None:
                    for name, opts in K_SAMPLERS:
                        add(("k-diffusion", label(name, opts)), run_k(kd, gm, z, budget, name, opts, seed), budget)
                if az is not None:
                    for name in az[0]:
                        try:
                            add(("azula", name), run_azula(az, gm, z, budget, name), budget)
                        except Exception as err:  # noqa: BLE001
                            log(f"  azula {name} failed: {err}")
            log(f"[{time.perf_counter() - t0:5.0f}s] dim {dim}, mixture seed {seed}: {len(gm.weights)} components, "
                f"floor {fl[-1]:.4f}")
        raw[dim] = {"floors": fl, "acc": acc}
    return raw


def summarise(raws):
    """Merge raw runs (e.g. one process per dimension and mixture) into ``results[dim][budget][(library,
    sampler)][config] = (mean SWD over the mixtures, NFE)`` and the mean floor per dimension; a configuration
    counts only if it ran on every mixture."""
    merged: dict = {}
    for raw in raws:
        for dim, rec in raw.items():
            m = merged.setdefault(int(dim), {"floors": [], "acc": {}})
            m["floors"] += rec["floors"]
            for b, keys in rec["acc"].items():
                for key, cfgs in keys.items():
                    for cfg, vals in cfgs.items():
                        m["acc"].setdefault(int(b), {}).setdefault(key, {}).setdefault(cfg, []).extend(map(tuple, vals))
    results, floors = {}, {}
    for dim in sorted(merged):
        m = merged[dim]
        k = len(m["floors"])
        floors[dim] = sum(m["floors"]) / k
        results[dim] = {b: {tuple(key.split("|", 1)): {cfg: (sum(v[0] for v in vals) / k, max(v[1] for v in vals))
                                                      for cfg, vals in cfgs.items() if len(vals) == k}
                            for key, cfgs in per.items()} for b, per in sorted(m["acc"].items())}
    return results, floors


def best(cfgs):
    """``(config, (swd, nfe))`` with the lowest mean SWD (non-finite runs lose)."""
    ok = [(c, v) for c, v in cfgs.items() if math.isfinite(v[0])]
    return min(ok, key=lambda cv: cv[1][0]) if ok else (None, (math.inf, None))


def report(results, floors, n, seconds):
    lines = []
    for dim in results:
        lines += [f"**{dim}-D** (held-out mixture seeds {', '.join(map(str, HELD_OUT))}, mean over them; {n} samples "
                  f"per run; "
                  f"exact-vs-exact floor at this size: SWD **{floors[dim]:.4f}**)", "",
                  "| library | sampler | " + " | ".join(f"SWD at NFE <= {b} (config)" for b in BUDGETS) + " |",
                  "|---|---|" + "---|" * len(BUDGETS)]
        keys = list(dict.fromkeys(k for b in BUDGETS for k in results[dim].get(b, {})))
        rows = []
        for key in keys:
            cells, first = [], math.inf
            for b in BUDGETS:
                cfg, (v, nfe) = best(results[dim].get(b, {}).get(key, {}))
                first = min(first, v) if b == BUDGETS[0] else first
                cells.append("-" if cfg is None else f"{v:.4f} ({nfe} NFE, {cfg})")
            rows.append((key, cells, first))
        lib_order = {"unnoise": 0, "diffusers": 1, "k-diffusion": 2, "azula": 3}
        rows.sort(key=lambda r: (lib_order[r[0][0]], r[0][1] != "default", r[2]))
        lines += [f"| {k[0]} | {k[1]} | " + " | ".join(c) + " |" for k, c, _ in rows]
        lines.append("")
        for b in BUDGETS:
            per = results[dim].get(b, {})
            dflt = best(per.get(("unnoise", "default"), {}))[1][0]
            ub = min(((best(v)[1][0], k[1], best(v)[0]) for k, v in per.items() if k[0] == "unnoise"))
            pb = min(((best(v)[1][0], f"{k[0]} {k[1]}", best(v)[0]) for k, v in per.items() if k[0] != "unnoise"),
                     default=(math.inf, "-", "-"))
            line = (f"- NFE <= {b}: unnoise default {dflt:.4f} ({dflt / floors[dim]:.2f}x floor); unnoise best "
                    f"{ub[0]:.4f} ({ub[1]}, {ub[2]})")
            if math.isfinite(pb[0]):
                line += (f"; best peer {pb[0]:.4f} ({pb[1]}, {pb[2]}); default / best peer {dflt / pb[0]:.2f}, "
                         f"unnoise best / best peer {ub[0] / pb[0]:.2f}")
            lines.append(line)
        lines.append("")
    import diffusers
    lines.append(f"Time {seconds:.0f} s for the longest process (one per dimension and mixture, niced, on a shared, "
                 f"heavily loaded 2-core CPU), "
                 f"torch {torch.__version__}, diffusers {diffusers.__version__}.")
    return "\n".join(lines)


TUNE_SAMPLERS = [("ipndm", {"order": 3}), ("ipndm", {"order": 4}), ("dpmpp_3m", {}), ("unipc", {}),
                 ("gradient_estimation", {})]


def tune_grids(steps):
    """The grid family the default is chosen from: DDPM trailing, and Karras grids (rho, lower end sigma_lo)."""
    out = {"trailing": SCHED.sampling_sigmas(steps, "trailing")}
    for rho in (7.0, math.inf):
        for lo in (0.01, 0.05, 0.1, 0.2, 0.4):
            out[(rho, lo)] = schedules.karras_sigmas(steps, max(lo, SCHED.sigma_min), SCHED.sigma_max, rho)
    return out


def tune(n, log, dims=DIMS):
    """The search that chose the defaults: each sampler of ``TUNE_SAMPLERS`` on each grid of :func:`tune_grids`,
    on the training mixtures (seeds ``TRAIN``, 2-D and 16-D).  Score: SWD / floor, averaged over all of them;
    prints the ranking per budget and returns it."""
    score: dict = {}
    t0 = time.perf_counter()
    for dim in dims:
        for seed in TRAIN:
            gm = mixture(seed, dim)
            g = torch.Generator().manual_seed(seed + 100)
            exact, exact2 = gm.sample(n, generator=g), gm.sample(n, generator=g)
            swd = SlicedW2(exact, seed=seed)
            floor = swd(exact2)
            z = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed + 200))
            for budget in BUDGETS:
                for name, opts in TUNE_SAMPLERS:
                    for cfg, (x, _) in run_unnoise(gm, z, budget, name, opts, tune_grids).items():
                        score.setdefault((budget, label(name, opts), cfg), []).append(swd(x) / floor)
            log(f"[{time.perf_counter() - t0:5.0f}s] tuned on dim {dim}, mixture seed {seed}")
    ranking = {}
    for b in BUDGETS:
        full = [(sum(v) / len(v), k[1], k[2]) for k, v in score.items() if k[0] == b and len(v) == len(dims) * len(TRAIN)]
        ranking[b] = sorted(full, key=lambda r: r[0])
        print(f"NFE <= {b}: mean SWD / floor over {len(TRAIN)} training mixtures in each of {dims} dimensions")
        for s_, name, cfg in ranking[b][:10]:
            print(f"  {s_:7.3f}  {name:<24} {cfg if cfg == 'trailing' else 'karras rho %g, sigma_lo %g' % cfg}")
    return ranking


SECTION = ("<!-- samplers_vs_peers:start -->", "<!-- samplers_vs_peers:end -->")


def write_docs(text, path):
    body = (f"{SECTION[0]}\n## Few-step sampling: unnoise's default against diffusers, k-diffusion and azula\n\n"
            f"Measured by `benchmarks/samplers_vs_peers.py --n 1000 --dims D --seeds S --save rD_S.json` for D in "
            f"2, 16 and S in 1000, 1001 (four processes), then `--merge r*.json --write-docs` (see its docstring for "
            f"every configuration).\n\n{text}\n{SECTION[1]}")
    doc = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if SECTION[0] in doc:
        doc = doc[:doc.index(SECTION[0])] + body + doc[doc.index(SECTION[1]) + len(SECTION[1]):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + body + "\n"
    with open(path, "w") as f:
        f.write(doc)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000, help="samples per run (and exact samples)")
    p.add_argument("--tune", action="store_true", help="run the default-choosing search on the training mixtures")
    p.add_argument("--dims", default="2,16", help="dimensions (comma-separated)")
    p.add_argument("--seeds", help="held-out mixture seeds to run (default: all of HELD_OUT)")
    p.add_argument("--save", help="write the raw results of this run to a JSON file")
    p.add_argument("--merge", nargs="+", help="report (and --write-docs) from saved runs instead of running")
    p.add_argument("--write-docs", action="store_true", help="write the result into docs/benchmarks.md")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    if args.tune:
        ranking = tune(args.n, log, tuple(int(d) for d in args.dims.split(",")))
        import json
        with open(f"tune_{args.dims.replace(',', '_')}.json", "w") as f:
            json.dump({b: [[v, nm, c if c == "trailing" else list(c)] for v, nm, c in r] for b, r in ranking.items()},
                      f)
        return 0
    import json
    dims = tuple(int(d) for d in args.dims.split(","))
    if args.merge:  # runs that split the dimensions and mixtures between processes
        raws, seconds = [], 0.0
        for path in args.merge:
            with open(path) as f:
                rec = json.load(f)
            raws.append(rec["raw"])
            seconds = max(seconds, rec["seconds"])
    else:
        t0 = time.perf_counter()
        seeds = HELD_OUT if args.seeds is None else tuple(int(v) for v in args.seeds.split(","))
        raws = [evaluate(seeds, dims, args.n, log)]
        seconds = time.perf_counter() - t0
        if args.save:
            with open(args.save, "w") as f:
                json.dump({"seconds": seconds, "raw": raws[0]}, f)
    results, floors = summarise(raws)
    text = report(results, floors, args.n, seconds)
    print(text)
    if args.write_docs:
        write_docs(text, os.path.join(os.path.dirname(__file__), "..", "docs", "benchmarks.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
