"""Video on one CPU core: prediction and interpolation of held-out deterministic moving digits, beside the
baselines "copy the last known frame" and "linear blend"; training examples/s and peak memory by clip length.

One run of :func:`unnoise.video.train` (a small factorised space-time U-Net, frame-mask training) on
deterministic moving digits (one bundled 8x8 digit bouncing in a ``--size`` canvas, ``--frames`` frames per
clip, training digits only).  Held-out clips (another seed, digits never seen in training) are then
completed by :func:`unnoise.video.predict`:

* prediction, 5 frames from 5: frames 0-4 known, frames 5-9 generated; baseline: frame 4 repeated;
* interpolation, 3 between 2: a 7-frame clip with frames 0, 1, 5, 6 known, frames 2-4 generated; baselines:
  frame 1 repeated, and the linear blend ``((5 - t) x_1 + (t - 1) x_5) / 4``;
* prediction from one frame: frame 0 known, frames 1-9 generated (the digit's identity only, on odd and even
  frames apart: the one known frame is an odd distance from the one and an even distance from the other);
* generation: ``2 * --eval-clips`` unconditional clips against as many held-out clips, by the Frechet distance
  of per-clip features (each frame's ink and ink centre: where the digit is and how it moves), beside a
  second held-out set (the floor), the same clips with their frames shuffled in time, and their first frame
  repeated.

PSNR (peak-to-peak 2 on [-1, 1]) and SSIM (7x7 uniform window) are averaged over the generated frames of
every clip.

The digit's identity: a judge (:class:`DigitJudge`: each frame cut to a 16x16 window centred on its ink, an RBF
SVM trained on the same windows of the training split's digit images) names the digit of every frame; its
accuracy on the held-out digit images and on the held-out clips' true frames is reported first.  For
prediction and interpolation: the share of generated frames judged as the clip's true digit, and the share of
clips whose every generated frame is, beside the baselines and the true frames.  For generation (no true
digit): the share of clips judged the same digit in every frame, beside held-out clips, clips whose every frame
comes from a different held-out clip (the digit changes), and uniform noise (which the judge, naming a digit
for anything, calls one digit throughout); with how many digits the clips show and the median RMS distance of
a frame's window to the nearest training digit's (does it look like a digit at all).  Throughput: each clip length is trained for a few steps in a fresh process, which reports
examples/s after a warm-up step and its peak resident memory (``VmHWM``, reset just before) above the
memory it held before building the model.

Run: ``.venv/bin/python benchmarks/video.py [--train-steps 1000] [--size 16] [--threads 1] [--run DIR]``
(scikit-learn for the judge)
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

from sklearn.svm import SVC

from unnoise import video
from unnoise.data.images import load_digits
from unnoise.data.video import MovingDigits, center_on_ink, psnr, ssim, write_strip
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


def throughput(frames: int, size: int, batch: int, steps: int, net: dict = NET) -> dict:
    """Examples/s and peak memory of training on clips of ``frames`` frames (run in a fresh process)."""
    reset_peak()
    before = rss_mib("VmRSS")
    data = MovingDigits(4096, frames=frames, size=size, seed=0)
    cfg = TrainConfig(steps=1, batch_size=batch, device="cpu", num_workers=0, log_every=1000)
    trainer = video.train(data, None, net_config=net, config=cfg, progress=False)  # one warm-up step
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


class DigitJudge:
    """Which digit (0-9) each frame shows: the frame cut to a window twice the digit's side centred on its ink
    (:func:`unnoise.data.video.center_on_ink`, so the digit is judged wherever it moved), classified by an RBF
    support-vector machine trained on the same windows of the training split's digit images (the first
    ``MovingDigits.TRAIN_DIGITS`` bundled digits, the ones the video model saw), each also shifted by one pixel
    up, down, left and right.  Held-out clips show the other digits, unseen by the judge too."""

    def __init__(self, digit_size: int = 8):
        images, labels, _ = load_digits(digit_size)
        self.side = 2 * digit_size
        windows = center_on_ink(images[:MovingDigits.TRAIN_DIGITS, 0], self.side)
        shifted = [windows] + [torch.roll(windows, s, d) for s, d in ((1, 1), (-1, 1), (1, 2), (-1, 2))]
        x = torch.cat(shifted).reshape(-1, self.side**2).numpy()
        self.svm = SVC(C=10, gamma=0.05).fit(x, labels[:MovingDigits.TRAIN_DIGITS].repeat(len(shifted)).numpy())
        self.train_windows = windows.reshape(len(windows), -1).double()
        self.digits, self.labels = images[MovingDigits.TRAIN_DIGITS:, 0], labels[MovingDigits.TRAIN_DIGITS:]

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """Judged digits of frames ``(..., H, W)`` in ``[-1, 1]``: ``(...)``."""
        windows = center_on_ink(frames.float(), self.side)
        flat = windows.reshape(-1, self.side**2).numpy()
        return torch.from_numpy(self.svm.predict(flat)).long().reshape(frames.shape[:-2])

    def nearest_rms(self, frames: torch.Tensor) -> torch.Tensor:
        """RMS pixel distance of each frame's window to the nearest training digit's window ``(...)``: how
        much a frame looks like some digit at all (the judge names a digit for any frame, noise included)."""
        flat = center_on_ink(frames.float(), self.side).reshape(-1, self.side**2).double()
        nearest = torch.cat([torch.cdist(part, self.train_windows).min(1).values for part in flat.split(1024)])
        return (nearest / self.side).reshape(frames.shape[:-2])

    def held_out_accuracy(self) -> float:
        """Share of the held-out digit images (each once, on its own) judged right."""
        return float((self(self.digits) == self.labels).double().mean())


def identity(judged: torch.Tensor, labels: torch.Tensor, frames: list[int]) -> dict:
    """Of judged digits ``(N, T)`` against each clip's digit ``(N,)`` over ``frames``: the share of frames
    judged as the clip's digit and the share of clips whose every one of those frames is."""
    right = judged[:, frames] == labels[:, None]
    return {"frames": float(right.double().mean()), "clips_all_frames": float(right.all(1).double().mean())}


