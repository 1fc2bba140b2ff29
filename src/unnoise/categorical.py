"""Diffusion on categorical data (tokens, atom and bond types): the denoiser, the ancestral samplers and the
NELBO of the categorical forward processes :class:`Masked` and :class:`Marginal` (defined with the other
forward processes in :mod:`unnoise.processes`, re-exported here).

**The denoiser** of categorical data is the same object as the Gaussian one with one-hot ``x_0``:
``D(x_t, sigma, cond) = E[onehot(x_0) | x_t]``, returned in log space as ``(B, ..., K)`` log-probabilities
(the class axis last).  :class:`CategoricalDenoiser` wraps a network's logits into it; for the masked process it
enforces what the exact denoiser satisfies: the mask is never a clean class, and an unmasked token is its own
clean class (carry-over).  The network is told ``1 - alpha = 1 - exp(-sigma)`` (finite at ``sigma = inf``)
unless ``time_conditioned`` is False; for the masked process the exact denoiser does not depend on sigma, so
its networks are not told it by default.

**Sampling** (:func:`sample`) is ancestral: from the prior at ``sigma = inf`` (all ``[MASK]``, or draws from the
marginals) each step draws every token from ``p(x_s | x_t) = sum_{x_0} q(x_s | x_t, x_0) p(x_0 | x_t)``
(:meth:`~unnoise.processes.CategoricalProcess.posterior`), so several tokens change per step.  With the exact
denoiser of a distribution whose tokens are independent this is exact at any number of steps.  ``cached=True``
(masked process) reuses the previous step's prediction when no token changed, which is exact because the masked
denoiser does not depend on sigma: a step in which nothing was unmasked costs no network call.
Classifier-free guidance combines the conditional and unconditional log-probabilities,
``l_u + w (l_c - l_u)``, renormalised.  Known tokens (``known``, ``known_mask``) stay as given at every step:
for the masked process they are simply unmasked from the start, which is the exact conditional.

**Likelihood** (:func:`nelbo`, :func:`bits_per_token`): the continuous-time NELBO, an upper bound on
``-log p(x_0)`` (exact for the exact denoiser where the class docstring of
:class:`~unnoise.processes.CategoricalProcess` says so), by Gauss-Legendre quadrature over ``alpha`` in
``(0, 1)`` (``d sigma = d alpha / alpha``), one corruption per node, or by Monte Carlo over ``t``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .denoiser import Denoiser
from .processes import CategoricalProcess, Marginal, Masked, NoiseLevels
from .processes import from_config as process_from_config

__all__ = ["CategoricalDenoiser", "CategoricalProcess", "Marginal", "Masked", "NoiseLevels", "bits_per_token",
           "clean_log_probs", "guided", "nelbo", "quadrature", "sample", "sampling_sigmas"]


def clean_log_probs(logits: torch.Tensor, x_t: torch.Tensor, process: CategoricalProcess, what: str = "") -> torch.Tensor:
    """``log p(x_0 | x_t)`` ``(B, ..., K)`` from a network's ``logits`` over the ``K`` clean classes: a log-softmax,
    and for the masked process the carry-over of every unmasked token (its own class with probability one)."""
    if logits.shape[-1] != process.num_classes:
        raise ValueError(f"the network gives {logits.shape[-1]} {what + ' ' if what else ''}logits per token; the "
                         f"process has {process.num_classes} classes")
    logp = torch.log_softmax(logits.float(), -1)
    if isinstance(process, Masked):
        clean = x_t != process.mask
        carry = torch.log(nn.functional.one_hot(x_t.clamp(max=process.num_classes - 1), process.num_classes).float())
        logp = torch.where(clean.unsqueeze(-1), carry, logp)
    return logp


class CategoricalDenoiser(Denoiser):
    """A network's logits ``net(x_t, c_noise, cond) -> (B, ..., K)`` as the categorical denoiser
    ``D(x_t, sigma, cond) -> log p(x_0 | x_t)`` (see the module docstring).

    Args:
        net: called with the long tokens ``x_t`` (states ``0..S-1``), ``c_noise = 1 - alpha`` ``(B,)`` (zeros
            when not ``time_conditioned``) and ``cond``; returns logits over the ``K`` clean classes.
        process: the :class:`~unnoise.processes.CategoricalProcess` (or its config).
        time_conditioned: whether the network is told the noise level (default: not for the masked process).
        null_cond: the null value of each droppable condition, as for :class:`~unnoise.denoiser.Denoiser`.
    """

    parameterization = "logits"

    process_class = CategoricalProcess  # the processes this denoiser belongs to

    def __init__(self, net: nn.Module, process, time_conditioned: bool | None = None, null_cond: dict | None = None):
        nn.Module.__init__(self)
        if isinstance(process, dict):
            process = process_from_config(process)
        if not isinstance(process, self.process_class):
            raise ValueError(f"a {type(self).__name__} needs a {self.process_class.__name__}, got {type(process).__name__}")
        self.net, self.categorical = net, process
        self.process = process.name
        self.sigma_data = 1.0
        self.time_conditioned = self._told_noise_level(process) if time_conditioned is None else bool(time_conditioned)
        self._null_keys: list[str] = []
        for key, value in (null_cond or {}).items():
            self.set_null(key, value)

    @staticmethod
    def _told_noise_level(process) -> bool:
        """Whether the network is told the noise level by default: not for the masked process, whose exact
        denoiser does not depend on it."""
        return not isinstance(process, Masked)

    def noise_input(self, sigma, batch: int, device) -> torch.Tensor:
        """The network's noise input ``c_noise = 1 - alpha`` ``(batch,)`` (zeros when not time-conditioned)."""
        sig = torch.as_tensor(sigma, dtype=torch.float32, device=device).reshape(-1).expand(batch)
        return -torch.expm1(-sig) if self.time_conditioned else torch.zeros_like(sig)

    def precondition(self, sigma):  # pragma: no cover - not a Gaussian denoiser
        raise ValueError("a categorical denoiser has no Gaussian preconditioning")

    def forward(self, x, sigma, cond=None):
        x = x.long()
        logits = self.net(x, self.noise_input(sigma, x.shape[0], x.device), cond)
        return clean_log_probs(logits, x, self.categorical)

    def describe(self) -> dict:
        out = super().describe()
        out.update(parameterization="logits", process=self.categorical.config(), time_conditioned=self.time_conditioned)
        out.pop("sigma_data", None)
        return out

    @classmethod
    def from_description(cls, net, description):
        desc = dict(description)
        desc.pop("parameterization", None)
        nulls = {k: torch.zeros(v["shape"], dtype=getattr(torch, v["dtype"]))
                 for k, v in desc.pop("null_cond", {}).items()}
        return cls(net, desc["process"], desc.get("time_conditioned"), null_cond=nulls)


