"""The samplers: each a function ``f(denoiser, x, sigmas, *, generator, callback, **options)``, in one
registry, and :func:`sample`, which runs one (see the package docstring, :mod:`unnoise.samplers`)."""
from __future__ import annotations

import inspect
import math
from typing import Callable

import numpy as np
import torch
from numpy.polynomial import polynomial as P
from tqdm.auto import tqdm

from .. import categorical
from ..ode import odeint_adaptive
from ..processes import CategoricalProcess

_REGISTRY: dict[str, Callable] = {}
# The sampler unnoise.sample uses when none is named: chosen with the schedules' default grids by
# benchmarks/samplers_vs_peers.py --tune on training mixtures at 5, 10 and 20 NFE (dpmpp_2m before issue 16).
DEFAULT_SAMPLER = "ipndm"


_READS_EVERY_STEP: set[str] = set()


def register(name: str, reads_every_step: bool = False):
    """Decorator adding a sampler function to the registry under ``name``.

    ``reads_every_step``: the sampler reads its state back to the host every step anyway (adaptive step-size
    control); its denoiser outputs are then checked for NaN/inf at every call (see :class:`CountingDenoiser`)."""
    def deco(fn):
        _REGISTRY[name] = fn
        if reads_every_step:
            _READS_EVERY_STEP.add(name)
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
    """Wraps a denoiser, counting real calls (network evaluations, NFE) and checking every output.

    An output whose shape differs from ``x``'s raises instead of being broadcast.  A NaN or inf in an output is
    recorded on the device (the first bad call's number, no host read per call, so a GPU is never drained
    between steps) and :meth:`check` -- called by :func:`sample` once, at the end -- raises a ``ValueError``
    naming that call, its grid step and its sigma.  With ``eager=True`` every call checks and raises at once
    (for samplers that read their state back every step anyway, e.g. adaptive step-size control, where NaNs
    would otherwise steer the step sizes).  ``sigmas`` (the grid) only serves the message.
    """

    def __init__(self, denoiser, cond=None, sigmas=None, eager: bool = False):
        self.denoiser, self.cond, self.calls, self.eager = denoiser, cond, 0, eager
        self.sigmas = None if sigmas is None else [float(v) for v in sigmas]
        self._first_bad = None  # device int64: number of the first call with a non-finite output (0: none)
        self._levels: list = []  # the sigma of every call (a float, or the tensor it came as), for the message

    def _where(self, sigma) -> str:
        s = float(sigma.reshape(-1)[0]) if isinstance(sigma, torch.Tensor) else float(sigma)
        if self.sigmas is None:
            return f"sigma = {s:.4g}"
        step = max([i for i, v in enumerate(self.sigmas[:-1]) if v >= s * (1 - 1e-6)], default=0)
        return f"step {step} of {len(self.sigmas) - 1}, sigma = {s:.4g}"

    def __call__(self, x, sigma):
        self.calls += 1
        if isinstance(sigma, torch.Tensor):
            sigma = sigma.to(dtype=x.dtype, device=x.device)
        else:  # a Python number: filled on the device (no host-to-device copy)
            sigma = torch.full((), sigma, dtype=x.dtype, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        out = self.denoiser(x, sigma) if self.cond is None else self.denoiser(x, sigma, self.cond)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the denoiser returned {got} for x of shape {tuple(x.shape)} ({self._where(sigma)}); "
                             "it must return a tensor shaped like x (an estimate of x0)")
        bad = ~torch.isfinite(out).all()
        if self.eager:
            if bool(bad):
                raise ValueError(self._message(self.calls, sigma))
            return out
        self._levels.append(sigma)
        if self._first_bad is None:
            self._first_bad = torch.zeros((), dtype=torch.int64, device=out.device)
        self._first_bad = torch.where(bad & (self._first_bad == 0), self.calls, self._first_bad)
        return out

    def _message(self, call: int, sigma) -> str:
        return (f"the denoiser returned NaN or inf at call {call} ({self._where(sigma)}); "
                "check the model (weights, guidance scale, inputs) before sampling again")

    def check(self) -> None:
        """Raise ``ValueError`` naming the first call whose output held NaN or inf (one host read)."""
        if self._first_bad is None:
            return
        first = int(self._first_bad)
        if first:
            raise ValueError(self._message(first, self._levels[first - 1]))


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


