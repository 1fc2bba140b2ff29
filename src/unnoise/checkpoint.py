"""Checkpoints: weights as safetensors plus a JSON config; never a pickle.

A run directory holds, at the top level, what sampling needs:

* ``config.json`` (network, denoiser, schedule, data statistics, training options and step) and
* ``model.safetensors`` (``model.*`` raw weights and ``ema.*`` EMA weights);

and, for resuming, ``checkpoints/step_NNNNNNNN/`` directories (the last K kept) each holding
``config.json``, ``model.safetensors``, ``state.safetensors`` (optimizer moments, gradient-scaler
and RNG states as tensors; RNG states are byte tensors) and ``state.json`` (step, data position,
counters and the non-tensor parts of the optimizer state), plus ``checkpoints/latest`` naming the
newest complete one.

Every file is written to a temporary name, flushed, fsynced and renamed; a step directory is
assembled under a temporary name and renamed as a whole, and ``latest`` is updated only after
that rename.  A crash (or ``kill -9``, or a full disk) at any moment therefore leaves the previous
checkpoint complete and ``latest`` pointing at a complete directory.

Starting again after a crash: :func:`clean_run_dir` (run by :func:`check_run_dir`, i.e. whenever a
Trainer opens a run directory) removes the temporary files and directories a ``kill -9`` left and
the step directories that pruning had half deleted; :func:`latest_checkpoint` returns the newest
step directory that is complete *and* readable, skipping (with a warning naming both) damaged newer
ones; :func:`resolve_resume` accepts a run directory or one of its ``step_*`` directories.
:func:`prepare_run_dir` refuses to start a new run over an existing one unless asked to replace it.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import warnings

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from . import io as uio
from . import nets, schedules
from .denoiser import Denoiser

FORMAT = "unnoise-checkpoint"
FORMAT_VERSION = 2  # 2: config.json names the run's kind; null conditions stored as null.<key>
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
MODEL_KINDS = ("classifier", "autoencoder")  # run kinds that are a plain network, not a denoiser
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


# ----------------------------------------------------------------------------- sampling checkpoint
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
    required = ("net",) if config.get("kind") in MODEL_KINDS else ("net", "denoiser", "schedule")
    for key in required:
        if key not in config:
            raise ValueError(f"{path} has no {key!r} entry; the checkpoint config is incomplete")
    return config


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


RETIRED_NETS = {"caption_table": "text-conditioned", "upscale_unet": "super-resolution"}


def build_from_config(config: dict):
    """Rebuild ``(denoiser, schedule)`` with fresh weights from a checkpoint config."""
    if config["net"].get("name") in RETIRED_NETS:
        raise ValueError(f"{CONFIG_NAME} describes a {RETIRED_NETS[config['net']['name']]} run of an earlier unnoise "
                         f"(network {config['net']['name']!r}, which kept its conditions in a table inside the "
                         "network); this version conditions through the data: retrain the run")
    try:
        net = nets.build(config["net"]["name"], **config["net"]["config"])
        denoiser = Denoiser.from_description(net, config["denoiser"])
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


# ----------------------------------------------------------------------------- training checkpoints
def step_dir_name(step: int) -> str:
    """Name of the training-checkpoint directory of optimizer step ``step``: ``step_00001234``."""
    return f"step_{step:08d}"


def _complete(path: str) -> bool:
    return all(os.path.exists(os.path.join(path, f)) for f in STEP_FILES)


def list_step_dirs(run_dir: str) -> list[tuple[int, str]]:
    """Complete-looking ``(step, path)`` checkpoint directories, oldest first."""
    root = os.path.join(run_dir, CHECKPOINTS_DIR)
    if not os.path.isdir(root):
        return []
    out = []
    for name in os.listdir(root):
        m = _STEP_RE.match(name)
        path = os.path.join(root, name)
        if m and _complete(path):
            out.append((int(m.group(1)), path))
    return sorted(out)


def _all_step_dirs(run_dir: str) -> list[tuple[int, str]]:
    root = os.path.join(run_dir, CHECKPOINTS_DIR)
    if not os.path.isdir(root):
        return []
    return sorted((int(m.group(1)), os.path.join(root, n)) for n in os.listdir(root)
                  if (m := _STEP_RE.match(n)) and os.path.isdir(os.path.join(root, n)))


def is_step_dir(path: str) -> bool:
    """Whether ``path`` is a training-checkpoint directory (``.../checkpoints/step_N`` or one holding
    ``state.safetensors``) rather than a run directory."""
    path = os.path.abspath(path)
    named = bool(_STEP_RE.match(os.path.basename(path))) and \
        os.path.basename(os.path.dirname(path)) == CHECKPOINTS_DIR
    return os.path.isdir(path) and (named or os.path.exists(os.path.join(path, STATE_NAME)))


def verify_step_dir(path: str) -> None:
    """Cheap completeness check of a step directory, without loading the weights: both JSON files
    parse and both safetensors headers are valid and cover their files exactly (which catches
    truncation).  Raises ``FileNotFoundError``/``ValueError`` naming the damaged file."""
    read_config(path)
    read_state_json(path)
    for name in (WEIGHTS_NAME, STATE_NAME):
        fpath = os.path.join(path, name)
        if not os.path.exists(fpath):
            raise FileNotFoundError(f"{fpath} is missing; the checkpoint is incomplete")
        try:
            with safe_open(fpath, "pt") as f:
                f.keys()
        except (SafetensorError, OSError, RuntimeError, ValueError) as err:
            raise ValueError(f"{fpath} is corrupt or truncated ({err})") from None


def _aside_path(run_dir: str) -> str:
    """Where :func:`prepare_run_dir` keeps a replaced run until the new run's first checkpoint."""
    run_dir = os.path.abspath(run_dir)
    return os.path.join(os.path.dirname(run_dir), f".{os.path.basename(run_dir)}.replaced")


