"""Every sampler is a function ``f(denoiser, x, sigmas, *, generator, callback, **options)``.

``x`` starts at ``sigmas[0]`` (scale-free: ``x_0 + sigma * eps``) and the function returns the
sample at ``sigmas[-1]`` (normally 0).  Samplers only talk to the denoiser ``D(x, sigma)``;
from it they derive ``eps = (x - D) / sigma`` and the probability-flow ODE
``dx/dsigma = (x - D) / sigma``.  A new sampler is one function decorated with ``@register``.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
from tqdm.auto import tqdm

_REGISTRY: dict[str, Callable] = {}


def register(name: str):
    """Decorator adding a sampler function to the registry under ``name``."""
    def deco(fn):
        _REGISTRY[name] = fn
        return fn
    return deco


def available() -> list[str]:
    """The sampler names that :func:`sample` accepts."""
    return sorted(_REGISTRY)


def sampler_options(name: str) -> dict:
    """The keyword options of a sampler with their defaults."""
    fn = _get(name)
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.kind == p.KEYWORD_ONLY and p.name not in ("generator", "callback", "progress")}


def _get(name):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; available: {', '.join(available())}") from None


class CountingDenoiser:
    """Wraps a denoiser, counting real calls (network evaluations, NFE)."""

    def __init__(self, denoiser, cond=None):
        self.denoiser, self.cond, self.calls = denoiser, cond, 0

    def __call__(self, x, sigma):
        self.calls += 1
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        out = self.denoiser(x, sigma) if self.cond is None else self.denoiser(x, sigma, self.cond)
        return out


def check_sigmas(sigmas) -> torch.Tensor:
    """Validate a sampling grid: 1-D, at least two entries, finite, non-negative, strictly decreasing."""
    sigmas = torch.as_tensor(sigmas)
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError("sigmas must be a 1-D grid with at least 2 entries (steps + 1), e.g. schedule.sampling_sigmas(10)")
    if not torch.all(torch.isfinite(sigmas)) or torch.any(sigmas < 0):
        raise ValueError("sigmas must be finite and non-negative")
    if not torch.all(sigmas[1:] < sigmas[:-1]):
        raise ValueError("sigmas must be strictly decreasing (from noise to data), e.g. schedule.sampling_sigmas(10)")
    return sigmas


def sample(denoiser, x: torch.Tensor, sigmas, sampler: str = "ddim", generator: torch.Generator | None = None,
           cond=None, callback: Callable | None = None, progress: bool = False, return_nfe: bool = False,
           **options):
    """Run ``sampler`` from ``x`` at ``sigmas[0]`` down the grid; return the sample at ``sigmas[-1]``.

    Args:
        denoiser: any callable ``D(x, sigma[, cond])`` (an analytic mixture, a trained model, a guided combination).
        x: ``(batch, ...)`` start, typically ``torch.randn(shape) * sigmas[0]``.
        sigmas: decreasing grid, e.g. ``schedule.sampling_sigmas(steps)``.
        sampler: a name from :func:`available`.
        generator: randomness of stochastic samplers.
        cond: conditioning passed to the denoiser as its third argument.
        callback: called as ``callback(i, x, denoised, sigma)`` after each step.
        progress: show a progress bar.
        return_nfe: also return the number of denoiser calls made.
        **options: sampler-specific options (see :func:`sampler_options`).
    """
    fn = _get(sampler)
    sigmas = check_sigmas(sigmas).to(device=x.device, dtype=x.dtype)
    if not torch.all(torch.isfinite(x)):
        raise ValueError("the starting x contains NaN or inf")
    allowed = set(inspect.signature(fn).parameters)
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"sampler {sampler!r} has no option(s) {', '.join(sorted(unknown))}; "
                         f"it accepts: {', '.join(sorted(sampler_options(sampler))) or 'none'}")
    counted = CountingDenoiser(denoiser, cond)
    kwargs = dict(options)
    if "generator" in allowed:
        kwargs["generator"] = generator
    if "callback" in allowed:
        kwargs["callback"] = callback
    if "progress" in allowed:
        kwargs["progress"] = progress
    with torch.no_grad():
        out = fn(counted, x, sigmas, **kwargs)
    return (out, counted.calls) if return_nfe else out


def _steps(sigmas, progress):
    n = len(sigmas) - 1
    return tqdm(range(n), desc="sampling", leave=False) if progress else range(n)


def noise_like(x, generator=None):
    """Standard normal noise shaped like ``x``, drawn from ``generator`` (which may live on the CPU)."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)


def _cb(callback, i, x, den, sigma):
    if callback is not None:
        callback(i, x, den, sigma)


# ----------------------------------------------------------------------------- DDIM / DDPM
def ddim_step(x, denoised, sigma, sigma_next, eta, noise):
    """One DDIM step in scale-free variables.

    With ``eps = (x - D)/sigma`` and ``c^2 = eta^2 sigma'^2 (sigma^2 - sigma'^2) / sigma^2``
    (the VP ``eta^2 * beta_tilde`` divided by ``alpha_bar'``):
    ``x' = D + sqrt(sigma'^2 - c^2) eps + c z``.  ``eta = 1`` is DDPM's posterior
    ``q(x' | x, x_0 = D)`` with its fixed-small variance; ``eta = 0`` the deterministic DDIM.
    """
    if sigma_next == 0:
        return denoised
    eps = (x - denoised) / sigma
    c = eta * sigma_next * math.sqrt(max(sigma**2 - sigma_next**2, 0.0)) / sigma
    x = denoised + math.sqrt(max(sigma_next**2 - c**2, 0.0)) * eps
    return x + c * noise if c > 0 else x


@register("ddim")
def ddim(denoiser, x, sigmas, *, eta: float = 0.0, generator=None, callback=None, progress=False):
    """DDIM (Song et al. 2021); ``eta`` in [0, 1] interpolates deterministic DDIM (0) and DDPM (1)."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        den = denoiser(x, s)
        noise = noise_like(x, generator) if eta > 0 and s_next > 0 else None
        x = ddim_step(x, den, s, s_next, eta, noise)
        _cb(callback, i, x, den, s)
    return x


@register("ddpm")
def ddpm(denoiser, x, sigmas, *, variance: str = "small", generator=None, callback=None, progress=False):
    """DDPM ancestral sampling (Ho et al. 2020) with the posterior mean and a fixed variance.

    ``variance="small"``: the posterior variance ``beta_tilde`` (= DDIM with eta = 1);
    ``variance="large"``: ``beta_t`` itself, which in scale-free variables is
    ``(sigma^2 - sigma'^2)(1 + sigma'^2)/(1 + sigma^2)`` (a VP-process notion).
    """
    if variance not in ("small", "large"):
        raise ValueError(f"variance must be 'small' or 'large', got {variance!r}")
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        den = denoiser(x, s)
        if s_next == 0:
            x = den
        elif variance == "small":
            x = ddim_step(x, den, s, s_next, 1.0, noise_like(x, generator))
        else:
            mean = den + (s_next**2 / s**2) * (x - den)
            std = math.sqrt((s**2 - s_next**2) * (1 + s_next**2) / (1 + s**2))
            x = mean + std * noise_like(x, generator)
        _cb(callback, i, x, den, s)
    return x


# ----------------------------------------------------------------------------- probability-flow ODE
@register("euler")
def euler(denoiser, x, sigmas, *, callback=None, progress=False):
    """Euler on the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma`` (= deterministic DDIM)."""
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        den = denoiser(x, s)
        x = x + (s_next - s) * (x - den) / s
        _cb(callback, i, x, den, s)
    return x