def sample(denoiser, x: torch.Tensor, sigmas, sampler: str = DEFAULT_SAMPLER, generator: torch.Generator | None = None,
           cond=None, callback: Callable | None = None, progress: bool = False, return_nfe: bool = False,
           process=None, **options):
    """Run ``sampler`` from ``x`` at ``sigmas[0]`` down the grid; return the sample at ``sigmas[-1]``.

    Args:
        denoiser: any callable ``D(x, sigma[, cond])`` (an analytic mixture, a trained model, a guided combination).
        x: ``(batch, ...)`` start, typically ``torch.randn(shape) * sigmas[0]``.
        sigmas: decreasing grid, e.g. ``schedule.sampling_sigmas(steps)``, or an :class:`AutoSigmas`
            (a step budget whose grid :func:`optimize_sigmas` chooses for this denoiser and sampler).
        sampler: a name from :func:`available`; by default :data:`DEFAULT_SAMPLER` (``ipndm``, measured
            best with the schedules' default grids at 5-20 steps).
        generator: randomness of stochastic samplers.
        cond: conditioning passed to the denoiser as its third argument.
        callback: called as ``callback(i, x, denoised, sigma)`` after each step.
        progress: show a progress bar.
        return_nfe: also return the number of denoiser calls made.
        process: the model's forward process (``schedule.forward``, :mod:`unnoise.processes`): its
            ``project`` maps the finished sample onto the data's space (angles wrapped to ``[-pi, pi)``).
            The steps themselves run in the lifted Euclidean space, where they are exact (see there).
            A categorical process (tokens) samples by :func:`unnoise.categorical.sample` from the tokens
            ``x`` at ``sigmas[0] = inf``, whatever ``sampler`` says.
        **options: sampler-specific options (see :func:`sampler_options`).
    """
    if isinstance(process, CategoricalProcess):  # tokens: ancestral steps (unnoise.categorical), whatever sampler
        return categorical.sample(denoiser, process, tuple(x.shape), sigmas, generator=generator, cond=cond,
                                  return_calls=return_nfe, start=x)
    fn = _get(sampler)
    if callable(getattr(sigmas, "grid", None)):  # an AutoSigmas: the grid is tuned for this denoiser
        if cond is not None:
            raise ValueError("AutoSigmas cannot see the conditioning; call optimize_sigmas with a denoiser "
                             "that closes over it and pass the grid it returns")
        sigmas.check_start(x)
        sigmas = sigmas.grid(denoiser, tuple(x.shape[1:]), sampler, options, device=x.device)
    # the grid as Python numbers (in x's precision, one read): the steps read no device memory
    sigmas = check_sigmas(sigmas).to(dtype=x.dtype).tolist()
    if not torch.all(torch.isfinite(x)):
        raise ValueError("the starting x contains NaN or inf")
    allowed = set(inspect.signature(fn).parameters)
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"sampler {sampler!r} has no option(s) {', '.join(sorted(unknown))}; "
                         f"it accepts: {', '.join(sorted(sampler_options(sampler))) or 'none'}")
    counted = CountingDenoiser(denoiser, cond, sigmas, eager=sampler in _READS_EVERY_STEP)
    kwargs = dict(options)
    if "generator" in allowed:
        kwargs["generator"] = generator
    if "callback" in allowed:
        kwargs["callback"] = callback
    if "progress" in allowed:
        kwargs["progress"] = progress
    with torch.no_grad():
        out = fn(counted, x, sigmas, **kwargs)
    counted.check()
    if process is not None:
        out = process.project(out)
    return (out, counted.calls) if return_nfe else out


def _steps(sigmas, progress):
    n = len(sigmas) - 1
    return tqdm(range(n), desc="sampling", leave=False) if progress else range(n)


def noise_like(x, generator=None):
    """Standard normal noise shaped like ``x``, drawn from ``generator`` (which may live on the CPU)."""
    device = generator.device if generator is not None else x.device
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device)
    if z.device.type == "cpu" and x.device.type == "cuda":  # from pinned memory: no wait for the GPU
        return z.pin_memory().to(x.device, non_blocking=True)
    return z.to(x.device)


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
    if not _is_number(eta) or not 0.0 <= eta <= 1.0:
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


