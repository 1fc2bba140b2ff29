"""Gaussian forward processes: additive white noise (vp, ve, flow), wrapped noise on the torus, and noise drawn
from a Gaussian process (functions on grids or at points)."""
from __future__ import annotations

import math

import torch

from .. import gp, torus
from ..losses import denoising_loss
from ..scales import signal_scale
from .base import ForwardProcess, _expand


class Gaussian(ForwardProcess):
    """Additive Gaussian noise, ``x_t = s (x_0 + sigma eps)`` with the scale ``s`` of ``family``
    (``vp``, ``ve`` or ``flow``)."""

    name = "gaussian"

    def __init__(self, family: str = "ve"):
        if family not in ("vp", "ve", "flow"):
            raise ValueError(f"a Gaussian process has family vp, ve or flow, not {family!r}")
        self.family = family

    def corrupt(self, x0, sigma, noise):
        return x0 + _expand(sigma, x0) * noise

    def prior(self, noise, sigma_max):
        if self.family == "ve":
            return noise * sigma_max
        return noise / float(signal_scale(self.family, torch.tensor(sigma_max, dtype=torch.float64)))

    def prior_log_prob(self, x, sigma_max, sigma_data=0.0):
        """``log N(x; 0, (sigma_max^2 + sigma_data^2) I)`` per example (the scale-free prior)."""
        flat = x.reshape(x.shape[0], -1)
        var = sigma_max**2 + sigma_data**2
        return -0.5 * (flat**2).sum(1) / var - 0.5 * flat.shape[1] * math.log(2 * math.pi * var)

    def loss(self, denoiser, x0, sigma, noise, cond=None, weighting="uniform", min_snr_gamma=5.0):
        return denoising_loss(denoiser, x0, sigma, weighting, cond=cond, noise=noise,
                              min_snr_gamma=min_snr_gamma, reduce=False)

    def __repr__(self):
        return f"Gaussian({self.family!r})"


class WrappedGaussian(ForwardProcess):
    """Wrapped Gaussian noise on the torus ``[-pi, pi)^d``: ``x = wrap(x_0 + sigma eps)`` (the heat kernel).

    Training is denoising score matching with the wrapped normal's score as the target: the noisy ``x``
    is compared with the denoised value ``D* = x + sigma^2 grad_x log p_sigma(x | x_0)``, where
    ``p_sigma(. | x_0)`` sums the normal density over the ``2 pi k`` images of ``x_0``
    (:func:`unnoise.torus.wrapped_normal_score`).  For small sigma ``D*`` is the lift of ``x_0`` nearest
    to ``x`` (the ordinary denoising target); as sigma grows it shrinks to ``x``, since the noised density
    becomes uniform.  The denoiser is an ``eps``-network with unscaled input (``c_in = 1``): the network
    sees the angles themselves and embeds them periodically (``cos``, ``sin``).
    """

    name = "wrapped"

    def corrupt(self, x0, sigma, noise):
        return torus.wrap(x0 + _expand(sigma, x0) * noise)

    def prior(self, noise, sigma_max):
        """Uniform angles from a standard-normal draw: ``2 pi Phi(z) - pi`` (exactly uniform)."""
        u = 0.5 * torch.special.erfc(-noise.double() / math.sqrt(2.0))
        return (2 * math.pi * u - math.pi).to(noise.dtype).clamp(-math.pi, math.nextafter(math.pi, 0))

    def prior_log_prob(self, x, sigma_max, sigma_data=0.0):
        """The uniform density on the torus, ``-d log(2 pi)`` per example."""
        d = x[0].numel()
        return torch.full((x.shape[0],), -d * math.log(2 * math.pi), dtype=x.dtype, device=x.device)

    def loss(self, denoiser, x0, sigma, noise, cond=None, weighting="uniform", min_snr_gamma=5.0):
        if weighting != "uniform":
            raise ValueError(f"the wrapped (periodic) process trains with the uniform weighting, not {weighting!r}")
        s = _expand(sigma, x0)
        x = self.corrupt(x0, sigma, noise)
        target = x + s**2 * torus.wrapped_normal_score(x - x0, s)
        c_skip, c_out, c_in, c_noise = denoiser.precondition(s)
        out = denoiser.net(c_in * x, c_noise.reshape(-1), cond).to(x0.dtype)
        per = ((out - (target - c_skip * x) / c_out) ** 2).reshape(x0.shape[0], -1).mean(1)
        return per

    def project(self, x):
        return torus.wrap(x)


