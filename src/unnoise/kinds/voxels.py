"""3-D shapes: voxel grids ``(4, R, R, R)`` of occupancy and colour in [-1, 1] (:mod:`unnoise.data.voxels`), with
the 3-D U-Net.

``unnoise train --data shapes3d`` trains on the built-in coloured shapes (turned and scaled at random; ``--num-points``
of them, default 4096; ``--voxel-resolution``, default 16 voxels a side); ``--data FOLDER`` on every ``grid.npy`` under it
(what ``unnoise distill3d`` writes).  ``unnoise sample --checkpoint RUN --out shapes/`` writes each sample as
``sample_000/grid.npy`` (the grid format of ``distill3d``, read back by :func:`unnoise.multiview.read_grid`),
``turntable.gif`` and ``shape.ply``, and ``shapes.png`` with every sample from four sides; ``--out F.npy``
writes the raw ``(n, 4, R, R, R)`` array.
"""
from __future__ import annotations

import os

import torch

from .. import io, multiview
from ..commands.train_arrays import run_arrays
from ..data import voxels
from ..imaging import save_image_grid
from ..render import render, turntable
from . import Kind, SampleOutput, TrainEntry, register
from .common import standardised_loader

BUILTIN = "shapes3d"
OPTIONS = {"net": "unet", "num_points": 4096, "voxel_resolution": 16, "base_channels": 16, "channel_mult": "1,2,2",
           "attention_levels": "", "dropout": 0.0}
WRITES = "a folder (grid.npy, turntable.gif and shape.ply per sample, shapes.png) or a .npy array"


def add_args(p) -> None:
    """The options of ``unnoise train`` for 3-D shapes."""
    g = p.add_argument_group("3-D shapes (--data shapes3d or a folder of distill3d grid.npy files)")
    g.add_argument("--voxel-resolution", type=int, default=None,
                   help="--data shapes3d: voxels a side (default: 16)")


def claims(args) -> bool:
    """``--data shapes3d``, or a folder with ``grid.npy`` files in it or one or two levels below."""
    data = getattr(args, "data", None)
    if data == BUILTIN:
        return True
    return isinstance(data, str) and os.path.isdir(data) and bool(voxels.grid_files(data))


def run(args) -> int:
    """Train the 3-D U-Net on the shapes (occupancy and colour are in [-1, 1] already: no standardisation)."""
    if args.net != "unet":
        raise ValueError(f"3-D shapes train with --net unet (a 3-D U-Net), got --net {args.net}")
    if args.data == BUILTIN:
        dataset = voxels.VoxelShapes(args.num_points, args.voxel_resolution, seed=args.seed)
        source = {"source": BUILTIN, "shapes": list(dataset.shapes), "count": args.num_points}
    else:
        dataset = voxels.GridFolder(args.data)
        source = {"source": os.path.abspath(args.data), "count": len(dataset)}
    args.no_normalize = True  # occupancy and colour are already in [-1, 1]
    info = {"voxels": {"resolution": dataset.resolution, **source}}
    return run_arrays(args, dataset, extra_info=info, kind="voxels")


def write_voxels(pipe, x: torch.Tensor, args, out: str) -> list[str]:
    """Each sample as ``out/sample_NNN/`` (grid.npy, turntable.gif, shape.ply) and ``out/shapes.png``; or the raw
    array to a ``.npy`` name."""
    if out.lower().endswith(".npy"):
        io.save_npy(out, x.numpy())
        return [out]
    os.makedirs(out, exist_ok=True)
    paths, views, sides = [], [], turntable(4, 25.0)
    for i, sample in enumerate(x):
        grid = voxels.to_grid(sample)
        written, no_mesh = multiview.save_shape(grid, os.path.join(out, f"sample_{i:03d}"))
        paths += written
        if no_mesh:  # an empty sample has no surface; without scikit-image, no mesh
            print(f"sample {i}: no mesh written: {no_mesh}")
        with torch.no_grad():
            views.append(render(grid, sides, 48))
    save_image_grid(torch.cat(views), os.path.join(out, "shapes.png"), nrow=8)
    return paths + [os.path.join(out, "shapes.png")]


register(Kind(
    name="voxels", what="3-D shapes (voxel grids of occupancy and colour)", load=standardised_loader("voxels"),
    data_range=2.0,
    train=TrainEntry(claims, run, OPTIONS, "3-D shapes (--data shapes3d or a folder of grid.npy files)", add_args),
    sample=SampleOutput(8, "shapes", ("", ".npy"), write_voxels, WRITES),
    recognise=lambda config: "voxels" in config))
