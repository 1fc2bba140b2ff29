"""3-D shapes as voxel grids (``unnoise.data.voxels``, the ``voxels`` kind): the built-in set against its closed
forms, distill3d grids read back, and ``unnoise train --data shapes3d`` / ``unnoise sample`` to files."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

import unnoise
from unnoise import multiview
from unnoise import render as rendering
from unnoise.cli import main
from unnoise.data import views, voxels


def test_built_in_shapes_have_their_volume_and_colour():
    """A sphere of radius 0.6 s fills 4/3 pi (0.6 s)^3 of the cube [-1, 1]^3 and a box 8 abc s^3 at any turn
    (voxels of side 2 / (R - 1)); inside they carry the shape's colour, outside colour 0."""
    r = 48
    data = voxels.VoxelShapes(10, r, seed=3)
    cell = (2 / (r - 1)) ** 3
    for i in (0, 5, 1, 6):  # spheres, then boxes
        x, cond = data[i]
        assert x.shape == (4, r, r, r) and cond == {} and float(x.abs().max()) <= 1
        _, s = data.pose(i)
        volume = float(voxels.occupied(x).sum()) * cell
        true = 4 / 3 * math.pi * (0.6 * s) ** 3 if i % 5 == 0 else 8 * 0.55 * 0.35 * 0.45 * s ** 3
        assert abs(volume / true - 1) < 0.06, (i, volume, true)  # 0.96-1.03 at this resolution
        rgb = views.field(views.SHAPES[i % 5], torch.zeros(1, 3))[1][0] if i % 5 == 0 else None
        core = x[0] > 0.99
        if rgb is not None:
            torch.testing.assert_close(x[1:, core].mean(1), 2 * rgb - 1, atol=5e-3, rtol=0)  # occupancy > 0.995 there
        assert float(x[1:, x[0] < -0.99].abs().max()) < 5e-3  # occupancy below 0.005 there
    assert torch.equal(data[7][0], voxels.VoxelShapes(10, r, seed=3)[7][0])  # the index fixes the example
    assert data.pose(2) != data.pose(7) and data.label(7) == data.label(2) == 2


def test_a_turned_box_is_the_box_turned():
    """Example poses are turns about the vertical (z) axis: every turn of the box fills the same horizontal layers,
    with about the same number of voxels per layer (the rectangle's area), while its extent along x changes."""
    data = voxels.VoxelShapes(40, 20, seed=0, shapes=("box",), scale=(1.0, 1.0))
    occ = [voxels.occupied(data[i][0]) for i in range(6)]
    layers = [o.any(0).any(0) for o in occ]
    assert all(torch.equal(layer, layers[0]) for layer in layers) and int(layers[0].sum()) == 8
    area = 1.1 * 0.7 / (2 / 19) ** 2  # the box's horizontal section in voxels
    for o in occ:
        per_layer = o.sum((0, 1))[layers[0]].float()
        assert float((per_layer / area - 1).abs().max()) < 0.2
    extents = {int(o.any(2).any(1).sum()) for o in occ}
    assert len(extents) > 1


def test_to_grid_keeps_the_occupied_voxels_and_colours():
    x, _ = voxels.VoxelShapes(3, 16, seed=1)[2]  # the torus
    grid = voxels.to_grid(x)
    assert torch.equal(rendering.occupancy(grid), voxels.occupied(x))
    inside = x[0] > 0.99
    torch.testing.assert_close(torch.sigmoid(grid["color"])[:, inside], ((x[1:, inside] + 1) / 2).clamp(0.02, 0.98))
    with pytest.raises(ValueError, match="4, R, R, R"):
        voxels.to_grid(x[:3])


