"""The circle and the torus ``[-pi, pi)^d``: wrapping, the wrapped normal (the heat kernel), its score.

Periodic data (dihedral angles, phases, wind directions, times of day) diffuse under the wrapped Gaussian
process ``x_sigma = wrap(x_0 + sigma eps)``.  Its transition density on each angle is the wrapped normal,
which has two exact series; each converges fast in one regime:

    p_sigma(d) = sum_k N(d + 2 pi k; 0, sigma^2)                                   (images: small sigma)
               = (1 / 2 pi) (1 + 2 sum_{n >= 1} exp(-n^2 sigma^2 / 2) cos(n d))    (Fourier: large sigma)

Below ``sigma = 2`` the image sum is evaluated as a log-sum-exp (no underflow however small sigma is),
above it the Fourier series, whose value stays >= 0.72 / (2 pi) there (no 0/0 in the score however
large sigma is).  The numbers of terms follow from sigma so that the first omitted term is below
``e^-40`` (4e-18) of the sum.

Sampling on the torus: lift, then wrap once
-------------------------------------------
The probability-flow ODE ``dx/dsigma = -sigma grad log p_sigma(x)`` and the reverse SDE on the torus
have 2 pi-periodic vector fields.  Run in the *lifted* space ``R^d`` with the same periodic score, their
solutions project (mod 2 pi) exactly onto the torus solutions, and Brownian motion on the torus is
the projection of Brownian motion on ``R^d``.  So every unnoise sampler runs unchanged on the lifted
denoiser ``D(x, sigma) = x + sigma^2 score(x, sigma)`` (e.g. ``VonMisesMixture.denoise``, for any real
lift ``x``):

    x_T = (2 torch.rand(n, d, generator=g) - 1) * pi       # uniform: p_4 is uniform to 2 e^-8 = 7e-4
    sigmas = unnoise.schedules.LogLinear(0.01, 4.0).sampling_sigmas(steps)
    theta = wrap(unnoise.sample(vm.denoise, x_T, sigmas, sampler="dpmpp_2m"))

and the result is wrapped once at the end.  ``D`` itself is not periodic: it shifts by ``2 pi k`` with
``x``.  Samplers that only combine ``eps = (x - D) / sigma = -sigma score`` across steps (euler, heun,
ddim, ddpm, ipndm) give the same angles whether ``x`` is wrapped between steps or not; samplers that
combine denoised values ``D`` of different steps (dpmpp_2m, dpmpp_3m, unipc, deis) are broken by a wrap
between steps, which moves ``D_prev`` and ``D`` by different multiples of 2 pi
(``benchmarks/periodic_samplers.py`` measures both).
"""
from __future__ import annotations

import math

import torch

TWO_PI = 2 * math.pi
_SWITCH = 2.0  # sigma below which the image sum is used, above which the Fourier series
_TAIL = 40.0  # log of the ratio sum / first omitted term


def wrap(x: torch.Tensor) -> torch.Tensor:
    """``x`` mapped to ``[-pi, pi)`` by adding a multiple of ``2 pi`` (exact ``fmod``, no ``x / 2 pi`` rounding)."""
    x = torch.as_tensor(x)
    r = torch.fmod(x, TWO_PI)  # exact: in (-2 pi, 2 pi), the sign of x
    r = torch.where(r >= math.pi, r - TWO_PI, r)
    r = torch.where(r < -math.pi, r + TWO_PI, r)
    return torch.where(r >= math.pi, r - TWO_PI, r)  # r + 2 pi may round up to pi


def circular_embedding(x: torch.Tensor) -> torch.Tensor:
    """``cat(cos x, sin x)`` along the last dimension: angles as points on circles, for distances on the torus."""
    return torch.cat([torch.cos(x), torch.sin(x)], dim=-1)


def _as_sigma(sigma) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    if not bool(torch.all(torch.isfinite(sigma) & (sigma > 0))):
        raise ValueError("sigma must be positive and finite (the wrapped normal at sigma = 0 is a point mass)")
    return sigma


def _image_terms(sigma_max: float) -> int:
    """Images ``k = -K..K``: the first omitted one is ``exp(-2 K (K + 1) pi^2 / sigma^2) <= e^-40`` of the largest."""
    K = 1
    while 2 * K * (K + 1) * math.pi**2 < _TAIL * sigma_max**2:
        K += 1
    return K


def _fourier_terms(sigma_min: float) -> int:
    """Harmonics ``n = 1..N`` with ``exp(-(N + 1)^2 sigma^2 / 2) <= e^-40``."""
    return max(1, math.ceil(math.sqrt(2 * _TAIL) / sigma_min) - 1)


