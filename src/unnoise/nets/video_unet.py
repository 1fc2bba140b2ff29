"""Factorised space-time U-Net for video clips ``(B, C, T, H, W)`` (Ho et al. 2022, "Video Diffusion Models").

Spatial layers run on every frame alone (frames folded into the batch: 2-D convolutions, GroupNorm per
frame, per-frame self-attention); after them, at the levels in ``temporal_levels``, a temporal attention
block lets each pixel position attend across the frames, with a learned relative position bias per head
(``bias[j - i]`` for query frame ``i`` and key frame ``j``, distances clipped to ``max_distance``), so
the network knows frame order while every frame uses the same weights.  At the levels in ``spacetime_levels``
that block attends jointly over frames and positions instead (:class:`SpaceTimeAttention`), so a feature can
follow an object to where it moved in another frame.  Down- and upsampling are
spatial only, so the clip length ``T`` is free (any ``T >= 1``; one frame is a still image).

Conditioning frames (MCVD, RaMViD): ``cond["frames"]`` ``(B, T)`` is 1 where a frame is known (given
clean) and 0 where it is to be generated.  The mask enters as an extra input channel and as a learned
vector added to each frame's noise embedding, so every residual block knows whether its frame is
known.  ``cond["stills"]`` ``(B,)`` marks examples whose frames are independent still images: their
temporal attention sees only the frame itself (joint image-video training, Ho et al. 2022).
Output convolutions and attention projections are zero-initialised (a fresh network predicts 0).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import NoiseLevelEmbedding
from .unet import AttentionBlock, Downsample, ResBlock, Upsample, _groups, _zero

VIDEO_COND_KEYS = ("frames", "stills")
TIME_BIASES = ("table", "decay")


def time_bias_parameter(kind: str, num_heads: int, max_distance: int) -> nn.Parameter:
    """The learned relative position bias across frames, per head: ``"table"``, one value per frame distance
    ``-max_distance..max_distance`` (zeros); ``"decay"``, three values (past slope, future slope, same frame)
    of a bias that falls linearly with the distance (ALiBi-like, slopes 1/2, 1/4, ... across the heads)."""
    if kind == "table":
        return nn.Parameter(torch.zeros(num_heads, 2 * int(max_distance) + 1))
    if kind == "decay":
        slopes = 0.5 ** torch.arange(1, num_heads + 1, dtype=torch.float32)
        raw = slopes + torch.log(-torch.expm1(-slopes))  # softplus(raw) = slope
        return nn.Parameter(torch.stack([raw, raw, torch.zeros(num_heads)], 1))
    raise ValueError(f"unknown time_bias {kind!r}; use one of {', '.join(TIME_BIASES)}")


def time_bias_matrix(param: torch.Tensor, kind: str, frames: int, max_distance: int) -> torch.Tensor:
    """``(heads, T, T)``: the bias of query frame ``i`` for key frame ``j``, a function of ``j - i`` clipped to
    ``max_distance`` (see :func:`time_bias_parameter`).  A ``"decay"`` bias cannot favour every other frame over
    the next one, as a table can: that is what it is for (a table learned to split clips into even and odd
    frames that generate unconditionally on their own)."""
    idx = torch.arange(frames, device=param.device)
    rel = (idx[None, :] - idx[:, None]).clamp(-max_distance, max_distance)
    if kind == "table":
        return param[:, rel + max_distance]
    past, future, same = F.softplus(param[:, 0]), F.softplus(param[:, 1]), param[:, 2]
    dist = rel.abs().to(param.dtype)
    slope = torch.where(rel < 0, past[:, None, None], future[:, None, None])
    return torch.where(rel == 0, same[:, None, None], -slope * dist)


def video_cond(cond, batch: int, frames: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(known (B, T) float, stills (B,) bool or None)`` from a video condition dict (None: nothing known; no
    ``"stills"`` entry: None, so the attention blocks mask nothing and read nothing back from the device)."""
    if cond is None:
        cond = {}
    if not isinstance(cond, dict):
        raise ValueError("a video network takes cond={'frames': (B, T) known-frame mask} (no class labels)")
    unknown = set(cond) - set(VIDEO_COND_KEYS)
    if unknown:
        raise ValueError(f"unknown cond keys {sorted(unknown)} for a video network; use {', '.join(VIDEO_COND_KEYS)}")
    known = cond.get("frames")
    if known is None:
        known = torch.zeros(batch, frames, device=device)
    known = torch.as_tensor(known, device=device).float()
    if known.ndim == 1:
        known = known.expand(batch, -1)
    if tuple(known.shape) != (batch, frames):
        raise ValueError(f"cond['frames'] must have shape ({batch}, {frames}) (1 = known frame), "
                         f"got {tuple(known.shape)}")
    stills = cond.get("stills")
    if stills is not None:
        stills = torch.as_tensor(stills, device=device).bool().reshape(-1).expand(batch)
    return known, stills


