"""Map-style ``torch.utils.data`` datasets of training examples, read lazily from disk.

Every dataset here (and :class:`unnoise.data.memory.TensorDataset`, re-exported) yields ``(x0, cond)``: ``x0`` a float32 tensor holding one example in model units,
``cond`` a dict of tensors for that example (``{}`` when unconditional, ``{"label": tensor(k)}`` for class
folders), so the DataLoader's default collate gives ``(x0 (B, ...), {"label": (B,)})``.  Nothing is read
whole: image folders decode and resize in ``__getitem__`` (that is, in the DataLoader's worker processes),
``.npy`` files are memory-mapped, WAV crops read only their own frames.

Normalisation statistics come from one streaming pass (:func:`streaming_stats`), never from a full tensor;
a dataset given ``stats`` returns normalised items, and :func:`unnormalise` maps model units back.  Stats
have the format of :func:`unnoise.train.standardise` (``{"mean": [...], "std": [...]}``, one entry per
feature, or a single entry that broadcasts), so every run config reads them the same way.
"""
from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .arrays import check_layout, load_array, npy_header
from .audio import convert_channels, draw_crops, read_wav_frames, readable_wavs, resample, resampled_length, wav_paths
from .images import DECODE_ERRORS, MODES, decode_image, scan_image_folder
from .memory import TensorDataset  # noqa: F401  (the in-memory dataset, re-exported here)

STAT_AXES = ("feature", "channel")


# ----------------------------------------------------------------------------- normalisation
def normalise(x: torch.Tensor, stats: dict | None) -> torch.Tensor:
    """``(x - mean) / std`` for one example ``x`` (any shape), ``stats`` per feature or a single value."""
    if not stats:
        return x
    mean = torch.as_tensor(stats["mean"], dtype=x.dtype)
    std = torch.as_tensor(stats["std"], dtype=x.dtype)
    return ((x.reshape(-1) - mean) / std).reshape(x.shape)


def unnormalise(x: torch.Tensor, stats: dict | None) -> torch.Tensor:
    """Undo :func:`normalise` on a batch ``(n, ...)`` (and :func:`unnoise.train.standardise`)."""
    if not stats:
        return x
    mean = torch.tensor(stats["mean"], dtype=x.dtype, device=x.device)
    std = torch.tensor(stats["std"], dtype=x.dtype, device=x.device)
    return (x.reshape(x.shape[0], -1) * std + mean).reshape(x.shape)


class RunningStats:
    """Mean and variance over batches, merged exactly in float64 (Chan, Golub and LeVeque).

    A batch of ``m`` rows with mean ``b`` and sum of squared deviations ``M_b`` joins ``n`` rows
    ``(a, M_a)`` as ``mean = a + d m / (n + m)``, ``M = M_a + M_b + d^2 n m / (n + m)`` with
    ``d = b - a``.  Each batch's ``M_b`` is summed around its own mean, so nothing subtracts two large
    sums of squares (the naive ``E[x^2] - E[x]^2`` loses every digit when the mean is large).

    ``axis="feature"``: one mean/std per feature of the flattened example (rows = examples);
    ``axis="channel"``: one per channel of ``(C, *positions)`` examples (rows = every position of every
    example), written out per feature as :func:`unnoise.commands.train_arrays.channel_stats` does.
    """

    def __init__(self, axis: str = "feature"):
        if axis not in STAT_AXES:
            raise ValueError(f"unknown statistics axis {axis!r}; use one of {', '.join(STAT_AXES)}")
        self.axis, self.n, self.mean, self.m2, self.shape = axis, 0, None, None, None

    def update(self, x: torch.Tensor) -> None:
        """Add a batch ``(B, *shape)``."""
        if self.shape is None:
            self.shape = tuple(x.shape[1:])
            if self.axis == "channel" and len(self.shape) < 2:
                raise ValueError(f"per-channel statistics need examples (channels, ...), got shape {self.shape}")
        x = x.detach().to(torch.float64)
        rows = x.reshape(x.shape[0], -1) if self.axis == "feature" else x.transpose(0, 1).reshape(x.shape[1], -1).T
        bad = ~torch.isfinite(rows).all(1)
        if bad.any():
            raise ValueError(f"data: {int(bad.sum())} example(s) or positions contain NaN or inf (the streaming "
                             f"pass reached example {self.count_examples}); clean or drop them before training")
        m = rows.shape[0]
        mb = rows.mean(0)
        m2b = ((rows - mb) ** 2).sum(0)
        if self.n == 0:
            self.mean, self.m2 = mb, m2b
        else:
            d, tot = mb - self.mean, self.n + m
            self.mean = self.mean + d * (m / tot)
            self.m2 = self.m2 + m2b + d * d * (self.n * m / tot)
        self.n += m

    @property
    def count_examples(self) -> int:
        """Examples seen so far."""
        if self.shape is None:
            return 0
        per = 1 if self.axis == "feature" else math.prod(self.shape[1:])
        return self.n // per

    def state(self) -> dict:
        """A JSON-ready state (merge it back with :meth:`merge_state`)."""
        return {"axis": self.axis, "n": self.n, "shape": list(self.shape or []),
                "mean": None if self.mean is None else self.mean.tolist(),
                "m2": None if self.m2 is None else self.m2.tolist()}

    def merge_state(self, state: dict) -> None:
        """Join another accumulator's :meth:`state` (e.g. one saved per cache shard)."""
        if not state["n"]:
            return
        other = RunningStats(state["axis"])
        other.n, other.shape = state["n"], tuple(state["shape"])
        other.mean = torch.tensor(state["mean"], dtype=torch.float64)
        other.m2 = torch.tensor(state["m2"], dtype=torch.float64)
        if self.n == 0:
            self.n, self.shape, self.mean, self.m2 = other.n, other.shape, other.mean, other.m2
            return
        d, tot = other.mean - self.mean, self.n + other.n
        self.mean = self.mean + d * (other.n / tot)
        self.m2 = self.m2 + other.m2 + d * d * (self.n * other.n / tot)
        self.n = tot

    def stats(self) -> dict:
        """``{"mean": [...], "std": [...]}`` with the unbiased standard deviation, floored at 1e-8."""
        if self.n < 2:
            raise ValueError(f"need at least 2 values per statistic, got {self.n}")
        mean, std = self.mean, (self.m2 / (self.n - 1)).sqrt().clamp_min(1e-8)
        if self.axis == "channel":
            if len(mean) == 1:
                return {"mean": [float(mean[0])], "std": [float(std[0])]}
            per = math.prod(self.shape[1:])
            mean, std = mean.repeat_interleave(per), std.repeat_interleave(per)
        return {"mean": mean.tolist(), "std": std.tolist()}


