"""Functions observed at irregular points: an FNO trained on Gaussian-process draws, each at its own random points.

Data: 4000 draws of GP(0, Matern-5/2, length 0.15) on ``[0, 1)`` (the ``gp1d`` law of ``benchmarks/functions.py``),
each observed at its own 64 points drawn uniformly at random (different points per example), saved as
``values (N, 64)`` and ``points (N, 64)`` in one ``.npz``.  Model: ``unnoise train --data F.npz --function-space
--kernel matern52:0.1`` (FNO width 32, 12 modes, 4 layers; the training noise is the Gaussian process at each
example's points, the spectral layers the non-uniform Fourier transform there), the same steps, batch, learning
rate and seed as the grid run of ``benchmarks/functions.py``.

For comparison the same script trains the same model on 4000 draws on the regular grid of 64 points (the
``gp1d`` set itself) and samples it the same three ways, so the last row of each table is a grid-trained model
sampled at irregular points.

Score: the relative Frobenius error ``|S - C| / |C|`` of the samples' covariance against the kernel's matrix
``C``, for samples on the regular grid of 64 points, on the grid of 256 points (``Pipeline.at_resolution``) and
at 64 new random points (``Pipeline.at_points``, one set for all samples), beside the same error of as many
exact draws there (the floor).

Run: ``python benchmarks/functions_points.py [--steps 2000] [--n 2000]``.
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

KERNEL = gp.parse_kernel("matern52:0.15")


def rel_error(samples: torch.Tensor, truth: torch.Tensor) -> float:
    """``|cov(samples) - truth| / |truth|`` (Frobenius)."""
    flat = samples.reshape(len(samples), -1).double()
    return float((torch.cov(flat.T) - truth).norm() / truth.norm())


def exact_at(points: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` exact draws of the data's law at ``points`` ``(P,)``."""
    z = torch.randn(n, 1, points.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return KERNEL.colour_at(z, points)[:, 0].float()


def sample(pipe, n, steps, seed, batch=500):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([pipe.sample(min(batch, n - i), steps=steps, generator=g) for i in range(0, n, batch)])


def main_(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--count", type=int, default=4000)
    p.add_argument("--points", type=int, default=64)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--sample-steps", type=int, default=30)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(args.count, args.points, generator=g, dtype=torch.float64)
    z = torch.randn(args.count, 1, args.points, generator=g, dtype=torch.float64)
    values = KERNEL.colour_at(z, pts[..., None])[:, 0]
    on_grid = KERNEL.colour(z.float(), 1)[:, 0]  # the same standard normals coloured on the regular grid
    new = torch.rand(args.points, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in (("trained at random points (own per example)", os.path.join(tmp, "f.npz")),
                            ("trained on the regular grid", os.path.join(tmp, "f.npy"))):
            if path.endswith(".npz"):
                np.savez(path, values=values.numpy(), points=pts.numpy())
            else:
                np.save(path, on_grid.numpy())
            run = os.path.join(tmp, os.path.basename(path) + ".run")
            t = time.time()
            assert main(["train", "--data", path, "--function-space", "--kernel", "matern52:0.1", "--width", "32",
                         "--depth", "4", "--out", run, "--steps", str(args.steps), "--batch-size", "64", "--lr",
                         "1e-3", "--checkpoint-every", "0", "--log-every", "500", "--device", "cpu", "--seed",
                         "0"]) == 0
            t_train = time.time() - t
            pipe = unnoise.load(run)
            rows = []
            for name, target, where in ((f"grid of {args.points}", pipe, gp.grid(args.points)),
                                        (f"grid of {4 * args.points}", pipe.at_resolution(4 * args.points),
                                         gp.grid(4 * args.points)),
                                        (f"{args.points} new random points", pipe.at_points(new), new)):
                t = time.time()
                s = sample(target, args.n, args.sample_steps, 1)
                truth = KERNEL.matrix(where)
                rows.append((name, rel_error(s, truth), rel_error(exact_at(where, args.n, 2), truth),
                             time.time() - t))
            tables.append((label, t_train, rows))
    for label, t_train, rows in tables:
        print(f"\n{label}: {args.steps} training steps in {t_train:.0f} s")
        print("| sampled on | FNO error | floor (exact draws) | x floor | sampling time |")
        print("|---|---|---|---|---|")
        for name, err, floor, secs in rows:
            print(f"| {name} | {err:.3f} | {floor:.3f} | {err / floor:.1f} | {secs:.0f} s |")


if __name__ == "__main__":
    main_()
