"""Codecs between a model's space and the user's data units: ``encode(x_data) -> x_model``,
``decode(x_model) -> x_data`` (the latent autoencoder's codec is :class:`unnoise.latent.LatentCodec`)."""
from __future__ import annotations

import math

import torch

from .data.datasets import unnormalise


def check_stats(stats, source: str) -> None:
    """``{"mean": [...], "std": [...]}`` of equal lengths, finite, every std positive (a zero or negative std
    would decode every sample to the mean, or mirror it); a one-line ``ValueError`` naming ``source``."""
    try:
        mean = [float(v) for v in stats["mean"]]
        std = [float(v) for v in stats["std"]]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{source}: the normalisation needs lists 'mean' and 'std' of numbers") from None
    if not std or len(mean) != len(std):
        raise ValueError(f"{source}: the normalisation has {len(mean)} means and {len(std)} standard deviations")
    bad = next((i for i, (m, s) in enumerate(zip(mean, std)) if not (math.isfinite(m) and math.isfinite(s) and s > 0)),
               None)
    if bad is not None:
        raise ValueError(f"{source}: the normalisation's std must be positive and finite, got std {std[bad]:g} (mean "
                         f"{mean[bad]:g}) at feature {bad}; the file is damaged: retrain the run or restore the file")


class Standardizer:
    """Model space <-> data units for standardised data: ``x_data = x_model * std + mean`` per feature
    (``stats`` = ``{"mean": [...], "std": [...]}``, one entry or one per feature; None = identity)."""

    def __init__(self, stats: dict | None, source: str = "the normalisation statistics"):
        self.stats = stats or None
        if self.stats:
            check_stats(self.stats, source)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return unnormalise(x, self.stats)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if not self.stats:
            return x
        mean = torch.tensor(self.stats["mean"], dtype=x.dtype, device=x.device)
        std = torch.tensor(self.stats["std"], dtype=x.dtype, device=x.device)
        return ((x.reshape(x.shape[0], -1) - mean) / std).reshape(x.shape)


class ImageCodec:
    """Pixels in [-1, 1] are the model space; decoding clamps to that range."""

    @staticmethod
    def encode(x: torch.Tensor) -> torch.Tensor:
        return x

    @staticmethod
    def decode(x: torch.Tensor) -> torch.Tensor:
        return x.clamp(-1, 1)
