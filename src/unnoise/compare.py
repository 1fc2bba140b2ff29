"""Comparing samplers at equal cost: quality and wall time against the number of denoiser calls.

Cost is counted in real denoiser evaluations (NFE), not nominal steps: for a budget ``B`` each
sampler gets the largest number of steps whose measured NFE is at most ``B`` (Heun spends about
two calls a step, DDIM one, Langevin ``n_steps_each`` per level).  Quality is the sliced
Wasserstein distance and the RBF-kernel MMD between the samples and a reference sample.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import matplotlib.ticker
import torch

from . import analytic, metrics, samplers
from .ode import odeint_adaptive
from .plotting import _save, subplots

# built-in analytic targets: exact samples and an exact denoiser, so all error is the sampler's
MIXTURES: dict[str, Callable[[], analytic.GaussianMixture]] = {
    "ring2d": lambda: analytic.GaussianMixture.ring(8, 2.0, 0.1),
    "random2d": lambda: analytic.GaussianMixture.random(6, 2, generator=torch.Generator().manual_seed(0)),
    "ring16d": lambda: analytic.GaussianMixture.ring(8, 2.0, 0.1, dim=16),
    "random16d": lambda: analytic.GaussianMixture.random(8, 16, generator=torch.Generator().manual_seed(0)),
}


def builtin_mixture(name: str) -> analytic.GaussianMixture:
    """One of :data:`MIXTURES` by name."""
    try:
        return MIXTURES[name]()
    except KeyError:
        raise ValueError(f"unknown mixture {name!r}; choose one of {', '.join(sorted(MIXTURES))}") from None


def ode_map(denoiser, x_T: torch.Tensor, sigma_max: float, sigma_end: float = 1e-4,
            tol: float | None = None) -> torch.Tensor:
    """The probability-flow ODE's own map of ``x_T`` at ``sigma_max`` to data: a tight Dormand-Prince solve
    of ``dx/dt = x - D(x, e^t)`` in ``t = log sigma`` down to ``sigma_end``, then ``D(x, sigma_end)``.
    The reference a deterministic sampler's error is measured against.  Runs in ``x_T``'s dtype;
    ``tol`` defaults to 1e-8 in float64 and 1e-5 otherwise."""
    tol = tol if tol is not None else (1e-8 if x_T.dtype == torch.float64 else 1e-5)

    def sig(value, y):
        return torch.full((len(y),), value, dtype=y.dtype, device=y.device)
    with torch.no_grad():
        x, _ = odeint_adaptive(lambda t, y: y - denoiser(y, sig(math.exp(t), y)), x_T, math.log(sigma_max),
                               math.log(sigma_end), rtol=tol, atol=tol)
        return denoiser(x, sig(sigma_end, x))


def auto_grid(denoiser, shape, steps: int, sampler: str, sigma_min: float, sigma_max: float,
              lower_ends=(0.0, 0.1, 0.5), pilot: int = 256, seed: int = 0, max_evals: int = 40, **options):
    """An automatic grid: :func:`unnoise.samplers.optimize_sigmas` for each candidate lower end
    ``max(lower_end, sigma_min)`` (with few steps it can pay to stop the ODE early and let the last
    call denoise), the winner picked by the RMS error against :func:`ode_map` on a pilot batch of its
    own.  Deterministic samplers only (``optimize_sigmas`` raises ``ValueError`` otherwise).

    Returns:
        ``(steps + 1,)`` decreasing grid ending at 0.
    """
    optimize = getattr(samplers, "optimize_sigmas", None)
    if optimize is None:
        raise ValueError("this unnoise has no samplers.optimize_sigmas; use a fixed spacing")
    z = torch.randn(pilot, *shape, generator=torch.Generator().manual_seed(seed + 11))
    target = ode_map(denoiser, z * sigma_max, sigma_max)
    best = None
    for lower in sorted({max(float(lo), sigma_min) for lo in lower_ends}):
        if lower >= sigma_max:
            continue
        sig = optimize(denoiser, tuple(shape), steps, sampler=sampler, sigma_min=lower, sigma_max=sigma_max,
                       generator=torch.Generator().manual_seed(seed + 12), max_evals=max_evals, **options)
        out = samplers.sample(denoiser, z * sig[0], sig, sampler=sampler, **options)
        err = float(((out.double() - target.double()) ** 2).reshape(pilot, -1).sum(1).mean())
        if best is None or err < best[0]:
            best = (err, sig)
    return best[1]


def measure_nfe(denoiser, sampler: str, sigmas, probe: torch.Tensor, options: dict | None = None, seed: int = 0) -> int:
    """Real denoiser calls of one run of ``sampler`` on ``sigmas`` (from a small probe batch)."""
    g = torch.Generator().manual_seed(seed)
    _, nfe = samplers.sample(denoiser, probe * sigmas[0], sigmas, sampler=sampler, generator=g, return_nfe=True,
                             **(options or {}))
    return nfe


def fit_steps(denoiser, sampler: str, budget: int, grid: Callable[[int], torch.Tensor], probe: torch.Tensor,
              options: dict | None = None):
    """Largest step count whose measured NFE fits ``budget``.

    Assumes NFE does not decrease with the step count (true of every fixed-step sampler); every
    sampler makes at least one call per step, so the search runs over ``1..budget``.

    Returns:
        ``(steps, nfe)``, or ``(None, nfe_at_one_step)`` when even one step exceeds the budget.
    """
    if budget < 1:
        raise ValueError(f"an NFE budget must be a positive integer, got {budget}")
    cache = {}

    def nfe(steps):
        if steps not in cache:
            cache[steps] = measure_nfe(denoiser, sampler, grid(steps), probe, options)
        return cache[steps]

    if nfe(1) > budget:
        return None, nfe(1)
    lo, hi = 1, budget
    while lo < hi:  # invariant: nfe(lo) <= budget
        mid = (lo + hi + 1) // 2
        if nfe(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo, nfe(lo)


TOLERANCES = tuple(10.0 ** (-k / 2) for k in range(2, 15))  # 1e-1 .. 1e-7, loosest first


def is_adaptive(sampler: str) -> bool:
    """Adaptive samplers are steered by a tolerance (an ``rtol`` option), not by the grid's length."""
    return "rtol" in samplers.sampler_options(sampler)


