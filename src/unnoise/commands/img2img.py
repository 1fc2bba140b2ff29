"""``unnoise img2img``: SDEdit an image with a trained image run (pixel or latent)."""
from __future__ import annotations

import torch

from .common import parse_options
from .edit_common import add_edit_args, load_image_pipeline, read_images, write_result


def register(sub):
    p = sub.add_parser("img2img", help="edit images by noising them part of the way and denoising (SDEdit)",
                       description="Noise each input to --strength (a fraction of the sampling grid) and denoise "
                                   "it again, optionally towards a --prompt or --class-label.  Strength 0 returns "
                                   "the input; strength 1 ignores it.")
    add_edit_args(p)
    p.add_argument("--strength", type=float, default=0.6, help="how much to change, in [0, 1] (default: 0.6)")
    p.set_defaults(func=run)


def run(args):
    if not 0.0 <= args.strength <= 1.0:
        raise ValueError(f"--strength must be in [0, 1], got {args.strength}")
    pipe = load_image_pipeline(args, "img2img")
    inputs = read_images(args.input, pipe.shape)
    batch = inputs.repeat_interleave(args.n, 0)
    out = pipe.img2img(batch, args.strength, sampler=args.sampler, steps=args.steps, spacing=args.spacing,
                       guidance_scale=args.guidance_scale, class_label=args.class_label, prompt=args.prompt,
                       generator=torch.Generator().manual_seed(args.seed), **parse_options(args.option))
    write_result(inputs, out.reshape(len(inputs), args.n, *out.shape[1:]), args.out)
    print(f"wrote {args.n} edits of each of {len(inputs)} image(s) (strength {args.strength}) to {args.out}")
    return 0
