"""A differentiable voxel renderer in plain torch: the 3-D representation score distillation optimises.

The scene is a grid over the cube ``[-1, 1]^3`` (world axes x, y, z; z is up) of raw density ``d``
``(R, R, R)`` and raw colour ``c`` ``(3, R, R, R)``, indexed ``[i, j, k] <-> (x_i, y_j, z_k)`` with
voxel centres at the cube's corners and ``R`` of them per side (``align_corners`` sampling).  Values
between voxel centres are trilinear.  Density ``softplus(d)`` (per unit length) and albedo
``sigmoid(c)`` are sampled at ``n_samples`` midpoints along each ray between the near and far ends of
the cube's bounding sphere, and composited front to back by emission-absorption:

    alpha_i = 1 - exp(-density_i delta),   T_i = prod_{j<i} (1 - alpha_j),
    pixel = sum_i T_i alpha_i colour_i + T_N background

Shading: ``colour_i = albedo_i (ambient + (1 - ambient) max(0, n_i . l))`` with normals ``n = -grad
density`` (central differences on the grid, trilinear in between) and a light ``l`` fixed relative to
the camera (above, to the left and behind the viewer), so shape shows as shading.

A camera is a pinhole on a sphere looking at the origin: ``(B, 4)`` rows ``(azimuth, elevation,
radius, fov)`` in radians and world units.  Its image plane: ``right = forward x up``, so the cameras
at azimuths ``a`` and ``a + pi`` (elevation 0) see mirror images of a scene symmetric in depth.
Images are ``(B, 3, H, W)`` in [-1, 1], the model space of unnoise's image runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DEFAULT_RADIUS = 3.0
DEFAULT_FOV = math.radians(40.0)
_HALF_DIAGONAL = math.sqrt(3.0)


def cameras(azimuth, elevation, radius: float = DEFAULT_RADIUS, fov: float = DEFAULT_FOV) -> torch.Tensor:
    """``(B, 4)`` cameras from azimuths and elevations (radians; floats or ``(B,)`` tensors)."""
    az = torch.as_tensor(azimuth, dtype=torch.float32).reshape(-1)
    el = torch.as_tensor(elevation, dtype=torch.float32).reshape(-1)
    az, el = torch.broadcast_tensors(az, el)
    return torch.stack([az, el, torch.full_like(az, radius), torch.full_like(az, fov)], dim=1)


def random_cameras(n: int, generator: torch.Generator, elevation=(-10.0, 45.0), radius: float = DEFAULT_RADIUS,
                   fov: float = DEFAULT_FOV) -> torch.Tensor:
    """``n`` cameras with uniform azimuth and elevation uniform in ``elevation`` (degrees)."""
    u = torch.rand(n, 2, generator=generator)
    az = u[:, 0] * 2 * math.pi
    el = torch.deg2rad(elevation[0] + u[:, 1] * (elevation[1] - elevation[0]))
    return cameras(az, el, radius, fov)


def turntable(n: int, elevation: float = 20.0, radius: float = DEFAULT_RADIUS,
              fov: float = DEFAULT_FOV) -> torch.Tensor:
    """``n`` cameras evenly around the object at ``elevation`` degrees."""
    az = torch.arange(n, dtype=torch.float32) * (2 * math.pi / n)
    return cameras(az, torch.full_like(az, math.radians(elevation)), radius, fov)


def camera_features(camera: torch.Tensor, harmonics: int = 1) -> torch.Tensor:
    """``(B, 4 harmonics)`` features of a camera's direction, ``cos k az, sin k az, cos k el, sin k el`` for
    ``k = 1 .. harmonics`` (``harmonics=1``: ``(cos az, sin az, cos el, sin el)``): the condition a
    view-conditioned prior sees (added to its noise embedding, ``cond["vector"]``; the higher harmonics let
    it tell apart views that differ by a half or quarter turn without a deep MLP)."""
    az, el = camera[:, 0], camera[:, 1]
    k = torch.arange(1, int(harmonics) + 1, dtype=az.dtype, device=az.device)
    a, e = az[:, None] * k, el[:, None] * k
    return torch.cat([a.cos(), a.sin(), e.cos(), e.sin()], dim=1)


def camera_map(camera: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 4, size, size)`` constant maps of :func:`camera_features` as a U-Net's extra input channels
    (``cond["concat"]``), what view-conditioned priors took before ``cond["vector"]``.  A U-Net trained on them
    ignored the camera (docs/benchmarks.md): a convolution turns a constant channel into a per-channel offset,
    which normalisations largely subtract again, and the noisy image tells the view at most noise levels, so
    little training signal reaches the camera through the input."""
    return camera_features(camera)[:, :, None, None].expand(-1, -1, size, size).contiguous()


