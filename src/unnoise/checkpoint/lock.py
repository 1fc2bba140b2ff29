"""One writer per run directory: an OS file lock on ``RUN/.lock``.

A process that writes a run (a Trainer, ``unnoise train --out``/``--resume``/``--overwrite``) holds an exclusive
``fcntl.flock`` on ``RUN/.lock``, whose content is the holder's pid.  The kernel releases a flock when its process
ends in any way, ``kill -9`` included, so a lock is never stale: a lock file without a live holder is simply taken
over.  A second writer fails at once with one line naming the holding process.

Holding is counted per process (the command and its Trainer both hold the same directory); the last release
closes the lock and removes the file.  Removing a lock file races with a process that opened it just before: a
taker therefore checks, once locked, that the path still names the file it locked, and tries again otherwise.
"""
from __future__ import annotations

import errno
import fcntl
import os

LOCK_NAME = ".lock"

_held: dict[str, list] = {}  # absolute run directory -> [fd, count]


class RunDirLocked(FileExistsError):
    """Another process is writing the run directory (exit status 2 on the command line)."""


def _holder(path: str) -> str:
    try:
        with open(path) as f:
            pid = f.read().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


def lock_run_dir(run_dir: str) -> str:
    """Take (or, in this process, hold once more) the writer's lock of ``run_dir``, which must exist.

    Returns the lock file's path.  Raises :class:`RunDirLocked` (one line naming the pid) when another
    process holds it."""
    key = os.path.abspath(run_dir)
    path = os.path.join(key, LOCK_NAME)
    if key in _held:
        _held[key][1] += 1
        if _ours(path, _held[key][0][-1]):
            return path
        # the directory we locked was moved away (--overwrite puts the old run aside): lock the new one too
        _held[key][0].append(_take(key, path))
        return path
    _held[key] = [[_take(key, path)], 1]
    return path


def _ours(path: str, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def _take(key: str, path: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunDirLocked(errno.EEXIST, f"{key} is being written by {_holder(path)} (it holds {path}); wait "
                                             "for it to finish or stop it, or choose another --out") from None
        if _ours(path, fd):
            break
        os.close(fd)  # the previous holder removed the file between our open and our lock: take the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def unlock_run_dir(run_dir: str) -> None:
    """Release one hold of ``run_dir``'s lock; the last one removes the lock file and closes it."""
    key = os.path.abspath(run_dir)
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] > 0:
        return
    del _held[key]
    path = os.path.join(key, LOCK_NAME)
    for fd in entry[0]:
        if _ours(path, fd):  # the file at the path is ours (a directory moved aside keeps its own)
            try:
                os.remove(path)
            except OSError:
                pass
        os.close(fd)


def holds(run_dir: str) -> bool:
    """Whether this process holds ``run_dir``'s lock."""
    return os.path.abspath(run_dir) in _held


__all__ = ["LOCK_NAME", "RunDirLocked", "holds", "lock_run_dir", "unlock_run_dir"]