def _check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _is_number(value) -> bool:
    """A finite real number (not a bool, string or tensor of several values)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_nonneg(name, value):
    if not (_is_number(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@register("heun")
def heun(denoiser, x, sigmas, *, callback=None, progress=False):
    """Heun's 2nd-order method on the probability-flow ODE (EDM, Karras et al. 2022, Algorithm 1).

    Each step takes an Euler step with slope ``d = (x - D(x, sigma)) / sigma`` and corrects it with the
    average of ``d`` and the slope at the Euler point.  The step to ``sigma = 0`` has no slope there
    (division by zero), so it stays Euler, which lands exactly on ``D``: ``2 N - 1`` evaluations for
    ``N`` steps ending at 0.
    """
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x, den = _heun_step(denoiser, x, s, s_next)
        _cb(callback, i, x, den, s)
    return x


def _heun_step(denoiser, x, s, s_next):
    """One Heun step of the probability-flow ODE from ``s`` to ``s_next`` (Euler when ``s_next = 0``);
    returns the new ``x`` and the denoiser output at the start."""
    den = denoiser(x, s)
    d = (x - den) / s
    x_pred = x + (s_next - s) * d
    if s_next == 0:
        return x_pred, den
    d_next = (x_pred - denoiser(x_pred, s_next)) / s_next
    return x + (s_next - s) * 0.5 * (d + d_next), den


@register("rk45", reads_every_step=True)
def rk45(denoiser, x, sigmas, *, rtol: float = 1e-4, atol: float = 1e-4, callback=None, progress=False):
    """Adaptive Dormand-Prince 5(4) on the probability-flow ODE, with error control.

    In ``t = log sigma`` the ODE reads ``dx/dt = sigma dx/dsigma = x - D(x, e^t)``: its right-hand side
    stays O(|x|) at every noise level, so one tolerance fits the whole range (in sigma itself the slope
    blows up like ``1/sigma`` near the data).  Only the grid's endpoints matter: it integrates from
    ``sigmas[0]`` to the last positive sigma and, when the grid ends at 0, finishes with the exact
    limit ``x = D(x, sigma_min)`` (the ODE's ``sigma -> 0`` endpoint is the denoiser's output at the
    smallest noise it was asked about).  The evaluations spent are counted by :func:`sample`
    (``return_nfe=True``).
    """
    if not (_is_number(rtol) and _is_number(atol)) or rtol <= 0 or atol <= 0:
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")

    s0 = float(sigmas[0])
    s_end = float(sigmas[-2]) if float(sigmas[-1]) == 0 else float(sigmas[-1])
    if s_end < s0:
        x, _ = odeint_adaptive(lambda t, y: y - denoiser(y, math.exp(t)), x, math.log(s0), math.log(s_end),
                               rtol=rtol, atol=atol)
    den = x
    if float(sigmas[-1]) == 0:
        den = denoiser(x, s_end)
        x = den
    _cb(callback, len(sigmas) - 2, x, den, s_end)
    return x


@register("edm")
def edm_stochastic(denoiser, x, sigmas, *, S_churn: float = 0.0, S_tmin: float = 0.0, S_tmax: float = float("inf"),
                   S_noise: float = 1.0, generator=None, callback=None, progress=False):
    """EDM's stochastic sampler (Karras et al. 2022, Algorithm 2).

    At each level inside ``[S_tmin, S_tmax]`` it first raises the noise from ``sigma`` to
    ``sigma_hat = sigma (1 + gamma)``, ``gamma = min(S_churn / N, sqrt(2) - 1)``, by adding fresh noise of
    variance ``S_noise^2 (sigma_hat^2 - sigma^2)`` (exact for the forward process when ``S_noise = 1``),
    then takes a Heun step of the probability-flow ODE from ``sigma_hat`` to the next level (Euler on
    the last step to 0).  ``S_churn = 0`` is exactly :func:`heun`.
    """
    for name, v in (("S_churn", S_churn), ("S_noise", S_noise), ("S_tmin", S_tmin)):
        _check_nonneg(name, v)
    if not (_is_number(S_tmax) or S_tmax == float("inf")) or not S_tmax >= S_tmin:
        raise ValueError(f"S_tmax must be >= S_tmin, got {S_tmax} < {S_tmin}")
    n = len(sigmas) - 1
    gamma_max = min(S_churn / n, math.sqrt(2.0) - 1.0)
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        gamma = gamma_max if S_tmin <= s <= S_tmax else 0.0
        s_hat = s * (1.0 + gamma)
        if gamma > 0:
            x = x + math.sqrt(s_hat**2 - s**2) * S_noise * noise_like(x, generator)
        x, den = _heun_step(denoiser, x, s_hat, s_next)
        _cb(callback, i, x, den, s)
    return x


# ----------------------------------------------------------------------------- score-based (Langevin / SDE)
def _score(denoiser, x, sigma):
    """Tweedie: ``grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2``; also returns ``D``."""
    den = denoiser(x, sigma)
    return (den - x) / sigma**2, den


@register("langevin")
def annealed_langevin(denoiser, x, sigmas, *, n_steps_each: int = 10, eps_step: float | None = None,
                      denoise_final: bool = True, generator=None, callback=None, progress=False):
    """Annealed Langevin dynamics (NCSN, Song & Ermon 2019, Algorithm 1).

    For every positive level ``sigma_i`` of the grid it runs ``n_steps_each`` steps of unadjusted
    Langevin dynamics on ``p_sigma_i``:
    ``x <- x + (alpha_i / 2) score(x, sigma_i) + sqrt(alpha_i) z`` with
    ``alpha_i = eps_step * sigma_i^2 / sigma_L^2`` (``sigma_L`` the smallest positive level), so every
    level mixes at the same rate relative to its width.  ``eps_step`` defaults to ``0.2 sigma_L^2``
    (Song & Ermon's 2e-5 at ``sigma_L = 0.01``).  When the grid ends at 0 and ``denoise_final`` is set,
    the sample is finished with one denoising step ``x = D(x, sigma_L)`` (Jolicoeur-Martineau et al.
    2021), which removes the leftover ``sigma_L`` noise.  Evaluations: ``n_steps_each`` per level (+1).
    """
    _check_positive_int("n_steps_each", n_steps_each)
    levels = [float(s) for s in sigmas if float(s) > 0]
    sigma_l = levels[-1]
    if eps_step is None:
        eps_step = 0.2 * sigma_l**2
    if not _is_number(eps_step) or not eps_step > 0:
        raise ValueError(f"eps_step must be positive, got {eps_step}")
    for i in (tqdm(range(len(levels)), desc="langevin", leave=False) if progress else range(len(levels))):
        s = levels[i]
        alpha = eps_step * s**2 / sigma_l**2
        for _ in range(n_steps_each):
            score, den = _score(denoiser, x, s)
            x = x + 0.5 * alpha * score + math.sqrt(alpha) * noise_like(x, generator)
        _cb(callback, i, x, den, s)
    if float(sigmas[-1]) == 0 and denoise_final:
        x = denoiser(x, sigma_l)
    return x


@register("euler_maruyama")
def euler_maruyama(denoiser, x, sigmas, *, generator=None, callback=None, progress=False):
    """Euler-Maruyama on the reverse-time SDE (Song et al. 2021) in the scale-free variable.

    Forward: ``x_sigma = x_0 + sigma eps`` is the SDE ``dx = g dW`` with ``g^2 = d(sigma^2)/dsigma = 2 sigma``
    (time = sigma).  Its reverse (Anderson 1982) is ``dx = -g^2 score dsigma + g dW_bar`` run with
    ``dsigma < 0``, so a step from ``sigma`` to ``sigma' < sigma`` is
    ``x' = x + 2 sigma (sigma - sigma') score + sqrt(2 sigma (sigma - sigma')) z``.  The step to 0 returns
    the noise-free mean ``D(x, sigma)`` (the usual final denoising).  VP models are covered since
    ``x_t = s x``.
    """
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        score, den = _score(denoiser, x, s)
        if s_next == 0:
            x = den
        else:
            ds = s - s_next
            x = x + 2 * s * ds * score + math.sqrt(2 * s * ds) * noise_like(x, generator)
        _cb(callback, i, x, den, s)
    return x


def _langevin_correct(denoiser, x, sigma, snr, generator):
    """One Langevin corrector step with Song et al. (2021)'s signal-to-noise step rule.

    ``step = 2 (snr |z| / |score|)^2`` per example (norms over all coordinates), which makes the drift
    ``step * score`` exactly ``snr`` times the injected noise ``sqrt(2 step) z`` in norm.
    """
    score, _ = _score(denoiser, x, sigma)
    z = noise_like(x, generator)
    dims = tuple(range(1, x.ndim))
    z_norm = torch.linalg.vector_norm(z, dim=dims, keepdim=True)
    g_norm = torch.linalg.vector_norm(score, dim=dims, keepdim=True).clamp_min(1e-30)
    step = 2 * (snr * z_norm / g_norm) ** 2
    return x + step * score + torch.sqrt(2 * step) * z


@register("pc")
def predictor_corrector(denoiser, x, sigmas, *, predictor: str = "reverse_diffusion", n_corrector: int = 1,
                        snr: float = 0.16, generator=None, callback=None, progress=False):
    """Predictor-corrector sampling (Song et al. 2021, Algorithm 2 for VE SDEs).

    At each level: ``n_corrector`` Langevin corrector steps at ``sigma`` (see :func:`_langevin_correct`),
    then one predictor step to the next level, either

    * ``"reverse_diffusion"``: the reverse of the discretised forward chain,
      ``x' = x + (sigma^2 - sigma'^2) score + sqrt(sigma^2 - sigma'^2) z``, or
    * ``"euler_maruyama"``: see :func:`euler_maruyama`.

    The step to 0 returns the predictor's noise-free mean, ``D(x, sigma)``.
    Evaluations: ``n_corrector + 1`` per step.
    """
    if predictor not in ("reverse_diffusion", "euler_maruyama"):
        raise ValueError(f"predictor must be 'reverse_diffusion' or 'euler_maruyama', got {predictor!r}")
    if not isinstance(n_corrector, int) or n_corrector < 0:
        raise ValueError(f"n_corrector must be an integer >= 0, got {n_corrector!r}")
    if not _is_number(snr) or not snr > 0:
        raise ValueError(f"snr must be positive, got {snr}")
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        for _ in range(n_corrector):
            x = _langevin_correct(denoiser, x, s, snr, generator)
        score, den = _score(denoiser, x, s)
        if s_next == 0:
            x = den
        else:
            var = s**2 - s_next**2 if predictor == "reverse_diffusion" else 2 * s * (s - s_next)
            x = x + var * score + math.sqrt(var) * noise_like(x, generator)
        _cb(callback, i, x, den, s)
    return x


# ----------------------------------------------------------------------------- gradient estimation
@register("gradient_estimation")
def gradient_estimation(denoiser, x, sigmas, *, gamma: float = 2.0, mu: float = 0.0, generator=None,
                        callback=None, progress=False):
    """Gradient-estimation sampler (Permenter & Yuan 2023).

    DDIM reads as gradient descent on the squared distance to the data manifold, with
    ``eps = (x - D)/sigma`` its (scaled) gradient: ``x' = x - (sigma - sigma') eps``.  Since the network's
    error on that gradient is correlated between steps, the sampler uses the extrapolated estimate
    ``eps_bar = gamma eps_t + (1 - gamma) eps_prev`` (``gamma = 2`` is their choice; the first step uses
    ``eps_t``).  Noise mixing ``mu in [0, 1)`` splits the target level as
    ``sigma' = sigma^mu sigma_p^(1 - mu)``: descend to ``sigma_p`` and add back fresh noise of std
    ``sqrt(sigma'^2 - sigma_p^2)``, i.e. ``x' = x - (sigma - sigma_p) eps_bar + sqrt(sigma'^2 - sigma_p^2) z``.
    ``gamma = 1, mu = 0`` is exactly DDIM; ``mu = 1/2`` gives ``sigma_p = sigma'^2 / sigma``, DDIM with
    ``eta = 1`` (DDPM's posterior).
    """
    if not (_is_number(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a positive number (1 = DDIM, 2 = recommended), got {gamma!r}")
    if not _is_number(mu) or not 0.0 <= mu < 1.0:
        raise ValueError(f"mu must be in [0, 1) (0 = deterministic, 0.5 = DDPM-like), got {mu!r}")
    eps_prev = None
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        den = denoiser(x, s)
        eps = (x - den) / s
        eps_bar = eps if eps_prev is None else gamma * eps + (1.0 - gamma) * eps_prev
        s_p = (s_next / s**mu) ** (1.0 / (1.0 - mu))
        x = x - (s - s_p) * eps_bar
        extra = math.sqrt(max(s_next**2 - s_p**2, 0.0))
        if extra > 0:
            x = x + extra * noise_like(x, generator)
        eps_prev = eps
        _cb(callback, i, x, den, s)
    return x


# ----------------------------------------------------------------------------- flow matching
@register("flow_euler")
def flow_euler(denoiser, x, sigmas, *, callback=None, progress=False):
    """Euler in the rectified-flow time ``t = sigma / (1 + sigma)`` on ``x_t = (1 - t) x_0 + t eps``.

    The velocity ``u = eps - x_0`` follows from the denoiser as ``u = (x_t - D) / t`` with
    ``x_t = x / (1 + sigma)``; steps are linear in ``t``: ``x_t' = x_t + (t' - t) u``.  (Algebraically
    this equals DDIM/:func:`euler` on the same sigma grid: ``x_t' = (1 - t') D + t' eps``.)
    """
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        t, t_next = s / (1 + s), s_next / (1 + s_next)
        xt = x / (1 + s)
        den = denoiser(x, s)
        xt = xt + (t_next - t) * (xt - den) / t
        x = xt * (1 + s_next)
        _cb(callback, i, x, den, s)
    return x


@register("flow_heun")
def flow_heun(denoiser, x, sigmas, *, callback=None, progress=False):
    """Heun (2nd order) in the rectified-flow time ``t = sigma / (1 + sigma)``; Euler on the step to t = 0.

    Velocity ``u(x_t, t) = (x_t - D(x_t / (1 - t), sigma(t))) / t``; see :func:`flow_euler`.
    """
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        t, t_next = s / (1 + s), s_next / (1 + s_next)
        xt = x / (1 + s)
        den = denoiser(x, s)
        u = (xt - den) / t
        xt_pred = xt + (t_next - t) * u
        if s_next > 0:
            u_next = (xt_pred - denoiser(xt_pred * (1 + s_next), s_next)) / t_next
            xt = xt + (t_next - t) * 0.5 * (u + u_next)
        else:
            xt = xt_pred
        x = xt * (1 + s_next)
        _cb(callback, i, x, den, s)
    return x


# ----------------------------------------------------------------------------- exponential integrators
# With lambda = -log sigma the probability-flow ODE is linear in x:  d(x / sigma)/d lambda = D e^lambda.
# Over a step h = lambda_t - lambda_s = log(sigma_s / sigma_t) its exact solution is
#     x_t = (sigma_t / sigma_s) x_s + int_0^h e^{-(h - u)} D(lambda_s + u) du,
# and expanding D in a Taylor series around lambda_s gives the weights
#     int_0^h e^{-(h-u)} du = 1 - e^{-h},  int_0^h e^{-(h-u)} u du = h - 1 + e^{-h},
#     int_0^h e^{-(h-u)} u^2/2 du = (h^2 - 2 h + 2 - 2 e^{-h}) / 2.
# Multistep solvers estimate the derivatives of D from previous steps (one evaluation per step).
# These are exactly the VP (x_t = alpha_t x) data-prediction formulas divided by alpha_t.
def _effective_order(order, n_hist, i, n, s_next, lower_order_final):
    """Order used at step ``i`` of ``n``: warm-up, lower order at the end of short runs, first order to 0."""
    eff = min(order, n_hist)
    if lower_order_final and n < 15:  # as in DPM-Solver / diffusers: steadier for few steps
        if i == n - 1:
            eff = 1
        elif i == n - 2:
            eff = min(eff, 2)
    if s_next == 0:  # lambda = inf: every first-order exponential step lands exactly on D
        eff = 1
    return eff


def _check_order(order, max_order):
    if not isinstance(order, int) or isinstance(order, bool) or not 1 <= order <= max_order:
        raise ValueError(f"order must be an integer in [1, {max_order}], got {order!r}")


def _dpmpp_multistep(denoiser, x, sigmas, order, lower_order_final, callback, progress, d2_weight="reference"):
    n = len(sigmas) - 1
    hist: list[tuple[float, torch.Tensor]] = []  # (lambda, D), most recent last
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        den = denoiser(x, s)
        hist = (hist + [(-math.log(s), den)])[-order:]
        eff = _effective_order(order, len(hist), i, n, s_next, lower_order_final)
        if eff == 1 or s_next == 0:
            x = den if s_next == 0 else (s_next / s) * x - math.expm1(-math.log(s / s_next)) * den
        else:
            h = math.log(s / s_next)
            phi1 = -math.expm1(-h)  # 1 - e^{-h}
            lam0, m0 = hist[-1]
            lam1, m1 = hist[-2]
            r0 = (lam0 - lam1) / h
            if eff == 2:
                # DPM-Solver++(2M), Lu et al. 2022 Algorithm 2: D0 + (D0 - D1) / (2 r0) in the first-order weight
                x = (s_next / s) * x + phi1 * (m0 + (m0 - m1) / (2 * r0))
            else:
                lam2, m2 = hist[-3]
                r1 = (lam1 - lam2) / h
                d1_0, d1_1 = (m0 - m1) / r0, (m1 - m2) / r1  # ~ h D' at the midpoints of the last two intervals
                d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)  # ~ h D'(lambda_s)
                d2 = (d1_0 - d1_1) / (r0 + r1)  # ~ h^2 D'' / 2
                c1 = (h - phi1) / h  # (h - 1 + e^{-h}) / h
                if d2_weight == "taylor":  # the Taylor weight of h^2 D''/2 (see the comment above)
                    c2 = (h * h - 2 * h + 2 * phi1) / h**2
                else:  # DPM-Solver's multistep weight: half the Taylor weight as h -> 0
                    c2 = 0.5 - (h - phi1) / h**2
                x = (s_next / s) * x + phi1 * m0 + c1 * d1 + c2 * d2
        _cb(callback, i, x, den, s)
    return x


@register("dpmpp_2m")
def dpmpp_2m(denoiser, x, sigmas, *, lower_order_final: bool = True, callback=None, progress=False):
    """DPM-Solver++(2M) (Lu et al. 2022): second-order multistep exponential integrator, one NFE per step.

    Data-prediction form in the scale-free variable: with ``h = log(sigma / sigma')`` and
    ``r = h_prev / h``, ``x' = (sigma'/sigma) x + (1 - e^{-h}) (D + (D - D_prev) / (2 r))``.
    The first step is first order (no history; = DDIM); with ``lower_order_final`` runs of fewer than 15
    steps finish with a first-order step; the step to 0 is always ``x = D``.  Deterministic.
    """
    return _dpmpp_multistep(denoiser, x, sigmas, 2, lower_order_final, callback, progress)


@register("dpmpp_3m")
def dpmpp_3m(denoiser, x, sigmas, *, lower_order_final: bool = True, d2_weight: str = "reference", callback=None,
             progress=False):
    """DPM-Solver++(3M) (Lu et al. 2022): third-order multistep in data-prediction form, one NFE per step.

    Uses the last three denoiser outputs for estimates ``d1 ~ h D'`` and ``d2 ~ h^2 D''/2``.
    ``d2_weight="reference"`` (default) weights ``d2`` as the reference implementation does, so results
    agree with diffusers' ``DPMSolverMultistepScheduler(solver_order=3)``; that weight,
    ``1/2 - (h - 1 + e^{-h})/h^2 ~ h/6``, is half the Taylor weight ``(h^2 - 2h + 2 - 2e^{-h})/h^2 ~ h/3``,
    so the method converges with order 2 as steps grow (measured 2.4 -> 2.05 from 16 to 128 steps).
    ``d2_weight="taylor"`` uses the Taylor weight and converges with order 3 (measured 3.1 -> 2.7),
    though at ~16 steps the reference weight was the more accurate of the two in our tests.
    Warm-up: orders 1, 2, 3; with ``lower_order_final`` runs under 15 steps use orders 2 and 1 on the
    last two steps.
    """
    if d2_weight not in ("reference", "taylor"):
        raise ValueError(f"d2_weight must be 'reference' or 'taylor', got {d2_weight!r}")
    return _dpmpp_multistep(denoiser, x, sigmas, 3, lower_order_final, callback, progress, d2_weight)


def _unipc_rhos(h, rks, variant, full):
    """UniPC's weights for the divided differences ``D1_k = (m_k - m0) / r_k``.

    They solve ``sum_k rho_k r_k^(j-1) = j! psi_j(h) / B(h)`` for ``j = 1..p`` (order conditions of the
    Taylor expansion in lambda), where ``psi_1 = (e^{-h} - 1)/(-h) - 1``, ``psi_{j+1} = psi_j/(-h) - 1/(j+1)!``
    and ``B(h) = e^{-h} - 1`` (bh2) or ``-h`` (bh1).  The predictor drops the last condition (its final
    node r = 1 is the unknown next value); order 2 predictor / order 1 corrector use the closed form 1/2.
    """
    hh = -h
    B = math.expm1(hh) if variant == "bh2" else hh
    p = len(rks)
    psi, fact, b = math.expm1(hh) / hh - 1.0, 1.0, []
    for j in range(1, p + 1):
        b.append(psi * fact / B)
        fact *= j + 1
        psi = psi / hh - 1.0 / fact
    R = torch.tensor([[r ** (j - 1) for r in rks] for j in range(1, p + 1)], dtype=torch.float64)
    b = torch.tensor(b, dtype=torch.float64)
    if full:
        rho = [0.5] if p == 1 else torch.linalg.solve(R, b).tolist()
    else:
        rho = [] if p == 1 else [0.5] if p == 2 else torch.linalg.solve(R[:-1, :-1], b[:-1]).tolist()
    return rho, B


def _unipc_update(x, hist, lam_t, order, variant, m_t=None):
    """UniP step (``m_t is None``) or UniC correction of the step from ``hist[-1]`` to ``lam_t``."""
    lam0, m0 = hist[-1]
    h = lam_t - lam0
    prev = hist[-order:-1][::-1]  # the order - 1 outputs before m0, most recent first
    rks = [(lam_k - lam0) / h for lam_k, _ in prev] + [1.0]
    rho, B = _unipc_rhos(h, rks, variant, full=m_t is not None)
    out = math.exp(-h) * x - math.expm1(-h) * m0
    terms = [rho[k] * (m_k - m0) / rks[k] for k, (_, m_k) in enumerate(prev)]
    if m_t is not None:
        terms.append(rho[-1] * (m_t - m0))
    return out - B * sum(terms) if terms else out


@register("unipc")
def unipc(denoiser, x, sigmas, *, order: int = 2, variant: str = "bh2", lower_order_final: bool = True,
          disable_corrector=(), callback=None, progress=False):
    """UniPC (Zhao et al. 2023): multistep predictor UniP-p plus corrector UniC, one NFE per step.

    The corrector re-does the previous step once the denoiser output at its end is known (that output
    is needed anyway for the next step, so correction is free): ``x`` is replaced by the UniC value
    computed from the previous start, its history and the new output, while the history keeps the
    output at the uncorrected point.  ``order`` in 1..3, ``variant`` ``"bh2"`` (recommended for guided
    / few-step sampling) or ``"bh1"``; ``disable_corrector`` lists step indices whose result is not
    corrected.  With ``lower_order_final`` step ``i`` of ``n`` uses order ``min(order, n - i)``.
    """
    _check_order(order, 3)
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"variant must be 'bh1' or 'bh2', got {variant!r}")
    n = len(sigmas) - 1
    hist: list[tuple[float, torch.Tensor]] = []
    x_last, order_last = None, None
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        den = denoiser(x, s)
        lam = -math.log(s)
        if x_last is not None and (i - 1) not in disable_corrector:
            x = _unipc_update(x_last, hist, lam, order_last, variant, m_t=den)
        hist = (hist + [(lam, den)])[-order:]
        eff = min(order, n - i) if lower_order_final else order
        eff = min(eff, len(hist))
        x_last, order_last = x, eff
        if s_next == 0:
            x = den  # first order into sigma = 0 lands on D
        else:
            x = _unipc_update(x, hist, -math.log(s_next), eff, variant)
        _cb(callback, i, x, den, s)
    return x


def _deis_weights(us, u_s, rho_s, rho_t):
    """``int_{rho_s}^{rho_t} L_j(log rho) d rho`` for the Lagrange basis ``L_j`` on nodes ``us`` (log-rho).

    With ``u = log rho``, ``d rho = e^u du`` and ``int e^u u^k du = e^u sum_m (-1)^m k!/(k-m)! u^(k-m)``;
    the antiderivative vanishes at rho = 0.
    """

    def anti(k, rho):
        if rho == 0:
            return 0.0
        u = math.log(rho)
        return rho * sum((-1) ** m * math.factorial(k) / math.factorial(k - m) * u ** (k - m) for m in range(k + 1))

    weights = []
    for j, uj in enumerate(us):
        others = [uk for k, uk in enumerate(us) if k != j]
        poly = np.poly(others) / np.prod([uj - uk for uk in others]) if others else np.array([1.0])
        coeffs = poly[::-1]  # coeffs[k] multiplies u^k
        weights.append(sum(c * (anti(k, rho_t) - anti(k, rho_s)) for k, c in enumerate(coeffs)))
    return weights


@register("deis")
def deis(denoiser, x, sigmas, *, order: int = 3, lower_order_final: bool = True, callback=None, progress=False):
    """DEIS (Zhang & Chen 2023), multistep "log-rho" variant: exponential integrator with polynomial eps.

    In the scale-free variable (``rho = sigma``) the probability-flow ODE is ``dx/d rho = eps(x, rho)``
    exactly, so ``x_t = x_s + int eps d rho``; DEIS interpolates ``eps`` through the last ``order``
    outputs by a polynomial in ``log rho`` and integrates it in closed form (:func:`_deis_weights`).
    Order 1 is DDIM.  Warm-up and final lower orders as in :func:`dpmpp_3m`; the step to 0 is ``x = D``.
    """
    _check_order(order, 3)
    n = len(sigmas) - 1
    hist: list[tuple[float, torch.Tensor]] = []  # (log sigma, eps)
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        den = denoiser(x, s)
        hist = (hist + [(math.log(s), (x - den) / s)])[-order:]
        eff = _effective_order(order, len(hist), i, n, s_next, lower_order_final)
        if s_next == 0:
            x = den
        else:
            used = hist[-eff:]
            w = _deis_weights([u for u, _ in used], math.log(s), s, s_next)
            x = x + sum(wj * e for wj, (_, e) in zip(w, used))
        _cb(callback, i, x, den, s)
    return x


# ----------------------------------------------------------------------------- linear multistep in sigma
# In the scale-free variable the probability-flow ODE is dx/dsigma = eps(x, sigma), eps = (x - D)/sigma, so a step is
#     x' = x + int_sigma^sigma' eps(x(tau), tau) dtau.
# Adams-Bashforth methods replace eps by the polynomial through its last p values and integrate that exactly.
def lms_coefficients(nodes, sigma, sigma_next) -> list[float]:
    """Adams-Bashforth weights ``w_j = int_sigma^sigma_next l_j(tau) d tau`` of the Lagrange basis on ``nodes``.

    ``nodes`` are the noise levels of the stored slopes, most recent first (``nodes[0] = sigma``);
    ``l_j(tau) = prod_{k != j} (tau - nodes[k]) / (nodes[j] - nodes[k])`` is 1 at ``nodes[j]`` and 0 at the others,
    so ``sum_j w_j eps_j`` is the exact integral of the interpolating polynomial of degree ``p - 1``.  The
    polynomial is built in the shifted variable ``u = tau - sigma`` (nodes ``nodes[k] - sigma``) and integrated
    in closed form from ``u = 0`` to ``u = sigma_next - sigma``, all in float64: these are the coefficients
    k-diffusion's ``linear_multistep_coeff`` computes by quadrature and azula's zAB by a Vandermonde solve.
    """
    us = [float(t) - float(sigma) for t in nodes]
    h = float(sigma_next) - float(sigma)
    out = []
    for j, uj in enumerate(us):
        others = [uk for k, uk in enumerate(us) if k != j]
        poly = P.polyfromroots(others) if others else [1.0]
        denom = math.prod(uj - uk for uk in others)
        out.append(float(P.polyval(h, P.polyint(poly))) / denom)
    return out


@register("lms")
def lms(denoiser, x, sigmas, *, order: int = 4, callback=None, progress=False):
    """Linear multistep (Adams-Bashforth) in the noise variable: k-diffusion's ``lms``, azula's ``zAB``.

    With ``eps_k = (x_k - D(x_k, sigma_k)) / sigma_k`` the slope of ``dx/dsigma = eps`` at the grid's levels,
    step ``i`` integrates the polynomial through the last ``p = min(order, i + 1)`` slopes exactly:
    ``x_{i+1} = x_i + sum_j w_j eps_{i-j}``, ``w_j = int_{sigma_i}^{sigma_{i+1}} l_j`` (:func:`lms_coefficients`).
    On a smooth ODE the local error is ``O(h^(p+1))``, so the method has order ``p`` for any spacing; in
    sigma (not log sigma) the slope ``eps`` stays bounded at large noise (it tends to the noise itself), so
    big first steps from ``sigma_max`` are cheap.  Order 1 is Euler (= DDIM).  The step to 0 uses the same
    formula (the polynomial extrapolated to 0), exactly as in k-diffusion.  One NFE per step, deterministic.
    """
    _check_order(order, 4)
    hist: list[tuple[float, torch.Tensor]] = []  # (sigma, eps), most recent first
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        den = denoiser(x, s)
        hist = [(s, (x - den) / s)] + hist[:order - 1]
        w = lms_coefficients([t for t, _ in hist], s, s_next)
        x = x + sum(wj * e for wj, (_, e) in zip(w, hist))
        _cb(callback, i, x, den, s)
    return x


# Adams-Bashforth weights for equal steps, most recent slope first (sum to 1)
_AB_EQUAL = {1: (1.0,), 2: (1.5, -0.5), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


@register("ipndm")
def ipndm(denoiser, x, sigmas, *, order: int = 3, callback=None, progress=False):
    """iPNDM (Zhang & Chen 2023, improved pseudo numerical methods; as benchmarked by Zhou et al. 2024).

    The same Adams-Bashforth step on ``dx/dsigma = eps`` as :func:`lms`, but with the fixed weights of equal
    step sizes, ``x' = x + (sigma' - sigma) sum_j c_j eps_{i-j}``:
    order 2 ``(3, -1)/2``, order 3 ``(23, -16, 5)/12``, order 4 ``(55, -59, 37, -9)/24`` (integrals of the
    Lagrange basis on equally spaced nodes, in units of the step).  The first steps warm up with orders
    1, 2, 3 (no Runge-Kutta start, so one NFE per step).  On a non-uniform grid these are not the weights of
    the actual nodes (:func:`lms` uses those): the weights still sum to 1, and on a smoothly graded grid
    (ratios of neighbouring steps ``1 + O(h)``) the mismatch costs ``O(h^3)`` a step, so iPNDM converges with
    order 2 there (measured 2.2 on a Karras grid, 16 -> 32 steps) while being less prone than exact LMS to
    the large extrapolation weights of the first, very unequal steps.  ``order = 3`` (the default) was the
    best single choice at 5-20 NFE on the default grids (``benchmarks/samplers_vs_peers.py --tune``).
    """
    _check_order(order, 4)
    hist: list[torch.Tensor] = []  # eps, most recent first
    for i in _steps(sigmas, progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        den = denoiser(x, s)
        hist = [(x - den) / s] + hist[:order - 1]
        c = _AB_EQUAL[len(hist)]
        x = x + (s_next - s) * sum(cj * e for cj, e in zip(c, hist))
        _cb(callback, i, x, den, s)
    return x


