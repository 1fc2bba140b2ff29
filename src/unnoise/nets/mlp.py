"""Residual MLP backbone for vector data (any tensor shape, flattened)."""
from __future__ import annotations

import math

import torch
from torch import nn

from .embeddings import NoiseLevelEmbedding, labels_only


class ResidualBlock(nn.Module):
    def __init__(self, width: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, 2 * width)
        self.fc2 = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, h, emb):
        scale, shift = self.emb(emb).chunk(2, dim=1)
        z = self.norm(h) * (1 + scale) + shift  # scale-shift conditioning on the noise level
        z = self.fc2(self.drop(nn.functional.silu(self.fc1(nn.functional.silu(z)))))
        return h + z


class MLP(nn.Module):
    """Time-conditioned residual MLP: ``F(x_in, c_noise, cond)``.

    Args:
        shape: shape of one example (e.g. ``(2,)``); inputs are flattened.
        width: hidden width.  depth: number of residual blocks.
        num_classes: > 0 adds a class embedding (``cond`` = ``{"label": (B,)}``; index ``num_classes`` = null).
        dropout: dropout inside the blocks.
        periodic: the inputs are angles (radians): the network sees ``(cos x, sin x)``, so its output is
            ``2 pi``-periodic in every input (the ``angles`` kind, :class:`unnoise.processes.WrappedGaussian`).
    """

    def __init__(self, shape=(2,), width: int = 256, depth: int = 4, emb_dim: int = 128,
                 num_classes: int = 0, dropout: float = 0.0, periodic: bool = False):
        super().__init__()
        self.shape = tuple(shape) if isinstance(shape, (list, tuple)) else (int(shape),)
        self.config = dict(shape=list(self.shape), width=width, depth=depth, emb_dim=emb_dim,
                           num_classes=num_classes, dropout=dropout)
        if periodic:  # only when set, so the configs of Euclidean runs stay as they were
            self.config["periodic"] = True
        self.periodic = bool(periodic)
        self.num_classes = num_classes  # labels 0..num_classes-1; num_classes is the null class
        dim = math.prod(self.shape)
        self.embed = NoiseLevelEmbedding(emb_dim, num_classes)
        self.inp = nn.Linear(2 * dim if periodic else dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width, emb_dim, dropout) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)

    def forward(self, x, c_noise, cond=None):
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"MLP built for examples of shape {self.shape}, got {tuple(x.shape[1:])}")
        emb = self.embed(c_noise, labels_only(cond, 'MLP'))
        flat = x.reshape(x.shape[0], -1)
        h = self.inp(torch.cat([flat.cos(), flat.sin()], 1) if self.periodic else flat)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(nn.functional.silu(self.out_norm(h))).reshape(x.shape)
