"""A trainer's checkpoints: the state beyond the weights, writing it (:func:`save`) and continuing from
it exactly (:func:`resume`).  :class:`~unnoise.train.trainer.Trainer`'s ``save``/``resume`` call these."""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict

import torch

from .. import checkpoint, kinds
from .. import distributed as dist
from ..denoiser import Denoiser
from ..plotting import plot_loss
from .log import read_history


_EXCEPTIONS = {"PermissionError": PermissionError, "FileNotFoundError": FileNotFoundError,
               "ValueError": ValueError, "OSError": OSError}


def _on_rank0(fn, device):
    """Run ``fn`` on rank 0 only; if it raises, every rank raises the same kind of error."""
    err = None
    if dist.is_main():
        try:
            fn()
        except (OSError, ValueError) as e:
            err = e
    msg = dist.broadcast_text("" if err is None else f"{type(err).__name__}\0{err}", device)
    if err is not None:
        raise err
    if msg:
        name, text = msg.split("\0", 1)
        raise _EXCEPTIONS.get(name, RuntimeError)(f"(rank 0) {text}")


def training_state(trainer) -> tuple[dict, dict]:
    """Everything beyond the weights needed to continue exactly: ``(tensors, json)``."""
    tensors: dict[str, torch.Tensor] = {}
    opt_json = checkpoint.flatten_state(trainer.opt.state_dict(), tensors, "optim")
    scaler_json = checkpoint.flatten_state(trainer.scaler.state_dict(), tensors, "scaler")
    tensors["rng.generator"] = trainer.generator.get_state()
    tensors["rng.noise"] = trainer.noise_generator.get_state()
    # dropout draws from the global RNG of each rank: keep every rank's
    for r, s in enumerate(dist.gather_bytes(torch.get_rng_state(), trainer.device)):
        tensors[f"rng.torch.rank{r}"] = s
    if trainer.device.type == "cuda":
        for r, s in enumerate(dist.gather_bytes(torch.cuda.get_rng_state(trainer.device), trainer.device)):
            tensors[f"rng.cuda.rank{r}"] = s
    meta = {"step": trainer.step_count, "data": trainer.sampler.state(trainer.step_count * trainer.config.batch_size),
            "batch_size": trainer.config.batch_size, "skipped_steps": trainer.skipped_steps,
            "bad_in_row": trainer.bad_in_row, "loss_smooth": trainer.loss_smooth, "world_size": trainer.world_size,
            "device_type": trainer.device.type, "lr": trainer._lr(), "optimizer": opt_json, "scaler": scaler_json}
    return tensors, meta


def check_finite_weights(trainer) -> None:
    """Refuse to write a checkpoint whose weights or EMA weights hold NaN/inf."""
    for name, module in (("weights", trainer.denoiser), ("EMA weights", trainer.ema)):
        for pname, p in module.named_parameters():
            if not torch.isfinite(p).all():
                raise FloatingPointError(f"refusing to write a checkpoint: {name} {pname!r} contain NaN/inf "
                                         f"at step {trainer.step_count}")


def save(trainer) -> None:
    """Write a training checkpoint (``run_dir/checkpoints/step_*``, ``latest``), the top-level
    ``config.json``/``model.safetensors`` and the loss curve.  All ranks must call it; rank 0 writes.

    A failed write (e.g. disk full) raises ``OSError`` and leaves the previous checkpoint intact.
    """
    if not trainer.run_dir:
        return
    check_finite_weights(trainer)
    tensors, meta = training_state(trainer)  # a collective: every rank takes part
    info = dict(trainer.info) if trainer.kind is None else {"kind": trainer.kind, **trainer.info}
    describe = getattr(trainer.objective, "describe", None)
    if describe is not None:
        info["objective"] = describe()
    info["train"] = {k: v for k, v in asdict(trainer.config).items()}
    info["step"] = trainer.step_count

    def write():
        try:
            checkpoint.save_training_checkpoint(trainer.run_dir, trainer.step_count, trainer.denoiser, trainer.schedule,
                                                trainer.ema, info, tensors, meta, keep=trainer.config.keep_checkpoints)
        except OSError as err:
            prev = checkpoint.list_step_dirs(trainer.run_dir)
            kept = f"the previous checkpoint {prev[-1][1]} is intact" if prev else "no earlier checkpoint exists"
            raise OSError(err.errno, f"could not write the checkpoint of step {trainer.step_count} to "
                                     f"{trainer.run_dir!r} ({err.strerror or err}); {kept}") from None
        if trainer.history:
            plot_loss(trainer.history, os.path.join(trainer.run_dir, "loss.png"))
    _on_rank0(write, trainer.device)


