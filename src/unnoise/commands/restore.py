"""``unnoise restore``: posterior sampling for a measurement ``y = A(x) + noise`` with a trained image run."""
from __future__ import annotations

import math

import torch

from .. import inverse
from .common import parse_options
from .edit_common import add_edit_args, load_image_pipeline, read_images, write_result


def register(sub):
    p = sub.add_parser("restore", help="restore images from a blurred, downsampled, masked or gray measurement",
                       description="Sample restorations x of a measurement y = A(x) + noise under a trained image "
                                   "model (pixel or latent).  --input is the measurement y, read at its own size: "
                                   "the run's size for mask/box/blur, H/F x W/F for downsample:F, one channel for "
                                   "gray.  With --simulate, --input is a clean image at the run's size and y is "
                                   "A(x) + noise drawn with --seed (demos, tests).  Latent runs: dps for any "
                                   "operator (seen through the decoder), every method for a noiseless mask.")
    add_edit_args(p)
    p.add_argument("--operator", required=True, metavar="SPEC",
                   help="mask:FILE (white = unknown), box:X0,Y0,X1,Y1, blur:sigma=S, downsample:F or gray")
    p.add_argument("--noise", type=float, default=0.0,
                   help="observation noise std in [-1, 1] pixel units (default: 0)")
    p.add_argument("--method", default="mmps", help=f"one of {', '.join(inverse.available())} (default: mmps)")
    p.add_argument("--simulate", action="store_true",
                   help="--input is a clean image: apply the operator and the noise to it first")
    p.set_defaults(func=run)


def shown(operator, y: torch.Tensor, shape) -> torch.Tensor:
    """The measurement in image space: unobserved pixels black for a mask, the gray channel repeated,
    otherwise ``y`` itself when it has the image's shape, else its pseudo-inverse (``A^+ y``)."""
    if isinstance(operator, inverse.Mask):
        return torch.where(operator.mask.expand(y.shape) > 0, y, torch.full_like(y, -1.0))
    if tuple(y.shape[1:]) == tuple(shape):
        return y
    if isinstance(operator, inverse.Grayscale):
        return y.expand(y.shape[0], shape[0], *y.shape[2:])
    return operator.pinv(y).clamp(-1, 1)


def run(args):
    if args.method not in inverse.available():
        raise ValueError(f"unknown --method {args.method!r}; choose one of {', '.join(inverse.available())}")
    if not (math.isfinite(args.noise) and args.noise >= 0):
        raise ValueError(f"--noise must be a finite number >= 0, got {args.noise}")
    if args.steps < 1:
        raise ValueError(f"--steps must be a positive integer, got {args.steps}")
    options = parse_options(args.option)
    pipe = load_image_pipeline(args, "restore")
    operator = inverse.parse_operator(args.operator, pipe.shape)
    if hasattr(pipe.codec, "latent_mask") and args.method != "dps" and not (
            isinstance(operator, inverse.Mask) and args.noise == 0):
        raise ValueError(f"--method {args.method} needs a linear operator; a latent run sees {args.operator!r} "
                         "through its decoder: use --method dps (or a mask with --noise 0)")
    with torch.no_grad():
        y_shape = tuple(operator(torch.zeros(1, *pipe.shape)).shape[1:])
    gen = torch.Generator().manual_seed(args.seed)
    if args.simulate:
        clean = read_images(args.input, pipe.shape)
        with torch.no_grad():
            y = operator(clean)
        y = y + args.noise * torch.randn(y.shape, generator=gen)
    else:
        y = read_images(args.input, y_shape)
    out = pipe.restore(y, operator, noise_std=args.noise, method=args.method, n=args.n, sampler=args.sampler,
                       steps=args.steps, spacing=args.spacing, guidance_scale=args.guidance_scale,
                       class_label=args.class_label, prompt=args.prompt, generator=gen, **options)
    write_result(shown(operator, y, pipe.shape).clamp(-1, 1), out, args.out)
    print(f"wrote {args.n} restorations ({args.method}) of each of {len(y)} measurement(s) to {args.out}")
    return 0