def test_grid_folder_reads_distill3d_grids(tmp_path):
    for k, name in enumerate(("box", "sphere")):
        os.makedirs(tmp_path / f"p{k}")
        np.save(tmp_path / f"p{k}" / "grid.npy", multiview.grid_file(views.shape_grid(name, 12)))
    data = voxels.GridFolder(str(tmp_path))
    assert len(data) == 2 and data.resolution == 12
    x, _ = data[0]
    assert torch.equal(voxels.occupied(x), rendering.occupancy(views.shape_grid("box", 12)))
    blue = views.field("box", torch.zeros(1, 3))[1][0]
    torch.testing.assert_close(x[1:, voxels.occupied(x)].mean(1), 2 * blue.clamp(0.02, 0.98) - 1, atol=1e-3, rtol=0)
    np.save(tmp_path / "p1" / "grid.npy", np.zeros((4, 8, 8, 8), np.float32))
    with pytest.raises(ValueError, match="differ"):
        voxels.GridFolder(str(tmp_path))
    bad = multiview.grid_file(views.shape_grid("sphere", 12))
    bad[1, 0, 0, 0] = np.nan
    np.save(tmp_path / "p1" / "grid.npy", bad)
    with pytest.raises(ValueError, match="NaN or inf"):
        voxels.GridFolder(str(tmp_path))[1]
    (tmp_path / "p1" / "grid.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="not a readable .npy grid"):
        voxels.GridFolder(str(tmp_path))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="no grid.npy"):
        voxels.GridFolder(str(tmp_path / "empty"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    out = str(tmp_path_factory.mktemp("voxels") / "run")
    assert main(["train", "--data", "shapes3d", "--voxel-resolution", "8", "--num-points", "32", "--steps", "3",
                 "--batch-size", "4", "--base-channels", "8", "--out", out, "--device", "cpu"]) == 0
    return out


def test_train_and_sample_write_grids_turntables_meshes(run, tmp_path):
    pipe = unnoise.load(run)
    assert pipe.kind == "voxels" and tuple(pipe.shape) == (4, 8, 8, 8)
    assert pipe.config["voxels"]["source"] == "shapes3d" and pipe.config["voxels"]["resolution"] == 8
    out = tmp_path / "shapes"
    assert main(["sample", "--checkpoint", run, "--n", "2", "--steps", "4", "--out", str(out)]) == 0
    grid = multiview.read_grid(str(out / "sample_001" / "grid.npy"))
    assert grid["density"].shape == (8, 8, 8) and grid["color"].shape == (3, 8, 8, 8)
    with Image.open(out / "sample_000" / "turntable.gif") as gif:
        assert gif.n_frames == 24
    with Image.open(out / "shapes.png") as im:  # 2 samples x 4 views in one row
        assert im.size[0] > 3 * im.size[1]
    assert main(["sample", "--checkpoint", run, "--n", "3", "--steps", "4", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (3, 4, 8, 8, 8)


def test_a_folder_of_distill3d_grids_trains(tmp_path):
    for k, name in enumerate(("box", "torus", "sphere")):
        os.makedirs(tmp_path / "grids" / f"p{k}")
        np.save(tmp_path / "grids" / f"p{k}" / "grid.npy", multiview.grid_file(views.shape_grid(name, 8)))
    out = str(tmp_path / "run")
    assert main(["train", "--data", str(tmp_path / "grids"), "--steps", "2", "--batch-size", "2",
                 "--base-channels", "8", "--out", out, "--device", "cpu"]) == 0
    pipe = unnoise.load(out)
    assert pipe.kind == "voxels" and tuple(pipe.shape) == (4, 8, 8, 8) and pipe.config["voxels"]["count"] == 3


def test_voxel_training_bad_input_is_one_line(tmp_path, capsys):
    capsys.readouterr()
    for argv, phrase in ((["--data", "shapes3d", "--voxel-resolution", "2"], "at least 4"),
                         (["--data", "shapes3d", "--net", "mlp"], "--net unet"),
                         (["--data", "digits", "--voxel-resolution", "8"], "--voxel-resolution")):
        code = main(["train", *argv, "--steps", "1", "--out", str(tmp_path / "o"), "--device", "cpu"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and phrase in err, (argv, err)
