"""``unnoise train --data FILE --net diffwave|unet``: sequences ``(N, channels, length)`` and volumes
``(N, channels, D, H, W)`` from .npy/.npz arrays (or a .csv with one single-channel series per row),
with the convolutional backbones.

Data are scaled per channel (one mean and standard deviation per channel over all examples and
positions), not per position, so the statistics mean the same thing at every time step or voxel.
"""
from __future__ import annotations

import os
import sys

import torch

from ..pipeline import train_model
from ..train import TrainConfig

# which backbones accept which array ranks (example dimensions after the leading N)
ARRAY_NETS = {"diffwave": (2,), "unet": (2, 3, 4)}


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Scale ``(N, C, *spatial)`` data to zero mean, unit variance per channel: ``(scaled, stats)``.

    ``stats`` holds per-feature ``mean``/``std`` lists as :func:`unnoise.pipeline.unstandardise` expects
    them (one entry when there is one channel, since a single value broadcasts over every feature).
    """
    dims = [0] + list(range(2, x.ndim))
    mean = x.mean(dims, keepdim=True)
    std = x.std(dims, keepdim=True).clamp_min(1e-8)
    scaled = (x - mean) / std
    if x.shape[1] == 1:
        return scaled, {"mean": [float(mean)], "std": [float(std)]}
    full = lambda t: t.expand(1, *x.shape[1:]).reshape(-1).tolist()  # noqa: E731
    return scaled, {"mean": full(mean), "std": full(std)}


def array_net_config(args, shape) -> tuple[str, dict]:
    """``(net name, config)`` for the array shape ``(C, *spatial)`` from the command-line options."""
    name = args.net
    ranks = ARRAY_NETS.get(name)
    if ranks is None:
        raise ValueError(f"--net {name} does not take arrays of shape (N, {', '.join(map(str, shape))}); "
                         f"use one of {', '.join(ARRAY_NETS)} (or mlp for flat vectors)")
    if len(shape) not in ranks:
        kinds = {2: "(N, channels, length)", 3: "(N, channels, H, W)", 4: "(N, channels, D, H, W)"}
        raise ValueError(f"--net {name} needs data shaped {' or '.join(kinds[r] for r in ranks)}, "
                         f"got (N, {', '.join(map(str, shape))})")
    if name == "diffwave":
        return name, dict(residual_channels=args.base_channels)
    from .train_images import net_config_from_args
    return net_config_from_args(args, num_classes=0)


def run_arrays(args, x: torch.Tensor, train_cmd, extra_info: dict | None = None) -> int:
    """Train a convolutional backbone on an array ``x`` of shape ``(N, C, *spatial)``.

    ``extra_info``: more entries for the run's config (e.g. ``{"audio": {"sample_rate": 8000}}``).
    """
    if x.ndim == 2 and os.path.splitext(args.data)[1].lower() in (".csv", ".txt"):
        x = x[:, None, :]  # a CSV holds one single-channel series per row
    if x.ndim < 3:
        raise ValueError(f"--net {args.net} needs data with channels and positions, (N, channels, length) or "
                         f"(N, channels, D, H, W); got shape {tuple(x.shape)} (use --net mlp for vectors)")
    name, net_config = array_net_config(args, tuple(x.shape[1:]))
    scaled, stats = (x, None) if args.no_normalize else channel_stats(x)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay,
                      grad_clip=args.grad_clip, weighting=args.weighting, warmup=args.warmup, seed=args.seed,
                      device=args.device, **train_cmd.loop_options(args))
    info = {"kind": "audio" if "audio" in (extra_info or {}) else "arrays",
            "data": {"shape": list(x.shape[1:]), "normalization": stats, "num_examples": len(x)},
            "command": train_cmd.command_record(args), **(extra_info or {})}
    try:
        trainer = train_model(scaled, args.out, net=name, net_config=net_config,
                              parameterization=args.parameterization, schedule=args.schedule, config=cfg,
                              normalize=False, info=info, progress=int(os.environ.get("RANK", "0")) == 0)
    except OSError as err:
        if isinstance(err, (FileNotFoundError, PermissionError)):
            raise
        print(f"unnoise train: error: {err.strerror or err}", file=sys.stderr)
        return 1
    return train_cmd.finish(trainer, args.out)
