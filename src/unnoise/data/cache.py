"""A one-off preprocessing cache: a dataset written once as memory-mappable shards, read back for free.

Decoding and resizing a folder of JPEGs costs far more than a training step of a small network;
:func:`prepare` pays it once.  The cache directory holds

    index.json                  format, dtype, example shape, count, shard list, condition keys,
                                class names, normalisation statistics, where the data came from
    shard_00000.npy             up to ``shard_size`` examples (N_k, *shape) as uint8 / float16 / float32
    shard_00000.<key>.npy       the examples' condition ``key`` (e.g. ``label``), when the items have one
    shard_00000.json            the shard's count and running statistics; written last = the shard is done

Every file is written under a temporary name, synced and renamed, and ``index.json`` is written after
all shards, so an interrupted ``prepare`` leaves either a complete cache or shards that a second call
with the same settings keeps (it starts at the first missing shard) and no half-written file.

``uint8`` stores images in [-1, 1] as ``k = round((x + 1) * 127.5)`` and reads them back as
``k / 127.5 - 1`` in float32: for 8-bit images the exact value :func:`~unnoise.data.images.decode_image`
gives, so a cached epoch sees the same pixels bit for bit.  Float data (arrays, latents) are stored as
float32 (exact) or float16 (half the size; values must be finite there).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..checkpoint import atomic_write_bytes
from .datasets import RunningStats, normalise

CACHE_FORMAT, CACHE_VERSION = "unnoise-cache", 1
CACHE_DTYPES = ("uint8", "float16", "float32")


def _write_npy(path: str, arr: np.ndarray) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
    atomic_write_bytes(path, write)


def _write_json(path: str, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
    atomic_write_bytes(path, write)


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _encode(x: torch.Tensor, dtype: str, first: int) -> np.ndarray:
    if not torch.isfinite(x).all():
        raise ValueError(f"examples from {first} on contain NaN or inf; clean the data before caching")
    if dtype == "uint8":
        lo, hi = float(x.min()), float(x.max())
        if lo < -1.0 - 1e-6 or hi > 1.0 + 1e-6:
            raise ValueError(f"a uint8 cache holds images in [-1, 1], but examples from {first} on range over "
                             f"[{lo:.3g}, {hi:.3g}]; use dtype float16 or float32")
        return torch.round((x.clamp(-1, 1) + 1.0) * 127.5).to(torch.uint8).numpy()
    out = x.numpy().astype(dtype)
    if not np.isfinite(out).all():
        raise ValueError(f"examples from {first} on overflow float16 (|x| > 65504); use dtype float32")
    return out


def prepare(dataset: Dataset, out_dir: str, dtype: str = "uint8", shard_size: int = 4096, stats=None,
            info: dict | None = None, class_names: list | None = None, batch_size: int = 256, num_workers: int = 0,
            transform=None, overwrite: bool = False, progress: bool = True) -> dict:
    """Write ``dataset`` (items ``(x0, cond)``) to a cache in ``out_dir``; returns the index.

    Args:
        dataset: any map-style dataset; read in order through a DataLoader with ``num_workers`` workers.
        dtype: ``uint8`` (images in [-1, 1]), ``float16`` or ``float32``.
        shard_size: examples per shard file.
        stats: ``None``, a stats dict to store, or ``"feature"`` / ``"channel"`` to compute them during
            the same pass (:class:`~unnoise.data.datasets.RunningStats` on the items as given).
        info: recorded in the index (e.g. the source folder, image size and mode); part of the settings.
        class_names: stored in the index (default: the dataset's ``class_names`` attribute, if any).
        transform: a batched map ``(B, ...) -> (B, ...)`` applied before storing, e.g. a latent cache with
            ``transform=codec.encode`` (:class:`unnoise.latent.LatentCodec`) and ``dtype="float16"``;
            name it in ``info`` so a cache of other latents is not mistaken for this one.
        overwrite: replace a complete cache made with other settings (otherwise that is a ``ValueError``).

    A second call with the same settings on a complete cache returns its index without work; on an
    interrupted one it writes only the missing shards.
    """
    if dtype not in CACHE_DTYPES:
        raise ValueError(f"unknown cache dtype {dtype!r}; use one of {', '.join(CACHE_DTYPES)}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    if isinstance(stats, str):
        RunningStats(stats)  # checks the axis name
    n = len(dataset)
    if n < 1:
        raise ValueError("the dataset is empty; nothing to cache")
    if class_names is None:
        class_names = list(getattr(dataset, "class_names", []) or [])
    x0, cond0 = dataset[0]
    if transform is not None:
        with torch.no_grad():
            x0 = transform(x0[None])[0]
    settings = {"dtype": dtype, "shard_size": shard_size, "count": n, "shape": list(x0.shape),
                "cond": sorted(cond0), "stats": stats,
                "info": info or {}}
    index_path, plan_path = os.path.join(out_dir, "index.json"), os.path.join(out_dir, ".prepare.json")
    if os.path.exists(index_path):
        index = _read_json(index_path)
        if index.get("settings") == settings and not overwrite:
            if progress:
                print(f"{out_dir}: already prepared ({index['count']:,} examples)")
            return index
        if not overwrite:
            raise ValueError(f"{out_dir!r} already holds a cache made with other settings; pass overwrite=True "
                             "(--overwrite) to replace it, or choose another directory")
        os.remove(index_path)
        if os.path.exists(plan_path):
            os.remove(plan_path)  # so every shard is written again
    os.makedirs(out_dir, exist_ok=True)
    if not (os.path.exists(plan_path) and _read_json(plan_path) == settings):
        for name in os.listdir(out_dir):  # shards of other settings would be wrong: start afresh
            if name.startswith("shard_") or name.startswith(".tmp-"):
                os.remove(os.path.join(out_dir, name))
        _write_json(plan_path, settings)
    shards = (n + shard_size - 1) // shard_size
    acc = RunningStats(stats) if isinstance(stats, str) else None
    bar = tqdm(total=n, desc="prepare", unit="ex", unit_scale=True, disable=not progress, dynamic_ncols=True)
    start_time, done_now = time.perf_counter(), 0
    names = []
    for k in range(shards):
        stem = os.path.join(out_dir, f"shard_{k:05d}")
        names.append(os.path.basename(stem))
        lo, hi = k * shard_size, min(n, (k + 1) * shard_size)
        if os.path.exists(stem + ".json"):  # finished before an interruption
            meta = _read_json(stem + ".json")
            if acc is not None:
                acc.merge_state(meta["stats"])
            bar.update(hi - lo)
            continue
        xs, conds = [], {key: [] for key in settings["cond"]}
        shard_acc = RunningStats(stats) if acc is not None else None
        loader = DataLoader(Subset(dataset, range(lo, hi)), batch_size=batch_size, shuffle=False,
                            num_workers=num_workers)
        for x, cond in loader:
            if sorted(cond) != settings["cond"]:
                raise ValueError(f"items have condition keys {sorted(cond)} but the first has {settings['cond']}; "
                                 "every item needs the same keys")
            if transform is not None:
                with torch.no_grad():
                    x = transform(x).detach().cpu().float()
            if shard_acc is not None:
                shard_acc.update(x)
            xs.append(_encode(x, dtype, lo + sum(len(v) for v in xs)))
            for key in conds:
                conds[key].append(cond[key].numpy())
            bar.update(len(x))
        for key, parts in conds.items():
            _write_npy(f"{stem}.{key}.npy", np.concatenate(parts))
        _write_npy(stem + ".npy", np.concatenate(xs))
        if shard_acc is not None:
            acc.merge_state(shard_acc.state())
        _write_json(stem + ".json", {"count": hi - lo, "stats": None if shard_acc is None else shard_acc.state()})
        done_now += hi - lo
    bar.close()
    final_stats = acc.stats() if acc is not None else stats
    index = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "dtype": dtype, "shape": settings["shape"],
             "count": n, "shard_size": shard_size, "shards": names, "cond": settings["cond"],
             "class_names": class_names, "stats": final_stats, "info": info or {}, "settings": settings}
    _write_json(index_path, index)
    if progress:
        seconds = time.perf_counter() - start_time
        rate = f", {done_now / seconds:,.0f} examples/s" if done_now and seconds > 0 else ""
        print(f"wrote {out_dir}/: {n:,} examples {tuple(settings['shape'])} as {dtype} in {shards} shard(s){rate}")
    return index


class CachedDataset(Dataset):
    """A cache written by :func:`prepare`, read memory-mapped: items ``(x0, cond)`` as the source gave them.

    ``uint8`` shards come back as ``k / 127.5 - 1`` (float32), float shards as float32; with
    ``normalise`` (default) and statistics in the index, items are normalised by them.  Attributes:
    :attr:`index` (the JSON index), :attr:`class_names`, :attr:`stats`, :attr:`labels` (all labels as
    one tensor when the items carry ``label``), :attr:`shape`.
    """

    def __init__(self, out_dir: str, normalise: bool = True):
        path = os.path.join(out_dir, "index.json")
        if not os.path.exists(path):
            partial = os.path.exists(os.path.join(out_dir, ".prepare.json"))
            raise FileNotFoundError(f"{out_dir!r} is not a complete unnoise cache (no index.json"
                                    + ("; an interrupted prepare left it: run it again to finish)" if partial else
                                       "); write one with 'unnoise prepare'"))
        try:
            index = _read_json(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: unreadable cache index ({err}); run 'unnoise prepare' again") from None
        if index.get("format") != CACHE_FORMAT or index.get("version") != CACHE_VERSION:
            raise ValueError(f"{path}: not an unnoise cache of version {CACHE_VERSION}; run 'unnoise prepare' again")
        self.dir, self.index = out_dir, index
        self.stats = index.get("stats") if normalise else None
        self.class_names = list(index.get("class_names") or [])
        self._shards = None

    def _open(self):
        if self._shards is None:  # per process: DataLoader workers map the files themselves
            shards = []
            for name in self.index["shards"]:
                stem = os.path.join(self.dir, name)
                try:
                    data = np.load(stem + ".npy", mmap_mode="r", allow_pickle=False)
                    cond = {k: np.load(f"{stem}.{k}.npy", mmap_mode="r", allow_pickle=False)
                            for k in self.index["cond"]}
                except (OSError, ValueError) as err:
                    raise ValueError(f"{stem}.npy: damaged cache shard ({err}); run 'unnoise prepare' again "
                                     "with --overwrite") from None
                shards.append((data, cond))
            self._shards = shards
        return self._shards

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_shards"] = None
        return state

    def __len__(self) -> int:
        return int(self.index["count"])

    @property
    def shape(self) -> tuple:
        """The shape of one example."""
        return tuple(self.index["shape"])

    @property
    def labels(self) -> torch.Tensor | None:
        """Every example's ``label`` as one ``(N,)`` tensor (None when the items have no label)."""
        if "label" not in self.index["cond"]:
            return None
        return torch.from_numpy(np.concatenate([np.asarray(c["label"]) for _, c in self._open()]))

    def __getitem__(self, i):
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} examples")
        i %= n
        data, cond = self._open()[i // self.index["shard_size"]]
        row = i % self.index["shard_size"]
        if self.index["dtype"] == "uint8":
            x = torch.from_numpy(data[row].astype(np.float32)) / 127.5 - 1.0
        else:
            x = torch.from_numpy(data[row].astype(np.float32))
        return normalise(x, self.stats), {k: torch.from_numpy(np.array(v[row])) for k, v in cond.items()}


__all__ = ["CACHE_DTYPES", "CachedDataset", "prepare"]
