"""``unnoise train-classifier``: a noise-level-aware classifier ``p(y | x_0 + sigma eps, sigma)`` for
classifier guidance (``unnoise sample --classifier DIR --guidance-scale W``)."""
from __future__ import annotations

import os
import time

import torch

from .. import schedules
from .common import add_device_arg


def register(sub):
    p = sub.add_parser("train-classifier", help="train a noisy-input classifier for classifier guidance",
                       description="Train a classifier of noisy images (or labelled vectors) on the noise levels of a "
                                   "schedule and save classifier.safetensors + classifier.json to --out.")
    p.add_argument("--data", required=True, help="digits, a folder with one subfolder per class, or a .npy/.npz/.csv "
                                                 "of vectors (then --labels is required)")
    p.add_argument("--labels", default=None, help="labels file (.npy/.csv, integers) for vector data")
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--image-size", type=int, default=None, help="image side (default: 8 for digits, 32 for a folder)")
    p.add_argument("--image-mode", default="RGB", choices=("RGB", "L"), help="colour mode of folder images")
    p.add_argument("--schedule", default="ddpm", choices=schedules.available(),
                   help="noise schedule whose training sigmas the classifier sees; use the diffusion model's (default: ddpm)")
    p.add_argument("--width", type=int, default=32, help="channels (images) or hidden width (vectors) (default: 32)")
    p.add_argument("--depth", type=int, default=2, help="blocks / resolution levels (default: 2)")
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps (default: 2000)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: 1e-3)")
    p.add_argument("--flip", action="store_true", help="random horizontal flips of training images")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_device_arg(p)
    p.set_defaults(func=run)


def load_labelled(args):
    """``(data, labels, class_names)`` from the command-line options."""
    from ..data import load_array
    from ..data.images import is_image_spec, load_images
    if is_image_spec(args.data):
        data, labels, names = load_images(args.data, args.image_size, args.image_mode)
        if labels is None:
            raise ValueError(f"{args.data!r} has no class subfolders; a classifier needs one subfolder per class")
        return data, labels, names
    if not args.labels:
        raise ValueError("vector data needs --labels FILE with one integer class per row")
    data = load_array(args.data)
    labels = load_array(args.labels, min_ndim=1).reshape(-1)
    if torch.any(labels != labels.round()) or labels.min() < 0:
        raise ValueError(f"{args.labels}: labels must be non-negative integers")
    labels = labels.long()
    return data, labels, [str(i) for i in range(int(labels.max()) + 1)]


def run(args):
    from ..data.images import random_flip
    from ..guidance import NoisyClassifier, save_classifier, train_classifier
    from ..nets import summary
    from ..plotting import plot_loss
    from ..train import resolve_device
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    data, labels, names = load_labelled(args)
    device = resolve_device(args.device)
    schedule = schedules.get(args.schedule)
    clf = NoisyClassifier(list(data.shape[1:]), len(names), width=args.width, depth=args.depth,
                          sigma_data=float(data.std())).to(device)
    print(summary(clf))
    history = train_classifier(clf, data, labels, schedule, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                               seed=args.seed, augment=random_flip if args.flip else None)
    save_classifier(args.out, clf, info={"class_names": names, "schedule": schedule.config(),
                                         "data": {"source": args.data, "shape": list(data.shape[1:])},
                                         "train": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr}})
    plot_loss(history, os.path.join(args.out, "loss.png"))
    acc = history[-1]["accuracy"] if history else float("nan")
    print(f"wrote {args.out}/ (classifier.safetensors, classifier.json, loss.png) in {time.perf_counter() - t0:.0f} s; "
          f"training accuracy over all noise levels {acc:.2f}")
    return 0
