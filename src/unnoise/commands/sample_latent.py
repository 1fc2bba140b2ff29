"""``unnoise sample`` for latent diffusion runs: sample latents with any sampler, decode to images."""
from __future__ import annotations

import os

import torch


def add_latent_sample_args(p) -> None:
    g = p.add_argument_group("latent diffusion runs")
    g.add_argument("--autoencoder", default=None, metavar="DIR",
                   help="autoencoder directory of a latent run (default: the one stored in the run)")
    g.add_argument("--prompt", action="append", default=None,
                   help="text prompt for a text-conditioned run (repeatable: samples cycle through the prompts); "
                        "use --guidance-scale for classifier-free guidance against the empty prompt")


def is_latent_run(checkpoint_dir: str) -> bool:
    from ..checkpoint import read_config
    return "latent" in read_config(checkpoint_dir)


def run_sample_latent(args, options: dict) -> int:
    """Write a PNG grid (or .npy) of decoded samples of a latent run."""
    import numpy as np

    from ..guidance import cfg
    from ..latent import load_latent_run
    from ..train import resolve_device
    from .train_images import resolve_labels
    if args.out == "samples.npy":
        args.out = "samples.png"
    if args.n == 1000:  # the vector default; a grid for images
        args.n = 64
    if args.n < 1:
        raise ValueError(f"--n must be positive, got {args.n}")
    ext = os.path.splitext(args.out)[1].lower()
    if ext not in (".png", ".npy"):
        raise ValueError(f"for a latent run --out must end in .png (a grid) or .npy (the images), got {args.out!r}")
    device = resolve_device(args.device)
    pipe, config = load_latent_run(args.checkpoint, device=device, ema=not args.raw_weights,
                                   autoencoder=getattr(args, "autoencoder", None))
    scale = getattr(args, "guidance_scale", 1.0)
    prompts = getattr(args, "prompt", None)
    if prompts:
        if "text" not in config:
            raise ValueError("--prompt needs a text-conditioned run (train one with 'unnoise train --latent AE --text')")
        from ..text import TextEncoder, prompt_cond
        cond = prompt_cond(TextEncoder(), [prompts[i % len(prompts)] for i in range(args.n)], device=device)
    elif "text" in config:
        raise ValueError("this run is text-conditioned: give --prompt \"a small red circle at the top left\"")
    else:
        labels = resolve_labels(getattr(args, "class_label", None), args.n, config.get("latent_classes") or {})
        cond = None if labels is None else labels.to(device)
    if cond is not None and scale != 1.0:
        pipe.denoiser = cfg(pipe.denoiser, scale)
    g = torch.Generator().manual_seed(args.seed)
    x = pipe.sample(args.n, sampler=args.sampler, steps=args.steps, spacing=args.spacing, generator=g,
                    cond=cond, progress=True, **options)
    if ext == ".npy":
        np.save(args.out, x.numpy())
    else:
        from ..imaging import save_image_grid
        save_image_grid(x, args.out)
    print(f"wrote {args.n} images of shape {tuple(x.shape[1:])} to {args.out}")
    return 0
