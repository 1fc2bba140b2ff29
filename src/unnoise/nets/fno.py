"""Fourier neural operator (Li et al. 2021): a network on functions that can be evaluated on any regular grid.

A layer maps a function ``h`` with ``width`` channels to ``act(K h + W h + b(sigma))``:

* ``K`` is a *spectral convolution*: the Fourier series of ``h`` truncated to its lowest ``modes`` frequencies
  (per axis; in 2-D both signs of the first axis' frequency), each frequency's channels mixed by a learned complex
  matrix, then summed back.  It is a convolution with a kernel of ``modes`` Fourier coefficients, so it does not
  depend on how finely ``h`` is sampled: with the transform normalised by the number of points
  (``norm="forward"``), the coefficients of a band-limited function are the same on every grid with more than
  ``2 * modes`` points per axis, and so is the output at the shared points.
* ``W`` is a pointwise linear map (a 1x1 convolution), which adds back what the truncation removed.
* ``b(sigma)`` is a per-channel scale and shift from the noise-level embedding.

The input is the function's values (``channels``) plus its coordinates on the grid ``i / n`` of ``[0, 1)``, as
``cos(2 pi x), sin(2 pi x)`` per axis (smooth and periodic, so the lifting does not add the jump of a raw
coordinate at the wrap-around, which would alias in the spectral layers); a lifting and a projection layer map
between the data's channels and ``width``.  Inputs are ``(batch, channels, n)`` (``dims = 1``) or
``(batch, channels, h, w)`` (``dims = 2``) at any resolution with at least ``2 * modes`` points per axis.

Irregular points.  With ``cond={"points": p}``, ``p`` ``(batch, P, dims)`` coordinates in ``[0, 1)`` (each example
its own points), the input is ``(batch, channels, P)``: the values at those points.  The spectral convolution is
then a direct non-uniform Fourier transform: the coefficients are the quadrature

    c_k = sum_j w_j h(x_j) exp(-2 pi i k . x_j)

with the points' weights :func:`unnoise.gp.quadrature_weights` (cell sizes in 1-D, ``1 / P`` in 2-D), mixed as on
the grid, and the band-limited output ``sum_k a_k Re(c'_k exp(2 pi i k . x))`` (``a_k = 2`` for the frequencies
that stand for a conjugate pair too, as the real inverse FFT counts them) is evaluated at the same points; the
lifting, pointwise maps and projection act point by point.  On the regular grid ``x_j = j / n`` the weights are
``1 / n`` and both sums are exactly what the FFT computes, so the two routes agree to round-off; on scattered
points the coefficients are quadrature approximations whose error shrinks as the points fill the domain.  The
cost is ``O(P * modes^dims)`` per channel pair, fine for the hundreds to a few thousand points of a function.
Like a grid, a set of points must be able to hold the modes: at least ``(2 * modes)^dims`` points
(:meth:`FNO.check_point_count`), and the more evenly they fill the domain the closer the output is to the
operator's on a fine grid (its restriction to the points is what a sample at the points estimates).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..gp import quadrature_weights
from .embeddings import NoiseLevelEmbedding, labels_only


def check_resolution(shape, modes: int) -> None:
    """A one-line ValueError when a grid of ``shape`` (points per axis) cannot hold ``modes`` Fourier modes."""
    low = [n for n in shape if n < 2 * modes]
    if low:
        raise ValueError(f"a resolution of {'x'.join(map(str, shape))} points is below twice the network's {modes} "
                         f"Fourier modes: use at least {2 * modes} points per axis")


class SpectralConv(nn.Module):
    """``K h``: the lowest ``modes`` Fourier coefficients of each channel mixed by learned complex matrices."""

    def __init__(self, width: int, modes: int, dims: int):
        super().__init__()
        self.modes, self.dims = modes, dims
        blocks = 1 if dims == 1 else 2  # 2-D: the frequencies (+k1, k2) and (-k1, k2), k2 >= 0
        shape = (blocks, width, width) + (modes,) * dims + (2,)
        self.weight = nn.Parameter(torch.randn(shape) / (width * math.sqrt(2)))

    def forward(self, h, points=None, weights=None):
        """``h`` ``(batch, width, *grid)`` on the regular grid, or ``(batch, width, P)`` at ``points``
        ``(batch, P, dims)`` with quadrature ``weights`` ``(batch, P)`` (the non-uniform transform)."""
        h = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h  # the FFT needs float32 or float64
        if points is not None:
            return self._at_points(h, points, weights)
        m, w = self.modes, torch.view_as_complex(self.weight.to(h.dtype))
        if self.dims == 1:
            coef = torch.fft.rfft(h, norm="forward")
            out = torch.zeros_like(coef)
            out[..., :m] = torch.einsum("bik,iok->bok", coef[..., :m], w[0])
            return torch.fft.irfft(out, n=h.shape[-1], norm="forward")
        coef = torch.fft.rfft2(h, norm="forward")
        out = torch.zeros_like(coef)
        out[..., :m, :m] = torch.einsum("bixy,ioxy->boxy", coef[..., :m, :m], w[0])
        out[..., -m:, :m] = torch.einsum("bixy,ioxy->boxy", coef[..., -m:, :m], w[1])
        return torch.fft.irfft2(out, s=h.shape[-2:], norm="forward")

    def _at_points(self, h, points, weights):
        m, w = self.modes, torch.view_as_complex(self.weight.to(h.dtype))
        cdtype = torch.complex128 if h.dtype == torch.float64 else torch.complex64
        pts = points.to(device=h.device, dtype=torch.float64)

        def waves(x, freqs):  # exp(-2 pi i k x): (batch, P, len(freqs)), phases in float64
            k = torch.tensor(freqs, device=h.device, dtype=torch.float64)
            return torch.polar(torch.ones_like(x[..., None] * k), -2 * math.pi * x[..., None] * k).to(cdtype)

        hw = (h * weights.to(h.dtype)[:, None, :]).to(cdtype)
        pair = torch.full((m,), 2.0, dtype=h.dtype, device=h.device)
        pair[0] = 1.0  # the last axis' frequency 0 stands for itself, k > 0 for k and -k (a real function)
        if self.dims == 1:
            e = waves(pts[..., 0], list(range(m)))
            coef = torch.einsum("bcp,bpk->bck", hw, e)
            out = torch.einsum("bik,iok->bok", coef, w[0]) * pair
            return torch.einsum("bok,bpk->bop", out, e.conj()).real
        e1 = waves(pts[..., 0], list(range(m)) + list(range(-m, 0)))  # first axis: +k1 (block 0), -k1 (block 1)
        e2 = waves(pts[..., 1], list(range(m)))
        coef = torch.einsum("bcp,bpx,bpy->bcxy", hw, e1, e2)
        out = torch.cat([torch.einsum("bixy,ioxy->boxy", coef[:, :, :m], w[0]),
                         torch.einsum("bixy,ioxy->boxy", coef[:, :, m:], w[1])], 2) * pair
        return torch.einsum("boxy,bpx,bpy->bop", out, e1.conj(), e2.conj()).real


def grid_features(shape, device, dtype) -> torch.Tensor:
    """``(2 * dims, *shape)``: ``cos(2 pi x), sin(2 pi x)`` of each axis' coordinate ``i / n``."""
    axes = [torch.arange(n, device=device, dtype=torch.float64) / n for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    feats = [f(2 * math.pi * x) for x in mesh for f in (torch.cos, torch.sin)]
    return torch.stack(feats).to(dtype)


class FNO(nn.Module):
    """Time-conditioned Fourier neural operator ``F(x_in, c_noise, cond)`` (see the module docstring).

    Args:
        shape: one training example ``(channels, n)`` or ``(channels, h, w)``: fixes the channels and the number
            of grid axes, not the resolution.
        width: channels of the hidden functions.  modes: Fourier modes kept per axis.  depth: spectral layers.
        emb_dim: noise-level embedding size.  num_classes: > 0 adds a class embedding.
    """

    def __init__(self, shape=(1, 64), width: int = 32, modes: int = 12, depth: int = 4, emb_dim: int = 64,
                 num_classes: int = 0):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) not in (2, 3):
            raise ValueError(f"FNO works on (channels, n) or (channels, h, w) functions, not shape {self.shape}")
        if modes < 1 or width < 1 or depth < 1:
            raise ValueError("FNO needs positive width, modes and depth")
        self.config = dict(shape=list(self.shape), width=width, modes=modes, depth=depth, emb_dim=emb_dim,
                           num_classes=num_classes)
        self.channels, self.dims, self.modes = self.shape[0], len(self.shape) - 1, modes
        self.num_classes = num_classes
        conv = nn.Conv1d if self.dims == 1 else nn.Conv2d
        self.embed = NoiseLevelEmbedding(emb_dim, num_classes)
        self.lift = conv(self.channels + 2 * self.dims, width, 1)
        self.spectral = nn.ModuleList(SpectralConv(width, modes, self.dims) for _ in range(depth))
        self.pointwise = nn.ModuleList(conv(width, width, 1) for _ in range(depth))
        self.film = nn.ModuleList(nn.Linear(emb_dim, 2 * width) for _ in range(depth))
        self.project = nn.Sequential(conv(width, 2 * width, 1), nn.GELU(), conv(2 * width, self.channels, 1))

    def check_resolution(self, shape) -> None:
        """A one-line ValueError when this network cannot run on a grid of ``shape`` points per axis."""
        if len(shape) != self.dims:
            raise ValueError(f"this FNO works on {self.dims}-D grids, not {len(shape)}-D")
        check_resolution(shape, self.modes)

    def check_point_count(self, count: int) -> None:
        """A one-line ValueError when ``count`` scattered points are fewer than the regular grid this network needs
        (``2 * modes`` per axis): the quadrature could not tell its Fourier modes apart."""
        need = (2 * self.modes) ** self.dims
        if count < need:
            raise ValueError(f"{count} points are fewer than the {need} a grid of twice the network's {self.modes} "
                             f"Fourier modes per axis holds: give at least {need} points")

    def forward(self, x, c_noise, cond=None):
        if isinstance(cond, dict) and cond.get("points") is not None:
            cond = dict(cond)
            return self._at_points(x, c_noise, cond.pop("points"), cond or None)
        if x.ndim != self.dims + 2 or x.shape[1] != self.channels:
            raise ValueError(f"FNO built for {self.dims}-D functions with {self.channels} channel(s), "
                             f"got input of shape {tuple(x.shape)}")
        check_resolution(x.shape[2:], self.modes)
        emb = self.embed(c_noise, labels_only(cond, "FNO"))
        coords = grid_features(x.shape[2:], x.device, x.dtype).expand(x.shape[0], -1, *x.shape[2:])
        h = self.lift(torch.cat([x, coords], 1))
        for spectral, pointwise, film in zip(self.spectral, self.pointwise, self.film):
            scale, shift = film(emb).reshape(x.shape[0], 2, -1, *([1] * self.dims)).unbind(1)
            h = F.gelu((spectral(h) + pointwise(h)) * (1 + scale) + shift)
        return self.project(h)

    def _at_points(self, x, c_noise, points, cond):
        """The operator at irregular points: ``x`` ``(batch, channels, P)``, ``points`` ``(batch, P, dims)``."""
        if x.ndim != 3 or x.shape[1] != self.channels or points.ndim != 3 or points.shape[0] != x.shape[0] \
                or points.shape[1] != x.shape[2] or points.shape[2] != self.dims:
            raise ValueError(f"FNO at points: values (batch, {self.channels}, P) and points (batch, P, {self.dims}), "
                             f"got {tuple(x.shape)} and {tuple(points.shape)}")
        emb = self.embed(c_noise, labels_only(cond, "FNO"))
        pts = points.to(device=x.device, dtype=torch.float64)
        weights = quadrature_weights(pts)
        feats = [f(2 * math.pi * pts[..., a]) for a in range(self.dims) for f in (torch.cos, torch.sin)]
        coords = torch.stack(feats, 1).to(x.dtype)

        def pointwise_map(conv, h):  # a 1x1 convolution of the grid network, applied point by point
            return conv(h) if self.dims == 1 else conv(h[..., None])[..., 0]

        h = pointwise_map(self.lift, torch.cat([x, coords], 1))
        for spectral, pointwise, film in zip(self.spectral, self.pointwise, self.film):
            scale, shift = film(emb).reshape(x.shape[0], 2, -1, 1).unbind(1)
            h = F.gelu((spectral(h, pts, weights) + pointwise_map(pointwise, h)) * (1 + scale) + shift)
        for layer in self.project:
            h = pointwise_map(layer, h) if isinstance(layer, (nn.Conv1d, nn.Conv2d)) else layer(h)
        return h
