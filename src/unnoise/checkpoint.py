"""Checkpoints: weights as safetensors plus a JSON config; never a pickle.

A run directory holds ``config.json`` (network, denoiser, schedule, data statistics, training
options and step) and ``model.safetensors`` (``model.*`` raw weights and ``ema.*`` EMA weights).
"""
from __future__ import annotations

import json
import os
import tempfile

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import nets, schedules
from .denoiser import Denoiser

FORMAT = "unnoise-checkpoint"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def atomic_write_bytes(path: str, write) -> None:
    """Write a file by ``write(tmp_path)`` then fsync + rename, so a crash never leaves half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save(run_dir: str, denoiser: Denoiser, schedule, ema: Denoiser | None = None, info: dict | None = None) -> None:
    """Write ``run_dir/config.json`` and ``run_dir/model.safetensors``."""
    os.makedirs(run_dir, exist_ok=True)
    config = {
        "format": FORMAT, "version": 1,
        "net": {"name": nets.name_of(denoiser.net), "config": denoiser.net.config},
        "denoiser": denoiser.describe(),
        "schedule": schedule.config(),
        **(info or {}),
    }
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in denoiser.net.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.net.state_dict().items()})
    atomic_write_bytes(os.path.join(run_dir, WEIGHTS_NAME), lambda p: save_file(tensors, p))

    def write_json(p):
        with open(p, "w") as f:
            json.dump(config, f, indent=2)
    atomic_write_bytes(os.path.join(run_dir, CONFIG_NAME), write_json)


def read_config(run_dir: str) -> dict:
    path = os.path.join(run_dir, CONFIG_NAME)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"checkpoint directory {run_dir!r} does not exist")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: {run_dir!r} is not an unnoise run directory")
    try:
        with open(path) as f:
            config = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the checkpoint is corrupt") from None
    if config.get("format") != FORMAT:
        raise ValueError(f"{path} is not an unnoise checkpoint config (format={config.get('format')!r})")
    return config


def load(run_dir: str, ema: bool = True, device: str | torch.device = "cpu"):
    """Load a run directory: returns ``(denoiser, schedule, config)``; the EMA weights by default."""
    config = read_config(run_dir)
    net = nets.build(config["net"]["name"], **config["net"]["config"])
    denoiser = Denoiser(net, **config["denoiser"])
    sched_cfg = dict(config["schedule"])
    schedule = schedules.get(sched_cfg.pop("name"), **sched_cfg)
    path = os.path.join(run_dir, WEIGHTS_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ValueError(f"{path} is corrupt or truncated ({err})") from None
    prefix = "ema." if ema and any(k.startswith("ema.") for k in tensors) else "model."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path} does not match the network in {CONFIG_NAME}: {err}") from None
    return denoiser.to(device).eval(), schedule, config
