"""Image data for ``unnoise train`` (``--data digits`` or ``--data FOLDER``) and ``unnoise sample``
of image runs: the options, the training run and the PNG output."""
from __future__ import annotations

import os

import torch

IMAGE_NETS = ("unet", "dit", "mlp", "diffwave")  # diffwave: sequences (N, channels, length) only


def add_image_args(p) -> None:
    """Options of ``unnoise train`` that apply to image data."""
    g = p.add_argument_group("image data (--data digits or --data FOLDER of PNG/JPEG images)")
    g.add_argument("--net", default=None, choices=IMAGE_NETS,
                   help="backbone: unet, dit or mlp (default: unet for images, mlp for vectors); for arrays of "
                        "sequences (N, C, L) diffwave or unet, for volumes (N, C, D, H, W) unet")
    g.add_argument("--image-size", type=int, default=None,
                   help="side in pixels after resize + centre crop (default: 8 for digits, 32 for a folder)")
    g.add_argument("--image-mode", default="RGB", choices=("RGB", "L"), help="colour mode of folder images (default: RGB)")
    g.add_argument("--conditional", action="store_true",
                   help="train class-conditional on the labels (digit classes / class subfolders), with label "
                        "dropout so classifier-free guidance works")
    g.add_argument("--flip", action="store_true", help="random horizontal flips of the training images")
    g.add_argument("--base-channels", type=int, default=64, help="U-Net channels of the first level (default: 64)")
    g.add_argument("--channel-mult", default="1,2,2",
                   help="U-Net per-level channel multipliers; every image side must be divisible by "
                        "2^(levels-1) (default: 1,2,2)")
    g.add_argument("--attention-levels", default="1", help="U-Net levels with self-attention, comma-separated (default: 1)")
    g.add_argument("--patch-size", type=int, default=2, help="DiT patch size (default: 2)")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout inside the U-Net/DiT blocks (default: 0)")


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None


def net_config_from_args(args, num_classes: int) -> tuple[str, dict]:
    """``(net name, net config)`` for an image run from the command-line options."""
    name = args.net or "unet"
    if name == "unet":
        levels = _ints(args.channel_mult, "--channel-mult")
        attn = [a for a in _ints(args.attention_levels, "--attention-levels") if a < len(levels)]
        return name, dict(base_channels=args.base_channels, channel_mult=levels, attention_levels=attn,
                          dropout=args.dropout, num_classes=num_classes)
    if name == "dit":
        return name, dict(patch_size=args.patch_size, hidden_size=max(4, 4 * (args.base_channels // 4)) * 2,
                          dropout=args.dropout, num_classes=num_classes)
    return name, dict(width=args.width, depth=args.depth, num_classes=num_classes, dropout=args.dropout)


def run_images(args, train_cmd):
    """``unnoise train`` on image data; ``train_cmd`` is the train command module (shared loop options)."""
    from ..data.images import load_images, flip_rows
    from ..pipeline import train_model
    from ..train import TrainConfig
    torch.manual_seed(args.seed)
    images, labels, class_names = load_images(args.data, args.image_size, args.image_mode)
    if args.conditional and labels is None:
        raise ValueError(f"--conditional needs class labels, but {args.data!r} has no class subfolders; "
                         "put the images of each class in their own subfolder")
    num_classes = len(class_names) if args.conditional else 0
    net, net_config = net_config_from_args(args, num_classes)
    extra = train_cmd.loop_options(args) if hasattr(train_cmd, "loop_options") else {}
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay,
                      grad_clip=args.grad_clip, weighting=args.weighting, warmup=args.warmup, seed=args.seed,
                      device=args.device, **extra)
    info = {"kind": "images", "image": {"size": int(images.shape[-1]), "channels": int(images.shape[1]), "num_classes": num_classes,
                      "class_names": class_names if num_classes else [], "source": args.data}}
    if hasattr(train_cmd, "command_record"):
        info["command"] = train_cmd.command_record(args)
    print(f"{len(images)} images of shape {tuple(images.shape[1:])}"
          + (f", {num_classes} classes ({', '.join(class_names[:10])}{', ...' if num_classes > 10 else ''})"
             if num_classes else ""))
    trainer = train_model(images, args.out, net=net, net_config=net_config, parameterization=args.parameterization,
                          schedule=args.schedule, config=cfg, normalize=False,
                          labels=labels if num_classes else None, info=info,
                          augment=flip_rows if args.flip else None,
                          progress=int(os.environ.get("RANK", "0")) == 0)
    if hasattr(train_cmd, "finish"):
        return train_cmd.finish(trainer, args.out)
    print(f"wrote {args.out}/ (config.json, model.safetensors, metrics.jsonl, loss.png)")
    return 0