def resume(trainer, source: str) -> str:
    """Load the newest complete checkpoint of run directory ``source`` (or a ``step_*``
    directory) into this trainer: weights, EMA, optimizer, scaler, RNG states, data position,
    step and logged history.  Returns the checkpoint path.  Raises ``ValueError`` naming the
    file when it is corrupt or belongs to a different model."""
    is_step_dir = os.path.exists(os.path.join(source, checkpoint.STATE_NAME))
    path = source if is_step_dir else checkpoint.latest_checkpoint(source)
    config, weights, st, meta = checkpoint.load_training_checkpoint(path)
    mine = checkpoint.describe_model(trainer.denoiser, trainer.schedule)
    if trainer.kind is not None or kinds.is_plain_network(config.get("kind")):
        mine["kind"] = trainer.kind
    for key, value in mine.items():
        theirs = config.get(key)
        if key == "net" and isinstance(theirs, dict):  # settings added since the run was written: as built
            theirs, value = dict(theirs, config=checkpoint.model.net_config(theirs)), \
                dict(value, config=checkpoint.model.net_config(value))
        if json.loads(json.dumps(value)) != theirs:
            raise ValueError(f"{os.path.join(path, checkpoint.CONFIG_NAME)} was written for a different model: "
                             f"its {key} is {config.get(key)} but this run has {value}; resume with the "
                             "same model options")
    data_info = json.loads(json.dumps(trainer.info.get("data"))) if "data" in trainer.info else None
    if data_info is not None and config.get("data") is not None and data_info != config["data"]:
        raise ValueError(f"{os.path.join(path, checkpoint.CONFIG_NAME)} was trained on different data "
                         f"(its data entry {config['data']} differs from this run's {data_info}); "
                         "resume with the same data")
    wpath = os.path.join(path, checkpoint.WEIGHTS_NAME)
    for prefix, module in (("model.", trainer.denoiser), ("ema.", trainer.ema)):
        state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        checkpoint.load_state_checked(checkpoint._net(module), state, wpath, prefix.rstrip("."))
        if isinstance(module, Denoiser):
            checkpoint.load_nulls(module, weights, wpath)
    spath = os.path.join(path, checkpoint.STATE_NAME)
    try:
        trainer.opt.load_state_dict(checkpoint.unflatten_state(meta["optimizer"], st, spath))
        if trainer.scaler.is_enabled() and meta.get("scaler"):
            trainer.scaler.load_state_dict(checkpoint.unflatten_state(meta["scaler"], st, spath))
    except (KeyError, ValueError, RuntimeError) as err:
        raise ValueError(f"{spath}: optimizer state does not fit this model ({err})") from None
    trainer.sampler.check_state(meta["data"])
    if meta.get("batch_size", trainer.config.batch_size) != trainer.config.batch_size:
        raise ValueError(f"{path} was trained with batch size {meta['batch_size']}, this run has "
                         f"{trainer.config.batch_size}; resume with the same --batch-size")
    trainer.generator.set_state(st["rng.generator"])
    exact = meta.get("device_type") == trainer.device.type and meta.get("world_size") == trainer.world_size
    if meta.get("device_type") == trainer.device.type:
        trainer.noise_generator.set_state(st["rng.noise"])
    else:  # a generator state of another device type cannot be restored; stay deterministic
        trainer.noise_generator.manual_seed(trainer.config.seed + 1_000_003 + int(meta["step"]))
    own = st.get(f"rng.torch.rank{trainer.rank}")
    if own is not None:
        torch.set_rng_state(own)
    cuda = st.get(f"rng.cuda.rank{trainer.rank}")
    if cuda is not None and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(cuda, trainer.device)
    if not exact and dist.is_main():
        warnings.warn(f"{path} was written by {meta.get('world_size')} process(es) on {meta.get('device_type')}; "
                      f"continuing on {trainer.world_size} on {trainer.device.type} follows the same data order but is "
                      "not bitwise identical to an uninterrupted run", stacklevel=3)
    trainer.step_count = int(meta["step"])
    trainer._loader = None
    trainer.skipped_steps = int(meta.get("skipped_steps", 0))
    trainer.bad_in_row = int(meta.get("bad_in_row", 0))
    trainer.loss_smooth = meta.get("loss_smooth")
    run_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    trainer.history = read_history(os.path.join(run_dir, "metrics.jsonl"), trainer.step_count)
    if trainer.run_dir and dist.is_main():  # drop log lines written after the checkpoint
        lines = "".join(json.dumps(h) + "\n" for h in trainer.history)
        checkpoint.atomic_write_bytes(os.path.join(trainer.run_dir, "metrics.jsonl"),
                                      lambda p: checkpoint._write_text(p, lines))
    trainer.history = [{k: (float("nan") if v is None else v) for k, v in h.items()} for h in trainer.history]
    return path
