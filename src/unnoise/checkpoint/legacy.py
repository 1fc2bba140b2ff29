"""Run directories of format version 1: a classifier or autoencoder stored as ``<kind>.json`` +
``<kind>.safetensors``, read into the current layout."""
from __future__ import annotations

import json
import os

from .. import nets
from .files import FORMAT, load_state_checked, read_tensors

_V1_NETS = {"classifier": "noisy_classifier", "autoencoder": "autoencoder"}


def _load_model_v1(run_dir: str, kind: str, device):
    """A version-1 classifier/autoencoder directory, with its config in the current layout."""
    path = os.path.join(run_dir, f"{kind}.json")
    try:
        with open(path) as f:
            old = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the {kind} is corrupt") from None
    if not isinstance(old, dict) or old.get("format") != f"unnoise-{kind}" or "config" not in old:
        raise ValueError(f"{path} is not an unnoise {kind} config")
    module = nets.build(_V1_NETS[kind], **old["config"])
    wpath = os.path.join(run_dir, f"{kind}.safetensors")
    load_state_checked(module, read_tensors(wpath), wpath, kind)
    rest = {k: v for k, v in old.items() if k not in ("format", "version", "config")}
    config = {"format": FORMAT, "version": 1, "kind": kind, "net": {"name": _V1_NETS[kind], "config": old["config"]},
              **rest}
    return module.to(device).eval(), config
