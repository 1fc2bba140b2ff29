"""``unnoise sample``: draw samples from any trained run (or diffusers folder) with any sampler.

The run is read by :func:`unnoise.load`; what is written, and which options apply, follow from the
run's kind (its :class:`~unnoise.kinds.SampleOutput` in :mod:`unnoise.kinds`).  Options that do not apply to
the run are rejected.
"""
from __future__ import annotations

import math
import os

import torch

from .. import io, kinds
from ..devices import resolve_device
from ..runs import load
from .common import add_device_arg, add_sampling_args, parse_options


def register(sub):
    p = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Sample from a run directory written by 'unnoise train' (or a diffusers folder). "
                                   "Vector and array runs write .npy/.csv (and a scatter --plot), image runs a PNG "
                                   "grid or .npy, audio runs 16-bit WAV files.")
    p.add_argument("--checkpoint", required=True, help="run directory written by 'unnoise train'")
    p.add_argument("--n", type=int, default=None,
                   help="number of samples (default: 1000 for vectors and arrays, 100 for images, 64 for latent "
                        "runs, 8 clips for audio; one per prompt for images larger than 64x64)")
    p.add_argument("--out", default=None,
                   help="output: .npy or .csv (vectors, arrays; default samples.npy), .png grid or .npy (images; "
                        "default samples.png), a folder or NAME.wav (audio; default samples/)")
    p.add_argument("--plot", default=None, help="also write a picture (PNG): a scatter plot of the first two "
                                                "coordinates for vectors, spectrograms for audio")
    p.add_argument("--raw-weights", action="store_true", help="use the raw weights instead of the EMA weights")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_sampling_args(p)
    add_device_arg(p)
    g = p.add_argument_group("conditional runs")
    g.add_argument("--class-label", default=None,
                   help="class to generate (index or class name; default: every class in turn for a "
                        "class-conditional run)")
    g.add_argument("--prompt", action="append", default=None,
                   help="text prompt for a text-conditioned run (repeatable: samples cycle through the prompts)")
    g.add_argument("--guidance-scale", type=float, default=1.0,
                   help="classifier-free guidance scale: 0 = unconditional, 1 = conditional, >1 = stronger "
                        "(default: 1); with --classifier, the classifier guidance weight")
    g.add_argument("--classifier", default=None,
                   help="directory written by 'unnoise train-classifier': classifier guidance towards "
                        "--class-label (or every class in turn)")
    g.add_argument("--autoencoder", default=None, metavar="DIR",
                   help="autoencoder directory of a latent run (default: the one stored in the run)")
    p.set_defaults(func=run)


def sample_output(pipe) -> kinds.SampleOutput:
    """How samples of a loaded run are written; a one-line error for runs that do not sample."""
    entry = pipe.kind_entry
    if entry.sample is None:
        raise ValueError(f"{pipe.source!r} is a {pipe.kind} run, which does not sample; {entry.use}".rstrip("; "))
    return entry.sample


def check_out(pipe, out: str) -> None:
    """Reject an --out this kind cannot write, before any sampling."""
    ext = os.path.splitext(out)[1].lower()
    if ext not in pipe.kind_entry.sample.extensions:
        raise ValueError(f"--out {out!r}: {pipe.kind} runs write {pipe.kind_entry.sample.writes}")


