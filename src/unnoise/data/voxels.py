"""3-D shapes as voxel grids ``(4, R, R, R)`` in [-1, 1]: occupancy, then colour.

Channel 0 is the occupancy, +1 inside the shape and -1 outside (a soft shell one voxel thick); channels 1-3 are
its colour ``2 rgb - 1`` inside and 0 outside, so a model never has to invent the colour of empty space.  Two
sources, both read one example at a time (memory grows with the batch, not with the set):

* :class:`VoxelShapes`: the built-in coloured shapes of :mod:`unnoise.data.views` (sphere, box, torus, snowman,
  house), each example one of them turned about the vertical axis by a random angle and scaled by a random factor
  in [0.8, 1], drawn from the example's index (the same set on every run with the same seed);
* :class:`GridFolder`: every ``grid.npy`` in a folder or one or two levels below it, the grids ``unnoise distill3d`` writes (raw density and
  colour, :func:`unnoise.multiview.grid_file`), turned into occupancy (density above the surface level) and colour.

:func:`to_grid` goes back: an example or a sample becomes the renderer's ``{"density", "color"}`` grid, which
:mod:`unnoise.multiview` renders, turns into a mesh and writes.
"""
from __future__ import annotations

import glob
import math
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import render as rendering
from .views import _RAW_INSIDE, _RAW_OUTSIDE, SHAPES, field

CHANNELS = 4  # occupancy, red, green, blue
_SURFACE = math.log(math.expm1(2.0))  # the raw density whose softplus is 2, the occupancy level