def streaming_stats(dataset, axis: str = "feature", batch_size: int = 256, num_workers: int = 0) -> dict:
    """Normalisation statistics of ``dataset``'s ``x0`` in one pass through a DataLoader (float64, exact merge).

    ``axis``: ``"feature"`` (one per feature, for vectors) or ``"channel"`` (one per channel, for
    sequences, volumes and audio).  Equal to the full-tensor statistics (:func:`unnoise.train.standardise`,
    :func:`~unnoise.commands.train_arrays.channel_stats`) to rounding, without ever holding the data.
    """
    acc = RunningStats(axis)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    for x, _ in loader:
        acc.update(x)
    return acc.stats()


# ----------------------------------------------------------------------------- arrays
class ArrayDataset(Dataset):
    """The examples of a ``.npy`` file ``(N, ...)``, memory-mapped: nothing is read until an item is.

    ``.npz`` and ``.csv`` files cannot be memory-mapped; they are read into memory (with the same
    checks as :func:`unnoise.data.load_array`).  1-D data become ``(N, 1)``.

    Args:
        path: the file.
        stats: normalisation statistics (from :func:`streaming_stats`); items are then normalised.
        min_ndim: the least rank of the array (2 = at least ``(N, features)``).

    An item containing NaN or inf raises ``ValueError`` naming the file and the row.
    """

    def __init__(self, path: str, stats: dict | None = None, min_ndim: int = 2):
        if not os.path.exists(path):
            raise FileNotFoundError(f"data file {path!r} does not exist")
        self.path, self.stats, self._arr = path, stats, None
        if os.path.splitext(path)[1].lower() == ".npy":
            shape, dtype, _ = npy_header(path)
            self._mapped, self._shape = True, check_layout(shape, dtype, path, min_ndim)
        else:
            self._mapped = False
            self._arr = load_array(path, min_ndim).numpy()
            self._shape = tuple(self._arr.shape)

    def _array(self):
        if self._arr is None:  # opened per process: a DataLoader worker maps the file itself
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
            self._arr = arr[:, None] if arr.ndim == 1 else arr
        return self._arr

    def __getstate__(self):
        state = dict(self.__dict__)
        if self._mapped:
            state["_arr"] = None  # never pickle the mapped data into a worker
        return state

    def __len__(self) -> int:
        return self._shape[0]

    @property
    def shape(self) -> tuple:
        """The shape of one example."""
        return tuple(self._shape[1:])

    def __getitem__(self, i):
        x = torch.from_numpy(np.array(self._array()[i], dtype=np.float32))
        if not torch.isfinite(x).all():
            raise ValueError(f"{self.path}: example {i} contains NaN or inf; clean or drop it before training")
        return normalise(x, self.stats), {}


