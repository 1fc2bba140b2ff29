"""The ``molecules`` kind scored by the MOSES benchmark's own metrics (``molsets``), with a scaling curve.

One run of ``unnoise train --data train.smi`` on a subset of the MOSES training set (the SMILES shipped inside
the ``molsets`` wheel) is stopped at several budgets of training examples seen; at each, ``n`` molecules are
sampled and scored by ``moses.get_all_metrics`` against the MOSES test and scaffold-test sets (validity,
uniqueness, novelty, FCD, SNN, Frag, Scaf, IntDiv, Filters).  The same metrics of ``n`` molecules of the MOSES
training set itself are the floor: FCD is biased upwards at small ``n`` (MOSES scores 30 000 samples), so the
model's FCD is to be read against that floor at the same ``n``, and against the anchors only at equal ``n``.

MOSES 0.3.1 was written for RDKit and pandas of 2020: it imports ``rdkit.six`` (gone from RDKit) and calls
``DataFrame.append`` (gone from pandas 2).  :func:`import_moses` supplies both before importing it (the
replacements do what the originals did), so the metric code itself runs unchanged.
Install: ``make install-bench`` (``molsets`` and ``fcd_torch`` without their pinned dependencies).

Run: ``python benchmarks/molecules_moses.py --budgets 8000,16000,32000,64000 --n 1000``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import types

import torch

ANCHORS = {  # MOSES README (mean of 3 runs) and the DiGress paper's MOSES table
    "CharRNN": {"valid": 0.975, "FCD/TestSF": 0.520},
    "VAE": {"valid": 0.977, "FCD/TestSF": 0.567},
    "JTN-VAE": {"valid": 1.0, "FCD/TestSF": 0.938},
    "DiGress": {"valid": 0.857, "unique": 1.0, "novel": 0.950, "Filters": 0.971, "FCD/Test": 1.19, "SNN/Test": 0.52},
}
SHOWN = ("valid", "connected", "unique", "Novelty", "FCD/Test", "FCD/TestSF", "SNN/Test", "SNN/TestSF", "Frag/Test",
         "Scaf/Test", "Scaf/TestSF", "IntDiv", "Filters")


def import_moses():
    """The ``moses`` package (``molsets``) with the two pieces of 2020's RDKit and pandas it needs; ImportError
    when it or ``fcd_torch`` is not installed."""
    import pandas as pd
    import rdkit

    if "rdkit.six" not in sys.modules:
        six = types.ModuleType("rdkit.six")
        six.iteritems = lambda d: iter(d.items())
        six.PY3 = True
        rdkit.six = six
        sys.modules["rdkit.six"] = six
    if not hasattr(pd.DataFrame, "append"):
        def append(self, other, ignore_index=False, sort=False):
            return pd.concat([self, other], ignore_index=ignore_index, sort=sort)
        pd.DataFrame.append = append
    import moses
    return moses


def score(moses, smiles: list, n_jobs: int = 1) -> dict:
    """MOSES's metrics of generated SMILES (None for invalid ones, as MOSES expects), as floats."""
    gen = [s if s else "INVALID" for s in smiles]
    valid = sum(1 for s in smiles if s) / len(smiles)
    if valid * len(smiles) < 2:  # MOSES's other metrics need valid molecules
        return {"valid": valid}
    metrics = moses.get_all_metrics(gen, n_jobs=n_jobs, device="cpu", batch_size=256, k=[len(gen)])
    return {("unique" if k.startswith("unique") else k): float(v) for k, v in metrics.items()}


def split(train: list, subset: int, n: int, seed: int = 0) -> tuple[list, list]:
    """A seeded random ``subset`` of the MOSES training set to train on, and ``n`` other training molecules (the
    file is ordered, so neither may be a slice of it)."""
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    return [train[i] for i in idx[:subset]], [train[i] for i in idx[subset:subset + n]]


def report(curve: list, path: str | None) -> None:
    """Print the curve (one dict of metrics per budget) as JSON, and write it to ``path`` when one is given."""
    print(json.dumps(curve, indent=1))
    if path:
        with open(path, "w") as f:
            json.dump(curve, f, indent=1)


