"""Pre-flight checks of a run directory: writable, and enough free space for the checkpoints."""
from __future__ import annotations

import os
import shutil
import tempfile

from .lock import RunDirLocked, lock_run_dir, unlock_run_dir
from .steps import clean_run_dir

# ----------------------------------------------------------------------------- pre-flight checks
def estimate_checkpoint_bytes(num_params: int, bytes_per_param: int = 4) -> int:
    """Bytes of one step directory plus the top-level copy: raw + EMA weights twice, two Adam moments."""
    return num_params * bytes_per_param * 6 + (1 << 20)


def check_run_dir(run_dir: str, needed_bytes: int = 0) -> None:
    """Fail before training if ``run_dir`` cannot be created, written, or has too little free space.

    Writes and deletes a probe file (``os.access`` is not enough: it says yes to root on a
    read-only mount).  ``needed_bytes`` is compared with the free space of the file system.  Takes the
    directory's writer lock (:func:`~unnoise.checkpoint.lock.lock_run_dir`: another process writing it is a
    one-line error naming its pid; release with ``unlock_run_dir``), then removes what an earlier crash left in
    the directory (:func:`clean_run_dir`), so every start of a Trainer on a run directory cleans it.
    """
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"cannot create run directory {run_dir!r} ({err.strerror or err}); "
                              "choose another --out") from None
    if not os.path.isdir(run_dir):
        raise PermissionError(f"run directory {run_dir!r} exists but is not a directory; choose another --out")
    try:
        lock_run_dir(run_dir)
    except RunDirLocked:
        raise
    except OSError as err:
        raise PermissionError(f"run directory {run_dir!r} is not writable ({err.strerror or err}); "
                              "fix its permissions or choose another --out") from None
    try:
        _check_free(run_dir, needed_bytes)
    except BaseException:
        unlock_run_dir(run_dir)
        raise


def _check_free(run_dir: str, needed_bytes: int) -> None:
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
