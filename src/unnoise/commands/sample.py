"""``unnoise sample``: draw samples from any trained run (or diffusers folder) with any sampler.

The run is read by :func:`unnoise.load`; what is written, and which options apply, follow from the
run's kind (its :class:`~unnoise.kinds.SampleOutput` in :mod:`unnoise.kinds`).  Options that do not apply to
the run are rejected.
"""
from __future__ import annotations

import math
import os
from contextlib import nullcontext

import numpy as np
import torch
from PIL import Image

from .. import io, kinds
from ..data.arrays import load_array
from ..devices import resolve_device, threads_for_small_model
from ..gp import check_points
from ..runs import load
from .common import add_device_arg, add_sampling_args, check_guidance_scale, parse_options


def register(sub):
    p = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Sample from a run directory written by 'unnoise train' (or a diffusers folder). "
                                   "Vector and array runs write .npy/.csv (and a scatter --plot), image runs a PNG "
                                   "grid or .npy, audio runs 16-bit WAV files.")
    p.add_argument("--checkpoint", required=True, help="run directory written by 'unnoise train'")
    p.add_argument("--n", type=int, default=None,
                   help="number of samples (default: 1000 for vectors and arrays, 100 for images, 64 for latent "
                        "runs, 8 clips for audio, 10 backbones; one per prompt for images larger than 64x64)")
    p.add_argument("--out", default=None,
                   help="output: .npy or .csv (vectors, arrays; default samples.npy), .png grid or .npy (images; "
                        "default samples.png), a folder or NAME.wav (audio; default samples/), a folder of PDB "
                        "files or a .npy of angles (backbones; default backbones/)")
    p.add_argument("--plot", default=None, help="also write a picture (PNG): a scatter plot of the first two "
                                                "coordinates for vectors, spectrograms for audio, a "
                                                "Ramachandran plot for backbones")
    p.add_argument("--raw-weights", action="store_true", help="use the raw weights instead of the EMA weights")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--resolution", default=None, metavar="N|HxW",
                   help="functions (runs trained with --function-space): sample on a regular grid of N points per "
                        "axis (or HxW), whatever the training grid")
    p.add_argument("--points", default=None, metavar="FILE",
                   help="functions: sample at these coordinates in [0, 1) instead of a grid, a .npy/.csv of shape "
                        "(P,) or (P, 1) for 1-D runs, (P, 2) for 2-D; samples are (n, P), the values at the points")
    add_sampling_args(p)
    add_device_arg(p)
    for kind in kinds.all_kinds():  # each kind's own options
        if kind.sample is not None and kind.sample.add_args is not None:
            kind.sample.add_args(p.add_argument_group(kind.what))
    g = p.add_argument_group("conditional runs")
    g.add_argument("--class-label", default=None,
                   help="class to generate (index or class name; default: every class in turn for a "
                        "class-conditional run)")
    g.add_argument("--prompt", action="append", default=None,
                   help="text prompt for a text-conditioned run, or for a token (text) run the text every sample "
                        "begins with (repeatable: samples cycle through the prompts)")
    g.add_argument("--infill", default=None, metavar="TEMPLATE",
                   help="token (text) runs: fill the template, one sampled token per placeholder character "
                        "(e.g. 'the ____ sat'); the rest of the template is kept")
    g.add_argument("--placeholder", default="_", help="the placeholder character of --infill (default: _)")
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
    completes = hasattr(pipe.codec, "prefix")  # token runs: --prompt is the beginning of the samples
    if args.prompt and pipe.prompt_encoder is None and not completes:
        raise ValueError(f"--prompt needs a text-conditioned run or a token run; {args.checkpoint!r} is a "
                         f"{pipe.kind} run")
    if args.infill is not None and not hasattr(pipe.codec, "template"):
        raise ValueError(f"--infill needs a token (text) run; {args.checkpoint!r} is a {pipe.kind} run")
    if args.infill is not None and args.prompt:
        raise ValueError("give --prompt (the beginning of the samples) or --infill (a template), not both")
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
    check_guidance_scale(args.guidance_scale)
    for kind in kinds.all_kinds():
        for option in kind.sample.options if kind.sample is not None and kind is not pipe.kind_entry else ():
            if getattr(args, option, None) is not None:
                raise ValueError(f"--{option.replace('_', '-')} applies to {kind.what} runs; {args.checkpoint!r} is "
                                 f"a {pipe.kind} run")
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


BATCH_VALUES = 1 << 24  # values (floats) sampled at once: about 64 MiB per copy of the state
MAX_GRID_PIXELS = Image.MAX_IMAGE_PIXELS  # a larger PNG is refused by image readers (Pillow's own limit)