def consistency(judge: DigitJudge, clips: torch.Tensor) -> dict:
    """Of clips ``(N, 1, T, H, W)``: the share judged the same digit in every frame, the share of pairs of frames an
    odd and an even number of frames apart judged the same digit (equal for a clip that keeps its digit, or
    changes it at random), the mean share of a clip's frames judged as its most frequent digit, how many of the 10 digits are some clip's most frequent, and the
    median over frames of the RMS distance to the nearest training digit (does a frame look like a digit)."""
    judged = judge(clips[:, 0])
    mode = judged.mode(1).values
    pairs = {parity: torch.cat([(judged[:, d:] == judged[:, :-d]).flatten() for d in range(1, judged.shape[1])
                                if d % 2 == parity]) for parity in (0, 1)}
    return {"same_every_frame": float((judged == judged[:, :1]).all(1).double().mean()),
            "same_at_odd_distance": float(pairs[1].double().mean()),
            "same_at_even_distance": float(pairs[0].double().mean()),
            "frames_as_clip_mode": float((judged == mode[:, None]).double().mean()),
            "digits_seen": len(set(mode.tolist())),
            "nearest_digit_rms": float(judge.nearest_rms(clips[:, 0]).median())}


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
    ap.add_argument("--figure", default=None, help="also write a PNG strip here: 4 held-out clips, each above its "
                    "prediction (frames 5-9 from 0-4), then 4 unconditional clips")
    ap.add_argument("--net", default=None, help="network settings over the defaults, as JSON, e.g. "
                    "'{\"spacetime_levels\": [2]}'")
    ap.add_argument("--run", default=None, help="train into this run folder, or reuse the run already there "
                    "(then the training time is not measured)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = dict(NET, **json.loads(args.net)) if args.net else NET
    if args.throughput is not None:
        print(json.dumps(throughput(args.throughput, args.size, 8, 4, net)))
        return

    t0 = time.perf_counter()
    train_set = MovingDigits(20000, frames=args.frames, size=args.size, seed=0, split="train")
    run = args.run or os.path.join(tempfile.mkdtemp(prefix="unnoise-video-"), "run")
    cfg = TrainConfig(steps=args.train_steps, batch_size=args.batch, lr=2e-3, ema_decay=0.995, warmup=50,
                      device="cpu", num_workers=0, log_every=50, seed=0)
    reused = os.path.exists(os.path.join(run, "config.json"))
    final_loss = None
    if not reused:
        final_loss = video.train(train_set, run, net_config=net, config=cfg, p_past=0.75, p_future=0.35, progress=True).loss_smooth
    train_s = None if reused else time.perf_counter() - t0
    pipe = video.load(run)
    held_set = MovingDigits(args.eval_clips, frames=10, size=args.size, seed=1, split="test")
    held_out = held_set.clips()
    labels = torch.stack([held_set.digit_labels(i)[0] for i in range(len(held_set))])
    results = {"net": net, "size": args.size, "train_frames": args.frames, "train_steps": args.train_steps, "batch": args.batch,
               "parameters": sum(p.numel() for p in pipe.denoiser.parameters()), "train_seconds": train_s,
               "final_loss": final_loss, "sample_steps": args.sample_steps}

    t1 = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    pred = video.predict(pipe, held_out, list(range(5)), steps=args.sample_steps, generator=g)
    copy = held_out[:, :, [4]].expand_as(held_out)
    future = list(range(5, 10))
    results["prediction"] = {"model": score(pred, held_out, future), "copy_last": score(copy, held_out, future)}
    judge = DigitJudge()
    judged_true = judge(held_out[:, 0])
    results["judge"] = {"held_out_digits": judge.held_out_accuracy(),
                        "held_out_frames": float((judged_true == labels[:, None]).double().mean())}
    results["prediction_identity"] = {"model": identity(judge(pred[:, 0]), labels, future),
                                      "copy_last": identity(judge(copy[:, 0]), labels, future),
                                      "true_frames": identity(judged_true, labels, future)}
    clip7 = held_out[:, :, :7]
    interp = video.predict(pipe, clip7, [0, 1, 5, 6], steps=args.sample_steps, generator=g)
    middle = [2, 3, 4]
    blend = clip7.clone()
    for t in middle:
        blend[:, :, t] = ((5 - t) * clip7[:, :, 1] + (t - 1) * clip7[:, :, 5]) / 4
    results["interpolation"] = {"model": score(interp, clip7, middle),
                                "copy_last": score(clip7[:, :, [1]].expand_as(clip7), clip7, middle),
                                "linear_blend": score(blend, clip7, middle)}
    results["interpolation_identity"] = {"model": identity(judge(interp[:, 0]), labels, middle),
                                         "copy_last": identity(judge(clip7[:, 0, [1]].expand_as(clip7[:, 0])), labels, middle),
                                         "linear_blend": identity(judge(blend[:, 0]), labels, middle),
                                         "true_frames": identity(judged_true[:, :7], labels, middle)}
    # prediction from one frame: each later frame has the known one only at its own distance, odd or even
    one = video.predict(pipe, held_out, [0], steps=args.sample_steps, generator=g)
    judged_one = judge(one[:, 0])
    results["one_frame_identity"] = {
        name: {**identity(judged, labels, list(range(1, 10))),
               "odd_frames": identity(judged, labels, [1, 3, 5, 7, 9])["frames"],
               "even_frames": identity(judged, labels, [2, 4, 6, 8])["frames"]}
        for name, judged in (("model", judged_one), ("true_frames", judged_true))}
    # generation: Frechet distance of clip features against held-out clips, beside references
    n_fd = 2 * args.eval_clips
    reference_clips = MovingDigits(n_fd, frames=10, size=args.size, seed=1, split="test").clips()
    reference = clip_features(reference_clips)
    other = MovingDigits(n_fd, frames=10, size=args.size, seed=2, split="test").clips()
    generated = pipe.sample(n_fd, steps=args.sample_steps, generator=torch.Generator().manual_seed(3))
    order = torch.randperm(10, generator=torch.Generator().manual_seed(4))
    results["generation_fd"] = {
        "model": frechet(clip_features(generated), reference),
        "real_clips_floor": frechet(clip_features(other), reference),
        "frames_shuffled_in_time": frechet(clip_features(other[:, :, order]), reference),
        "first_frame_repeated": frechet(clip_features(other[:, :, [0]].expand_as(other)), reference)}
    mixed = other.clone()  # frame t of clip i taken from clip (i + t) % n: a digit that changes from frame to frame
    for t in range(mixed.shape[2]):
        mixed[:, :, t] = other.roll(-t, 0)[:, :, t]
    noise = torch.rand(other.shape, generator=torch.Generator().manual_seed(5)) * 2 - 1
    results["generation_identity"] = {"model": consistency(judge, generated),
                                      "held_out_clips": consistency(judge, reference_clips),
                                      "frames_of_different_clips": consistency(judge, mixed),
                                      "uniform_noise": consistency(judge, noise)}
    if args.figure:
        write_strip(args.figure, torch.cat([torch.stack([held_out[:4], pred[:4]], 1).flatten(0, 1), generated[:4]]))
    results["eval_seconds"] = time.perf_counter() - t1

    results["throughput"] = []
    for frames in (8, 16):
        out = subprocess.run([sys.executable, __file__, "--throughput", str(frames), "--size", str(args.size),
                              "--threads", str(args.threads)] + (["--net", args.net] if args.net else []), capture_output=True, text=True, check=True)
        results["throughput"].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results["total_seconds"] = time.perf_counter() - t0

    print(f"\nmoving digits {args.size}x{args.size}, trained {args.train_steps} steps x {args.batch} clips of "
          f"{args.frames} frames in {'(reused run)' if train_s is None else f'{train_s / 60:.1f} min'} "
          f"({results['parameters']:,} parameters); "
          f"{args.eval_clips} held-out clips, {args.sample_steps} sampling steps")
    print("| task | method | PSNR (dB) | SSIM |\n|---|---|---|---|")
    for task in ("prediction", "interpolation"):
        for method, (p, s) in results[task].items():
            print(f"| {task} | {method} | {p:.2f} | {s:.3f} |")
    print(f"\njudge: {results['judge']['held_out_digits']:.1%} of the held-out digit images, "
          f"{results['judge']['held_out_frames']:.1%} of the held-out clips' frames judged right")
    print("| task | method | share of frames judged the clip's digit | share of clips with every such frame |\n|---|---|---|---|")
    for task in ("prediction_identity", "interpolation_identity"):
        for method, r in results[task].items():
            print(f"| {task.split('_')[0]} | {method} | {r['frames']:.3f} | {r['clips_all_frames']:.3f} |")
    print("\n| prediction of frames 1-9 from frame 0 | frames judged the clip's digit | clips with every such frame | "
          "odd frames (1, 3, ...) | even frames (2, 4, ...) |\n|---|---|---|---|---|")
    for name, r in results["one_frame_identity"].items():
        print(f"| {name} | {r['frames']:.3f} | {r['clips_all_frames']:.3f} | {r['odd_frames']:.3f} | "
              f"{r['even_frames']:.3f} |")
    print("| clips | same digit in every frame | same digit, frames an odd / even distance apart | frames as the "
          "clip's most frequent digit | digits seen | RMS to nearest digit |\n|---|---|---|---|---|---|")
    for name, r in results["generation_identity"].items():
        print(f"| {name} | {r['same_every_frame']:.3f} | {r['same_at_odd_distance']:.2f} / "
              f"{r['same_at_even_distance']:.2f} | {r['frames_as_clip_mode']:.3f} | {r['digits_seen']} | "
              f"{r['nearest_digit_rms']:.3f} |")
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
