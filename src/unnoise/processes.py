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
``gp``      vp, ve or flow with ``eps`` drawn from a      the same, with the correlated ``eps``
            Gaussian process (functions on grids)
=========== ============================================= ============================================

The first three are :class:`Gaussian` (one class; the scale ``s`` is the only difference), then
:class:`WrappedGaussian` and :class:`GaussianProcessNoise` (a schedule with a ``noise_kernel``).  Every
implementation answers the same questions, and the Trainer,
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
* ``colour(z)``: the process's noise from a standard-normal draw of the data's shape (identity for white
  noise); the stochastic samplers inject their fresh noise through it (:func:`unnoise.samplers.noise_like`);
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

from . import gp, torus
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

    def colour(self, z: torch.Tensor) -> torch.Tensor:
        """The process's noise from a standard-normal draw ``z`` shaped like the data (white noise: ``z``)."""
        return z

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


def for_schedule(process: str, noise_kernel=None) -> ForwardProcess:
    """The forward process of a schedule whose ``process`` is ``vp``, ``ve``, ``flow`` or ``wrapped``; with a
    ``noise_kernel`` (``vp``/``ve``/``flow`` only) the Gaussian-process noise of that kernel."""
    if noise_kernel is not None:
        if process not in ("vp", "ve", "flow"):
            raise ValueError(f"Gaussian-process noise needs a vp, ve or flow schedule, not a {process} one")
        return GaussianProcessNoise(process, noise_kernel)
    if process == "wrapped":
        return WrappedGaussian()
    return Gaussian(process)
