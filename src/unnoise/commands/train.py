"""``unnoise train``: train a diffusion model on any kind of data.

The kind of data (vectors, arrays, images, audio, latents) is chosen by ``--data``/``--latent``/``--net``
through the registry in :mod:`unnoise.commands.kinds`; each kind resolves its own options and rejects
options of other kinds.  A new run never replaces an existing one unless ``--overwrite`` is given;
``--resume`` continues one (from its newest complete checkpoint, or a given ``step_*`` directory).
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import torch

from .. import checkpoint
from .. import data as data_mod
from .. import losses, schedules
from ..denoiser import PARAMETERIZATIONS
from ..pipeline import train_model
from ..train import TrainConfig
from . import kinds
from .common import add_device_arg
from .train_images import add_image_args


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
    p.add_argument("--width", type=int, default=None, help="MLP hidden width (default: 256)")
    p.add_argument("--depth", type=int, default=None, help="MLP residual blocks (default: 4)")
    p.add_argument("--parameterization", default="v", choices=PARAMETERIZATIONS,
                   help="what the network predicts (default: v, which stays accurate at the highest noise levels where "
                        "an eps-network's small errors are multiplied by sigma)")
    p.add_argument("--schedule", default="ddpm", choices=schedules.available(),
                   help="noise schedule (default: ddpm, linear betas over 1000 steps)")
    p.add_argument("--weighting", default="uniform", choices=losses.WEIGHTINGS,
                   help="loss weighting over noise levels (default: uniform = plain MSE on the prediction)")
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
    add_image_args(p)
    from .train_audio import add_audio_args
    add_audio_args(p)
    from .train_latent import add_latent_args
    add_latent_args(p)
    add_scaling_args(p)
    p.set_defaults(func=run)
    _PARSERS.append(p)


# ---------------------------------------------------------------- scaling, precision, checkpoints
_PARSERS: list = []
# options that may differ when a run is resumed; everything else is taken from the stored run
RESUME_OVERRIDES = ("steps", "device", "precision", "compile", "checkpoint_every", "keep_checkpoints",
                    "max_bad_steps", "sample_every", "log_every", "tensorboard")


def add_scaling_args(p) -> None:
    """Options of the training loop itself: precision, compile, accumulation, LR decay, checkpoints."""
    g = p.add_argument_group("training loop (also under torchrun: torchrun --nproc_per_node N -m unnoise train ...)")
    g.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="fp32, bf16 autocast (CPU or CUDA) or fp16 autocast with gradient scaling (CUDA only)")
    g.add_argument("--compile", action="store_true", help="compile the model with torch.compile")
    g.add_argument("--grad-accum", type=int, default=1,
                   help="split each batch into this many micro-batches (same result, less memory; default: 1)")
    g.add_argument("--lr-decay", default="none", choices=("none", "cosine"),
                   help="learning rate after warm-up: constant or cosine decay to --min-lr (default: none)")
    g.add_argument("--min-lr", type=float, default=0.0, help="final learning rate of the cosine decay (default: 0)")
    g.add_argument("--checkpoint-every", type=int, default=500,
                   help="steps between resumable checkpoints in OUT/checkpoints/ (default: 500; 0 = only at the end)")
    g.add_argument("--keep-checkpoints", type=int, default=3, help="how many checkpoints to keep (default: 3; 0 = all)")
    g.add_argument("--max-bad-steps", type=int, default=10,
                   help="stop after this many steps in a row with a NaN/inf loss or gradient (default: 10)")
    g.add_argument("--sample-every", type=int, default=0,
                   help="write a plot of EMA samples to OUT/samples/ every this many steps (default: 0 = never)")
    g.add_argument("--log-every", type=int, default=25, help="steps between lines of metrics.jsonl (default: 25)")
    g.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard logs to OUT/tensorboard (needs the tensorboard package)")
    g.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its newest checkpoint, with its stored options "
                        f"(these may be changed: {', '.join('--' + o.replace('_', '-') for o in RESUME_OVERRIDES)})")


def loop_options(args) -> dict:
    """TrainConfig keywords from the training-loop options."""
    return dict(precision=args.precision, compile=args.compile, grad_accum=args.grad_accum,
                lr_decay=args.lr_decay, min_lr=args.min_lr, checkpoint_every=args.checkpoint_every,
                keep_checkpoints=args.keep_checkpoints, max_bad_steps=args.max_bad_steps,
                sample_every=args.sample_every, log_every=args.log_every, tensorboard=args.tensorboard,
                resume_from=args.resume or "")


def resolve_resume(args):
    """For ``--resume RUN_DIR`` (or ``RUN_DIR/checkpoints/step_N``): the stored options of the run,
    with the allowed overrides applied; for a new run, the guard against replacing an existing one."""
    if not args.resume:
        if not args.data or not args.out:
            raise ValueError("--data and --out are required (or --resume RUN_DIR to continue a run)")
        aside = checkpoint.prepare_run_dir(args.out, resume=False, overwrite=args.overwrite)
        if aside:
            print(f"the previous run in {args.out} was moved to {aside}; it is deleted once the new run's first "
                  "checkpoint is written")
        return args
    if args.overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces one; give only one of them")
    run_dir, step_dir = checkpoint.resolve_resume(args.resume)
    saved = checkpoint.read_config(step_dir).get("command")
    if not isinstance(saved, dict):
        raise ValueError(f"{os.path.join(step_dir, checkpoint.CONFIG_NAME)} has no stored command options (the run was "
                         "not started by 'unnoise train'); resume it from Python with Trainer.resume")
    merged = dict(vars(args))
    merged.update(saved)
    parser = _PARSERS[-1] if _PARSERS else None
    for name in RESUME_OVERRIDES:
        if parser is not None and getattr(args, name) != parser.get_default(name):
            merged[name] = getattr(args, name)
    merged.update(out=run_dir, resume=step_dir, func=args.func, overwrite=False)
    return argparse.Namespace(**merged)


def check_numbers(args) -> None:
    """Ranges of the numeric options, before anything is loaded (one line each)."""
    for name in ("steps", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    for name in ("lr", "ema_decay", "grad_clip", "min_lr"):
        value = getattr(args, name)
        if not math.isfinite(value):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
    if args.grad_clip < 0:
        raise ValueError(f"--grad-clip must be >= 0 (0 = off), got {args.grad_clip}")
    for name in ("width", "depth", "image_size", "base_channels", "num_points", "num_images", "patch_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    dropout = getattr(args, "dropout", None)
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise ValueError(f"--dropout must be in [0, 1), got {dropout}")


def command_record(args) -> dict:
    """The JSON-able options of this command, stored in the checkpoint so --resume can rebuild the run."""
    skip = {"func", "resume", "command"}
    return {k: v for k, v in vars(args).items()
            if k not in skip and (v is None or isinstance(v, (bool, int, float, str, list)))}


def finish(trainer, out: str, command: str = "train") -> int:
    """Report how the run ended; exit status 128 + signal number when stopped by SIGINT/SIGTERM.
    ``command``: the ``unnoise`` subcommand that continues the run."""
    import signal

    from .. import distributed
    code = 0
    if trainer.stopped_by:
        num = getattr(signal, trainer.stopped_by, None)
        code = 128 + int(num) if num is not None else 1
        if distributed.is_main():
            print(f"stopped by {trainer.stopped_by} at step {trainer.step_count}; checkpoint saved. "
                  f"Continue with: unnoise {command} --resume {out}" + (" (same options)" if command != "train" else ""))
    elif distributed.is_main():
        print(f"wrote {out}/ (config.json, model.safetensors, checkpoints/, metrics.jsonl, loss.png)")
    distributed.cleanup()
    return code


def run(args):
    args = resolve_resume(args)
    kind = kinds.train_kind(args)
    check_numbers(args)
    from . import train as train_cmd
    try:
        return kind.train(args, train_cmd)
    except BaseException:
        if args.overwrite and checkpoint.restore_replaced(args.out):  # nothing was trained: keep the old run
            print(f"the previous run in {args.out} was put back", file=sys.stderr)
        raise


def run_vectors(args) -> int:
    """Vectors ``(N, d)``: a built-in 2-D set or a file, standardised per feature, with the MLP."""
    torch.manual_seed(args.seed)  # the network's initial weights (and dropout) follow the seed
    g = torch.Generator().manual_seed(args.seed)
    x = data_mod.load_vectors(args.data, n=args.num_points, generator=g)
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay,
                      grad_clip=args.grad_clip, weighting=args.weighting, warmup=args.warmup, seed=args.seed,
                      device=args.device, **loop_options(args))
    trainer = train_model(x, args.out, net_config={"width": args.width, "depth": args.depth},
                          parameterization=args.parameterization, schedule=args.schedule, config=cfg,
                          normalize=not args.no_normalize, info={"kind": "vectors", "command": command_record(args)},
                          progress=int(os.environ.get("RANK", "0")) == 0)
    return finish(trainer, args.out)
