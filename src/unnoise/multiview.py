"""3-D shapes from a 2-D prior: a view-conditioned image prior trained on :mod:`unnoise.data.views`,
the voxel grid distilled from any image prior (:func:`distill_grid`), its scores, and its files.

A view-conditioned prior is an ordinary ``images`` run whose U-Net adds the camera to its noise embedding,
``cond["vector"] = camera_features(camera, 4)`` (:func:`unnoise.render.camera_features`: cos and sin of 1 to
4 times the azimuth and the elevation); its ``config.json`` says so under ``"views"`` (``"camera": "vector"``).
Runs written before that took the four first-harmonic features as constant extra input channels
(``"camera": "concat"``, :func:`unnoise.render.camera_map`); such a prior ignored the camera (swapping two
cameras changed its denoiser's output by 2e-6 in mean square, docs/benchmarks.md); they still load and distil.  Any other image run (or a diffusers folder) is a
prior too: it then sees no camera, only its class label or prompt.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from . import distill
from . import render as rendering
from .data import views
from .data.memory import TensorDataset
from .imaging import to_uint8
from .io import atomic_write, save_npy, save_text
from .train import TrainConfig, train_model

CAMERA_HARMONICS = 4
CAMERA_FEATURES = 4 * CAMERA_HARMONICS
CAMERA_ENCODINGS = ("vector", "concat")


def camera_cond(camera: torch.Tensor, size: int, encoding: str = "vector") -> dict:
    """The camera part ``{"vector": (B, 16)}`` (or, for runs written before, ``{"concat": (B, 4, size, size)}``)
    of a view-conditioned prior's condition for cameras ``(B, 4)``."""
    if encoding == "vector":
        return {"vector": rendering.camera_features(camera, CAMERA_HARMONICS)}
    if encoding == "concat":
        return {"concat": rendering.camera_map(camera, size)}
    raise ValueError(f"unknown camera encoding {encoding!r}; choose one of {', '.join(CAMERA_ENCODINGS)}")


