"""A transformer over token sequences: the backbone of categorical runs (text).

Bidirectional by default (every position attends to every other: the denoiser of a masked or uniform process
predicts each clean token from the whole noisy sequence); ``causal=True`` gives the same network as a left-to-right
language model (the autoregressive baseline of ``benchmarks/text_tokens.py``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .embeddings import NoiseLevelEmbedding, labels_only


def sinusoids(length: int, dim: int) -> torch.Tensor:
    """``(length, dim)`` position codes ``[sin(p w_i), cos(p w_i)]`` with frequencies ``w_i = 10000^(-2i / dim)``."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freqs = torch.exp(-torch.arange(0, dim // 2, dtype=torch.float32) * (2 * math.log(10000.0) / dim))
    out = torch.zeros(length, dim)
    out[:, 0:2 * (dim // 2):2] = torch.sin(pos * freqs)
    out[:, 1:2 * (dim // 2):2] = torch.cos(pos * freqs)
    return out


class SequenceTransformer(nn.Module):
    """``net(x, c_noise, cond) -> (B, L, num_outputs)`` logits for tokens ``x`` ``(B, L)`` (long).

    Args:
        vocab_size: the input states (the clean classes, plus ``[MASK]`` for the masked process).
        num_outputs: the classes predicted at every position.
        seq_len: the longest sequence (learned position embeddings).
        hidden, layers, heads: the pre-norm encoder's size; ``mlp_ratio`` its feed-forward width.
        num_classes: > 0 adds a class embedding (``cond = {"label": (B,)}``; index ``num_classes`` = null).
        causal: attend only to earlier positions (a left-to-right model).
        dropout: dropout in the encoder layers.

    The noise level enters as an embedding of ``c_noise`` added to every position (``c_noise = 1 - alpha`` for
    the categorical denoiser; constant zero when the denoiser is not told the level).
    """

    def __init__(self, vocab_size: int, num_outputs: int, seq_len: int, hidden: int = 128, layers: int = 4,
                 heads: int = 4, mlp_ratio: float = 4.0, num_classes: int = 0, causal: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} must be divisible by the number of heads {heads}")
        self.config = dict(vocab_size=vocab_size, num_outputs=num_outputs, seq_len=seq_len, hidden=hidden,
                           layers=layers, heads=heads, mlp_ratio=mlp_ratio, num_classes=num_classes, causal=causal,
                           dropout=dropout)
        self.vocab_size, self.seq_len, self.causal = int(vocab_size), int(seq_len), bool(causal)
        self.num_classes = num_classes  # labels 0..num_classes-1; num_classes is the null class
        # tokens and positions on one scale (a bidirectional network knows where a token is only from its position),
        # the positions starting as the sinusoids of "Attention is all you need", whose offsets are linear maps
        self.tokens = nn.Embedding(vocab_size, hidden)
        nn.init.normal_(self.tokens.weight, std=0.5 ** 0.5)
        self.positions = nn.Parameter(sinusoids(seq_len, hidden))
        self.embed = NoiseLevelEmbedding(hidden, num_classes)
        # the noise-level (and class) embedding starts at zero: a constant vector of order one added to every
        # position would otherwise swamp the tokens and positions after the first layer norm
        nn.init.zeros_(self.embed.mlp[-1].weight)
        nn.init.zeros_(self.embed.mlp[-1].bias)
        if self.embed.classes is not None:
            nn.init.normal_(self.embed.classes.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(hidden, heads, int(hidden * mlp_ratio), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, num_outputs)

    def forward(self, x, c_noise, cond=None):
        if x.ndim != 2 or x.shape[1] > self.seq_len:
            raise ValueError(f"the transformer takes (B, L <= {self.seq_len}) tokens, got {tuple(x.shape)}")
        if x.is_floating_point() or int(x.min()) < 0 or int(x.max()) >= self.vocab_size:
            raise ValueError(f"tokens must be integers in [0, {self.vocab_size})")
        length = x.shape[1]
        emb = self.embed(c_noise.reshape(-1).expand(x.shape[0]), labels_only(cond, "SequenceTransformer"))
        h = self.tokens(x) + self.positions[:length] + emb[:, None]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=x.device) if self.causal else None
        h = self.encoder(h, mask=mask, is_causal=self.causal)
        return self.out(self.norm(h))
