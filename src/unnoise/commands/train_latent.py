"""``unnoise train --latent AE_DIR``: diffusion on an autoencoder's latents (the run stores the reference)."""
from __future__ import annotations

import os

import torch

from ..data.images import flip_rows, load_images
from ..data.shapes import COLOURS, SHAPES, make_shapes
from ..latent import LatentCodec, train_latent
from ..text import TextEncoder
from .train_autoencoder import load_image_data
from .train_common import command_record, finish, train_config
from .train_images import net_config_from_args


def add_latent_args(p) -> None:
    """Options of ``unnoise train`` for latent diffusion."""
    g = p.add_argument_group("latent diffusion (--latent AUTOENCODER_DIR)")
    g.add_argument("--latent", default=None, metavar="AUTOENCODER_DIR",
                   help="train on the scaled latents of this autoencoder (from 'unnoise train-autoencoder'); "
                        "--data is then images: shapes, digits, a folder or a .npy (N, C, H, W) in [-1, 1]; "
                        "'unnoise sample' decodes the samples to images")
    g.add_argument("--num-images", type=int, default=None, help="images generated for --data shapes (default: 5000)")
    g.add_argument("--text", action="store_true", default=None,
                   help="condition on the captions of --data shapes through the frozen text encoder "
                        "(cross-attention; the empty prompt is the null condition for classifier-free guidance; "
                        "needs pip install 'unnoise[text]')")


def shape_class_labels(attrs: dict) -> tuple[torch.Tensor, list[str]]:
    """Class labels for the shapes set: one class per (colour, shape), e.g. ``"red circle"``."""
    colours = list(COLOURS)
    names = [f"{c} {s}" for s in SHAPES for c in colours]
    return attrs["shape"] * len(colours) + attrs["colour"], names


def run_latent(args) -> int:
    """Run ``unnoise train`` with ``--latent`` (and ``--text``)."""
    if not args.latent:
        raise ValueError("--text trains text-to-image latent diffusion: add --latent AUTOENCODER_DIR (a run of "
                         "'unnoise train-autoencoder')")
    if args.net == "diffusers-unet2d":
        raise ValueError("--net diffusers-unet2d trains pixel-space image models for 'unnoise export'; latent runs "
                         "use --net unet or dit")
    torch.manual_seed(args.seed)
    codec = LatentCodec.from_dir(args.latent)  # fails early on a bad directory
    labels, class_names = None, []
    if getattr(args, "text", False) and args.data != "shapes":
        raise ValueError("--text needs captions: use --data shapes")
    if args.data == "shapes":
        images, attrs, captions = make_shapes(args.num_images, args.image_size or 32,
                                              torch.Generator().manual_seed(args.seed))
        if getattr(args, "text", False):
            return _run_text(args, codec, images, captions)
        if args.conditional:
            labels, class_names = shape_class_labels(attrs)
    elif args.conditional:
        images, labels, class_names = load_images(args.data, args.image_size)
        if labels is None:
            raise ValueError(f"--conditional needs class labels, but {args.data!r} has none")
    else:
        images, _ = load_image_data(args.data, args.image_size)
    lat = codec.latent_shape(images.shape[1:])
    num_classes = len(class_names) if labels is not None else 0
    net, net_config = net_config_from_args(args, num_classes)
    if net == "unet":  # the latent grid is small: keep only the levels it can be halved into
        levels = net_config["channel_mult"]
        while len(levels) > 1 and min(lat[1:]) % 2 ** (len(levels) - 1):
            levels = levels[:-1]
        net_config["channel_mult"] = levels
        net_config["attention_levels"] = [a for a in net_config["attention_levels"] if a < len(levels)]
    cfg = train_config(args)
    info = {"command": command_record(args),
            "latent_classes": {"num_classes": num_classes, "class_names": class_names, "source": args.data}}
    trainer = train_latent(images, args.latent, args.out, net=net, net_config=net_config, labels=labels, info=info,
                           schedule=args.schedule, parameterization=args.parameterization, config=cfg,
                           augment=flip_rows if getattr(args, "flip", False) else None,
                           progress=int(os.environ.get("RANK", "0")) == 0)
    return finish(trainer, args.out)


def _run_text(args, codec, images, captions) -> int:
    """Text-conditioned latent diffusion on captioned images: the dataset carries each caption's
    embeddings, the empty prompt is the null condition."""
    encoder = TextEncoder()
    lat = codec.latent_shape(images.shape[1:])
    net, net_config = net_config_from_args(args, 0)
    if net != "unet":
        raise ValueError("--text needs the U-Net (its cross-attention reads the prompt): use --net unet")
    levels = net_config["channel_mult"]
    while len(levels) > 1 and min(lat[1:]) % 2 ** (len(levels) - 1):
        levels = levels[:-1]
    net_config.update(channel_mult=levels, shape=list(lat),
                      attention_levels=[a for a in net_config["attention_levels"] if a < len(levels)] or [0])
    cfg = train_config(args)
    info = {"command": command_record(args)}
    trainer = train_latent(images, args.latent, args.out, net=net, net_config=net_config, captions=captions,
                           text_encoder=encoder, info=info, schedule=args.schedule,
                           parameterization=args.parameterization, config=cfg,
                           progress=int(os.environ.get("RANK", "0")) == 0)
    return finish(trainer, args.out)
