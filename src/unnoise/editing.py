"""Editing with any denoiser and any sampler: inpainting, image-to-image (SDEdit), DDIM inversion.

Everything here works in the scale-free variable ``x = x_0 + sigma eps`` on tensors of any shape
``(batch, ...)`` and only calls a denoiser ``D(x, sigma[, cond])`` and the registered samplers, so
it runs unchanged on analytic mixtures, trained networks, guided combinations and latent models.

* :func:`inpaint`: fill the unknown region of ``known`` where ``mask == 0``.  After every sampler
  step the known region is replaced by the known data noised to the new sigma (the *replacement*
  method).  With ``jump_n_sample > 1`` the RePaint schedule (Lugmayr et al. 2022) goes back up
  ``jump_length`` grid steps, re-noising with ``x_sigma = x_sigma' + sqrt(sigma^2 - sigma'^2) z``
  (the forward process between two levels, exact in scale-free variables), and denoises again, so
  the generated region has time to agree with the known one.  Both condition every step on a
  freshly noised copy of the known region, which biases the filled region (tests measure it on an
  exact mixture).  The asymptotically exact alternative is sequential Monte Carlo, the posterior sampler
  of :mod:`unnoise.inverse` with a mask as the operator:
  ``inverse.sample(denoiser, x, sigmas, y=known, operator=inverse.Mask(mask), method="smc")``.
* :func:`img2img`: SDEdit (Meng et al. 2022): noise an input to a fraction ``strength`` of the grid
  and denoise from there.
* :func:`ddim_invert` / :func:`interpolate`: run the deterministic probability-flow ODE from
  sigma = 0 upwards, and slerp two inverted inputs in noise space.
"""
from __future__ import annotations

import math

import torch

from .samplers import check_sigmas, noise_like, sample


def _call(denoiser, x, sigma: float, cond):
    s = torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)
    return denoiser(x, s) if cond is None else denoiser(x, s, cond)


def _prepare_mask(mask, known: torch.Tensor) -> torch.Tensor:
    mask = torch.as_tensor(mask, device=known.device)
    if mask.dtype == torch.bool:
        mask = mask.to(known.dtype)
    mask = mask.to(known.dtype)
    try:
        torch.broadcast_shapes(mask.shape, known.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast against the data of shape "
                         f"{tuple(known.shape)}; give a mask shaped like one example or like the batch") from None
    if torch.broadcast_shapes(mask.shape, known.shape) != known.shape:
        raise ValueError(f"mask of shape {tuple(mask.shape)} is larger than the data of shape {tuple(known.shape)}")
    if not torch.all((mask == 0) | (mask == 1)):
        raise ValueError("mask must hold only 0 (generate) and 1 (keep); threshold a soft mask first")
    return mask.expand(known.shape)


def repaint_schedule(steps: int, jump_length: int = 10, jump_n_sample: int = 1) -> list[tuple[int, int]]:
    """The RePaint walk over grid indices ``0 .. steps`` (index ``i`` is ``sigmas[i]``).

    Returns a list of moves ``(i, j)``: ``j = i + 1`` is one sampler step down, ``j = i - jump_length``
    a jump back up.  Every index ``k`` that is a positive multiple of ``jump_length`` is reached
    ``jump_n_sample`` times going down; each of the first ``jump_n_sample - 1`` arrivals jumps back
    up ``jump_length`` steps.  ``jump_n_sample = 1`` is plain descent.
    """
    if not isinstance(jump_length, int) or jump_length < 1:
        raise ValueError(f"jump_length must be a positive integer, got {jump_length!r}")
    if not isinstance(jump_n_sample, int) or jump_n_sample < 1:
        raise ValueError(f"jump_n_sample must be a positive integer (1 = no resampling), got {jump_n_sample!r}")
    if jump_length > steps and jump_n_sample > 1:
        raise ValueError(f"jump_length {jump_length} exceeds the {steps} sampling steps; use a smaller jump_length")
    jumps_left = {k: jump_n_sample - 1 for k in range(jump_length, steps + 1, jump_length)}
    moves, i = [], 0
    while i < steps:
        moves.append((i, i + 1))
        i += 1
        if jumps_left.get(i, 0) > 0:
            jumps_left[i] -= 1
            moves.append((i, i - jump_length))
            i -= jump_length
    return moves


