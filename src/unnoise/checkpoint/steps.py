"""Training checkpoints: ``checkpoints/step_*`` directories written atomically, ``latest``, pruning,
crash recovery (:func:`clean_run_dir`, :func:`latest_checkpoint` skipping damaged ones), resuming
(:func:`resolve_resume`) and guarding a new run's directory (:func:`prepare_run_dir`)."""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import warnings

import torch
from safetensors import SafetensorError, safe_open

from .. import io as uio
from ..denoiser import Denoiser
from .files import (_DIR_MODE, _FILE_MODE, _STEP_RE, CHECKPOINTS_DIR, CONFIG_NAME, LATEST_NAME, STATE_JSON,
                    STATE_NAME, STEP_FILES, WEIGHTS_NAME, _dump_json, _fsync_dir, _save_tensors, _write_file,
                    _write_text, atomic_write_bytes, fault_point, read_tensors)
from .lock import LOCK_NAME
from .model import _model_config, _weights, read_config, save

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


CACHE_FILES = ("index.json", ".prepare.json")  # what 'unnoise prepare' writes into a cache directory


def is_cache_dir(path: str) -> bool:
    """Whether ``path`` is a data cache written (or being written) by ``unnoise prepare``."""
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, n)) for n in CACHE_FILES)


def foreign_entries(path: str) -> list[str]:
    """The entries of an existing directory other than unnoise's own leftovers (``.tmp-*``, the lock file)."""
    if not os.path.isdir(path):
        return []
    return sorted(n for n in os.listdir(path) if not n.startswith(uio.TMP_PREFIX) and n != LOCK_NAME)


def check_not_inside(out: str, data, option: str = "--out") -> None:
    """Refuse an output directory that is the ``--data`` folder or lies inside it: what is written there would
    become part of the data (a stray loss.png, a run folder read as a class)."""
    if not isinstance(data, str) or not os.path.isdir(data):
        return
    out_real, data_real = os.path.realpath(out), os.path.realpath(data)
    if out_real == data_real or out_real.startswith(data_real.rstrip(os.sep) + os.sep):
        raise ValueError(f"{option} {out!r} is {'the --data folder' if out_real == data_real else 'inside the --data folder'} "
                         f"{data!r}; what is written there would become part of the data: choose a folder outside it")


def check_new_run_dir(run_dir: str) -> None:
    """Refuse to start a run in an existing directory that holds something other than a run: a data cache or any
    other files (a run's files would be mixed into them).  An existing run is :func:`prepare_run_dir`'s case."""
    if is_cache_dir(run_dir):
        raise FileExistsError(errno.EEXIST, f"--out {run_dir} is a data cache written by 'unnoise prepare'; train "
                                            f"on it with --data {run_dir} and choose another --out for the run")
    names = foreign_entries(run_dir)
    if names and not is_run_dir(run_dir):
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise FileExistsError(errno.EEXIST, f"--out {run_dir} is a non-empty folder that is not an unnoise run (it "
                                            f"holds {shown}); choose a new or empty folder for the run")


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
    * a directory holding anything but a run (a data cache, the user's files): refused (:func:`check_new_run_dir`).
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
    if resume:
        return None
    check_new_run_dir(run_dir)
    if not is_run_dir(run_dir):
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
