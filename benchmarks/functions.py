"""Functions at any resolution: a neural operator under Gaussian-process noise against a white-noise U-Net.

Three data sets, each trained two ways with the same steps, batch, learning rate and seed:

* **FNO + GP noise**: ``unnoise train --function-space --kernel K`` (the ``functions`` kind), sampled on the
  training grid and directly on a grid 4x finer per axis (``Pipeline.at_resolution``);
* **U-Net + white noise**: the same data as fixed-size arrays with unnoise's U-Net (1-D or 2-D) under the default
  DDPM schedule, sampled on the training grid and upsampled 4x by linear (bilinear) interpolation.

Data: ``gp1d``: 4000 draws of a Gaussian process with the Matern-5/2 kernel of length 0.15 at 64 points of
``[0, 1)``; ``gp2d``: 2000 draws of the product Matern-5/2 kernel of length 0.2 on a 32x32 grid of ``[0, 1)^2``;
``digits``: the bundled 8x8 digits (1797) as fields on ``[0, 1)^2``.  Score: the relative Frobenius error
``|S - C| / |C|`` of the samples' covariance ``S`` against the truth ``C`` (the kernel's matrix on that grid;
on the 4x 2-D grid, on 1024 fixed random points of it), beside the same error of as many exact draws (the
floor: what that number of samples can show).  For the digits there is no truth at 32x32: the 4x samples are
scored on the training grid's points (every 4th point: the finer grid contains it), against the data's
covariance, with the floor from as many examples drawn from the data with replacement.

Run: ``python benchmarks/functions.py [--sets gp1d,gp2d,digits] [--steps 2000]`` (the numbers in
``docs/benchmarks.md`` give the options they were run with); writes
``docs/figures/functions_digits.png`` (FNO samples at 32x32 beside upsampled U-Net samples).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

import unnoise
from unnoise import gp
from unnoise.cli import main
from unnoise.data.images import load_digits
from unnoise.plotting import plot_functions
from unnoise.train import TrainConfig, train_model

HERE = os.path.dirname(os.path.abspath(__file__))


def rel_error(samples: torch.Tensor, truth: torch.Tensor, index=None) -> float:
    """``|cov(samples) - truth| / |truth|`` (Frobenius), over the points ``index`` of the flattened grid."""
    flat = samples.reshape(len(samples), -1).double()
    if index is not None:
        flat, truth = flat[:, index], truth[index][:, index]
    return float((torch.cov(flat.T) - truth).norm() / truth.norm())


def upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Linear (1-D) or bilinear (2-D) interpolation from the grid ``i / n`` to ``j / (factor n)`` (held constant
    beyond the last point): ``(n, *grid) -> (n, *factor grid)``."""
    out = x.double()
    for axis in range(1, x.ndim):
        n = out.shape[axis]
        pos = torch.arange(factor * n, dtype=torch.float64) / factor
        lo = pos.floor().long().clamp(max=n - 1)
        hi = (lo + 1).clamp(max=n - 1)
        w = (pos - lo).reshape(-1, *([1] * (out.ndim - axis - 1)))
        out = out.index_select(axis, lo) * (1 - w) + out.index_select(axis, hi) * w
    return out.float()


def dataset(name: str):
    """``(training functions, truth(grid shape) -> covariance or None, exact(n, shape) -> draws)``."""
    g = torch.Generator().manual_seed(0)
    if name == "digits":
        x = load_digits()[0][:, 0]
        return x, None, None
    kernel = gp.parse_kernel("matern52:0.15" if name == "gp1d" else "matern52:0.2")
    grid = (64,) if name == "gp1d" else (32, 32)
    count = 4000 if name == "gp1d" else 2000

    def exact(n, shape, seed):
        z = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return kernel.colour(z, len(shape)).float()

    def truth(shape):
        return kernel.matrix(gp.grid_points(shape))

    return exact(count, grid, 1), truth, exact


def sample(pipe, n, steps, seed, batch):
    g = torch.Generator().manual_seed(seed)
    out = [pipe.sample(min(batch, n - i), steps=steps, generator=g) for i in range(0, n, batch)]
    return torch.cat(out)


