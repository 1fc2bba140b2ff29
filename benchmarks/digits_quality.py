"""Quality of class-conditional digits under classifier-free guidance, judged by an independent classifier.

1. Split scikit-learn's 8x8 digits into a training part and a held-out part (stratified, fixed seed).
2. Fit an RBF SVC on the training part (the judge; must reach > 97 % held-out accuracy).
3. Train the ``unnoise demo digits`` model (same settings) on the training part only.
4. For each guidance scale, sample ``--per-class`` images of every class (DPM-Solver++(2M), 30 steps) and
   report: the fraction the SVC labels as the requested class, and the Frechet distance to the held-out
   digits in the SVC's feature space (its 10 one-vs-rest decision values).  The floor is the distance
   between an equally large set of real training digits and the held-out digits.

Run: ``.venv/bin/python benchmarks/digits_quality.py [--steps 4000] [--checkpoint RUN_DIR]``
(``--checkpoint`` reuses a run trained by this script with the same split and skips training).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from scipy import linalg
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

from unnoise.checkpoint import load
from unnoise.commands.demo_digits import DIGITS_NET, DIGITS_PARAM, DIGITS_SCHEDULE, sample_classes, train_digits
from unnoise.data.images import load_digits
from unnoise.imaging import plot_image_rows


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` between Gaussians fitted to rows of a and b."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


def to_pixels(x: torch.Tensor) -> np.ndarray:
    """Model images in [-1, 1], (N, 1, 8, 8) -> scikit-learn's 0..16 pixel rows (N, 64)."""
    return ((x.clamp(-1, 1) + 1) * 8).reshape(len(x), -1).numpy().astype(np.float64)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4000, help="training steps (default: 4000, as the demo)")
    p.add_argument("--checkpoint", default=None, help="reuse a run directory written by an earlier run of this script")
    p.add_argument("--out", default="benchmark_digits", help="where the run and sample grids go")
    p.add_argument("--per-class", type=int, default=50, help="samples per class and scale (default: 50)")
    p.add_argument("--scales", default="0,1,2,3", help="guidance scales (default: 0,1,2,3)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y, _ = load_digits(8)
    idx_train, idx_test = train_test_split(np.arange(len(x)), test_size=500, stratify=y.numpy(), random_state=0)
    x_train, y_train, x_test, y_test = x[idx_train], y[idx_train], x[idx_test], y[idx_test]

    judge = SVC(gamma=0.001, C=10.0).fit(to_pixels(x_train), y_train.numpy())
    judge_acc = float((judge.predict(to_pixels(x_test)) == y_test.numpy()).mean())
    feats = judge.decision_function  # (N, 10) one-vs-rest decision values: the judge's feature space
    test_feats = feats(to_pixels(x_test))
    rng = np.random.default_rng(args.seed)
    n = 10 * args.per_class
    floor = frechet_distance(feats(to_pixels(x_train[rng.choice(len(x_train), n, replace=False)])), test_feats)

    os.makedirs(args.out, exist_ok=True)
    t0, cpu0 = time.perf_counter(), time.process_time()
    if args.checkpoint:
        den, sched, _ = load(args.checkpoint)
        train_s = train_cpu = float("nan")
    else:
        trainer = train_digits(os.path.join(args.out, "run"), steps=args.steps, seed=args.seed, device="cpu",
                               data=x_train, labels=y_train)
        den, sched = trainer.ema.eval(), trainer.schedule
        train_s, train_cpu = time.perf_counter() - t0, time.process_time() - cpu0

    rows = []
    g = torch.Generator().manual_seed(args.seed)
    labels = torch.arange(10).repeat_interleave(args.per_class)
    for scale in [float(s) for s in args.scales.split(",")]:
        t1 = time.perf_counter()
        imgs = sample_classes(den, sched, labels, (1, 8, 8), guidance_scale=scale, generator=g)
        pix = to_pixels(imgs)
        pred = judge.predict(pix)
        frac = float((pred == labels.numpy()).mean())
        per_class = [float((pred[labels.numpy() == k] == k).mean()) for k in range(10)]
        fd = frechet_distance(feats(pix), test_feats)
        rows.append((scale, frac, min(per_class), fd, time.perf_counter() - t1))
        plot_image_rows(list(imgs.split(args.per_class)), [str(k) for k in range(10)],
                        os.path.join(args.out, f"samples_scale{scale:g}.png"), title=f"guidance scale {scale:g}")

    print(f"\njudge: RBF SVC (gamma=0.001, C=10) on {len(x_train)} training digits, held-out accuracy "
          f"{100 * judge_acc:.1f} % on {len(x_test)} digits")
    print(f"model: U-Net {DIGITS_NET}, {DIGITS_PARAM}-prediction, {DIGITS_SCHEDULE} schedule, "
          f"{args.steps} steps, trained on {len(x_train)} digits in {train_s:.0f} s wall, {train_cpu:.0f} s CPU; sampler dpmpp_2m, 30 steps; "
          f"torch threads {torch.get_num_threads()}")
    print(f"\n| guidance scale | labelled as requested class | worst class | Frechet distance (SVC features) | "
          f"sampling time, {n} images |")
    print("|---|---|---|---|---|")
    for scale, frac, worst, fd, secs in rows:
        print(f"| {scale:g} | {100 * frac:.1f} % | {100 * worst:.0f} % | {fd:.2f} | {secs:.1f} s |")
    print(f"| real training digits (floor) | {100 * float((judge.predict(to_pixels(x_train)) == y_train.numpy()).mean()):.1f} % "
          f"| | {floor:.2f} | |")


if __name__ == "__main__":
    main()
