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
    ``noise_kernel`` (``vp``/``ve``/``flow`` only) the Gaussian-process noise of that kernel (categorical
    schedules own their process object: :class:`unnoise.schedules.Categorical`)."""
    if noise_kernel is not None:
        if process not in ("vp", "ve", "flow"):
            raise ValueError(f"Gaussian-process noise needs a vp, ve or flow schedule, not a {process} one")
        return GaussianProcessNoise(process, noise_kernel)
    if process == "wrapped":
        return WrappedGaussian()
    return Gaussian(process)


# ----------------------------------------------------------------------------- categorical processes
class NoiseLevels:
    """How training time ``t`` in ``[0, 1]`` maps to the noise level of a categorical process.

    The level is the *total noise* ``sigma = -log alpha``, where ``alpha`` is the probability that a token is
    still clean (as MDLM); ``sigma`` lies in ``[0, inf)``.

    * ``loglinear`` (the default): ``alpha_t = 1 - (1 - eps) t``, so ``sigma_t = -log(1 - (1 - eps) t)``;
    * ``cosine``: ``alpha_t = eps + (1 - eps) cos(pi t / 2)``.

    Training draws ``t ~ U[0, 1]`` and uses ``sigma_t``; the loss then carries the importance weight
    ``d sigma / d t`` (:meth:`rate`), so that its expectation is the integral of the NELBO density over
    ``sigma``.  Sampling walks ``t`` from 1 to 0 but starts at ``sigma = inf`` (``alpha = 0``), the forward
    process's exact limit (see :func:`unnoise.categorical.sampling_sigmas`).
    """

    NAMES = ("loglinear", "cosine")

    def __init__(self, name: str = "loglinear", eps: float = 1e-3):
        if name not in self.NAMES:
            raise ValueError(f"unknown categorical noise levels {name!r}; choose {' or '.join(self.NAMES)}")
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"the categorical noise levels need 0 <= eps < 1, got {eps}")
        self.name, self.eps = name, float(eps)

    def alpha(self, t):
        """``alpha_t``, the probability that a token is still clean at time ``t``."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if self.name == "loglinear":
            return 1 - (1 - self.eps) * t
        return self.eps + (1 - self.eps) * torch.cos(0.5 * math.pi * t)

    def sigma(self, t):
        """``sigma_t = -log alpha_t`` (inf where ``alpha_t = 0``)."""
        return -torch.log(self.alpha(t))

    def time(self, sigma):
        """The inverse map, ``t`` of a level ``sigma`` (clamped into ``[0, 1]``)."""
        alpha = torch.exp(-torch.as_tensor(sigma, dtype=torch.float64))
        if self.name == "loglinear":
            t = (1 - alpha) / (1 - self.eps)
        else:
            t = torch.arccos(((alpha - self.eps) / (1 - self.eps)).clamp(-1, 1)) * (2 / math.pi)
        return t.clamp(0, 1)

    def rate(self, t):
        """``d sigma / d t = -alpha'_t / alpha_t``, the importance weight of a level drawn through ``t ~ U[0, 1]``."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if self.name == "loglinear":
            return (1 - self.eps) / self.alpha(t)
        return (1 - self.eps) * 0.5 * math.pi * torch.sin(0.5 * math.pi * t) / self.alpha(t)

    def sampling_sigmas(self, steps: int) -> torch.Tensor:
        """The ``steps + 1`` decreasing levels of ancestral sampling (float64): ``sigma`` at
        ``t = 1, 1 - 1/steps, ..., 0`` with the first replaced by ``inf`` (the prior is the process's exact limit)."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        sig = self.sigma(torch.linspace(1, 0, steps + 1, dtype=torch.float64))
        sig[0], sig[-1] = math.inf, 0.0
        return sig

    def config(self) -> dict:
        return {"name": self.name, "eps": self.eps}

    def __repr__(self):
        return f"NoiseLevels({self.name!r}, eps={self.eps})"


class CategoricalProcess(ForwardProcess):
    """A categorical forward process on integer tokens: at noise level sigma (``alpha = exp(-sigma)``) each token
    independently stays as it is with probability ``alpha`` and is otherwise replaced by a draw from a stationary
    distribution ``pi`` over the ``S`` states.  The transition from level ``s`` to level ``t > s`` is

        Q_{t|s} = a I + (1 - a) 1 pi^T,    a = alpha_t / alpha_s,

    and the product of two such matrices is again one (``a`` multiplies, since ``pi^T 1 = 1``), so
    ``Q-bar_t = Q_{t|0} = alpha_t I + (1 - alpha_t) 1 pi^T`` and ``pi^T Q_{t|s} = pi^T``.
    :class:`Masked` is ``pi = e_MASK`` (absorbing diffusion, MDLM), :class:`Marginal` is ``pi = m``, the
    data's marginals (D3PM's uniform process when ``m`` is uniform; DiGress's marginal transition).

    **Posterior.**  For ``x_t = k`` and a clean token ``x_0 = i``, ``q(x_s = j | x_t, x_0) = Q_{t|s}[j, k]
    Q-bar_s[i, j] / Q-bar_t[i, k]``.  Summed over a predicted ``p(x_0 | x_t)`` with ``w_i = p_i / Q-bar_t[i, k]``:

        p(x_s = j | x_t = k) = Q_{t|s}[j, k] (alpha_s w_j + (1 - alpha_s) pi_j sum_i w_i),

    which sums to one for any ``p`` (:meth:`posterior`).

    **NELBO.**  Letting the step shrink, the KL divergences of the discrete-time bound become a rate: with
    ``g = alpha w + (1 - alpha) pi sum(w)`` for the true ``x_0`` (``w = e_{x_0} / Q-bar[x_0, k]``) and ``g-hat``
    for the prediction,

        NELBO = int_0^inf d sigma  E_{x_sigma} sum_tokens pi_k sum_{j != k} [g_j log(g_j / g-hat_j) - g_j + g-hat_j]

    (the prior term vanishes at ``sigma = inf``, where ``x`` is distributed as ``pi`` whatever ``x_0``).  For the
    masked process it reduces to MDLM's ``alpha / (1 - alpha) (-log p(x_0 | x_t))`` summed over masked tokens
    (:meth:`integrand`), i.e. in time ``alpha'_t / (1 - alpha_t)`` times the masked cross-entropy.  With the
    exact denoiser the NELBO equals ``-log p(x_0)`` for *any* data distribution and any noise levels: in
    continuous time one token changes at a time, and the exact reverse rate of changing token ``l`` from ``k`` to
    ``j`` is ``rate x sum_c p(x_0,l = c | x_t) Q-bar[c, j] / Q-bar[c, k]``, which needs only the per-token
    posterior the exact denoiser gives.  (Discrete-time ancestral steps, which change many tokens at once from
    per-token posteriors, are exact only when the tokens are independent.)

    The process is driven by one uniform draw per token (:meth:`noise`), so corruption is a pure function of
    ``(x_0, sigma, u)``: the token is replaced when ``u < 1 - alpha``, by the state at ``u / (1 - alpha)`` of
    the inverse distribution function of ``pi``.
    """

    name = "categorical"
    num_classes: int  # the classes of clean data (the denoiser's last axis)
    num_states: int  # the states of noisy data (num_classes, plus the mask for the masked process)

    def __init__(self, levels: NoiseLevels | dict | None = None):
        self.levels = levels if isinstance(levels, NoiseLevels) else NoiseLevels(**(levels or {}))

    # ---------------------------------------------------------------- the stationary distribution
    def stationary(self, dtype=torch.float64, device=None) -> torch.Tensor:  # pragma: no cover - overridden
        """``pi``, the ``(S,)`` distribution tokens are redrawn from."""
        raise NotImplementedError

    def _redraw(self, u: torch.Tensor) -> torch.Tensor:
        """States drawn from ``pi`` by the inverse distribution function at uniforms ``u``."""
        cdf = torch.cumsum(self.stationary(torch.float64, u.device), 0)
        idx = torch.searchsorted(cdf, u.double().contiguous(), right=True)
        return idx.clamp(max=self.num_states - 1)

    # ---------------------------------------------------------------- the interface
    def noise(self, shape, generator=None, device=None, dtype=torch.float32):
        """Uniform draws in ``[0, 1)``, one per token (a dict of shapes gives a dict of draws)."""
        if isinstance(shape, dict):
            return {k: self.noise(shape[k], generator, device, dtype) for k in sorted(shape)}
        return torch.rand(tuple(shape), generator=generator, device=device, dtype=dtype)

    def corrupt(self, x0, sigma, noise):
        """``x_t`` (long): a token is redrawn from ``pi`` where ``noise < 1 - alpha``, kept otherwise."""
        x0 = self._check_tokens(x0)
        alpha = torch.exp(-_expand(sigma, noise.double()))
        redraw = noise.double() < 1 - alpha
        u = (noise.double() / (1 - alpha).clamp_min(1e-300)).clamp(0, 1)
        return torch.where(redraw, self._redraw(u), x0)

    def prior(self, noise, sigma_max=math.inf):
        """The start of sampling, ``x ~ pi`` per token, from uniform draws (the process at ``sigma = inf``)."""
        return self._redraw(noise)

    def prior_log_prob(self, x, sigma_max=math.inf, sigma_data=0.0):
        """``sum log pi(x)`` per example."""
        logpi = torch.log(self.stationary(torch.float64, x.device))
        return logpi[x].reshape(x.shape[0], -1).sum(1)

    def project(self, x):
        return x

    def _check_tokens(self, x):
        if x.is_floating_point() or x.is_complex():
            raise ValueError(f"categorical data are integer class indices, got a {x.dtype} tensor")
        return x.long()

    # ---------------------------------------------------------------- closed forms
    def transition(self, sigma_s, sigma_t, dtype=torch.float64) -> torch.Tensor:
        """The ``(S, S)`` one-step matrix ``Q_{t|s}[i, j] = q(x_t = j | x_s = i) = a I + (1 - a) 1 pi^T``
        with ``a = exp(-(sigma_t - sigma_s))``."""
        a = math.exp(-(float(sigma_t) - float(sigma_s)))
        pi = self.stationary(dtype)
        return a * torch.eye(self.num_states, dtype=dtype) + (1 - a) * pi.expand(self.num_states, -1)

    def marginal_transition(self, sigma, dtype=torch.float64) -> torch.Tensor:
        """``Q-bar_sigma = Q_{sigma|0} = alpha I + (1 - alpha) 1 pi^T``, ``(S, S)``."""
        return self.transition(0.0, sigma, dtype)

    def log_likelihood(self, x_t, sigma, dtype=torch.float64) -> torch.Tensor:
        """``log q(x_t | x_0 = c)`` for every clean class ``c``, up to a term that does not depend on ``c``:
        ``(B, ..., K)`` (the emission of ``x_t`` in a posterior over ``x_0``)."""
        x_t = self._check_tokens(x_t)
        pi = self.stationary(dtype, x_t.device)
        alpha = torch.exp(-_expand(sigma, x_t.to(dtype))).unsqueeze(-1)
        onehot = torch.nn.functional.one_hot(x_t, self.num_states).to(dtype)[..., :self.num_classes]
        return torch.log(alpha * onehot + (1 - alpha) * pi[x_t].unsqueeze(-1))

    def posterior(self, x_t, probs, sigma_t, sigma_s) -> torch.Tensor:
        """``p(x_s | x_t) = sum_{x_0} q(x_s | x_t, x_0) p(x_0 | x_t)`` for ``sigma_s < sigma_t``: ``(B, ..., S)``
        probabilities, from the predicted ``probs = p(x_0 | x_t)`` ``(B, ..., K)`` (see the class docstring)."""
        x_t = self._check_tokens(x_t)
        dtype = probs.dtype
        pi = self.stationary(dtype, x_t.device)
        sig_t = torch.as_tensor(sigma_t, dtype=dtype, device=x_t.device).reshape(-1)
        sig_s = torch.as_tensor(sigma_s, dtype=dtype, device=x_t.device).reshape(-1)
        alpha_t = torch.exp(-sig_t).reshape((-1,) + (1,) * x_t.ndim)
        alpha_s = torch.exp(-sig_s).reshape((-1,) + (1,) * x_t.ndim)
        a = torch.exp(-(sig_t - sig_s)).reshape((-1,) + (1,) * x_t.ndim)
        onehot = torch.nn.functional.one_hot(x_t, self.num_states).to(dtype)
        pi_k = pi[x_t].unsqueeze(-1)
        p = torch.nn.functional.pad(probs, (0, self.num_states - self.num_classes))
        z = alpha_t * onehot + (1 - alpha_t) * pi_k  # Q-bar_t[i, k]
        w = torch.where(z > 0, p / z.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(p))
        inner = alpha_s * w + (1 - alpha_s) * pi * w.sum(-1, keepdim=True)
        out = (a * onehot + (1 - a) * pi_k) * inner
        total = out.sum(-1, keepdim=True)
        # a token impossible at sigma_t (a given clean token at sigma = inf under the masked process) stays
        return torch.where(total > 0, out / total.clamp_min(torch.finfo(dtype).tiny), onehot)

    def integrand(self, x0, x_t, log_probs, sigma) -> torch.Tensor:  # pragma: no cover - overridden
        """The NELBO density in ``sigma`` at one draw ``x_t``: per example, nats per unit of ``sigma``."""
        raise NotImplementedError

    def loss(self, denoiser, x0, sigma, noise, cond=None, weighting="uniform", min_snr_gamma=5.0):
        """Per-example NELBO estimate in nats: ``(d sigma / d t) x integrand`` at ``sigma = sigma_t``, ``t ~ U[0, 1]``
        (the Trainer draws ``sigma`` through the schedule's :class:`NoiseLevels`), so its mean over ``t`` is the
        NELBO integral over ``[0, sigma(1)]``."""
        if weighting != "uniform":
            raise ValueError(f"categorical processes train on their NELBO (uniform weighting), not {weighting!r}")
        x0 = self._check_tokens(x0)
        x_t = self.corrupt(x0, sigma, noise)
        log_probs = denoiser(x_t, sigma, cond)
        weight = self.levels.rate(self.levels.time(torch.as_tensor(sigma, device=log_probs.device).detach().double()))
        return self.integrand(x0, x_t, log_probs, sigma) * weight.to(log_probs.device, log_probs.dtype)

    def config(self) -> dict:
        return {"name": self.name, "levels": self.levels.config()}

    @staticmethod
    def from_config(config: dict) -> "CategoricalProcess":
        """Rebuild a :class:`Masked` or :class:`Marginal` (or a :class:`GraphProcess` of two) from its :meth:`config`."""
        cfg = dict(config)
        name = cfg.pop("name", None)
        classes = {"masked": Masked, "marginal": Marginal, "graph": GraphProcess}
        if name not in classes:
            raise ValueError(f"unknown categorical process {name!r}; choose masked, marginal or graph")
        return classes[name](**cfg)


class Masked(CategoricalProcess):
    """Absorbing ("masked") diffusion (MDLM, Sahoo et al. 2024): states ``0..K-1`` and the mask ``K``; each token
    becomes ``[MASK]`` with probability ``1 - alpha``.  A masked token's clean class has no dependence on sigma
    given the unmasked ones, so the exact denoiser ``p(x_0 | x_t)`` does not depend on sigma; unmasked tokens are
    their own clean class (carry-over), and the mask is never a clean class.

    The NELBO density (:meth:`integrand`) is ``alpha / (1 - alpha) sum_{masked} -log p(x_0 | x_t)`` nats per unit
    of sigma, i.e. ``-alpha'_t / (1 - alpha_t)`` times the masked cross-entropy per unit of time."""

    name = "masked"

    def __init__(self, num_classes: int, levels: NoiseLevels | dict | None = None):
        super().__init__(levels)
        if int(num_classes) < 1:
            raise ValueError(f"a masked process needs at least one class, got {num_classes}")
        self.num_classes = int(num_classes)
        self.num_states = self.num_classes + 1
        self.mask = self.num_classes

    def stationary(self, dtype=torch.float64, device=None):
        pi = torch.zeros(self.num_states, dtype=dtype, device=device)
        pi[self.mask] = 1
        return pi

    def _redraw(self, u):
        return torch.full(u.shape, self.mask, dtype=torch.long, device=u.device)

    def log_likelihood(self, x_t, sigma, dtype=torch.float64):
        """``log q(x_t | x_0 = c)`` up to a term free of ``c``: ``0`` for a masked token (``1 - alpha`` for every
        ``c``), ``log onehot(x_t)`` for a clean one (``alpha`` at ``c = x_t``).  Free of sigma, so a clean token
        given at any level (a known token at ``sigma = inf``) is an observation of its class."""
        x_t = self._check_tokens(x_t)
        clean = torch.nn.functional.one_hot(x_t.clamp(max=self.num_classes - 1), self.num_classes).to(dtype)
        return torch.where((x_t == self.mask).unsqueeze(-1), torch.zeros_like(clean), torch.log(clean))

    def integrand(self, x0, x_t, log_probs, sigma):
        masked = x_t == self.mask
        nll = -log_probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
        sig = _expand(sigma, nll)
        ratio = torch.exp(-sig) / (-torch.expm1(-sig)).clamp_min(torch.finfo(nll.dtype).tiny)  # alpha / (1 - alpha)
        per_token = torch.where(masked, ratio * nll, torch.zeros_like(nll))
        return per_token.reshape(x0.shape[0], -1).sum(1)

    def config(self):
        return {"name": self.name, "num_classes": self.num_classes, "levels": self.levels.config()}

    def __repr__(self):
        return f"Masked({self.num_classes}, {self.levels!r})"


class Marginal(CategoricalProcess):
    """Uniform / marginal diffusion (D3PM, Austin et al. 2021; DiGress's marginal transition): each token is
    redrawn from the ``(K,)`` marginals ``m`` with probability ``1 - alpha``, ``Q_t = (1 - beta_t) I + beta_t 1 m^T``.
    ``Marginal.uniform(K)`` is D3PM's uniform process.  The noisy states are the clean classes (``S = K``)."""

    name = "marginal"

    def __init__(self, marginals, levels: NoiseLevels | dict | None = None):
        super().__init__(levels)
        m = torch.as_tensor(marginals, dtype=torch.float64).flatten()
        if m.numel() < 1 or not torch.isfinite(m).all() or (m < 0).any() or float(m.sum()) <= 0:
            raise ValueError("marginals must be a non-empty vector of non-negative, finite weights with a positive sum")
        if (m == 0).any():
            raise ValueError("marginals must be positive for every class (smooth the counts, e.g. add one)")
        self.marginals = m / m.sum()
        self.num_classes = self.num_states = m.numel()

    @classmethod
    def uniform(cls, num_classes: int, levels: NoiseLevels | dict | None = None) -> "Marginal":
        """D3PM's uniform process over ``num_classes`` classes."""
        return cls(torch.ones(int(num_classes)), levels)

    def stationary(self, dtype=torch.float64, device=None):
        return self.marginals.to(dtype=dtype, device=device)

    def integrand(self, x0, x_t, log_probs, sigma):
        dtype = log_probs.dtype
        tiny = torch.finfo(dtype).tiny
        pi = self.stationary(dtype, x_t.device)
        alpha = torch.exp(-_expand(sigma, x_t.to(dtype))).unsqueeze(-1)
        pi_k = pi[x_t].unsqueeze(-1)
        onehot_t = torch.nn.functional.one_hot(x_t, self.num_states).to(dtype)
        log_z = torch.log(alpha * onehot_t + (1 - alpha) * pi_k)  # log Q-bar[i, x_t]
        log_a, log_1ma = torch.log(alpha.clamp_min(tiny)), torch.log1p(-alpha)

        def log_g(log_w):
            log_s = torch.logsumexp(log_w, -1, keepdim=True)
            return torch.logaddexp(log_a + log_w, log_1ma + torch.log(pi) + log_s)

        onehot_0 = torch.nn.functional.one_hot(x0, self.num_states).to(dtype)
        true_w = torch.where(onehot_0 > 0, -log_z, torch.full_like(log_z, -math.inf))
        lg, lg_hat = log_g(true_w), log_g(log_probs - log_z)
        g, g_hat = lg.exp(), lg_hat.exp()
        terms = g * (lg - lg_hat) - g + g_hat
        terms = torch.where(onehot_t > 0, torch.zeros_like(terms), terms)
        per_token = pi_k.squeeze(-1) * terms.sum(-1)
        return per_token.reshape(x0.shape[0], -1).sum(1)

    def config(self):
        return {"name": self.name, "marginals": self.marginals.tolist(), "levels": self.levels.config()}

    def __repr__(self):
        return f"Marginal({self.num_classes} classes, {self.levels!r})"


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


class GraphProcess(ForwardProcess):
    """A categorical graph, ``{nodes: (B, N), edges: (B, N, N)}`` (by default the keys ``atoms`` and ``bonds``),
    noised by one categorical process per key at one shared noise level (DiGress: :class:`Marginal` processes with
    the data's node and edge marginals).  Edge noise is drawn on the upper triangle and mirrored, and the diagonal
    stays class 0, so every noisy graph is symmetric with an empty diagonal; sampling goes through
    :func:`unnoise.graphs.sample`.

    The loss is the sum of the two NELBO parts, the edge part over the unordered pairs ``i < j`` (each edge once):
    nats per graph.  Padded nodes (``cond["node_mask"]``) add nothing when the denoiser is certain of their class
    0, as :class:`unnoise.nets.GraphTransformer` is.
    """

    name = "graph"

    def __init__(self, nodes, edges, keys=("atoms", "bonds")):
        nodes = nodes if isinstance(nodes, CategoricalProcess) else CategoricalProcess.from_config(nodes)
        edges = edges if isinstance(edges, CategoricalProcess) else CategoricalProcess.from_config(edges)
        if nodes.levels.config() != edges.levels.config():
            raise ValueError("the node and edge processes of a graph must share their noise levels")
        self.keys = tuple(str(k) for k in keys)
        if len(self.keys) != 2 or self.keys[0] == self.keys[1]:
            raise ValueError(f"a graph has two keys (nodes, edges), got {keys!r}")
        self.parts = {self.keys[0]: nodes, self.keys[1]: edges}
        self.levels = nodes.levels

    @staticmethod
    def symmetric(edges: torch.Tensor) -> torch.Tensor:
        """The upper triangle of ``(..., N, N)`` mirrored below the diagonal, class 0 on the diagonal."""
        upper = torch.triu(edges, 1)
        return upper + upper.transpose(-1, -2)

    def _split(self, x, what):
        if not isinstance(x, dict) or set(x) != set(self.keys):
            raise ValueError(f"graph {what} are a dict with keys {', '.join(self.keys)}")
        return x[self.keys[0]], x[self.keys[1]]

    def noise(self, shape, generator=None, device=None, dtype=torch.float32):
        """Uniform draws per key (``shape`` a dict of shapes), as the categorical processes are driven by."""
        if not isinstance(shape, dict):
            raise ValueError(f"graph data are a dict of tensors ({', '.join(self.keys)}); got one shape")
        return {k: self.parts[k].noise(shape[k], generator, device, dtype) for k in sorted(shape)}

    def corrupt(self, x0, sigma, noise):
        nodes, edges = self._split(x0, "examples")
        u_nodes, u_edges = self._split(noise, "noise draws")
        a, b = self.keys
        return {a: self.parts[a].corrupt(nodes, sigma, u_nodes),
                b: self.symmetric(self.parts[b].corrupt(edges, sigma, u_edges))}

    def prior(self, noise, sigma_max=math.inf):
        u_nodes, u_edges = self._split(noise, "noise draws")
        a, b = self.keys
        return {a: self.parts[a].prior(u_nodes), b: self.symmetric(self.parts[b].prior(u_edges))}

    def prior_log_prob(self, x, sigma_max=math.inf, sigma_data=0.0):
        nodes, edges = self._split(x, "samples")
        i, j = torch.triu_indices(edges.shape[-1], edges.shape[-1], 1, device=edges.device)
        a, b = self.keys
        return self.parts[a].prior_log_prob(nodes) + self.parts[b].prior_log_prob(edges[:, i, j])

    def integrand(self, x0, x_t, log_probs, sigma) -> torch.Tensor:
        """The NELBO density of a graph: the node part plus the edge part over pairs ``i < j``."""
        a, b = self.keys
        n = x0[b].shape[-1]
        i, j = torch.triu_indices(n, n, 1, device=x0[b].device)
        return (self.parts[a].integrand(x0[a], x_t[a], log_probs[a], sigma)
                + self.parts[b].integrand(x0[b][:, i, j], x_t[b][:, i, j], log_probs[b][:, i, j], sigma))

    def loss(self, denoiser, x0, sigma, noise, cond=None, weighting="uniform", min_snr_gamma=5.0):
        """Per-graph NELBO estimate in nats (as :meth:`CategoricalProcess.loss`, summed over both parts)."""
        if weighting != "uniform":
            raise ValueError(f"categorical processes train on their NELBO (uniform weighting), not {weighting!r}")
        x_t = self.corrupt(x0, sigma, noise)
        log_probs = denoiser(x_t, sigma, cond)
        per = self.integrand({k: v.long() for k, v in x0.items()}, x_t, log_probs, sigma)
        weight = self.levels.rate(self.levels.time(torch.as_tensor(sigma, device=per.device).detach().double()))
        return per * weight.to(per.dtype)

    def config(self) -> dict:
        a, b = self.keys
        return {"name": self.name, "nodes": self.parts[a].config(), "edges": self.parts[b].config(),
                "keys": list(self.keys)}

    @staticmethod
    def from_config(config: dict) -> "GraphProcess":
        return GraphProcess(config["nodes"], config["edges"], config.get("keys", ("atoms", "bonds")))

    def __repr__(self):
        a, b = self.keys
        return f"GraphProcess({a}={self.parts[a]!r}, {b}={self.parts[b]!r})"