def inpaint(denoiser, known: torch.Tensor, mask, sigmas, *, sampler: str = "ddpm", cond=None,
            generator: torch.Generator | None = None, jump_length: int = 10, jump_n_sample: int = 1,
            x_init: torch.Tensor | None = None, callback=None, **options) -> torch.Tensor:
    """Fill the region ``mask == 0`` of ``known`` so that it agrees with the region ``mask == 1``.

    Args:
        denoiser: any ``D(x, sigma[, cond])``.
        known: ``(batch, ...)`` clean data (in the denoiser's units); values under ``mask == 0`` are ignored.
        mask: 1 = keep, 0 = generate; bool or 0/1 float, broadcastable to ``known`` (e.g. one example's shape).
        sigmas: decreasing grid ending in 0, e.g. ``schedule.sampling_sigmas(50)``.
        sampler: any registered sampler; it is run one grid step at a time (so multistep samplers
            restart their history at each step), with ``**options``.  Stochastic samplers (the
            default ``ddpm``) let the generated region correct itself; RePaint needs them.
        jump_length, jump_n_sample: RePaint resampling (``jump_n_sample = 1`` is plain replacement).
        x_init: optional start at ``sigmas[0]`` (default ``sigmas[0] * N(0, I)``).
        callback: ``callback(move_index, x, sigma)`` after each move.

    Returns:
        ``(batch, ...)`` samples at ``sigmas[-1]``; where ``mask == 1`` they equal ``known`` exactly
        when the grid ends at 0.
    """
    sigmas = check_sigmas(sigmas).to(torch.float64)
    known = torch.as_tensor(known)
    if not torch.is_floating_point(known) or known.ndim < 1:
        raise ValueError("known must be a floating-point tensor of shape (batch, ...)")
    keep = _prepare_mask(mask, known)
    steps = len(sigmas) - 1
    moves = repaint_schedule(steps, jump_length, jump_n_sample)
    safe_known = torch.where(keep.bool(), known, torch.zeros_like(known))  # NaN under the hole must not leak

    def replace(x, sigma):
        noised = safe_known + sigma * noise_like(x, generator) if sigma > 0 else safe_known
        return torch.where(keep.bool(), noised, x)

    x = x_init if x_init is not None else noise_like(known, generator) * float(sigmas[0])
    if x.shape != known.shape:
        raise ValueError(f"x_init has shape {tuple(x.shape)}, expected {tuple(known.shape)}")
    x = replace(x, float(sigmas[0]))
    for m, (i, j) in enumerate(moves):
        if j == i + 1:
            x = sample(denoiser, x, sigmas[i:j + 1], sampler=sampler, generator=generator, cond=cond, **options)
            x = replace(x, float(sigmas[j]))
        else:  # back up the forward process from sigmas[i] to sigmas[j] > sigmas[i]
            hi, lo = float(sigmas[j]), float(sigmas[i])
            x = x + math.sqrt(hi**2 - lo**2) * noise_like(x, generator)
        if callback is not None:
            callback(m, x, float(sigmas[j]))
    return x


def img2img(denoiser, x: torch.Tensor, sigmas, strength: float, *, sampler: str = "ddim", cond=None,
            generator: torch.Generator | None = None, **options) -> torch.Tensor:
    """SDEdit: noise ``x`` to a fraction ``strength`` of the grid, then denoise with any sampler.

    With ``n = len(sigmas) - 1`` steps the edit runs the last ``k = round(strength * n)`` of them,
    starting from ``x + sigmas[n - k] * z``.  ``strength = 0`` returns ``x`` unchanged; ``strength = 1``
    starts from pure noise ``sigmas[0] * z`` (drawn first from ``generator``, exactly as plain
    sampling does), so the input is ignored.

    Args:
        x: ``(batch, ...)`` inputs in the denoiser's units.
        sigmas: decreasing grid ending in 0.
        strength: in [0, 1].
    Returns:
        ``(batch, ...)`` edited samples.
    """
    sigmas = check_sigmas(sigmas)
    if not isinstance(strength, (int, float)) or not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"strength must be a number in [0, 1], got {strength!r}")
    n = len(sigmas) - 1
    k = int(round(float(strength) * n))
    if k == 0:
        return x.clone()
    start = n - k
    z = noise_like(x, generator)
    x_start = z * float(sigmas[0]) if k == n else x + float(sigmas[start]) * z
    return sample(denoiser, x_start, sigmas[start:], sampler=sampler, generator=generator, cond=cond, **options)


