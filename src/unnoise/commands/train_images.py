"""Image data for ``unnoise train`` (``--data digits``, a folder of images, or a cache from
``unnoise prepare``): the options and the training run."""
from __future__ import annotations

import math
import os

import torch

from .. import schedules
from ..data import CachedDataset, ImageFolder, TensorDataset
from ..data.images import flip_rows, load_digits, no_classes_reason
from ..train import train_model
from .train_common import command_record, finish, train_config

# diffwave: sequences (N, channels, length) only; diffusers-unet2d: a diffusers UNet2DModel, for 'unnoise export'
IMAGE_NETS = ("unet", "dit", "mlp", "diffwave", "diffusers-unet2d")
# the defaults of the convolutional nets' options (images, arrays, audio) and of every image option
NET_DEFAULTS = {"base_channels": 64, "channel_mult": "1,2,2", "attention_levels": "1", "dropout": 0.0}
IMAGE_OPTIONS = {"net": "unet", "image_size": None, "image_mode": "RGB", "conditional": False, "flip": False,
                 "patch_size": 2, "width": 256, "depth": 4, **NET_DEFAULTS}
EXPORTABLE_PARAMETERIZATIONS = ("eps", "v", "x0")  # what a diffusers scheduler's prediction_type can say


def add_image_args(p) -> None:
    """Options of ``unnoise train`` that apply to image data."""
    g = p.add_argument_group("image data (--data digits or --data FOLDER of PNG/JPEG images)")
    g.add_argument("--net", default=None, choices=IMAGE_NETS,
                   help="backbone: unet, dit or mlp (default: unet for images, mlp for vectors); diffusers-unet2d "
                        "(images: a diffusers UNet2DModel that 'unnoise export' writes as a folder diffusers "
                        "loads; needs the diffusers extra); for arrays of sequences (N, C, L) diffwave or unet, "
                        "for volumes (N, C, D, H, W) unet")
    g.add_argument("--image-size", type=int, default=None,
                   help="side in pixels after resize + centre crop (default: 8 for digits, 32 for a folder)")
    g.add_argument("--image-mode", default=None, choices=("RGB", "L"), help="colour mode of folder images (default: RGB)")
    g.add_argument("--conditional", action="store_true", default=None,
                   help="train class-conditional on the labels (digit classes / class subfolders), with label "
                        "dropout so classifier-free guidance works")
    g.add_argument("--flip", action="store_true", default=None, help="random horizontal flips of the training images")
    g.add_argument("--base-channels", type=int, default=None, help="U-Net channels of the first level (default: 64)")
    g.add_argument("--channel-mult", default=None,
                   help="U-Net per-level channel multipliers; every image side must be divisible by "
                        "2^(levels-1) (default: 1,2,2)")
    g.add_argument("--attention-levels", default=None, help="U-Net levels with self-attention, comma-separated (default: 1)")
    g.add_argument("--patch-size", type=int, default=None, help="DiT patch size (default: 2)")
    g.add_argument("--dropout", type=float, default=None, help="dropout inside the U-Net/DiT blocks (default: 0)")


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None


