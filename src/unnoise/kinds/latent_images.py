"""Latent images: diffusion on an autoencoder's latents (``--latent AE_DIR``), optionally class-conditional."""
from __future__ import annotations

from ..commands.train_latent import add_latent_args, run_latent
from . import Kind, SampleOutput, TrainEntry, register
from .latent import LATENT_OPTIONS, load_latent
from .outputs import IMAGES, write_images

register(Kind(
    name="latent_images", what="latent images", load=load_latent,
    abilities=frozenset({"inpaint", "restore", "img2img", "class_guidance"}),
    train=TrainEntry(lambda args: bool(getattr(args, "latent", None)), run_latent, LATENT_OPTIONS,
                     "latent diffusion (--latent)", add_latent_args),
    sample=SampleOutput(64, "samples.png", (".png", ".npy"), write_images, IMAGES),
    recognise=lambda config: "latent" in config and "text" not in config))