def run_set(name, args, tmp):
    x, truth, exact = dataset(name)
    grid, dims = tuple(x.shape[1:]), x.ndim - 1
    fine = tuple(4 * n for n in grid)
    n = args.n if dims == 1 else args.n2
    path = os.path.join(tmp, f"{name}.npy")
    np.save(path, x.numpy())
    common = ["--steps", str(args.steps), "--batch-size", str(args.batch), "--lr", "1e-3", "--checkpoint-every",
              "0", "--log-every", "500", "--device", "cpu", "--seed", "0"]
    rows, pictures = [], {}
    t0 = time.perf_counter()
    fno_dir = os.path.join(tmp, f"{name}-fno")
    assert main(["train", "--data", path, "--function-space", "--kernel", args.kernel, "--width",
                 str(args.fno_width), "--depth", "4" if dims == 1 else "3", "--out", fno_dir, *common]) == 0
    t_fno = time.perf_counter() - t0
    if args.skip_unet:
        return _fno_only(name, args, unnoise.load(fno_dir), grid, fine, dims, n, truth, exact, t_fno), pictures
    t0 = time.perf_counter()
    unet_dir = os.path.join(tmp, f"{name}-unet")
    net_config = {"base_channels": args.unet_channels, "channel_mult": [1, 2], "attention_levels": [],
                  "num_res_blocks": 2 if dims == 1 else 1}
    train_model(x[:, None], unet_dir, net="unet", net_config=net_config, info={"kind": "arrays"}, progress=False,
                config=TrainConfig(steps=args.steps, batch_size=args.batch, lr=1e-3, checkpoint_every=0,
                                   log_every=500, device="cpu", seed=0))
    t_unet = time.perf_counter() - t0
    fno, unet = unnoise.load(fno_dir), unnoise.load(unet_dir)
    f1 = sample(fno, n, args.sample_steps, 1, 500)
    f4 = sample(fno.at_resolution("x".join(map(str, fine))), n, args.sample_steps, 2, 100 if dims == 2 else 500)
    u1 = sample(unet, n, args.sample_steps, 1, 500)[:, 0]
    u4 = upsample(u1, 4)
    if truth is not None:
        c1, c4 = truth(grid), None
        index = None
        if dims == 2:  # 1024 fixed random points of the 128x128 grid (its covariance has 16384^2 entries)
            index = torch.randperm(int(np.prod(fine)), generator=torch.Generator().manual_seed(3))[:1024]
            pts = gp.grid_points(fine)[index]
            c4 = gp.parse_kernel("matern52:0.2").matrix(pts)
        else:
            c4 = truth(fine)

        def err4(s):
            flat = s.reshape(len(s), -1)
            return rel_error(flat[:, index] if index is not None else flat, c4)
        floor1 = rel_error(exact(n, grid, 7), c1)
        floor4 = err4(exact(n, fine, 8))
        rows.append((name, "exact draws (floor)", floor1, floor4, "-"))
        rows.append((name, f"FNO + GP noise ({args.kernel})", rel_error(f1, c1), err4(f4), f"{t_fno:.0f} s"))
        rows.append((name, "U-Net + white noise, upsampled", rel_error(u1, c1), err4(u4), f"{t_unet:.0f} s"))
    else:
        c1 = torch.cov(x.reshape(len(x), -1).T.double())
        pick = torch.randint(len(x), (n,), generator=torch.Generator().manual_seed(7))
        floor = rel_error(x[pick], c1)
        restrict = (slice(None), slice(None, None, 4), slice(None, None, 4))
        rows.append((name, "data resampled (floor)", floor, floor, "-"))
        rows.append((name, f"FNO + GP noise ({args.kernel})", rel_error(f1, c1), rel_error(f4[restrict], c1),
                     f"{t_fno:.0f} s"))
        rows.append((name, "U-Net + white noise, upsampled", rel_error(u1, c1), rel_error(u4[restrict], c1),
                     f"{t_unet:.0f} s"))
        pictures = {"data": x[:8], "FNO + GP noise, sampled at 4x": f4[:8],
                    "U-Net on the 8x8 grid, bilinear to 4x": u4[:8]}
    return rows, pictures


def _fno_only(name, args, fno, grid, fine, dims, n, truth, exact, t_fno):
    """The FNO row alone (another noise kernel on a 1-D GP set), scored as in :func:`run_set`."""
    if truth is None or dims != 1:
        raise SystemExit("--skip-unet scores the 1-D Gaussian-process set (gp1d)")
    f1 = sample(fno, n, args.sample_steps, 1, 500)
    f4 = sample(fno.at_resolution(fine[0]), n, args.sample_steps, 2, 500)
    return [(name, f"FNO + GP noise ({args.kernel})", rel_error(f1, truth(grid)), rel_error(f4, truth(fine)),
             f"{t_fno:.0f} s")]


def main_(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="gp1d,gp2d,digits")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n", type=int, default=2000, help="samples scored (1-D)")
    p.add_argument("--n2", type=int, default=1000, help="samples scored (2-D)")
    p.add_argument("--sample-steps", type=int, default=30)
    p.add_argument("--kernel", default="matern52:0.1", help="the FNO runs' noise kernel")
    p.add_argument("--fno-width", type=int, default=32)
    p.add_argument("--skip-unet", action="store_true", help="train and score the FNO only (1-D sets)")
    p.add_argument("--unet-channels", type=int, default=16)
    p.add_argument("--figure", default=os.path.join(HERE, "..", "docs", "figures", "functions_digits.png"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets.split(","):
            got, pictures = run_set(name, args, tmp)
            rows += got
            if pictures:
                plot_functions(pictures, args.figure)
                print(f"wrote {args.figure}")
            for r in got:
                print(f"{r[0]:7s} {r[1]:40s} 1x {r[2]:.3f}  4x {r[3]:.3f}  train {r[4]}", flush=True)
    print("\n| data | model | covariance error, training grid | at 4x per axis | training time |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.3f} | {r[3]:.3f} | {r[4]} |")


if __name__ == "__main__":
    main_()
