"""3-D shapes: does a voxel diffusion model trained on the built-in shapes generate those shapes?

A run of the ``voxels`` kind (``unnoise train --data shapes3d``: the five coloured shapes of unnoise.data.views,
each turned about the vertical axis by a random angle and scaled by 0.8-1, 16^3 voxels of occupancy and colour,
the 3-D U-Net) is sampled, and every sample is matched against a bank of templates: each shape at every 5 degrees
of turn and 5 scales from 0.8 to 1 (1800 grids).  Scores: the best template IoU of each sample's occupied voxels
(mean, and the share of samples at 0.8 or more), which shape that template is (the shares of the five shapes; the
training set holds each at 0.2), and the colour error, the mean absolute difference in [0, 1] between the
sample's colour and the template's over the voxels both occupy.  References scored the same way: held-out examples
of the training distribution (the ceiling: their poses fall between the templates'), and the voxelwise mean of the
training set thresholded at 0 (a blob: what a model that learned only the average shape gives).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/voxels.py --run RUN [--n 64] [--steps 50] [--json F]
        [--figure F.png]

Results go to docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch

import unnoise
from unnoise.data import voxels
from unnoise.data.views import SHAPES
from unnoise.imaging import save_image_grid
from unnoise.render import grid_points, render, turntable


def template_bank(resolution: int, angles: int = 72, scales=(0.8, 0.85, 0.9, 0.95, 1.0)):
    """``(occupancy (T, R^3) bool, colour (T, 3, R^3), shape index (T,))`` of every shape at every pose."""
    occ, rgb, label = [], [], []
    points = grid_points(resolution)
    for k, name in enumerate(SHAPES):
        for s in scales:
            for a in range(angles):
                x = voxels.posed_shape(name, resolution, 2 * math.pi * a / angles, s, points)
                occ.append(voxels.occupied(x).flatten())
                rgb.append(((x[1:] + 1) / 2).flatten(1))
                label.append(k)
    return torch.stack(occ), torch.stack(rgb), torch.tensor(label)


def score(x: torch.Tensor, bank) -> dict:
    """Best-template IoU, its shape and the colour error of each of ``x`` (n, 4, R, R, R)."""
    occ_t, rgb_t, label_t = bank
    occ = voxels.occupied(x).flatten(1).float()
    t = occ_t.float()
    inter = occ @ t.T
    union = occ.sum(1, keepdim=True) + t.sum(1)[None] - inter
    iou = inter / union.clamp_min(1)
    best, idx = iou.max(1)
    colour = []
    rgb = ((x[:, 1:] + 1) / 2).clamp(0, 1).flatten(2)
    for i, j in enumerate(idx.tolist()):
        both = occ[i].bool() & occ_t[j]
        colour.append(float((rgb[i][:, both] - rgb_t[j][:, both]).abs().mean()) if both.any() else float("nan"))
    shares = torch.bincount(label_t[idx], minlength=len(SHAPES)).float() / len(x)
    return {"mean_iou": float(best.mean()), "share_iou_0.8": float((best >= 0.8).float().mean()),
            "shape_shares": dict(zip(SHAPES, [round(float(v), 3) for v in shares])),
            "colour_error": float(torch.tensor(colour).nanmean()), "best_iou": [round(float(v), 3) for v in best]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a voxels run (unnoise train --data shapes3d)")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=50, help="sampling steps (the run's default sampler)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--figure", default=None, help="a PNG of 16 samples from four sides above 16 training shapes")
    args = p.parse_args()
    torch.set_num_threads(1)
    pipe = unnoise.load(args.run, device="cpu")
    r = int(pipe.shape[-1])
    info = pipe.config["voxels"]
    t0 = time.process_time()
    bank = template_bank(r)
    out = {"run": args.run, "resolution": r, "train_steps": pipe.config.get("train", {}).get("steps"),
           "bank_cpu_s": time.process_time() - t0}
    held = voxels.VoxelShapes(args.n, r, seed=args.seed + 1000)
    real = torch.stack([held[i][0] for i in range(args.n)])
    train = voxels.VoxelShapes(min(info.get("count", 4096), 2048), r, seed=0)
    mean = torch.stack([train[i][0] for i in range(len(train))]).mean(0)
    out["held_out"] = score(real, bank)
    out["mean_blob"] = score(mean[None], bank)
    t0 = time.process_time()
    x = pipe.sample(args.n, steps=args.steps, generator=torch.Generator().manual_seed(args.seed))
    out["sample_cpu_s_per_shape"] = (time.process_time() - t0) / args.n
    out["samples"] = score(x, bank)
    for key in ("held_out", "mean_blob", "samples"):
        print(key, {k: v for k, v in out[key].items() if k != "best_iou"}, flush=True)
    if args.figure:
        sides = turntable(4, 25.0)
        with torch.no_grad():
            rows = [render(voxels.to_grid(v), sides, 48) for v in torch.cat([x[:16], real[:16]])]
        save_image_grid(torch.cat(rows), args.figure, nrow=8)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
