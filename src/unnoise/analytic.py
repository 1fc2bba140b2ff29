"""Exact denoisers for distributions whose noised density is known in closed form.

They are the ground truth every sampler and likelihood routine is tested against: with the
exact ``D(x, sigma) = E[x_0 | x_0 + sigma eps = x]`` any remaining error is the sampler's own.
"""
from __future__ import annotations

import math

import torch

from .denoiser import expand_sigma


def _as_batch_sigma(sigma, x):
    return expand_sigma(sigma, x).reshape(-1, 1, 1)  # (B, 1, 1) against (B, K, d)


class GaussianMixture:
    """Mixture of Gaussians ``sum_k w_k N(mu_k, diag(s_k^2))``.

    Adding noise of level sigma keeps it a mixture, with variances ``s_k^2 + sigma^2``, so its
    density, score and posterior mean are all closed form:

        D(x, sigma) = sum_k r_k(x) [mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k)],
        r_k(x) = w_k N(x; mu_k, s_k^2 + sigma^2) / sum_j w_j N(x; mu_j, s_j^2 + sigma^2).

    Args:
        means: ``(K, d)`` component means.
        stds: a float, ``(K,)`` isotropic or ``(K, d)`` diagonal standard deviations (> 0).
        weights: ``(K,)`` non-negative weights (normalised here); uniform when omitted.
    """

    def __init__(self, means, stds, weights=None, dtype=torch.float64):
        means = torch.as_tensor(means, dtype=dtype)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        K, d = means.shape
        stds = torch.as_tensor(stds, dtype=dtype)
        if stds.ndim == 0:
            stds = stds.expand(K)
        if stds.ndim == 1:
            stds = stds[:, None].expand(K, d)
        if stds.shape != (K, d):
            raise ValueError(f"stds must be a float, (K,) or (K, d) = ({K}, {d}); got {tuple(stds.shape)}")
        if torch.any(stds <= 0):
            raise ValueError("stds must be positive (use EmpiricalDenoiser for point masses)")
        weights = torch.ones(K, dtype=dtype) if weights is None else torch.as_tensor(weights, dtype=dtype)
        if weights.shape != (K,) or torch.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"weights must be {K} non-negative numbers with a positive sum")
        self.means, self.stds, self.weights = means, stds.contiguous(), weights / weights.sum()
        self.dim = d

    # ------------------------------------------------------------------ constructors
    @classmethod
    def ring(cls, k: int = 8, radius: float = 2.0, std: float = 0.1, dim: int = 2):
        """``k`` equal components on a circle in the first two coordinates of ``dim`` dimensions."""
        ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
        means = torch.zeros(k, dim, dtype=torch.float64)
        means[:, 0], means[:, 1] = radius * torch.cos(ang), radius * torch.sin(ang)
        return cls(means, std)

    @classmethod
    def random(cls, k: int, dim: int, spread: float = 2.0, std_range=(0.1, 0.5), generator=None):
        """A random mixture: means ``spread * N(0, I)``, isotropic stds uniform in ``std_range``."""
        means = spread * torch.randn(k, dim, generator=generator, dtype=torch.float64)
        lo, hi = std_range
        stds = lo + (hi - lo) * torch.rand(k, generator=generator, dtype=torch.float64)
        weights = 0.5 + torch.rand(k, generator=generator, dtype=torch.float64)
        return cls(means, stds, weights)

    # ------------------------------------------------------------------ exact quantities
    def _check(self, x):
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}); got {tuple(x.shape)}")

    def _component_terms(self, x, sigma):
        """Per-component log-density terms and variances of the noised mixture."""
        self._check(x)
        xd = x.to(self.means.dtype)
        var = self.stds[None] ** 2 + _as_batch_sigma(sigma, xd) ** 2  # (B, K, d)
        diff = xd[:, None, :] - self.means[None]
        log_norm = -0.5 * ((diff**2) / var + torch.log(2 * math.pi * var)).sum(-1)
        return torch.log(self.weights)[None] + log_norm, var, diff

    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """Exact ``log p_sigma(x)`` of the mixture convolved with ``N(0, sigma^2 I)``, nats, ``(batch,)``."""
        logits, _, _ = self._component_terms(x, sigma)
        return torch.logsumexp(logits, dim=1).to(x.dtype)

    def denoise(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        """``E[x_0 | x_0 + sigma eps = x]``; ``sigma`` a float or ``(batch,)`` tensor."""
        logits, var, diff = self._component_terms(x, sigma)
        r = torch.softmax(logits, dim=1)[..., None]  # (B, K, 1)
        post = self.means[None] + (self.stds[None] ** 2 / var) * diff
        return (r * post).sum(1).to(x.dtype)

    __call__ = denoise

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """``grad_x log p_sigma(x)``, exact (defined at sigma = 0 too)."""
        logits, var, diff = self._component_terms(x, sigma)
        r = torch.softmax(logits, dim=1)[..., None]
        return (r * (-diff / var)).sum(1).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
        """``n`` exact samples, ``(n, d)``."""
        k = torch.multinomial(self.weights.float(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[k] + self.stds[k] * z).to(dtype)

    @property
    def mean(self) -> torch.Tensor:
        """Mean of the mixture, ``(d,)``."""
        return (self.weights[:, None] * self.means).sum(0)

    def covariance(self, sigma: float = 0.0) -> torch.Tensor:
        """Exact covariance of the noised mixture, ``(d, d)``."""
        mu = self.mean
        second = sum(w * (torch.diag(s**2 + sigma**2) + torch.outer(m, m))
                     for w, m, s in zip(self.weights, self.means, self.stds))
        return second - torch.outer(mu, mu)


class EmpiricalDenoiser:
    """The optimal denoiser of a finite training set (a mixture of point masses).

    ``D(x, sigma) = sum_i softmax_i(-|x - x_i|^2 / 2 sigma^2) x_i``: what a network that fits its
    training data perfectly converges to.  Sampling with it reproduces (memorises) the data set.
    Works on any tensor shape ``(N, ...)``; computed in chunks to bound memory.
    """

    def __init__(self, data: torch.Tensor, chunk: int = 256):
        data = torch.as_tensor(data)
        if data.ndim < 2 or data.shape[0] < 1:
            raise ValueError("data must have shape (N, ...) with N >= 1")
        self.shape = tuple(data.shape[1:])
        self.data = data.reshape(data.shape[0], -1).to(torch.float64)
        self.sq_norms = (self.data**2).sum(1)
        self.chunk = chunk

    def _logits(self, x, sigma):
        xf = x.reshape(x.shape[0], -1).to(torch.float64)
        if xf.shape[1] != self.data.shape[1]:
            raise ValueError(f"x must have shape (batch, *{self.shape}); got {tuple(x.shape)}")
        d2 = (xf**2).sum(1, keepdim=True) - 2 * xf @ self.data.T + self.sq_norms[None]
        s2 = expand_sigma(sigma, xf).reshape(-1, 1) ** 2
        # sigma = 0 is the limit: all weight on the nearest training point
        return torch.where(s2 > 0, -d2 / (2 * s2.clamp_min(1e-300)), -d2 * 1e300)

    def denoise(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        """``E[x_0 | x]`` under the data set, ``(batch, ...)`` like ``x``; ``sigma`` a float or ``(batch,)``."""
        sig = expand_sigma(sigma, x).reshape(-1)
        out = []
        for i in range(0, x.shape[0], self.chunk):
            w = torch.softmax(self._logits(x[i:i + self.chunk], sig[i:i + self.chunk]), dim=1)
            out.append(w @ self.data)
        return torch.cat(out).reshape(x.shape).to(x.dtype)

    __call__ = denoise

    def log_prob(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """``log p_sigma(x)`` of the data set convolved with ``N(0, sigma^2 I)`` (sigma > 0)."""
        n, d = self.data.shape
        s2 = expand_sigma(sigma, x).reshape(-1).to(torch.float64) ** 2
        lp = torch.logsumexp(self._logits(x, sigma), dim=1)
        return (lp - math.log(n) - 0.5 * d * torch.log(2 * math.pi * s2)).to(x.dtype)
