"""Bidirectional transformer over the residues of a sequence, with learned relative-position biases: the
backbone network of the ``backbones`` kind (angles per residue on the torus)."""
from __future__ import annotations

import torch
from torch import nn

from .embeddings import NoiseLevelEmbedding, labels_only


class ResidueBlock(nn.Module):
    """Pre-norm self-attention and MLP, each modulated (scale, shift, gate) by the noise embedding."""

    def __init__(self, width: int, heads: int, emb_dim: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(4 * width, width))
        self.mod = nn.Linear(emb_dim, 6 * width)
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)  # every block starts as the identity (adaLN-Zero)

    def forward(self, h, emb, bias):
        b, n, w = h.shape
        s1, t1, g1, s2, t2, g2 = self.mod(nn.functional.silu(emb))[:, None].chunk(6, dim=-1)
        q, k, v = self.qkv(self.norm1(h) * (1 + s1) + t1).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        h = h + g1 * self.proj(a.transpose(1, 2).reshape(b, n, w))
        return h + g2 * self.mlp(self.norm2(h) * (1 + s2) + t2)


class ResidueTransformer(nn.Module):
    """``F(x_in, c_noise, cond)`` on ``(batch, residues, features)``: every residue attends to every other one
    (bidirectional), with a learned bias per head for each relative position ``j - i`` (clipped to
    ``+-max_distance``), so it knows the chain's order without absolute positions.

    Args:
        shape: one example's shape ``(residues, features)``, e.g. ``(32, 6)`` angles per residue.
        width, depth, heads: the transformer's hidden width, number of blocks and attention heads.
        periodic: the features are angles: each residue's input is ``(cos x, sin x)`` of its angles, so the
            output is ``2 pi``-periodic in every input (as :class:`~unnoise.nets.MLP` with ``periodic``).
        num_classes: > 0 adds a class embedding (index ``num_classes`` = the null class).
    """

    def __init__(self, shape=(32, 6), width: int = 128, depth: int = 4, heads: int = 4, emb_dim: int = 128,
                 max_distance: int = 32, periodic: bool = True, num_classes: int = 0, dropout: float = 0.0):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 2:
            raise ValueError(f"ResidueTransformer takes examples of shape (residues, features), got {self.shape}")
        if width % heads:
            raise ValueError(f"width {width} must be a multiple of heads {heads}")
        self.config = dict(shape=list(self.shape), width=width, depth=depth, heads=heads, emb_dim=emb_dim,
                           max_distance=max_distance, periodic=bool(periodic), num_classes=num_classes,
                           dropout=dropout)
        self.periodic, self.max_distance, self.heads = bool(periodic), int(max_distance), heads
        features = self.shape[1]
        self.embed = NoiseLevelEmbedding(emb_dim, num_classes)
        self.inp = nn.Linear(2 * features if periodic else features, width)
        self.relative = nn.Embedding(2 * self.max_distance + 1, heads)
        nn.init.zeros_(self.relative.weight)
        self.blocks = nn.ModuleList(ResidueBlock(width, heads, emb_dim, dropout) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, features)

    def position_bias(self, n: int, device) -> torch.Tensor:
        """``(heads, n, n)``: the learned bias of each relative position ``j - i``."""
        idx = torch.arange(n, device=device)
        rel = (idx[None, :] - idx[:, None]).clamp(-self.max_distance, self.max_distance) + self.max_distance
        return self.relative(rel).permute(2, 0, 1)

    def forward(self, x, c_noise, cond=None):
        if tuple(x.shape[2:]) != self.shape[1:] or x.ndim != 3:
            raise ValueError(f"ResidueTransformer built for (batch, residues, {self.shape[1]}) inputs, got "
                             f"{tuple(x.shape)}")
        emb = self.embed(c_noise, labels_only(cond, "ResidueTransformer"))
        h = self.inp(torch.cat([x.cos(), x.sin()], -1) if self.periodic else x)
        bias = self.position_bias(x.shape[1], x.device)[None]
        for block in self.blocks:
            h = block(h, emb, bias)
        return self.out(nn.functional.silu(self.out_norm(h)))
