"""``unnoise train``: train a diffusion model on vector data (a built-in set or your file)."""
from __future__ import annotations

from .. import data as data_mod
from .. import losses, schedules
from ..denoiser import PARAMETERIZATIONS
from ..pipeline import train_model
from ..train import TrainConfig
from .common import add_device_arg


def register(sub):
    p = sub.add_parser("train", help="train a model on vectors (.npy/.csv or a built-in 2-D set)",
                       description="Train a diffusion model on vector data and write a run directory "
                                   "(config.json, model.safetensors, metrics.jsonl, loss.png).")
    p.add_argument("--data", required=True,
                   help=f"a .npy/.npz/.csv file of shape (N, ...) or a built-in set: {', '.join(sorted(data_mod.TOY_DATASETS))}")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--num-points", type=int, default=20000, help="points drawn from a built-in set (default: 20000)")
    p.add_argument("--width", type=int, default=256, help="MLP hidden width (default: 256)")
    p.add_argument("--depth", type=int, default=4, help="MLP residual blocks (default: 4)")
    p.add_argument("--parameterization", default="eps", choices=PARAMETERIZATIONS,
                   help="what the network predicts (default: eps)")
    p.add_argument("--schedule", default="ddpm", choices=schedules.available(),
                   help="noise schedule (default: ddpm, linear betas over 1000 steps)")
    p.add_argument("--weighting", default="uniform", choices=losses.WEIGHTINGS,
                   help="loss weighting over noise levels (default: uniform = plain MSE on the prediction)")
    p.add_argument("--steps", type=int, default=5000, help="optimisation steps (default: 5000)")
    p.add_argument("--batch-size", type=int, default=512, help="batch size (default: 512)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: 1e-3)")
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay of the weights (default: 0.999)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip, 0 = off (default: 1.0)")
    p.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up steps (default: 0)")
    p.add_argument("--no-normalize", action="store_true",
                   help="train on the raw values instead of per-feature standardised ones")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args):
    import torch
    g = torch.Generator().manual_seed(args.seed)
    x = data_mod.load_vectors(args.data, n=args.num_points, generator=g)
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay,
                      grad_clip=args.grad_clip, weighting=args.weighting, warmup=args.warmup, seed=args.seed,
                      device=args.device)
    train_model(x, args.out, net_config={"width": args.width, "depth": args.depth},
                parameterization=args.parameterization, schedule=args.schedule, config=cfg,
                normalize=not args.no_normalize)
    print(f"wrote {args.out}/ (config.json, model.safetensors, metrics.jsonl, loss.png)")
