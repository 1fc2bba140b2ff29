"""Writing output files safely: every file goes to a temporary name in the same folder, is fsynced
and renamed, so a crash or a full disk never leaves a half-written file in place of a good one."""
from __future__ import annotations

import io as _io

import numpy as np

from .checkpoint import atomic_write_bytes


def save_npy(path: str, array) -> None:
    """``np.save`` to ``path`` atomically."""
    atomic_write_bytes(path, lambda p: _write(p, array))


def _write(p, array):
    buf = _io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    with open(p, "wb") as f:
        f.write(buf.getvalue())


def save_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    def write(p):
        with open(p, "w") as f:
            f.write(text)
    atomic_write_bytes(path, write)