def net_config_from_args(args, num_classes: int) -> tuple[str, dict]:
    """``(net name, net config)`` for an image run from the command-line options."""
    name = args.net or "unet"
    if name in ("unet", "diffusers-unet2d"):
        levels = _ints(args.channel_mult, "--channel-mult")
        attn = _ints(args.attention_levels, "--attention-levels")
        if not levels or any(m < 1 for m in levels):
            raise ValueError(f"--channel-mult must be positive integers, got {args.channel_mult!r}")
        beyond = [a for a in attn if not 0 <= a < len(levels)]
        if beyond:
            raise ValueError(f"--attention-levels {args.attention_levels} names level(s) {beyond} but the U-Net has "
                             f"{len(levels)} levels (0..{len(levels) - 1}, one per --channel-mult entry)")
        if name == "diffusers-unet2d":
            return name, diffusers_unet_config(args, levels, attn, num_classes)
        return name, dict(base_channels=args.base_channels, channel_mult=levels, attention_levels=attn,
                          dropout=args.dropout, num_classes=num_classes)
    if name == "dit":
        return name, dict(patch_size=args.patch_size, hidden_size=max(4, 4 * (args.base_channels // 4)) * 2,
                          dropout=args.dropout, num_classes=num_classes)
    return name, dict(width=args.width, depth=args.depth, num_classes=num_classes, dropout=args.dropout)


def diffusers_unet_config(args, levels: list[int], attn: list[int], num_classes: int) -> dict:
    """The ``diffusers-unet2d`` config: the U-Net layout options, and the run's schedule, which fixes the
    network's sigma -> timestep map and the scheduler 'unnoise export' writes.  Only what a diffusers
    scheduler can run is accepted: a discrete VP schedule and eps / v / x0 prediction."""
    if args.parameterization not in EXPORTABLE_PARAMETERIZATIONS:
        raise ValueError(f"--net diffusers-unet2d trains a model diffusers can run: --parameterization must be "
                         f"{', '.join(EXPORTABLE_PARAMETERIZATIONS)} (a scheduler's prediction_type), got "
                         f"{args.parameterization}")
    if not isinstance(schedules.get(args.schedule), schedules.DiscreteVP):
        raise ValueError(f"--net diffusers-unet2d needs a discrete VP schedule (ddpm, cosine, scaled_linear, "
                         f"sigmoid: diffusers models take DDPM timesteps), got --schedule {args.schedule}")
    base = args.base_channels
    head = math.gcd(8, base)  # channels per attention head: divides every level width base * m
    return dict(base_channels=base, channel_mult=levels, attention_levels=attn, attention_head_dim=head,
                dropout=args.dropout, num_classes=num_classes, schedule=args.schedule)


def image_dataset(args):
    """The training images as a dataset of ``(image, cond)`` items in [-1, 1], and its description.

    A folder streams (decoded and resized in the DataLoader's workers); a cache written by
    ``unnoise prepare`` is memory-mapped; the bundled digits are small and held in memory."""
    if args.data == "digits":
        images, labels, names = load_digits(args.image_size or 8)
        return TensorDataset(images, {"label": labels}), names, images.shape[1:]
    if os.path.isfile(os.path.join(args.data, "index.json")):
        cache = CachedDataset(args.data)
        if args.image_size is not None and args.image_size != cache.shape[-1]:
            raise ValueError(f"the cache {args.data!r} holds {cache.shape[-1]} px images; --image-size "
                             f"{args.image_size} needs a new cache ('unnoise prepare --image-size {args.image_size}')")
        return cache, cache.class_names, cache.shape
    folder = ImageFolder(args.data, args.image_size or 32, args.image_mode)
    return folder, folder.class_names, folder.shape


def run_images(args):
    """``unnoise train`` on image data."""
    torch.manual_seed(args.seed)
    dataset, class_names, shape = image_dataset(args)
    if args.conditional and not class_names:
        reason = no_classes_reason(args.data)
        fix = "" if "stray" in reason else "; put the images of each class in their own subfolder"
        raise ValueError(f"--conditional needs class labels, but {reason}{fix}")
    num_classes = len(class_names) if args.conditional else 0
    net, net_config = net_config_from_args(args, num_classes)
    cfg = train_config(args)
    info = {"kind": "images", "image": {"size": int(shape[-1]), "channels": int(shape[0]), "num_classes": num_classes,
                                        "class_names": class_names if num_classes else [], "source": args.data},
            "command": command_record(args)}
    print(f"{len(dataset)} images of shape {tuple(shape)}"
          + (f", {num_classes} classes ({', '.join(class_names[:10])}{', ...' if num_classes > 10 else ''})"
             if num_classes else ""))
    trainer = train_model(dataset, args.out, net=net, net_config=net_config, parameterization=args.parameterization,
                          schedule=args.schedule, config=cfg, normalize=False, info=info,
                          augment=flip_rows if args.flip else None,
                          progress=int(os.environ.get("RANK", "0")) == 0)
    return finish(trainer, args.out)