def fit_tolerance(denoiser, sampler: str, budget: int, grid: torch.Tensor, probe: torch.Tensor,
                  options: dict | None = None):
    """Tightest ``rtol = atol`` from :data:`TOLERANCES` whose measured NFE fits ``budget``.

    Returns ``(tolerance, nfe)``, or ``(None, nfe_at_the_loosest)`` when none fits.
    """
    found, first = (None, None), None
    for tol in TOLERANCES:
        nfe = measure_nfe(denoiser, sampler, grid, probe, {**(options or {}), "rtol": tol, "atol": tol})
        first = nfe if first is None else first
        if nfe > budget:
            break
        found = (tol, nfe)
    return found if found[0] is not None else (None, first)


def is_stochastic(denoiser, sampler: str, grid: torch.Tensor, probe: torch.Tensor, options: dict | None = None) -> bool:
    """Whether ``sampler`` draws noise: two runs from the same start with different seeds differ."""
    outs = []
    for seed in (0, 1):
        g = torch.Generator().manual_seed(seed)
        outs.append(samplers.sample(denoiser, probe * grid[0], grid, sampler=sampler, generator=g, **(options or {})))
    return not torch.equal(*outs)


def sample_quality(samples: torch.Tensor, reference: torch.Tensor, seed: int = 0, mmd_points: int = 1000) -> dict:
    """``{"swd": sliced Wasserstein-2, "mmd": squared RBF MMD}`` with fixed projections / subsets."""
    if not torch.all(torch.isfinite(samples)):
        return {"swd": float("inf"), "mmd": float("inf")}
    swd = metrics.sliced_wasserstein(samples, reference, generator=torch.Generator().manual_seed(seed))
    mmd = metrics.mmd_rbf(samples[:mmd_points], reference[:mmd_points])
    return {"swd": swd, "mmd": mmd}