def _wrapped_normal(d, sigma):
    """``(log p_sigma(d), d/dd log p_sigma(d))`` in float64, broadcast over ``d`` and ``sigma`` (> 0)."""
    d = torch.as_tensor(d, dtype=torch.float64)
    d, sigma = torch.broadcast_tensors(wrap(d), sigma.to(d.device))
    small = sigma < _SWITCH
    logp = torch.empty_like(d)
    score = torch.empty_like(d)
    if bool(small.any()):
        s = torch.where(small, sigma, 1.0)[..., None]
        K = _image_terms(float(sigma[small].max()))
        u = d[..., None] + TWO_PI * torch.arange(-K, K + 1, dtype=torch.float64, device=d.device)
        logt = -0.5 * (u / s) ** 2
        lse = torch.logsumexp(logt, -1)
        img_logp = lse - torch.log(math.sqrt(TWO_PI) * s[..., 0])
        img_score = -(torch.softmax(logt, -1) * u).sum(-1) / s[..., 0] ** 2
        logp, score = torch.where(small, img_logp, logp), torch.where(small, img_score, score)
    if not bool(small.all()):
        s = torch.where(small, _SWITCH, sigma)[..., None]
        n = torch.arange(1, _fourier_terms(float(s.min())) + 1, dtype=torch.float64, device=d.device)
        c = torch.exp(-0.5 * (n * s) ** 2)
        nd = n * d[..., None]
        S = 1 + 2 * (c * torch.cos(nd)).sum(-1)
        dS = -2 * (n * c * torch.sin(nd)).sum(-1)
        logp = torch.where(small, logp, torch.log(S) - math.log(TWO_PI))
        score = torch.where(small, score, dS / S)
    return logp, score


def _out_dtype(d):
    return d.dtype if isinstance(d, torch.Tensor) and d.is_floating_point() else torch.float64


def wrapped_normal_log_prob(d, sigma) -> torch.Tensor:
    """``log sum_k N(d + 2 pi k; 0, sigma^2)`` elementwise, for any real ``d``.

    ``sigma`` (> 0) is a float or a tensor broadcastable against ``d``.  Image sum below ``sigma = 2``,
    Fourier series ``(1/2pi)(1 + 2 sum_n e^{-n^2 sigma^2/2} cos n d)`` above; truncation below 4e-18 relative.
    """
    return _wrapped_normal(d, _as_sigma(sigma))[0].to(_out_dtype(d))


def wrapped_normal_score(d, sigma) -> torch.Tensor:
    """``d/dd log p_sigma(d)`` of the wrapped normal, elementwise and 2 pi-periodic in ``d``.

    Small sigma: ``-sum_k w_k (d + 2 pi k) / sigma^2`` with softmax weights ``w_k`` of the images
    (``-d / sigma^2`` as sigma -> 0, no underflow); large sigma: the ratio of the Fourier series
    ``-2 sum_n n e^{-n^2 sigma^2/2} sin n d`` to ``1 + 2 sum_n e^{-n^2 sigma^2/2} cos n d`` (-> 0, no 0/0).
    """
    return _wrapped_normal(d, _as_sigma(sigma))[1].to(_out_dtype(d))


def score_norm_sq(sigma, points: int = 512) -> torch.Tensor:
    """``E[score(d)^2]`` for ``d`` wrapped-normal of level ``sigma``, per dimension; the shape of ``sigma``.

    The loss normaliser of Torsional Diffusion.  Computed as ``int p_sigma(d) score(d)^2 dd`` by the
    trapezoidal rule with ``points`` nodes on ``[-L, L)``, ``L = min(pi, 13 sigma)`` (the integrand is
    below ``e^-84`` of its peak outside): spectrally accurate for a smooth periodic integrand.
    Limits: ``1 / sigma^2`` as sigma -> 0 (the Gaussian's Fisher information), ``2 e^{-sigma^2}`` as sigma -> inf.
    """
    sigma = _as_sigma(sigma)
    if not isinstance(points, int) or points < 16:
        raise ValueError(f"points must be an integer >= 16, got {points!r}")
    s = sigma.reshape(-1, 1)
    half = torch.clamp(13 * s, max=math.pi)
    h = 2 * half / points
    d = -half + h * torch.arange(points, dtype=torch.float64, device=s.device)
    logp, score = _wrapped_normal(d, s)
    return ((torch.exp(logp) * score**2).sum(-1, keepdim=True) * h).reshape(sigma.shape)
