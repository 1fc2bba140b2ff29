"""Train a diffusion model on your own vectors (a .npy file of shape (N, d)) and check its samples.

    .venv/bin/python examples/train_vectors.py --data points.npy --out runs/points
    .venv/bin/python examples/train_vectors.py --fast        # writes a small .npy itself

Each feature is standardised before training (the statistics are stored in the run and undone
after sampling, so samples come back in your units).  Sample quality is the sliced Wasserstein
distance between samples and held-out data, next to the distance between two halves of the
data (the best any model can do at this sample size).  Command-line equivalent:
``unnoise train --data points.npy --out runs/points`` then ``unnoise sample --checkpoint runs/points``.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np
import torch

import unnoise
from unnoise.data import load_array
from unnoise.metrics import sliced_wasserstein
from unnoise.train import train_model


def make_data(path: str, n: int, seed: int = 0) -> str:
    """Write ``n`` points of a 3-D dataset: a noisy helix in data units far from zero mean, unit variance."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 4 * np.pi, n)
    x = np.stack([np.cos(t), np.sin(t), t / 4], 1) * [3.0, 3.0, 1.0] + [10.0, -5.0, 2.0]
    np.save(path, (x + 0.1 * rng.standard_normal(x.shape)).astype(np.float32))
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="your .npy file of shape (N, d) (default: a generated helix)")
    p.add_argument("--out", default=None, help="run directory (default: a temporary directory)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--fast", action="store_true", help="tiny sizes: a smoke run of the whole path in seconds")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = args.out or tempfile.mkdtemp(prefix="unnoise_vectors_")
    os.makedirs(out, exist_ok=True)
    if args.fast:
        args.steps = 100
    path = args.data or make_data(os.path.join(out, "points.npy"), 1000 if args.fast else 4000)

    data = load_array(path)  # checks the shape and that every value is finite
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(data), generator=g)
    train, held_out = data[perm[: len(data) // 2]], data[perm[len(data) // 2:]]
    config = unnoise.TrainConfig(steps=args.steps, batch_size=256, lr=2e-3, log_every=25)
    train_model(train, os.path.join(out, "run"), net="mlp",
                net_config=dict(width=64 if args.fast else 256, depth=2 if args.fast else 4),
                parameterization="v", schedule="ddpm", config=config, progress=not args.fast)

    pipe = unnoise.load(os.path.join(out, "run"))  # samples come back in the data's own units
    samples = pipe.sample(len(held_out), sampler="dpmpp_2m", steps=25, generator=g)
    proj = torch.Generator().manual_seed(1)
    swd = sliced_wasserstein(samples, held_out, generator=proj)
    floor = sliced_wasserstein(train, held_out, generator=torch.Generator().manual_seed(1))
    # a baseline that knows only the mean and covariance: how much better than a Gaussian fit?
    mean, cov = train.double().mean(0), torch.cov(train.double().T)
    gauss = torch.distributions.MultivariateNormal(mean, cov).sample((len(held_out),))
    swd_gauss = sliced_wasserstein(gauss, held_out, generator=torch.Generator().manual_seed(1))
    result = {"swd_samples": swd, "swd_floor": floor, "swd_gaussian_fit": swd_gauss,
              "sample_mean": samples.mean(0).tolist(), "data_mean": held_out.mean(0).tolist()}
    np.save(os.path.join(out, "samples.npy"), samples.numpy())
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
