"""``unnoise distill3d``: a 3-D voxel shape from a 2-D image prior by score distillation (SDS or VSD);
with ``--train-prior``, train a small view-conditioned prior on the built-in multi-view shapes first."""
from __future__ import annotations

import os

import torch

from .. import io, multiview
from ..data.views import SHAPES
from ..devices import resolve_device
from ..distill import METHODS, PARTICLE_MODELS, WEIGHTINGS
from ..imaging import save_image_grid
from ..render import render, turntable
from ..runs import load
from .common import add_device_arg


def register(sub):
    p = sub.add_parser("distill3d", help="a 3-D shape (voxel grid, turntable GIF, mesh) from an image prior",
                       description="Optimise a voxel grid of density and colour so that its renders from random "
                                   "cameras look like samples of the image run in --checkpoint (score distillation: "
                                   "DreamFusion's SDS or ProlificDreamer's VSD).  Writes --out/grid.npy, "
                                   "turntable.gif, shape.ply (or .obj) and previews.  With --train-prior: train a "
                                   "small camera-conditioned prior on built-in shapes (--shapes) and write it to "
                                   "--out.")
    p.add_argument("--checkpoint", default=None, help="the image prior: an unnoise image run or a diffusers folder")
    p.add_argument("--out", required=True, help="output directory (the shape's files, or the prior with --train-prior)")
    p.add_argument("--class-label", default=None, help="class index or name (class-conditional priors)")
    p.add_argument("--prompt", default=None, help="text prompt (text-conditioned priors)")
    p.add_argument("--steps", type=int, default=500, help="optimisation steps (default: 500)")
    p.add_argument("--method", default="sds", choices=METHODS, help="sds or vsd (default: sds)")
    p.add_argument("--particles", type=int, default=1,
                   help="grids optimised at once (default: 1); with --method vsd they are pushed apart to cover the "
                        "prior's variety.  Each is written to its own folder p1/, p2/, ...")
    p.add_argument("--particle-model", default="auto", choices=("auto", *PARTICLE_MODELS),
                   help="VSD's particle model: empirical, the exact denoiser of the particles' renders (SDS for a "
                        "single grid); net, a small camera-conditioned denoiser trained online (default auto: "
                        "empirical with --particles above 1, net for one grid)")
    p.add_argument("--guidance-scale", type=float, default=1.0,
                   help="classifier-free guidance scale, on the class or prompt and on the camera of a prior from "
                        "--train-prior (default: 1)")
    p.add_argument("--weighting", default="dreamfusion", choices=WEIGHTINGS, help="w(sigma) (default: dreamfusion)")
    p.add_argument("--sigma-min", type=float, default=0.05, help="smallest noise level (default: 0.05)")
    p.add_argument("--sigma-max", type=float, default=None,
                   help="largest noise level at the start (default: 3 for sds, 10 for vsd)")
    p.add_argument("--anneal-to", default=None,
                   help="largest noise level at the end (annealed geometrically), or none to keep --sigma-max "
                        "throughout (default: 0.5 for sds, none for vsd: VSD's particles push each other apart only "
                        "at noise levels where their renders overlap)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate of the grid (default: 0.05)")
    p.add_argument("--resolution", type=int, default=32, help="voxels per side (default: 32)")
    p.add_argument("--views", type=int, default=4, help="random cameras per step (default: 4)")
    p.add_argument("--preview-every", type=int, default=100, help="write previews/step_N.png every N steps (0: never)")
    p.add_argument("--mesh", default="shape.ply", help="mesh file name in --out, .ply or .obj (default: shape.ply)")
    p.add_argument("--train-prior", action="store_true", help="train a view-conditioned prior instead")
    p.add_argument("--shapes", default="box", help=f"--train-prior: comma-separated shapes of {', '.join(SHAPES)}")
    p.add_argument("--train-steps", type=int, default=2000, help="--train-prior: training steps (default: 2000)")
    p.add_argument("--views-per-shape", type=int, default=512, help="--train-prior: images per shape (default: 512)")
    p.add_argument("--image-size", type=int, default=32, help="--train-prior: image side (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_device_arg(p)
    p.set_defaults(func=run)


def anneal_level(text: str):
    """--anneal-to: a positive noise level, or none."""
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--anneal-to must be a noise level or none, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"--anneal-to must be a positive noise level or none, got {text!r}")
    return value