@torch.no_grad()
def ddim_invert(denoiser, x0: torch.Tensor, sigmas, *, cond=None, fixed_point_iters: int = 0,
                callback=None) -> torch.Tensor:
    """Map clean data to the noise level ``sigmas[0]`` along the probability-flow ODE (DDIM inversion).

    The ODE ``dx/dsigma = eps(x, sigma) = (x - D(x, sigma)) / sigma`` is integrated upwards over the
    reversed grid.  Deterministic DDIM going down is ``x_lo = x_hi + (sigma_lo - sigma_hi) eps(x_hi, sigma_hi)``;
    inverting it exactly means solving ``x_hi = x_lo + (sigma_hi - sigma_lo) eps(x_hi, sigma_hi)``.
    The first guess uses ``eps(x_lo, sigma_lo)`` (the classic inversion; at sigma_lo = 0, where eps is
    0/0, ``eps(x_lo, sigma_hi)``), and ``fixed_point_iters`` iterations of the equation refine it,
    making the result the exact inverse of ``sample(..., sampler="ddim")`` as they converge.

    Args:
        x0: ``(batch, ...)`` data (at ``sigmas[-1]``, normally 0).
        sigmas: the decreasing grid that will be used to sample back.
        fixed_point_iters: extra denoiser calls per step for an exact inverse (0 = classic DDIM inversion).
        callback: ``callback(i, x, sigma)`` after reaching ``sigmas[i]``.
    Returns:
        ``(batch, ...)`` the state at ``sigmas[0]``; ``sample(denoiser, out, sigmas, "ddim")`` maps it back.
    """
    sigmas = check_sigmas(sigmas)
    if not isinstance(fixed_point_iters, int) or fixed_point_iters < 0:
        raise ValueError(f"fixed_point_iters must be a non-negative integer, got {fixed_point_iters!r}")
    x = x0
    for i in range(len(sigmas) - 2, -1, -1):
        hi, lo = float(sigmas[i]), float(sigmas[i + 1])
        at = lo if lo > 0 else hi
        eps = (x - _call(denoiser, x, at, cond)) / at
        x_hi = x + (hi - lo) * eps
        for _ in range(fixed_point_iters):
            x_hi = x + (hi - lo) * (x_hi - _call(denoiser, x_hi, hi, cond)) / hi
        x = x_hi
        if callback is not None:
            callback(i, x, hi)
    return x


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation per example: ``sin((1-t) th)/sin th a + sin(t th)/sin th b``.

    ``th`` is the angle between the flattened ``a[i]`` and ``b[i]``; nearly parallel pairs fall back
    to linear interpolation.  For Gaussian noise vectors it keeps the norm that a linear blend shrinks.
    """
    if a.shape != b.shape:
        raise ValueError(f"slerp needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    fa, fb = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-300)
    theta = torch.arccos(cos.clamp(-1, 1))[:, None]
    sin = torch.sin(theta)
    near = sin.abs() < 1e-6
    wa = torch.where(near, torch.full_like(theta, 1 - t), torch.sin((1 - t) * theta) / torch.where(near, 1, sin))
    wb = torch.where(near, torch.full_like(theta, t), torch.sin(t * theta) / torch.where(near, 1, sin))
    return (wa * fa + wb * fb).reshape(a.shape).to(a.dtype)


def interpolate(denoiser, xa: torch.Tensor, xb: torch.Tensor, sigmas, alphas, *, cond=None,
                fixed_point_iters: int = 0) -> torch.Tensor:
    """Interpolate two inputs through noise space: invert both, slerp, sample back with DDIM.

    Args:
        xa, xb: ``(batch, ...)`` inputs.
        alphas: interpolation weights in [0, 1] (0 gives ``xa`` back up to the inversion error).
    Returns:
        ``(len(alphas), batch, ...)``.
    """
    za = ddim_invert(denoiser, xa, sigmas, cond=cond, fixed_point_iters=fixed_point_iters)
    zb = ddim_invert(denoiser, xb, sigmas, cond=cond, fixed_point_iters=fixed_point_iters)
    outs = [sample(denoiser, slerp(za, zb, float(a)), sigmas, sampler="ddim", cond=cond) for a in alphas]
    return torch.stack(outs)
