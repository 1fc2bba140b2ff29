"""``unnoise train-classifier``: a noise-level-aware classifier ``p(y | x_0 + sigma eps, sigma)`` for
classifier guidance (``unnoise sample --classifier DIR --guidance-scale W``)."""
from __future__ import annotations

import os
import time

import torch

from .. import schedules
from ..data import load_array
from ..data.images import flip_rows, is_image_spec, load_images, no_classes_reason
from ..guidance import NoisyClassifier, train_classifier
from ..nets import summary
from ..train import TrainConfig
from .common import add_device_arg
from .train_common import add_scaling_args, command_record, finish, loop_options, resume_args  # noqa: F401 (resume_args re-exported)


def register(sub):
    p = sub.add_parser("train-classifier", help="train a noisy-input classifier for classifier guidance",
                       description="Train a classifier of noisy images (or labelled vectors) on the noise levels of a "
                                   "schedule, through the same training loop as 'unnoise train' (checkpoints, exact "
                                   "--resume, metrics.jsonl, torchrun), and write the run (config.json with kind "
                                   "'classifier', model.safetensors, checkpoints/) to --out.")
    p.add_argument("--data", default=None, help="digits, a folder with one subfolder per class, or a .npy/.npz/.csv "
                                                 "of vectors (then --labels is required)")
    p.add_argument("--labels", default=None, help="labels file (.npy/.csv, integers) for vector data")
    p.add_argument("--out", default=None, help="run directory to write (default with --resume: the resumed run)")
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
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="EMA decay of the weights that are loaded for guidance (default: 0 = the raw weights)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_device_arg(p)
    add_scaling_args(p)
    p.set_defaults(func=run)


def load_labelled(args):
    """``(data, labels, class_names)`` from the command-line options."""
    if is_image_spec(args.data):
        data, labels, names = load_images(args.data, args.image_size, args.image_mode)
        if labels is None:
            raise ValueError(f"{no_classes_reason(args.data)}; a classifier needs one subfolder per class")
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
    t0 = time.perf_counter()
    args = resume_args(args, "classifier")
    torch.manual_seed(args.seed)
    data, labels, names = load_labelled(args)
    schedule = schedules.get(args.schedule)
    clf = NoisyClassifier(list(data.shape[1:]), len(names), width=args.width, depth=args.depth,
                          sigma_data=float(data.std()))
    main = int(os.environ.get("RANK", "0")) == 0
    if main:
        print(summary(clf))
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=1e-4,
                      ema_decay=args.ema_decay, grad_clip=0.0, cond_dropout=0.0, seed=args.seed, device=args.device,
                      **loop_options(args))
    info = {"class_names": names, "data": {"source": args.data, "shape": list(data.shape[1:]),
                                           "num_examples": len(data)}, "command": command_record(args)}
    trainer = train_classifier(clf, data, labels, schedule, augment=flip_rows if args.flip else None, config=cfg,
                               run_dir=args.out, info=info, progress=main)
    acc = trainer.last_metrics.get("accuracy", float("nan"))
    if main and not trainer.stopped_by:
        print(f"classifier trained in {time.perf_counter() - t0:.0f} s; training accuracy over all noise levels "
              f"{acc:.2f} (last batch)")
    return finish(trainer, args.out, "train-classifier")