def table(rows: dict) -> str:
    head = "| | " + " | ".join(SHOWN) + " |\n|---|" + "---|" * len(SHOWN) + "\n"
    return head + "\n".join(f"| {name} | " + " | ".join("" if r.get(k) is None else f"{r[k]:.3f}" for k in SHOWN)
                            + " |" for name, r in rows.items())


def main_(args) -> None:
    from unnoise.cli import main

    import unnoise

    torch.set_num_threads(1)
    moses = import_moses()
    from moses.dataset import get_dataset
    train = list(get_dataset("train"))
    budgets = [int(b) for b in args.budgets.split(",")]
    rows, curve = {}, []
    t0 = time.perf_counter()
    subset, others = split(train, args.subset, args.n)
    floor = score(moses, others)
    rows[f"MOSES train, {args.n} molecules (floor at this n)"] = floor
    print(f"floor in {time.perf_counter() - t0:.0f} s: {json.dumps({k: floor.get(k) for k in SHOWN})}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "train.smi")
        with open(data, "w") as f:
            f.write("\n".join(subset) + "\n")
        run = os.path.join(tmp, "run")
        seen, train_s = 0, 0.0
        for budget in budgets:
            steps = budget // args.batch_size
            t = time.perf_counter()
            extra = ["--resume", run] if seen else []
            assert main(["train", "--data", data, "--out", run, "--steps", str(steps), "--batch-size",
                         str(args.batch_size), "--lr", str(args.lr), "--width", str(args.width), "--depth",
                         str(args.depth), "--graph-features", args.graph_features, "--weighting", args.weighting,
                         "--seed", str(args.seed), "--checkpoint-every", str(steps), "--log-every", "100",
                         "--device", args.device, "--num-workers", "0", *extra]) == 0
            train_s += time.perf_counter() - t
            seen = steps * args.batch_size
            t = time.perf_counter()
            pipe = unnoise.load(run, device=args.device)
            smiles = pipe.sample(args.n, steps=args.steps, generator=torch.Generator().manual_seed(args.seed))
            sample_s = time.perf_counter() - t
            r = score(moses, smiles)
            r["connected"] = sum(1 for m in smiles if m and "." not in m) / len(smiles)  # one molecule, not A.B
            r.update(seen=seen, train_minutes=train_s / 60, sample_seconds=sample_s)
            rows[f"unnoise, {seen:,} examples seen ({train_s / 60:.1f} min)"] = r
            curve.append({k: r[k] for k in ("seen", "train_minutes", "sample_seconds", "valid", "connected", "FCD/Test",
                                            "FCD/TestSF", "unique", "Novelty")
                          if k in r})
            print(json.dumps(curve[-1]), flush=True)
        if args.keep:
            shutil.copytree(run, args.keep, dirs_exist_ok=True)
    print(table(rows))
    report(curve, args.json)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budgets", default="8000,16000,32000,64000", help="training examples seen, comma-separated")
    p.add_argument("--n", type=int, default=1000, help="molecules sampled and scored per budget")
    p.add_argument("--subset", type=int, default=100000, help="MOSES training SMILES in the training file")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--graph-features", default="molecular", choices=("molecular", "walks"),
                   help="the network's structure features (unnoise train --graph-features)")
    p.add_argument("--weighting", default="uniform", choices=("uniform", "crossentropy"),
                   help="the training loss: the NELBO (uniform) or DiGress's cross-entropy (unnoise train --weighting)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the curve (one dict of metrics per budget) here, for molecules_plot.py")
    p.add_argument("--seed", type=int, default=0, help="training and sampling seed (the data subset stays the same)")
    p.add_argument("--steps", type=int, default=100, help="sampling steps")
    p.add_argument("--device", default="cpu", help="where to train and sample (cpu, cuda, auto)")
    p.add_argument("--keep", default=None, metavar="DIR", help="copy the trained run here at the end")
    main_(p.parse_args())