def sampling_sigmas(process: CategoricalProcess, steps: int) -> torch.Tensor:
    """The ``steps + 1`` decreasing levels of ancestral sampling (float64): ``sigma`` at ``t = 1, 1 - 1/steps, ..., 0``
    of the process's :class:`NoiseLevels`, the first replaced by ``inf`` (the prior is the process's exact limit)."""
    return process.levels.sampling_sigmas(steps)


def _combine(log_c: torch.Tensor, log_u: torch.Tensor, scale: float) -> torch.Tensor:
    """``log_softmax(l_u + scale (l_c - l_u))``, with classes impossible under both left impossible."""
    both = torch.isinf(log_c) & torch.isinf(log_u)
    mixed = log_u + scale * (log_c - log_u)
    mixed = torch.where(both | torch.isnan(mixed), torch.full_like(mixed, -math.inf), mixed)
    return torch.log_softmax(mixed, -1)


def guided(denoiser, scale: float, null_cond):
    """Classifier-free guidance on the log-probabilities: ``D_w(x, sigma, cond) = log_softmax(l_u + w (l_c - l_u))``
    with ``l_c = D(x, sigma, cond)``, ``l_u = D(x, sigma, null_cond)``; ``w = 1`` is the conditional model."""
    scale = float(scale)

    def d(x, sigma, cond=None):
        log_c = denoiser(x, sigma, cond)
        if scale == 1.0:
            return log_c
        return _combine(log_c, denoiser(x, sigma, null_cond), scale)
    return d


