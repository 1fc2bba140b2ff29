"""Does a video run use its known frames?  For held-out moving digits with frames 0-4 known, the denoiser's
output on frames 5-9 at a few noise levels is compared with the true known frames, with the known frames of
another clip (the next held-out clip) and with the true known frames but the known-frame mask cleared.

For each sigma: the variance of the output over the unknown frames' pixels, the mean squared change when the
context is swapped and when the mask is cleared (also relative to that variance), and the mean squared error
of the output to the true frames with the true and with the swapped context.  The unknown frames' input is the
same noisy true frames (one noise draw) in every case.  Optionally (``--identity``) also the benchmark's
prediction identity (:mod:`benchmarks.video`'s judge) on the same clips.

Run: ``.venv/bin/python benchmarks/video_context.py RUN [RUN ...] [--clips 32] [--identity]``
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from unnoise import video
from unnoise.data.video import MovingDigits

SIGMAS = (0.1, 0.5, 1.0, 2.0, 5.0, 20.0, 80.0)


def context_use(pipe, clips: torch.Tensor, sigmas=SIGMAS, seed: int = 0) -> list[dict]:
    """Rows of the context and mask sensitivities of ``pipe``'s denoiser on ``clips`` (data units)."""
    den = pipe.denoiser
    held = pipe.encode(clips)
    other = held.roll(1, 0)
    known = torch.zeros(len(held), held.shape[2], dtype=torch.bool)
    known[:, :5] = True
    m = known[:, None, :, None, None]
    unk = ~m.expand_as(held)
    eps = torch.randn(held.shape, generator=torch.Generator().manual_seed(seed))
    rows = []
    for sigma in sigmas:
        noisy = held + sigma * eps

        def out(ctx, mask):
            with torch.no_grad():
                return video._conditioned(den, ctx, mask)(torch.where(m, ctx, noisy), torch.tensor(sigma))
        a, b, c = out(held, known), out(other, known), out(held, torch.zeros_like(known))
        var = float(a[unk].var())
        d_ctx, d_mask = float((a - b)[unk].pow(2).mean()), float((a - c)[unk].pow(2).mean())
        rows.append({"sigma": sigma, "output_var": var, "swap_context": d_ctx, "swap_context_rel": d_ctx / var,
                     "clear_mask": d_mask, "clear_mask_rel": d_mask / var,
                     "error_true_context": float((a - held)[unk].pow(2).mean()),
                     "error_other_context": float((b - held)[unk].pow(2).mean())})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--identity", action="store_true", help="also the prediction identity (frames 5-9 from 0-4)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    held_set = MovingDigits(args.clips, frames=10, size=args.size, seed=1, split="test")
    clips = held_set.clips()
    for run in args.runs:
        pipe = video.load(run)
        print(f"\n{run}\n| sigma | output variance | swap context: MSE (rel) | clear mask: MSE (rel) | "
              "error, true context | error, other context |\n|---:|---:|---:|---:|---:|---:|")
        for r in context_use(pipe, clips):
            print(f"| {r['sigma']:g} | {r['output_var']:.3f} | {r['swap_context']:.4f} ({r['swap_context_rel']:.3f}) | "
                  f"{r['clear_mask']:.4f} ({r['clear_mask_rel']:.3f}) | {r['error_true_context']:.4f} | "
                  f"{r['error_other_context']:.4f} |")
        if args.identity:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from video import DigitJudge, identity, score
            labels = torch.stack([held_set.digit_labels(i)[0] for i in range(len(held_set))])
            pred = video.predict(pipe, clips, list(range(5)), steps=20, generator=torch.Generator().manual_seed(0))
            judged = identity(DigitJudge()(pred[:, 0]), labels, list(range(5, 10)))
            print(f"prediction: PSNR/SSIM {score(pred, clips, list(range(5, 10)))}, identity {judged}")


if __name__ == "__main__":
    main()
