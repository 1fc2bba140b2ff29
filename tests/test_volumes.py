"""Volumes: the procedural ellipsoid set and the 3-D U-Net on (N, channels, D, H, W) data."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import unnoise
from unnoise.data.volumes import ellipsoids, random_rotations, render_ellipsoids
from unnoise.nets.unet import UNet


def test_random_rotations_are_haar_rotations():
    r = random_rotations(4000, torch.Generator().manual_seed(0))
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3, dtype=r.dtype).expand(4000, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(4000, dtype=r.dtype), atol=1e-12)
    # Haar measure on SO(3): every entry has mean 0 and variance 1/3 (rows are uniform unit vectors)
    assert r.mean(0).abs().max() < 0.05  # 5 standard errors of sqrt(1/3 / 4000)
    assert torch.allclose((r**2).mean(0), torch.full((3, 3), 1 / 3, dtype=r.dtype), atol=0.03)


def test_rendered_ellipsoid_volume_matches_the_closed_form():
    radii = torch.tensor([[0.3, 0.2, 0.25]])
    exact = 4 / 3 * math.pi * 0.3 * 0.2 * 0.25  # fraction of the unit cube
    centre = torch.tensor([[0.5, 0.5, 0.5]])
    for rot in (torch.eye(3)[None], random_rotations(1, torch.Generator().manual_seed(3))):
        occ = render_ellipsoids(centre, radii, rot, size=40)
        assert occ.shape == (1, 40, 40, 40)
        assert float(occ.mean()) == pytest.approx(exact, rel=0.03)  # voxelisation error only
    # the soft edge is a sigmoid of the scaled radius: exactly 1/2 on the surface
    soft = render_ellipsoids(centre, torch.tensor([[0.25, 0.25, 0.25]]), torch.eye(3)[None], size=4, softness=0.1)
    q = math.sqrt(3 * 0.125**2) / 0.25  # voxel (1, 1, 1) sits at 0.375 in each coordinate
    assert float(soft[0, 1, 1, 1]) == pytest.approx(1 / (1 + math.exp(-(1 - q) / 0.1)), rel=1e-12)
    with pytest.raises(ValueError, match="radii must be positive"):
        render_ellipsoids(centre, -radii, torch.eye(3)[None], 8)


def test_ellipsoid_set():
    v = ellipsoids(20, size=12, generator=torch.Generator().manual_seed(0))
    assert v.shape == (20, 1, 12, 12, 12) and v.min() >= -1 and v.max() <= 1
    assert torch.equal(v, ellipsoids(20, size=12, generator=torch.Generator().manual_seed(0)))
    assert torch.all(v[:, 0, 0, 0, 0] < -0.99)  # corners are background (centres stay in [0.3, 0.7])
    inside = (v > 0).flatten(1).float().mean(1)
    assert torch.all(inside > 0.002) and torch.all(inside < 0.5)  # every volume holds an object
    with pytest.raises(ValueError, match="max_objects"):
        ellipsoids(2, max_objects=0)


def test_unet3d_keeps_shapes_and_rejects_bad_sizes():
    net = UNet(shape=(1, 8, 8, 8), base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=())
    assert net.config["dims"] == 3
    x = torch.randn(2, 1, 8, 12, 16)  # any sizes divisible by 2 ** (levels - 1)
    assert net(x, torch.zeros(2)).shape == x.shape
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.randn(1, 1, 7, 8, 8), torch.zeros(1))


def test_volume_training_through_the_command_line(tmp_path):
    from unnoise.cli import main
    vols = ellipsoids(32, size=8, generator=torch.Generator().manual_seed(0)).numpy()
    np.save(tmp_path / "vols.npy", vols)
    run = tmp_path / "run"
    rc = main(["train", "--data", str(tmp_path / "vols.npy"), "--out", str(run), "--net", "unet",
               "--base-channels", "8", "--channel-mult", "1,2", "--attention-levels", "",
               "--steps", "30", "--batch-size", "8", "--lr", "3e-3", "--device", "cpu"])
    assert rc == 0
    den, sched, config = unnoise.checkpoint.load(str(run))
    assert config["net"]["name"] == "unet" and config["net"]["config"]["dims"] == 3
    assert config["data"]["shape"] == [1, 8, 8, 8]
    # one channel: scaled by the mean and standard deviation over every example and voxel
    stats = config["data"]["normalization"]
    assert stats["mean"] == pytest.approx([float(vols.mean())], rel=1e-5)
    assert stats["std"] == pytest.approx([float(vols.std(ddof=1))], rel=1e-4)
    out = tmp_path / "samples.npy"
    assert main(["sample", "--checkpoint", str(run), "--n", "3", "--steps", "5", "--out", str(out)]) == 0
    samples = np.load(out)
    assert samples.shape == (3, 1, 8, 8, 8) and np.isfinite(samples).all()
