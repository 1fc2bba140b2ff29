"""Posterior sampling for inverse problems ``y = A(x) + noise`` with any diffusion prior.

Inpainting, super-resolution, deblurring, colourisation and compressed sensing are one problem:
sample ``x ~ p(x | y)`` where the prior ``p(x)`` is a diffusion model (a denoiser ``D(x, sigma)``
trained without ever seeing ``y``) and ``y = A(x) + n``, ``n ~ N(0, diag(noise_std^2))``.

**Bayes' rule for scores.**  In the scale-free variable ``x = x_0 + sigma eps``,
``log p_sigma(x | y) = log p_sigma(x) + log p_sigma(y | x) - log p(y)``, so

    grad log p_sigma(x | y) = grad log p_sigma(x) + grad log p_sigma(y | x),

and by Tweedie (``D = x + sigma^2 grad log p_sigma``) the posterior denoiser is

    D_y(x, sigma) = E[x_0 | x, y] = D(x, sigma) + sigma^2 grad_x log p_sigma(y | x).

The likelihood ``p_sigma(y | x) = int N(y; A x_0, Sigma_y) p(x_0 | x) dx_0`` is intractable for a
learned prior; every method here approximates ``p(x_0 | x)`` differently, which is its bias:

======== ========================================================= ===================================
method   ``p(x_0 | x)`` replaced by                                 exact when
======== ========================================================= ===================================
``dps``  a point mass at ``D`` (Chung et al. 2023), step ``step``   never (a heuristic step size)
``pgdm`` ``N(D, r^2 I)``, ``r^2 = v sigma^2 / (v + sigma^2)``        prior ``N(mu, v I)``
         (Song et al. 2023, pseudo-inverse guidance)
``mmps`` ``N(D, sigma^2 dD/dx)`` (Tweedie covariance; Rozet et al.  any Gaussian prior
         2024), conjugate-gradient solves
``ddnm`` as ``pgdm`` but without the Jacobian of ``D``: the ridge-      prior ``N(mu, v I)``; noiseless:
         regularised range/null-space projection (Wang et al. 2023)  ``A D_y = y`` exactly
``smc``  nothing: particles weighted by the exact likelihood of      as particles and steps grow
         the observed spectral coordinates (SMCDiff / FPS family)
======== ========================================================= ===================================

``pgdm``, ``mmps`` and ``ddnm`` are *guided denoisers* (:class:`PGDM`, :class:`MMPS`, :class:`DDNM`), so
they run with every sampler of :mod:`unnoise.samplers`; ``dps`` modifies a DDPM/DDIM step (its step
size is defined per step, so it is a sampler, :func:`dps`); ``smc`` is a particle sampler (:func:`smc`).
All are reached through :func:`sample`; :func:`available` lists them.

Operators (:class:`Mask`, :class:`Blur`, :class:`Downsample`, :class:`Grayscale`, :class:`Matrix`,
:meth:`Operator.from_callable`) act on batches ``(n, *x_shape)`` and give ``transpose`` (the adjoint),
``gram_solve`` (``(A A^T + damping)^-1``), ``pinv`` and, for linear ones, a dense ``matrix`` / ``svd``
view; closed forms where they exist, autograd and conjugate gradients otherwise.
"""
from __future__ import annotations

import inspect
import math
import os
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .samplers import check_sigmas, ddim_step, noise_like, sampler_options
from .samplers import sample as _run_sampler

# ============================================================================================ operators


