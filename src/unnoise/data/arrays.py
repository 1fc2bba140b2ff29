"""User data from .npy / .npz / .csv files as a float tensor ``(N, ...)``."""
from __future__ import annotations

import os
import re

import numpy as np
import torch


NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


def npy_header(path: str) -> tuple[tuple, np.dtype, bool]:
    """``(shape, dtype, fortran_order)`` of the .npy file ``path`` from its header, reading no data.

    Raises ``ValueError`` naming the file when it is not a .npy file (no NumPy magic bytes), when its
    header is damaged, when it holds Python objects (loading those needs pickle, which unnoise never
    does), or when the data are shorter than the header says.
    """
    with open(path, "rb") as f:
        if f.read(6) != NPY_MAGIC:
            raise ValueError(f"{path}: not a .npy file (it does not start with the NumPy header); "
                             "save the array with numpy.save")
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(f)
        except Exception as err:
            raise ValueError(f"{path}: damaged .npy header ({err}); save the array again with numpy.save") from None
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError(f"{path}: holds Python objects (dtype {dtype}), which cannot be loaded without pickle; "
                         "save a numeric array instead, e.g. numpy.save(path, arr.astype(numpy.float32))")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if os.path.getsize(path) < need:
        raise ValueError(f"{path}: the file is truncated ({os.path.getsize(path)} bytes, the header of an array "
                         f"{tuple(shape)} {dtype} needs {need}); save it again")
    return tuple(shape), dtype, fortran


def _load_npz(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        if f.read(4) != ZIP_MAGIC:
            raise ValueError(f"{path}: not a .npz archive (it is not a zip file); save the array with numpy.savez")
    with np.load(path, allow_pickle=False) as z:
        if len(z.files) != 1:
            raise ValueError(f"{path}: .npz must hold exactly one array, found {z.files}")
        try:
            return z[z.files[0]]
        except ValueError as err:
            if "allow_pickle" in str(err) or "Object arrays" in str(err):
                raise ValueError(f"{path}: array {z.files[0]!r} holds Python objects, which cannot be loaded "
                                 "without pickle; save a numeric array instead") from None
            raise ValueError(f"{path}: could not read array {z.files[0]!r} ({err})") from None


def load_array(path: str, min_ndim: int = 2) -> torch.Tensor:
    """Load ``path`` (.npy, .npz with one array, or .csv of numbers, header optional) into memory.

    For a .npy file too large for memory use :class:`unnoise.data.datasets.ArrayDataset` (memory-mapped).
    Raises ``FileNotFoundError`` / ``ValueError`` naming the file and the problem.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            npy_header(path)
            arr = np.load(path, allow_pickle=False)
        elif ext == ".npz":
            arr = _load_npz(path)
        elif ext in (".csv", ".txt"):
            arr = _load_csv(path)
        else:
            raise ValueError(f"{path}: unsupported file type {ext!r}; use .npy, .npz or .csv")
    except ValueError:
        raise
    except Exception as err:  # corrupt file
        raise ValueError(f"{path}: could not read the file ({err})") from None
    return check_array(arr, path, min_ndim)


def check_layout(shape, dtype, path: str, min_ndim: int = 2) -> tuple:
    """Check the dtype and shape of an array of examples from ``path`` without its values; returns the
    shape with 1-D data as ``(N, 1)``.  Raises ``ValueError`` naming the file."""
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"{path}: data must be real numbers, got dtype {dtype}")
    shape = tuple(shape)
    if len(shape) == 1:
        shape = (shape[0], 1)
    if len(shape) < min_ndim:
        raise ValueError(f"{path}: expected an array of shape (N, ...), got shape {shape}")
    if shape[0] < 2:
        raise ValueError(f"{path}: need at least 2 examples, got {shape[0]}")
    return shape


def check_array(arr, path: str, min_ndim: int = 2) -> torch.Tensor:
    """Validate an array of examples ``(N, ...)`` from ``path`` (:func:`check_layout`, finiteness) and
    return it as a float tensor; 1-D data become ``(N, 1)``."""
    shape = check_layout(arr.shape, arr.dtype, path, min_ndim)
    x = torch.from_numpy(np.ascontiguousarray(arr).reshape(shape)).float()
    check_finite(x, path)
    return x


def _load_csv(path):
    with open(path) as f:
        first = f.readline()
        lines = [first] + [f.readline() for _ in range(2)]
    for line in lines:  # numbers separated by spaces or tabs, not commas: say so (it reads as a header otherwise)
        fields = line.split("#", 1)[0].split()
        if "," not in line and ";" not in line and len(fields) >= 2 and all(_is_number(v) for v in fields):
            raise ValueError(f"{path}: the numbers are separated by spaces or tabs; a .csv/.txt must be "
                             f"comma-separated ({','.join(fields[:3])}), or give a .npy array")
    skip = 0
    try:
        [float(v) for v in first.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        skip = 1  # a header line
    try:
        return np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
    except ValueError:
        raise ValueError(_csv_problem(path, skip)) from None


def is_numeric_table(path: str) -> bool:
    """Whether a text file's first non-empty line (among its first 100) is a row of numbers separated by commas
    or white space: a table of vectors rather than prose."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for _ in range(100):
                line = f.readline(4096)
                if not line:
                    return False
                if line.strip():
                    return all(_is_number(v) for v in re.split(r"[,\s]+", line.strip()))
    except OSError:
        return False
    return False


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_problem(path: str, skip: int) -> str:
    """One line saying where a CSV that numpy rejected goes wrong (ragged rows or a non-number)."""
    width = first_line = None
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if number <= skip or not line.split("#", 1)[0].strip():
                continue
            fields = [v.strip() for v in line.split("#", 1)[0].split(",")]
            for v in fields:
                try:
                    float(v)
                except ValueError:
                    return (f"{path}: line {number}: {v!r} is not a number; the file must hold only numbers "
                            "(one optional header line)")
            if width is None:
                width, first_line = len(fields), number
            elif len(fields) != width:
                return (f"{path}: line {number} has {len(fields)} values but line {first_line} has {width}; "
                        "every row must hold the same number of comma-separated values")
    return f"{path}: not a CSV file of numbers"


def check_finite(x: torch.Tensor, what: str = "data") -> None:
    """Raise a ValueError naming the first bad row if ``x`` holds NaN or inf."""
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(1)
    if bad.any():
        rows = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(f"{what}: {int(bad.sum())} example(s) contain NaN or inf (first rows: {rows}); "
                         "clean or drop them before training")
