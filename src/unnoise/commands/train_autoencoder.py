"""``unnoise train-autoencoder``: train the KL autoencoder that latent diffusion runs in."""
from __future__ import annotations

import os

import torch

from ..data import images as images_mod
from ..data import load_array
from ..data.shapes import make_shapes
from ..nets.autoencoder import Autoencoder, fit_autoencoder
from ..train import TrainConfig
from .common import add_device_arg
from .train_common import add_scaling_args, command_record, finish, loop_options, resume_args


def load_image_data(spec: str, image_size: int | None = None, n: int = 5000, seed: int = 0):
    """Images ``(N, C, H, W)`` in [-1, 1] from ``"shapes"`` (generated, with captions), ``"digits"``,
    a folder of images or a .npy/.npz array; returns ``(images, captions or None)``."""
    if spec == "shapes":
        x, _, captions = make_shapes(n, image_size or 32, torch.Generator().manual_seed(seed))
        return x, captions
    if os.path.splitext(spec)[1].lower() in (".npy", ".npz"):
        x = load_array(spec)
        if x.ndim != 4:
            raise ValueError(f"{spec}: image arrays must have shape (N, C, H, W), got {tuple(x.shape)}")
        return x, None
    if images_mod.is_image_spec(spec):
        return images_mod.load_images(spec, image_size)[0], None
    raise ValueError(f"unknown image data {spec!r}: give 'shapes', 'digits', a folder of images or a .npy file "
                     "of shape (N, C, H, W)")


def register(sub):
    p = sub.add_parser("train-autoencoder", help="train a KL autoencoder for latent diffusion",
                       description="Train a convolutional KL autoencoder on images through the same training loop "
                                   "as 'unnoise train' (checkpoints, exact --resume, metrics.jsonl, torchrun) and write "
                                   "the run (config.json with kind 'autoencoder' and the latent scale estimated from "
                                   "the data, model.safetensors, checkpoints/) to --out. Then: unnoise train --latent OUT ...")
    p.add_argument("--data", default="shapes",
                   help="'shapes' (generated captioned shapes), 'digits', an image folder or a .npy (N, C, H, W) "
                        "in [-1, 1] (default: shapes)")
    p.add_argument("--out", default=None, help="run directory to write (default with --resume: the resumed run)")
    p.add_argument("--num-images", type=int, default=5000, help="images generated for --data shapes (default: 5000)")
    p.add_argument("--image-size", type=int, default=None, help="image side in pixels (default: the data's own, 32 for shapes)")
    p.add_argument("--latent-channels", type=int, default=4, help="latent channels (default: 4)")
    p.add_argument("--downsample", type=int, default=4, help="spatial downsampling factor, a power of 2 (default: 4)")
    p.add_argument("--channels", type=int, default=32, help="width of the first level (default: 32)")
    p.add_argument("--blocks", type=int, default=1, help="residual blocks per level (default: 1)")
    p.add_argument("--kl-weight", type=float, default=1e-6, help="weight of the KL term (default: 1e-6)")
    p.add_argument("--loss", default="l2", choices=("l1", "l2"),
                   help="reconstruction loss (default: l2, which keeps the colours of small objects on a flat "
                        "background far better than l1 at equal steps)")
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps (default: 2000)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: 1e-3)")
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="EMA decay of the weights the latent diffusion uses (default: 0 = the raw weights)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_device_arg(p)
    add_scaling_args(p)
    p.set_defaults(func=run)


def run(args):
    args = resume_args(args, "autoencoder")
    x, _ = load_image_data(args.data, args.image_size, args.num_images, args.seed)
    torch.manual_seed(args.seed)
    model = Autoencoder(x.shape[1], args.latent_channels, args.downsample, args.channels, args.blocks)
    lat = model.latent_shape(x.shape[1:])
    main = int(os.environ.get("RANK", "0")) == 0
    if main:
        print(f"autoencoder: {sum(p.numel() for p in model.parameters()):,} parameters, images {tuple(x.shape[1:])} "
              f"-> latents {lat}, {len(x):,} images")
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=1e-2,
                      ema_decay=args.ema_decay, grad_clip=1.0, cond_dropout=0.0, seed=args.seed, device=args.device,
                      **loop_options(args))
    info = {"data": {"source": args.data, "shape": list(x.shape[1:]), "num_examples": len(x)},
            "command": command_record(args)}
    trainer = fit_autoencoder(model, x, kl_weight=args.kl_weight, loss=args.loss, config=cfg, run_dir=args.out,
                              info=info, progress=main)
    if main and not trainer.stopped_by:
        i = trainer.info
        print(f"reconstruction PSNR {i['psnr_db']:.2f} dB, latent scale {i['scale']:.4f}, shift {i['shift']:.4f}")
        print(f"next: unnoise train --latent {args.out} --data {args.data} --out RUN_DIR")
    return finish(trainer, args.out, "train-autoencoder")
