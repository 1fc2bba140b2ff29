"""Latent diffusion: a model of an autoencoder's latents, decoded to images (shared by ``latent_images`` and
``text``, the prompt-conditioned variant)."""
from __future__ import annotations

import os

from ..commands.train_images import IMAGE_OPTIONS
from ..latent import LatentCodec
from ..pipeline import Pipeline
from ..runs import prompt_encoder
from .common import data_shape, read_denoiser_run

LATENT_OPTIONS = {**IMAGE_OPTIONS, "latent": None, "num_images": 5000, "text": False}


def load_latent(path, config, device, ema=True, autoencoder=None, kind="latent_images"):
    """A latent run as a Pipeline whose codec is its autoencoder (``autoencoder``: a new location of it)."""
    denoiser, schedule, config, common = read_denoiser_run(path, device, ema)
    info = config["latent"]
    ae_dir = autoencoder or info["autoencoder"]
    if not os.path.isdir(ae_dir):
        raise FileNotFoundError(f"the run's autoencoder {ae_dir!r} is missing; pass its new location "
                                "(--autoencoder DIR)")
    codec = LatentCodec.from_dir(ae_dir, device)
    if abs(codec.scale - info["scale"]) > 1e-9 * max(1.0, abs(info["scale"])):
        raise ValueError(f"the autoencoder in {ae_dir!r} has latent scale {codec.scale}, but the run was trained "
                         f"with {info['scale']}: it is a different autoencoder")
    classes = config.get("latent_classes") or {}
    return Pipeline(denoiser, schedule, kind, tuple(info["image_shape"]), model_shape=data_shape(config), codec=codec,
                    prompt_encoder=prompt_encoder(device) if kind == "text" else None,
                    num_classes=classes.get("num_classes") or 0, class_names=classes.get("class_names"), **common)