def _bview(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``(n,)`` tensor viewed to broadcast against ``(n, ...)``."""
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1)


def conjugate_gradient(matvec: Callable, b: torch.Tensor, iterations: int, tol: float = 1e-10) -> torch.Tensor:
    """Solve ``M z = b`` for a symmetric positive (semi-)definite ``M`` given as ``matvec``, per example.

    Batched over the first dimension (each example its own system); starts at ``z = 0`` and stops
    after ``iterations`` steps or when every residual is below ``tol`` times its right-hand side.  In
    exact arithmetic CG is exact after ``m`` iterations for an ``m``-dimensional system.  For a
    singular ``M`` it returns the solution within the directions where ``M`` is not numerically zero.
    """
    z = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = _dot(r, r)
    stop = tol**2 * rr
    tiny = torch.finfo(b.dtype).tiny
    curvature_tol = 1e-7 if b.dtype == torch.float32 else 1e-14
    for _ in range(iterations):
        if bool(torch.all(rr <= stop)):
            break
        Mp = matvec(p)
        pMp = _dot(p, Mp)
        # a direction along which M is numerically zero (a singular system, e.g. a noiseless
        # measurement where the prior has no spread) gets no step instead of a division by ~0
        curved = pMp > curvature_tol * _dot(p, p)
        alpha = torch.where(curved, rr / torch.where(curved, pMp, torch.ones_like(pMp)), torch.zeros_like(rr))
        z = z + _bview(alpha, p) * p
        r = r - _bview(alpha, p) * Mp
        rr_new = _dot(r, r)
        p = r + _bview(torch.where(rr > tiny, rr_new / rr.clamp_min(tiny), torch.zeros_like(rr)), p) * p
        rr = rr_new
    return z


class Operator:
    """A forward operator ``A`` on batches ``(n, *x_shape) -> (n, *y_shape)``.

    Subclasses implement :meth:`forward` and, where a closed form exists, :meth:`transpose`,
    :meth:`gram_solve` and :meth:`pinv`.  The defaults are generic: ``transpose`` is the autograd
    vector-Jacobian product (for a linear ``A`` the VJP ``v -> (dA/dx)^T v`` *is* ``A^T``, at any
    point), ``gram_solve`` runs conjugate gradients on ``A A^T + damping`` and ``pinv(y)`` is
    ``A^T (A A^T)^+ y`` (the minimum-norm solution of ``A x = y``).

    Attributes:
        linear: whether ``A`` is linear (``pgdm``, ``mmps``, ``ddnm`` and ``smc`` need it).
        x_shape: one example's shape, when known (set by the constructor or the first call).
    """

    linear = True
    x_shape: tuple | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``A(x)`` for a batch ``(n, *x_shape)``."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def _shape(self, x_shape=None) -> tuple:
        shape = x_shape if x_shape is not None else self.x_shape
        if shape is None:
            raise ValueError(f"{type(self).__name__} does not know the shape of x yet; pass x_shape "
                             "(one example's shape) or call forward once")
        return tuple(shape)

    def transpose(self, y: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """``A^T y`` (the adjoint: ``<A u, y> = <u, A^T y>``); for a nonlinear ``A`` the adjoint of its
        Jacobian at ``x``, which must then be given."""
        if x is None:
            if not self.linear:
                raise ValueError("the transpose of a nonlinear operator depends on the point; pass x")
            x = torch.zeros((y.shape[0], *self._shape()), dtype=y.dtype, device=y.device)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.forward(xg), xg, y)
        return g

    def gram_solve(self, b: torch.Tensor, damping=0.0, iterations: int | None = None) -> torch.Tensor:
        """``(A A^T + diag(damping))^-1 b`` per example (``damping`` a float or broadcastable to ``b``).

        With ``damping = 0`` on a rank-deficient ``A`` it is the least-squares (pseudo-inverse) solution
        for ``b`` in the range of ``A``.  Generic: conjugate gradients, ``iterations`` defaulting to the
        number of measurements (at most 200).
        """
        damping = torch.as_tensor(damping, dtype=b.dtype, device=b.device)
        steps = iterations if iterations is not None else min(b[0].numel(), 200)
        return conjugate_gradient(lambda v: self.forward(self.transpose(v)) + damping * v, b, steps)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """The minimum-norm ``x`` with ``A x = y`` (least squares off the range): ``A^T (A A^T)^+ y``."""
        return self.transpose(self.gram_solve(y, 0.0))

    def matrix(self, x_shape=None) -> torch.Tensor:
        """The dense ``(m, d)`` matrix of a linear operator on flattened examples (``d`` columns, by
        applying ``A`` to the ``d`` unit vectors; float64)."""
        if not self.linear:
            raise ValueError("a nonlinear operator has no matrix; linearise it first")
        shape = self._shape(x_shape)
        d = math.prod(shape)
        if d > 16384:
            raise ValueError(f"a dense matrix of an operator on {d} values is too large; this needs d <= 16384")
        eye = torch.eye(d, dtype=torch.float64).reshape(d, *shape)
        cols = torch.cat([self.forward(eye[i:i + 1024]).reshape(min(1024, d - i), -1) for i in range(0, d, 1024)])
        return cols.T.contiguous()

    @staticmethod
    def from_callable(fn: Callable, x_shape=None, linear: bool = True) -> "Operator":
        """Any differentiable batched callable ``fn(x) -> y`` as an operator (transpose by autograd).

        Say ``linear=False`` for a nonlinear ``fn``: only ``dps`` accepts it then.
        """
        return _CallableOperator(fn, x_shape, linear)


class _CallableOperator(Operator):
    def __init__(self, fn, x_shape, linear):
        if not callable(fn):
            raise ValueError("from_callable needs a callable fn(x) -> y")
        self.fn, self.linear = fn, bool(linear)
        self.x_shape = tuple(x_shape) if x_shape is not None else None

    def forward(self, x):
        if self.x_shape is None:
            self.x_shape = tuple(x.shape[1:])
        return self.fn(x)


class Matrix(Operator):
    """A dense matrix ``A`` ``(m, d)`` acting on flattened examples: ``y = A x.reshape(n, d)``, ``(n, m)``.

    Args:
        A: ``(m, d)`` matrix.
        x_shape: one example's shape (default ``(d,)``; its size must be ``d``).
    """

    def __init__(self, A, x_shape=None):
        A = torch.as_tensor(A)
        if A.ndim != 2 or not torch.is_floating_point(A):
            raise ValueError(f"Matrix needs a floating-point (m, d) matrix, got shape {tuple(A.shape)}")
        self.A = A
        self.x_shape = tuple(x_shape) if x_shape is not None else (A.shape[1],)
        if math.prod(self.x_shape) != A.shape[1]:
            raise ValueError(f"x_shape {self.x_shape} has {math.prod(self.x_shape)} values, the matrix "
                             f"{A.shape[1]} columns")
        self._pinv = None

    def forward(self, x):
        return x.reshape(x.shape[0], -1) @ self.A.to(x).T

    def transpose(self, y, x=None):
        return (y.reshape(y.shape[0], -1) @ self.A.to(y)).reshape(y.shape[0], *self.x_shape)

    def gram_solve(self, b, damping=0.0, iterations=None):
        A = self.A.to(torch.float64)
        G = A @ A.T
        lam = torch.as_tensor(damping, dtype=torch.float64, device=b.device).expand(b.shape).reshape(b.shape[0], -1)
        M = G[None] + torch.diag_embed(lam)
        bb = b.reshape(b.shape[0], -1).double()
        if bool(torch.all(lam > 0)):
            out = torch.linalg.solve(M, bb[..., None])[..., 0]
        else:
            out = (torch.linalg.pinv(M, hermitian=True) @ bb[..., None])[..., 0]
        return out.to(b.dtype).reshape(b.shape)

    def pinv(self, y):
        if self._pinv is None:
            self._pinv = torch.linalg.pinv(self.A.double())
        return (y.reshape(y.shape[0], -1) @ self._pinv.to(y).T).reshape(y.shape[0], *self.x_shape)

    def matrix(self, x_shape=None):
        return self.A.double()


class Mask(Operator):
    """Keep the entries where ``mask == 1``: ``y = mask * x`` (same shape as ``x``, zeros elsewhere).

    ``A = diag(mask)`` is its own transpose and pseudo-inverse, and ``A A^T = diag(mask)``.  The zero
    rows carry no information (noise there is irrelevant).

    Args:
        mask: 1 = observed, 0 = unknown; bool or 0/1, one example's shape (or broadcastable to it), or
            one mask per example ``(n, *x_shape)`` for a batch of ``n`` (then give ``x_shape``).
        x_shape: one example's shape (default: the mask's).
    """

    def __init__(self, mask, x_shape=None):
        mask = torch.as_tensor(mask)
        mask = mask.to(torch.float32) if not torch.is_floating_point(mask) else mask
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError("mask must hold only 0 (unknown) and 1 (observed); threshold a soft mask first")
        self.mask = mask
        self.x_shape = tuple(x_shape) if x_shape is not None else tuple(mask.shape)

    def _m(self, x):
        return self.mask.to(device=x.device, dtype=x.dtype)

    def forward(self, x):
        return x * self._m(x)

    def transpose(self, y, x=None):
        return y * self._m(y)

    def gram_solve(self, b, damping=0.0, iterations=None):
        m = self._m(b)
        lam = torch.as_tensor(damping, dtype=b.dtype, device=b.device)
        denom = m + lam
        return torch.where(denom > 0, b / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(b))

    def pinv(self, y):
        return y * self._m(y)


class Downsample(Operator):
    """Average pooling by ``factor`` over the last two dimensions: ``(..., H, W) -> (..., H/f, W/f)``.

    ``A^T`` spreads each value over its ``f x f`` block divided by ``f^2``, so ``A A^T = I / f^2`` and
    ``A^+ = f^2 A^T`` (nearest-neighbour upsampling).
    """

    def __init__(self, factor: int, x_shape=None):
        if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor!r}")
        self.factor = factor
        self.x_shape = tuple(x_shape) if x_shape is not None else None

    def forward(self, x):
        f = self.factor
        if x.ndim < 3 or x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"Downsample({f}) needs (n, ..., H, W) with H and W divisible by {f}; "
                             f"got {tuple(x.shape)}")
        self.x_shape = self.x_shape or tuple(x.shape[1:])
        H, W = x.shape[-2:]
        return x.reshape(*x.shape[:-2], H // f, f, W // f, f).mean((-3, -1))

    def transpose(self, y, x=None):
        f = self.factor
        return y.repeat_interleave(f, -2).repeat_interleave(f, -1) / f**2

    def gram_solve(self, b, damping=0.0, iterations=None):
        return b / (1.0 / self.factor**2 + torch.as_tensor(damping, dtype=b.dtype, device=b.device))

    def pinv(self, y):
        return y.repeat_interleave(self.factor, -2).repeat_interleave(self.factor, -1)


class Grayscale(Operator):
    """``y = sum_c w_c x_c`` over the channel dimension 1: ``(n, C, ...) -> (n, 1, ...)``.

    ``A^T y = w y`` per channel, ``A A^T = |w|^2 I`` and ``A^+ y = w y / |w|^2``.

    Args:
        weights: one per channel (default ITU-R BT.601 luma ``0.299, 0.587, 0.114``).
    """

    def __init__(self, weights=(0.299, 0.587, 0.114), x_shape=None):
        self.weights = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        self.x_shape = tuple(x_shape) if x_shape is not None else None

    def _w(self, t):
        return self.weights.to(device=t.device, dtype=t.dtype).reshape(1, -1, *([1] * (t.ndim - 2)))

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] != len(self.weights):
            raise ValueError(f"Grayscale needs (n, {len(self.weights)}, ...) input, got {tuple(x.shape)}")
        self.x_shape = self.x_shape or tuple(x.shape[1:])
        return (x * self._w(x)).sum(1, keepdim=True)

    def transpose(self, y, x=None):
        return y * self._w(y)

    def gram_solve(self, b, damping=0.0, iterations=None):
        return b / (float((self.weights**2).sum()) + torch.as_tensor(damping, dtype=b.dtype, device=b.device))

    def pinv(self, y):
        return y * self._w(y) / float((self.weights**2).sum())


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Normalised 2-D Gaussian kernel of std ``sigma`` (pixels), ``(2r+1, 2r+1)``, ``r = ceil(3 sigma)``."""
    if not (isinstance(sigma, (int, float)) and sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"blur sigma must be a positive number, got {sigma!r}")
    r = int(math.ceil(3 * sigma)) if radius is None else int(radius)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-(t[:, None] ** 2 + t[None] ** 2) / (2 * sigma**2))
    return k / k.sum()


