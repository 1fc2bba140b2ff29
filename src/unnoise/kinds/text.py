"""Text-to-image: latent diffusion conditioned on prompts through the bundled sentence encoder
(``--latent AE_DIR --text``)."""
from __future__ import annotations

from functools import partial

from ..commands.train_latent import add_latent_args, run_latent
from . import Kind, SampleOutput, TrainEntry, register
from .latent import LATENT_OPTIONS, load_latent
from .outputs import IMAGES, write_images

register(Kind(
    name="text", what="text-conditioned latent images", load=partial(load_latent, kind="text"),
    abilities=frozenset({"inpaint", "restore", "img2img"}),
    train=TrainEntry(lambda args: bool(getattr(args, "text", None)), run_latent, LATENT_OPTIONS,
                     "text-to-image latent diffusion (--latent AE_DIR --text)", add_latent_args),
    sample=SampleOutput(64, "samples.png", (".png", ".npy"), write_images, IMAGES),
    recognise=lambda config: "latent" in config and "text" in config))
