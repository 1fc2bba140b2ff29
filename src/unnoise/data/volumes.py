"""A built-in set of 3-D volumes: random ellipsoids on an empty background.

A volume is a float tensor ``(channels, D, H, W)`` with values in [-1, 1] (background -1).  Positions
are in unit coordinates: voxel ``i`` of ``size`` sits at ``(i + 0.5) / size`` in [0, 1].
"""
from __future__ import annotations

import torch


def random_rotations(n: int, generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
    """``n`` rotation matrices ``(n, 3, 3)``, uniform (Haar) over SO(3).

    QR of a Gaussian matrix gives a Haar orthogonal ``Q`` once the signs of ``R``'s diagonal are moved
    into ``Q``; flipping one column when ``det Q = -1`` keeps it uniform over the rotations.
    """
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]
    flip = torch.linalg.det(q) < 0
    q[flip, :, 0] = -q[flip, :, 0]
    return q


def render_ellipsoids(centers: torch.Tensor, radii: torch.Tensor, rotations: torch.Tensor, size: int,
                      softness: float = 0.0) -> torch.Tensor:
    """Occupancy of ``K`` ellipsoids on a ``size^3`` grid: ``(K, size, size, size)``, float64 in [0, 1].

    Ellipsoid ``k`` is ``{p : |diag(1/radii_k) R_k^T (p - centers_k)| <= 1}`` (unit coordinates).
    ``softness = 0`` gives a hard 0/1 indicator (its voxel count approximates ``4/3 pi abc size^3``);
    ``softness > 0`` a sigmoid edge ``sigmoid((1 - q) / softness)`` with ``q`` the scaled radius.
    """
    centers, radii, rotations = (torch.as_tensor(v, dtype=torch.float64) for v in (centers, radii, rotations))
    k = centers.shape[0]
    if centers.shape != (k, 3) or radii.shape != (k, 3) or rotations.shape != (k, 3, 3):
        raise ValueError("centers and radii must be (K, 3) and rotations (K, 3, 3)")
    if torch.any(radii <= 0):
        raise ValueError("ellipsoid radii must be positive")
    axis = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)  # (D, H, W, 3)
    local = torch.einsum("kji,kdhwj->kdhwi", rotations, grid[None] - centers[:, None, None, None, :])
    q = (local / radii[:, None, None, None, :]).norm(dim=-1)
    if softness <= 0:
        return (q <= 1).double()
    return torch.sigmoid((1 - q) / softness)


def ellipsoids(n: int, size: int = 16, max_objects: int = 3, softness: float = 0.05,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` volumes ``(n, 1, size, size, size)`` in [-1, 1], each with 1 to ``max_objects`` ellipsoids.

    Ellipsoids have centres uniform in [0.3, 0.7]^3, radii uniform in [0.1, 0.3], uniformly random
    orientation and brightness uniform in [1, 2] above the background of -1 (overlaps are clipped at 1).
    """
    if n < 1 or size < 2 or max_objects < 1:
        raise ValueError(f"need n >= 1, size >= 2 and max_objects >= 1; got {n}, {size}, {max_objects}")
    g, f64 = generator, torch.float64
    count = torch.randint(1, max_objects + 1, (n,), generator=g)
    centers = 0.3 + 0.4 * torch.rand(n, max_objects, 3, generator=g, dtype=f64)
    radii = 0.1 + 0.2 * torch.rand(n, max_objects, 3, generator=g, dtype=f64)
    rots = random_rotations(n * max_objects, g).reshape(n, max_objects, 3, 3)
    bright = 1 + torch.rand(n, max_objects, generator=g, dtype=f64)
    out = torch.empty(n, 1, size, size, size)
    for i in range(n):
        k = int(count[i])
        occ = render_ellipsoids(centers[i, :k], radii[i, :k], rots[i, :k], size, softness)
        out[i, 0] = (-1 + (bright[i, :k, None, None, None] * occ).sum(0)).clamp(-1, 1).float()
    return out
