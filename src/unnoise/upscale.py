"""Super-resolution diffusion: a U-Net conditioned on a low-resolution image given as extra channels.

The model denoises the high-resolution image ``(C, H, W)`` with ``cond = {"concat": low}``, ``low``
``(C, H/f, W/f)`` (the U-Net's ``cond_channels`` input resizes it bilinearly to ``H x W``).  During
training the low-resolution inputs are area-downsampled from the clean training images; the
:class:`UpscaleNet` looks them up by example index (the Trainer's labels), so the ordinary training
loop needs no change.  That table is not saved with the weights: a loaded model is always called
with an explicit ``{"concat": low}``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import nets


def downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Area (box-filter) downsampling of ``(B, C, H, W)`` by an integer ``factor``."""
    if factor < 1 or images.shape[-1] % factor or images.shape[-2] % factor:
        raise ValueError(f"image size {tuple(images.shape[-2:])} is not divisible by the factor {factor}")
    return F.avg_pool2d(images, factor)


class UpscaleNet(nn.Module):
    """U-Net with ``cond_channels = C`` whose labels index a (non-persistent) table of low-res images.

    Args:
        inner: U-Net config (``shape`` = the high-resolution ``(C, H, W)``).
        factor: the upscaling factor (stored for the command line).
    """

    num_classes = 0  # no label dropout: the low-res image is always given

    def __init__(self, inner: dict, factor: int = 2):
        super().__init__()
        inner = dict(inner)
        inner["cond_channels"] = int(inner["shape"][0])
        inner.pop("num_classes", None)
        self.config = dict(inner=inner, factor=int(factor))
        self.factor = int(factor)
        self.net = nets.build("unet", **inner)
        self.register_buffer("lowres_table", torch.zeros(0), persistent=False)

    def set_table(self, low: torch.Tensor) -> "UpscaleNet":
        self.lowres_table = low.to(next(self.parameters()).device)
        return self

    def forward(self, x, c_noise, cond=None):
        if isinstance(cond, dict) and "concat" in cond:
            low = cond.get("concat")
        elif cond is not None and self.lowres_table.numel():
            idx = cond.get("label") if isinstance(cond, dict) else cond
            low = self.lowres_table[torch.as_tensor(idx, device=self.lowres_table.device).long()].to(x.device)
        else:
            low = None
        if low is None:
            raise ValueError("the upscaler needs the low-resolution image: cond={'concat': (B, C, h, w)}")
        return self.net(x, c_noise, {"concat": low})


nets.register("upscale_unet", UpscaleNet)


def train_upscaler(images: torch.Tensor, factor: int, run_dir: str | None, net_config: dict | None = None,
                   progress: bool = True, **train_kwargs):
    """Train a super-resolution model on ``images`` ``(N, C, H, W)`` in [-1, 1]; returns the Trainer.

    ``train_kwargs`` as for :func:`unnoise.pipeline.train_model` (``config``, ``schedule``, ...).
    """
    from .latent import _train_prepared
    if images.ndim != 4:
        raise ValueError(f"upscaler training needs images (N, C, H, W), got {tuple(images.shape)}")
    low = downsample(images, factor)
    inner = {**dict(base_channels=32, channel_mult=[1, 2], attention_levels=[], num_res_blocks=1), **(net_config or {})}
    inner["shape"] = list(images.shape[1:])
    config = train_kwargs.get("config")
    if config is not None:
        config.cond_dropout = 0.0
    info = {"upscale": {"factor": factor, "low_shape": list(low.shape[1:])}}
    return _train_prepared(images, run_dir, "upscale_unet", {"inner": inner, "factor": factor},
                           torch.arange(len(images)), info, progress, lambda m: m.set_table(low), **train_kwargs)


@torch.no_grad()
def upscale(denoiser, schedule, low: torch.Tensor, factor: int, sampler: str = "dpmpp_2m", steps: int = 30,
            generator: torch.Generator | None = None, **options) -> torch.Tensor:
    """Sample high-resolution images ``(B, C, h f, w f)`` given low-resolution ``low`` ``(B, C, h, w)``."""
    from .samplers import sample
    b, c, h, w = low.shape
    sigmas = schedule.sampling_sigmas(steps)
    device = next(denoiser.parameters()).device
    x = torch.randn(b, c, h * factor, w * factor, generator=generator) * sigmas[0]
    out = sample(denoiser, x.to(device), sigmas, sampler=sampler, generator=generator,
                 cond={"concat": low.to(device)}, **options)
    return out.clamp(-1, 1).cpu()
