"""Images ``(C, H, W)`` in [-1, 1]: the bundled digits, a folder of PNG/JPEG images or a prepared cache."""
from __future__ import annotations

import os

from ..codecs import ImageCodec
from ..commands.train_images import IMAGE_OPTIONS, add_image_args, run_images
from ..data.images import is_image_spec
from ..pipeline import Pipeline
from . import Kind, SampleOutput, TrainEntry, register
from .common import data_shape, read_denoiser_run
from .outputs import IMAGES, write_images


def load(path, config, device, ema=True, autoencoder=None):
    """An image run as a Pipeline of pixels in [-1, 1], with its classes when class-conditional."""
    denoiser, schedule, config, common = read_denoiser_run(path, device, ema)
    info = config.get("image", {})
    return Pipeline(denoiser, schedule, "images", data_shape(config), codec=ImageCodec(),
                    num_classes=info.get("num_classes") or 0, class_names=info.get("class_names"), **common)


def claims(args) -> bool:
    """The digits, an image folder, or a folder written by ``unnoise prepare`` (its ``index.json``)."""
    spec = args.data
    return is_image_spec(spec) or (isinstance(spec, str) and os.path.isfile(os.path.join(spec, "index.json")))


register(Kind(
    name="images", what="images", load=load,
    abilities=frozenset({"inpaint", "restore", "img2img", "export", "compare", "class_guidance"}),
    data_range=2.0,
    train=TrainEntry(claims, run_images, IMAGE_OPTIONS, "images (digits, an image folder or a prepared cache)",
                     add_image_args),
    sample=SampleOutput(100, "samples.png", (".png", ".npy"), write_images, IMAGES),
    recognise=lambda config: "image" in config))
