"""Checkpoint files: the names and format constants, safetensors and JSON written atomically (never a
pickle), a nested state (optimizer, scaler) split into tensors and JSON and back, and loading weights
into a module with an error naming every mismatch."""
from __future__ import annotations

import json
import os
import re

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import io as uio

FORMAT = "unnoise-checkpoint"
FORMAT_VERSION = 2  # 2: config.json names the run's kind; null conditions stored as null.<key>
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
STATE_NAME, STATE_JSON = "state.safetensors", "state.json"
CHECKPOINTS_DIR, LATEST_NAME = "checkpoints", "latest"
STEP_FILES = (CONFIG_NAME, WEIGHTS_NAME, STATE_NAME, STATE_JSON)
_STEP_RE = re.compile(r"^step_(\d+)$")


# one implementation of atomic writes and fault injection, in unnoise.io (these names are kept)
_FILE_MODE, _DIR_MODE = uio.FILE_MODE, uio.DIR_MODE
fault_point = uio.fault_point
_fsync_dir = uio.fsync_dir
atomic_write_bytes = uio.atomic_write


def _save_tensors(tensors: dict[str, torch.Tensor], path: str) -> None:
    """``save_file`` with its I/O failures (``SafetensorError: ... (os error 28)``) as ``OSError``."""
    try:
        save_file(tensors, path)
    except SafetensorError as err:
        m = re.search(r"os error (\d+)", str(err))
        if m:
            code = int(m.group(1))
            raise OSError(code, os.strerror(code)) from None
        raise OSError(str(err)) from None


def save_tensors(path: str, tensors: dict[str, torch.Tensor]) -> str:
    """Write a safetensors file atomically; a full disk etc. is one-line ``OSError``, the old file intact."""
    return atomic_write_bytes(path, lambda p: _save_tensors(tensors, p))


def _write_json(path: str, obj) -> None:
    uio.save_json(path, obj)


def read_tensors(path: str) -> dict[str, torch.Tensor]:
    """Load a safetensors file (never a pickle); a missing, truncated or corrupt file is a clear error."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing")
    try:
        return load_file(path)
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise ValueError(f"{path} is corrupt or truncated ({err}); use an earlier checkpoint") from None


def load_state_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str, what: str) -> None:
    """``module.load_state_dict(state)`` with an error naming ``path`` and every mismatch."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file has {tuple(state[k].shape)}, network expects {tuple(v.shape)}"
              for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if shapes:
        problems.append("shape mismatch (" + "; ".join(shapes[:5]) + (" ..." if len(shapes) > 5 else "") + ")")
    if missing:
        problems.append(f"missing tensors {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:5]}" + (" ..." if len(unexpected) > 5 else ""))
    if problems:
        raise ValueError(f"{path}: the {what} weights do not match the network described in {CONFIG_NAME}: "
                         + ", ".join(problems) + "; the weights come from a different model")
    module.load_state_dict(state)


# ----------------------------------------------------------------------------- nested state <-> safetensors + JSON
def flatten_state(obj, tensors: dict[str, torch.Tensor], prefix: str):
    """Split a nested state (dicts, lists, tuples, numbers, tensors) into JSON and named tensors.

    Tensors become ``{"__tensor__": name}`` and are added to ``tensors``; dicts with non-string
    keys (e.g. optimizer state indexed by parameter number) and tuples are tagged so that
    :func:`unflatten_state` restores them exactly.
    """
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: flatten_state(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
        return {"__items__": [[k, flatten_state(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def unflatten_state(obj, tensors: dict[str, torch.Tensor], path: str = "state"):
    """Inverse of :func:`flatten_state`."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            try:
                return tensors[obj["__tensor__"]]
            except KeyError:
                raise ValueError(f"{path}: tensor {obj['__tensor__']!r} is missing; the checkpoint is corrupt") from None
        if "__items__" in obj:
            return {k: unflatten_state(v, tensors, path) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(unflatten_state(v, tensors, path) for v in obj["__tuple__"])
        return {k: unflatten_state(v, tensors, path) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors, path) for v in obj]
    return obj


def _write_file(path: str, write) -> None:
    write(path)
    uio.fsync_file(path)


def _dump_json(path: str, obj) -> None:
    text = json.dumps(obj, indent=2)
    with open(path, "w") as f:
        f.write(text)


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
