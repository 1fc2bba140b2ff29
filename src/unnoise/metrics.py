"""Sample-quality metrics between point sets (any tensor data, flattened)."""
from __future__ import annotations

import torch


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, num_projections: int = 256,
                       generator: torch.Generator | None = None, p: int = 2) -> float:
    """Sliced Wasserstein-p distance between two samples ``(n, ...)`` and ``(m, ...)``.

    The 1-D Wasserstein distance along each random unit direction is computed from the sorted
    projections (quantile functions at ``min(n, m)`` levels); the result is the ``p``-th root of
    the mean over directions of ``W_p^p``.
    """
    x = x.reshape(x.shape[0], -1).double()
    y = y.reshape(y.shape[0], -1).double()
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimension mismatch: {x.shape[1]} vs {y.shape[1]}")
    dirs = torch.randn(x.shape[1], num_projections, generator=generator, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    px, py = (x @ dirs).sort(0).values, (y @ dirs).sort(0).values
    k = min(len(px), len(py))
    q = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    qx = torch.quantile(px, q, dim=0, interpolation="linear") if len(px) != k else px
    qy = torch.quantile(py, q, dim=0, interpolation="linear") if len(py) != k else py
    return float(((qx - qy).abs() ** p).mean() ** (1 / p))


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, bandwidths=(0.1, 0.3, 1.0, 3.0)) -> float:
    """Squared maximum mean discrepancy with a sum of RBF kernels (unbiased estimate)."""
    x = x.reshape(x.shape[0], -1).double()
    y = y.reshape(y.shape[0], -1).double()

    def k(a, b):
        d2 = torch.cdist(a, b) ** 2
        return sum(torch.exp(-d2 / (2 * h**2)) for h in bandwidths)

    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - kxx.diag().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1))
                 - 2 * kxy.mean())