def _draw(probs: torch.Tensor, generator) -> torch.Tensor:
    """One state per row of ``probs`` (the last axis), by the inverse distribution function at uniform draws."""
    where = generator.device if generator is not None else probs.device
    u = torch.rand(probs.shape[:-1] + (1,), generator=generator, device=where, dtype=probs.dtype).to(probs.device)
    cdf = torch.cumsum(probs, -1)
    return (cdf < u * cdf[..., -1:]).sum(-1).clamp(max=probs.shape[-1] - 1)


def sample(denoiser, process: CategoricalProcess, shape, steps, generator: torch.Generator | None = None,
           cond=None, known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
           guidance_scale: float = 1.0, null_cond=None, cached: bool = True, device=None,
           return_calls: bool = False, start: torch.Tensor | None = None):
    """Ancestral sampling of ``shape = (B, *dims)`` tokens in ``steps`` steps (see the module docstring).

    Args:
        denoiser: ``D(x_t, sigma, cond) -> (B, *dims, K)`` log-probabilities of ``x_0``.
        process: the forward process the denoiser belongs to.
        steps: the number of steps (the grid :func:`sampling_sigmas`), or a decreasing grid of levels from
            ``inf`` to ``0``.
        start: the tokens at ``sigma = inf`` (default: drawn from the prior with ``generator``).
        known, known_mask: tokens ``(B, *dims)`` to keep where the bool ``known_mask`` is True.
        guidance_scale, null_cond: classifier-free guidance (:func:`guided`) when the scale is not 1.
        cached: reuse the last prediction when no token changed (masked process only; exact there).
        return_calls: also return the number of denoiser evaluations (guidance counts two per step).
    Returns: the ``(B, *dims)`` long tokens (and the call count).
    """
    shape = tuple(int(s) for s in shape)
    device = torch.device(device) if device is not None else (known.device if known is not None else None)
    if isinstance(steps, int) and not isinstance(steps, bool):
        sigmas = sampling_sigmas(process, steps)
    else:
        sigmas = torch.as_tensor(steps, dtype=torch.float64).flatten().cpu()
        if len(sigmas) < 2 or not math.isinf(float(sigmas[0])) or float(sigmas[-1]) != 0 or \
                not bool((sigmas[1:] < sigmas[:-1]).all()):
            raise ValueError("a categorical sampling grid decreases from inf to 0 (sampling_sigmas(process, steps))")
    if start is not None:
        x = process._check_tokens(start)
        if tuple(x.shape) != shape:
            raise ValueError(f"the start must have the sample shape {shape}, got {tuple(x.shape)}")
    else:
        where = generator.device if generator is not None else device
        x = process.prior(process.noise(shape, generator, where).to(device))
    if known is not None or known_mask is not None:
        if known is None or known_mask is None:
            raise ValueError("pass both known (the tokens) and known_mask (where they apply)")
        known, known_mask = process._check_tokens(known).to(x.device), known_mask.to(x.device, torch.bool)
        if known.shape != x.shape or known_mask.shape != x.shape:
            raise ValueError(f"known and known_mask must have the sample shape {shape}, got "
                             f"{tuple(known.shape)} and {tuple(known_mask.shape)}")
        if ((known < 0) | (known >= process.num_classes))[known_mask].any():
            raise ValueError(f"known tokens must be classes 0..{process.num_classes - 1}")
        x = torch.where(known_mask, known, x)
    scale = float(guidance_scale)
    d = guided(denoiser, scale, null_cond) if scale != 1.0 else denoiser
    per_call = 2 if scale != 1.0 else 1
    cache_ok = cached and isinstance(process, Masked)
    calls, probs, changed = 0, None, True
    for i in range(len(sigmas) - 1):
        sig_t, sig_s = float(sigmas[i]), float(sigmas[i + 1])
        if probs is None or changed or not cache_ok:
            sig = torch.full((shape[0],), sig_t, device=x.device)
            probs = d(x, sig, cond).double().exp()
            calls += per_call
        post = process.posterior(x, probs, sig_t, sig_s)
        x_new = _draw(post, generator)
        if known_mask is not None:
            x_new = torch.where(known_mask, known, x_new)
        if cache_ok:  # the one read-back of a step, and only where it can save the network call
            changed = bool((x_new != x).any())
        x = x_new
    return (x, calls) if return_calls else x


