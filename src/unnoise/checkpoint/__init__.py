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

from . import disk, files, grids, legacy, lock, model, steps
from .disk import check_run_dir, estimate_checkpoint_bytes
from .files import (_DIR_MODE, _FILE_MODE, _STEP_RE, CHECKPOINTS_DIR, CONFIG_NAME, FORMAT, FORMAT_VERSION, LATEST_NAME,
                    STATE_JSON, STATE_NAME, STEP_FILES, WEIGHTS_NAME, _dump_json, _fsync_dir,
                    _save_tensors, _write_file, _write_json, _write_text, atomic_write_bytes, fault_point,
                    flatten_state, load_state_checked, read_tensors, save_tensors, unflatten_state)
from .lock import LOCK_NAME, RunDirLocked, lock_run_dir, unlock_run_dir
from .grids import TUNED_GRIDS_FORMAT, TUNED_GRIDS_NAME, read_tuned_grids, write_tuned_grids
from .legacy import _load_model_v1
from .model import (RETIRED_NETS, _model_config, _net, _weights, build_from_config, describe_model, load, load_model,
                    load_nulls, read_config, save)
from .steps import (CACHE_FILES, check_new_run_dir, check_not_inside, foreign_entries, is_cache_dir, _aside_path, _all_step_dirs, _complete, _remove_dir, _short_os_error, clean_run_dir,
                    is_run_dir, is_step_dir, latest_checkpoint, list_step_dirs, load_training_checkpoint,
                    prepare_run_dir, read_state_json, resolve_resume, restore_replaced, save_training_checkpoint,
                    step_dir_name, verify_step_dir)
