"""Super-resolution: high-resolution images conditioned on low-resolution ones (``unnoise upscale --train``)."""
from __future__ import annotations

from ..codecs import ImageCodec
from ..pipeline import Pipeline
from . import Kind, register
from .common import data_shape, read_denoiser_run


def load(path, config, device, ema=True, autoencoder=None):
    """A super-resolution run as a Pipeline whose samples are conditioned on low-resolution images."""
    denoiser, schedule, config, common = read_denoiser_run(path, device, ema)
    return Pipeline(denoiser, schedule, "upscale", data_shape(config), codec=ImageCodec(), **common)


register(Kind(name="upscale", what="super-resolution", load=load, abilities=frozenset({"upscale"}),
              recognise=lambda config: "upscale" in config,
              use="upscale images with 'unnoise upscale --checkpoint RUN --input LOW.png'"))