class GaussianProcessNoise(Gaussian):
    """Noise from a Gaussian process for functions on regular grids (:mod:`unnoise.gp`): ``x = x_0 + sigma eps``
    with ``eps ~ GP(0, C)``, ``C`` the covariance of ``kernel`` on the grid, scaled as ``family`` (vp, ve, flow).

    Data are ``(batch, channels, n)`` (1-D) or ``(batch, channels, h, w)`` (2-D) values on the regular grid
    ``i / n`` of the unit interval or square (each channel its own independent draw).  The process is
    driven by standard-normal draws like the white-noise one (``noise`` is unchanged, so the Trainer's and
    the Pipeline's random streams are the same); :meth:`colour` turns a draw into ``eps = R z`` with ``R``
    the kernel matrix's square root along each axis, exactly on any grid, so a model sampled at 4x its
    training resolution starts from (and injects) the same Gaussian process restricted to the finer grid.

    Nothing else changes: since ``eps`` has mean zero given ``x``'s law, ``E[eps | x] = (x - D) / sigma``
    still holds, so the probability-flow ODE ``dx/dsigma = (x - D) / sigma`` and every deterministic sampler
    run unchanged; stochastic samplers inject ``colour(z)``.

    The loss is the denoising loss with the correlated ``eps``: the squared error of ``D`` against ``x_0``
    averaged over the grid points, i.e. ``(1 / |domain|) h sum_i (D - x_0)_i^2``, a Riemann sum of the
    ``L^2`` norm of the error function, which converges as the grid refines (the minimiser is ``E[x_0 | x]``
    for any positive weighting).  The norm the likelihood would suggest, the Cameron-Martin norm
    ``|C^(-1/2) e|``, is not used: a draw of the noise has infinite Cameron-Martin norm in the limit, and on a
    fine grid ``C`` is numerically singular.

    At irregular points the data are ``(batch, channels, P)`` and the noise is ``R z`` with ``R`` the square root
    of the kernel matrix at those points: fixed points for sampling (:meth:`at_points`), or each example's own
    points during training, read from the condition ``cond["points"]`` ``(batch, P, dims)`` by :meth:`loss`.
    """

    name = "gp"

    def __init__(self, family: str = "ve", kernel="rbf:0.1", points=None):
        super().__init__(family)
        self.kernel = gp.parse_kernel(kernel)
        self.points = None if points is None else torch.as_tensor(points, dtype=torch.float64)

    def at_points(self, points) -> "GaussianProcessNoise":
        """This process for values at fixed irregular ``points`` ``(P, dims)``: data ``(batch, channels, P)``, the
        noise ``R z`` with ``R`` the kernel matrix's square root at the points (:meth:`unnoise.gp.Kernel.colour_at`),
        exactly the Gaussian process restricted to them."""
        return GaussianProcessNoise(self.family, self.kernel, points)

    def colour(self, z, points=None):
        """``z`` coloured on the regular grid, or at ``points`` (``(P, dims)`` or per example ``(batch, P, dims)``;
        default: the points this process was made for, if any)."""
        points = self.points if points is None else points
        if points is not None:
            return self.kernel.colour_at(z, points)
        if z.ndim not in (3, 4):
            raise ValueError(f"Gaussian-process noise colours functions of shape (batch, channels, n) or "
                             f"(batch, channels, h, w), not {tuple(z.shape)}")
        return self.kernel.colour(z, z.ndim - 2)

    def corrupt(self, x0, sigma, noise):
        return super().corrupt(x0, sigma, self.colour(noise))

    def prior(self, noise, sigma_max):
        return super().prior(self.colour(noise), sigma_max)

    def prior_log_prob(self, x, sigma_max, sigma_data=0.0):
        raise ValueError("likelihoods of function runs are not defined: a density on a grid has no limit as the "
                         "grid refines (use the samples' covariance instead)")

    def loss(self, denoiser, x0, sigma, noise, cond=None, weighting="uniform", min_snr_gamma=5.0):
        points = cond.get("points") if isinstance(cond, dict) else None  # examples given at their own points
        return super().loss(denoiser, x0, sigma, self.colour(noise, points), cond, weighting, min_snr_gamma)

    def config(self):
        return {"name": self.name, "family": self.family, "kernel": self.kernel.spec}

    def __repr__(self):
        return f"GaussianProcessNoise({self.family!r}, {self.kernel.spec!r})"
