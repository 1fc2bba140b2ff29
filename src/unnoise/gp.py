"""Gaussian-process noise for functions: covariance kernels, exact draws on any grid, and trace-class covariances.

A function observed on a grid is not a vector of fixed size.  White noise (independent ``N(0, 1)`` values) has
no limit as the grid refines: the covariance *operator* it discretises is the identity, whose trace on ``n``
points is ``n``.  Noise from a Gaussian process with a continuous kernel ``k`` has the covariance operator
``(C f)(x) = int k(x, y) f(y) dy``; on a grid of cell size ``h`` it is the matrix ``h K`` acting on grid values
(``K_ij = k(x_i, x_j)``), whose trace ``h sum_i k(x_i, x_i)`` is a Riemann sum of ``int k(x, x) dx``: finite and
the same on every grid (trace class).  A draw on any grid is the restriction of one random function, so draws
on a grid and on a finer grid that contains it agree in law on the shared points.

Domain and grids.  Functions live on ``[0, 1)`` (1-D) or ``[0, 1)^2`` (2-D).  The regular grid of ``n`` points
along an axis is ``x_i = i / n`` (:func:`grid`), so a grid refined by an integer factor contains the coarse one
(every ``factor``-th point) and the cell size is ``h = 1 / n``.

Kernels (:class:`Kernel`, spelt ``NAME:PARAMETER`` on the command line), each with ``k(x, x) = 1`` so the noise
has unit variance at every point like the white noise it replaces (the sigma schedules keep their meaning):

* ``rbf:L``: ``exp(-d^2 / (2 L^2))``, length scale ``L`` (smooth draws);
* ``matern52:L``: ``(1 + r + r^2 / 3) exp(-r)``, ``r = sqrt(5) d / L`` (twice-differentiable draws);
* ``spectral:A``: periodic on the unit interval, ``sum_k c_k cos(2 pi k d)`` with ``c_k`` proportional to
  ``(1 + k^2)^(-A)`` (``A > 1/2``, summed to ``k = 4096``, normalised to ``k(0) = 1``): a power-law decay of
  the spectrum, the covariance of Kerrigan et al.'s and Lim et al.'s experiments.

In 2-D a kernel is the product of its 1-D kernel along each axis, ``k(x, y) = k1(x_1 - y_1) k1(x_2 - y_2)``
(for ``rbf`` exactly the isotropic kernel; for the others a separable kernel).  Its matrix on a regular grid
is the Kronecker product ``K_h (x) K_w``, so a draw is ``R_h Z R_w`` with the 1-D square roots: exact and cheap
on grids of any size.

Exactness.  The square root ``R`` of a 1-D kernel matrix is the symmetric one, from an eigendecomposition in
float64 with the eigenvalues that round-off makes slightly negative set to zero (``R R^T = K`` to round-off).
Smooth kernels on fine grids are numerically singular, where a Cholesky factor needs a jitter on the
diagonal (which would add white noise of that variance); the eigendecomposition needs none.  Irregular
points (:meth:`Kernel.root_at`) use the same decomposition of the full matrix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

KERNELS = ("rbf", "matern52", "spectral")
SPECTRAL_TERMS = 4096  # terms of the spectral kernel's cosine series


def grid(n: int, dtype=torch.float64) -> torch.Tensor:
    """The regular grid of ``n`` points ``i / n`` on ``[0, 1)``."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"a grid needs a positive number of points, got {n!r}")
    return torch.arange(n, dtype=dtype) / n


def grid_points(shape) -> torch.Tensor:
    """The points of the regular grid of ``shape`` (``(n,)`` or ``(h, w)``) as ``(prod(shape), dims)`` coordinates
    in row-major order (the order of ``x.reshape(-1)``)."""
    axes = [grid(int(n)) for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=1)