def compare(denoiser, reference: torch.Tensor, shape, sampler_names, budgets, grid: Callable[[int, str], torch.Tensor],
            n: int = 2000, seed: int = 0, options: dict | None = None, postprocess: Callable | None = None,
            log: Callable[[str], None] | None = None, cost_grid: Callable | None = None) -> list[dict]:
    """Run every sampler at every NFE budget and measure quality and wall time.

    Args:
        denoiser: ``D(x, sigma)``.
        reference: ``(m, ...)`` samples of the target, in the units of ``postprocess``'s output.
        shape: shape of one example.
        sampler_names: names from :func:`unnoise.samplers.available`.
        budgets: NFE budgets (positive integers).
        grid: ``grid(steps, sampler) -> sigmas``, the decreasing sampling grid for a step count.
        n: samples per run; every run starts from the same ``sigma_max * randn`` draws (seed ``seed``).
        options: ``{sampler: {option: value}}``.
        postprocess: maps raw samples to the reference's units (e.g. undoing standardisation).
        log: called with a line of progress text per run.
        cost_grid: the grid used only to measure NFE per step count (default ``grid``); a cheap
            stand-in when ``grid`` is expensive to build (an optimised grid) and the cost does not
            depend on where the sigmas lie.

    Returns:
        one dict per (sampler, budget): ``sampler, budget, steps, nfe, stochastic, swd, mmd, seconds``
        and ``note`` (why a row has no numbers, e.g. one step already exceeds the budget).
    """
    options = options or {}
    cost_grid = cost_grid or grid
    probe = torch.randn(2, *shape, generator=torch.Generator().manual_seed(seed + 7))
    z = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))
    rows = []

    def add(row):
        rows.append(row)
        if log is not None:
            log(format_row(row))

    for name in sampler_names:
        opts = options.get(name, {})
        try:
            stochastic = is_stochastic(denoiser, name, cost_grid(2, name), probe, opts)
        except (ValueError, RuntimeError) as err:
            for b in budgets:
                add(_row(name, b, note=f"failed: {err}"))
            continue
        for budget in budgets:
            try:
                note, run_opts = "", opts
                if is_adaptive(name):  # one step from sigma_max to sigma_min; the tolerance sets the cost
                    # the error norm is a max over the batch, so the cost is probed on a large batch
                    tol, nfe = fit_tolerance(denoiser, name, budget, cost_grid(2, name), z[:256], opts)
                    steps = None if tol is None else 2
                    if tol is not None:
                        run_opts, note = {**opts, "rtol": tol, "atol": tol}, f"rtol=atol={tol:.0e}"
                else:
                    steps, nfe = fit_steps(denoiser, name, budget, lambda s: cost_grid(s, name), probe, opts)
                if steps is None:
                    add(_row(name, budget, stochastic=stochastic, nfe=nfe, note=f"needs {nfe} NFE at the least"))
                    continue
                sig = grid(steps, name)
                g = torch.Generator().manual_seed(seed + 1)
                t0 = time.perf_counter()
                out, real = samplers.sample(denoiser, z * sig[0], sig, sampler=name, generator=g, return_nfe=True,
                                            **run_opts)
                seconds = time.perf_counter() - t0
                if postprocess is not None:
                    out = postprocess(out)
                q = sample_quality(out.reshape(n, -1).cpu(), reference.reshape(len(reference), -1).cpu(), seed)
                add(_row(name, budget, steps=steps, nfe=real, stochastic=stochastic, seconds=seconds, note=note, **q))
            except (ValueError, RuntimeError) as err:
                add(_row(name, budget, stochastic=stochastic, note=f"failed: {err}"))
    return rows


def _row(sampler, budget, steps=None, nfe=None, stochastic=None, swd=math.nan, mmd=math.nan, seconds=math.nan,
         note=""):
    return {"sampler": sampler, "budget": budget, "steps": steps, "nfe": nfe, "stochastic": stochastic,
            "swd": swd, "mmd": mmd, "seconds": seconds, "note": note}


COLUMNS = ("sampler", "budget", "steps", "nfe", "swd", "mmd", "seconds", "note")


def format_row(row: dict) -> str:
    """One fixed-width text line of a :func:`compare` row (``-`` where a value is missing)."""
    def f(v, fmt):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)
    kind = "" if row["stochastic"] is None else (" (sde)" if row["stochastic"] else "")
    return (f"{row['sampler'] + kind:<26}{row['budget']:>6}{f(row['steps'], 'd'):>6}{f(row['nfe'], 'd'):>6}"
            f"{f(row['swd'], '.4f'):>9}{f(row['mmd'], '.5f'):>10}{f(row['seconds'], '.3f'):>9}  {row['note']}")


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of :func:`compare` rows, with a header."""
    head = f"{'sampler':<26}{'NFE<=':>6}{'steps':>6}{'NFE':>6}{'SWD':>9}{'MMD':>10}{'sec':>9}"
    return "\n".join([head, "-" * len(head)] + [format_row(r) for r in rows])


def plot_comparison(rows: list[dict], path: str, floor: float | None = None, title: str | None = None) -> None:
    """Three log-log panels against real NFE: SWD, MMD and wall time, one line per sampler."""
    fig, axes = subplots(1, 3, figsize=(15, 4.4))
    names = list(dict.fromkeys(r["sampler"] for r in rows))
    styles = ["-", "--", ":", "-."]
    for i, name in enumerate(names):
        pts = [r for r in rows if r["sampler"] == name and r["nfe"] is not None and math.isfinite(r["swd"])]
        if not pts:
            continue
        nfe = [r["nfe"] for r in pts]
        kw = dict(marker="o", ms=3.5, lw=1.3, ls=styles[(i // 10) % len(styles)], color=f"C{i % 10}", label=name)
        axes[0].plot(nfe, [r["swd"] for r in pts], **kw)
        # MMD is an unbiased estimate and can dip below zero: floor it for the log axis
        axes[1].plot(nfe, [max(r["mmd"], 1e-6) for r in pts], **kw)
        axes[2].plot(nfe, [r["seconds"] for r in pts], **kw)
    if floor is not None and math.isfinite(floor):
        axes[0].axhline(floor, color="k", lw=0.8, ls="--", label="reference vs reference")
    ticks = sorted({r["budget"] for r in rows})
    for ax, label in zip(axes, ("sliced Wasserstein distance", "MMD$^2$ (RBF; < 1e-6 shown at 1e-6)",
                                "wall time (s)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        if ticks:  # label the budgets, not 3x10^1-style log ticks
            ax.set_xticks(ticks)
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%d"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("denoiser evaluations (NFE)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