def encode(inside: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """``(4, R, R, R)`` from occupancy in [0, 1] ``(R, R, R)`` and colour in [0, 1] ``(3, R, R, R)``."""
    return torch.cat([2 * inside[None] - 1, (2 * rgb - 1) * inside[None]]).float()


def to_grid(x: torch.Tensor) -> dict:
    """The renderer's grid ``{"density", "color"}`` (raw values) of one example or sample ``(4, R, R, R)``."""
    if x.ndim != 4 or x.shape[0] != CHANNELS:
        raise ValueError(f"a voxel shape is (4, R, R, R): occupancy and colour; got {tuple(x.shape)}")
    inside = ((x[0].float() + 1) / 2).clamp(0, 1)
    # raw density: the surface level (softplus = 2, :func:`unnoise.render.occupancy`) exactly at occupancy 0,
    # about _RAW_INSIDE inside and _RAW_OUTSIDE outside, so the grid's occupied voxels are the sample's
    density = _SURFACE + (_RAW_INSIDE - _RAW_OUTSIDE) * (inside - 0.5)
    rgb = ((x[1:].float() + 1) / 2).clamp(0.02, 0.98)
    return {"density": density, "color": torch.logit(rgb)}


def occupied(x: torch.Tensor) -> torch.Tensor:
    """Boolean ``(..., R, R, R)``: the voxels of examples ``(..., 4, R, R, R)`` that are inside."""
    return x[..., 0, :, :, :] > 0


class VoxelShapes(Dataset):
    """``n`` built-in shapes at ``resolution`` voxels a side: example ``i`` is shape ``SHAPES[i % 5]`` (or of
    ``shapes``) at a random turn about the vertical axis and a random scale in ``scale``, drawn from ``(seed,
    i)``.  Items are ``(x (4, R, R, R), {})``; :meth:`label` gives the shape's index."""

    def __init__(self, n: int = 4096, resolution: int = 16, seed: int = 0, shapes=SHAPES, scale=(0.8, 1.0)):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"the number of shapes must be a positive integer, got {n!r}")
        if not isinstance(resolution, int) or resolution < 4:
            raise ValueError(f"the voxel resolution must be an integer of at least 4, got {resolution!r}")
        unknown = [s for s in shapes if s not in SHAPES]
        if not shapes or unknown:
            raise ValueError(f"unknown 3-D shape(s) {unknown or '(none given)'}; choose from {', '.join(SHAPES)}")
        self.n, self.resolution, self.seed, self.shapes, self.scale = n, resolution, seed, tuple(shapes), scale
        self._points = rendering.grid_points(resolution)

    def __len__(self):
        return self.n

    def label(self, i: int) -> int:
        """The index (in ``shapes``) of example ``i``'s shape."""
        return i % len(self.shapes)

    def pose(self, i: int) -> tuple[float, float]:
        """``(angle, scale)`` of example ``i``."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        angle, u = torch.rand(2, generator=g).tolist()
        return 2 * math.pi * angle, self.scale[0] + (self.scale[1] - self.scale[0]) * u

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        angle, s = self.pose(i)
        return posed_shape(self.shapes[self.label(i)], self.resolution, angle, s, self._points), {}


def posed_shape(name: str, resolution: int, angle: float = 0.0, scale: float = 1.0,
                points: torch.Tensor | None = None) -> torch.Tensor:
    """``(4, R, R, R)``: built-in shape ``name`` turned by ``angle`` (radians) about the vertical axis and scaled by
    ``scale`` (``points``: :func:`unnoise.render.grid_points` of ``resolution``, when already at hand)."""
    points = rendering.grid_points(resolution) if points is None else points
    c, si = math.cos(angle), math.sin(angle)
    turn = torch.tensor([[c, -si, 0.0], [si, c, 0.0], [0.0, 0.0, 1.0]])
    sdf, rgb = field(name, (points @ turn) / scale)  # each world point seen in the shape's own frame
    shell = 1.0 / (resolution - 1)  # half a voxel: a soft shell one voxel thick
    inside = torch.sigmoid(-sdf * scale / shell)
    return encode(inside, rgb.permute(3, 0, 1, 2))


def grid_files(root: str) -> list[str]:
    """The ``grid.npy`` files in ``root``, its subfolders and theirs (``distill3d --out`` folders, their ``p1/``
    ... particles, or a folder of such outputs), sorted."""
    return sorted(p for pattern in ("grid.npy", "*/grid.npy", "*/*/grid.npy")
                  for p in glob.glob(os.path.join(glob.escape(root), pattern)))


def _read(path: str, mmap_mode=None) -> np.ndarray:
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path!r} is not a readable .npy grid ({err})") from None


class GridFolder(Dataset):
    """Every ``grid.npy`` of :func:`grid_files` under ``root`` (``unnoise distill3d`` outputs), read one at a time.
    All must have one resolution.  Items are ``(x (4, R, R, R), {})``."""

    def __init__(self, root: str, threshold: float = 2.0):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{root!r} is not a folder")
        self.paths = grid_files(root)
        if not self.paths:
            raise ValueError(f"no grid.npy under {root!r} (the files unnoise distill3d writes)")
        self.threshold = threshold
        shapes = {tuple(_read(p, mmap_mode="r").shape) for p in self.paths[:64]}
        if len(shapes) != 1 or len(next(iter(shapes))) != 4 or next(iter(shapes))[0] != CHANNELS:
            raise ValueError(f"the grids under {root!r} differ or are not (4, R, R, R): {sorted(shapes)}")
        self.resolution = next(iter(shapes))[1]

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        arr = torch.from_numpy(np.asarray(_read(self.paths[i]))).float()
        if tuple(arr.shape) != (CHANNELS, *(self.resolution,) * 3):
            raise ValueError(f"{self.paths[i]!r} holds {tuple(arr.shape)}, not (4, {self.resolution}, "
                             f"{self.resolution}, {self.resolution}) like the others")
        if not torch.isfinite(arr).all():
            raise ValueError(f"{self.paths[i]!r} holds NaN or inf")
        inside = (torch.nn.functional.softplus(arr[0]) > self.threshold).float()
        return encode(inside, torch.sigmoid(arr[1:])), {}


__all__ = ["CHANNELS", "GridFolder", "VoxelShapes", "encode", "grid_files", "occupied", "posed_shape", "to_grid"]
