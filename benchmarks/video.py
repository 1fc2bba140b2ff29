"""Video on one CPU core: prediction and interpolation of held-out deterministic moving digits, beside the
baselines "copy the last known frame" and "linear blend"; training examples/s and peak memory by clip length.

One run of :func:`unnoise.video.train` (a small factorised space-time U-Net, frame-mask training) on
deterministic moving digits (one bundled 8x8 digit bouncing in a ``--size`` canvas, ``--frames`` frames per
clip, training digits only).  Held-out clips (another seed, digits never seen in training) are then
completed by :func:`unnoise.video.predict`:

* prediction, 5 frames from 5: frames 0-4 known, frames 5-9 generated; baseline: frame 4 repeated;
* interpolation, 3 between 2: a 7-frame clip with frames 0, 1, 5, 6 known, frames 2-4 generated; baselines:
  frame 1 repeated, and the linear blend ``((5 - t) x_1 + (t - 1) x_5) / 4``;
* generation: ``2 * --eval-clips`` unconditional clips against as many held-out clips, by the Frechet distance
  of per-clip features (each frame's ink and ink centre: where the digit is and how it moves), beside a
  second held-out set (the floor), the same clips with their frames shuffled in time, and their first frame
  repeated.

PSNR (peak-to-peak 2 on [-1, 1]) and SSIM (7x7 uniform window) are averaged over the generated frames of
every clip.  Throughput: each clip length is trained for a few steps in a fresh process, which reports
examples/s after a warm-up step and its peak resident memory (``VmHWM``, reset just before) above the
memory it held before building the model.

Run: ``.venv/bin/python benchmarks/video.py [--train-steps 1000] [--size 16] [--threads 1]``
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

from unnoise import video
from unnoise.data.video import MovingDigits, psnr, ssim
from unnoise.train import TrainConfig

NET = dict(base_channels=16, channel_mult=[1, 2, 2], num_res_blocks=1)


def rss_mib(field: str = "VmHWM") -> float:
    """Peak (``VmHWM``) or current (``VmRSS``) resident memory of this process in MiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Start the peak-memory count afresh (Linux: writing 5 to clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def throughput(frames: int, size: int, batch: int, steps: int) -> dict:
    """Examples/s and peak memory of training on clips of ``frames`` frames (run in a fresh process)."""
    reset_peak()
    before = rss_mib("VmRSS")
    data = MovingDigits(4096, frames=frames, size=size, seed=0)
    cfg = TrainConfig(steps=1, batch_size=batch, device="cpu", num_workers=0, log_every=1000)
    trainer = video.train(data, None, net_config=NET, config=cfg, progress=False)  # one warm-up step
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    elapsed = time.perf_counter() - start
    return {"frames": frames, "examples_per_s": steps * batch / elapsed, "peak_rss_mib": rss_mib(),
            "rss_before_mib": before, "peak_above_start_mib": rss_mib() - before}


def score(pred: torch.Tensor, truth: torch.Tensor, frames: list[int]) -> tuple[float, float]:
    """Mean PSNR and SSIM over ``frames`` of every clip."""
    c, h, w = truth.shape[1], truth.shape[3], truth.shape[4]
    p = pred[:, :, frames].transpose(1, 2).reshape(-1, c, h, w)  # one row per generated frame
    t = truth[:, :, frames].transpose(1, 2).reshape(-1, c, h, w)
    return float(psnr(p, t).mean()), float(ssim(p, t).mean())


def clip_features(x: torch.Tensor) -> torch.Tensor:
    """Per-clip features ``(N, 3 T)``: each frame's ink (mean brightness) and the centre of its ink (row, column),
    so they describe where the digit is and how it moves, not its exact pixels."""
    ink = (x[:, 0].double() + 1) / 2  # (N, T, H, W)
    h, w = ink.shape[-2:]
    mass = ink.sum((-1, -2)).clamp_min(1e-9)
    rows = (ink.sum(-1) * torch.arange(h, dtype=ink.dtype)).sum(-1) / mass / h
    cols = (ink.sum(-2) * torch.arange(w, dtype=ink.dtype)).sum(-1) / mass / w
    return torch.cat([mass / (h * w), rows, cols], 1)


def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussian fits of two feature sets ``(N, d)``."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    evals, evecs = torch.linalg.eigh(ca)
    root = evecs @ torch.diag(evals.clamp_min(0).sqrt()) @ evecs.T
    cross = torch.linalg.eigvalsh(root @ cb @ root).clamp_min(0).sqrt().sum()
    return float(((mu_a - mu_b) ** 2).sum() + ca.trace() + cb.trace() - 2 * cross)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=16, help="canvas side in pixels")
    ap.add_argument("--frames", type=int, default=10, help="training clip length")
    ap.add_argument("--eval-clips", type=int, default=64)
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--throughput", type=int, default=None, help=argparse.SUPPRESS)  # child process: one clip length
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.throughput is not None:
        print(json.dumps(throughput(args.throughput, args.size, 8, 4)))
        return

    t0 = time.perf_counter()
    train_set = MovingDigits(20000, frames=args.frames, size=args.size, seed=0, split="train")
    run = os.path.join(tempfile.mkdtemp(prefix="unnoise-video-"), "run")
    cfg = TrainConfig(steps=args.train_steps, batch_size=args.batch, lr=2e-3, ema_decay=0.995, warmup=50,
                      device="cpu", num_workers=0, log_every=50, seed=0)
    trainer = video.train(train_set, run, net_config=NET, config=cfg, p_past=0.75, p_future=0.35, progress=True)
    train_s = time.perf_counter() - t0
    pipe = video.load(run)
    held_out = MovingDigits(args.eval_clips, frames=10, size=args.size, seed=1, split="test").clips()
    results = {"size": args.size, "train_frames": args.frames, "train_steps": args.train_steps, "batch": args.batch,
               "parameters": sum(p.numel() for p in trainer.denoiser.parameters()), "train_seconds": train_s,
               "final_loss": trainer.loss_smooth, "sample_steps": args.sample_steps}

    t1 = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    pred = video.predict(pipe, held_out, list(range(5)), steps=args.sample_steps, generator=g)
    copy = held_out[:, :, [4]].expand_as(held_out)
    future = list(range(5, 10))
    results["prediction"] = {"model": score(pred, held_out, future), "copy_last": score(copy, held_out, future)}
    clip7 = held_out[:, :, :7]
    interp = video.predict(pipe, clip7, [0, 1, 5, 6], steps=args.sample_steps, generator=g)
    middle = [2, 3, 4]
    blend = clip7.clone()
    for t in middle:
        blend[:, :, t] = ((5 - t) * clip7[:, :, 1] + (t - 1) * clip7[:, :, 5]) / 4
    results["interpolation"] = {"model": score(interp, clip7, middle),
                                "copy_last": score(clip7[:, :, [1]].expand_as(clip7), clip7, middle),
                                "linear_blend": score(blend, clip7, middle)}
    # generation: Frechet distance of clip features against held-out clips, beside references
    n_fd = 2 * args.eval_clips
    reference = clip_features(MovingDigits(n_fd, frames=10, size=args.size, seed=1, split="test").clips())
    other = MovingDigits(n_fd, frames=10, size=args.size, seed=2, split="test").clips()
    generated = pipe.sample(n_fd, steps=args.sample_steps, generator=torch.Generator().manual_seed(3))
    order = torch.randperm(10, generator=torch.Generator().manual_seed(4))
    results["generation_fd"] = {
        "model": frechet(clip_features(generated), reference),
        "real_clips_floor": frechet(clip_features(other), reference),
        "frames_shuffled_in_time": frechet(clip_features(other[:, :, order]), reference),
        "first_frame_repeated": frechet(clip_features(other[:, :, [0]].expand_as(other)), reference)}
    results["eval_seconds"] = time.perf_counter() - t1

    results["throughput"] = []
    for frames in (8, 16):
        out = subprocess.run([sys.executable, __file__, "--throughput", str(frames), "--size", str(args.size),
                              "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        results["throughput"].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results["total_seconds"] = time.perf_counter() - t0

    print(f"\nmoving digits {args.size}x{args.size}, trained {args.train_steps} steps x {args.batch} clips of "
          f"{args.frames} frames in {train_s / 60:.1f} min ({results['parameters']:,} parameters); "
          f"{args.eval_clips} held-out clips, {args.sample_steps} sampling steps")
    print("| task | method | PSNR (dB) | SSIM |\n|---|---|---|---|")
    for task in ("prediction", "interpolation"):
        for method, (p, s) in results[task].items():
            print(f"| {task} | {method} | {p:.2f} | {s:.3f} |")
    print("\n| generated clips | FD of clip features |\n|---|---|")
    for name, value in results["generation_fd"].items():
        print(f"| {name} | {value:.4f} |")
    print("\n| frames | examples/s | peak RSS (MiB) | above start (MiB) |\n|---|---|---|---|")
    for r in results["throughput"]:
        print(f"| {r['frames']} | {r['examples_per_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['peak_above_start_mib']:.0f} |")
    print(f"\ntotal {results['total_seconds'] / 60:.1f} min")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