def check_args(args):
    """One-line errors for bad options, before any work."""
    for name in ("steps", "resolution", "views", "particles", "train_steps", "views_per_shape", "image_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.preview_every < 0:
        raise ValueError(f"--preview-every must be 0 (never) or a positive number of steps, got {args.preview_every}")
    vsd = args.method == "vsd"
    if args.sigma_max is None:
        args.sigma_max = 10.0 if vsd else 3.0
    if not 0 < args.sigma_min <= args.sigma_max:
        raise ValueError(f"need 0 < --sigma-min <= --sigma-max, got {args.sigma_min} and {args.sigma_max}")
    args.anneal_to = anneal_level(args.anneal_to or ("none" if vsd else "0.5"))
    if os.path.splitext(args.mesh)[1].lower() not in (".ply", ".obj"):
        raise ValueError(f"--mesh must end in .ply or .obj, got {args.mesh!r}")
    if args.prompt is not None and args.class_label is not None:
        raise ValueError("give --prompt or --class-label, not both")


def train_prior(args):
    shapes = tuple(s.strip() for s in args.shapes.split(",") if s.strip())
    unknown = [s for s in shapes if s not in SHAPES]
    if not shapes or unknown:
        raise ValueError(f"unknown shape(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(SHAPES)}")
    io.check_output_path(args.out, is_dir=True)
    multiview.train_view_prior(args.out, shapes, args.views_per_shape, args.image_size, args.train_steps,
                               seed=args.seed, device=args.device)
    print(f"wrote {args.out}/; next: unnoise distill3d --checkpoint {args.out} --out shape/"
          + (" --class-label 0" if len(shapes) > 1 else ""))
    return 0


def run(args):
    check_args(args)
    if args.train_prior:
        return train_prior(args)
    if not args.checkpoint:
        raise ValueError("give --checkpoint RUN (an image prior), or --train-prior to train one")
    out = io.check_output_path(args.out, is_dir=True)
    multiview.mesher()  # scikit-image missing: say so now, not after the optimisation
    pipe = load(args.checkpoint, device=resolve_device(args.device))
    if args.prompt is not None and pipe.prompt_encoder is None:
        raise ValueError(f"--prompt needs a text-conditioned run; {args.checkpoint!r} is not (use --class-label "
                         "for a class-conditional run, or neither)")
    if args.class_label is not None and not pipe.num_classes:
        raise ValueError(f"--class-label needs a class-conditional run; {args.checkpoint!r} is unconditional")
    if (args.guidance_scale != 1.0 and args.prompt is None and args.class_label is None
            and not {"concat", "vector"} & set(getattr(pipe.denoiser, "nulls", {}))):
        raise ValueError("--guidance-scale needs --prompt or --class-label (the condition to guide towards), or a "
                         "prior trained with a null camera (unnoise distill3d --train-prior)")
    previews = os.path.join(out, "previews")
    size = int(pipe.model_shape[-1])
    show = turntable(4, 20.0)

    def preview(step, params):
        if args.preview_every and (step % args.preview_every == 0 or step == args.steps):
            os.makedirs(previews, exist_ok=True)
            with torch.no_grad():  # one row of 4 views per particle
                images = torch.cat([render(grid, show, size) for grid in particles(params)])
            save_image_grid(images, os.path.join(previews, f"step_{step:06d}.png"), nrow=4)

    def particles(params):
        if args.particles == 1:
            return [params]
        return [multiview.particle(params, k) for k in range(args.particles)]

    particle_model = args.particle_model
    if particle_model == "auto":
        particle_model = "empirical" if args.particles > 1 else "net"
    history = []
    grid = multiview.distill_grid(pipe, args.steps, args.method, class_label=args.class_label, prompt=args.prompt,
                                  resolution=args.resolution, views_per_step=args.views, lr=args.lr,
                                  guidance_scale=args.guidance_scale, sigma_range=(args.sigma_min, args.sigma_max),
                                  anneal_to=args.anneal_to, weighting=args.weighting,
                                  particle_model=particle_model, particles=args.particles,
                                  generator=torch.Generator().manual_seed(args.seed), history=history,
                                  callback=preview, progress=True)
    io.save_json(os.path.join(out, "history.json"), history)
    wrote = ["history.json"]
    grids = particles(grid)
    for k, one in enumerate(grids):
        folder = out if len(grids) == 1 else os.path.join(out, f"p{k + 1}")
        paths, no_mesh = multiview.save_shape(one, folder, args.mesh)
        wrote += [os.path.relpath(p, out) for p in paths]
        if no_mesh:  # no surface (yet): the other files are kept
            print(f"no mesh written{'' if folder == out else ' for p' + str(k + 1)}: {no_mesh}")
    if len(grids) > 1:
        with torch.no_grad():  # every particle from 8 cameras around it, one row each
            ring = turntable(8, 20.0)
            save_image_grid(torch.cat([render(one, ring, size) for one in grids]), os.path.join(out, "particles.png"),
                            nrow=8)
        wrote.append("particles.png")
    print(f"{args.method} {args.steps} steps, final loss {history[-1]['loss']:.4g}; wrote {', '.join(wrote)} in {out}")
    return 0