class TemporalAttention(nn.Module):
    """Self-attention across the frames at every pixel, with a relative position bias per head.

    Input and output ``(B*T, C, H, W)`` (frames folded into the batch); ``frames = T``.
    """

    def __init__(self, channels: int, num_heads: int, max_distance: int = 32, time_bias: str = "table"):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention channels {channels} not divisible by num_heads={num_heads}")
        self.heads, self.max_distance, self.time_bias_kind = num_heads, int(max_distance), time_bias
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = _zero(nn.Linear(channels, channels))
        self.bias = time_bias_parameter(time_bias, num_heads, self.max_distance)

    def position_bias(self, frames: int) -> torch.Tensor:
        """``(heads, T, T)``: the bias of query frame ``i`` for key frame ``j`` (:func:`time_bias_matrix`)."""
        return time_bias_matrix(self.bias, self.time_bias_kind, frames, self.max_distance)

    def forward(self, h: torch.Tensor, frames: int, stills: torch.Tensor | None = None) -> torch.Tensor:
        bt, c, height, width = h.shape
        b = bt // frames
        x = self.norm(h).reshape(b, frames, c, height * width).permute(0, 3, 1, 2)  # (B, HW, T, C)
        x = x.reshape(b * height * width, frames, c)
        q, k, v = (t.reshape(t.shape[0], frames, self.heads, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        bias = self.position_bias(frames).to(q.dtype)[None]  # (1, heads, T, T)
        if stills is not None:
            eye = torch.eye(frames, dtype=torch.bool, device=h.device)
            blocked = stills[:, None, None] & ~eye  # (B, T, T)
            blocked = blocked.repeat_interleave(height * width, 0)[:, None]
            bias = bias.masked_fill(blocked, float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B*HW, heads, T, C/heads)
        out = self.proj(out.transpose(1, 2).reshape(b * height * width, frames, c))
        out = out.reshape(b, height * width, frames, c).permute(0, 2, 3, 1).reshape(bt, c, height, width)
        return h + out


class SpaceTimeAttention(nn.Module):
    """Self-attention over every (frame, position) of a clip jointly, with a relative position bias per head in
    time and in space (``bias_t[j - i] + bias_s[dy, dx]``, offsets clipped to ``max_distance`` frames and
    ``max_offset`` pixels of this level).

    :class:`TemporalAttention` relates the same pixel across frames, so a shape that moves between frames is
    out of its reach; here a query at frame ``i`` attends to the key at any position of frame ``j`` (where the
    object has moved to), at a cost quadratic in ``T * H * W``.  With ``window`` a query attends only to the
    positions within ``window`` pixels (rows and columns) of its own, in every frame: ``T (2 window + 1)^2``
    keys per query, so the fine levels can afford it (positions past the frame's edge are not keys).  A window
    that covers the frame is the full attention.  Input and output ``(B*T, C, H, W)``.
    """

    def __init__(self, channels: int, num_heads: int, max_distance: int = 32, max_offset: int = 8,
                 window: int | None = None, time_bias: str = "table"):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention channels {channels} not divisible by num_heads={num_heads}")
        if window is not None and int(window) < 0:
            raise ValueError(f"the space-time attention window must be >= 0 pixels, got {window}")
        self.heads, self.max_distance, self.max_offset = num_heads, int(max_distance), int(max_offset)
        self.time_bias_kind = time_bias
        self.window = None if window is None else int(window)
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = _zero(nn.Linear(channels, channels))
        self.time_bias = time_bias_parameter(time_bias, num_heads, self.max_distance)
        self.space_bias = nn.Parameter(torch.zeros(num_heads, 2 * self.max_offset + 1, 2 * self.max_offset + 1))

    def _rel(self, n: int, limit: int, device) -> torch.Tensor:
        idx = torch.arange(n, device=device)
        return (idx[None, :] - idx[:, None]).clamp(-limit, limit) + limit

    def position_bias(self, frames: int, height: int, width: int, device) -> torch.Tensor:
        """``(heads, T*H*W, T*H*W)`` over tokens ordered (frame, row, column)."""
        bt = time_bias_matrix(self.time_bias, self.time_bias_kind, frames, self.max_distance)  # (heads, T, T)
        ry, rx = self._rel(height, self.max_offset, device), self._rel(width, self.max_offset, device)
        bs = self.space_bias[:, ry[:, None, :, None], rx[None, :, None, :]]  # (heads, H, W, H, W)
        n = frames * height * width
        return (bt[:, :, None, None, :, None, None] + bs[:, None, :, :, None, :, :]).reshape(self.heads, n, n)

    def forward(self, h: torch.Tensor, frames: int, stills: torch.Tensor | None = None,
                windowed: bool | None = None) -> torch.Tensor:
        """``windowed`` (default: whenever the window is smaller than the frame) picks the computation; both
        give the same result where the window covers the frame."""
        bt, c, height, width = h.shape
        if windowed is None:
            windowed = self.window is not None and self.window < max(height, width) - 1
        if windowed:
            return self._windowed(h, frames, stills)
        b, hw = bt // frames, height * width
        x = self.norm(h).reshape(b, frames, c, hw).transpose(2, 3).reshape(b, frames * hw, c)
        q, k, v = (t.reshape(b, frames * hw, self.heads, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        bias = self.position_bias(frames, height, width, h.device).to(q.dtype)[None]  # (1, heads, N, N)
        if stills is not None:
            frame_of = torch.arange(frames, device=h.device).repeat_interleave(hw)
            other = frame_of[:, None] != frame_of[None, :]  # (N, N)
            bias = bias.masked_fill((stills[:, None, None] & other)[:, None], float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, heads, N, C/heads)
        out = self.proj(out.transpose(1, 2).reshape(b, frames * hw, c))
        return h + out.reshape(b, frames, hw, c).transpose(2, 3).reshape(bt, c, height, width)

    def _windowed(self, h: torch.Tensor, frames: int, stills: torch.Tensor | None) -> torch.Tensor:
        bt, c, height, width = h.shape
        b, hw, heads = bt // frames, height * width, self.heads
        r = self.window if self.window is not None else max(height, width) - 1
        side = 2 * r + 1
        d = c // heads
        q, k, v = self.qkv(self.norm(h).permute(0, 2, 3, 1)).chunk(3, -1)  # (B*T, H, W, C) each

        def windows(t):  # (B*T, H, W, C) -> (B, T, heads, d, K, HW): the K = side^2 keys around each position
            cols = F.unfold(t.permute(0, 3, 1, 2), side, padding=r)  # (B*T, C * K, HW), channel-major
            return cols.reshape(b, frames, heads, d, side * side, hw)

        kw, vw = windows(k), windows(v)
        q = q.reshape(b, frames, hw, heads, d).permute(0, 3, 2, 1, 4) / math.sqrt(d)  # (B, heads, HW, T, d)
        scores = torch.einsum("bhpid,bjhdkp->bhpijk", q, kw)  # (B, heads, HW, T, T, K)
        offsets = torch.arange(-r, r + 1, device=h.device)
        dy, dx = offsets.repeat_interleave(side), offsets.repeat(side)  # offset of key k
        clip = self.max_offset
        bs = self.space_bias[:, dy.clamp(-clip, clip) + clip, dx.clamp(-clip, clip) + clip]  # (heads, K)
        bt_ = time_bias_matrix(self.time_bias, self.time_bias_kind, frames, self.max_distance)  # (heads, T, T)
        rows = torch.arange(height, device=h.device).repeat_interleave(width)[:, None] + dy
        cols = torch.arange(width, device=h.device).repeat(height)[:, None] + dx
        outside = (rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)  # (HW, K): past the frame's edge
        bias = (bt_[:, None, :, :, None] + bs[:, None, None, None, :]).masked_fill(
            outside[None, :, None, None, :], float("-inf")).to(scores.dtype)  # (heads, HW, T, T, K): one add below
        if stills is not None:
            other = ~torch.eye(frames, dtype=torch.bool, device=h.device)
            bias = bias[None].masked_fill(stills[:, None, None, None, None, None] & other[:, :, None], float("-inf"))
        scores = scores + bias
        attn = torch.softmax(scores.flatten(-2), -1).reshape(scores.shape)
        out = torch.einsum("bhpijk,bjhdkp->bihdp", attn, vw)  # (B, T, heads, d, HW)
        out = self.proj(out.reshape(b, frames, c, hw).transpose(2, 3))  # (B, T, HW, C)
        return h + out.transpose(2, 3).reshape(bt, c, height, width)


class BlurDownsample(nn.Module):
    """Anti-aliased downsampling (Zhang 2019, "Making convolutional networks shift-invariant again"): a fixed
    ``[1, 2, 1]`` binomial blur per channel, then the stride-2 3x3 convolution of :class:`Downsample`.  Without
    the blur, an object moved by one pixel lands on the half-resolution grid at the other phase and its features
    there differ from a shifted copy, so frames an odd number of pixels apart look unlike each other to the
    coarse levels; the blur makes them more alike (on moving digits it did not by itself stop a table of time
    biases from favouring frames an even distance apart; ``time_bias="decay"`` did: docs/benchmarks.md)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 16).expand(channels, 1, 3, 3).clone(),
                             persistent=False)

    def forward(self, x):
        blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.kernel.to(x.dtype), groups=x.shape[1])
        return self.conv(blurred)


class VideoUNet(nn.Module):
    """Noise-conditioned factorised space-time U-Net: ``F(x_in, c_noise, cond)``, ``x_in`` ``(B, C, T, H, W)``.

    Args:
        shape: one clip ``(C, T, H, W)`` (sets ``in_channels``; ``T`` is the training window, recorded).
        in_channels: data channels (also the output channels).
        base_channels, channel_mult, num_res_blocks, attention_levels, num_heads, dropout, emb_dim: as in
            :class:`unnoise.nets.UNet` (per-frame 2-D layers; ``attention_levels`` get spatial attention).
        temporal_levels: levels with temporal attention after each block (default: every level); the
            middle block always has it.
        max_distance: frame distances beyond this share one relative position bias.
        spacetime_levels: levels whose temporal attention is joint over frames and positions
            (:class:`SpaceTimeAttention`, quadratic in ``T * H * W``: for the coarse levels); the middle block's
            too when the last level is one of them.  Default none (temporal attention per pixel).
        spacetime_window: with ``spacetime_levels``, each query attends only to the positions within this many
            pixels of its own (in that level's pixels), in every frame; None (default): every position.  A
            window makes the fine levels affordable (cost linear in ``H * W``).
        time_bias: the relative position bias across frames of every temporal and space-time attention block:
            ``"table"`` (default), a learned value per frame distance; ``"decay"``, a learned linear fall with
            the distance, separately into the past and the future (:func:`time_bias_parameter`), which holds
            for clips longer than the training window and cannot pair frames two apart more than neighbours.
    """

    def __init__(self, shape=None, in_channels: int | None = None, base_channels: int = 32, channel_mult=(1, 2, 2),
                 num_res_blocks: int = 1, attention_levels=(), temporal_levels=None, num_heads: int = 4,
                 dropout: float = 0.0, max_distance: int = 32, emb_dim: int | None = None, spacetime_levels=(),
                 spacetime_window: int | None = None, time_bias: str = "table", antialias: bool = False):
        super().__init__()
        if time_bias not in TIME_BIASES:
            raise ValueError(f"unknown time_bias {time_bias!r}; use one of {', '.join(TIME_BIASES)}")
        if shape is not None:
            shape = [int(s) for s in shape]
            if len(shape) != 4:
                raise ValueError(f"VideoUNet needs clips shaped (C, T, H, W), got shape {shape}")
            in_channels = shape[0] if in_channels is None else in_channels
        in_channels = 1 if in_channels is None else int(in_channels)
        channel_mult = [int(m) for m in channel_mult]
        levels = len(channel_mult)
        attention_levels = sorted(int(a) for a in attention_levels)
        temporal_levels = list(range(levels)) if temporal_levels is None else sorted(int(a) for a in temporal_levels)
        spacetime_levels = sorted(int(a) for a in spacetime_levels)
        if not channel_mult or min(channel_mult) < 1 or base_channels < 1 or num_res_blocks < 1:
            raise ValueError("base_channels, channel_mult entries and num_res_blocks must be positive")
        for name, lv in (("attention_levels", attention_levels), ("temporal_levels", temporal_levels),
                         ("spacetime_levels", spacetime_levels)):
            if any(not 0 <= a < levels for a in lv):
                raise ValueError(f"{name} {lv} must be level indices in [0, {levels})")
        emb_dim = int(emb_dim or 4 * base_channels)
        self.config = dict(shape=shape, in_channels=in_channels, base_channels=base_channels, channel_mult=channel_mult,
                           num_res_blocks=num_res_blocks, attention_levels=attention_levels,
                           temporal_levels=temporal_levels, num_heads=num_heads, dropout=dropout,
                           max_distance=max_distance, emb_dim=emb_dim, spacetime_levels=spacetime_levels,
                           spacetime_window=spacetime_window, time_bias=time_bias, antialias=bool(antialias))
        self.in_channels, self.levels = in_channels, levels
        if shape is not None:
            self.check_spatial(shape[2:])

        self.embed = NoiseLevelEmbedding(emb_dim)
        self.known_emb = nn.Parameter(torch.zeros(emb_dim))
        self.inp = nn.Conv2d(in_channels + 1, base_channels, 3, padding=1)

        def across_frames(level, ch):
            if level in spacetime_levels:
                return SpaceTimeAttention(ch, num_heads, max_distance, window=spacetime_window, time_bias=time_bias)
            return TemporalAttention(ch, num_heads, max_distance, time_bias=time_bias)

        def block_extras(level, ch):
            extras = [AttentionBlock(ch, num_heads)] if level in attention_levels else []
            return extras + ([across_frames(level, ch)] if level in temporal_levels or level in spacetime_levels
                             else [])

        self.down = nn.ModuleList()
        skips, ch = [base_channels], base_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                out = base_channels * mult
                self.down.append(nn.ModuleList([ResBlock(2, ch, out, emb_dim, dropout)] + block_extras(level, out)))
                ch = out
                skips.append(ch)
            if level < levels - 1:
                self.down.append(nn.ModuleList([BlurDownsample(ch) if antialias else Downsample(2, ch)]))
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(2, ch, ch, emb_dim, dropout), AttentionBlock(ch, num_heads),
                                  across_frames(levels - 1, ch), ResBlock(2, ch, ch, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            for i in range(num_res_blocks + 1):
                out = base_channels * channel_mult[level]
                layers = [ResBlock(2, ch + skips.pop(), out, emb_dim, dropout)] + block_extras(level, out)
                ch = out
                if level > 0 and i == num_res_blocks:
                    layers.append(Upsample(2, ch))
                self.up.append(nn.ModuleList(layers))
        self.out_norm = nn.GroupNorm(_groups(ch), ch)
        self.out = _zero(nn.Conv2d(ch, in_channels, 3, padding=1))

    def check_spatial(self, spatial) -> None:
        """Raise a ValueError unless H and W are divisible by ``2 ** (levels - 1)``."""
        factor = 2 ** (self.levels - 1)
        if any(s % factor or s < 1 for s in spatial):
            raise ValueError(f"frame size {tuple(spatial)} cannot be halved {self.levels - 1} times: H and W must be "
                             f"divisible by {factor}; resize the frames (--image-size) or use fewer levels "
                             "(len(channel_mult))")

    def _run(self, layers, h, emb, frames, stills):
        for layer in layers:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, (TemporalAttention, SpaceTimeAttention)):
                h = layer(h, frames, stills)
            else:
                h = layer(h)
        return h

    def forward(self, x, c_noise, cond=None):
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"VideoUNet expects clips (B, {self.in_channels}, T, H, W), got {tuple(x.shape)}")
        b, c, t, height, width = x.shape
        self.check_spatial((height, width))
        known, stills = video_cond(cond, b, t, x.device)
        h = torch.cat([x, known.to(x.dtype)[:, None, :, None, None].expand(b, 1, t, height, width)], dim=1)
        h = h.transpose(1, 2).reshape(b * t, c + 1, height, width)  # frames into the batch
        emb = self.embed(c_noise.reshape(-1).expand(b) if c_noise.numel() == 1 else c_noise)
        emb = (emb[:, None] + known[..., None].to(emb.dtype) * self.known_emb).reshape(b * t, -1)
        h = self.inp(h)
        hs = [h]
        for layers in self.down:
            h = self._run(layers, h, emb, t, stills)
            hs.append(h)
        h = self._run(self.mid, h, emb, t, stills)
        for layers in self.up:
            h = self._run(layers, torch.cat([h, hs.pop()], dim=1), emb, t, stills)
        out = self.out(F.silu(self.out_norm(h)))
        return out.reshape(b, t, c, height, width).transpose(1, 2)

    def extra_repr(self) -> str:
        c = self.config
        return (f"channels={c['base_channels']}x{c['channel_mult']}, res_blocks={c['num_res_blocks']}, "
                f"attention_levels={c['attention_levels']}, temporal_levels={c['temporal_levels']}"
                + (f", spacetime_levels={c['spacetime_levels']}" if c.get("spacetime_levels") else "")
                + (f", spacetime_window={c['spacetime_window']}" if c.get("spacetime_window") is not None else "")
                + (f", time_bias={c['time_bias']}" if c.get("time_bias", "table") != "table" else "")
                + (", antialias" if c.get("antialias") else ""))


__all__ = ["BlurDownsample", "SpaceTimeAttention", "TemporalAttention", "TIME_BIASES", "VIDEO_COND_KEYS", "VideoUNet", "time_bias_matrix",
           "time_bias_parameter", "video_cond"]