def rays(camera: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins ``(B, 3)`` and unit directions ``(B, size, size, 3)`` (row 0 at the top) of pinhole cameras."""
    origin, right, true_up, forward = _frame(camera)
    fov = torch.as_tensor(camera)[:, 3].to(origin.dtype)
    coords = (torch.arange(size, dtype=origin.dtype) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(coords, coords, indexing="ij")  # v down the rows, u across the columns
    half = torch.tan(fov / 2)[:, None, None, None]
    dirs = (forward[:, None, None] + half * (u[None, ..., None] * right[:, None, None]
                                             - v[None, ..., None] * true_up[:, None, None]))
    return origin, F.normalize(dirs, dim=-1)


def sample_grid(grid: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear values of ``grid`` ``(B or 1, C, R, R, R)`` at world ``points`` ``(B, ..., 3)`` -> ``(B, C, ...)``;
    zero outside the cube."""
    B = points.shape[0]
    flat = points.reshape(B, -1, 1, 1, 3).flip(-1)  # grid_sample's (x, y, z) index (W, H, D) = our (k, j, i)
    out = F.grid_sample(grid.expand(B, *grid.shape[1:]), flat, mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    return out.reshape(B, grid.shape[1], *points.shape[1:-1])


def normals(density: torch.Tensor) -> torch.Tensor:
    """``(3, R, R, R)`` unnormalised outward normals ``-grad density`` by central differences on the grid."""
    grads = torch.gradient(density, spacing=2.0 / (density.shape[-1] - 1), dim=(0, 1, 2))
    return -torch.stack(grads, dim=0)


def check_grid(params: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(density (R, R, R), colour (3, R, R, R))`` of a grid dict, checked."""
    if not isinstance(params, dict) or "density" not in params or "color" not in params:
        raise ValueError("a voxel grid is a dict {'density': (R, R, R), 'color': (3, R, R, R)}; "
                         "see unnoise.render.init_grid")
    d, c = params["density"], params["color"]
    R = d.shape[-1] if d.ndim == 3 else 0
    if d.ndim != 3 or tuple(d.shape) != (R, R, R) or R < 2 or tuple(c.shape) != (3, R, R, R):
        raise ValueError(f"voxel grid shapes must be density (R, R, R) and color (3, R, R, R), got "
                         f"{tuple(d.shape)} and {tuple(c.shape)}")
    return d, c


def render(params: dict, camera: torch.Tensor, size: int = 32, n_samples: int = 64, background=1.0,
           ambient: float = 0.35, shading: bool = True, return_alpha: bool = False):
    """Render a voxel grid from ``camera`` ``(B, 4)``: images ``(B, 3, size, size)`` in [-1, 1]
    (and the opacity ``(B, size, size)`` with ``return_alpha``), differentiable in the grid.

    ``background``: a grey level or an RGB triple in [0, 1], or ``(B, 3)`` colours (one per view).
    """
    density, color = check_grid(params)
    camera = torch.as_tensor(camera, dtype=density.dtype)
    origin, dirs = rays(camera, size)
    B = origin.shape[0]
    radius = origin.norm(dim=1)
    near, far = (radius - _HALF_DIAGONAL).clamp_min(0.0), radius + _HALF_DIAGONAL
    t = (torch.arange(n_samples, dtype=density.dtype) + 0.5) / n_samples
    depth = near[:, None] + (far - near)[:, None] * t[None]  # (B, N) midpoints
    delta = ((far - near) / n_samples)[:, None, None, None]  # (B, 1, 1, 1) against sigma (B, H, W, N)
    points = origin[:, None, None, None] + dirs[:, :, :, None] * depth[:, None, None, :, None]  # (B, H, W, N, 3)
    fields = [density[None], color]
    if shading:
        fields.append(normals(density))
    values = sample_grid(torch.cat(fields, dim=0)[None], points)  # (B, C, H, W, N)
    inside = (points.abs() <= 1.0).all(-1).float()  # grid_sample pads with raw 0, not with empty space
    sigma = F.softplus(values[:, 0]) * inside
    albedo = torch.sigmoid(values[:, 1:4])
    if shading:
        n = F.normalize(values[:, 4:7], dim=1, eps=1e-6)
        _, right_dir, up_dir, forward = _frame(camera)
        light = F.normalize(-forward + 0.6 * up_dir - 0.5 * right_dir, dim=1)[:, :, None, None, None]
        lambert = (n * light).sum(1, keepdim=True).clamp_min(0.0)
        albedo = albedo * (ambient + (1 - ambient) * lambert)
    alpha = 1 - torch.exp(-sigma * delta)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha[..., :-1]], dim=-1), dim=-1)
    weights = trans * alpha  # (B, H, W, N)
    rgb = (weights[:, None] * albedo).sum(-1)
    opacity = weights.sum(-1)
    bg = torch.as_tensor(background, dtype=density.dtype)
    bg = bg.reshape(-1, 3 if bg.numel() > 1 else 1).expand(B, 3)[:, :, None, None]
    image = (rgb + (1 - opacity[:, None]) * bg) * 2 - 1
    return (image, opacity) if return_alpha else image


def _frame(camera: torch.Tensor):
    """``(origin, right, up, forward)`` of each camera, ``(B, 3)`` each."""
    camera = torch.as_tensor(camera)
    camera = camera if camera.is_floating_point() else camera.float()
    if camera.ndim != 2 or camera.shape[1] != 4:
        raise ValueError(f"cameras must have shape (B, 4) = (azimuth, elevation, radius, fov), "
                         f"got {tuple(camera.shape)}")
    az, el, radius, _ = camera.unbind(1)
    origin = radius[:, None] * torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], dim=1)
    forward = -origin / radius[:, None]
    up = torch.tensor([0.0, 0.0, 1.0], dtype=forward.dtype).expand_as(forward)
    right = F.normalize(torch.cross(forward, up, dim=1), dim=1)
    return origin, right, torch.cross(right, forward, dim=1), forward


def grid_points(resolution: int) -> torch.Tensor:
    """World coordinates ``(R, R, R, 3)`` of the voxel centres."""
    c = torch.linspace(-1.0, 1.0, resolution)
    return torch.stack(torch.meshgrid(c, c, c, indexing="ij"), dim=-1)


def init_grid(resolution: int = 32, blob_radius: float = 0.5, blob_density: float = 20.0, color: float = 0.0) -> dict:
    """A starting grid: a soft ball of density (raw ``blob_density`` at the centre, falling linearly, zero at
    ``blob_radius``, negative outside) and grey colour (raw ``color``; 0 = albedo 0.5)."""
    r = grid_points(resolution).norm(dim=-1)
    density = blob_density * (1 - r / blob_radius) - 2.0 * (r >= blob_radius).float()
    return {"density": density, "color": torch.full((3, resolution, resolution, resolution), float(color))}


def occupancy(params: dict, threshold: float = 2.0) -> torch.Tensor:
    """Boolean ``(R, R, R)``: voxels whose density ``softplus(d)`` exceeds ``threshold`` per unit length
    (2 per unit: half a unit of such material stops 63 % of the light; distilled grids stop growing denser
    once their renders are opaque, so the surface threshold must be low)."""
    density, _ = check_grid(params)
    return F.softplus(density.detach()) > threshold


__all__ = ["DEFAULT_FOV", "DEFAULT_RADIUS", "camera_features", "camera_map", "cameras", "check_grid", "grid_points",
           "init_grid", "normals", "occupancy", "random_cameras", "rays", "render", "sample_grid", "turntable"]
