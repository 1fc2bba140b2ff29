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
``masked``  each token becomes ``[MASK]`` with probability  every token ``[MASK]``
            ``1 - alpha``, ``alpha = exp(-sigma)``
``marginal`` each token is redrawn from the marginals ``m`` independent draws from ``m``
            with probability ``1 - alpha``
=========== ============================================= ============================================

The first three are :class:`Gaussian` (one class; the scale ``s`` is the only difference), then
:class:`WrappedGaussian` and :class:`GaussianProcessNoise` (a schedule with a ``noise_kernel``); the two
categorical processes :class:`Masked` and :class:`Marginal` (token data, integer states) are described under
:class:`CategoricalProcess` and used through :mod:`unnoise.categorical`.  Every implementation answers the same
questions, and the Trainer,
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

from .base import ForwardProcess
from .categorical import CategoricalProcess, Marginal, Masked, NoiseLevels
from .gaussian import Gaussian, GaussianProcessNoise, WrappedGaussian
from .graph import GraphProcess

__all__ = ["CategoricalProcess", "ForwardProcess", "Gaussian", "GaussianProcessNoise", "GraphProcess", "Marginal",
           "Masked", "NoiseLevels", "WrappedGaussian", "for_schedule", "from_config"]


def for_schedule(process: str, noise_kernel=None) -> ForwardProcess:
    """The forward process of a schedule whose ``process`` is ``vp``, ``ve``, ``flow`` or ``wrapped``; with a
    ``noise_kernel`` (``vp``/``ve``/``flow`` only) the Gaussian-process noise of that kernel (categorical
    schedules own their process object: :class:`unnoise.schedules.Categorical`)."""
    if noise_kernel is not None:
        if process not in ("vp", "ve", "flow"):
            raise ValueError(f"Gaussian-process noise needs a vp, ve or flow schedule, not a {process} one")
        return GaussianProcessNoise(process, noise_kernel)
    if process == "wrapped":
        return WrappedGaussian()
    return Gaussian(process)


def from_config(config: dict) -> ForwardProcess:
    """A forward process from its :meth:`~ForwardProcess.config` (Gaussian, wrapped or categorical)."""
    name = config.get("name")
    if name in ("masked", "marginal"):
        return CategoricalProcess.from_config(config)
    if name == "graph":
        return GraphProcess.from_config(config)
    if name == "wrapped":
        return WrappedGaussian()
    if name == "gaussian":
        return Gaussian(config.get("family", "ve"))
    raise ValueError(f"unknown forward process {name!r}")
