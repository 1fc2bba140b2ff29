"""U-Net backbone for 1-D, 2-D and 3-D data (sequences, images, volumes): one implementation,
parameterised by the convolution dimension ``dims``.

Layout (per resolution level ``i`` with ``base_channels * channel_mult[i]`` channels):
``num_res_blocks`` residual blocks (GroupNorm, SiLU, conv; the noise/class embedding enters every
block as a scale-shift of the second normalisation), optional self-attention (and cross-attention to
a context sequence), then a stride-2 downsampling; a middle block; and the mirror-image decoder that
concatenates the encoder's skip activations.  Output convolutions are zero-initialised so a fresh
network predicts 0 (the denoiser then starts from its ``c_skip`` term).

``cond`` may be ``None``, a tensor of integer class labels, or a dict with any of
``"label"`` ``(B,)``, ``"context"`` ``(B, L, context_dim)``, ``"context_mask"`` ``(B, L)`` (True =
attend), ``"concat"`` ``(B, cond_channels, *spatial)`` extra input channels (e.g. a low-resolution
image for super-resolution; resized to the input's spatial size when it differs) and ``"vector"``
``(B, vector_dim)`` features added, through a two-layer MLP, to the noise embedding, so they modulate every
residual block (e.g. a camera: as constant input channels it was ignored, see docs/benchmarks.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import COND_KEYS, NoiseLevelEmbedding, split_cond

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _groups(channels: int, max_groups: int = 32) -> int:
    """Largest group count <= max_groups that divides ``channels`` (GroupNorm needs a divisor)."""
    return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """``h + conv(SiLU(GN(conv(SiLU(GN(h)))) * (1 + scale) + shift))`` with a learned skip projection."""

    def __init__(self, dims: int, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        conv = _CONV[dims]
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = conv(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(conv(c_out, c_out, 3, padding=1))
        self.skip = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb)).reshape(x.shape[0], -1, *([1] * (x.ndim - 2))).chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all positions, plus optional cross-attention to a context.

    Positions are the flattened spatial grid; cross-attention keys/values come from ``context``
    ``(B, L, context_dim)`` with ``context_mask`` ``(B, L)`` (True = attend).  Without a context the
    cross-attention is skipped, which is how the null (unconditional) text condition is expressed.
    """

    def __init__(self, channels: int, num_heads: int, context_dim: int = 0):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention channels {channels} not divisible by num_heads={num_heads}")
        self.heads = num_heads
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = _zero(nn.Linear(channels, channels))
        self.context_dim = context_dim
        if context_dim:
            self.norm_x = nn.LayerNorm(channels)
            self.q = nn.Linear(channels, channels)
            self.kv = nn.Linear(context_dim, 2 * channels)
            self.proj_x = _zero(nn.Linear(channels, channels))

    def _split(self, t):  # (B, N, C) -> (B, heads, N, C/heads)
        return t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

    def _merge(self, t):
        return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], -1)

    def forward(self, x, context=None, context_mask=None):
        b, c, *spatial = x.shape
        h = self.norm(x).reshape(b, c, -1).transpose(1, 2)  # (B, N, C)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        out = self._merge(F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v)))
        tokens = x.reshape(b, c, -1).transpose(1, 2) + self.proj(out)
        if self.context_dim and context is not None:
            if context.ndim != 3 or context.shape[0] != b or context.shape[2] != self.context_dim:
                raise ValueError(f"context must have shape ({b}, L, {self.context_dim}), got {tuple(context.shape)}")
            k, v = self.kv(context.to(tokens.dtype)).chunk(2, dim=-1)
            mask = None
            if context_mask is not None:
                mask = torch.as_tensor(context_mask, device=x.device).bool().reshape(b, 1, 1, -1)
            qx = self._split(self.q(self.norm_x(tokens)))
            att = F.scaled_dot_product_attention(qx, self._split(k), self._split(v), attn_mask=mask)
            tokens = tokens + self.proj_x(self._merge(att))
        return tokens.transpose(1, 2).reshape(b, c, *spatial)