# ----------------------------------------------------------------------------- image folders
class ImageFolder(Dataset):
    """The images under ``root`` (recursively), decoded and resized one at a time in ``__getitem__``.

    The pixels equal those of :func:`unnoise.data.images.load_image_folder` (the same
    :func:`~unnoise.data.images.decode_image`).  With class subfolders each item carries
    ``{"label": tensor(k)}`` (``k`` the index of its folder in :attr:`class_names`).

    Unreadable files: at construction only headers are read (Pillow's lazy ``Image.open``), and files
    whose header is broken are skipped with one warning naming them; a folder where no header can be read
    raises ``ValueError``.  A file that passes that check but fails to decode (e.g. truncated) is reported
    in a warning naming it the first time, and its item is replaced by the next readable example
    (index ``i + 1``, ``i + 2``, ... cyclically), so the replacement depends only on the files.

    Args:
        root: the folder.
        image_size: output side; the shorter side is resized (bicubic), then the centre is cropped.
        mode: ``"RGB"`` or ``"L"``.
        class_folders: labels from first-level subfolders (default: when every image is in one).
    """

    def __init__(self, root: str, image_size: int = 32, mode: str = "RGB", class_folders: bool | None = None):
        self.paths, labels, self.class_names = scan_image_folder(root, image_size, mode, class_folders)
        self.root, self.image_size, self.mode = root, image_size, mode
        self.labels = None if labels is None else torch.tensor(labels, dtype=torch.long)
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple:
        """``(channels, image_size, image_size)``."""
        return (MODES[self.mode], self.image_size, self.image_size)

    @property
    def num_classes(self) -> int:
        """Number of class folders (0 without classes)."""
        return len(self.class_names)

    def __getitem__(self, i):
        n = len(self.paths)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        for k in range(n):
            j = (i + k) % n
            if j in self._bad:
                continue
            try:
                x = decode_image(self.paths[j], self.image_size, self.mode)
            except DECODE_ERRORS as err:
                self._bad.add(j)
                warnings.warn(f"skipped unreadable image {self.paths[j]} ({type(err).__name__}: {err}); "
                              "its place is taken by the next readable image", stacklevel=2)
                continue
            return x, ({} if self.labels is None else {"label": self.labels[j]})
        raise ValueError(f"none of the {n} images under {self.root!r} could be decoded")


# ----------------------------------------------------------------------------- audio folders
class AudioClips(Dataset):
    """``n`` random crops of the WAV files under ``root``, drawn once, each read lazily per item.

    The crops are those of :func:`unnoise.data.audio.load_audio_folder` for the same generator (a
    file drawn uniformly, then an offset, :func:`~unnoise.data.audio.draw_crops`), computed from the
    file headers, so constructing reads no samples.  An item reads only its own frames when the file
    is at ``sample_rate``; otherwise the whole file is read, down-mixed and resampled (and kept in a
    small per-process cache of ``cache_files`` files).  Items are ``((channels, clip_length), {})``,
    shorter files zero-padded at the end.  Unreadable files are skipped with a warning naming them,
    truncated files are read as far as they go, with a warning.

    Args:
        root: folder of ``.wav`` files (recursive).
        n: number of crops.
        clip_length, sample_rate, channels: the crop size, the rate files are resampled to, and the
            channel count (mono and multichannel convert into each other).
        generator: draws the crops.
        stats: normalisation statistics (``axis="channel"``); items are then normalised.
    """

    def __init__(self, root: str, n: int, clip_length: int = 2048, sample_rate: int = 8000, channels: int = 1,
                 generator: torch.Generator | None = None, stats: dict | None = None, cache_files: int = 8):
        if clip_length < 1:
            raise ValueError(f"clip_length must be positive, got {clip_length}")
        self.infos = readable_wavs(root, wav_paths(root), channels)
        self.paths = [i.path for i in self.infos]
        self.clip_length, self.sample_rate, self.channels, self.stats = clip_length, sample_rate, channels, stats
        lengths = [resampled_length(i.frames, i.rate, sample_rate) for i in self.infos]
        self.crops = draw_crops(lengths, n, clip_length, generator)
        self.cache_files, self._cache = cache_files, OrderedDict()

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def shape(self) -> tuple:
        """``(channels, clip_length)``."""
        return (self.channels, self.clip_length)

    def _resampled(self, f: int) -> torch.Tensor:
        if f in self._cache:
            self._cache.move_to_end(f)
            return self._cache[f]
        info = self.infos[f]
        audio = resample(convert_channels(read_wav_frames(info), self.channels, info.path), info.rate,
                         self.sample_rate)
        self._cache[f] = audio
        if len(self._cache) > self.cache_files:
            self._cache.popitem(last=False)
        return audio

    def __getitem__(self, i):
        f, start = self.crops[i]
        info = self.infos[f]
        if info.rate == self.sample_rate:
            piece = convert_channels(read_wav_frames(info, start, self.clip_length), self.channels, info.path)
        else:
            piece = self._resampled(f)[:, start:start + self.clip_length]
        if not torch.isfinite(piece).all():
            raise ValueError(f"{info.path}: the file contains NaN or inf samples")
        out = torch.zeros(self.channels, self.clip_length)
        out[:, :piece.shape[1]] = piece
        return normalise(out, self.stats), {}


__all__ = ["ArrayDataset", "AudioClips", "ImageFolder", "RunningStats", "TensorDataset", "normalise",
           "streaming_stats", "unnormalise"]
