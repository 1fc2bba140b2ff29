"""``diffusers-unet2d``: a diffusers ``UNet2DModel`` as an unnoise backbone, so a trained run exports unchanged.

unnoise calls every backbone as ``net(x_in, c_noise, cond)`` with ``c_noise = log(sigma) / 4``; a diffusers
UNet takes the DDPM timestep ``t``.  This backbone recovers ``sigma = exp(4 c_noise)`` and maps it to ``t`` on the
table of the discrete VP schedule it is trained under (log-sigma interpolation; exact integers at the table's own
sigmas, which is all training and an exported DDPM/DDIM scheduler ever use).  Wrapped by
:class:`unnoise.Denoiser` with ``process="vp"`` and parameterization ``eps`` / ``v`` / ``x0``, the network input is
``c_in x = x_t`` and its output is eps / v / x_0 -- exactly what diffusers' ``prediction_type`` epsilon /
v_prediction / sample means, so :func:`export_diffusers` writes the weights as they are.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import schedules
from .schedule import DiffusersSchedule


def _schedule_from(spec) -> schedules.DiscreteVP:
    if isinstance(spec, dict) and spec.get("name") == "diffusers":
        sched = DiffusersSchedule(spec["config"], spec.get("terminal_alpha_bar"))
    else:
        spec = dict(spec) if isinstance(spec, dict) else {"name": spec}
        spec.pop("spacing", None)
        sched = schedules.get(spec.pop("name"), **spec)
    if not isinstance(sched, schedules.DiscreteVP):
        raise ValueError(f"diffusers-unet2d needs a discrete VP schedule (ddpm, cosine, scaled_linear, sigmoid), "
                         f"got {type(sched).__name__}: diffusers models take integer DDPM timesteps")
    return sched


class DiffusersUNet2D(nn.Module):
    """A diffusers ``UNet2DModel`` built from unnoise's U-Net layout options, called as ``net(x_in, c_noise, cond)``.

    Args:
        shape: one example ``(C, H, W)`` (sets ``in_channels`` and ``sample_size``).
        in_channels: image channels (default ``shape[0]``, else 3).
        base_channels, channel_mult: level widths ``base_channels * channel_mult[i]`` (diffusers'
            ``block_out_channels``).
        num_res_blocks: residual blocks per level (``layers_per_block``).
        attention_levels: level indices with self-attention (``AttnDownBlock2D`` / ``AttnUpBlock2D``).
        attention_head_dim: channels per attention head.
        norm_num_groups: GroupNorm groups (must divide every level width).
        num_classes: > 0 adds ``num_classes + 1`` class embeddings; index ``num_classes`` is the null class.
        dropout: dropout inside residual blocks.
        schedule: the discrete VP schedule the model is trained under (an unnoise schedule config dict or name);
            it fixes the sigma -> timestep map and the exported scheduler.
    """

    def __init__(self, shape=None, in_channels: int | None = None, base_channels: int = 64, channel_mult=(1, 2, 2),
                 num_res_blocks: int = 2, attention_levels=(1,), attention_head_dim: int = 8,
                 norm_num_groups: int | None = None, num_classes: int = 0, dropout: float = 0.0,
                 schedule="ddpm"):
        super().__init__()
        try:
            import diffusers  # optional dependency: pip install 'unnoise[diffusers]'
        except ImportError:
            raise ValueError("the diffusers-unet2d network needs diffusers: pip install 'unnoise[diffusers]'") from None
        if shape is not None:
            shape = [int(s) for s in shape]
            if len(shape) != 3:
                raise ValueError(f"diffusers-unet2d takes images shaped (C, H, W), got shape {shape}")
            in_channels = shape[0] if in_channels is None else in_channels
        in_channels = 3 if in_channels is None else int(in_channels)
        channel_mult = [int(m) for m in channel_mult]
        attention_levels = sorted(int(a) for a in attention_levels)
        widths = [base_channels * m for m in channel_mult]
        groups = norm_num_groups or min(32, base_channels)
        if any(w % groups for w in widths):
            raise ValueError(f"norm_num_groups={groups} must divide every level width {widths}")
        if any(w % attention_head_dim for i, w in enumerate(widths) if i in attention_levels):
            raise ValueError(f"attention_head_dim={attention_head_dim} must divide the widths of the attention levels")
        if any(not 0 <= a < len(widths) for a in attention_levels):
            raise ValueError(f"attention_levels {attention_levels} must be level indices in [0, {len(widths)})")
        sched = _schedule_from(schedule)
        if shape is not None and any(s % 2 ** (len(widths) - 1) for s in shape[1:]):
            raise ValueError(f"image sizes {shape[1:]} must be divisible by {2 ** (len(widths) - 1)} "
                             f"({len(widths)} levels)")
        self.config = dict(shape=shape, in_channels=in_channels, base_channels=base_channels,
                           channel_mult=channel_mult, num_res_blocks=num_res_blocks,
                           attention_levels=attention_levels, attention_head_dim=attention_head_dim,
                           norm_num_groups=groups, num_classes=num_classes, dropout=dropout,
                           schedule=sched.config())
        self.num_classes, self.in_channels = num_classes, in_channels
        down = ["AttnDownBlock2D" if i in attention_levels else "DownBlock2D" for i in range(len(widths))]
        up = ["AttnUpBlock2D" if i in attention_levels else "UpBlock2D" for i in reversed(range(len(widths)))]
        self.unet = diffusers.UNet2DModel(
            sample_size=shape[1] if shape is not None else None, in_channels=in_channels, out_channels=in_channels,
            block_out_channels=tuple(widths), layers_per_block=num_res_blocks, down_block_types=tuple(down),
            up_block_types=tuple(up), attention_head_dim=attention_head_dim, norm_num_groups=groups,
            dropout=dropout, num_class_embeds=num_classes + 1 if num_classes else None)
        self.register_buffer("log_sigmas", torch.log(sched.sigmas).to(torch.float64), persistent=False)
        # the table's ends as Python numbers: clamping to them reads no device memory in the training step
        self._log_sigma_range = (float(self.log_sigmas[0]), float(self.log_sigmas[-1]))

    def timestep(self, c_noise: torch.Tensor) -> torch.Tensor:
        """DDPM timestep of ``c_noise = log(sigma) / 4``: linear in log sigma between table entries (float32)."""
        table = self.log_sigmas.to(c_noise.device)
        u = (4 * c_noise.to(torch.float64)).clamp(*self._log_sigma_range)
        idx = torch.searchsorted(table, u.contiguous(), right=True).clamp(1, len(table) - 1)
        lo, hi = table[idx - 1], table[idx]
        t = idx - 1 + ((u - lo) / (hi - lo)).clamp(0, 1)
        return torch.where((t - t.round()).abs() < 1e-4, t.round(), t).to(torch.float32)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        kwargs = {}
        if self.num_classes:
            labels = (cond or {}).get("label") if isinstance(cond, dict) else cond
            if labels is None:
                labels = torch.full((x_in.shape[0],), self.num_classes, dtype=torch.long, device=x_in.device)
            kwargs["class_labels"] = torch.as_tensor(labels, device=x_in.device).long()
        return self.unet(x_in, self.timestep(c_noise.reshape(-1)), **kwargs).sample
