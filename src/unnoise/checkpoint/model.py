"""A trained model's files: what rebuilds it (:func:`describe_model`), writing ``config.json`` +
``model.safetensors`` (:func:`save`), reading the config (:func:`read_config`) and loading the model back
(:func:`load`, :func:`load_model`)."""
from __future__ import annotations

import inspect
import json
import os

import torch

from .. import kinds, nets, schedules
from ..categorical import CategoricalDenoiser
from ..denoiser import Denoiser
from ..graphs import GraphDenoiser
from .files import (CONFIG_NAME, FORMAT, FORMAT_VERSION, WEIGHTS_NAME, _write_json, load_state_checked,
                    read_tensors, save_tensors)
from .legacy import _load_model_v1

def _net(model: torch.nn.Module) -> torch.nn.Module:
    """The registered network of a model: a Denoiser's ``net``, any other module itself."""
    return model.net if isinstance(model, Denoiser) else model


def describe_model(model: torch.nn.Module, schedule=None) -> dict:
    """What rebuilds a trained model: ``{"net": {"name", "config"}}`` of its registered network, plus
    ``"denoiser"`` for a :class:`Denoiser` and ``"schedule"`` when one is given."""
    net = _net(model)
    out = {"net": {"name": nets.name_of(net), "config": net.config}}
    if isinstance(model, Denoiser):
        out["denoiser"] = model.describe()
    if schedule is not None:
        out["schedule"] = schedule.config()
    return out


def _model_config(model, schedule, info: dict | None) -> dict:
    return {"format": FORMAT, "version": FORMAT_VERSION, **describe_model(model, schedule), **(info or {})}


def _weights(model, ema) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in _net(model).state_dict().items()}
    if isinstance(model, Denoiser):
        for key in model.describe().get("null_cond", {}):  # the null label needs no tensor
            tensors[f"null.{key}"] = getattr(model, f"null_{key}").detach().cpu().contiguous()
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in _net(ema).state_dict().items()})
    return tensors


def save(run_dir: str, denoiser: torch.nn.Module, schedule, ema: torch.nn.Module | None = None,
         info: dict | None = None) -> None:
    """Write ``run_dir/config.json`` and ``run_dir/model.safetensors`` (each atomically).  ``denoiser``
    is a :class:`Denoiser` or any registered network (then ``schedule`` may be None)."""
    os.makedirs(run_dir, exist_ok=True)
    config = _model_config(denoiser, schedule, info)
    tensors = _weights(denoiser, ema)
    save_tensors(os.path.join(run_dir, WEIGHTS_NAME), tensors)
    _write_json(os.path.join(run_dir, CONFIG_NAME), config)


def read_config(run_dir: str) -> dict:
    """The parsed ``config.json`` of a run (or step) directory; clear errors when missing or corrupt."""
    path = os.path.join(run_dir, CONFIG_NAME)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"checkpoint directory {run_dir!r} does not exist")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: {run_dir!r} is not an unnoise run directory")
    try:
        with open(path) as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the checkpoint is corrupt") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        fmt = config.get("format") if isinstance(config, dict) else None
        raise ValueError(f"{path} is not an unnoise checkpoint config (format={fmt!r})")
    version = config.get("version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer unnoise (run format version {version}; this version reads "
                         f"up to {FORMAT_VERSION}): upgrade unnoise to load it")
    # diffusion runs need all three; the other kinds (classifier, autoencoder) only their network
    required = ("net",) if kinds.is_plain_network(config.get("kind")) else ("net", "denoiser", "schedule")
    for key in required:
        if key not in config:
            raise ValueError(f"{path} has no {key!r} entry; the checkpoint config is incomplete")
    return config


RETIRED_NETS = {"caption_table": "text-conditioned", "upscale_unet": "super-resolution"}
# settings a network gained after runs were written without them, where the constructor's default is not the
# value that rebuilds such a run as it was
EARLIER_DEFAULTS = {"graph_transformer": {"features": "walks"}}