def latest_checkpoint(run_dir: str) -> str:
    """Path of the newest complete and readable step directory of a run.

    Step directories are tried newest first; a damaged one (truncated or unparsable file, see
    :func:`verify_step_dir`) is skipped with a ``UserWarning`` naming it and the one used instead.
    Raises ``FileNotFoundError`` when there is no checkpoint, ``ValueError`` when all are damaged
    or when ``run_dir`` is itself a step directory (use :func:`resolve_resume`, which accepts both
    and also says which run directory the continued run belongs to).
    """
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir!r} does not exist")
    if is_step_dir(run_dir):
        verify_step_dir(run_dir)  # a damaged one: the error names the file
        raise ValueError(f"{run_dir} is a checkpoint directory, not a run directory; its run is "
                         f"{os.path.dirname(os.path.dirname(os.path.abspath(run_dir)))} "
                         "(checkpoint.resolve_resume accepts either)")
    found = _all_step_dirs(run_dir)  # incomplete ones too: a missing file is damage to report, not skip silently
    if not found:
        aside = _aside_path(run_dir)
        kept = (f" (the run it replaced is kept in {aside} until this run's first checkpoint)"
                if os.path.isdir(aside) else "")
        raise FileNotFoundError(f"{run_dir!r} has no complete training checkpoint under {CHECKPOINTS_DIR}/ "
                                f"to resume from; start a new run instead{kept}")
    skipped: list[tuple[str, Exception]] = []
    for _, path in reversed(found):
        try:
            verify_step_dir(path)
        except (OSError, ValueError) as err:
            skipped.append((path, err))
            continue
        for bad, err in skipped:
            warnings.warn(f"skipping damaged checkpoint {bad} ({uio.describe(err)}); using {path}", stacklevel=2)
        return path
    newest, err = skipped[0]
    raise ValueError(f"every training checkpoint of {run_dir!r} is damaged ({len(skipped)} found); the newest, "
                     f"{newest}: {uio.describe(err)}") from None


def resolve_resume(source: str) -> tuple[str, str]:
    """What ``--resume SOURCE`` continues: ``(run_dir, step_dir)``.

    ``source`` is a run directory (its newest complete, readable checkpoint is used, see
    :func:`latest_checkpoint`) or one of its ``checkpoints/step_*`` directories (used as given,
    after :func:`verify_step_dir`); ``run_dir`` is where the continued run writes.
    """
    if not source or not os.path.isdir(source):
        raise FileNotFoundError(f"cannot resume from {source!r}: no such directory; give a run directory "
                                f"or one of its {CHECKPOINTS_DIR}/step_* directories")
    source = os.path.abspath(source)
    if is_step_dir(source):
        verify_step_dir(source)
        parent = os.path.dirname(source)
        run_dir = os.path.dirname(parent) if os.path.basename(parent) == CHECKPOINTS_DIR else parent
        return run_dir, source
    return source, latest_checkpoint(source)


