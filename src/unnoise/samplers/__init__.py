"""Every sampler is a function ``f(denoiser, x, sigmas, *, generator, callback, **options)``.

``x`` starts at ``sigmas[0]`` (scale-free: ``x_0 + sigma * eps``) and the function returns the
sample at ``sigmas[-1]`` (normally 0).  Samplers only talk to the denoiser ``D(x, sigma)``;
from it they derive ``eps = (x - D) / sigma`` and the probability-flow ODE
``dx/dsigma = (x - D) / sigma``.  A new sampler is one function decorated with ``@register``.

Registered here (see each docstring for its derivation in the scale-free variable):

* DDPM / DDIM: ``ddpm``, ``ddim``;
* probability-flow ODE: ``euler``, ``heun`` (EDM Algorithm 1), ``rk45`` (adaptive, error-controlled);
* exponential integrators (one evaluation a step): ``dpmpp_2m``, ``dpmpp_3m``, ``unipc``, ``deis``;
* linear multistep in sigma (one evaluation a step): ``lms`` (exact Adams-Bashforth weights), ``ipndm``;
* score-based: ``langevin`` (annealed, NCSN), ``euler_maruyama`` (reverse SDE), ``pc``
  (predictor-corrector);
* ``edm`` (EDM's stochastic Algorithm 2), ``gradient_estimation`` (Permenter & Yuan 2023);
* rectified flow: ``flow_euler``, ``flow_heun`` (steps linear in ``t = sigma / (1 + sigma)``).

VP models are covered as they are: their ``x_t = s x`` is a rescaling of the same variable.
Choosing the grid itself for a step budget: :func:`optimize_sigmas`, :class:`AutoSigmas`, :func:`tune_grid`
(:mod:`unnoise.samplers.grids`).
"""
from . import core, grids
from .core import (
    DEFAULT_SAMPLER, register, available, sampler_options, CountingDenoiser, check_sigmas, sample, noise_like,
    ddim_step, ddim, ddpm, euler, heun, rk45, edm_stochastic, annealed_langevin, euler_maruyama,
    predictor_corrector, gradient_estimation, flow_euler, flow_heun, dpmpp_2m, dpmpp_3m, unipc, deis,
    lms_coefficients, lms, ipndm,
)
from .grids import AutoSigmas, optimize_sigmas, tune_grid

__all__ = ['AutoSigmas', 'CountingDenoiser', 'DEFAULT_SAMPLER', 'annealed_langevin', 'available',
           'check_sigmas', 'core', 'ddim', 'ddim_step', 'ddpm', 'deis', 'dpmpp_2m', 'dpmpp_3m',
           'edm_stochastic', 'euler', 'euler_maruyama', 'flow_euler', 'flow_heun', 'gradient_estimation',
           'grids', 'heun', 'ipndm', 'lms', 'lms_coefficients', 'noise_like', 'optimize_sigmas',
           'predictor_corrector', 'register', 'rk45', 'sample', 'sampler_options', 'tune_grid', 'unipc']
