"""Writing output files safely: check the location before long work, then write atomically.

Two guarantees for every file unnoise writes (samples, grids, plots, configs, checkpoints):

* :func:`check_output_path` fails *before* any long work when the location cannot take the file:
  a parent that is a regular file, a directory that cannot be created or written (permissions,
  read-only file system), an existing file without ``overwrite``, too little free space for a
  given size estimate.  It raises one ``OSError``/``ValueError`` whose message names the path and
  the fix.
* :func:`atomic_write` (and the typed writers built on it: :func:`save_npy`, :func:`save_png`,
  :func:`save_figure`, :func:`save_json`, :func:`save_text`) writes to a temporary name in the
  same directory (``.tmp-XXXXXXXX-NAME``), flushes and fsyncs it, renames it over the target and
  fsyncs the directory.  A rename within one directory is atomic, so the target is at every
  moment either the complete previous file or the complete new one; a crash, ``kill -9`` or a full
  disk never leaves half a file under the real name.  On failure the temporary file is removed
  and a file-system fault (disk full, read-only, permission, a path component that is a file) is
  re-raised as one line naming the file and saying that the previous file is intact.

Temporary files left by a ``kill -9`` (the only way one survives) all start with ``.tmp-``;
:func:`remove_stale_temporaries` deletes them (the checkpoint code does so at every start).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import tempfile
from io import BytesIO

import numpy as np
from PIL import Image

TMP_PREFIX = ".tmp-"

# errno values that are faults of the environment (not bugs): rephrased into one line
_HINTS = {
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is exceeded; free some space or write elsewhere",
    errno.EROFS: "the file system is read-only; choose another location",
    errno.EACCES: "no permission to write there; fix the permissions or choose another location",
    errno.EPERM: "the operation is not permitted there; choose another location",
    errno.ENOTDIR: "a component of the path is a file, not a directory; choose another location",
    errno.EISDIR: "the path is a directory; give a file name",
    errno.ENAMETOOLONG: "the file name is too long; choose a shorter one",
    errno.EIO: "the device reported an input/output error",
}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private 0600/0700 entries; finished files get the usual permissions
FILE_MODE, DIR_MODE = 0o666 & ~_umask(), 0o777 & ~_umask()

# ----------------------------------------------------------------------------- fault injection
# Crash-safety is only believable if it is tested by crashing.  UNNOISE_FAULT="STAGE" or
# "STAGE@N" makes the process SIGKILL itself the N-th time (default 1st) it reaches STAGE:
#   "before_replace"  - inside atomic_write, temporary file written but not yet renamed
#   "before_rename"   - (checkpoint) step directory fully written under its temporary name
#   "before_latest"   - (checkpoint) step directory renamed, ``latest`` not yet updated
#   "before_prune"    - (checkpoint) an old step directory renamed for deletion, not yet deleted
_fault_counts: dict[str, int] = {}


def fault_point(stage: str) -> None:
    """Test hook: kill this process with SIGKILL at ``stage`` when ``UNNOISE_FAULT=stage[@n]`` is set
    (on its ``n``-th visit), to test that files survive a crash there.  No-op otherwise."""
    spec = os.environ.get("UNNOISE_FAULT")
    if not spec:
        return
    name, _, nth = spec.partition("@")
    if name != stage:
        return
    _fault_counts[stage] = _fault_counts.get(stage, 0) + 1
    if _fault_counts[stage] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------- errors
def describe(err: BaseException) -> str:
    """One line for an exception: ``OSError`` as ``PATH: reason`` (no ``[Errno N]``), others as ``str``."""
    if isinstance(err, OSError) and err.strerror:
        if err.filename is not None:
            extra = f" -> {err.filename2}" if err.filename2 is not None else ""
            return f"{err.filename}{extra}: {err.strerror}"
        return err.strerror
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def write_error(path: str, err: OSError, existed: bool) -> OSError:
    """The one-line ``OSError`` (same errno, so the same subclass) for a failed write of ``path``."""
    reason = err.strerror or str(err)
    hint = _HINTS.get(err.errno)
    kept = f"the previous {os.path.basename(path)} is intact" if existed else "nothing was written"
    msg = f"could not write {path}: {reason}" + (f" ({hint})" if hint else "") + f"; {kept}"
    return OSError(err.errno, msg) if err.errno is not None else OSError(msg)


def is_environment_error(err: BaseException) -> bool:
    """Whether ``err`` is a file-system fault (disk full, read-only, permissions, ...) rather than a bug."""
    return isinstance(err, OSError) and err.errno in _HINTS


# ----------------------------------------------------------------------------- checking a location
def _nearest_existing(path: str) -> str:
    while path and not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_output_path(path: str, overwrite: bool = True, needed_bytes: int = 0, is_dir: bool = False,
                      what: str = "output") -> str:
    """Check, before any long work, that ``path`` can be written; returns its absolute path.

    ``path`` is a file (or, with ``is_dir=True``, a directory that will receive files).  Its parent
    directory is created if missing, a probe file is written and removed there (``os.access`` is
    not enough: it says yes to root on a read-only mount), and with ``needed_bytes`` the free space
    is compared with that estimate.  An existing ``path`` is refused unless ``overwrite`` (for a
    directory: a non-empty one).  Raises ``IsADirectoryError``/``NotADirectoryError``/
    ``FileExistsError``/``PermissionError`` or ``OSError`` (read-only, disk full), each one line
    naming the path and what to do.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"the {what} path must be a non-empty file name, got {path!r}")
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path):
        if is_dir:
            if not os.path.isdir(path):
                raise NotADirectoryError(errno.ENOTDIR, f"{what} {path} exists and is a file, not a directory; "
                                                        "choose another location")
            if not overwrite and os.listdir(path):
                raise FileExistsError(errno.EEXIST, f"{what} directory {path} already exists and is not empty; "
                                                    "choose another location or pass --overwrite")
        else:
            if os.path.isdir(path):
                raise IsADirectoryError(errno.EISDIR, f"{what} {path} is a directory; give a file name")
            if not overwrite:
                raise FileExistsError(errno.EEXIST, f"{what} {path} already exists; choose another name or "
                                                    "pass --overwrite")
    parent = path if is_dir else os.path.dirname(path)
    anchor = _nearest_existing(parent)
    if anchor and not os.path.isdir(anchor):
        raise NotADirectoryError(errno.ENOTDIR, f"cannot write {what} {path}: {anchor} is a file, not a directory; "
                                                "choose another location")
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        hint = _HINTS.get(err.errno, "choose another location")
        raise OSError(err.errno, f"cannot create directory {parent} for {what} {path}: "
                                 f"{err.strerror or err} ({hint})") from None
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=TMP_PREFIX + "probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        hint = _HINTS.get(err.errno, "choose another location")
        raise OSError(err.errno, f"cannot write {what} {path}: {err.strerror or err} in {parent} ({hint})") from None
    if needed_bytes:
        free = shutil.disk_usage(parent).free
        if free < needed_bytes:
            raise OSError(errno.ENOSPC, f"not enough free space for {what} {path}: need about "
                                        f"{needed_bytes / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free in {parent}; "
                                        "free some space or choose another location")
    return path


