"""Noise-level and class embeddings shared by every backbone."""
from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Fourier features of a scalar: ``[cos(f_i c), sin(f_i c)]`` with geometric frequencies.

    The scalar is ``c_noise = log(sigma) / 4``, which spans about [-2, 2] for sigmas in [1e-3, 1e3];
    frequencies from ``min_freq`` to ``max_freq`` resolve that range from coarse to fine.
    """

    def __init__(self, dim: int, min_freq: float = 1.0, max_freq: float = 1000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dimension must be even, got {dim}")
        freqs = torch.exp(torch.linspace(math.log(min_freq), math.log(max_freq), dim // 2))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        arg = c.reshape(-1, 1).float() * self.freqs[None]
        return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


class NoiseLevelEmbedding(nn.Module):
    """Sinusoidal features followed by a two-layer MLP, plus an optional class embedding.

    Class labels run from 0 to ``num_classes - 1``; the extra index ``num_classes`` is the learned
    null class used for classifier-free guidance (label dropout during training).
    """

    def __init__(self, dim: int, num_classes: int = 0, freq_dim: int = 64):
        super().__init__()
        self.fourier = SinusoidalEmbedding(freq_dim)
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.num_classes = num_classes
        self.classes = nn.Embedding(num_classes + 1, dim) if num_classes else None

    def forward(self, c_noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.mlp(self.fourier(c_noise))
        if self.classes is not None:
            if labels is None:
                labels = torch.full((emb.shape[0],), self.num_classes, device=emb.device, dtype=torch.long)
            labels = torch.as_tensor(labels, device=emb.device).long().reshape(-1)
            if labels.shape[0] == 1 and emb.shape[0] > 1:
                labels = labels.expand(emb.shape[0])
            emb = emb + self.classes(labels)
        return emb


COND_KEYS = ("label", "context", "context_mask", "concat", "vector")


def split_cond(cond):
    """``cond`` (None, labels tensor or dict) -> ``(labels, context, context_mask, concat)``."""
    if cond is None:
        return None, None, None, None
    if isinstance(cond, dict):
        unknown = set(cond) - set(COND_KEYS)
        if unknown:
            raise ValueError(f"unknown cond keys {sorted(unknown)}; use {', '.join(COND_KEYS)}")
        return cond.get("label"), cond.get("context"), cond.get("context_mask"), cond.get("concat")
    return cond, None, None, None


def labels_only(cond, net: str):
    """The class labels of ``cond`` for a backbone that takes nothing else (MLP, DiffWave)."""
    labels, context, _, concat = split_cond(cond)
    if context is not None or concat is not None or (isinstance(cond, dict) and cond.get("vector") is not None):
        raise ValueError(f"{net} supports class labels only; use the UNet for context or concatenated conditioning")
    return labels