def is_run_dir(path: str) -> bool:
    """Whether ``path`` already holds a training run (a ``config.json``, ``model.safetensors``,
    ``checkpoints/`` or ``metrics.jsonl``)."""
    return os.path.isdir(path) and any(os.path.lexists(os.path.join(path, n))
                                       for n in (CONFIG_NAME, WEIGHTS_NAME, CHECKPOINTS_DIR, "metrics.jsonl"))


def restore_replaced(run_dir: str) -> bool:
    """Undo :func:`prepare_run_dir`'s move when the new run failed before its first checkpoint: the
    new run's partial directory is removed and the replaced run put back.  Returns whether it was."""
    aside = _aside_path(run_dir)
    if not os.path.isdir(aside) or _all_step_dirs(run_dir):
        return False
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    os.rename(aside, run_dir)
    _fsync_dir(os.path.dirname(os.path.abspath(run_dir)))
    return True


def prepare_run_dir(run_dir: str, resume: bool = False, overwrite: bool = False) -> str | None:
    """Guard a new run's output directory; call it before any long work.

    * ``resume``: nothing to do here (resolve the source with :func:`resolve_resume`).
    * an existing run (:func:`is_run_dir`) without ``overwrite``: ``FileExistsError`` (one line
      saying to use ``--resume`` or ``--overwrite``).
    * ``overwrite``: the old run is *moved aside* (renamed, atomic) to ``.NAME.replaced`` beside
      it and deleted only when the new run's first training checkpoint is complete (by
      :func:`save_training_checkpoint`).  A crash before that leaves ``run_dir`` without
      checkpoints (so ``--resume`` cannot continue the old run by mistake) and the old run
      recoverable.  Returns the aside path, or None when nothing was moved.
    """
    if resume and overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it; give only one of them")
    if resume or not is_run_dir(run_dir):
        return None
    if not overwrite:
        raise FileExistsError(errno.EEXIST, f"{run_dir} already holds a training run; continue it with --resume "
                                            f"{run_dir}, replace it with --overwrite, or choose another --out")
    aside = _aside_path(run_dir)
    if os.path.lexists(aside):
        if list_step_dirs(run_dir):  # an older aside whose deletion failed: the current run is the one to keep aside
            shutil.rmtree(aside, ignore_errors=True)
        else:  # run_dir is a replacement that never reached its first checkpoint: the aside is the real old run
            shutil.rmtree(run_dir)
            return aside
    os.rename(run_dir, aside)
    uio.fsync_dir(os.path.dirname(aside))
    return aside