def net_config(entry: dict) -> dict:
    """The full config a checkpoint's net entry ``{"name", "config"}`` builds: a setting the run's config lacks
    (written before the network had it) takes its :data:`EARLIER_DEFAULTS` value, else the constructor's
    default, so a run rebuilds (and resumes) as it was written."""
    name, config = entry.get("name"), dict(entry.get("config") or {})
    cls = nets.NETS.get(name)
    if cls is None:
        return config
    filled = {}
    for param in inspect.signature(cls.__init__).parameters.values():
        if param.name in config or param.default is inspect.Parameter.empty:
            continue
        try:  # only what a config can hold (a JSON value) is a setting a run could have recorded
            filled[param.name] = json.loads(json.dumps(param.default))
        except (TypeError, ValueError):
            continue
    filled.update({k: v for k, v in EARLIER_DEFAULTS.get(name, {}).items() if k not in config})
    return {**filled, **config}


def build_from_config(config: dict):
    """Rebuild ``(denoiser, schedule)`` with fresh weights from a checkpoint config."""
    if config["net"].get("name") in RETIRED_NETS:
        raise ValueError(f"{CONFIG_NAME} describes a {RETIRED_NETS[config['net']['name']]} run of an earlier unnoise "
                         f"(network {config['net']['name']!r}, which kept its conditions in a table inside the "
                         "network); this version conditions through the data: retrain the run")
    try:
        net = nets.build(config["net"]["name"], **net_config(config["net"]))
        wrapper = Denoiser
        if config["denoiser"].get("parameterization") == "logits":  # categorical: tokens, or graphs (molecules)
            process = config["denoiser"].get("process")
            wrapper = GraphDenoiser if isinstance(process, dict) and process.get("name") == "graph" \
                else CategoricalDenoiser
        denoiser = wrapper.from_description(net, config["denoiser"])
        sched_cfg = dict(config["schedule"])
        schedule = schedules.get(sched_cfg.pop("name"), **sched_cfg)
    except TypeError as err:
        raise ValueError(f"{CONFIG_NAME} describes a model this version cannot build ({err})") from None
    return denoiser, schedule


def load(run_dir: str, ema: bool = True, device: str | torch.device = "cpu"):
    """Load a run directory: returns ``(denoiser, schedule, config)``; the EMA weights by default."""
    config = read_config(run_dir)
    denoiser, schedule = build_from_config(config)
    path = os.path.join(run_dir, WEIGHTS_NAME)
    tensors = read_tensors(path)
    prefix = "ema." if ema and any(k.startswith("ema.") for k in tensors) else "model."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    load_state_checked(denoiser.net, state, path, prefix.rstrip("."))
    load_nulls(denoiser, tensors, path)
    return denoiser.to(device).eval(), schedule, config


def load_nulls(denoiser: Denoiser, tensors: dict[str, torch.Tensor], path: str) -> None:
    """Copy the stored null conditions (``null.<key>``) into ``denoiser``."""
    for key in denoiser.describe().get("null_cond", {}):
        if f"null.{key}" not in tensors:
            raise ValueError(f"{path} lacks the null value of condition {key!r} described in {CONFIG_NAME}")
        denoiser.set_null(key, tensors[f"null.{key}"])


def load_model(run_dir: str, kind: str, ema: bool = True, device: str | torch.device = "cpu"):
    """Load a run directory whose ``config.json`` has ``"kind": kind`` (e.g. ``"classifier"``,
    ``"autoencoder"``): its registered network with the EMA (default) or raw weights, in eval mode.
    Returns ``(module, config)``.  Directories of format version 1 (``classifier.json`` +
    ``classifier.safetensors``, ``autoencoder.json`` + ``autoencoder.safetensors``) are read too."""
    if not os.path.exists(os.path.join(run_dir, CONFIG_NAME)) and os.path.exists(os.path.join(run_dir, f"{kind}.json")):
        return _load_model_v1(run_dir, kind, device)
    config = read_config(run_dir)
    path = os.path.join(run_dir, CONFIG_NAME)
    if config.get("kind") != kind:
        raise ValueError(f"{path} describes a {config.get('kind') or 'diffusion'} run, not a {kind}")
    try:
        module = nets.build(config["net"]["name"], **config["net"]["config"])
    except TypeError as err:
        raise ValueError(f"{path} describes a model this version cannot build ({err})") from None
    wpath = os.path.join(run_dir, WEIGHTS_NAME)
    tensors = read_tensors(wpath)
    prefix = "ema." if ema and any(k.startswith("ema.") for k in tensors) else "model."
    load_state_checked(module, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, wpath,
                       prefix.rstrip("."))
    return module.to(device).eval(), config


_V1_NETS = {"classifier": "noisy_classifier", "autoencoder": "autoencoder"}
