"""Diffusion Transformer (DiT, Peebles & Xie 2023) for 2-D data.

The image ``(B, C, H, W)`` is cut into ``p x p`` patches, each linearly embedded into a token, plus a
fixed 2-D sine-cosine position code (computed for the input's own grid, so any size divisible by
``p`` works).  Transformer blocks are conditioned with adaLN-Zero: the noise/class embedding
regresses a shift, scale and gate for the attention and MLP branches, the gates initialised at 0
so every block starts as the identity.  A final adaptive LayerNorm and zero-initialised linear map
each token back to its patch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import NoiseLevelEmbedding, split_cond


def sincos_2d(h: int, w: int, dim: int, device=None) -> torch.Tensor:
    """``(h * w, dim)`` fixed position code: half the features encode the row, half the column."""
    if dim % 4:
        raise ValueError(f"DiT hidden size must be divisible by 4 for the 2-D position code, got {dim}")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, device=device, dtype=torch.float32) / (dim // 4))
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    ay, ax = ys.reshape(-1, 1) * freqs, xs.reshape(-1, 1) * freqs
    return torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()], dim=1)


def _modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """Pre-norm transformer block; adaLN-Zero gives (shift, scale, gate) for both branches."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        width = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, width), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(width, hidden))
        self.ada = nn.Linear(hidden, 6 * hidden)
        nn.init.zeros_(self.ada.weight)  # adaLN-Zero: gates start at 0, the block is the identity
        nn.init.zeros_(self.ada.bias)

    def forward(self, x, emb):
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(F.silu(emb)).chunk(6, dim=1)
        b, n, c = x.shape
        q, k, v = self.qkv(_modulate(self.norm1(x), sh1, sc1)).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        x = x + g1[:, None] * self.proj(att)
        return x + g2[:, None] * self.mlp(_modulate(self.norm2(x), sh2, sc2))


class DiT(nn.Module):
    """``F(x_in, c_noise, cond)`` for ``x_in`` of shape ``(B, C, H, W)``, ``H`` and ``W`` divisible by ``patch_size``.

    Args:
        shape: ``(C, H, W)`` of one example (sets ``in_channels``; sizes checked at construction).
        patch_size: side of the square patches (tokens = ``H W / patch_size^2``).
        hidden_size: token width (divisible by 4 and by ``num_heads``).
        depth: number of transformer blocks.  num_heads: attention heads.
        mlp_ratio: MLP width / hidden_size.  dropout: dropout in the MLPs.
        num_classes: > 0 adds a class embedding (index ``num_classes`` = the null class).
    """

    def __init__(self, shape=None, in_channels: int | None = None, patch_size: int = 2, hidden_size: int = 256,
                 depth: int = 6, num_heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 num_classes: int = 0):
        super().__init__()
        if shape is not None:
            shape = [int(s) for s in shape]
            if len(shape) != 3:
                raise ValueError(f"DiT is for 2-D data shaped (C, H, W), got shape {shape}")
            in_channels = shape[0] if in_channels is None else in_channels
        in_channels = 1 if in_channels is None else int(in_channels)
        if hidden_size % num_heads or hidden_size % 4:
            raise ValueError(f"hidden_size={hidden_size} must be divisible by 4 and by num_heads={num_heads}")
        self.config = dict(shape=shape, in_channels=in_channels, patch_size=patch_size, hidden_size=hidden_size,
                           depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, dropout=dropout,
                           num_classes=num_classes)
        self.in_channels, self.patch, self.hidden, self.num_classes = in_channels, patch_size, hidden_size, num_classes
        if shape is not None:
            self.check_spatial(shape[1:])
        self.embed = NoiseLevelEmbedding(hidden_size, num_classes)
        self.patch_embed = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio, dropout) for _ in range(depth))
        self.final_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(hidden_size, 2 * hidden_size)
        self.final = nn.Linear(hidden_size, patch_size * patch_size * in_channels)
        for layer in (self.final_ada, self.final):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def check_spatial(self, spatial) -> None:
        """Raise a ValueError unless ``(H, W)`` are both divisible by the patch size."""
        if len(spatial) != 2 or any(s % self.patch or s < 1 for s in spatial):
            raise ValueError(f"DiT with patch_size={self.patch} needs a 2-D size divisible by {self.patch}, got "
                             f"{tuple(spatial)}; resize/crop the data (e.g. --image-size) or change patch_size")

    def forward(self, x, c_noise, cond=None):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DiT expects input (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        self.check_spatial(x.shape[2:])
        labels, context, _, concat = split_cond(cond)
        if context is not None or concat is not None or (isinstance(cond, dict) and cond.get("vector") is not None):
            raise ValueError("DiT supports class labels only; use the UNet for context or concatenated conditioning")
        b, c, hgt, wid = x.shape
        p, gh, gw = self.patch, hgt // self.patch, wid // self.patch
        emb = self.embed(c_noise, labels)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, gh*gw, hidden)
        tokens = tokens + sincos_2d(gh, gw, self.hidden, x.device).to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens, emb)
        shift, scale = self.final_ada(F.silu(emb)).chunk(2, dim=1)
        out = self.final(_modulate(self.final_norm(tokens), shift, scale))  # (B, N, p*p*C)
        # unpatchify: token (i, j) holds the p x p x C pixels of patch (i, j)
        out = out.reshape(b, gh, gw, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(b, c, hgt, wid)

    def extra_repr(self) -> str:
        return f"patch={self.patch}, hidden={self.hidden}, depth={len(self.blocks)}"


__all__ = ["DiT", "sincos_2d"]