@dataclass(frozen=True)
class Kernel:
    """A stationary covariance kernel with ``k(0) = 1`` (see the module docstring): ``name`` one of
    :data:`KERNELS`, ``parameter`` its length scale (``rbf``, ``matern52``) or decay exponent (``spectral``)."""

    name: str
    parameter: float

    def __post_init__(self):
        if self.name not in KERNELS:
            raise ValueError(f"unknown kernel {self.name!r}; choose one of {', '.join(KERNELS)} (e.g. rbf:0.1)")
        p = self.parameter
        if not (isinstance(p, (int, float)) and math.isfinite(p) and p > 0):
            raise ValueError(f"kernel {self.name}: the parameter must be a positive number, got {p!r}")
        if self.name == "spectral" and p <= 0.5:
            raise ValueError(f"kernel spectral:{p}: the decay exponent must exceed 1/2 (else the covariance is "
                             "not trace class: its variance is infinite)")

    @property
    def spec(self) -> str:
        """The kernel as ``NAME:PARAMETER`` (what :func:`parse_kernel` reads)."""
        return f"{self.name}:{self.parameter:g}"

    def profile(self, d: torch.Tensor) -> torch.Tensor:
        """The 1-D kernel as a function of the offset ``d = x - y`` (float64)."""
        d = torch.as_tensor(d, dtype=torch.float64).abs()
        if self.name == "rbf":
            return torch.exp(-0.5 * (d / self.parameter) ** 2)
        if self.name == "matern52":
            r = math.sqrt(5.0) * d / self.parameter
            return (1 + r + r**2 / 3) * torch.exp(-r)
        k, c = self._spectrum()
        return (torch.cos(2 * math.pi * d.reshape(-1, 1) * k) * c).sum(-1).reshape(d.shape)

    def _spectrum(self):
        """Frequencies ``k = 0..SPECTRAL_TERMS`` and weights of the spectral kernel's cosine series (sum 1)."""
        k = torch.arange(SPECTRAL_TERMS + 1, dtype=torch.float64)
        c = (1 + k**2) ** (-self.parameter)
        c[1:] *= 2  # cos(2 pi k d) stands for the frequencies k and -k
        return k, c / c.sum()

    def _axis(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``k1(a_i - b_j)`` along one axis, ``(n, m)``."""
        if self.name != "spectral":
            return self.profile(a[:, None] - b[None, :])
        # cos(2 pi k (a - b)) = cos(2 pi k a) cos(2 pi k b) + sin(2 pi k a) sin(2 pi k b): features, not n*m*K terms
        k, c = self._spectrum()
        fa, fb = 2 * math.pi * a[:, None] * k, 2 * math.pi * b[:, None] * k
        return (torch.cos(fa) * c) @ torch.cos(fb).T + (torch.sin(fa) * c) @ torch.sin(fb).T

    def matrix(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        """``K_ij = k(a_i, b_j)`` for points ``(n,)`` / ``(n, dims)`` (product over the axes), float64."""
        a = as_points(a)
        b = a if b is None else as_points(b)
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"points of {a.shape[1]} and {b.shape[1]} dimensions")
        out = torch.ones(a.shape[0], b.shape[0], dtype=torch.float64)
        for j in range(a.shape[1]):
            out = out * self._axis(a[:, j], b[:, j])
        return out

    def root(self, n: int) -> torch.Tensor:
        """The symmetric square root ``R`` (``R R = K``) of the kernel matrix on the regular grid of ``n`` points
        (float64, cached)."""
        return _grid_root(self, int(n))

    def root_at(self, points: torch.Tensor) -> torch.Tensor:
        """The symmetric square root of the kernel matrix at arbitrary points (irregular grids)."""
        return psd_sqrt(self.matrix(points))

    def colour_at(self, z: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Standard-normal ``z`` ``(batch, channels, P)`` turned into draws of the Gaussian process at ``points``:
        ``R z`` with ``R`` the square root of the kernel matrix at the points.  ``points`` is ``(P, dims)`` (the
        same points for every example, one decomposition) or ``(batch, P, dims)`` (each example its own points,
        one decomposition per example; ``(P,)`` is read as 1-D points)."""
        p = as_points(points) if torch.as_tensor(points).ndim < 3 else torch.as_tensor(points, dtype=torch.float64)
        if z.ndim != 3:
            raise ValueError(f"values at points are (batch, channels, P), not {tuple(z.shape)}")
        if p.ndim == 2:
            r = _points_root(self, p.cpu()).to(device=z.device, dtype=z.dtype)
            return z @ r  # R symmetric: (R z)^T = z^T R
        roots = torch.stack([self.root_at(q) for q in p.cpu()]).to(device=z.device, dtype=z.dtype)
        return z @ roots

    def colour(self, z: torch.Tensor, dims: int) -> torch.Tensor:
        """Standard-normal ``z`` of shape ``(..., n)`` (``dims = 1``) or ``(..., h, w)`` (``dims = 2``) on the regular
        grid, turned into a draw of the Gaussian process there: ``R z`` along each grid axis."""
        if dims not in (1, 2):
            raise ValueError(f"Gaussian-process noise is defined on 1-D and 2-D grids, not {dims}-D")
        out = z
        for axis in range(-dims, 0):
            r = self.root(z.shape[axis]).to(device=z.device, dtype=z.dtype)
            out = torch.movedim(torch.movedim(out, axis, -1) @ r, -1, axis)  # R symmetric: (R z)^T = z^T R
        return out

    def operator_trace(self, shape) -> float:
        """The trace of the covariance operator discretised on the regular grid of ``shape``: ``h tr(K)`` with
        ``h`` the cell size (``int k(x, x) dx = 1`` on every grid, up to round-off)."""
        h = 1.0 / math.prod(shape)
        return float(self.matrix(grid_points(shape)).diagonal().sum()) * h


def parse_kernel(spec) -> Kernel:
    """A :class:`Kernel` from ``NAME:PARAMETER`` (``rbf:0.1``, ``matern52:0.2``, ``spectral:2``), a Kernel or a dict
    ``{"name", "parameter"}``; a one-line ValueError otherwise."""
    if isinstance(spec, Kernel):
        return spec
    if isinstance(spec, dict):
        return Kernel(spec.get("name"), spec.get("parameter"))
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"a kernel is NAME:PARAMETER, e.g. rbf:0.1 or matern52:0.1 or spectral:2, not {spec!r}")
    name, value = spec.split(":")
    try:
        parameter = float(value)
    except ValueError:
        raise ValueError(f"kernel {spec!r}: {value!r} is not a number (e.g. rbf:0.1)") from None
    return Kernel(name.strip().lower(), parameter)