def batch_size(pipe) -> int:
    """Samples drawn at once: more are drawn in batches of this many (a .npy/.csv is written as it goes)."""
    return max(1, BATCH_VALUES // math.prod(pipe.model_shape))


def _gib(values: int) -> str:
    return f"{values * 4 / 2**30:.1f} GiB"


def check_size(pipe, n: int, out: str) -> None:
    """Refuse, in one line and before any sampling, what cannot be written as it goes: a PNG grid beyond the
    size image readers accept, and any other output (WAV files) of more samples than one batch."""
    ext = os.path.splitext(out)[1].lower()
    if ext == ".png":
        _, h, w = pipe.shape if len(pipe.shape) == 3 else (1, *pipe.shape[-2:])
        up = max(1, 64 // w)
        pixels = n * (h * up + 1) * (w * up + 1)
        if pixels > MAX_GRID_PIXELS:
            most = MAX_GRID_PIXELS // ((h * up + 1) * (w * up + 1))
            raise ValueError(f"--n {n}: a grid of {n} images would be a PNG of {pixels / 1e6:.0f} million pixels, "
                             f"more than image readers accept ({MAX_GRID_PIXELS / 1e6:.0f} million: at most {most} "
                             "images); write a .npy instead (written in batches as it goes) or lower --n")
    elif ext not in (".npy", ".csv") and n > batch_size(pipe):
        raise ValueError(f"--n {n}: these samples are written at once and would need about "
                         f"{_gib(n * math.prod(pipe.model_shape))} of memory; write a .npy (written in batches as it "
                         f"goes) or give --n {batch_size(pipe)} or less")


def run(args):
    device = resolve_device(args.device)
    pipe = load(args.checkpoint, device=device, ema=not args.raw_weights, autoencoder=args.autoencoder)
    for option in ("resolution", "points"):
        if getattr(args, option) is not None and not pipe.kind_entry.can("resolution"):
            raise ValueError(f"--{option} applies to runs of {kinds.able('resolution')}; {args.checkpoint!r} is a "
                             f"{pipe.kind} run")
    if args.resolution is not None and args.points is not None:
        raise ValueError("give --resolution (a regular grid) or --points (given coordinates), not both")
    threads_for_small_model([pipe.denoiser, getattr(pipe.codec, "autoencoder", None)], device)
    output = sample_output(pipe)
    if args.resolution is not None:
        pipe = pipe.at_resolution(args.resolution)
    if args.points is not None:
        points = check_points(load_array(args.points, min_ndim=1), len(pipe.model_shape) - 1, f"--points {args.points}")
        pipe = pipe.at_points(points)
    _check_options(args, pipe, output)
    n = args.n if args.n is not None else default_n(output, pipe, args.prompt)
    out = args.out if args.out is not None else output.default_out
    io.check_not_input(out, {"--checkpoint": args.checkpoint, "--classifier": args.classifier,
                             "--autoencoder": args.autoencoder, "--plot": args.plot})
    check_out(pipe, out)
    check_size(pipe, n, out)
    batch = batch_size(pipe)
    streamed = n > batch
    needed = n * math.prod(pipe.shape) * 4 if streamed else 0
    io.check_output_path(out, is_dir=os.path.splitext(out)[1] == "", needed_bytes=needed)  # before any sampling
    if args.plot:
        io.check_output_path(args.plot)
    options = parse_options(args.option)
    classifier = load(args.classifier, device=device) if args.classifier else None
    if classifier is not None and classifier.kind != "classifier":
        raise ValueError(f"--classifier {args.classifier!r} is a {classifier.kind} run, not a noisy classifier")
    if classifier is not None and tuple(classifier.classifier.shape) != tuple(pipe.model_shape):
        raise ValueError(f"--classifier {args.classifier!r} classifies examples of shape "
                         f"{tuple(classifier.classifier.shape)}, but the run's model works on "
                         f"{tuple(pipe.model_shape)}; train the classifier on the same data as the run")
    classes = classifier.num_classes if classifier is not None else pipe.num_classes
    generator = torch.Generator().manual_seed(args.seed)

    def draw(start: int, count: int) -> torch.Tensor:
        labels = args.class_label
        if labels is None and classes:  # every class in turn
            labels = [i % classes for i in range(start, start + count)]
        args._labels = None if labels is None else ([labels] * count if isinstance(labels, str) else labels)
        prompts = None if not args.prompt else [args.prompt[i % len(args.prompt)] for i in range(start, start + count)]
        if args.infill is not None:
            return pipe.infill(args.infill, count, placeholder=args.placeholder, steps=args.steps,
                               guidance_scale=args.guidance_scale, class_label=labels, generator=generator)
        return pipe.sample(count, sampler=args.sampler, steps=args.steps, spacing=args.spacing,
                           guidance_scale=args.guidance_scale, class_label=labels, prompt=prompts,
                           generator=generator, progress=True, classifier=classifier, **options)

    if not streamed:
        x = draw(0, n)
        paths = output.write(pipe, x, args, out)
    else:
        print(f"sampling {n} samples in batches of {batch}, written to {out} as they come")
        x = write_batches(out, n, batch, draw)
        paths = [out]
    where = paths[0] if len(paths) == 1 else f"{paths[0]} ... {paths[-1]}"
    shape = f" of shape {tuple(x.shape[1:])}" if hasattr(x, "shape") else ""
    print(f"sampled {n}{shape}; wrote {where}")  # a writer may keep fewer (molecules: the valid ones) and says so
    if args.plot:
        output.plot(pipe, x, args, args.plot)
        print(f"wrote {args.plot}" + (f" (the first {len(x)} samples)" if streamed else ""))
    return 0


def write_batches(out: str, n: int, batch: int, draw) -> torch.Tensor:
    """Draw ``n`` samples ``batch`` at a time into ``out`` (.npy: a memory-mapped array; .csv: rows appended), under
    a temporary name renamed at the end (:func:`unnoise.io.atomic_write`); returns the first batch."""
    first = {}

    def fill(tmp: str) -> None:
        csv = out.lower().endswith(".csv")
        array = None
        with open(tmp, "w") if csv else nullcontext() as text:
            for start in range(0, n, batch):
                x = draw(start, min(batch, n - start))
                first.setdefault("x", x)
                if csv:
                    np.savetxt(text, x.reshape(len(x), -1).numpy(), delimiter=",")
                    continue
                if array is None:
                    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, *x.shape[1:]))
                array[start:start + len(x)] = x.numpy()
        if array is not None:
            array.flush()
            del array

    io.atomic_write(out, fill)
    return first["x"]
