"""Codecs between a model's space and the user's data units: ``encode(x_data) -> x_model``,
``decode(x_model) -> x_data`` (the latent autoencoder's codec is :class:`unnoise.latent.LatentCodec`)."""
from __future__ import annotations

import torch

from .data.datasets import unnormalise


class Standardizer:
    """Model space <-> data units for standardised data: ``x_data = x_model * std + mean`` per feature
    (``stats`` = ``{"mean": [...], "std": [...]}``, one entry or one per feature; None = identity)."""

    def __init__(self, stats: dict | None):
        self.stats = stats or None

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
