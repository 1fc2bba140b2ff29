"""``unnoise upscale``: train a super-resolution diffusion model, or upscale images with one."""
from __future__ import annotations

import torch

from .. import checkpoint
from ..train import TrainConfig
from ..upscale import train_upscaler
from .common import add_device_arg, add_sampling_args, parse_options
from .edit_common import load_image_pipeline, read_images, write_result
from .train_autoencoder import load_image_data


def register(sub):
    p = sub.add_parser("upscale", help="super-resolution: train a model (--train) or upscale images",
                       description="With --train: train a U-Net conditioned on the area-downsampled image (as extra "
                                   "input channels) on --data and write a run to --out.  Otherwise: upscale --input "
                                   "(PNG or .npy (N, C, h, w) in [-1, 1]) with the run in --checkpoint.")
    p.add_argument("--train", action="store_true", help="train a super-resolution model")
    p.add_argument("--data", default="shapes", help="training images: shapes, digits, a folder or a .npy (default: shapes)")
    p.add_argument("--image-size", type=int, default=None, help="high-resolution side (default: the data's own)")
    p.add_argument("--num-images", type=int, default=4000, help="images generated for --data shapes (default: 4000)")
    p.add_argument("--factor", type=int, default=2, help="upscaling factor (default: 2)")
    p.add_argument("--base-channels", type=int, default=32, help="U-Net channels of the first level (default: 32)")
    p.add_argument("--train-steps", type=int, default=2000, help="training steps (default: 2000)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    p.add_argument("--checkpoint", default=None, help="super-resolution run to upscale with")
    p.add_argument("--input", default=None, help="low-resolution image(s) to upscale")
    p.add_argument("--out", required=True, help="run directory (--train) or output .png/.npy")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_sampling_args(p, default_steps=30)
    add_device_arg(p)
    p.set_defaults(func=run, sampler="dpmpp_2m")


def run(args):
    if args.train:
        checkpoint.check_not_inside(args.out, args.data)
        checkpoint.check_new_run_dir(args.out)
        images, _ = load_image_data(args.data, args.image_size, args.num_images, args.seed)
        torch.manual_seed(args.seed)
        cfg = TrainConfig(steps=args.train_steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                          device=args.device, checkpoint_every=0, warmup=100)
        train_upscaler(images, args.factor, args.out, {"base_channels": args.base_channels}, config=cfg,
                       schedule="cosine")
        print(f"wrote {args.out}/; next: unnoise upscale --checkpoint {args.out} --input low.png --out high.png")
        return 0
    if not args.checkpoint or not args.input:
        raise ValueError("give --checkpoint RUN and --input IMAGE to upscale (or --train to train a model)")
    args.autoencoder, args.guidance_scale, args.prompt = None, 1.0, None
    pipe = load_image_pipeline(args, "upscale")
    factor = pipe.config["upscale"]["factor"]
    low = read_images(args.input, pipe.config["upscale"]["low_shape"])
    high = pipe.upscale(low, sampler=args.sampler, steps=args.steps, spacing=args.spacing,
                        generator=torch.Generator().manual_seed(args.seed), **parse_options(args.option))
    if args.out.lower().endswith(".png"):
        near = torch.nn.functional.interpolate(low, scale_factor=factor, mode="nearest")
        write_result(near, high[:, None], args.out)  # each row: the input (enlarged), the upscaled image
    else:
        write_result(low, high[:, None], args.out)
    print(f"upscaled {len(low)} image(s) {tuple(low.shape[1:])} -> {tuple(high.shape[1:])}, wrote {args.out}")
    return 0