class Blur(Operator):
    """Circular (periodic) convolution of the last two dimensions with a kernel, by FFT.

    ``A = F^-1 diag(K) F`` with ``K`` the DFT of the kernel wrapped around the origin (its centre
    ``(kh // 2, kw // 2)`` at pixel ``(0, 0)``; a kernel larger than the image wraps onto itself).  So
    ``A^T = F^-1 diag(conj K) F``, ``A A^T = F^-1 diag(|K|^2) F`` and the pseudo-inverse divides by
    ``K`` where ``|K|^2 > 1e-10 max |K|^2`` (frequencies the blur destroys are set to 0).  The output
    has the input's shape.

    Args:
        sigma: Gaussian kernel std in pixels (:func:`gaussian_kernel`), or
        kernel: a given ``(kh, kw)`` kernel.
    """

    def __init__(self, sigma: float | None = None, kernel=None, x_shape=None):
        if (sigma is None) == (kernel is None):
            raise ValueError("give Blur either sigma (Gaussian) or kernel (a (kh, kw) tensor)")
        if kernel is None:
            self.kernel = gaussian_kernel(float(sigma))
        else:
            kernel = torch.as_tensor(kernel, dtype=torch.float64)
            if kernel.ndim != 2:
                raise ValueError(f"kernel must be 2-D (kh, kw), got shape {tuple(kernel.shape)}")
            self.kernel = kernel
        self.x_shape = tuple(x_shape) if x_shape is not None else None
        self._cache = {}

    def transfer(self, H: int, W: int, device=None) -> torch.Tensor:
        """The DFT ``K`` of the wrapped kernel on an ``H x W`` grid (complex128)."""
        key = (H, W, str(device))
        if key not in self._cache:
            kh, kw = self.kernel.shape
            rows = (torch.arange(kh) - kh // 2) % H
            cols = (torch.arange(kw) - kw // 2) % W
            pad = torch.zeros(H, W, dtype=torch.float64)
            pad.index_put_((rows[:, None].expand(kh, kw).reshape(-1), cols[None].expand(kh, kw).reshape(-1)),
                           self.kernel.reshape(-1), accumulate=True)
            self._cache[key] = torch.fft.fft2(pad).to(device)
        return self._cache[key]

    def _apply(self, x, fn):
        K = self.transfer(x.shape[-2], x.shape[-1], x.device)
        out = torch.fft.ifft2(torch.fft.fft2(x.to(torch.float64)) * fn(K)).real
        return out.to(x.dtype)

    def forward(self, x):
        if x.ndim < 3:
            raise ValueError(f"Blur needs (n, ..., H, W) input, got {tuple(x.shape)}")
        self.x_shape = self.x_shape or tuple(x.shape[1:])
        return self._apply(x, lambda K: K)

    def transpose(self, y, x=None):
        return self._apply(y, torch.conj)

    def _inverse_gain(self, K, damping):
        K2 = K.abs() ** 2
        if damping > 0:
            return 1.0 / (K2 + damping)
        return torch.where(K2 > 1e-10 * K2.max(), 1.0 / K2.clamp_min(1e-300), torch.zeros_like(K2))

    def gram_solve(self, b, damping=0.0, iterations=None):
        damping = torch.as_tensor(damping)
        if damping.numel() > 1 and not bool(torch.all(damping == damping.reshape(-1)[0])):
            return super().gram_solve(b, damping.to(b), iterations)  # per-pixel noise: no diagonal form
        lam = float(damping.reshape(-1)[0])
        return self._apply(b, lambda K: self._inverse_gain(K, lam).to(K.dtype))

    def pinv(self, y):
        return self._apply(y, lambda K: (torch.conj(K) * self._inverse_gain(K, 0.0)).to(K.dtype))


def parse_operator(spec: str, shape) -> Operator:
    """An operator from a command-line spec, for examples of ``shape`` ``(C, H, W)``.

    * ``mask:FILE``: an image (white >= 128 = unknown, to fill; black = observed, as ``unnoise inpaint``)
      or a ``.npy`` array (1 = observed), resized to ``H x W`` by nearest neighbour;
    * ``box:x0,y0,x1,y1``: everything observed except this rectangle (pixels, end exclusive);
    * ``blur:sigma=S`` (or ``blur:S``): Gaussian blur of std ``S`` pixels (:class:`Blur`, circular);
    * ``downsample:F``: average pooling by ``F`` (:class:`Downsample`);
    * ``gray``: luma of an RGB image (:class:`Grayscale`).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"parse_operator needs an image shape (C, H, W), got {shape}")
    C, H, W = shape
    kind, _, arg = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind == "mask":
        if not arg:
            raise ValueError("mask needs a file: mask:FILE (white = unknown) or box:x0,y0,x1,y1")
        if not os.path.exists(arg):
            raise ValueError(f"mask file {arg!r} does not exist")
        if arg.endswith(".npy"):
            keep = torch.as_tensor(np.load(arg, allow_pickle=False)).to(torch.float32)
            keep = torch.nn.functional.interpolate(keep.reshape(1, 1, *keep.shape[-2:]), size=(H, W),
                                                   mode="nearest")[0]
            keep = (keep > 0.5).to(torch.float32)
        else:
            img = Image.open(arg).convert("L").resize((W, H), Image.NEAREST)
            keep = torch.from_numpy((np.asarray(img) < 128).astype(np.float32))[None]
        return Mask(keep.expand(C, H, W).clone(), x_shape=shape)
    if kind == "box":
        try:
            x0, y0, x1, y1 = (int(v) for v in arg.split(","))
        except ValueError:
            raise ValueError(f"box must be four integers box:x0,y0,x1,y1, got {spec!r}") from None
        if not (0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H):
            raise ValueError(f"box {arg} is outside the {W}x{H} image or empty")
        keep = torch.ones(C, H, W)
        keep[:, y0:y1, x0:x1] = 0
        return Mask(keep, x_shape=shape)
    if kind == "blur":
        value = arg.split("=", 1)[1] if arg.startswith("sigma=") else arg
        try:
            sigma = float(value)
        except ValueError:
            raise ValueError(f"blur needs a number: blur:sigma=S, got {spec!r}") from None
        return Blur(sigma=sigma, x_shape=shape)
    if kind == "downsample":
        try:
            f = int(arg)
        except ValueError:
            raise ValueError(f"downsample needs an integer factor: downsample:F, got {spec!r}") from None
        if f < 1 or H % f or W % f:
            raise ValueError(f"downsample factor {f} must divide the image size {H}x{W}")
        return Downsample(f, x_shape=shape)
    if kind in ("gray", "grey", "grayscale"):
        if C != 3:
            raise ValueError(f"gray needs RGB images (3 channels), the model has {C}")
        return Grayscale(x_shape=shape)
    raise ValueError(f"unknown operator {spec!r}; use mask:FILE, box:x0,y0,x1,y1, blur:sigma=S, downsample:F or gray")


# ============================================================================================ methods


def _noise_var(noise_std, y: torch.Tensor) -> torch.Tensor:
    """``noise_std`` (a float, one example's y shape, or ``y``'s shape) squared and broadcast to ``y``."""
    std = torch.as_tensor(noise_std, dtype=y.dtype, device=y.device)
    if not torch.all(torch.isfinite(std)) or torch.any(std < 0):
        raise ValueError("noise_std must be finite and >= 0 (a float, or one value per measurement)")
    try:
        return (std**2).expand(y.shape)
    except RuntimeError:
        raise ValueError(f"noise_std of shape {tuple(std.shape)} does not match the measurements "
                         f"{tuple(y.shape[1:])} (one value per measurement, or a float)") from None


def _call(denoiser, x, sigma, cond):
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    s = s.expand(x.shape[0]) if s.ndim == 0 else s
    return denoiser(x, s) if cond is None else denoiser(x, s, cond)


def _prior_cov(sigma: torch.Tensor, data_var: float) -> torch.Tensor:
    """``r^2 = v sigma^2 / (v + sigma^2)``: ``Cov[x_0 | x]`` per coordinate for a ``N(mu, v I)`` prior."""
    return data_var * sigma**2 / (data_var + sigma**2)


class _Guided:
    """Shared state of the guided posterior denoisers; ``vjps`` counts backward passes through ``D``."""

    needs_linear = True

    def __init__(self, denoiser, y, operator, noise_std=0.0):
        if not isinstance(operator, Operator):
            raise ValueError("operator must be an unnoise.inverse.Operator (Mask, Blur, Downsample, Grayscale, "
                             "Matrix or Operator.from_callable(fn))")
        if self.needs_linear and not operator.linear:
            raise ValueError(f"{type(self).__name__} needs a linear operator; use method='dps' for a nonlinear one")
        self.denoiser, self.y, self.operator = denoiser, y, operator
        self.noise_var = _noise_var(noise_std, y)
        self.vjps = 0

    def _rows(self, x):
        """``y`` and its noise variance for a batch of ``x`` (``y`` may be one row for all)."""
        if self.y.shape[0] == x.shape[0]:
            return self.y.to(x), self.noise_var.to(x)
        if self.y.shape[0] == 1:
            shape = (x.shape[0], *self.y.shape[1:])
            return self.y.to(x).expand(shape), self.noise_var.to(x).expand(shape)
        raise ValueError(f"y has {self.y.shape[0]} rows for a batch of {x.shape[0]}")


class _IsotropicPrior(_Guided):
    """A guided denoiser that approximates ``Cov[x_0 | x]`` by that of an isotropic Gaussian prior of
    variance ``data_var`` per entry."""

    def __init__(self, denoiser, y, operator, noise_std=0.0, data_var: float = 1.0):
        super().__init__(denoiser, y, operator, noise_std)
        if not (isinstance(data_var, (int, float)) and data_var > 0):
            raise ValueError(f"data_var must be a positive number, got {data_var!r}")
        self.data_var = float(data_var)


class PGDM(_IsotropicPrior):
    """Pseudo-inverse guided denoiser (PiGDM, Song et al. 2023): ``D_y = D + sigma^2 J^T A^T v``.

    Replaces ``p(x_0 | x)`` by ``N(D, r^2 I)`` with ``r^2 = v sigma^2 / (v + sigma^2)`` (the exact
    posterior variance for a ``N(mu, v I)`` prior; ``v = 1`` is PiGDM's VP choice ``r^2 = 1 - alpha_bar``).
    Then ``p(y | x) ~ N(y; A D, r^2 A A^T + Sigma_y)`` and, holding that covariance fixed,

        grad_x log p(y | x) = J^T A^T v,   v = (r^2 A A^T + Sigma_y)^-1 (y - A D),   J = dD/dx,

    so ``D_y = D + sigma^2 J^T A^T v`` (one vector-Jacobian product; ``(r^2 A A^T + Sigma_y)^-1`` by the
    operator's :meth:`~Operator.gram_solve`).  Exact for an isotropic Gaussian prior; biased otherwise
    (``r^2 I`` is not ``Cov[x_0 | x]``, which for a mixture depends on ``x``).
    """

    def __call__(self, x, sigma, cond=None):
        y, nv = self._rows(x)
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        r2 = _bview(_prior_cov(s, self.data_var), y)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            den = _call(self.denoiser, xg, s, cond)
            y_hat = self.operator.forward(den)
            v = self.operator.gram_solve((y - y_hat).detach(), nv / r2) / r2
            (g,) = torch.autograd.grad(y_hat, xg, v)
        self.vjps += 1
        return den.detach() + _bview(s**2, x) * g


class MMPS(_Guided):
    """Moment-matching posterior denoiser (MMPS, Rozet et al. 2024): ``D_y = D + sigma^2 J^T A^T v``.

    Replaces ``p(x_0 | x)`` by the Gaussian with its exact first two moments, mean ``D`` and Tweedie's
    covariance ``Cov[x_0 | x] = sigma^2 J`` (``J = dD/dx``, symmetric), so
    ``p(y | x) ~ N(y; A D, Sigma_y + sigma^2 A J A^T)`` and

        v = (Sigma_y + sigma^2 A J A^T)^-1 (y - A D),      D_y = D + sigma^2 J^T A^T v.

    The system is solved by ``iterations`` conjugate-gradient steps, each one vector-Jacobian product
    through ``D`` (``J u`` as ``J^T u``); one more gives ``J^T A^T v``.  Exact for any Gaussian prior
    (then ``p(x_0 | x)`` is Gaussian with that covariance); for a mixture the Gaussian replaces a
    multimodal ``p(x_0 | x)`` and the gradient ignores ``dCov/dx``: biased where components overlap.
    """

    def __init__(self, denoiser, y, operator, noise_std=0.0, iterations: int = 5):
        super().__init__(denoiser, y, operator, noise_std)
        if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
        self.iterations = iterations

    def __call__(self, x, sigma, cond=None):
        y, nv = self._rows(x)
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        A = self.operator
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            den = _call(self.denoiser, xg, s, cond)

            def cov_y(u):  # (Sigma_y + sigma^2 A J A^T) u
                (Ju,) = torch.autograd.grad(den, xg, A.transpose(u), retain_graph=True)
                self.vjps += 1
                return nv * u + A.forward(_bview(s**2, Ju) * Ju)

            y_hat = A.forward(den)
            v = conjugate_gradient(cov_y, (y - y_hat).detach(), self.iterations)
            (g,) = torch.autograd.grad(y_hat, xg, v)
        self.vjps += 1
        return den.detach() + _bview(s**2, x) * g


class DDNM(_IsotropicPrior):
    """Range/null-space denoiser (DDNM, Wang et al. 2023), ridge-regularised for noise; no Jacobian.

    Noiseless: ``D_y = A^+ y + (I - A^+ A) D = D + A^+ (y - A D)``: the range of ``A^T`` is set by the
    measurement, the null space kept from the prior, so ``A D_y = y`` exactly.  With noise the projection
    would fit the noise; here it is replaced by the posterior mean of ``x_0`` under ``N(D, r^2 I)``,

        D_y = D + A^T (A A^T + Sigma_y / r^2)^-1 (y - A D),   r^2 = v sigma^2 / (v + sigma^2),

    which is the noiseless projection when ``Sigma_y = 0`` and PiGDM with ``J`` replaced by
    ``(r^2 / sigma^2) I`` (the Jacobian of the ``N(mu, v I)`` prior's denoiser): no backward pass at all.
    (DDNM+ instead scales the step per singular value; this keeps it in closed form for every
    operator with a ``gram_solve``.)  Exact for an isotropic Gaussian prior.
    """

    def __call__(self, x, sigma, cond=None):
        y, nv = self._rows(x)
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        den = _call(self.denoiser, x, s, cond)
        r2 = _bview(_prior_cov(s, self.data_var), y)
        A = self.operator
        if bool(torch.all(nv == 0)):
            return den + A.pinv(y - A.forward(den))
        return den + A.transpose(A.gram_solve(y - A.forward(den), nv / r2))


_METHODS: dict[str, Callable] = {}


def register_method(name: str):
    """Decorator adding a posterior-sampling method to :func:`sample`'s registry."""
    def deco(fn):
        _METHODS[name] = fn
        return fn
    return deco


def available() -> list[str]:
    """The method names that :func:`sample` accepts."""
    return sorted(_METHODS)


def _guided_runner(cls, own):
    def run(denoiser, x, sigmas, y, operator, noise_std, generator, cond, sampler="ddpm", **options):
        allowed = set(own) | set(sampler_options(sampler))
        unknown = set(options) - allowed
        if unknown:
            raise ValueError(f"method {cls.__name__.lower()!r} with sampler {sampler!r} has no option(s) "
                             f"{', '.join(sorted(unknown))}; it accepts: {', '.join(sorted(allowed | {'sampler'}))}")
        mine = {k: options.pop(k) for k in list(options) if k in own}
        guided = cls(denoiser, y, operator, noise_std, **mine)
        out, nfe = _run_sampler(guided, x, sigmas, sampler=sampler, generator=generator, cond=cond,
                                return_nfe=True, **options)
        return out, {"nfe": nfe, "vjps": guided.vjps}
    return run


register_method("pgdm")(_guided_runner(PGDM, ("data_var",)))
register_method("mmps")(_guided_runner(MMPS, ("iterations",)))
register_method("ddnm")(_guided_runner(DDNM, ("data_var",)))


@register_method("dps")
def dps(denoiser, x, sigmas, y, operator, noise_std=0.0, generator=None, cond=None, *, step: float = 1.0,
        eta: float = 1.0):
    """Diffusion posterior sampling (Chung et al. 2023): a DDPM step followed by ``- zeta grad ||y - A(D)||``.

    DPS approximates ``p(y | x) ~ N(y; A(D(x)), Sigma_y)`` (``p(x_0 | x)`` a point mass at ``D``) and,
    since ``1/sigma_y^2`` makes that gradient blow up, replaces its scale by the step size
    ``zeta_i = zeta' / ||y - A(D)||`` *per sample*: the step is ``step * grad_x ||y - A(D(x))||`` (``step``
    is the paper's ``2 zeta'``; the norm is each sample's own, so samples in a batch stay independent).
    It is applied to the VP variable ``x_t = x / sqrt(1 + sigma^2)`` as in the paper; in the scale-free
    variable the update from ``sigma`` to ``sigma'`` is therefore

        x' = DDIM_eta(x, D, sigma, sigma') - step sqrt((1 + sigma^2)(1 + sigma'^2)) grad_x ||y - A(D(x))||,

    with ``eta = 1`` DDPM (the paper's sampler).  Works with any differentiable (also nonlinear)
    operator; biased for every step size (the step is a heuristic, not a likelihood).
    """
    if not (isinstance(step, (int, float)) and step >= 0):
        raise ValueError(f"step must be a number >= 0, got {step!r}")
    if not (isinstance(eta, (int, float)) and 0 <= eta <= 1):
        raise ValueError(f"eta must be in [0, 1], got {eta!r}")
    y = y.to(x)
    nfe = vjps = 0
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            den = _call(denoiser, xg, s, cond)
            norm = (y - operator.forward(den)).flatten(1).norm(dim=1)
            (g,) = torch.autograd.grad(norm.sum(), xg)
        nfe, vjps = nfe + 1, vjps + 1
        noise = noise_like(x, generator) if eta > 0 and s_next > 0 else None
        x = ddim_step(x.detach(), den.detach(), s, s_next, eta, noise)
        if s_next > 0:
            x = x - step * math.sqrt((1 + s**2) * (1 + s_next**2)) * g
    return x, {"nfe": nfe, "vjps": vjps}


def _spectral_view(operator: Operator, x_shape, noise_var: torch.Tensor, y: torch.Tensor):
    """Whitened SVD of a linear operator: coordinates ``c = V^T x`` observed as ``ybar = c + tau n``.

    With ``Sigma_y^-1/2 A = U S V^T`` (scalar noise: the SVD of ``A`` and ``tau = sigma_y / s``),
    ``U^T Sigma_y^-1/2 y = S V^T x + n'`` with ``n' ~ N(0, I)``, so ``ybar = (U^T Sigma_y^-1/2 y) / S`` observes
    each right-singular coordinate with its own noise std ``tau_j = 1 / s_j``.  Zero singular values
    (unobserved directions) are dropped.  Returns ``V`` ``(d, r)``, ``tau`` ``(r,)``, ``ybar`` ``(n, r)``.
    """
    A = operator.matrix(x_shape).to(torch.float64)
    yf = y.reshape(y.shape[0], -1).double()
    nv = noise_var.reshape(noise_var.shape[0], -1).double()
    if not bool(torch.all(nv == nv[:1])):
        raise ValueError("smc needs the same noise_std for every sample (a float or one value per measurement)")
    std = nv[0].sqrt()
    keep = A.abs().sum(1) > 0
    A, yf, std = A[keep], yf[:, keep], std[keep]
    if bool(torch.all(std == std[0])):
        U, S, Vh = torch.linalg.svd(A, full_matrices=False)
        scale = std[0]
        ybar_full = yf @ U
    else:
        if bool(torch.any(std == 0)):
            raise ValueError("smc with per-measurement noise needs every noise_std > 0 (or one float for all)")
        U, S, Vh = torch.linalg.svd(A / std[:, None], full_matrices=False)
        scale = torch.tensor(1.0, dtype=torch.float64)
        ybar_full = (yf / std) @ U
    r = int((S > 1e-10 * S.max()).sum()) if S.numel() else 0
    S, V = S[:r], Vh[:r].T
    return V, scale * (1.0 / S), ybar_full[:, :r] / S


class _Dense:
    """The observed coordinates ``c = V^T x`` of the whitened SVD (:func:`_spectral_view`), as a basis of x."""

    def __init__(self, V):
        self.V = V

    def coords(self, x):
        return x @ self.V

    def set(self, x, c, target):
        """``x`` with its coordinates ``c`` moved to ``target``."""
        return x + (target - c) @ self.V.T


class _Entries:
    """A mask observes entries of x: coordinate ``j`` is the entry ``index[j]`` (no SVD, any size; set
    entries are exact)."""

    def __init__(self, index):
        self.index = index

    def coords(self, x):
        return x[:, self.index]

    def set(self, x, c, target):
        return x.index_copy(1, self.index, target)


def _observed(operator: Operator, x: torch.Tensor, noise_var: torch.Tensor, y: torch.Tensor):
    """The observed coordinates: ``(basis, tau, ybar)``, ``ybar_j = c_j + tau_j n_j`` with ``c`` the basis'
    coordinates of ``x_0``; ``tau`` ``(r,)``, or ``(n, r)`` when the examples differ (``inf`` where one is
    not observed).  A :class:`Mask` is read entry by entry (one mask per example allowed), any other linear
    operator through the SVD of its dense matrix."""
    n, dev = x.shape[0], x.device
    if not isinstance(operator, Mask):
        V, tau, ybar = _spectral_view(operator, tuple(x.shape[1:]), noise_var, y)
        return _Dense(V.to(dev)), tau.to(dev), ybar.to(dev)
    try:
        seen = torch.broadcast_to(operator.mask.to(dev) > 0, x.shape).reshape(n, -1)
    except RuntimeError:
        raise ValueError(f"the mask of shape {tuple(operator.mask.shape)} does not fit the batch "
                         f"{tuple(x.shape)}") from None
    index = seen.any(0).nonzero()[:, 0]
    seen = seen[:, index]
    std = noise_var.reshape(n, -1)[:, index].double().sqrt()
    tau = torch.where(seen, std, torch.full_like(std, math.inf))
    ybar = y.reshape(n, -1)[:, index].double()
    return _Entries(index), tau[0] if bool(torch.all(tau == tau[:1])) else tau, ybar


def _forward_paths(ybar, tau, sig, randn):
    """The observed coordinates' forward paths, from each ``tau_j`` up: ``path[i]`` holds their values at
    ``sig[i]`` (``ybar_j`` below ``tau_j``)."""
    path, cur, level = [None] * len(sig), ybar.clone(), tau.clone()
    for i in range(len(sig) - 1, -1, -1):
        active = tau <= sig[i]
        inc = torch.where(active, (sig[i] ** 2 - level**2).clamp_min(0.0), torch.zeros_like(level))
        cur = cur + inc.sqrt() * randn(*cur.shape)
        level = torch.where(active, torch.full_like(level, sig[i]), level)
        path[i] = cur
    return path


def _repeat_cond(cond, n: int, k: int):
    """``cond`` with every per-example tensor repeated ``k`` times per example (particles adjacent)."""
    def rep(v):
        return v.repeat_interleave(k, dim=0) if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == n else v
    return {key: rep(v) for key, v in cond.items()} if isinstance(cond, dict) else rep(cond)


def _smc_step(basis, tau, path_next, ybar, xf, den, logw, s: float, s2: float, randn):
    """One DDPM step ``s -> s2`` of every particle, conditioned on the observed coordinates as :func:`smc`
    describes; returns the particles and their updated log-weights ``(n, particles)``."""
    c2 = s2**2 * (s**2 - s2**2) / s**2
    mean = den + (s2**2 / s**2) * (xf - den)
    new = mean + math.sqrt(c2) * randn(*mean.shape) if s2 > 0 else den
    cx, cd, cm, cn = basis.coords(xf), basis.coords(den), basis.coords(mean), basis.coords(new)
    known, cross = tau <= s2, (tau > s2) & (tau < s)
    target = cn.clone()
    if bool(known.any()):
        if c2 > 0:
            logw = logw - 0.5 * torch.where(known, (path_next - cm) ** 2 / c2, 0.0).sum(1).reshape(logw.shape)
        target = torch.where(known, path_next, target)
    if bool(cross.any()):
        t = torch.where(cross, tau, torch.ones_like(tau))
        m_t = cd + (t**2 / s**2) * (cx - cd)
        v_t = t**2 * (s**2 - t**2) / s**2
        logw = logw - 0.5 * torch.where(cross, (ybar - m_t) ** 2 / v_t, 0.0).sum(1).reshape(logw.shape)
        bridge = cd + (s2**2 / t**2) * (ybar - cd)
        if s2 > 0:
            bridge = bridge + torch.sqrt(s2**2 * (t**2 - s2**2) / t**2) * randn(*bridge.shape)
        target = torch.where(cross, bridge, target)
    return basis.set(new, cn, target), logw


def _resample(xf, logw, threshold: float, generator):
    """Multinomial resampling of the examples whose effective sample size is below ``threshold * particles``."""
    n, k, dev = *logw.shape, xf.device
    w = torch.softmax(logw, dim=1)
    low = 1.0 / (w**2).sum(1) < threshold * k
    if not bool(low.any()):
        return xf, logw
    gen_dev = generator.device if generator is not None else dev
    idx = torch.multinomial(w.to(gen_dev).float(), k, replacement=True, generator=generator).to(dev)
    idx = torch.where(low[:, None], idx, torch.arange(k, device=dev)[None])
    xf = xf[(idx + (torch.arange(n, device=dev) * k)[:, None]).reshape(-1)]
    return xf, torch.where(low[:, None], torch.zeros_like(logw), logw)


@register_method("smc")
def smc(denoiser, x, sigmas, y, operator, noise_std=0.0, generator=None, cond=None, *, particles: int = 32,
        ess_threshold: float = 0.5):
    """Sequential Monte Carlo for linear-Gaussian observations: exact as particles and steps grow.

    SMCDiff (Trippe et al. 2023) generalised from masks to any linear operator with Gaussian noise (in
    the spirit of filtering posterior sampling, Dou & Song 2024); inpainting is this method with a
    :class:`Mask` and ``noise_std = 0``.  In the whitened SVD basis (:func:`_spectral_view`; for a mask
    simply its observed entries) the data are ``ybar_j = c_j + tau_j n_j`` with ``c = V^T x_0``:
    coordinate ``j`` is observed *as if* it were the forward-noised coordinate at noise level ``tau_j``
    (``x_0 + tau eps`` has exactly that law, and ``V`` is orthogonal, so the isotropic forward process is
    isotropic in ``c`` too).  Hence ``p(x_0 | y)`` is the law of the clean
    end of the forward process conditioned on ``c_j(sigma = tau_j) = ybar_j``, and above ``tau_j`` the
    coordinate follows one forward path ``ybar_j + sqrt(sigma^2 - tau_j^2) z`` (independent increments,
    so conditioning on the path equals conditioning on ``ybar_j``).

    ``particles`` copies of every example take DDPM steps (the bridge ``x' ~ N(D + sigma'^2/sigma^2 (x - D),
    c^2)``, ``c^2 = sigma'^2 (sigma^2 - sigma'^2) / sigma^2``); per observed coordinate, at a step
    from ``sigma`` to ``sigma'``:

    * ``tau_j <= sigma'``: the path value at ``sigma'`` is known; weight ``N(path; bridge mean, c^2)``,
      set the coordinate to it;
    * ``sigma' < tau_j < sigma``: the step crosses the observation; weight by the bridge's law at
      ``tau_j``, ``N(ybar_j; D + tau^2/sigma^2 (x - D), tau^2 (sigma^2 - tau^2)/sigma^2)``, and draw the
      coordinate at ``sigma'`` from the bridge between ``ybar_j`` at ``tau`` and ``D``;
    * ``tau_j >= sigma``: free (already below its observation).

    Particles are resampled (multinomial) when the effective sample size drops below
    ``ess_threshold * particles``; one particle per example is returned, drawn by its final weight.
    With a noiseless mask the observed entries come back exactly.  The model is the DDPM chain of the
    denoiser, so exactness also needs enough steps.  Cost: ``particles`` denoiser rows per example and step.
    """
    if not isinstance(particles, int) or isinstance(particles, bool) or particles < 1:
        raise ValueError(f"particles must be a positive integer, got {particles!r}")
    if not (isinstance(ess_threshold, (int, float)) and 0 <= ess_threshold <= 1):
        raise ValueError(f"ess_threshold must be in [0, 1], got {ess_threshold!r}")
    if not operator.linear:
        raise ValueError("smc needs a linear operator; use method='dps' for a nonlinear one")
    if float(sigmas[-1]) != 0.0:
        raise ValueError("smc needs a grid ending in sigma = 0")
    B, K, shape, dev, dt = x.shape[0], particles, tuple(x.shape[1:]), x.device, torch.float64
    basis, tau, ybar = _observed(operator, x, _noise_var(noise_std, y), y)
    sig = [float(s) for s in sigmas]
    N = len(sig) - 1

    def randn(*size):
        gdev = generator.device if generator is not None else dev
        return torch.randn(size, generator=generator, dtype=dt, device=gdev).to(dev)

    def rep(t):  # (B, ...) -> (B*K, ...), the particles of one example adjacent
        return t.repeat_interleave(K, dim=0)

    path = _forward_paths(ybar, tau, sig, randn)
    cond = _repeat_cond(cond, B, K)
    tau, ybar = (tau if tau.ndim == 1 else rep(tau)), rep(ybar)
    xf = rep(x.reshape(B, -1).to(dt))
    c = basis.coords(xf)
    xf = basis.set(xf, c, torch.where(tau <= sig[0], rep(path[0]), c))
    logw = torch.zeros(B, K, dtype=dt, device=dev)
    with torch.no_grad():
        for i in range(N):
            den = _call(denoiser, xf.to(x.dtype).reshape(B * K, *shape), sig[i], cond).reshape(B * K, -1).to(dt)
            xf, logw = _smc_step(basis, tau, rep(path[i + 1]), ybar, xf, den, logw, sig[i], sig[i + 1], randn)
            if sig[i + 1] == 0:
                break
            xf, logw = _resample(xf, logw, ess_threshold, generator)
    gen_dev = generator.device if generator is not None else dev
    pick = torch.multinomial(torch.softmax(logw, 1).to(gen_dev).float(), 1, generator=generator).to(dev)
    out = xf[(pick + (torch.arange(B, device=dev) * K)[:, None]).reshape(-1)].to(x.dtype).reshape(B, *shape)
    return out, {"nfe": N, "vjps": 0, "rows": N * B * K}


def sample(denoiser, x: torch.Tensor, sigmas, *, y: torch.Tensor, operator: Operator, noise_std=0.0,
           method: str = "mmps", generator: torch.Generator | None = None, cond=None, return_cost: bool = False,
           **options):
    """Posterior samples of ``x`` given ``y = A(x) + N(0, diag(noise_std^2))`` under the prior ``denoiser``.

    Args:
        denoiser: any ``D(x, sigma[, cond])`` (a trained model, an analytic mixture, a guided one).
        x: ``(n, *x_shape)`` start at ``sigmas[0]``, e.g. ``sigmas[0] * torch.randn(n, *x_shape)``.
        sigmas: decreasing grid ending in 0, e.g. ``schedule.sampling_sigmas(100)``.
        y: ``(n, *y_shape)`` measurements, one row per sample (or one row for all); for a ``Mask`` the
            entries outside the mask are ignored (a full image may be passed, NaN there too).
        operator: an :class:`Operator` (``Mask``, ``Blur``, ``Downsample``, ``Grayscale``, ``Matrix``,
            ``Operator.from_callable``).
        noise_std: observation noise std, a float or one value per measurement (``y_shape`` or ``y``'s shape).
        method: a name from :func:`available`.
        generator: randomness (sampler noise, resampling).
        cond: conditioning passed to the denoiser.
        return_cost: also return ``{"nfe": forward calls of D, "vjps": backward passes through D}``
            (``smc`` adds ``"rows"``: denoiser rows, ``particles`` per example and call).
        **options: the method's options: ``dps``: ``step``, ``eta``; ``pgdm``/``ddnm``: ``data_var``;
            ``mmps``: ``iterations``; ``smc``: ``particles``, ``ess_threshold``; guided methods
            (``pgdm``, ``mmps``, ``ddnm``) also take ``sampler`` (default ``"ddpm"``) and its options.
    Returns:
        ``(n, *x_shape)`` samples at ``sigmas[-1]`` (and the cost dict with ``return_cost``).
    """
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; available: {', '.join(available())}")
    if not isinstance(operator, Operator):
        raise ValueError("operator must be an unnoise.inverse.Operator (Mask, Blur, Downsample, Grayscale, "
                         "Matrix or Operator.from_callable(fn)); parse_operator reads CLI specs")
    x = torch.as_tensor(x)
    if not torch.is_floating_point(x) or x.ndim < 2:
        raise ValueError("x must be a floating-point (n, *x_shape) start at sigmas[0]")
    sigmas = check_sigmas(sigmas).to(device=x.device, dtype=torch.float64)
    y = torch.as_tensor(y, device=x.device).to(x.dtype)
    with torch.no_grad():
        y_shape = tuple(operator.forward(x[:1]).shape[1:])
    if tuple(y.shape[1:]) != y_shape or y.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"y must have shape (n, *{y_shape}) = ({x.shape[0]}, ...) for this operator and x; "
                         f"got {tuple(y.shape)}")
    if y.shape[0] == 1 and x.shape[0] > 1:
        y = y.expand(x.shape[0], *y_shape)
    if isinstance(operator, Mask):  # entries outside the mask are not measurements (a full image may be passed)
        y = torch.where(operator.mask.to(y.device).expand(y.shape) > 0, y, torch.zeros_like(y))
    if not torch.all(torch.isfinite(y)):
        raise ValueError("y contains NaN or inf")
    _noise_var(noise_std, y)  # validate early
    fn = _METHODS[method]
    params = inspect.signature(fn).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        allowed = {p.name for p in params.values() if p.kind == p.KEYWORD_ONLY}
        unknown = set(options) - allowed
        if unknown:
            raise ValueError(f"method {method!r} has no option(s) {', '.join(sorted(unknown))}; "
                             f"it accepts: {', '.join(sorted(allowed)) or 'none'}")
    out, cost = fn(denoiser, x, sigmas, y, operator, noise_std, generator, cond, **options)
    return (out, cost) if return_cost else out


__all__ = ["Blur", "DDNM", "Downsample", "Grayscale", "MMPS", "Mask", "Matrix", "Operator", "PGDM", "available",
           "conjugate_gradient", "dps", "gaussian_kernel", "parse_operator", "register_method", "sample", "smc"]