def same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file or directory (the same path, or links to one file)."""
    a, b = os.fspath(a), os.fspath(b)
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(out: str, inputs: dict, what: str = "--out") -> None:
    """Refuse an output path that names one of the command's existing inputs (``{"--input": path, ...}``; a run
    directory too), before anything is read or written: the result would replace or mix into the input.
    One-line ``ValueError``."""
    for option, path in inputs.items():
        if path and os.path.lexists(path) and same_file(out, path):
            kind = "folder" if os.path.isdir(path) else "file"
            raise ValueError(f"{what} {out!r} is the {option} {kind}; the result would replace or mix into it: "
                             f"give another {what}")


# ----------------------------------------------------------------------------- atomic writes
def fsync_dir(directory: str) -> None:
    """fsync a directory so a rename in it survives a power cut (silently skipped where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    """Flush a written file's data to the disk."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _nearly_full(directory: str) -> bool:
    try:
        return shutil.disk_usage(directory).free < (1 << 20)
    except OSError:
        return False


def atomic_write(path: str, write) -> str:
    """Write ``path`` by calling ``write(tmp_path)``, then fsync and rename over ``path``.

    ``tmp_path`` lies in the same directory and ends with the target's name (so writers that
    choose a format by extension see the right one).  If ``write`` or any later stage fails, the
    temporary file is removed and ``path`` is untouched; file-system faults are re-raised by
    :func:`write_error` as one line.  Returns ``path``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    existed = os.path.exists(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX, suffix="-" + os.path.basename(path))
    except OSError as err:
        raise write_error(path, err, existed) from None
    os.close(fd)
    try:
        write(tmp)
        fsync_file(tmp)
        os.chmod(tmp, FILE_MODE)
        fault_point("before_replace")
        os.replace(tmp, path)
        fsync_dir(directory)
    except BaseException as err:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            if err.errno is None and _nearly_full(directory):
                # numpy's tofile reports a short write as "N requested and M written", without errno
                err = OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({err})")
            raise write_error(path, err, existed) from None
        raise
    return path


def save_bytes(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically."""
    def write(p):
        with open(p, "wb") as f:
            f.write(data)
    return atomic_write(path, write)


def save_text(path: str, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return save_bytes(path, text.encode("utf-8"))


def save_json(path: str, obj, indent: int | None = 2) -> str:
    """Write ``obj`` as JSON to ``path`` atomically (serialised first, so an unserialisable object
    raises before anything is written)."""
    return save_text(path, json.dumps(obj, indent=indent) + "\n")


def save_npy(path: str, array) -> str:
    """Write one array as ``.npy`` atomically (exactly ``path``: no ``.npy`` is appended)."""
    buf = BytesIO()  # serialised in memory: a short write to the disk is then Python's OSError(ENOSPC)
    np.save(buf, np.asarray(array), allow_pickle=False)
    return save_bytes(path, buf.getvalue())


def save_png(path: str, image) -> str:
    """Write a PIL image or a ``(H, W)`` / ``(H, W, C)`` uint8 array as PNG atomically."""
    if not isinstance(image, Image.Image):
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        image = Image.fromarray(arr)
    return atomic_write(path, lambda p: image.save(p, format="PNG"))


def save_figure(fig, path: str, **savefig_kwargs) -> str:
    """``fig.savefig(path, **savefig_kwargs)`` atomically, in the format of ``path``'s extension
    (PNG when it has none).  The figure is not closed."""
    ext = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    fmt = savefig_kwargs.pop("format", None) or ext or "png"
    return atomic_write(path, lambda p: fig.savefig(p, format=fmt, **savefig_kwargs))


def remove_stale_temporaries(directory: str, dirs: bool = True) -> list[str]:
    """Delete the ``.tmp-*`` files (and, with ``dirs``, directories) in ``directory`` that a crash
    left behind; returns their names.  Only call it where no other process is writing."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(TMP_PREFIX):
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            if not dirs:
                continue
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                continue
        removed.append(name)
    return removed


__all__ = ["atomic_write", "check_not_input", "check_output_path", "describe", "fault_point", "is_environment_error",
           "remove_stale_temporaries", "same_file", "save_bytes", "save_figure", "save_json", "save_npy", "save_png",
           "save_text", "write_error"]
