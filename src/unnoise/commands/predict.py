"""``unnoise predict``: fill in the frames of a clip that a video run did not see.

``--known 0,1,2,3`` names the frames of ``--input`` that are kept exactly; every other frame up to
``--frames`` is generated: prediction when the known frames come first, interpolation when they are the
ends, any pattern in general.  Results longer than the model's window are extended window by window
(:func:`unnoise.video.predict`)."""
from __future__ import annotations

import os

import torch

from .. import io, video
from ..data.video import read_clip
from ..devices import resolve_device
from .common import add_device_arg, add_sampling_args, parse_options


def register(sub):
    p = sub.add_parser("predict", help="predict or interpolate the frames of a clip with a video run",
                       description="Keep the --known frames of --input exactly and generate the others with a run "
                                   "of 'unnoise train --video': future frames (prediction), frames between "
                                   "(interpolation), or any pattern.")
    p.add_argument("--checkpoint", required=True, help="video run directory written by 'unnoise train --video'")
    p.add_argument("--input", required=True, help="the clip: an animated .gif, a .npy (C, T, H, W) or a folder of frames")
    p.add_argument("--known", required=True, help="indices of the known frames of --input, comma-separated (0 = first)")
    p.add_argument("--out", required=True, help=f"output: {video.WRITES}")
    p.add_argument("--frames", type=int, default=None,
                   help="length of the result (default: the input's length, at least the model's window)")
    p.add_argument("--overlap", type=int, default=None,
                   help="frames shared by consecutive windows when the result is longer than the model's window "
                        "(default: half the window)")
    p.add_argument("--method", default="condition", choices=video.METHODS,
                   help="condition: the model is told the known frames (default); replace or smc: inpaint with the "
                        "unconditional model")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of a written GIF (default: 8)")
    p.add_argument("--raw-weights", action="store_true", help="use the raw weights instead of the EMA weights")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_sampling_args(p)
    add_device_arg(p)
    p.set_defaults(func=run)


def parse_known(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; one-line ValueErrors for anything else."""
    try:
        idx = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--known must be comma-separated frame indices such as 0,1,2,3, got {text!r}") from None
    if not idx:
        raise ValueError("--known names no frame; give the indices of the known frames, e.g. --known 0,1,2,3")
    if min(idx) < 0:
        raise ValueError(f"--known {text}: frame indices start at 0, got {min(idx)}")
    return sorted(set(idx))


def run(args):
    ext = os.path.splitext(args.out)[1].lower()
    if ext not in video.EXTENSIONS:
        raise ValueError(f"--out {args.out!r}: write {video.WRITES}")
    if args.steps < 1:
        raise ValueError(f"--steps must be a positive integer, got {args.steps}")
    known = parse_known(args.known)
    device = resolve_device(args.device)
    pipe = video.load(args.checkpoint, device=device, ema=not args.raw_weights)
    clip = read_clip(args.input, mode="L" if pipe.shape[0] == 1 else "RGB")
    length = clip.shape[1]
    if max(known) >= length:
        raise ValueError(f"--known names frame {max(known)} but {args.input!r} has {length} frames (0..{length - 1}); "
                         "give a longer clip or drop that index")
    frames = args.frames if args.frames is not None else max(length, pipe.shape[1])
    if frames < length:
        raise ValueError(f"--frames {frames} is shorter than the input clip ({length} frames)")
    io.check_output_path(args.out)  # before any sampling
    out = video.predict(pipe, clip, known, frames=frames, overlap=args.overlap, method=args.method,
                        sampler=args.sampler, steps=args.steps, generator=torch.Generator().manual_seed(args.seed),
                        progress=True, **parse_options(args.option))
    paths = video.write_video(pipe, out[None], args, args.out)
    print(f"wrote {frames} frames ({len(known)} known, {frames - len(known)} generated) to {paths[0]}")
    return 0
