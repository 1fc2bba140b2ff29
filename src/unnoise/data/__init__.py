"""Data sources: built-in toy sets, user arrays, and streaming datasets of ``(x0, cond)`` items
(image folders, memory-mapped arrays, WAV crops, the preprocessing cache)."""
from __future__ import annotations

import os

import torch

from .arrays import check_finite, load_array
from .cache import CachedDataset, prepare
from .datasets import ArrayDataset, AudioClips, ImageFolder, TensorDataset, streaming_stats
from .toy2d import TOY_DATASETS, toy_dataset


def load_vectors(spec: str, n: int = 10000, generator: torch.Generator | None = None) -> torch.Tensor:
    """A built-in toy set name (``n`` points) or a path to .npy/.npz/.csv data: ``(N, ...)``."""
    if spec in TOY_DATASETS:
        return toy_dataset(spec, n, generator)
    if os.path.splitext(spec)[1] or os.path.sep in spec:
        return load_array(spec)
    raise ValueError(f"unknown data {spec!r}: give a built-in set ({', '.join(sorted(TOY_DATASETS))}) "
                     "or a path to a .npy/.npz/.csv file")


__all__ = ["TOY_DATASETS", "ArrayDataset", "AudioClips", "CachedDataset", "ImageFolder", "TensorDataset",
           "check_finite", "load_array", "load_vectors", "prepare", "streaming_stats", "toy_dataset"]
