"""Forward processes: how noise enters the data, and what follows from it for training and sampling.

A schedule owns its forward process (``schedule.forward``), chosen by the schedule's ``process``:

=========== ============================================= ============================================
process     corruption of ``x_0`` at noise level sigma    prior at ``sigma_max`` (start of sampling)
=========== ============================================= ============================================
``vp``      ``x_t = s (x_0 + sigma eps)``,                ``N(0, I)`` in ``x_t``, i.e. ``eps / s`` in
            ``s = 1 / sqrt(1 + sigma^2)``                 the scale-free variable
``flow``    the same with ``s = 1 / (1 + sigma)``          likewise
``ve``      ``x = x_0 + sigma eps`` (``s = 1``)            ``N(0, sigma_max^2 I)``
``wrapped`` ``x = wrap(x_0 + sigma eps)`` on the torus     uniform on ``[-pi, pi)^d``
            ``[-pi, pi)^d`` (angles)
=========== ============================================= ============================================

The first three are :class:`Gaussian` (one class; the scale ``s`` is the only difference), the last is
:class:`WrappedGaussian`.  Every implementation answers the same questions, and the Trainer,
:func:`unnoise.sample`, the :class:`~unnoise.pipeline.Pipeline` and :func:`unnoise.likelihood.nll`
ask them here instead of drawing ``torch.randn`` themselves:

* ``noise(shape, generator, device, dtype)``: the standard draw the process is driven by (``eps``);
  ``shape`` may be a dict of shapes when the data are a dict of tensors;
* ``corrupt(x0, sigma, noise)``: the noisy example in the scale-free variable the denoiser sees;
* ``prior(noise, sigma_max)``: the start of sampling, a deterministic function of a standard-normal
  draw (so ``Pipeline.sample(noise=z)`` means the same start for every process);
* ``prior_log_prob(x, sigma_max)``: the prior's log density, which closes the likelihood integral;
* ``loss(denoiser, x0, sigma, noise, cond, ...)``: the per-example training loss;
* ``project(x)``: maps a finished sample onto the data's space (identity for Euclidean data);
* ``config()``: the JSON description stored with the schedule.

Why ``project`` is applied once, to the finished sample, and not between sampler steps: on the torus
the score of the noised density is ``2 pi``-periodic, so the probability-flow ODE and the reverse SDE in
the *lifted* space ``R^d`` are exact lifts of the dynamics on the torus, and every sampler runs unchanged
there.  Wrapping ``x`` between steps would shift the denoised values of multistep samplers by multiples
of ``2 pi`` from one step to the next (``dpmpp_2m`` combines ``D`` across steps) and break them.
"""
from __future__ import annotations

import math

import torch

from . import torus
from .losses import denoising_loss
from .scales import signal_scale


def _expand(sigma, x: torch.Tensor) -> torch.Tensor:
    sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sig.reshape(-1, *([1] * (x.ndim - 1))) if sig.ndim else sig


class ForwardProcess:
    """The interface every forward process implements (see the module docstring)."""

    name = "process"

    def noise(self, shape, generator: torch.Generator | None = None, device=None,
              dtype: torch.dtype = torch.float32):
        """Standard-normal draws of ``shape`` (a tuple, or a dict of tuples for dict-valued data), drawn
        on ``device`` from ``generator``."""
        if isinstance(shape, dict):
            return {k: self.noise(shape[k], generator, device, dtype) for k in sorted(shape)}
        return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)

    def corrupt(self, x0, sigma, noise):  # pragma: no cover - overridden
        raise NotImplementedError

    def prior(self, noise: torch.Tensor, sigma_max: float) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def prior_log_prob(self, x: torch.Tensor, sigma_max: float, sigma_data: float = 0.0) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - overridden

    def loss(self, denoiser, x0, sigma, noise, cond=None, weighting: str = "uniform",
             min_snr_gamma: float = 5.0) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """A finished sample on the data's space (identity unless the space is not Euclidean)."""
        return x

    def config(self) -> dict:
        return {"name": self.name}

    def __repr__(self):
        return f"{type(self).__name__}()"


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


def for_schedule(process: str) -> ForwardProcess:
    """The forward process of a schedule whose ``process`` is ``vp``, ``ve``, ``flow`` or ``wrapped``."""
    if process == "wrapped":
        return WrappedGaussian()
    return Gaussian(process)