def clean_run_dir(run_dir: str) -> list[str]:
    """Remove what a crash left in a run directory: ``.tmp-*`` files (top level and
    ``checkpoints/``), ``.tmp-*`` directories in ``checkpoints/`` (half-written or half-deleted step
    directories) and incomplete ``step_*`` directories older than the newest complete one (a
    ``kill -9`` during pruning, which deletes old ones).  Complete checkpoints are never touched.  Returns the removed paths."""
    removed = [os.path.join(run_dir, n) for n in uio.remove_stale_temporaries(run_dir, dirs=False)]
    root = os.path.join(run_dir, CHECKPOINTS_DIR)
    if not os.path.isdir(root):
        return removed
    removed += [os.path.join(root, n) for n in uio.remove_stale_temporaries(root)]
    complete = list_step_dirs(run_dir)
    newest = complete[-1][0] if complete else -1
    for step, path in _all_step_dirs(run_dir):
        # pruning deletes only older directories; an incomplete *newest* one is damage, reported on resume
        if step < newest and not _complete(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _short_os_error(err: OSError, extra: str = "") -> OSError:
    """A short one-line OSError (reason and fix, no temporary paths) for the Trainer's message."""
    reason = os.strerror(err.errno) if err.errno else str(err)
    hint = {errno.ENOSPC: "free some space, lower --keep-checkpoints or choose another --out",
            errno.EDQUOT: "free some space, lower --keep-checkpoints or choose another --out",
            errno.EROFS: "the file system is read-only; choose another --out",
            errno.EACCES: "fix the permissions or choose another --out"}.get(err.errno)
    msg = reason + (f": {hint}" if hint else "") + extra
    return OSError(err.errno, msg) if err.errno else OSError(msg)


def save_training_checkpoint(run_dir: str, step: int, denoiser: Denoiser, schedule, ema: Denoiser | None,
                             info: dict, state_tensors: dict[str, torch.Tensor], state_json: dict,
                             keep: int = 3) -> str:
    """Write ``run_dir/checkpoints/step_<step>/`` atomically, point ``latest`` at it, refresh the
    top-level sampling checkpoint and delete all but the newest ``keep`` step directories.

    Returns the step directory.  Raises a short ``OSError`` (e.g. disk full: the reason and the
    fix) with the previous checkpoint left intact.  The first checkpoint of a run that replaced
    another (:func:`prepare_run_dir`) deletes the replaced run.
    """
    root = os.path.join(run_dir, CHECKPOINTS_DIR)
    final = os.path.join(root, step_dir_name(step))
    try:
        os.makedirs(root, exist_ok=True)
        uio.remove_stale_temporaries(root)
        uio.remove_stale_temporaries(run_dir, dirs=False)
        tmp = tempfile.mkdtemp(dir=root, prefix=f"{uio.TMP_PREFIX}{step_dir_name(step)}-")
    except OSError as err:
        raise _short_os_error(err) from None
    try:
        config = _model_config(denoiser, schedule, info)
        weights = _weights(denoiser, ema)
        _write_file(os.path.join(tmp, WEIGHTS_NAME), lambda p: _save_tensors(weights, p))
        _write_file(os.path.join(tmp, STATE_NAME), lambda p: _save_tensors(state_tensors, p))
        _write_file(os.path.join(tmp, STATE_JSON), lambda p: _dump_json(p, state_json))
        _write_file(os.path.join(tmp, CONFIG_NAME), lambda p: _dump_json(p, config))
        for name in STEP_FILES:
            os.chmod(os.path.join(tmp, name), _FILE_MODE)
        os.chmod(tmp, _DIR_MODE)
        _fsync_dir(tmp)
        fault_point("before_rename")
        if os.path.exists(final):  # re-saving a step (e.g. stopped right after a resume)
            old = tempfile.mkdtemp(dir=root, prefix=f"{uio.TMP_PREFIX}old-")
            os.rename(final, os.path.join(old, "x"))
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise _short_os_error(err) from None
        raise
    fault_point("before_latest")
    try:
        atomic_write_bytes(os.path.join(root, LATEST_NAME), lambda p: _write_text(p, step_dir_name(step) + "\n"))
        save(run_dir, denoiser, schedule, ema=ema, info=info)
    except OSError as err:
        raise _short_os_error(err, f" ({final} itself is complete; the top-level {WEIGHTS_NAME} may still hold "
                                   "an earlier step)") from None
    aside = _aside_path(run_dir)
    if os.path.isdir(aside):  # the run this one replaced is no longer needed
        shutil.rmtree(aside, ignore_errors=True)
    for _, path in list_step_dirs(run_dir)[:-keep] if keep > 0 else []:
        if path != final:
            _remove_dir(path)
    return final


def _remove_dir(path: str) -> None:
    """Delete a step directory by renaming it to a ``.tmp-`` name first, so that a crash half way
    leaves only a temporary directory (removed at the next start), never a half-empty ``step_*``."""
    doomed = os.path.join(os.path.dirname(path), f"{uio.TMP_PREFIX}prune-{os.path.basename(path)}")
    try:
        os.rename(path, doomed)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return
    fault_point("before_prune")
    shutil.rmtree(doomed, ignore_errors=True)


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


def load_training_checkpoint(path: str):
    """Read a step directory: returns ``(config, weights, state_tensors, state_json)``."""
    config = read_config(path)
    weights = read_tensors(os.path.join(path, WEIGHTS_NAME))
    state_tensors = read_tensors(os.path.join(path, STATE_NAME))
    return config, weights, state_tensors, read_state_json(path)


def read_state_json(path: str) -> dict:
    """The training state (step, data position, optimizer layout) of a step directory; a missing or
    corrupt file is a clear error naming it."""
    json_path = os.path.join(path, STATE_JSON)
    try:
        with open(json_path) as f:
            state = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{json_path} is missing; the checkpoint is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{json_path} is not valid JSON ({err}); the checkpoint is corrupt") from None
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"{json_path} has no 'step' entry; the checkpoint is corrupt")
    return state


