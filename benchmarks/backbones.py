"""Protein backbones: the residue transformer on the torus against the same network under Euclidean noise.

Data: the 50 single-chain crystal structures in MDAnalysisTests' ``data/dssp`` folder (``pip install
mdanalysistests``; the package is LGPL-3.0+, the structures are PDB entries, wwPDB data under CC0), without its two
test artefacts (``1mr1D_failing``, a copy with an atom removed, and ``wrong_hydrogens``), or ``--data FOLDER``.  The
chains are split by file: every fifth file (sorted by name) is held out, the rest train.

Two runs on windows of ``--window`` residues with all six angles, the same :class:`unnoise.nets.ResidueTransformer`
(width, depth, heads), steps, batch, learning rate and seed:

* **wrapped**: ``unnoise train --data TRAIN_FOLDER`` (the ``backbones`` kind: wrapped Gaussian noise on the torus,
  (cos, sin) input, eps-network on the wrapped score);
* **Euclidean**: the same windows as plain numbers: the network without the periodic input, DDPM schedule,
  v-prediction (the defaults of the ``vectors`` kind); samples wrapped into [-pi, pi) at the end.

``--n`` samples of each (default sampler, 50 steps) are rebuilt with ideal bond lengths and scored against the
held-out windows: the total variation between (phi, psi) histograms on the torus (36 x 36 bins of 10 degrees, and
12 x 12 bins of 30 degrees; the first residue of a window is left out, its phi has no atoms in the window), beside
the same distance from as many training windows (the data's own floor); the share of samples with an angle off
the torus (outside [-pi, pi) before wrapping); the share of peptide bonds in the window with omega within 30
degrees of trans (omega sits on the cut at +-pi); the share of backbones without a clash (two CA atoms at least
two residues apart closer than 3 A); and the secondary structure of each window by biotite's P-SEA
(``annotate_sse``: helix a, strand b, coil c).  Run: ``python benchmarks/backbones.py [--steps 1500]``.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import tempfile
import time

import numpy as np
import torch

import unnoise
from unnoise import proteins
from unnoise.cli import main
from unnoise.plotting import plot_ramachandran
from unnoise.torus import wrap
from unnoise.train import TrainConfig, train_model

SKIP = ("1mr1D_failing", "wrong_hydrogens")


def mdanalysis_structures() -> str:
    spec = importlib.util.find_spec("MDAnalysisTests")  # found, not imported (importing needs MDAnalysis)
    if spec is None:
        raise SystemExit("the default data are MDAnalysisTests' structures: pip install mdanalysistests "
                         "(or give --data FOLDER)")
    return os.path.join(spec.submodule_search_locations[0], "data", "dssp")


def split(folder: str, tmp: str) -> tuple[str, str]:
    files = [f for f in proteins.structure_files(folder) if not any(s in f for s in SKIP)]
    train, held = os.path.join(tmp, "train"), os.path.join(tmp, "held_out")
    for i, f in enumerate(files):
        dest = held if i % 5 == 4 else train
        os.makedirs(dest, exist_ok=True)
        os.symlink(os.path.abspath(f), os.path.join(dest, os.path.basename(f)))
    return train, held


def rama_tv(a: torch.Tensor, b: torch.Tensor, bins: int = 36) -> float:
    """Total variation between the (phi, psi) histograms of two sets of pairs ``(n, 2)`` on the torus."""
    def hist(x):
        idx = ((wrap(x.double()) + math.pi) / (2 * math.pi) * bins).long().clamp(0, bins - 1)
        h = torch.bincount(idx[:, 0] * bins + idx[:, 1], minlength=bins * bins).double()
        return h / h.sum()
    return 0.5 * float((hist(a) - hist(b)).abs().sum())


def phi_psi(x: torch.Tensor) -> torch.Tensor:
    return x[:, 1:, :2].reshape(-1, 2)


def sse_shares(coords: torch.Tensor) -> dict:
    letters = np.concatenate([proteins.secondary_structure(c.numpy()) for c in coords])
    return {k: float(np.mean(letters == k)) for k in "abc"}


def trans(x: torch.Tensor) -> float:
    """The share of peptide bonds within the window whose omega is within 30 degrees of trans (180)."""
    return float((wrap(x[:, :-1, 2].double() - math.pi).abs() < math.radians(30)).double().mean())


def scores(x: torch.Tensor, coords: torch.Tensor, held_pairs: torch.Tensor) -> dict:
    return {"tv": rama_tv(phi_psi(x), held_pairs), "tv30": rama_tv(phi_psi(x), held_pairs, bins=12), "trans": trans(x),
            "clash_free": 1 - float(proteins.ca_clashes(coords).double().mean()), **sse_shares(coords)}


def run(args) -> None:
    torch.set_num_threads(1)
    folder = args.data or mdanalysis_structures()
    with tempfile.TemporaryDirectory() as tmp:
        train_dir, held_dir = split(folder, tmp)
        held_segments = proteins.load_chains(held_dir, args.window + 2)
        held = proteins.BackboneWindows(held_segments, args.window)
        train = proteins.BackboneWindows(proteins.load_chains(train_dir, args.window + 2), args.window)
        held_x = torch.stack([held[i][0] for i in range(len(held))])
        held_coords = []
        for s in held_segments:  # the true coordinates of every held-out window
            c = torch.as_tensor(s.coords)
            held_coords += [c[k:k + args.window] for k in range(1, len(s) - 1 - args.window + 1)]
        held_coords = torch.stack(held_coords)
        held_pairs = phi_psi(held_x)
        g = torch.Generator().manual_seed(0)
        train_pairs = phi_psi(torch.stack([train[int(i)][0] for i in torch.randperm(len(train), generator=g)[:args.n]]))
        print(f"train: {len(train.chains)} segments, {len(train)} windows; held out: {len(held.chains)} segments, "
              f"{len(held)} windows of {args.window} residues")
        net = {"width": args.width, "depth": args.depth, "heads": 4, "max_distance": args.window}
        rows = []
        wrapped_run = os.path.join(tmp, "wrapped")
        t0 = time.perf_counter()
        assert main(["train", "--data", train_dir, "--window", str(args.window), "--min-chain-length",
                     str(args.window + 2), "--width", str(args.width), "--depth", str(args.depth),
                     "--steps", str(args.steps), "--batch-size", "128", "--lr", "1e-3", "--checkpoint-every", "0",
                     "--log-every", "100", "--device", "cpu", "--out", wrapped_run]) == 0
        rows.append(("wrapped (backbones kind)", time.perf_counter() - t0, wrapped_run))
        euclid_run = os.path.join(tmp, "euclidean")
        t0 = time.perf_counter()
        config = TrainConfig(steps=args.steps, batch_size=128, lr=1e-3, checkpoint_every=0, log_every=100,
                             device="cpu")
        torch.manual_seed(0)
        train_model(train, euclid_run, net="residue_transformer", net_config={**net, "periodic": False},
                    parameterization="v", schedule="ddpm", config=config, normalize=False,
                    info={"kind": "backbones", "backbones": {"angles": list(proteins.ANGLES),
                                                              "window": args.window}}, progress=False)
        rows.append(("Euclidean (same network)", time.perf_counter() - t0, euclid_run))
        results, panels = [], {"held-out chains (each residue once)": held.all_angles()[:, :2]}
        for name, seconds, run_dir in rows:
            pipe = unnoise.load(run_dir)
            raw = pipe.sample(args.n, steps=50, generator=torch.Generator().manual_seed(3))
            x = wrap(raw)
            coords = proteins.rebuild(x.double())
            outside = float(((raw < -math.pi) | (raw >= math.pi)).flatten(1).any(1).double().mean())
            results.append((name, seconds, {**scores(x, coords, held_pairs), "outside": outside}))
            panels[name.split(" (")[0]] = phi_psi(x)
        data = {"tv": rama_tv(train_pairs, held_pairs), "tv30": rama_tv(train_pairs, held_pairs, bins=12),
                "outside": 0.0, "trans": trans(held_x),
                "clash_free": 1 - float(proteins.ca_clashes(held_coords).double().mean()), **sse_shares(held_coords)}
    print(f"\n{'backbones':34} {'train s':>8} {'TV 10 deg':>10} {'TV 30 deg':>10} {'off torus':>10} "
          f"{'trans omega':>12} {'clash-free':>11} {'helix':>6} {'strand':>7} {'coil':>6}")
    for name, seconds, s in results + [("held-out chains (train chains: TV)", None, data)]:
        t = f"{seconds:8.1f}" if seconds is not None else " " * 8
        print(f"{name:34} {t} {s['tv']:10.3f} {s['tv30']:10.3f} {s['outside']:10.3f} {s['trans']:12.3f} "
              f"{s['clash_free']:11.3f} {s['a']:6.3f} {s['b']:7.3f} {s['c']:6.3f}")
    if args.plot:
        plot_ramachandran(panels, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="a folder of PDB/mmCIF files (default: MDAnalysisTests' dssp set)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000, help="samples per run")
    parser.add_argument("--plot", default=None, help="write the Ramachandran plots (PNG)")
    run(parser.parse_args())
