"""``unnoise train --video``: clips ``(C, T, H, W)`` from ``--data clips.npy`` (N, C, T, H, W), a folder of GIFs or
frame folders, or the built-in ``moving-digits`` / ``moving-digits-stochastic``; a factorised space-time U-Net
trained with random known frames (:mod:`unnoise.video`), so one run generates, predicts and interpolates."""
from __future__ import annotations

import os

import torch

from .. import video
from ..data.video import MOVING_DIGITS, video_dataset
from ..nets.video_unet import TIME_BIASES
from .train_common import command_record, finish, train_config
from .train_images import _ints

DEFAULT_FRAMES = 16
DEFAULT_NUM_CLIPS = 10000
# the kind-specific options of ``unnoise train`` a video run takes, with their defaults (None: resolved here)
VIDEO_OPTIONS = {"video": True, "frames": None, "image_size": None, "image_mode": "L", "num_clips": None,
                 "base_channels": 32, "channel_mult": "1,2,2", "attention_levels": "", "temporal_levels": None,
                 "spacetime_levels": None, "spacetime_window": None, "time_bias": None, "dropout": 0.0, "p_past": 0.5,
                 "p_future": 0.25}


def add_video_args(p) -> None:
    """Options of ``unnoise train`` that only video runs take (``--image-size``, ``--image-mode``, ``--num-clips``,
    ``--base-channels``, ``--channel-mult``, ``--attention-levels`` and ``--dropout`` are shared with other kinds)."""
    g = p.add_argument_group("video (--video with --data clips.npy, a folder of GIFs or frame folders, or "
                             f"{' / '.join(MOVING_DIGITS)})")
    g.add_argument("--video", action="store_true", default=None,
                   help="train a video model on clips (C, T, H, W): generation, prediction and interpolation")
    g.add_argument("--frames", type=int, default=None,
                   help=f"frames per training clip; longer videos are cut into clips (default: {DEFAULT_FRAMES} "
                        "for moving digits, else the videos' length, the shortest one's for a folder)")
    g.add_argument("--p-past", type=float, default=None,
                   help="probability that a training clip's first frames are given clean (prediction; default: 0.5)")
    g.add_argument("--p-future", type=float, default=None,
                   help="probability that its last frames are given (with --p-past: interpolation; default: 0.25); "
                        "neither = unconditional generation")
    g.add_argument("--temporal-levels", default=None,
                   help="U-Net levels with temporal attention, comma-separated (default: every level)")
    g.add_argument("--spacetime-levels", default=None,
                   help="U-Net levels whose attention across frames is joint over frames and positions, so it can "
                        "follow what moves (quadratic in frames x pixels of the level: for the coarse levels; e.g. "
                        "1,2 for 16x16 frames and --channel-mult 1,2,2), comma-separated, or 'none' (default: none)")
    g.add_argument("--spacetime-window", type=int, default=None,
                   help="with --spacetime-levels: each position attends only to positions within this many pixels of "
                        "its own (of that level), in every frame, so fine levels are affordable (default: all)")
    g.add_argument("--time-bias", default=None, choices=TIME_BIASES,
                   help="relative position bias across frames: 'table' learns one value per frame distance (sharper "
                        "prediction from several known frames); 'decay' falls linearly with the distance, so it "
                        "cannot favour frames two apart over neighbours (better from one frame and unconditionally; "
                        "docs/benchmarks.md) (default: table)")


def is_video_request(args) -> bool:
    """``--video`` was given (the video kind claims the run)."""
    return bool(getattr(args, "video", None))


def video_net_config(args) -> dict:
    """The :class:`~unnoise.nets.VideoUNet` options from the command line."""
    levels = _ints(args.channel_mult, "--channel-mult")
    if not levels or any(m < 1 for m in levels):
        raise ValueError(f"--channel-mult must be positive integers, got {args.channel_mult!r}")
    config = dict(base_channels=args.base_channels, channel_mult=levels,
                  attention_levels=_ints(args.attention_levels or "", "--attention-levels"), dropout=args.dropout)
    if args.temporal_levels is not None:
        config["temporal_levels"] = _ints(args.temporal_levels, "--temporal-levels")
    if args.spacetime_levels is not None:
        spec = args.spacetime_levels.strip().lower()
        config["spacetime_levels"] = [] if spec in ("", "none") else _ints(args.spacetime_levels, "--spacetime-levels")
    if args.spacetime_window is not None:
        if not config.get("spacetime_levels"):
            raise ValueError("--spacetime-window applies to the levels of --spacetime-levels: name them too")
        if args.spacetime_window < 0:
            raise ValueError(f"--spacetime-window must be >= 0 pixels, got {args.spacetime_window}")
        config["spacetime_window"] = args.spacetime_window
    if args.time_bias is not None:
        config["time_bias"] = args.time_bias
    for name in ("attention_levels", "temporal_levels", "spacetime_levels"):
        beyond = [a for a in config.get(name) or [] if not 0 <= a < len(levels)]
        if beyond:
            raise ValueError(f"--{name.replace('_', '-')} names level(s) {beyond} but the U-Net has {len(levels)} levels "
                             f"(0..{len(levels) - 1}, one per --channel-mult entry)")
    return config


JOINT_TOKENS_WARN = 4096  # positions of a clip attending to each other beyond which the attention's cost is named


def warn_joint_attention_cost(net_config: dict, shape) -> None:
    """Print one line for each space-time level whose joint attention (no window) relates more than
    :data:`JOINT_TOKENS_WARN` positions of a clip to each other (its memory grows with their square)."""
    if net_config.get("spacetime_window") is not None:
        return
    frames, height, width = shape[1], shape[2], shape[3]
    for level in net_config.get("spacetime_levels") or []:
        tokens = frames * (height >> level) * (width >> level)
        if tokens > JOINT_TOKENS_WARN:
            print(f"note: --spacetime-levels {level}: {tokens:,} positions per clip ({frames} frames of "
                  f"{height >> level}x{width >> level}) attend to each other, {tokens ** 2 * 4 / 2 ** 20:,.0f} MiB "
                  "per clip and head for the attention weights; a coarser level or --spacetime-window N costs less")


def run_video(args):
    """``unnoise train --video``."""
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be a positive integer, got {args.frames}")
    for name in ("p_past", "p_future"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be a probability in [0, 1], got {getattr(args, name)}")
    torch.manual_seed(args.seed)
    moving = args.data in MOVING_DIGITS
    if args.num_clips is not None and not moving:
        raise ValueError("--num-clips applies to the built-in moving digits; a file or folder gives all its clips")
    dataset = video_dataset(args.data, args.frames or (DEFAULT_FRAMES if moving else None), args.image_size,
                            args.image_mode, args.num_clips or DEFAULT_NUM_CLIPS, args.seed)
    shape = tuple(dataset[0][0].shape)
    info = {"video": {"frames": shape[1], "channels": shape[0], "size": list(shape[2:]), "source": args.data,
                      **({"moving_digits": dataset.config()} if moving else {})},
            "command": command_record(args)}
    print(f"{len(dataset)} clips of shape {shape} from {args.data}")
    net_config = video_net_config(args)
    warn_joint_attention_cost(net_config, shape)
    trainer = video.train(dataset, args.out, net_config, args.parameterization, args.schedule,
                          train_config(args), args.p_past, args.p_future, info,
                          progress=int(os.environ.get("RANK", "0")) == 0)
    return finish(trainer, args.out)
