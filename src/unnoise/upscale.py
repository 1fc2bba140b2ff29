"""Super-resolution diffusion: a U-Net conditioned on a low-resolution image given as extra channels.

The model is a plain U-Net with ``cond_channels = C``: it denoises the high-resolution image
``(C, H, W)`` with ``cond = {"concat": low}``, ``low`` ``(C, H/f, W/f)`` (the U-Net resizes it
bilinearly to ``H x W``).  Training data are ``(high_res, {"concat": low_res})`` items, the low
resolution area-downsampled from the clean training images (:func:`lowres_dataset`); the low-res
image is the condition that is always given (it has no null value, so it is never dropped).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .data.memory import TensorDataset
from .train import train_model


def downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Area (box-filter) downsampling of ``(B, C, H, W)`` by an integer ``factor``."""
    if factor < 1 or images.shape[-1] % factor or images.shape[-2] % factor:
        raise ValueError(f"image size {tuple(images.shape[-2:])} is not divisible by the factor {factor}")
    return F.avg_pool2d(images, factor)


def lowres_dataset(images: torch.Tensor, factor: int):
    """The super-resolution training set: items ``(images[i], {"concat": downsample(images, factor)[i]})``."""
    if images.ndim != 4:
        raise ValueError(f"upscaler training needs images (N, C, H, W), got {tuple(images.shape)}")
    return TensorDataset(images, {"concat": downsample(images, factor)})


def train_upscaler(images: torch.Tensor, factor: int, run_dir: str | None, net_config: dict | None = None,
                   progress: bool = True, **train_kwargs):
    """Train a super-resolution model (a U-Net with ``cond_channels = C``) on ``images`` ``(N, C, H, W)``
    in [-1, 1]; returns the Trainer.

    ``train_kwargs`` as for :func:`unnoise.train.train_model` (``config``, ``schedule``, ...).
    """
    data = lowres_dataset(images, factor)
    net = {**dict(base_channels=32, channel_mult=[1, 2], attention_levels=[], num_res_blocks=1), **(net_config or {})}
    net.update(shape=list(images.shape[1:]), cond_channels=int(images.shape[1]))
    net.pop("num_classes", None)
    config = train_kwargs.get("config")
    if config is not None:
        config.cond_dropout = 0.0
    info = {"kind": "upscale", "upscale": {"factor": factor, "low_shape": list(data.cond["concat"].shape[1:])}}
    return train_model(data, run_dir, net="unet", net_config=net, normalize=False, info=info, progress=progress,
                       **train_kwargs)
