"""The scaling curves of the MOSES benchmark as one figure: validity and FCD/Test against training examples seen,
one line per run, from the ``--json`` curves of ``molecules_moses.py`` and ``molecules_digress.py``.

Run: ``python benchmarks/molecules_plot.py "unnoise, seed 0=a.json" "DiGress=b.json" --floor 5.74
--out docs/figures/molecules_scaling.png``.
"""
from __future__ import annotations

import argparse
import json

from matplotlib.ticker import NullFormatter

from unnoise.plotting import _save, subplots


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("curves", nargs="+", metavar="LABEL=PATH", help="a curve written by --json, with its legend label")
    p.add_argument("--floor", type=float, default=None,
                   help="FCD/Test of as many MOSES training molecules (the best a model can show at that n)")
    p.add_argument("--out", required=True, help="the PNG to write")
    args = p.parse_args()
    fig, (left, right) = subplots(1, 2, figsize=(9, 3.4))
    for item in args.curves:
        label, _, path = item.rpartition("=")
        if not label:
            raise SystemExit(f"molecules_plot.py: give each curve as LABEL=PATH, got {item!r}")
        try:
            with open(path) as f:
                curve = json.load(f)
        except (OSError, ValueError) as e:
            raise SystemExit(f"molecules_plot.py: cannot read the curve {path!r}: {e}")
        style = dict(marker="o", ls="--" if label.startswith("DiGress") else "-", label=label)
        left.plot([c["seen"] for c in curve], [c["valid"] for c in curve], **style)
        scored = [c for c in curve if "FCD/Test" in c]
        right.plot([c["seen"] for c in scored], [c["FCD/Test"] for c in scored], **style)
    if args.floor is not None:
        right.axhline(args.floor, color="grey", lw=0.8, ls=":", label="MOSES training molecules, same n")
    for ax, title in ((left, "valid share of samples"), (right, "FCD to the MOSES test set (lower is better)")):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: the minor labels run into each other
        ax.set_xlabel("training examples seen")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    left.set_ylim(0, None)
    right.legend(fontsize=8)
    _save(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