def psd_sqrt(k: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a positive semi-definite matrix (float64 eigendecomposition; eigenvalues
    below zero, from round-off, set to zero)."""
    k = k.double()
    vals, vecs = torch.linalg.eigh(0.5 * (k + k.T))
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


_POINT_ROOTS: dict = {}


def _points_root(kernel: Kernel, points: torch.Tensor) -> torch.Tensor:
    """:meth:`Kernel.root_at`, cached for the last few point sets (sampling colours the same points every step)."""
    key = (kernel, tuple(points.shape), hash(points.numpy().tobytes()))
    if key not in _POINT_ROOTS:
        if len(_POINT_ROOTS) > 8:
            _POINT_ROOTS.clear()
        _POINT_ROOTS[key] = kernel.root_at(points)
    return _POINT_ROOTS[key]


def check_points(points, dims: int, what: str = "points") -> torch.Tensor:
    """Coordinates of functions' points as a float64 ``(P, dims)`` or ``(batch, P, dims)`` tensor (``(P,)`` is
    accepted in 1-D): finite and inside ``[0, 1)`` on every axis; a one-line ValueError otherwise."""
    p = torch.as_tensor(points, dtype=torch.float64)
    if dims == 1 and p.ndim == 1:
        p = p[:, None]
    if p.ndim not in (2, 3) or p.shape[-1] != dims or p.shape[-2] < 1:
        raise ValueError(f"{what}: coordinates of {dims}-D functions are (P, {dims}) or (N, P, {dims}), got shape "
                         f"{tuple(p.shape)}")
    if not torch.isfinite(p).all():
        raise ValueError(f"{what}: the coordinates contain NaN or infinite values")
    if p.min() < 0 or p.max() >= 1:
        raise ValueError(f"{what}: coordinates must lie in [0, 1) (functions live on the unit interval or square), "
                         f"got values in [{float(p.min()):g}, {float(p.max()):g}]")
    return p


def quadrature_weights(points: torch.Tensor) -> torch.Tensor:
    """Weights ``w_j`` with ``sum_j w_j f(x_j) ~ int f`` over the unit interval or square, for points
    ``(..., P, dims)`` in ``[0, 1)``: in 1-D the length of each point's cell on the circle (half the gap to the
    previous point plus half the gap to the next, wrapping around), which is exactly ``1 / n`` on the regular
    grid and makes the sum a trapezoid-like rule on irregular points; in 2-D ``1 / P`` (exact on the regular
    grid and a Monte-Carlo rule for uniformly scattered points).  The weights sum to 1."""
    if points.shape[-1] != 1:
        return torch.full(points.shape[:-1], 1.0 / points.shape[-2], dtype=points.dtype, device=points.device)
    x = points[..., 0]
    order = x.argsort(-1)
    xs = x.gather(-1, order)
    gap = torch.diff(xs, dim=-1, append=xs[..., :1] + 1)  # gap to the next point, wrapping around
    cell = 0.5 * (gap + gap.roll(1, -1))
    return torch.empty_like(x).scatter_(-1, order, cell)


@lru_cache(maxsize=32)
def _grid_root(kernel: Kernel, n: int) -> torch.Tensor:
    x = grid(n)
    return psd_sqrt(kernel.matrix(x))


def as_points(p) -> torch.Tensor:
    """Points ``(n,)`` or ``(n, dims)`` as a float64 ``(n, dims)`` tensor; a one-line ValueError otherwise."""
    p = torch.as_tensor(p, dtype=torch.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"points must have shape (n,) or (n, dims), got {tuple(p.shape)}")
    return p
