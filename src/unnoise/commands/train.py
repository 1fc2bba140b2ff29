"""``unnoise train``: train a diffusion model on any kind of data.

The kind of data (vectors, arrays, images, audio, latents, angles, ...) is chosen by ``--data``/``--latent``/
``--net``/``--periodic`` through the registry of data kinds (:mod:`unnoise.kinds`): the first kind whose train
entry claims the arguments trains; it resolves its own options and rejects the options of other kinds.  A new
run never replaces an existing one unless ``--overwrite`` is given; ``--resume`` continues one (from its newest
complete checkpoint, or a given ``step_*`` directory).
"""
from __future__ import annotations

import sys

from .. import checkpoint, kinds, losses, schedules
from .. import data as data_mod
from ..denoiser import PARAMETERIZATIONS
from .common import add_device_arg
from .train_common import RESUME_OVERRIDES, _PARSERS, add_scaling_args, check_numbers, hold_run_dir, resolve_resume

# options every kind takes, with the defaults a kind's train entry may change (its ``options``)
GENERAL_DEFAULTS = {"schedule": "ddpm", "parameterization": "v"}


def register(sub):
    p = sub.add_parser("train", help="train a model on vectors, arrays, images, audio or latents",
                       description="Train a diffusion model and write a run directory (config.json, "
                                   "model.safetensors, checkpoints/, metrics.jsonl, loss.png).  --data picks the "
                                   "kind: a .npy/.csv file or a built-in 2-D set (MLP, or --net unet|diffwave for "
                                   "(N, C, L) / (N, C, D, H, W) arrays), 'digits' or a folder of images (U-Net/DiT), "
                                   "a folder of WAV files (audio); --latent AE_DIR trains on an autoencoder's "
                                   "latents (there 'shapes', the captioned set, works too).")
    p.add_argument("--data", default=None,
                   help=f"a .npy/.npz/.csv file of shape (N, ...) or a built-in set: {', '.join(sorted(data_mod.TOY_DATASETS))}")
    p.add_argument("--out", default=None, help="run directory to write")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run in --out (it is kept aside until the new run's first checkpoint)")
    p.add_argument("--num-points", type=int, default=None, help="points drawn from a built-in set (default: 20000)")
    p.add_argument("--width", type=int, default=None,
                   help="network width: the MLP's hidden width (default: 256), or the width of the kind's transformer, "
                        "FNO or graph transformer (tokens 128, backbones 128, functions 32, molecules 64)")
    p.add_argument("--depth", type=int, default=None,
                   help="network depth: the MLP's residual blocks, or the layers of the kind's transformer, FNO or graph "
                        "transformer (default: 4)")
    p.add_argument("--heads", type=int, default=None,
                   help="attention heads of the transformer backbones (tokens, backbones; default: 4)")
    p.add_argument("--parameterization", default=None, choices=PARAMETERIZATIONS,
                   help="what the network predicts (default: v, which stays accurate at the highest noise levels where "
                        "an eps-network's small errors are multiplied by sigma)")
    p.add_argument("--schedule", default=None, choices=schedules.available(),
                   help="noise schedule (default: ddpm, linear betas over 1000 steps; wrapped for --periodic)")
    p.add_argument("--weighting", default="uniform", choices=losses.ALL_WEIGHTINGS,
                   help="loss weighting over noise levels (default: uniform = plain MSE on the prediction; for tokens "
                        "and molecules their NELBO); crossentropy: tokens and molecules only, the clean data's "
                        "cross-entropy at every level (DiGress's loss)")
    p.add_argument("--steps", type=int, default=5000, help="optimisation steps (default: 5000)")
    p.add_argument("--batch-size", type=int, default=512, help="batch size (default: 512)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: 1e-3)")
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay of the weights (default: 0.999)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip, 0 = off (default: 1.0)")
    p.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up steps (default: 0)")
    p.add_argument("--no-normalize", action="store_true", default=None,
                   help="train on the raw values instead of per-feature standardised ones")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_device_arg(p)
    added = []
    for kind in kinds.all_kinds():  # each kind's own arguments (kinds may share one function)
        add = kind.train.add_args if kind.train is not None else None
        if add is not None and add not in added:
            add(p)
            added.append(add)
    add_scaling_args(p)
    p.set_defaults(func=run)
    _PARSERS.append(p)


def kind_options() -> list[str]:
    """The options that only some kinds take: those the kinds' train entries declare."""
    names = []
    for kind in kinds.all_kinds():
        for option in kind.train.options if kind.train is not None else ():
            if option not in names and option not in GENERAL_DEFAULTS:
                names.append(option)
    return names


def train_kind(args) -> kinds.Kind:
    """The first registered kind whose train entry claims the arguments; its options resolved (given ones
    kept, the rest set to the kind's defaults), any option of other kinds rejected in one line."""
    kind = next(k for k in kinds.all_kinds() if k.train is not None and k.train.claims(args))
    entry = kind.train
    given = [o for o in kind_options() if getattr(args, o, None) is not None and o not in entry.options]
    if given:
        flags = ", ".join("--" + o.replace("_", "-") for o in given)
        raise ValueError(f"{flags} {'does' if len(given) == 1 else 'do'} not apply to {entry.what}; "
                         "remove the option or train the kind of data it is for")
    for option, default in {**GENERAL_DEFAULTS, **entry.options}.items():
        if getattr(args, option, None) is None:
            setattr(args, option, default)
    return kind


def run(args):
    held = hold_run_dir(args)  # one writer per run directory, before anything is moved or read
    try:
        args = resolve_resume(args)
        kind = train_kind(args)
        check_numbers(args)
        try:
            return kind.train.run(args)
        except BaseException:
            if args.overwrite and checkpoint.restore_replaced(args.out):  # nothing was trained: keep the old run
                print(f"the previous run in {args.out} was put back", file=sys.stderr)
            raise
    finally:
        if held:
            checkpoint.unlock_run_dir(held)
