"""``unnoise export``: write a trained run in a format other libraries load.

``--format diffusers`` writes a ``DDPMPipeline`` folder (``unnoise.interop.export_diffusers``): the run's
``diffusers-unet2d`` network as ``unet/`` and a ``DDPMScheduler`` with the run's betas and prediction type as
``scheduler/``; ``DDPMPipeline`` / ``DDIMPipeline.from_pretrained(OUT)`` sample it.  Which runs can be
exported, and why the others cannot, is in that module's docstring and in the README.
"""
from __future__ import annotations

import os

from .. import kinds
from ..interop.export import check_export_dir, export_diffusers
from ..interop.load import is_diffusers_folder
from ..runs import load

FORMATS = ("diffusers",)


def register(sub):
    p = sub.add_parser("export", help="write a trained run as a diffusers folder",
                       description="Write a run trained with 'unnoise train --net diffusers-unet2d' (images, "
                                   "a discrete VP schedule, eps/v/x0 prediction) as a diffusers DDPMPipeline "
                                   "folder that diffusers' DDPMPipeline/DDIMPipeline.from_pretrained load.")
    p.add_argument("--checkpoint", required=True, help="run directory written by 'unnoise train'")
    p.add_argument("--format", default="diffusers", choices=FORMATS, help="output format (default: diffusers)")
    p.add_argument("out", nargs="?", default=None, metavar="OUT", help="folder to write (or --out OUT)")
    p.add_argument("--out", dest="out_option", default=None, metavar="OUT", help="folder to write (same as the OUT argument)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it holds an earlier export (it is replaced only once the new one is complete)")
    p.add_argument("--raw-weights", action="store_true", help="export the raw weights instead of the EMA weights")
    p.set_defaults(func=run)


def run(args):
    if args.out is not None and args.out_option is not None and args.out != args.out_option:
        raise ValueError(f"two output folders given ({args.out!r} and --out {args.out_option!r}); give one")
    out = args.out if args.out is not None else args.out_option
    if out is None:
        raise ValueError("give the folder to write: unnoise export --checkpoint RUN OUT")
    if is_diffusers_folder(args.checkpoint):
        raise ValueError(f"{args.checkpoint!r} is already a diffusers folder; export takes a run written by "
                         "'unnoise train --net diffusers-unet2d'")
    if os.path.abspath(out) == os.path.abspath(args.checkpoint):
        raise ValueError("OUT is the run directory itself; choose a new folder")
    check_export_dir(out, args.overwrite)  # before the run is read
    pipe = load(args.checkpoint, device="cpu", ema=not args.raw_weights)
    if not pipe.kind_entry.can("export"):
        raise ValueError(f"only runs of {kinds.able('export')} trained with --net diffusers-unet2d export to "
                         "diffusers; "
                         f"{args.checkpoint!r} is a {pipe.kind} run")
    export_diffusers(pipe.denoiser, pipe.schedule, out, overwrite=args.overwrite)
    pred = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}[pipe.denoiser.parameterization]
    print(f"wrote {out}/ (model_index.json, unet/, scheduler/: DDPMScheduler, {pred}); load it with "
          f"diffusers.DDPMPipeline.from_pretrained({out!r}) or unnoise.load({out!r})")
    if pipe.num_classes:
        print(f"the model is class-conditional ({pipe.num_classes} classes, null class {pipe.num_classes}): diffusers' "
              "DDPMPipeline/DDIMPipeline pass no class labels and fail on it; call its unet with class_labels "
              "yourself, or sample it with unnoise.load / unnoise sample --class-label")
    return 0