class Downsample(nn.Module):
    def __init__(self, dims, channels):
        super().__init__()
        self.conv = _CONV[dims](channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, dims, channels):
        super().__init__()
        self.conv = _CONV[dims](channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Noise-conditioned U-Net: ``F(x_in, c_noise, cond)`` with ``x_in`` of shape ``(B, C, *spatial)``.

    Args:
        shape: shape of one example ``(C, *spatial)``; sets ``in_channels`` and ``dims`` when given
            and checks the spatial sizes at construction.
        in_channels: data channels (also the output channels).
        dims: convolution dimension: 1 (sequences/audio), 2 (images) or 3 (volumes).
        base_channels: channels of the first level.
        channel_mult: per-level multipliers; ``len(channel_mult)`` levels, so every spatial size must
            be divisible by ``2 ** (len(channel_mult) - 1)``.
        num_res_blocks: residual blocks per level in the encoder (the decoder has one more).
        attention_levels: level indices (0 = full resolution) that get self-attention; the middle
            block always has it.
        num_heads: attention heads.
        dropout: dropout inside residual blocks.
        num_classes: > 0 adds a class embedding (index ``num_classes`` = the null class).
        context_dim: > 0 adds cross-attention to ``cond["context"]`` at the attention levels.
        cond_channels: extra input channels supplied as ``cond["concat"]``.
        vector_dim: > 0 adds ``cond["vector"]`` ``(B, vector_dim)`` to the noise embedding (by a two-layer MLP).
        emb_dim: noise-embedding width (default ``4 * base_channels``).
    """

    def __init__(self, shape=None, in_channels: int | None = None, dims: int | None = None,
                 base_channels: int = 64, channel_mult=(1, 2, 2), num_res_blocks: int = 2,
                 attention_levels=(1,), num_heads: int = 4, dropout: float = 0.0, num_classes: int = 0,
                 context_dim: int = 0, cond_channels: int = 0, emb_dim: int | None = None, vector_dim: int = 0):
        super().__init__()
        if shape is not None:
            shape = [int(s) for s in shape]
            if len(shape) < 2:
                raise ValueError(f"UNet needs examples shaped (C, *spatial), got shape {shape}")
            in_channels = shape[0] if in_channels is None else in_channels
            dims = len(shape) - 1 if dims is None else dims
        in_channels = 1 if in_channels is None else int(in_channels)
        dims = 2 if dims is None else int(dims)
        if dims not in _CONV:
            raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
        channel_mult = [int(m) for m in channel_mult]
        attention_levels = sorted(int(a) for a in attention_levels)
        if not channel_mult or min(channel_mult) < 1 or base_channels < 1 or num_res_blocks < 1:
            raise ValueError("base_channels, channel_mult entries and num_res_blocks must be positive")
        if any(not 0 <= a < len(channel_mult) for a in attention_levels):
            raise ValueError(f"attention_levels {attention_levels} must be level indices in [0, {len(channel_mult)})")
        emb_dim = int(emb_dim or 4 * base_channels)
        self.config = dict(shape=shape, in_channels=in_channels, dims=dims, base_channels=base_channels,
                           channel_mult=channel_mult, num_res_blocks=num_res_blocks,
                           attention_levels=attention_levels, num_heads=num_heads, dropout=dropout,
                           num_classes=num_classes, context_dim=context_dim, cond_channels=cond_channels,
                           emb_dim=emb_dim)
        if vector_dim:
            self.config["vector_dim"] = int(vector_dim)
        self.dims, self.in_channels, self.num_classes = dims, in_channels, num_classes
        self.cond_channels, self.levels = cond_channels, len(channel_mult)
        if shape is not None:
            if len(shape) != dims + 1:
                raise ValueError(f"shape {shape} does not match dims={dims} (expected C plus {dims} spatial sizes)")
            self.check_spatial(shape[1:])
        conv = _CONV[dims]

        self.embed = NoiseLevelEmbedding(emb_dim, num_classes)
        self.vector_dim = int(vector_dim)
        self.vector = (nn.Sequential(nn.Linear(self.vector_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
                       if self.vector_dim else None)
        self.inp = conv(in_channels + cond_channels, base_channels, 3, padding=1)

        def attn(ch):
            return AttentionBlock(ch, num_heads, context_dim)

        self.down = nn.ModuleList()
        skips, ch = [base_channels], base_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                out = base_channels * mult
                self.down.append(nn.ModuleList([ResBlock(dims, ch, out, emb_dim, dropout)]
                                               + ([attn(out)] if level in attention_levels else [])))
                ch = out
                skips.append(ch)
            if level < len(channel_mult) - 1:
                self.down.append(nn.ModuleList([Downsample(dims, ch)]))
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(dims, ch, ch, emb_dim, dropout), attn(ch),
                                  ResBlock(dims, ch, ch, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(channel_mult))):
            for i in range(num_res_blocks + 1):
                out = base_channels * channel_mult[level]
                layers = [ResBlock(dims, ch + skips.pop(), out, emb_dim, dropout)]
                ch = out
                if level in attention_levels:
                    layers.append(attn(ch))
                if level > 0 and i == num_res_blocks:
                    layers.append(Upsample(dims, ch))
                self.up.append(nn.ModuleList(layers))
        self.out_norm = nn.GroupNorm(_groups(ch), ch)
        self.out = _zero(conv(ch, in_channels, 3, padding=1))

    def check_spatial(self, spatial) -> None:
        """Raise a ValueError unless every spatial size is divisible by ``2 ** (levels - 1)``."""
        factor = 2 ** (self.levels - 1)
        bad = [s for s in spatial if s % factor or s < 1]
        if bad:
            raise ValueError(f"spatial size {tuple(spatial)} cannot be halved {self.levels - 1} times: every size must "
                             f"be divisible by {factor}; resize/crop the data (e.g. --image-size) or use "
                             f"fewer levels (len(channel_mult))")

    def _run(self, layers, h, emb, context, mask):
        for layer in layers:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, AttentionBlock):
                h = layer(h, context, mask)
            else:
                h = layer(h)
        return h

    def forward(self, x, c_noise, cond=None):
        if x.ndim != self.dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet(dims={self.dims}) expects input (B, {self.in_channels}, {', '.join(['size'] * self.dims)}), "
                             f"got {tuple(x.shape)}")
        self.check_spatial(x.shape[2:])
        labels, context, mask, concat = split_cond(cond)
        if self.cond_channels:
            if concat is None:
                raise ValueError(f"this UNet takes {self.cond_channels} extra input channel(s): pass "
                                 "cond={'concat': tensor of shape (B, C_cond, *spatial)}")
            if concat.shape[1] != self.cond_channels:
                raise ValueError(f"cond['concat'] has {concat.shape[1]} channels, expected {self.cond_channels}")
            if concat.shape[2:] != x.shape[2:]:
                mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[self.dims]
                concat = F.interpolate(concat.to(x.dtype), size=x.shape[2:], mode=mode, align_corners=False)
            x = torch.cat([x, concat.to(x.dtype)], dim=1)
        emb = self.embed(c_noise, labels)
        vector = cond.get("vector") if isinstance(cond, dict) else None
        if self.vector_dim:
            if vector is None or vector.ndim != 2 or vector.shape[1] != self.vector_dim:
                raise ValueError(f"this UNet takes a {self.vector_dim}-vector condition: pass cond={{'vector': tensor "
                                 f"of shape (B, {self.vector_dim})}}"
                                 + ("" if vector is None else f", got shape {tuple(vector.shape)}"))
            emb = emb + self.vector(vector.to(emb.dtype))
        elif vector is not None:
            raise ValueError("this UNet takes no vector condition (vector_dim=0); cond['vector'] given")
        h = self.inp(x)
        hs = [h]
        for layers in self.down:
            h = self._run(layers, h, emb, context, mask)
            hs.append(h)
        h = self._run(self.mid, h, emb, context, mask)
        for layers in self.up:
            h = self._run(layers, torch.cat([h, hs.pop()], dim=1), emb, context, mask)
        return self.out(F.silu(self.out_norm(h)))

    def extra_repr(self) -> str:
        c = self.config
        return (f"dims={c['dims']}, channels={c['base_channels']}x{c['channel_mult']}, "
                f"res_blocks={c['num_res_blocks']}, attention_levels={c['attention_levels']}")


__all__ = ["COND_KEYS", "UNet", "split_cond"]
