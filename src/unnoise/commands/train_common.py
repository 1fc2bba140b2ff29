"""Helpers shared by the training commands (``unnoise train``, ``train-classifier``, ``train-autoencoder``):
the training-loop options, ``--resume``, the stored command record and the end-of-run report."""
from __future__ import annotations

import argparse
import math
import os
import signal

from .. import checkpoint, distributed
from ..train import TrainConfig

# ---------------------------------------------------------------- scaling, precision, checkpoints
_PARSERS: list = []
# options that may differ when a run is resumed; everything else is taken from the stored run
RESUME_OVERRIDES = ("steps", "device", "precision", "compile", "checkpoint_every", "keep_checkpoints",
                    "max_bad_steps", "sample_every", "log_every", "tensorboard", "num_workers")


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
    g.add_argument("--num-workers", type=int, default=-1,
                   help="DataLoader worker processes reading streamed data (folders, .npy, WAV crops); "
                        "-1 = 2 on CPU, 4 on CUDA; 0 = read in the training process (default: -1)")
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
                num_workers=getattr(args, "num_workers", -1),
                resume_from=args.resume or "")


def train_config(args) -> TrainConfig:
    """The TrainConfig of an ``unnoise train`` run: the optimiser and loss options plus the loop options."""
    return TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay,
                       grad_clip=args.grad_clip, weighting=args.weighting, warmup=args.warmup, seed=args.seed,
                       device=args.device, **loop_options(args))


def resolve_resume(args):
    """For ``--resume RUN_DIR`` (or ``RUN_DIR/checkpoints/step_N``): the stored options of the run,
    with the allowed overrides applied; for a new run, the guard against replacing an existing one."""
    if not args.resume:
        if not args.data or not args.out:
            raise ValueError("--data and --out are required (or --resume RUN_DIR to continue a run)")
        checkpoint.check_not_inside(args.out, args.data)
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
    given = {name: value for name, value in vars(args).items()
             if parser is not None and name in saved and value != parser.get_default(name)}
    merged.update(check_resume_options(given, saved, run_dir, step_dir))
    merged.update(out=run_dir, resume=step_dir, func=args.func, overwrite=False)
    return argparse.Namespace(**merged)


def check_resume_options(given: dict, saved: dict, run_dir: str, step_dir: str) -> dict:
    """Compare the options given with ``--resume`` (``given``) with the run's stored ones (``saved``): one that
    differs and may not change is refused in one line naming it; the allowed overrides (:data:`RESUME_OVERRIDES`)
    that differ are applied with one line saying so; a run already at its ``--steps`` is refused.  Returns the
    overrides to apply."""
    changed = [n for n in given if n in saved and n not in RESUME_OVERRIDES and not _same(n, given[n], saved[n])]
    if changed:
        flags = ", ".join(f"--{n.replace('_', '-')} {given[n]} (the run has {saved[n]})" for n in changed)
        allowed = ", ".join("--" + o.replace("_", "-") for o in RESUME_OVERRIDES)
        raise ValueError(f"--resume continues {run_dir} with its stored options, but {flags} differs; leave it "
                         f"out, or start a new run with --out (only {allowed} may change on resume)")
    overrides = {n: given[n] for n in RESUME_OVERRIDES if n in given}
    applied = [f"--{n.replace('_', '-')} {v} (was {saved[n]})" for n, v in overrides.items()
               if n in saved and v != saved[n]]
    step = int(checkpoint.read_state_json(step_dir)["step"])
    steps = overrides.get("steps", saved.get("steps"))
    if steps is not None and steps <= step:
        raise ValueError(f"{run_dir} is already at step {step} of --steps {steps}: nothing to train; "
                         f"give --steps larger than {step} to train it further")
    if applied:
        print(f"resuming {run_dir} at step {step} with {', '.join(applied)}")
    return overrides


def _same(name: str, given, stored) -> bool:
    """Whether a given option equals the stored one (a --data or --out path naming the same file counts as equal)."""
    if given == stored:
        return True
    if name in ("data", "out") and isinstance(given, str) and isinstance(stored, str):
        return os.path.abspath(given) == os.path.abspath(stored) or \
            (os.path.exists(given) and os.path.exists(stored) and os.path.samefile(given, stored))
    return False


def hold_run_dir(args) -> str | None:
    """Take the writer lock (:mod:`unnoise.checkpoint.lock`) of the run directory this command will change,
    before anything else touches it: the ``--resume`` run, or an existing ``--out`` (which ``--overwrite`` would
    move aside).  Returns the directory to release with ``checkpoint.unlock_run_dir`` (None when nothing was
    held; a new directory is locked by the Trainer when it creates it)."""
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 writes the run, and holds it for all
        return None
    if args.resume and os.path.isdir(args.resume):
        target = args.resume
        if checkpoint.is_step_dir(target):
            parent = os.path.dirname(os.path.abspath(target))
            target = os.path.dirname(parent) if os.path.basename(parent) == checkpoint.CHECKPOINTS_DIR else parent
    elif not args.resume and args.out and os.path.isdir(args.out) and checkpoint.is_run_dir(args.out):
        target = args.out
    else:
        return None
    checkpoint.lock_run_dir(target)
    return target


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


def stopped_by_signal(trainer, run_dir: str) -> int | None:
    """For the demos: when Ctrl-C (SIGINT) or SIGTERM stopped training, say so in one line and return the exit
    status (128 + signal) instead of sampling the half-trained model; None when training ran to its end (or
    stopped on a time limit, which the demo planned)."""
    num = getattr(signal, trainer.stopped_by or "", None)
    if not isinstance(num, signal.Signals):
        return None
    print(f"stopped by {trainer.stopped_by} at step {trainer.step_count} of {trainer.config.steps}; the half-trained "
          f"model is saved in {run_dir}/ and nothing was sampled from it (run the demo again with --overwrite to "
          "start over)")
    return 128 + int(num)


def resume_args(args, what: str):
    """``--resume RUN_DIR``: write to that run; the data options must be given as when it started."""
    if args.resume and not args.out:
        args.out = args.resume
    if not args.data or not args.out:
        raise ValueError(f"--data and --out are required (to continue a {what} run: --resume RUN_DIR with the "
                         "same --data and model options)")
    if args.resume and os.path.abspath(args.resume) != os.path.abspath(args.out):
        raise ValueError("--resume RUN_DIR continues that run in place; leave out --out or give the same directory")
    checkpoint.check_not_inside(args.out, args.data)
    if not args.resume:
        checkpoint.check_new_run_dir(args.out)
        return args
    run_dir, step_dir = checkpoint.resolve_resume(args.resume)
    saved = checkpoint.read_config(step_dir).get("command")  # runs written before it was stored: only --steps
    given = {k: v for k, v in vars(args).items() if k not in ("out", "resume", "func", "command")}
    check_resume_options(given, saved if isinstance(saved, dict) else {"steps": None}, run_dir, step_dir)
    return args
