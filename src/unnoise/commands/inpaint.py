"""``unnoise inpaint``: fill a region of images with a trained image run (pixel or latent)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..inverse import Mask
from .common import parse_options
from .edit_common import add_edit_args, load_image_pipeline, read_images, write_result


# replace/smc: unnoise.editing (any image size); the others: Pipeline.restore with a noiseless Mask
METHODS = ("replace", "smc", "mmps", "dps", "pgdm", "ddnm")


def register(sub):
    p = sub.add_parser("inpaint", help="fill a masked region of images with a trained image model",
                       description="Regenerate the region given by --mask (white = fill) or --box, keeping every "
                                   "other pixel exactly.  Methods: replacement (with RePaint resampling via "
                                   "--jump-n-sample > 1), sequential Monte Carlo (--method smc), or a posterior "
                                   "sampler of 'unnoise restore' for a noiseless mask (--method mmps|dps|pgdm|ddnm; "
                                   "--option passes its options).")
    add_edit_args(p)
    p.add_argument("--mask", default=None, help="mask image: white (>= 128) = region to fill, black = keep")
    p.add_argument("--box", default=None, metavar="X0,Y0,X1,Y1",
                   help="fill this rectangle instead (pixels of the run's image size, end exclusive)")
    p.add_argument("--method", default="replace", choices=METHODS,
                   help="inpainting method (default: replace); mmps, dps, pgdm, ddnm: as 'unnoise restore'")
    p.add_argument("--jump-length", type=int, default=10, help="RePaint jump length in steps (default: 10)")
    p.add_argument("--jump-n-sample", type=int, default=1, help="RePaint resampling count, 1 = none (default: 1)")
    p.add_argument("--particles", type=int, default=16, help="particles per image for --method smc (default: 16)")
    p.set_defaults(func=run, sampler="ddpm")


def keep_mask(args, shape) -> torch.Tensor:
    """``(1, H, W)`` keep-mask (1 = keep) from --mask or --box."""
    _, h, w = shape
    if (args.mask is None) == (args.box is None):
        raise ValueError("give exactly one of --mask IMAGE (white = fill) or --box X0,Y0,X1,Y1")
    if args.box is not None:
        try:
            x0, y0, x1, y1 = (int(v) for v in args.box.split(","))
        except ValueError:
            raise ValueError(f"--box must be four integers X0,Y0,X1,Y1, got {args.box!r}") from None
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise ValueError(f"--box {args.box} is outside the {w}x{h} image or empty")
        keep = torch.ones(1, h, w)
        keep[:, y0:y1, x0:x1] = 0
        return keep
    try:
        img = Image.open(args.mask)
        img.load()
    except FileNotFoundError:
        raise FileNotFoundError(f"--mask {args.mask!r} does not exist") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"--mask {args.mask!r} is not a readable image ({err})") from None
    if img.size != (w, h):
        raise ValueError(f"--mask {args.mask!r} is {img.size[0]}x{img.size[1]} but the run's images are {w}x{h}; "
                         "give a mask of the image size")
    return torch.from_numpy((np.asarray(img.convert("L")) < 128).astype(np.float32))[None]


def run(args):
    pipe = load_image_pipeline(args, "inpaint")
    inputs = read_images(args.input, pipe.shape)
    keep = keep_mask(args, pipe.shape)
    if torch.all(keep == 1):
        raise ValueError("the mask leaves nothing to fill: mark the region to regenerate white (--mask) or give --box")
    gen = torch.Generator().manual_seed(args.seed)
    if args.method not in ("replace", "smc"):
        sampler = None if args.sampler == "ddpm" else args.sampler
        out = pipe.restore(inputs, Mask(keep.expand(pipe.shape).clone()), method=args.method, n=args.n,
                           sampler=sampler, steps=args.steps, spacing=args.spacing,
                           guidance_scale=args.guidance_scale, class_label=args.class_label, prompt=args.prompt,
                           generator=gen, **parse_options(args.option))
        shown = torch.where(keep.bool(), inputs, torch.full_like(inputs, -1.0))
        write_result(shown, out, args.out)
        print(f"wrote {args.n} inpaintings ({args.method}) of each of {len(inputs)} image(s) to {args.out}")
        return 0
    batch = inputs.repeat_interleave(args.n, 0)
    out = pipe.inpaint(batch, keep, sampler=args.sampler, steps=args.steps, spacing=args.spacing,
                       method=args.method, guidance_scale=args.guidance_scale, class_label=args.class_label,
                       prompt=args.prompt, generator=gen,
                       jump_length=args.jump_length, jump_n_sample=args.jump_n_sample, particles=args.particles,
                       **parse_options(args.option))
    shown = torch.where(keep.bool(), inputs, torch.full_like(inputs, -1.0))  # the hole shown black
    write_result(shown, out.reshape(len(inputs), args.n, *out.shape[1:]), args.out)
    print(f"wrote {args.n} inpaintings of each of {len(inputs)} image(s) to {args.out}")
    return 0
