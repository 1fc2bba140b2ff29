"""Training objectives: weighted denoising regression in the network's own output space.

For ``x = x_0 + sigma eps`` the denoiser is ``D = c_skip x + c_out F`` (see :mod:`unnoise.denoiser`),
so ``|D - x_0|^2 = c_out^2 |F - F_target|^2`` with ``F_target = (x_0 - c_skip x) / c_out``.
A weighting is a function ``lambda(sigma)`` on the x0-space error ``|D - x_0|^2``; the loss is
computed as ``lambda c_out^2 |F - F_target|^2``, which stays well conditioned at every sigma.

Weightings (``lambda(sigma)`` on the x0-space error, SNR = 1 / sigma^2):

* ``uniform``: ``1 / c_out^2``, the plain MSE on what the network predicts.  For eps-prediction this
  is DDPM's "simple" loss, the variational bound reparameterised to noise prediction with its
  per-step weights dropped; for v, flow and EDM it is their standard loss.
* ``min_snr``: ``min(SNR, gamma)`` (Hang et al. 2023), clipping the weight of the easy low-noise steps.
* ``snr``: ``SNR`` (= eps-MSE whatever the parameterization).
* ``edm``: ``(sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` (Karras et al. 2022).
* ``ncsn``: denoising score matching with ``lambda(sigma) = sigma^2`` on the score error
  ``|s_theta - grad log q(x | x_0)|^2``, which equals ``|D - x_0|^2 / sigma^2``.
* ``flow``: the conditional flow-matching loss ``|u_theta - (eps - x_0)|^2``: velocity error, i.e.
  ``(1 + sigma)^2 / sigma^2`` on the x0-space error, for any parameterization.

Categorical processes (tokens, graphs) take ``uniform``, their NELBO, or ``crossentropy`` (see
:data:`CATEGORICAL_WEIGHTINGS` and :meth:`unnoise.processes.CategoricalProcess.loss`).
"""
from __future__ import annotations

import torch

from .denoiser import Denoiser, expand_sigma

WEIGHTINGS = ("uniform", "min_snr", "snr", "edm", "ncsn", "flow")
CATEGORICAL_WEIGHTINGS = ("uniform", "crossentropy")  # the NELBO; DiGress's cross-entropy on the clean data
ALL_WEIGHTINGS = WEIGHTINGS + tuple(w for w in CATEGORICAL_WEIGHTINGS if w not in WEIGHTINGS)  # what training takes


def x0_weight(weighting: str, sigma: torch.Tensor, c_out: torch.Tensor, sigma_data: float = 1.0,
              min_snr_gamma: float = 5.0) -> torch.Tensor:
    """``lambda(sigma)``: the weight on ``|D - x_0|^2``."""
    snr = 1.0 / sigma**2
    if weighting == "uniform":
        return 1.0 / c_out**2
    if weighting == "min_snr":
        return torch.clamp(snr, max=min_snr_gamma)
    if weighting in ("snr", "ncsn"):
        return snr
    if weighting == "edm":
        return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    if weighting == "flow":
        return ((1 + sigma) / sigma) ** 2
    if weighting in CATEGORICAL_WEIGHTINGS:
        raise ValueError(f"the {weighting!r} loss is for categorical data (tokens, molecules); choose one of "
                         f"{', '.join(WEIGHTINGS)}")
    raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")


def denoising_loss(denoiser: Denoiser, x0: torch.Tensor, sigma: torch.Tensor, weighting: str = "uniform",
                   cond=None, noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   min_snr_gamma: float = 5.0, reduce: bool = True) -> torch.Tensor:
    """Weighted denoising loss of a :class:`~unnoise.denoiser.Denoiser` on clean data ``x0``.

    Args:
        x0: ``(batch, ...)`` clean data (scale-free: the data itself).
        sigma: ``(batch,)`` noise levels, e.g. ``schedule.sample_training_sigmas(batch)``.
        weighting: one of :data:`WEIGHTINGS`.
        noise: the eps to use (drawn from ``generator`` when omitted).
        reduce: mean over the batch (else the ``(batch,)`` per-example losses).
    """
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype,
                            device=generator.device if generator is not None else x0.device).to(x0.device)
    s = expand_sigma(sigma, x0)
    x = x0 + s * noise
    c_skip, c_out, c_in, c_noise = denoiser.precondition(s)
    out = denoiser.net(c_in * x, c_noise.reshape(-1), cond).to(x0.dtype)
    target = (x0 - c_skip * x) / c_out
    w = x0_weight(weighting, s, c_out, denoiser.sigma_data, min_snr_gamma) * c_out**2
    per_example = (w * (out - target) ** 2).reshape(x0.shape[0], -1).mean(1)
    return per_example.mean() if reduce else per_example