# ----------------------------------------------------------------------------- pre-flight checks
def estimate_checkpoint_bytes(num_params: int, bytes_per_param: int = 4) -> int:
    """Bytes of one step directory plus the top-level copy: raw + EMA weights twice, two Adam moments."""
    return num_params * bytes_per_param * 6 + (1 << 20)


def check_run_dir(run_dir: str, needed_bytes: int = 0) -> None:
    """Fail before training if ``run_dir`` cannot be created, written, or has too little free space.

    Writes and deletes a probe file (``os.access`` is not enough: it says yes to root on a
    read-only mount).  ``needed_bytes`` is compared with the free space of the file system.  Also
    removes what an earlier crash left in the directory (:func:`clean_run_dir`), so every start of
    a Trainer on a run directory cleans it.
    """
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"cannot create run directory {run_dir!r} ({err.strerror or err}); "
                              "choose another --out") from None
    if not os.path.isdir(run_dir):
        raise PermissionError(f"run directory {run_dir!r} exists but is not a directory; choose another --out")
    try:
        fd, probe = tempfile.mkstemp(dir=run_dir, prefix=".tmp-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise PermissionError(f"run directory {run_dir!r} is not writable ({err.strerror or err}); "
                              "fix its permissions or choose another --out") from None
    clean_run_dir(run_dir)
    free = shutil.disk_usage(run_dir).free
    if needed_bytes and free < needed_bytes:
        raise OSError(28, f"not enough free space for checkpoints in {run_dir!r}: need about "
                          f"{needed_bytes / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free; free some space, "
                          "lower --keep-checkpoints or choose another --out")


# ----------------------------------------------------------------------------- tuned sampling grids
TUNED_GRIDS_NAME = "tuned_grids.json"  # written by 'unnoise tune-grid'; config.json and weights stay untouched
TUNED_GRIDS_FORMAT = "unnoise-tuned-grids"


def _check_tuned_entry(entry, path: str) -> dict:
    try:
        steps, sampler, sigmas = int(entry["steps"]), str(entry["sampler"]), [float(v) for v in entry["sigmas"]]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path!r}: each tuned grid needs steps, sampler and sigmas; delete the file and rerun "
                         "'unnoise tune-grid'") from None
    ok = steps >= 1 and len(sigmas) == steps + 1 and sigmas[-1] == 0.0 \
        and all(a > b for a, b in zip(sigmas, sigmas[1:]))
    if not ok:
        raise ValueError(f"{path!r}: the {steps}-step grid for {sampler} is not {steps + 1} decreasing sigmas ending "
                         "at 0; delete the file and rerun 'unnoise tune-grid'")
    return dict(entry, steps=steps, sampler=sampler, sigmas=sigmas)


def read_tuned_grids(run_dir: str) -> list[dict]:
    """The tuned grids stored in ``run_dir`` (``[]`` when it has none): each ``{"steps", "sampler",
    "sigmas", "nfe_cost", ...}`` as :func:`unnoise.samplers.tune_grid` returns it; a malformed file
    raises ``ValueError`` naming it."""
    path = os.path.join(run_dir, TUNED_GRIDS_NAME)
    if not os.path.exists(path):
        return []
    try:
        with open(path) as f:
            obj = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path!r} is not valid JSON ({err.msg}); delete it and rerun 'unnoise tune-grid'") from None
    if not isinstance(obj, dict) or obj.get("format") != TUNED_GRIDS_FORMAT or not isinstance(obj.get("grids"), list):
        raise ValueError(f"{path!r} is not a tuned-grids file; delete it and rerun 'unnoise tune-grid'")
    return [_check_tuned_entry(e, path) for e in obj["grids"]]


def write_tuned_grids(run_dir: str, grids: list[dict]) -> str:
    """Merge ``grids`` into ``run_dir``'s tuned grids (an entry replaces a stored one with the same
    sampler and step count) and write the file atomically; returns its path."""
    path = os.path.join(run_dir, TUNED_GRIDS_NAME)
    new = [_check_tuned_entry(e, path) for e in grids]
    keys = {(e["sampler"], e["steps"]) for e in new}
    kept = [e for e in read_tuned_grids(run_dir) if (e["sampler"], e["steps"]) not in keys]
    merged = sorted(kept + new, key=lambda e: (e["sampler"], e["steps"]))
    _write_json(path, {"format": TUNED_GRIDS_FORMAT, "version": 1, "grids": merged})
    return path
