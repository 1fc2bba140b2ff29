"""``unnoise sample``: draw samples from a trained run with any sampler."""
from __future__ import annotations

import os

import numpy as np
import torch

from ..pipeline import sample_model
from .common import add_device_arg, add_sampling_args, parse_options
from .train_images import add_image_sample_args, is_image_run, run_sample_images


def register(sub):
    p = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Sample from a run directory written by 'unnoise train' and save them "
                                   "as .npy (or .csv), optionally with a scatter plot.")
    p.add_argument("--checkpoint", required=True, help="run directory written by 'unnoise train'")
    p.add_argument("--n", type=int, default=1000, help="number of samples (default: 1000; 100 for image runs, 8 WAV clips for audio runs)")
    p.add_argument("--out", default="samples.npy",
                   help="output file, .npy or .csv (default: samples.npy); .png writes an image grid for image runs; "
                        "audio runs write WAV files to a folder (default: samples/) or NAME.wav")
    p.add_argument("--plot", default=None, help="also write a scatter plot of the first two coordinates (PNG; spectrograms for audio runs)")
    p.add_argument("--raw-weights", action="store_true", help="use the raw weights instead of the EMA weights")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_sampling_args(p)
    add_device_arg(p)
    add_image_sample_args(p)
    from .sample_latent import add_latent_sample_args
    add_latent_sample_args(p)
    p.set_defaults(func=run)


def run(args):
    from ..checkpoint import load
    from ..train import resolve_device
    from .sample_latent import is_latent_run, run_sample_latent
    if is_latent_run(args.checkpoint):  # diffusion on an autoencoder's latents: decode to images
        return run_sample_latent(args, parse_options(args.option))
    if is_image_run(args.checkpoint):  # trained on digits or an image folder
        if args.out == "samples.npy":
            args.out = "samples.png"
        if args.n == 1000:  # the vector default; a 10x10 grid for images
            args.n = 100
        return run_sample_images(args, parse_options(args.option))
    from .sample_audio import DEFAULT_OUT, audio_info, run_sample_audio
    info = audio_info(args.checkpoint)
    if info is not None:  # trained on WAV clips: 16-bit WAV files at the stored rate (.npy/.csv: raw arrays)
        if args.out == "samples.npy":
            args.out = DEFAULT_OUT
        if not args.out.lower().endswith((".npy", ".csv")):
            if args.n == 1000:  # the vector default; a handful of clips to listen to
                args.n = 8
            return run_sample_audio(args, parse_options(args.option), info)
    if args.n < 1:
        raise ValueError(f"--n must be positive, got {args.n}")
    ext = os.path.splitext(args.out)[1].lower()
    if ext not in (".npy", ".csv"):
        raise ValueError(f"--out must end in .npy or .csv, got {args.out!r}")
    denoiser, schedule, config = load(args.checkpoint, ema=not args.raw_weights, device=resolve_device(args.device))
    g = torch.Generator().manual_seed(args.seed)
    shape = config["data"]["shape"]
    x = sample_model(denoiser, schedule, args.n, shape, sampler=args.sampler, steps=args.steps,
                     spacing=args.spacing, generator=g, stats=config["data"].get("normalization"),
                     progress=True, **parse_options(args.option))
    arr = x.numpy()
    if ext == ".npy":
        np.save(args.out, arr)
    else:
        np.savetxt(args.out, arr.reshape(len(arr), -1), delimiter=",")
    print(f"wrote {args.n} samples of shape {tuple(shape)} to {args.out}")
    if args.plot:
        from ..plotting import plot_points
        plot_points({f"{args.sampler}, {args.steps} steps": x.reshape(len(x), -1)}, args.plot)
        print(f"wrote {args.plot}")
