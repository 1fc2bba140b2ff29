"""Built-in 2-D point sets, each scaled to roughly unit standard deviation per axis."""
from __future__ import annotations

import math

import torch


def _rand(n, g):
    return torch.rand(n, generator=g)


def _randn(*shape, g):
    return torch.randn(*shape, generator=g)


def swiss_roll(n: int, generator=None, noise: float = 0.03) -> torch.Tensor:
    """``(n, 2)`` points on a 2-D swiss-roll spiral (1.5 turns) with Gaussian jitter ``noise``."""
    t = 1.5 * math.pi * (1 + 2 * _rand(n, generator))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / 7.5
    return x + noise * _randn(n, 2, g=generator)


def moons(n: int, generator=None, noise: float = 0.05) -> torch.Tensor:
    """``(n, 2)`` points on two interleaved half circles, jittered by ``noise``, in random order."""
    n1 = n // 2
    t = math.pi * _rand(n, generator)
    upper = torch.stack([torch.cos(t[:n1]), torch.sin(t[:n1])], 1)
    lower = torch.stack([1 - torch.cos(t[n1:]), 0.5 - torch.sin(t[n1:])], 1)
    x = torch.cat([upper, lower]) - torch.tensor([0.5, 0.25])
    x = x / torch.tensor([0.87, 0.5]) + noise * _randn(n, 2, g=generator)
    return x[torch.randperm(n, generator=generator)]


def ring(n: int, generator=None, k: int = 8, radius: float = 1.4, std: float = 0.08) -> torch.Tensor:
    """``(n, 2)`` points from ``k`` equal Gaussians of std ``std`` on a circle of radius ``radius``."""
    idx = torch.randint(0, k, (n,), generator=generator)
    ang = idx.float() * 2 * math.pi / k
    centre = radius * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    return centre + std * _randn(n, 2, g=generator)


def checkerboard(n: int, generator=None, cells: int = 4) -> torch.Tensor:
    """``(n, 2)`` points uniform on the dark squares of a ``cells x cells`` checkerboard."""
    # pick a cell among the black squares, then a uniform point in it
    xs, ys = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
    black = torch.stack([xs.flatten(), ys.flatten()], 1)[(xs + ys).flatten() % 2 == 0].float()
    idx = torch.randint(0, len(black), (n,), generator=generator)
    pts = black[idx] + torch.rand(n, 2, generator=generator)
    return (pts - cells / 2) / (cells / 2) * 1.7


def pinwheel(n: int, generator=None, arms: int = 5, radial_std: float = 0.3, tangential_std: float = 0.08,
             rate: float = 0.25) -> torch.Tensor:
    """``(n, 2)`` points on ``arms`` spiral arms (Gaussian blobs bent by an angle growing with the radius)."""
    arm = torch.randint(0, arms, (n,), generator=generator)
    feats = _randn(n, 2, g=generator) * torch.tensor([radial_std, tangential_std]) + torch.tensor([1.0, 0.0])
    angle = arm.float() * 2 * math.pi / arms + rate * torch.exp(feats[:, 0])
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([c, -s], 1), torch.stack([s, c], 1)], 1)  # (n, 2, 2)
    return torch.einsum("nij,nj->ni", rot, feats) * 1.3


TOY_DATASETS = {
    "swiss_roll": swiss_roll,
    "moons": moons,
    "ring": ring,
    "checkerboard": checkerboard,
    "pinwheel": pinwheel,
}


def toy_dataset(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points of a built-in 2-D set, ``(n, 2)`` float32."""
    try:
        fn = TOY_DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown toy data set {name!r}; choose one of {', '.join(sorted(TOY_DATASETS))}") from None
    if n < 1:
        raise ValueError(f"number of points must be positive, got {n}")
    return fn(n, generator).float()