def train_view_prior(run_dir: str | None, shapes=("sphere",), views_per_shape: int = 512, image_size: int = 32,
                     steps: int = 2000, batch_size: int = 32, lr: float = 2e-3, base_channels: int = 16,
                     seed: int = 0, device: str = "cpu", progress: bool = True, colors=None):
    """Train a small view-conditioned image prior on ``shapes`` (names from :data:`unnoise.data.views.SHAPES`)
    rendered from random cameras; with several shapes it is class-conditional (one class per shape).  The camera
    (and the label) are dropped to their null values (a zero camera vector, the null class) for 10 % of the
    examples, so classifier-free guidance can sharpen the view as well as the class (as Zero-1-to-3 and MVDream
    guide on the camera).  ``colors`` (RGB triples) paints view ``i`` of each shape ``colors[i % len(colors)]``
    (:func:`unnoise.data.views.multiview`): the prior then holds several images per view, one per colour, with
    no condition saying which.  Returns the finished Trainer; the run is an ``images`` run."""
    g = torch.Generator().manual_seed(seed)
    images, cams, labels = views.multiview(shapes, views_per_shape, image_size, generator=g, colors=colors)
    conditional = len(shapes) > 1
    cond = camera_cond(cams, image_size)
    if conditional:
        cond["label"] = labels
    net_config = {"base_channels": base_channels, "channel_mult": [1, 2, 2], "num_res_blocks": 1,
                  "attention_levels": [], "vector_dim": CAMERA_FEATURES,
                  "num_classes": len(shapes) if conditional else 0}
    info = {"kind": "images",
            "image": {"size": image_size, "channels": 3, "num_classes": net_config["num_classes"],
                      "class_names": list(shapes) if conditional else [], "source": "views"},
            "views": {"camera": "vector", "features": f"cos, sin of 1..{CAMERA_HARMONICS} x azimuth, elevation",
                      "radius": rendering.DEFAULT_RADIUS, "fov": rendering.DEFAULT_FOV, "elevation": [-10.0, 45.0],
                      "background": 1.0, "shapes": list(shapes)}}
    if colors is not None:
        info["views"]["colors"] = [list(map(float, c)) for c in colors]
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device, checkpoint_every=0,
                         warmup=min(100, steps // 10), cond_dropout=0.1, ema_decay=0.995,
                         log_every=max(1, min(25, steps // 4)))
    null = {"vector": torch.zeros(CAMERA_FEATURES)}  # "no camera": cfg on the view too
    return train_model(TensorDataset(images, cond), run_dir, net="unet", net_config=net_config, parameterization="v",
                       schedule="cosine", config=config, normalize=False, info=info, progress=progress, null_cond=null)


def view_settings(pipe) -> dict | None:
    """The ``"views"`` entry of a view-conditioned run (None for other priors)."""
    return (getattr(pipe, "config", None) or {}).get("views")


def condition(pipe, class_label=None, prompt=None):
    """``cond(camera) -> dict`` for a Pipeline: the camera condition (:func:`camera_cond`) of a view-conditioned
    run, plus the class label or prompt (checked by :meth:`unnoise.runs.Pipeline.make_cond`)."""
    size = int(pipe.model_shape[-1])
    settings = view_settings(pipe)
    pipe.make_cond(1, class_label, prompt)  # bad labels and prompts fail here, before any work

    def cond(camera):
        extra = ({k: v.to(pipe.device) for k, v in camera_cond(camera, size, settings.get("camera", "concat")).items()}
                 if settings is not None else None)
        return pipe.make_cond(len(camera), class_label, prompt, extra)
    return cond


def distill_grid(pipe, steps: int = 500, method: str = "sds", class_label=None, prompt=None, resolution: int = 32,
                 views_per_step: int = 4, lr: float = 0.05, guidance_scale: float = 1.0, sigma_range=(0.05, 3.0),
                 anneal_to: float | None = 0.5, weighting: str = "dreamfusion", particle_model: str = "net",
                 generator: torch.Generator | None = None, history: list | None = None, callback=None,
                 progress: bool = False, init: dict | None = None, particles: int = 1,
                 particle_lr: float = 1e-3) -> dict:
    """Distil a voxel grid ``{"density", "color"}`` from an image Pipeline (see :func:`unnoise.distill.optimize`).

    Renders are at the prior's image size, from ``views_per_step`` random cameras (the run's elevation range
    for a view-conditioned prior), on the run's background.

    ``particles`` > 1 optimises that many grids at once, all from the same start, each rendered from its own
    ``views_per_step`` cameras every step: ProlificDreamer's particles, whose renders VSD's particle model fits
    together (its camera-conditioned net sees every particle's renders, so it models their spread), while under
    SDS each grid follows its own gradient.  With ``particle_model="empirical"`` every particle is rendered from
    the same ``views_per_step`` cameras each step, and VSD's particle model at a camera is the exact denoiser of
    the particles' renders there (:class:`unnoise.distill.EmpiricalParticles`).  The result then holds ``density
    (n, R, R, R)`` and ``color (n, 3, R, R, R)``; :func:`particle` takes one out.  ``particle_lr``: the Adam
    learning rate of VSD's particle net.

    The noise defaults suit SDS.  VSD with several particles spreads them over the prior's variety only at noise
    levels where their renders overlap: give it ``sigma_range=(0.05, 10.0), anneal_to=None`` and
    ``particle_model="empirical"`` (what ``unnoise distill3d --method vsd --particles N`` uses; measured in
    docs/benchmarks.md).
    """
    if not isinstance(particles, int) or isinstance(particles, bool) or particles < 1:
        raise ValueError(f"particles must be a positive integer, got {particles!r}")
    shape = tuple(pipe.model_shape)
    if pipe.denoiser is None or len(shape) != 3 or shape[0] != 3 or shape[1] != shape[2] or shape != tuple(pipe.shape):
        raise ValueError(f"distill3d needs a pixel-space square RGB image run (3, N, N), got a {pipe.kind} run "
                         f"of shape {pipe.model_shape}")
    settings = view_settings(pipe) or {}
    size = int(pipe.model_shape[-1])
    elevation = tuple(settings.get("elevation", (-10.0, 45.0)))
    background = float(settings.get("background", 1.0))
    cond = condition(pipe, class_label, prompt)

    def render(params, camera):
        if particles == 1:
            return rendering.render(params, camera, size, background=background).to(pipe.device)
        cams = camera.chunk(particles)
        return torch.cat([rendering.render(particle(params, k), cams[k], size, background=background)
                          for k in range(particles)]).to(pipe.device)

    shared = particle_model == "empirical"

    def cameras(g):
        if shared:  # the same cameras for every particle, particle-major
            return rendering.random_cameras(views_per_step, g, elevation).repeat(particles, 1)
        return rendering.random_cameras(views_per_step * particles, g, elevation)
    start = init if init is not None else rendering.init_grid(resolution)
    if particles > 1 and start["density"].ndim == 3:
        start = {k: torch.stack([v] * particles) for k, v in start.items()}
    return distill.optimize(pipe.denoiser, start, render,
                            steps, method, lr=lr, guidance_scale=guidance_scale, sigma_range=sigma_range,
                            anneal_to=anneal_to, weighting=weighting, generator=generator, cond=cond, cameras=cameras,
                            particle_model=particle_model, particle_lr=particle_lr, particles=particles,
                            history=history,
                            callback=callback, progress=progress)


def particle(params: dict, k: int) -> dict:
    """Grid ``k`` of a set of particles from :func:`distill_grid` (``density (n, R, R, R)``)."""
    return {"density": params["density"][k], "color": params["color"][k]}


# ----------------------------------------------------------------------------- scores
def voxel_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two boolean grids."""
    a, b = a.bool(), b.bool()
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def silhouette_iou(params: dict, reference: dict, camera: torch.Tensor, size: int = 32, level: float = 0.5) -> float:
    """Mean over ``camera`` of the IoU of the opacity masks (opacity > ``level``) of two grids."""
    with torch.no_grad():
        _, a = rendering.render(params, camera, size, shading=False, return_alpha=True)
        _, b = rendering.render(reference, camera, size, shading=False, return_alpha=True)
    return float(np.mean([voxel_iou(x > level, y > level) for x, y in zip(a, b)]))


# ----------------------------------------------------------------------------- files
def save_turntable(params: dict, path: str, frames: int = 24, size: int = 64, elevation: float = 20.0,
                   background: float = 1.0, duration_ms: int = 80) -> str:
    """A looping GIF of the grid seen from ``frames`` cameras around it (written atomically)."""
    with torch.no_grad():
        images = torch.cat([rendering.render(params, cam[None], size, background=background)
                            for cam in rendering.turntable(frames, elevation)])
    pictures = [Image.fromarray(a) for a in to_uint8(images)]
    return atomic_write(path, lambda p: pictures[0].save(p, format="GIF", save_all=True, append_images=pictures[1:],
                                                         duration=duration_ms, loop=0))


def mesher():
    """scikit-image's ``measure`` module (marching cubes), or a one-line ValueError naming the install."""
    try:
        from skimage import measure  # optional: only meshes need it
    except ImportError:
        raise ValueError("writing a mesh needs scikit-image: pip install 'unnoise[3d]' (or scikit-image)") from None
    return measure


def mesh(params: dict, threshold: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(vertices (V, 3) in world units, faces (F, 3), colours (V, 3) uint8)`` of the surface where the
    density ``softplus(d)`` crosses ``threshold``, by marching cubes (scikit-image)."""
    measure = mesher()
    density, color = rendering.check_grid(params)
    field = torch.nn.functional.softplus(density.detach()).double().numpy()
    if not field.min() < threshold < field.max():
        raise ValueError(f"the grid has no surface at density {threshold} (its densities span {field.min():.3g} to "
                         f"{field.max():.3g}): the optimisation found no shape; try more --steps")
    res = density.shape[-1]
    verts, faces, _, _ = measure.marching_cubes(field, threshold, spacing=(2.0 / (res - 1),) * 3)
    verts = verts - 1.0
    pts = torch.as_tensor(verts, dtype=torch.float32)[None, :, None]  # (1, V, 1, 3)
    rgb = torch.sigmoid(rendering.sample_grid(color.detach()[None], pts))[0, :, :, 0].T  # (V, 3)
    return verts, faces, (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def save_mesh(params: dict, path: str, threshold: float = 2.0) -> str:
    """Write the grid's surface as an ASCII PLY with vertex colours (``.ply``) or a Wavefront OBJ (``.obj``)."""
    verts, faces, colours = mesh(params, threshold)
    if path.lower().endswith(".obj"):
        lines = [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in verts]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    else:
        lines = ["ply", "format ascii 1.0", f"element vertex {len(verts)}", "property float x", "property float y",
                 "property float z", "property uchar red", "property uchar green", "property uchar blue",
                 f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
        lines += [f"{x:.5f} {y:.5f} {z:.5f} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(verts, colours)]
        lines += [f"3 {a} {b} {c}" for a, b, c in faces]
    return save_text(path, "\n".join(lines) + "\n")


def grid_file(params: dict) -> np.ndarray:
    """The grid as one ``(4, R, R, R)`` float32 array: raw density, then raw colour (what ``grid.npy`` holds)."""
    density, color = rendering.check_grid(params)
    return torch.cat([density.detach()[None], color.detach()]).float().numpy()


def save_shape(params: dict, folder: str, mesh_name: str = "shape.ply") -> tuple[list[str], str | None]:
    """Write one grid to ``folder`` (made if missing): ``grid.npy`` (:func:`grid_file`), ``turntable.gif`` and the
    mesh ``mesh_name`` (.ply or .obj).  Returns ``(paths written, why no mesh was written or None)``: a grid with
    no surface yet, or no scikit-image, still gets the other two files."""
    os.makedirs(folder, exist_ok=True)
    written = [save_npy(os.path.join(folder, "grid.npy"), grid_file(params)),
               save_turntable(params, os.path.join(folder, "turntable.gif"))]
    try:
        written.append(save_mesh(params, os.path.join(folder, mesh_name)))
    except ValueError as err:
        return written, str(err)
    return written, None


def read_grid(path: str) -> dict:
    """A grid written by ``unnoise distill3d`` (``grid.npy``) back as ``{"density", "color"}``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist")
    arr = torch.from_numpy(np.load(path, allow_pickle=False))
    if arr.ndim != 4 or arr.shape[0] != 4:
        raise ValueError(f"{path!r} holds an array of shape {tuple(arr.shape)}, not a (4, R, R, R) voxel grid")
    return {"density": arr[0], "color": arr[1:]}


__all__ = ["CAMERA_ENCODINGS", "CAMERA_FEATURES", "CAMERA_HARMONICS", "camera_cond", "condition", "distill_grid",
           "grid_file", "mesh", "mesher", "particle", "read_grid", "save_mesh",
           "save_turntable", "silhouette_iou", "train_view_prior", "view_settings", "voxel_iou"]