def _check_options(args, pipe, output) -> None:
    """Every option is checked against the run's kind: rejected, never ignored."""
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be a positive integer, got {args.n}")
    if args.steps < 1:
        raise ValueError(f"--steps must be a positive integer, got {args.steps}")
    if args.guidance_scale != args.guidance_scale or abs(args.guidance_scale) == float("inf"):
        raise ValueError(f"--guidance-scale must be a finite number, got {args.guidance_scale}")
    if args.prompt and pipe.prompt_encoder is None:
        raise ValueError(f"--prompt needs a text-conditioned run; {args.checkpoint!r} is a {pipe.kind} run")
    if args.classifier and not pipe.kind_entry.can("class_guidance"):
        raise ValueError(f"--classifier applies to runs of {kinds.able('class_guidance')}; "
                         f"{args.checkpoint!r} is a {pipe.kind} run")
    if args.class_label is not None and not pipe.num_classes and not args.classifier:
        raise ValueError("--class-label given but the run is unconditional: train it with --conditional, or "
                         "guide it with --classifier DIR")
    if args.guidance_scale != 1.0 and not (pipe.conditional or args.classifier):
        raise ValueError("--guidance-scale needs a class-conditional or text-conditioned run, or a noisy "
                         "classifier (--classifier DIR from 'unnoise train-classifier')")
    if args.guidance_scale != 1.0 and pipe.prompt_encoder is not None and not args.prompt:
        raise ValueError("--guidance-scale on a text-conditioned run needs --prompt (the guidance pushes towards it)")
    if args.plot is not None:
        if output.plot is None:
            plotted = [k.name for k in kinds.all_kinds() if k.sample is not None and k.sample.plot is not None]
            raise ValueError(f"--plot applies to {', '.join(plotted)} runs; {args.checkpoint!r} is a {pipe.kind} run")
        if not args.plot.lower().endswith(".png"):
            raise ValueError(f"--plot {args.plot!r}: the picture is a PNG; give a file name ending in .png")
    if args.autoencoder and not hasattr(pipe.codec, "latent_mask"):
        raise ValueError(f"--autoencoder applies to latent runs; {args.checkpoint!r} is a {pipe.kind} run")


LARGE_IMAGE = 64 * 64  # pixels beyond which the default is one sample per prompt


def default_n(output, pipe, prompts) -> int:
    """The number of samples without ``--n``: the kind's default, but for images larger than 64 x 64 (e.g. a
    Stable Diffusion folder) one per prompt, as diffusers' pipelines default to: a grid of 64 such images
    would take hours on a CPU."""
    if pipe.kind_entry.can("img2img") and len(pipe.shape) == 3 and math.prod(pipe.shape[1:]) > LARGE_IMAGE:
        return max(1, len(prompts or []))
    return output.default_n


def run(args):
    device = resolve_device(args.device)
    pipe = load(args.checkpoint, device=device, ema=not args.raw_weights, autoencoder=args.autoencoder)
    output = sample_output(pipe)
    _check_options(args, pipe, output)
    n = args.n if args.n is not None else default_n(output, pipe, args.prompt)
    out = args.out if args.out is not None else output.default_out
    check_out(pipe, out)
    io.check_output_path(out, is_dir=os.path.splitext(out)[1] == "")  # before any sampling
    if args.plot:
        io.check_output_path(args.plot)
    options = parse_options(args.option)
    classifier = load(args.classifier, device=device) if args.classifier else None
    if classifier is not None and classifier.kind != "classifier":
        raise ValueError(f"--classifier {args.classifier!r} is a {classifier.kind} run, not a noisy classifier")
    labels = args.class_label
    classes = classifier.num_classes if classifier is not None else pipe.num_classes
    if labels is None and classes:  # every class in turn
        labels = [i % classes for i in range(n)]
    args._labels = None if labels is None else ([labels] * n if isinstance(labels, str) else labels)
    prompts = None if not args.prompt else [args.prompt[i % len(args.prompt)] for i in range(n)]
    x = pipe.sample(n, sampler=args.sampler, steps=args.steps, spacing=args.spacing,
                    guidance_scale=args.guidance_scale, class_label=labels, prompt=prompts,
                    generator=torch.Generator().manual_seed(args.seed), progress=True, classifier=classifier,
                    **options)
    paths = output.write(pipe, x, args, out)
    where = paths[0] if len(paths) == 1 else f"{paths[0]} ... {paths[-1]}"
    print(f"wrote {n} samples of shape {tuple(x.shape[1:])} to {where}")
    if args.plot:
        output.plot(pipe, x, args, args.plot)
        print(f"wrote {args.plot}")
    return 0
