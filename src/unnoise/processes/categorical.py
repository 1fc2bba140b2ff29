"""Categorical forward processes on integer states (tokens, atom and bond types): absorbing ("masked") and
uniform / marginal diffusion, at noise levels ``sigma = -log alpha`` (:class:`NoiseLevels`).  Sampling and the
NELBO that use them are in :mod:`unnoise.categorical`."""
from __future__ import annotations

import math

import torch

from .base import ForwardProcess, _expand


def check_weighting(weighting: str) -> None:
    """A categorical loss is the NELBO (``uniform``) or DiGress's ``crossentropy``; anything else is one line."""
    if weighting not in ("uniform", "crossentropy"):
        raise ValueError(f"categorical processes train on their NELBO (uniform) or on crossentropy, not {weighting!r}")


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
        """Per-example loss in nats at ``sigma = sigma_t``, ``t ~ U[0, 1]`` (the Trainer draws ``sigma`` through the
        schedule's :class:`NoiseLevels`).

        * ``weighting="uniform"``: the NELBO estimate ``(d sigma / d t) x integrand``, whose mean over ``t`` is the
          NELBO integral over ``[0, sigma(1)]``;
        * ``weighting="crossentropy"``: the cross-entropy of the clean tokens under the prediction, averaged over
          the tokens the noise may have changed (every token of a marginal process, the masked ones of a masked
          process), with the same weight at every level: DiGress's training loss (D3PM's auxiliary one).  Not a
          bound on the likelihood; it spends the network's capacity evenly over the levels instead of by the
          NELBO's weight."""
        check_weighting(weighting)
        x0 = self._check_tokens(x0)
        x_t = self.corrupt(x0, sigma, noise)
        log_probs = denoiser(x_t, sigma, cond)
        if weighting == "crossentropy":
            total, count = self.cross_entropy(x0, x_t, log_probs)
            return total / count.clamp_min(1)
        weight = self.levels.rate(self.levels.time(torch.as_tensor(sigma, device=log_probs.device).detach().double()))
        return self.integrand(x0, x_t, log_probs, sigma) * weight.to(log_probs.device, log_probs.dtype)

    def uncertain(self, x_t) -> torch.Tensor:
        """Which noisy tokens may differ from their clean class: all of them (a masked process: the masked ones)."""
        return torch.ones_like(x_t, dtype=torch.bool)

    def cross_entropy(self, x0, x_t, log_probs, keep=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per example, the summed ``-log p(x_0 | x_t)`` over the :meth:`uncertain` tokens (and ``keep``, a mask of
        the tokens that exist) and their number."""
        use = self.uncertain(x_t) if keep is None else self.uncertain(x_t) & keep
        nll = -log_probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
        nll = torch.where(use, nll, torch.zeros_like(nll))
        return nll.reshape(x0.shape[0], -1).sum(1), use.reshape(x0.shape[0], -1).sum(1).to(nll.dtype)

    def config(self) -> dict:
        return {"name": self.name, "levels": self.levels.config()}

    @staticmethod
    def from_config(config: dict) -> "CategoricalProcess":
        """Rebuild a :class:`Masked` or :class:`Marginal` from its :meth:`config` (graphs of two:
        :func:`unnoise.processes.from_config`)."""
        cfg = dict(config)
        name = cfg.pop("name", None)
        classes = {"masked": Masked, "marginal": Marginal}
        if name not in classes:
            raise ValueError(f"unknown categorical process {name!r}; choose masked or marginal")
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

    def uncertain(self, x_t):
        return x_t == self.mask

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
