"""Exact denoisers for distributions whose noised density is known in closed form.

They are the ground truth every sampler and likelihood routine is tested against: with the
exact ``D(x, sigma) = E[x_0 | x_0 + sigma eps = x]`` any remaining error is the sampler's own.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .denoiser import expand_sigma
from .torus import TWO_PI, _wrapped_normal, wrap


def _as_batch_sigma(sigma, x):
    return expand_sigma(sigma, x).reshape(-1, 1, 1)  # (B, 1, 1) against (B, K, d)


class GaussianMixture:
    """Mixture of Gaussians ``sum_k w_k N(mu_k, Sigma_k)``, ``Sigma_k = diag(s_k^2)`` or a full covariance.

    Adding noise of level sigma keeps it a mixture, with covariances ``Sigma_k + sigma^2 I``, so its
    density, score and posterior mean are all closed form:

        D(x, sigma) = sum_k r_k(x) [mu_k + Sigma_k (Sigma_k + sigma^2 I)^-1 (x - mu_k)],
        r_k(x) = w_k N(x; mu_k, Sigma_k + sigma^2 I) / sum_j w_j N(x; mu_j, Sigma_j + sigma^2 I).

    With ``Sigma_k = Q_k diag(l_k) Q_k^T`` (eigendecomposition, done once) every term is diagonal in
    ``z = Q_k^T (x - mu_k)``: ``Sigma_k + sigma^2 I = Q_k diag(l_k + sigma^2) Q_k^T`` for any sigma, so a
    batch of different sigmas costs no factorisation.  Diagonal mixtures take ``Q_k = I`` directly.

    Args:
        means: ``(K, d)`` component means.
        stds: a float, ``(K,)`` isotropic or ``(K, d)`` diagonal standard deviations (> 0).
        weights: ``(K,)`` non-negative weights (normalised here); uniform when omitted.
        covariances: instead of ``stds``, ``(K, d, d)`` symmetric positive semi-definite covariances
            (e.g. from :meth:`posterior`).  A singular one (a noiseless observation) is fine for every
            ``sigma > 0``; ``log_prob`` at ``sigma = 0`` is then ``-inf`` off its support.
            ``stds`` then holds the marginal standard deviations ``sqrt(diag(Sigma_k))``.
    """

    def __init__(self, means, stds=None, weights=None, dtype=torch.float64, covariances=None):
        means = torch.as_tensor(means, dtype=dtype)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        K, d = means.shape
        self.covariances = self._evals = self._evecs = None
        if covariances is not None:
            if stds is not None:
                raise ValueError("give either stds (diagonal components) or covariances (full), not both")
            cov = torch.as_tensor(covariances, dtype=dtype)
            if cov.shape != (K, d, d):
                raise ValueError(f"covariances must have shape (K, d, d) = ({K}, {d}, {d}); got {tuple(cov.shape)}")
            if not torch.allclose(cov, cov.transpose(1, 2), atol=1e-8 * float(cov.abs().max().clamp_min(1))):
                raise ValueError("covariances must be symmetric")
            cov = 0.5 * (cov + cov.transpose(1, 2))
            evals, evecs = torch.linalg.eigh(cov)
            scale = evals.abs().amax(1, keepdim=True).clamp_min(1e-300)
            if torch.any(evals < -1e-8 * scale):
                raise ValueError("covariances must be positive semi-definite")
            self.covariances, self._evals, self._evecs = cov, evals.clamp_min(0.0), evecs
            stds = torch.sqrt(torch.diagonal(cov, dim1=1, dim2=2).clamp_min(0.0))
        elif stds is None:
            raise ValueError("give stds (a float, (K,) or (K, d)) or covariances (K, d, d)")
        stds = torch.as_tensor(stds, dtype=dtype)
        if stds.ndim == 0:
            stds = stds.expand(K)
        if stds.ndim == 1:
            stds = stds[:, None].expand(K, d)
        if stds.shape != (K, d):
            raise ValueError(f"stds must be a float, (K,) or (K, d) = ({K}, {d}); got {tuple(stds.shape)}")
        if self.covariances is None and torch.any(stds <= 0):
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
        """Per-component log-density terms, eigenvalues ``l + sigma^2`` and rotated offsets ``z``.

        Returns ``(logits (B, K), var (B, K, d), z (B, K, d), l (1, K, d))``, all in the eigenbasis
        of each component (the identity basis for diagonal mixtures).
        """
        self._check(x)
        xd = x.to(self.means.dtype)
        diff = xd[:, None, :] - self.means[None]
        if self._evecs is None:
            lam, z = self.stds[None] ** 2, diff
        else:
            lam, z = self._evals[None], torch.einsum("kde,bkd->bke", self._evecs, diff)
        var = lam + _as_batch_sigma(sigma, xd) ** 2  # (B, K, d)
        safe = var.clamp_min(1e-300)
        quad = torch.where(var > 0, z**2 / safe, torch.where(z == 0, 0.0, math.inf))
        log_norm = -0.5 * (quad + torch.log(2 * math.pi * safe)).sum(-1)
        return torch.log(self.weights)[None] + log_norm, var, z, lam

    def _from_eigenbasis(self, v):
        """``(B, K, d)`` component-wise vectors in the eigenbases back to the data basis."""
        return v if self._evecs is None else torch.einsum("kde,bke->bkd", self._evecs, v)

    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """Exact ``log p_sigma(x)`` of the mixture convolved with ``N(0, sigma^2 I)``, nats, ``(batch,)``."""
        logits = self._component_terms(x, sigma)[0]
        return torch.logsumexp(logits, dim=1).to(x.dtype)

    def denoise(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        """``E[x_0 | x_0 + sigma eps = x]``; ``sigma`` a float or ``(batch,)`` tensor."""
        logits, var, z, lam = self._component_terms(x, sigma)
        r = torch.softmax(logits, dim=1)[..., None]  # (B, K, 1)
        gain = torch.where(var > 0, lam / var.clamp_min(1e-300), torch.ones_like(var))
        post = self.means[None] + self._from_eigenbasis(gain * z)
        return (r * post).sum(1).to(x.dtype)

    __call__ = denoise

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """``grad_x log p_sigma(x)``, exact (defined at sigma = 0 too)."""
        logits, var, z, _ = self._component_terms(x, sigma)
        r = torch.softmax(logits, dim=1)[..., None]
        return (r * self._from_eigenbasis(-z / var)).sum(1).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
        """``n`` exact samples, ``(n, d)``."""
        k = torch.multinomial(self.weights.float(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        if self._evecs is None:
            return (self.means[k] + self.stds[k] * z).to(dtype)
        colored = torch.einsum("nde,ne->nd", self._evecs[k], self._evals[k].sqrt() * z)
        return (self.means[k] + colored).to(dtype)

    @property
    def mean(self) -> torch.Tensor:
        """Mean of the mixture, ``(d,)``."""
        return (self.weights[:, None] * self.means).sum(0)

    def covariance(self, sigma: float = 0.0) -> torch.Tensor:
        """Exact covariance of the noised mixture, ``(d, d)``."""
        mu = self.mean
        covs = self.component_covariances()
        eye = torch.eye(self.dim, dtype=mu.dtype)
        second = sum(w * (c + sigma**2 * eye + torch.outer(m, m)) for w, m, c in zip(self.weights, self.means, covs))
        return second - torch.outer(mu, mu)

    def component_covariances(self) -> torch.Tensor:
        """The ``(K, d, d)`` covariances of the components (diagonal ones expanded)."""
        if self.covariances is not None:
            return self.covariances
        return torch.diag_embed(self.stds**2)

    def posterior(self, A, y, noise_std=0.0) -> "GaussianMixture":
        """The exact posterior ``p(x | y)`` under ``y = A x + N(0, diag(noise_std^2))``: a Gaussian mixture.

        Per component (Gaussian conditioning, Kalman update), with ``S_k = A Sigma_k A^T + Sigma_y``:

            G_k = Sigma_k A^T S_k^-1,   mu'_k = mu_k + G_k (y - A mu_k),   Sigma'_k = Sigma_k - G_k A Sigma_k,
            w'_k  proportional to  w_k N(y; A mu_k, S_k)      (the evidence of component k).

        Rows of ``A`` that are zero carry no information about ``x`` and are dropped (a mask that keeps
        the image shape leaves such rows).  ``noise_std = 0`` (noiseless) needs ``A Sigma_k A^T``
        invertible on the remaining rows; the posterior covariances are then singular.

        Args:
            A: ``(m, d)`` matrix, or an operator with a ``matrix()`` method (``unnoise.inverse``).
            y: ``(m,)`` one observation (or shaped like the operator's output for one example).
            noise_std: a float or ``(m,)`` per-measurement standard deviations (>= 0).
        Returns:
            a :class:`GaussianMixture` with full covariances.
        """
        if hasattr(A, "matrix"):
            A = A.matrix((self.dim,))
        A = torch.as_tensor(A, dtype=self.means.dtype)
        if A.ndim != 2 or A.shape[1] != self.dim:
            raise ValueError(f"A must be an (m, {self.dim}) matrix, got shape {tuple(A.shape)}")
        m = A.shape[0]
        y = torch.as_tensor(y, dtype=self.means.dtype).reshape(-1)
        if y.shape != (m,):
            raise ValueError(f"y must hold one observation of {m} values, got shape {tuple(y.shape)}")
        noise = torch.as_tensor(noise_std, dtype=self.means.dtype).reshape(-1)
        noise = noise.expand(m) if noise.numel() == 1 else noise
        if noise.shape != (m,) or torch.any(noise < 0) or not torch.all(torch.isfinite(noise)):
            raise ValueError(f"noise_std must be a float or {m} finite values >= 0")
        rows = A.abs().sum(1) > 0
        A, y, noise = A[rows], y[rows], noise[rows]
        covs = self.component_covariances()
        AS = A @ covs  # (K, m, d)
        S = AS @ A.T + torch.diag(noise**2)  # (K, m, m)
        chol, info = torch.linalg.cholesky_ex(S)
        if torch.any(info != 0):
            raise ValueError("A Sigma A^T + diag(noise^2) is singular: with noise_std = 0 the rows of A must be "
                             "linearly independent; add a small noise_std")
        resid = y[None] - self.means @ A.T  # (K, m)
        sol = torch.cholesky_solve(resid[..., None], chol)[..., 0]  # S^-1 (y - A mu)
        means = self.means + (AS.transpose(1, 2) @ sol[..., None])[..., 0]
        cov = covs - AS.transpose(1, 2) @ torch.cholesky_solve(AS, chol)
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
        log_ev = -0.5 * ((resid * sol).sum(1) + logdet + A.shape[0] * math.log(2 * math.pi))
        logw = torch.log(self.weights) + log_ev
        return GaussianMixture(means, weights=torch.softmax(logw, 0), covariances=0.5 * (cov + cov.transpose(1, 2)),
                               dtype=self.means.dtype)


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


def bessel_ratios(kappa: torch.Tensor, n_max: int) -> torch.Tensor:
    """``I_n(kappa) / I_0(kappa)`` for ``n = 0..n_max``: shape ``(*kappa.shape, n_max + 1)``, float64.

    The ratios ``r_n = I_n / I_{n-1}`` satisfy ``r_n = kappa / (2 n + kappa r_{n+1})`` (the three-term
    recurrence ``I_{n-1} - I_{n+1} = (2 n / kappa) I_n``); run downwards from ``r = 0`` at
    ``N_0 = sqrt(n_max^2 + 100 kappa) + 60``, then ``I_n / I_0 = r_1 ... r_n``.  The recurrence picks the
    minimal solution: an error in ``r_{n+1}`` is multiplied by ``r_n^2 ~ exp(-2 asinh(n / kappa))``, so the
    start's error has shrunk by ``exp(-0.88 (N_0^2 - n^2) / kappa) < e^-80`` at every ``n <= n_max``.  All factors
    lie in ``[0, 1)``: no overflow for any kappa, and kappa = 0 gives ``(1, 0, 0, ...)``.
    """
    kappa = torch.as_tensor(kappa, dtype=torch.float64)
    kmax = float(kappa.max()) if kappa.numel() else 0.0
    start = math.ceil(math.sqrt(n_max**2 + 100 * kmax)) + 60
    r = torch.zeros_like(kappa)
    kept = []
    for n in range(start, 0, -1):
        r = kappa / (2 * n + kappa * r)
        if n <= n_max:
            kept.append(r)
    ones = torch.ones_like(kappa)[..., None]
    if not kept:
        return ones
    return torch.cat([ones, torch.cumprod(torch.stack(kept[::-1], -1), -1)], -1)


def _von_mises_angles(kappa: torch.Tensor, generator=None) -> torch.Tensor:
    """One von Mises(0, kappa) draw per entry of ``kappa`` (Best & Fisher 1979 rejection; wrapped Cauchy envelope).

    ``tau = 1 + sqrt(1 + 4 kappa^2)``, ``rho = (tau - sqrt(2 tau)) / (2 kappa)``, ``r = (1 + rho^2) / (2 rho)``;
    with ``z = cos(pi u1)``, ``f = (1 + r z) / (r + z)``, ``c = kappa (r - f)``, accept when
    ``c (2 - c) > u2`` or ``log(c / u2) + 1 >= c``; the angle is ``sign(u3 - 1/2) arccos f``.  ``rho`` is
    computed without cancellation for small kappa; kappa = 0 is the uniform distribution.
    """
    kappa = kappa.reshape(-1).to(torch.float64)
    root = torch.sqrt(1 + 4 * kappa**2)
    tau = 1 + root
    rho = 2 * kappa * tau / ((root + 1) * (tau + torch.sqrt(2 * tau)))  # = (tau - sqrt(2 tau)) / (2 kappa)
    r = (1 + rho**2) / (2 * rho.clamp_min(1e-300))
    out = torch.empty_like(kappa)
    todo = torch.arange(len(kappa))
    while len(todo):
        u = torch.rand(len(todo), 3, generator=generator, dtype=torch.float64)
        k, rr = kappa[todo], r[todo]
        z = torch.cos(math.pi * u[:, 0])
        f = ((1 + rr * z) / (rr + z)).clamp(-1.0, 1.0)
        c = k * (rr - f)
        ok = (c * (2 - c) > u[:, 1]) | (torch.log(c / u[:, 1]) + 1 - c >= 0) | (k == 0)
        ang = torch.where(k == 0, math.pi * (2 * u[:, 0] - 1), torch.sign(u[:, 2] - 0.5) * torch.acos(f))
        out[todo[ok]] = ang[ok]
        todo = todo[~ok]
    return out


class VonMisesMixture:
    """Mixture of products of von Mises densities on the torus ``[-pi, pi)^d``, and its exact heat-kernel noising.

    Component k has density ``prod_j exp(kappa_kj cos(theta_j - mu_kj)) / (2 pi I_0(kappa_kj))``.  Adding
    wrapped Gaussian noise of std sigma to every angle (the heat kernel on the torus) keeps it a mixture of
    products whose factors have the Fourier series

        f(theta) = (1 / 2 pi) [1 + 2 sum_{n >= 1} (I_n(kappa) / I_0(kappa)) e^{-n^2 sigma^2 / 2} cos n (theta - mu)],

    summed until its terms are below 1e-18 (:func:`bessel_ratios` for the coefficients, stable for any kappa).
    Far in the tail of a concentrated component the series cancels and loses relative accuracy; where that
    could move the mixture's density by more than 1e-10 (relative), the factor is instead the exact
    convolution computed in log space: Gauss-Hermite over the noise ``f = E_z[VM(theta - sigma z)]`` when
    ``kappa sigma <= 2``, else the trapezoidal rule over the von Mises angle ``f = int VM(t) p_sigma(theta - t) dt``
    with ``12 sqrt(kappa + 1 / sigma^2) + 32`` nodes.
    At sigma = 0 the closed form is used.

    The score is 2 pi-periodic in x; :meth:`denoise` is the lifted denoiser ``x + sigma^2 score(x)`` for any
    real lift ``x`` of the angles, so every sampler runs unchanged in ``R^d`` (see :mod:`unnoise.torus`).

    Args:
        means: ``(K, d)`` component modes (any real numbers; used modulo 2 pi).
        concentrations: a float, ``(K,)`` or ``(K, d)`` kappas (>= 0; 0 is uniform on that angle).
        weights: ``(K,)`` positive weights (normalised here); uniform when omitted.
    """

    def __init__(self, means, concentrations, weights=None):
        dtype = torch.float64
        means = torch.as_tensor(means, dtype=dtype)
        if means.ndim != 2 or not bool(torch.all(torch.isfinite(means))):
            raise ValueError(f"means must be finite with shape (K, d), got shape {tuple(means.shape)}")
        K, d = means.shape
        kappa = torch.as_tensor(concentrations, dtype=dtype)
        if kappa.ndim == 0:
            kappa = kappa.expand(K)
        if kappa.ndim == 1 and kappa.shape == (K,):
            kappa = kappa[:, None].expand(K, d)
        if kappa.shape != (K, d):
            raise ValueError(f"concentrations must be a float, (K,) or (K, d) = ({K}, {d}); got {tuple(kappa.shape)}")
        if not bool(torch.all(torch.isfinite(kappa) & (kappa >= 0))):
            raise ValueError("concentrations must be finite and >= 0 (kappa = 0 is uniform)")
        weights = torch.ones(K, dtype=dtype) if weights is None else torch.as_tensor(weights, dtype=dtype)
        if weights.shape != (K,) or not bool(torch.all(torch.isfinite(weights) & (weights > 0))):
            raise ValueError(f"weights must be {K} positive finite numbers, got {weights.tolist()}")
        self.means, self.concentrations = wrap(means), kappa.contiguous()
        self.weights = weights / weights.sum()
        self.dim = d
        kmax = float(kappa.max())
        ratios = bessel_ratios(self.concentrations, math.ceil(math.sqrt(90 * kmax)) + 40)
        big = (ratios.reshape(-1, ratios.shape[-1]) >= 1e-18).any(0).nonzero()
        self._ratios = ratios[..., :int(big.max()) + 1]  # (K, d, N + 1), the last ones >= 1e-18
        self._log_norm = math.log(TWO_PI) + torch.log(torch.special.i0e(self.concentrations))  # log(2pi I0) - kappa

    # ------------------------------------------------------------------ exact quantities
    def _check(self, x):
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}); got {tuple(x.shape)}")
        if not bool(torch.all(torch.isfinite(x))):
            raise ValueError("x contains NaN or inf; angles must be finite numbers (radians)")

    def _sigma(self, sigma, x):
        sig = expand_sigma(sigma, x.to(torch.float64)).reshape(-1)
        if not bool(torch.all(torch.isfinite(sig) & (sig >= 0))):
            raise ValueError("sigma must be finite and >= 0")
        return sig

    def _factors(self, delta, sig):
        """Per-angle factors from the Fourier series, ``(B, K, d)`` each: ``(log f, score, log f upper and lower
        bounds, log of the relative error bound)``.

        The series' rounding error is below ``err = 1e-15 N peak`` (``N`` terms, ``peak = 1 + 2 sum c_n``), so
        ``f`` lies in ``[S - err, S + err] / 2 pi``; where ``S <= err`` the value is unknown and the score 0
        until :meth:`_chunk_terms` replaces them.  At sigma = 0 the closed form (exact everywhere).
        """
        s = sig[:, None, None, None]
        c_all = self._ratios[..., 1:]
        n = torch.arange(1, c_all.shape[-1] + 1, dtype=torch.float64)
        keep = (c_all.reshape(-1, len(n)) * torch.exp(-0.5 * (n * float(sig.min())) ** 2) >= 1e-18).any(0)
        N = int(keep.nonzero().max()) + 1 if bool(keep.any()) else 0
        n = n[:N]
        c = c_all[None, ..., :N] * torch.exp(-0.5 * (n * s) ** 2)  # (B, K, d, N)
        nd = n * delta[..., None]
        S = 1 + 2 * (c * torch.cos(nd)).sum(-1)
        dS = -2 * (n * c * torch.sin(nd)).sum(-1)
        err = 1e-15 * max(N, 1) * (1 + 2 * c.sum(-1))
        known = S > err
        S_known = torch.where(known, S, 1.0)
        logf = torch.log(torch.where(known, S, err)) - math.log(TWO_PI)
        score = torch.where(known, dS / S_known, 0.0)
        hi = torch.log(S.clamp_min(0) + err) - math.log(TWO_PI)
        lo = torch.where(known, torch.log(torch.where(known, S - err, 1.0)) - math.log(TWO_PI), -math.inf)
        log_relerr = torch.where(known, torch.log(err) - torch.log(S_known), math.inf)
        zero = (sig == 0)[:, None, None]
        if bool(zero.any()):
            kap = self.concentrations[None]
            exact = kap * (torch.cos(delta) - 1) - self._log_norm[None]
            logf, hi, lo = (torch.where(zero, exact, v) for v in (logf, hi, lo))
            score = torch.where(zero, -kap * torch.sin(delta), score)
            log_relerr = torch.where(zero, -math.inf, log_relerr)
        return logf, score, hi, lo, log_relerr

    def _exact_tail(self, delta, kappa, sig, log_norm):
        """Log-space quadrature of the noised factor for flat ``(T,)`` entries: ``(log f, score)``."""
        logf, score = torch.empty_like(delta), torch.empty_like(delta)
        gh = kappa * sig <= 2
        if bool(gh.any()):  # f = E_z[VM(theta - sigma z)], 40-node Gauss-Hermite
            nodes, w = (torch.as_tensor(a, dtype=torch.float64) for a in np.polynomial.hermite.hermgauss(40))
            u = delta[gh, None] - math.sqrt(2) * sig[gh, None] * nodes
            lw = torch.log(w) + kappa[gh, None] * (torch.cos(u) - 1)
            logf[gh] = torch.logsumexp(lw, -1) - 0.5 * math.log(math.pi) - log_norm[gh]
            score[gh] = -(torch.softmax(lw, -1) * kappa[gh, None] * torch.sin(u)).sum(-1)
        idx = (~gh).nonzero().reshape(-1)
        if len(idx):  # f = int VM(t) p_sigma(theta - t) dt, trapezoidal rule on the circle
            M = int(math.ceil(12 * float(torch.sqrt(kappa[idx] + 1 / sig[idx] ** 2).max()))) + 32
            t = -math.pi + TWO_PI / M * torch.arange(M, dtype=torch.float64)
            for part in idx.split(max(1, 2**21 // M)):
                lk, sk = _wrapped_normal(delta[part, None] - t, sig[part, None])
                lw = kappa[part, None] * (torch.cos(t) - 1) + lk
                logf[part] = math.log(TWO_PI / M) + torch.logsumexp(lw, -1) - log_norm[part]
                score[part] = (torch.softmax(lw, -1) * sk).sum(-1)
        return logf, score

    def _terms(self, x, sigma):
        """Component logits ``(B, K)`` and per-angle scores ``(B, K, d)`` of the noised mixture, in batch chunks
        of at most 2^22 series terms."""
        self._check(x)
        sig = self._sigma(sigma, x)
        xd = x.to(torch.float64)
        rows = max(1, 2**22 // self._ratios.numel())
        if len(xd) == 0:
            return xd.new_zeros(0, len(self.weights)), xd.new_zeros(0, len(self.weights), self.dim)
        parts = [self._chunk_terms(xd[i:i + rows], sig[i:i + rows]) for i in range(0, len(xd), rows)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _chunk_terms(self, x, sig):
        """:meth:`_terms` for one chunk.

        A factor is recomputed by :meth:`_exact_tail` where its relative error bound, times the largest share
        its component can have in the mixture, exceeds 1e-10 (far tails of concentrated components that matter).
        """
        delta = wrap(x[:, None, :] - self.means[None])
        logf, score, hi, lo, log_relerr = self._factors(delta, sig)
        logw = torch.log(self.weights)
        upper, lower = logw + hi.sum(-1), logw + lo.sum(-1)
        share = upper - lower.amax(1, keepdim=True)  # log of the bound on each component's share (+inf: unknown)
        fill = log_relerr + share[..., None] > math.log(1e-10)
        if bool(fill.any()):
            b, k, j = fill.nonzero(as_tuple=True)
            lf, sc = self._exact_tail(delta[b, k, j], self.concentrations[k, j], sig[b], self._log_norm[k, j])
            logf, score = logf.index_put((b, k, j), lf), score.index_put((b, k, j), sc)
        return logw + logf.sum(-1), score

    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """Exact ``log p_sigma(x)`` on the torus (nats per example, ``(batch,)``); 2 pi-periodic in x."""
        return torch.logsumexp(self._terms(x, sigma)[0], 1).to(x.dtype)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """``grad_x log p_sigma(x)``, ``(batch, d)``; ``sigma`` a float or ``(batch,)`` tensor."""
        logits, score = self._terms(x, sigma)
        return (torch.softmax(logits, 1)[..., None] * score).sum(1).to(x.dtype)

    def denoise(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        """The lifted denoiser ``x + sigma^2 score(x, sigma)`` (Tweedie on the periodic density); any real ``x``."""
        sig = self._sigma(sigma, x)[:, None]
        return (x.to(torch.float64) + sig**2 * self.score(x, sigma).to(torch.float64)).to(x.dtype)

    __call__ = denoise

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
        """``n`` exact samples in ``[-pi, pi)^d``, ``(n, d)`` (components by multinomial, angles by Best-Fisher)."""
        k = torch.multinomial(self.weights.float(), n, replacement=True, generator=generator)
        ang = _von_mises_angles(self.concentrations[k], generator).reshape(n, self.dim)
        return wrap(wrap(self.means[k] + ang).to(dtype))  # again in dtype: pi - tiny may round up to pi

    def circular_moment(self, k: int, sigma: float = 0.0) -> torch.Tensor:
        """``E[exp(i k theta_j)]`` per angle, complex ``(d,)``: ``sum_c w_c (I_|k|/I_0)(kappa_cj) e^{i k mu_cj}``.

        At noise level sigma each moment is multiplied by ``exp(-k^2 sigma^2 / 2)``.
        """
        if not isinstance(k, int) or isinstance(k, bool):
            raise ValueError(f"k must be an integer, got {k!r}")
        ratio = bessel_ratios(self.concentrations, abs(k))[..., -1] * math.exp(-0.5 * k**2 * float(sigma) ** 2)
        phase = torch.polar(torch.ones_like(self.means), k * self.means)
        return (self.weights[:, None] * ratio * phase).sum(0)


# ----------------------------------------------------------------------------- categorical ground truths
def _check_probs(p: torch.Tensor, what: str) -> torch.Tensor:
    p = torch.as_tensor(p, dtype=torch.float64)
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError(f"{what} must be finite and non-negative")
    s = p.sum(-1, keepdim=True)
    if (s <= 0).any():
        raise ValueError(f"{what}: every distribution needs a positive total")
    return p / s


class ProductCategorical:
    """Independent categorical tokens: ``p(x) = prod_l p_l(x_l)`` with ``probs`` ``(*dims, K)``.

    Under a categorical forward process (:class:`unnoise.processes.CategoricalProcess`) the tokens stay
    independent, and the exact denoiser is, token by token,

        p(x_0 = c | x_t) = p_l(c) q(x_t | c) / sum_c' p_l(c') q(x_t | c'),   q(x_t | c) = Q-bar_sigma[c, x_t],

    returned as log-probabilities ``(B, *dims, K)`` by :meth:`denoiser`.
    """

    def __init__(self, probs):
        self.probs = _check_probs(probs, "probs")
        self.dims, self.num_classes = tuple(self.probs.shape[:-1]), self.probs.shape[-1]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` per example, nats, ``(B,)``."""
        logp = torch.log(self.probs).expand(x.shape[0], *self.probs.shape)
        return logp.gather(-1, x.long().unsqueeze(-1)).reshape(x.shape[0], -1).sum(1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact samples ``(n, *dims)`` (long)."""
        flat = self.probs.reshape(-1, self.num_classes)
        draws = torch.multinomial(flat, int(n), replacement=True, generator=generator)  # (L, n)
        return draws.T.reshape(int(n), *self.dims)

    def denoiser(self, process):
        """The exact ``D(x_t, sigma, cond) = log p(x_0 | x_t)`` under ``process``."""
        def d(x_t, sigma, cond=None):
            return torch.log_softmax(torch.log(self.probs) + process.log_likelihood(x_t, sigma), -1)
        return d


class MarkovChain:
    """A stationary-free Markov chain of ``length`` tokens: ``p(x) = initial(x_1) prod_l transition[x_{l-1}, x_l]``.

    The tokens of a noisy sequence are conditionally independent given the clean ones, so ``x_t`` is a hidden
    Markov model's observation sequence with emissions ``q(x_t,l | x_0,l = c) = Q-bar_sigma[c, x_t,l]``; the exact
    denoiser ``E[onehot(x_0) | x_t]`` is that model's posterior marginals, computed by forward-backward in log
    space (:meth:`denoiser`).  :meth:`conditionals` gives ``p(x_l | x_{-l})`` of the clean chain.
    """

    def __init__(self, initial, transition, length: int):
        self.initial = _check_probs(initial, "initial")
        self.transition = _check_probs(transition, "transition")
        k = self.initial.numel()
        if self.transition.shape != (k, k):
            raise ValueError(f"transition must be ({k}, {k}) for {k} classes, got {tuple(self.transition.shape)}")
        if int(length) < 1:
            raise ValueError(f"length must be at least 1, got {length}")
        self.length, self.num_classes = int(length), k

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` per example, nats, ``(B,)``."""
        x = x.long()
        out = torch.log(self.initial)[x[:, 0]]
        logt = torch.log(self.transition)
        for i in range(1, self.length):
            out = out + logt[x[:, i - 1], x[:, i]]
        return out

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact samples ``(n, length)`` (long)."""
        x = torch.empty(int(n), self.length, dtype=torch.long)
        x[:, 0] = torch.multinomial(self.initial, int(n), replacement=True, generator=generator)
        for i in range(1, self.length):
            x[:, i] = torch.multinomial(self.transition[x[:, i - 1]], 1, generator=generator).squeeze(1)
        return x

    def posterior_marginals(self, log_emission: torch.Tensor) -> torch.Tensor:
        """``log p(x_l = c | observations)`` ``(B, L, K)`` for per-token log emissions ``(B, L, K)``."""
        logt, b = torch.log(self.transition), log_emission.shape[0]
        fwd = [torch.log(self.initial).expand(b, -1) + log_emission[:, 0]]
        for i in range(1, self.length):
            fwd.append(torch.logsumexp(fwd[-1].unsqueeze(-1) + logt, 1) + log_emission[:, i])
        bwd = [torch.zeros_like(fwd[0])]
        for i in range(self.length - 1, 0, -1):
            bwd.append(torch.logsumexp(logt + (log_emission[:, i] + bwd[-1]).unsqueeze(1), -1))
        post = torch.stack(fwd, 1) + torch.stack(bwd[::-1], 1)
        return torch.log_softmax(post, -1)

    def denoiser(self, process):
        """The exact ``D(x_t, sigma, cond) = log E[onehot(x_0) | x_t]`` under ``process`` (forward-backward)."""
        def d(x_t, sigma, cond=None):
            return self.posterior_marginals(process.log_likelihood(x_t, sigma))
        return d