def quadrature(points: int = 32) -> tuple[list[float], list[float]]:
    """Nodes ``alpha_i`` and weights ``w_i`` with ``int_0^inf f(sigma) d sigma ~ sum_i w_i f(-log alpha_i)``.

    ``d sigma = d alpha / alpha``; the NELBO density varies fastest near ``alpha = 1`` (few corrupted tokens), so
    the nodes are Gauss-Legendre in ``u`` with ``alpha = 1 - u^3`` (``w = 3 u^2 / alpha x`` the Legendre weight),
    which makes the masked density of ``L`` tokens a polynomial of degree ``3 L - 1`` in ``u`` (exact from
    ``3 L / 2`` points) and the marginal one converge fast (measured in ``tests/test_categorical.py``)."""
    if int(points) < 1:
        raise ValueError(f"the NELBO quadrature needs at least one point, got {points}")
    nodes, weights = np.polynomial.legendre.leggauss(int(points))
    u, w = (nodes + 1) / 2, weights / 2
    alpha = 1 - u**3
    return alpha.tolist(), (w * 3 * u**2 / alpha).tolist()


@torch.no_grad()
def nelbo(denoiser, process: CategoricalProcess, x0: torch.Tensor, cond=None, points: int = 32,
          method: str = "quadrature", generator: torch.Generator | None = None) -> torch.Tensor:
    """The continuous-time NELBO of ``x0`` ``(B, *dims)`` in nats per example, ``(B,)``: an upper bound on
    ``-log p(x0)`` under the model (its expectation over the corruption draws is the bound).

    ``method="quadrature"`` (default): ``points`` nodes of :func:`quadrature` over ``sigma`` in ``[0, inf)``,
    ``NELBO = int_0^1 (d alpha / alpha) E[integrand]``, one corruption of each example per node, drawn from
    ``generator`` (seed 0 when None, so the result is deterministic).  ``method="mc"``: ``points`` levels per
    example drawn through ``t ~ U[0, 1]`` of the process's noise levels, weighted by ``d sigma / d t``
    (the training loss's estimator; it covers ``sigma`` up to ``sigma(1)`` only).
    """
    x0 = process._check_tokens(x0)
    if generator is None:
        generator = torch.Generator(x0.device).manual_seed(0)
    if method not in ("quadrature", "mc"):
        raise ValueError(f"unknown NELBO method {method!r}; choose quadrature or mc")
    b = x0.shape[0]
    total = torch.zeros(b, dtype=torch.float64, device=x0.device)
    if method == "quadrature":
        for alpha, w in zip(*quadrature(points)):
            sig = torch.full((b,), -math.log(alpha), dtype=torch.float64, device=x0.device)
            x_t = process.corrupt(x0, sig, process.noise(x0.shape, generator, generator.device).to(x0.device))
            logp = denoiser(x_t, sig.float(), cond).double()
            total += w * process.integrand(x0, x_t, logp, sig)
        return total
    for _ in range(int(points)):
        t = torch.rand(b, generator=generator, dtype=torch.float64, device=generator.device).to(x0.device)
        sig = process.levels.sigma(t)
        x_t = process.corrupt(x0, sig, process.noise(x0.shape, generator, generator.device).to(x0.device))
        logp = denoiser(x_t, sig.float(), cond).double()
        total += process.levels.rate(t) * process.integrand(x0, x_t, logp, sig)
    return total / int(points)


def bits_per_token(denoiser, process: CategoricalProcess, x0: torch.Tensor, cond=None, **kwargs) -> torch.Tensor:
    """:func:`nelbo` in bits per token, ``(B,)``: nats / (tokens per example x log 2)."""
    tokens = x0[0].numel()
    return nelbo(denoiser, process, x0, cond, **kwargs) / (tokens * math.log(2))
