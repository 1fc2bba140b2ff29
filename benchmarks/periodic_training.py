"""Periodic against Euclidean training on the same angles, budget and network.

Data: 4000 exact samples of a 2-D ``VonMisesMixture`` with both modes straddling the cut at +-pi in the first
angle (means (pi - 0.1, 1.0) and (-pi + 0.3, -1.5), concentrations (8, 4) and (6, 10)).  Two runs of
``unnoise train`` with the same MLP (width 64, depth 2), steps, batch, learning rate and seed:

* **periodic**: ``--periodic``: the ``angles`` kind, wrapped Gaussian noise on the torus, (cos, sin) features;
* **Euclidean**: the same file without ``--periodic``: the ``vectors`` kind (standardised numbers, DDPM
  schedule, v-prediction), which is what treating angles as ordinary numbers means.

4000 samples of each (default sampler, 40 steps) are scored on the seam angle theta_1: the total variation
between their histogram on the circle (36 bins, values wrapped) and that of 100 000 exact samples (beside the
same TV of 4000 exact samples: the floor), the share of samples within pi/6 of +-pi (exact: 0.755) and the
share outside [-pi, pi) before wrapping.  Run: ``python benchmarks/periodic_training.py [--steps 1500]``.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import numpy as np
import torch

import unnoise
from unnoise.cli import main
from unnoise.torus import wrap


def mixture():
    return unnoise.analytic.VonMisesMixture(means=[[math.pi - 0.1, 1.0], [-math.pi + 0.3, -1.5]],
                                            concentrations=[[8.0, 4.0], [6.0, 10.0]], weights=[0.5, 0.5])


def scores(x: torch.Tensor, ref: torch.Tensor) -> dict:
    theta = wrap(x[:, 0].double())
    h = torch.histc(theta, 36, -math.pi, math.pi) / len(x)
    h_ref = torch.histc(ref[:, 0], 36, -math.pi, math.pi) / len(ref)
    return {"tv": 0.5 * float((h - h_ref).abs().sum()),
            "seam": float((theta.abs() > math.pi - math.pi / 6).double().mean()),
            "outside": float(((x < -math.pi) | (x >= math.pi)).any(1).double().mean())}


def run(steps: int) -> None:
    torch.set_num_threads(1)
    vm = mixture()
    ref = vm.sample(100000, generator=torch.Generator().manual_seed(9))
    floor = scores(vm.sample(4000, generator=torch.Generator().manual_seed(5)), ref)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "angles.npy")
        np.save(data, vm.sample(4000, generator=torch.Generator().manual_seed(2)).float().numpy())
        common = ["--width", "64", "--depth", "2", "--steps", str(steps), "--batch-size", "256", "--lr", "2e-3",
                  "--checkpoint-every", "0", "--log-every", "100", "--device", "cpu"]
        rows = []
        for name, extra in (("periodic (--periodic)", ["--periodic"]), ("Euclidean (vectors)", [])):
            out = os.path.join(tmp, name.split()[0])
            t0 = time.perf_counter()
            assert main(["train", "--data", data, "--out", out, *extra, *common]) == 0
            seconds = time.perf_counter() - t0
            x = unnoise.load(out).sample(4000, steps=40, generator=torch.Generator().manual_seed(3))
            rows.append((name, seconds, scores(x, ref)))
    print(f"\n{'run':24} {'train s':>8} {'TV theta_1':>11} {'near +-pi':>10} {'off circle':>11}")
    for name, seconds, s in rows:
        print(f"{name:24} {seconds:8.1f} {s['tv']:11.3f} {s['seam']:10.3f} {s['outside']:11.3f}")
    print(f"{'exact samples (floor)':24} {'':>8} {floor['tv']:11.3f} {floor['seam']:10.3f} {floor['outside']:11.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    run(parser.parse_args().steps)
