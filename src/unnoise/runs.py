"""Trained runs on disk and the one way to read them back: ``unnoise.load(path) -> Pipeline``.

A run directory holds ``config.json`` (its ``kind``, a format version, the network, the denoiser's
settings, the schedule and what the data were) and ``model.safetensors``.  :func:`load` reads the
kind and hands the run to that kind's entry in :mod:`unnoise.kinds`, which builds the
:class:`~unnoise.pipeline.Pipeline` (see the table there).  A folder in the diffusers layout
(``model_index.json``) loads through :mod:`unnoise.interop` into the same Pipeline.
"""
from __future__ import annotations

import json
import os

import torch

from . import checkpoint, kinds
from .devices import resolve_device
from .pipeline import Pipeline
from .text import TextEncoder

FORMAT_VERSION = checkpoint.FORMAT_VERSION

# Other formats of folders (diffusers' layout: unnoise.interop registers itself), tried before unnoise's own.
FOLDER_LOADERS: list[tuple] = []


def register_loader(recognises, loader) -> None:
    """Let :func:`load` read another format: ``recognises(path) -> bool``, ``loader(path, device=...) -> Pipeline``."""
    FOLDER_LOADERS.append((recognises, loader))


def run_kind(config: dict) -> str:
    """The kind of a run from its config: the ``kind`` entry, or (runs written before format version 2)
    the first registered kind that recognises the entries that version wrote."""
    kind = config.get("kind")
    if kind is not None:
        try:
            return kinds.get(kind).name
        except ValueError:
            raise ValueError(f"unknown run kind {kind!r} in config.json; this version knows "
                             f"{', '.join(kinds.available())}") from None
    for entry in kinds.all_kinds():
        if entry.recognise is not None and entry.recognise(config):
            return entry.name
    raise ValueError("config.json names no kind and matches no kind of format version 1; it is not an unnoise run")


def _read_kind(path: str) -> tuple[str, dict | None]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"run directory {path!r} does not exist")
    if not os.path.isdir(path):
        raise NotADirectoryError(f"{path!r} is a file, not a run directory (give the folder 'unnoise train' wrote)")
    if os.path.exists(os.path.join(path, checkpoint.CONFIG_NAME)):
        config = checkpoint.read_config(path) if _is_diffusion_config(path) else _read_json(path)
        return run_kind(config), config
    for entry in kinds.all_kinds():  # format version 1 wrote the plain networks' config as <kind>.json
        if not entry.denoiser and os.path.exists(os.path.join(path, f"{entry.name}.json")):
            return entry.name, None
    raise FileNotFoundError(f"{path!r} holds no config.json: it is not an unnoise run (nor a diffusers folder "
                            "with model_index.json)")


def _read_json(path: str) -> dict:
    with open(os.path.join(path, checkpoint.CONFIG_NAME)) as f:
        return json.load(f)


def _is_diffusion_config(path: str) -> bool:
    try:
        config = _read_json(path)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return True  # let read_config give its clear error
    return not (isinstance(config, dict) and kinds.is_plain_network(config.get("kind")))


def prompt_encoder(device="cpu", encoder=None):
    """``prompts -> {"context", "context_mask"}`` through the bundled text encoder (``encoder``, or one
    made on first use on ``device``: loading it takes seconds, so runs that never see a prompt skip it)."""
    state = {} if encoder is None else {"encoder": encoder}

    def encode(prompts):
        if "encoder" not in state:
            state["encoder"] = TextEncoder(device)
        ctx, mask = state["encoder"].encode(list(prompts))
        return {"context": ctx, "context_mask": mask}
    return encode


def load(path: str, device: str | torch.device = "cpu", ema: bool = True, autoencoder: str | None = None) -> Pipeline:
    """Load any unnoise run (or a diffusers-format folder) as a :class:`~unnoise.pipeline.Pipeline`.

    Args:
        path: a run directory written by ``unnoise train`` / ``train-classifier`` / ``train-autoencoder``
            / ``upscale --train``, or a folder with ``model_index.json``.
        device: where the model runs (``"auto"``: CUDA when available).
        ema: use the EMA weights (default) rather than the raw ones.
        autoencoder: the autoencoder directory of a latent run (default: the one stored in the run).
    """
    device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    for recognises, loader in FOLDER_LOADERS:
        if recognises(path):
            return loader(path, device=device)
    kind, config = _read_kind(path)
    return kinds.get(kind).load(path, config, device=device, ema=ema, autoencoder=autoencoder)
