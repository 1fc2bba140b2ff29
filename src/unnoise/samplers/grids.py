"""Choosing the sampling grid for a step budget: minimise a sampler's error against a fine ODE solve.

:func:`optimize_sigmas` returns a grid; :class:`AutoSigmas` is a step budget that
:func:`unnoise.sample` turns into an optimised grid for the denoiser and sampler it is called with.
Both are also available as ``unnoise.samplers.optimize_sigmas`` / ``unnoise.samplers.AutoSigmas``.
"""
from __future__ import annotations

import math

import torch

from ..schedules import check_range
from . import core as _samplers


def _warped_grid(steps, sigma_min, sigma_max, rho, offsets):
    """Karras grid with exponent ``rho`` whose log-sigmas are shifted by a piecewise-linear function of
    the step index through ``offsets`` at equally spaced interior knots (zero at both ends); then 0."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    log_sig = rho * torch.log(hi + ramp * (lo - hi))
    if len(offsets):
        xs = torch.linspace(0, 1, len(offsets) + 2, dtype=torch.float64)
        ys = torch.tensor([0.0, *offsets, 0.0], dtype=torch.float64)
        idx = torch.searchsorted(xs, ramp, right=True).clamp(1, len(xs) - 1)
        w = (ramp - xs[idx - 1]) / (xs[idx] - xs[idx - 1])
        log_sig = log_sig + ys[idx - 1] + w * (ys[idx] - ys[idx - 1])
    return torch.cat([torch.exp(log_sig), torch.zeros(1, dtype=torch.float64)])


def optimize_sigmas(denoiser, shape, steps: int, sampler: str = "dpmpp_2m", sigma_min: float = 0.002,
                    sigma_max: float = 80.0, *, pilot: int = 64, knots: int = 3, rho: float = 7.0,
                    generator: torch.Generator | None = None, max_evals: int = 80, reference_tol: float = 1e-5,
                    dtype=torch.float32, device=None, **options) -> torch.Tensor:
    """Choose the sampling grid for a step budget by minimising the error against a fine ODE solve.

    A pilot batch ``x_T = sigma_max * randn(pilot, *shape)`` is solved once accurately (the ``rk45`` sampler
    with ``rtol = atol = reference_tol``, finishing with ``D(x, sigma_min)``), and the grid is chosen to
    minimise the RMS difference between ``sampler`` on that grid and the reference, from the same
    starts.  The grid is a Karras grid (exponent ``rho``) between ``sigma_min`` and ``sigma_max``
    whose interior log-sigmas may also move by a piecewise-linear offset through ``knots`` free values;
    ``(log rho, offsets)`` are found by a derivative-free coordinate (pattern) search within
    ``max_evals`` sampler runs.  The result is never worse on the pilot than the Karras start.

    Args:
        denoiser: ``D(x, sigma)``.
        shape: shape of one example (without the batch dimension).
        steps: the step budget (the grid has ``steps + 1`` entries, last 0).
        sampler: a deterministic sampler name; ``**options`` are its options.
        sigma_min, sigma_max: the grid's smallest positive and largest sigma (fixed).
        pilot: pilot batch size.
        knots: free log-sigma offsets besides rho (0 = optimise rho only).
        rho: the starting Karras exponent.
        generator: draws the pilot batch.
        max_evals: budget of sampler runs for the search.
        reference_tol: ``rtol = atol`` of the reference solve.
        dtype, device: of the pilot batch (the denoiser's device).

    Returns:
        ``(steps + 1,)`` float32 decreasing grid ending at 0.
    """
    _samplers._check_positive_int("steps", steps)
    _samplers._check_positive_int("pilot", pilot)
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if not isinstance(knots, int) or knots < 0:
        raise ValueError(f"knots must be an integer >= 0, got {knots!r}")
    _samplers._get(sampler)
    shape = tuple(shape)
    # drawn on the generator's device (CPU by default), then moved to the denoiser's
    x_T = torch.randn((pilot, *shape), generator=generator, dtype=dtype,
                      device=generator.device if generator is not None else None).to(device) * sigma_max
    ref = _samplers.sample(denoiser, x_T, torch.tensor([sigma_max, sigma_min, 0.0]), sampler="rk45",
                 rtol=reference_tol, atol=reference_tol)
    knots = min(knots, max(steps - 2, 0))  # interior points only
    if steps < 2:
        return _warped_grid(steps, sigma_min, sigma_max, rho, []).to(torch.float32)

    def run(grid, seed=0):
        g = torch.Generator().manual_seed(seed)
        return _samplers.sample(denoiser, x_T.clone(), grid.to(dtype), sampler=sampler, generator=g, **options)

    start = _warped_grid(steps, sigma_min, sigma_max, rho, [0.0] * knots)
    if not torch.equal(run(start, 0), run(start, 1)):
        raise ValueError(f"optimize_sigmas needs a deterministic sampler; {sampler!r} with options {options} "
                         "draws noise (its error against the ODE solution is not a grid property)")

    evals = 0

    def loss(theta):
        nonlocal evals
        evals += 1
        grid = _warped_grid(steps, sigma_min, sigma_max, math.exp(theta[0]), theta[1:])
        if not torch.all(grid[1:] < grid[:-1]) or not torch.all(torch.isfinite(grid)):
            return float("inf")
        out = run(grid)
        err = float(((out - ref) ** 2).mean().sqrt())
        return err if math.isfinite(err) else float("inf")

    theta = [math.log(rho)] + [0.0] * knots
    best = loss(theta)
    step = [0.5] + [0.5] * knots
    while evals < max_evals and max(step) > 1e-3:
        improved = False
        for k in range(len(theta)):
            for sign in (1.0, -1.0):
                if evals >= max_evals:
                    break
                trial = list(theta)
                trial[k] += sign * step[k]
                val = loss(trial)
                if val < best:
                    theta, best, improved = trial, val, True
                    break
        if not improved:
            step = [st / 2 for st in step]
    return _warped_grid(steps, sigma_min, sigma_max, math.exp(theta[0]), theta[1:]).to(torch.float32)


class AutoSigmas:
    """A step budget whose grid :func:`optimize_sigmas` picks for the denoiser and sampler it is used with.

    Pass it as ``sigmas`` to :func:`unnoise.sample`: ``unnoise.sample(D, x, AutoSigmas(10, 0.002, 80.0),
    sampler="dpmpp_2m")``; ``x`` must start at ``sigma_max``.  The grid is optimised on the first call
    and cached per (denoiser, example shape, sampler, options); ``.last`` holds the grid last used.
    """

    def __init__(self, steps: int, sigma_min: float, sigma_max: float, pilot: int = 64, seed: int = 0,
                 **search_options):
        _samplers._check_positive_int("steps", steps)
        check_range(sigma_min, sigma_max)
        self.steps, self.sigma_min, self.sigma_max = steps, sigma_min, sigma_max
        self.pilot, self.seed, self.search_options = pilot, seed, search_options
        self._cache: dict = {}
        self.last = None

    def check_start(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` looks like a start at ``sigma_max`` (``x = sigma_max * randn``):
        its RMS must lie within a factor of 2 of ``sigma_max`` from below (the data add variance on top) and
        within 10x from above."""
        rms = float(x.double().pow(2).mean().sqrt())
        if not 0.5 * self.sigma_max <= rms <= 10.0 * self.sigma_max:
            raise ValueError(f"x must start at sigma_max = {self.sigma_max:g} (x = sigma_max * randn) for "
                             f"AutoSigmas, but its RMS is {rms:.4g}; scale the start noise by sigma_max")

    def grid(self, denoiser, shape, sampler, options, device=None) -> torch.Tensor:
        try:  # bound methods compare equal per (object, function); each access makes a new one
            hash(denoiser)
            who = denoiser
        except TypeError:
            who = id(denoiser)
        key = (who, tuple(shape), sampler, tuple(sorted((k, repr(v)) for k, v in options.items())))
        if key not in self._cache:
            self._cache[key] = optimize_sigmas(
                denoiser, shape, self.steps, sampler, self.sigma_min, self.sigma_max, pilot=self.pilot,
                generator=torch.Generator().manual_seed(self.seed), device=device, **self.search_options, **options)
        self.last = self._cache[key]
        return self.last

    def __repr__(self):
        return f"AutoSigmas(steps={self.steps}, sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"


def tune_grid(denoiser, shape, steps: int, sigma_min: float, sigma_max: float, sampler: str | None = None,
              *, pilot: int = 64, seed: int = 0, device=None, **search_options) -> dict:
    """Tune a grid once for a model and a step budget; returns a JSON-able record to store with the model.

    Runs :func:`optimize_sigmas` (the default sampler unless ``sampler`` is given) on a pilot batch drawn
    with ``seed`` and counts every denoiser call the search makes (its reference ODE solve included).

    Returns:
        ``{"steps": int, "sampler": str, "sigmas": [steps + 1 floats, decreasing, last 0.0],
        "nfe_cost": int}``: ``nfe_cost`` is the one-off cost of the search in denoiser calls on
        ``pilot``-sized batches; sampling with the grid then costs the sampler's usual NFE.
    """
    sampler = sampler or _samplers.DEFAULT_SAMPLER
    calls = 0

    def counted(x, sigma, *cond):
        nonlocal calls
        calls += 1
        return denoiser(x, sigma, *cond)

    grid = optimize_sigmas(counted, shape, steps, sampler, sigma_min, sigma_max, pilot=pilot,
                           generator=torch.Generator().manual_seed(seed), device=device, **search_options)
    return {"steps": int(steps), "sampler": sampler, "sigmas": [float(v) for v in grid], "nfe_cost": int(calls)}
