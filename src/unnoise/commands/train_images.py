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
    info = {"image": {"size": int(images.shape[-1]), "channels": int(images.shape[1]), "num_classes": num_classes,
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


# ------------------------------------------------------------------------------------------ sampling
def add_image_sample_args(p) -> None:
    g = p.add_argument_group("image runs")
    g.add_argument("--class-label", default=None,
                   help="class to generate (index or class name; default: every class in turn for a "
                        "class-conditional run)")
    g.add_argument("--guidance-scale", type=float, default=1.0,
                   help="classifier-free guidance scale: 0 = unconditional, 1 = conditional, >1 = stronger (default: 1)")
    g.add_argument("--classifier", default=None,
                   help="directory written by 'unnoise train-classifier': use classifier guidance with "
                        "--guidance-scale instead of classifier-free guidance")


def is_image_run(checkpoint_dir: str) -> bool:
    from ..checkpoint import read_config
    return "image" in read_config(checkpoint_dir)


def resolve_labels(spec, n: int, image_info: dict):
    """``(n,)`` labels for ``--class-label`` (index or class name; None = cycle through all classes)."""
    k = int(image_info.get("num_classes") or 0)
    if not k:
        if spec is not None:
            raise ValueError("--class-label given but the run is unconditional (train it with --conditional)")
        return None
    if spec is None:
        return torch.arange(n) % k
    names = image_info.get("class_names") or []
    if spec in names:
        idx = names.index(spec)
    else:
        try:
            idx = int(spec)
        except ValueError:
            raise ValueError(f"unknown class {spec!r}; use an index in [0, {k}) or one of {names}") from None
    if not 0 <= idx < k:
        raise ValueError(f"--class-label {idx} out of range: the run has {k} classes (0..{k - 1})")
    return torch.full((n,), idx, dtype=torch.long)


def run_sample_images(args, options: dict) -> int:
    """``unnoise sample`` for an image run: PNG grid (``--out x.png``) or an array (.npy)."""
    import numpy as np

    from ..checkpoint import load
    from ..guidance import ClassifierGuidance, cfg, load_classifier
    from ..pipeline import sample_model
    from ..train import resolve_device
    if args.n < 1:
        raise ValueError(f"--n must be positive, got {args.n}")
    ext = os.path.splitext(args.out)[1].lower()
    if ext not in (".png", ".npy"):
        raise ValueError(f"for an image run --out must end in .png (a grid) or .npy (the array), got {args.out!r}")
    device = resolve_device(args.device)
    denoiser, schedule, config = load(args.checkpoint, ema=not args.raw_weights, device=device)
    image_info = config["image"]
    labels = resolve_labels(args.class_label, args.n, image_info) if not args.classifier else None
    guided = denoiser
    if args.classifier:
        classifier, _ = load_classifier(args.classifier, device=device)
        if args.class_label is None:
            labels = torch.arange(args.n) % classifier.num_classes
        else:
            labels = torch.full((args.n,), int(args.class_label), dtype=torch.long)
        guided = ClassifierGuidance(denoiser, classifier, args.guidance_scale)
    elif args.guidance_scale != 1.0:
        if labels is None:
            raise ValueError("--guidance-scale needs a class-conditional run (train with --conditional) "
                             "or a noisy classifier (--classifier DIR from 'unnoise train-classifier')")
        guided = cfg(denoiser, args.guidance_scale)
    g = torch.Generator().manual_seed(args.seed)
    x = sample_model(guided, schedule, args.n, config["data"]["shape"], sampler=args.sampler, steps=args.steps,
                     spacing=args.spacing, generator=g, stats=config["data"].get("normalization"),
                     cond=None if labels is None else labels.to(device), progress=True, **options)
    x = x.clamp(-1, 1)
    if ext == ".npy":
        np.save(args.out, x.numpy())
    else:
        from ..imaging import save_image_grid
        k = int(image_info.get("num_classes") or 0)
        nrow = k if (labels is not None and args.class_label is None and k and args.n % k == 0) else None
        if nrow:  # one row per class: reorder so row r holds class r
            x = x[torch.argsort(labels, stable=True)]
            nrow = args.n // k
        save_image_grid(x, args.out, nrow=nrow)
    print(f"wrote {args.n} images of shape {tuple(x.shape[1:])} to {args.out}")
    return 0
