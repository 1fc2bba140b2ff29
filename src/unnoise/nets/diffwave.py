"""DiffWave-style backbone for 1-D signals (Kong et al. 2021): a stack of non-causal dilated
convolutions with gated activations, residual and skip connections, conditioned on the noise level.

Every convolution is length-preserving (kernel 3 with padding equal to its dilation), so the network
accepts sequences of any length, odd ones included.  Dilations double within a cycle (1, 2, 4, ...),
giving a receptive field of ``1 + 2 * sum(dilations)`` samples.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .embeddings import NoiseLevelEmbedding, labels_only


class ResidualLayer(nn.Module):
    """One gated dilated-convolution layer: returns ``(residual output, skip output)``."""

    def __init__(self, channels: int, dilation: int, emb_dim: int):
        super().__init__()
        self.emb = nn.Linear(emb_dim, channels)
        self.conv = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.out = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, h, emb):
        y = self.conv(h + self.emb(emb)[:, :, None])
        gate, filt = y.chunk(2, dim=1)
        y = torch.sigmoid(gate) * torch.tanh(filt)
        residual, skip = self.out(y).chunk(2, dim=1)
        # 1/sqrt(2) keeps the residual stream's variance from growing with depth
        return (h + residual) / math.sqrt(2.0), skip


class DiffWave(nn.Module):
    """``F(x_in, c_noise, cond)`` for signals ``(batch, channels, length)`` of any length.

    Args:
        shape: shape of one example ``(channels, length)`` (only ``channels`` is binding; the length is
            free).  Alternatively give ``channels``.
        residual_channels: width of the residual stream.
        layers: number of residual layers.
        dilation_cycle: dilations run ``1, 2, ..., 2^(dilation_cycle - 1)`` and repeat.
        emb_dim: width of the noise-level embedding.
        num_classes: > 0 adds a class embedding (``cond`` = ``{"label": (B,)}``, ``num_classes`` = null class).
    """

    def __init__(self, shape=None, channels: int | None = None, residual_channels: int = 64, layers: int = 20,
                 dilation_cycle: int = 10, emb_dim: int = 128, num_classes: int = 0):
        super().__init__()
        if shape is not None:
            shape = [int(s) for s in (shape if isinstance(shape, (list, tuple)) else [shape])]
            if len(shape) != 2:
                raise ValueError(f"DiffWave works on examples of shape (channels, length), got {tuple(shape)}; "
                                 "for images or volumes use the U-Net")
            if channels is not None and channels != shape[0]:
                raise ValueError(f"channels={channels} disagrees with shape {tuple(shape)}")
            channels = shape[0]
        if channels is None or channels < 1:
            raise ValueError("give DiffWave the example shape (channels, length) or a positive channel count")
        if layers < 1 or dilation_cycle < 1 or residual_channels < 1:
            raise ValueError("layers, dilation_cycle and residual_channels must be positive")
        self.channels = channels
        self.num_classes = num_classes
        self.config = dict(shape=shape, channels=channels, residual_channels=residual_channels, layers=layers,
                           dilation_cycle=dilation_cycle, emb_dim=emb_dim, num_classes=num_classes)
        self.embed = NoiseLevelEmbedding(emb_dim, num_classes)
        self.inp = nn.Conv1d(channels, residual_channels, 1)
        self.layers = nn.ModuleList(ResidualLayer(residual_channels, 2 ** (i % dilation_cycle), emb_dim)
                                    for i in range(layers))
        self.skip_out = nn.Conv1d(residual_channels, residual_channels, 1)
        self.out = nn.Conv1d(residual_channels, channels, 1)
        nn.init.zeros_(self.out.weight)  # start as F = 0: the denoiser begins at its skip path
        nn.init.zeros_(self.out.bias)

    @property
    def receptive_field(self) -> int:
        """Number of input samples that influence one output sample."""
        return 1 + 2 * sum(layer.conv.dilation[0] for layer in self.layers)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.channels:
            raise ValueError(f"DiffWave expects (batch, {self.channels}, length), got {tuple(x.shape)}")
        emb = self.embed(c_noise, labels_only(cond, 'DiffWave'))
        h = nn.functional.relu(self.inp(x))
        skips = 0
        for layer in self.layers:
            h, skip = layer(h, emb)
            skips = skips + skip
        h = nn.functional.relu(self.skip_out(skips / math.sqrt(len(self.layers))))
        return self.out(h)
