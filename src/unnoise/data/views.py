"""A built-in multi-view set: simple coloured 3-D shapes rendered from cameras on a sphere.

Each shape is a signed distance field with a colour (a red sphere, a blue box, a green torus, a
snowman of two spheres, a box with a sphere on top); :func:`shape_grid` turns it into a voxel grid
of :mod:`unnoise.render` (opaque inside, empty outside, a soft shell one voxel thick), and
:func:`multiview` renders it with that same renderer from random cameras.  Every example is
``(image (3, H, W) in [-1, 1], camera (4,))`` and the shape's index, so a view-conditioned image prior
can be trained on a CPU and the true shape is known exactly for scoring distillation.
"""
from __future__ import annotations

import math

import torch

from .. import render as rendering

SHAPES = ("sphere", "box", "torus", "snowman", "house")
# raw densities: opaque within a voxel inside, 0 outside; 2 (the occupancy level) on the surface
_RAW_INSIDE, _RAW_OUTSIDE = 30.0, -26.0


def _sphere(p, centre, radius):
    return (p - torch.tensor(centre)).norm(dim=-1) - radius


def _box(p, centre, half):
    q = (p - torch.tensor(centre)).abs() - torch.tensor(half)
    return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)


def _torus(p, major, minor):
    ring = torch.stack([p[..., :2].norm(dim=-1) - major, p[..., 2]], dim=-1)
    return ring.norm(dim=-1) - minor


def field(name: str, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(signed distance (...), rgb (..., 3) in [0, 1])`` of shape ``name`` at world ``points`` ``(..., 3)``."""
    red, blue, green, white, yellow = ((0.9, 0.15, 0.1), (0.15, 0.3, 0.9), (0.1, 0.75, 0.2), (0.9, 0.9, 0.95),
                                       (0.95, 0.8, 0.1))

    def paint(rgb):
        return torch.tensor(rgb).expand(*points.shape[:-1], 3)
    if name == "sphere":
        return _sphere(points, (0.0, 0.0, 0.0), 0.6), paint(red)
    if name == "box":
        return _box(points, (0.0, 0.0, 0.0), (0.55, 0.35, 0.45)), paint(blue)
    if name == "torus":
        return _torus(points, 0.5, 0.2), paint(green)
    if name == "snowman":
        low, high = _sphere(points, (0.0, 0.0, -0.3), 0.45), _sphere(points, (0.0, 0.0, 0.4), 0.3)
        return torch.minimum(low, high), torch.where((high < low)[..., None], paint(yellow), paint(white))
    if name == "house":
        base, top = _box(points, (0.0, 0.0, -0.25), (0.5, 0.5, 0.35)), _sphere(points, (0.0, 0.0, 0.35), 0.35)
        return torch.minimum(base, top), torch.where((top < base)[..., None], paint(red), paint(blue))
    raise ValueError(f"unknown 3-D shape {name!r}; choose one of {', '.join(SHAPES)}")


def shape_grid(name: str, resolution: int = 32, color=None) -> dict:
    """The voxel grid ``{"density", "color"}`` of a shape (raw values, as :func:`unnoise.render.render` reads them);
    ``color`` (an RGB triple in [0, 1]) paints the whole shape in place of its own colours."""
    sdf, rgb = field(name, rendering.grid_points(resolution))
    if color is not None:
        rgb = torch.tensor(color, dtype=rgb.dtype).expand_as(rgb)
    shell = 1.0 / (resolution - 1)  # half a voxel: the boundary is one voxel thick
    inside = torch.sigmoid(-sdf / shell)
    density = _RAW_OUTSIDE + (_RAW_INSIDE - _RAW_OUTSIDE) * inside
    color = torch.logit(rgb.clamp(0.02, 0.98)).permute(3, 0, 1, 2).contiguous()
    return {"density": density, "color": color}


def true_occupancy(name: str, resolution: int) -> torch.Tensor:
    """Boolean ``(R, R, R)``: the voxel centres inside the shape."""
    return field(name, rendering.grid_points(resolution))[0] < 0


def multiview(shapes=("sphere",), views_per_shape: int = 256, image_size: int = 32,
              generator: torch.Generator | None = None, elevation=(-10.0, 45.0), resolution: int = 48,
              background: float = 1.0, batch: int = 32, colors=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images (N, 3, H, W) in [-1, 1], cameras (N, 4), labels (N,))`` of ``shapes`` (names from
    :data:`SHAPES`) each rendered from ``views_per_shape`` random cameras.

    ``colors``: RGB triples in [0, 1]; view ``i`` of each shape is then painted ``colors[i % len(colors)]``
    (one shape seen in several colours: a prior with diversity within every view).  The random draws are the
    same with and without it."""
    if isinstance(shapes, str):
        shapes = (shapes,)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    images, cams, labels = [], [], []
    for label, name in enumerate(shapes):
        cam = rendering.random_cameras(views_per_shape, generator, elevation)
        if colors is None:
            grid = shape_grid(name, resolution)
            with torch.no_grad():
                for start in range(0, views_per_shape, batch):
                    images.append(rendering.render(grid, cam[start:start + batch], image_size, background=background))
        else:
            out = torch.empty(views_per_shape, 3, image_size, image_size)
            for k, rgb in enumerate(colors):
                grid, idx = shape_grid(name, resolution, rgb), torch.arange(k, views_per_shape, len(colors))
                with torch.no_grad():
                    for start in range(0, len(idx), batch):
                        part = idx[start:start + batch]
                        out[part] = rendering.render(grid, cam[part], image_size, background=background)
            images.append(out)
        cams.append(cam)
        labels.append(torch.full((views_per_shape,), label, dtype=torch.long))
    return torch.cat(images), torch.cat(cams), torch.cat(labels)


def held_out_cameras(n: int = 8, elevation: float = 15.0) -> torch.Tensor:
    """``n`` fixed cameras for scoring: azimuths ``(k + 1/2) 360 / n`` degrees at ``elevation`` (training cameras
    are drawn at random, so these are never exactly among them)."""
    az = (torch.arange(n, dtype=torch.float32) + 0.5) * (2 * math.pi / n)
    return rendering.cameras(az, torch.full_like(az, math.radians(elevation)))


__all__ = ["SHAPES", "field", "held_out_cameras", "multiview", "shape_grid", "true_occupancy"]
