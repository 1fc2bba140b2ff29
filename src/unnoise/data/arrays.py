"""User data from .npy / .npz / .csv files as a float tensor ``(N, ...)``."""
from __future__ import annotations

import os

import numpy as np
import torch


def load_array(path: str, min_ndim: int = 2) -> torch.Tensor:
    """Load ``path`` (.npy, .npz with one array, or .csv of numbers, header optional).

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file and the problem.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise ValueError(f"{path}: .npz must hold exactly one array, found {z.files}")
                arr = z[z.files[0]]
        elif ext in (".csv", ".txt"):
            arr = _load_csv(path)
        else:
            raise ValueError(f"{path}: unsupported file type {ext!r}; use .npy, .npz or .csv")
    except ValueError:
        raise
    except Exception as err:  # corrupt file
        raise ValueError(f"{path}: could not read the file ({err})") from None
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{path}: data must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim < min_ndim:
        raise ValueError(f"{path}: expected an array of shape (N, ...), got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{path}: need at least 2 examples, got {arr.shape[0]}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).float()
    check_finite(x, path)
    return x


def _load_csv(path):
    with open(path) as f:
        first = f.readline()
    skip = 0
    try:
        [float(v) for v in first.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        skip = 1  # a header line
    return np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)


def check_finite(x: torch.Tensor, what: str = "data") -> None:
    """Raise a ValueError naming the first bad row if ``x`` holds NaN or inf."""
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(1)
    if bad.any():
        rows = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(f"{what}: {int(bad.sum())} example(s) contain NaN or inf (first rows: {rows}); "
                         "clean or drop them before training")
