"""Autoencoders (``unnoise train-autoencoder``): the codec of latent runs, not sampled."""
from __future__ import annotations

from ..latent import LatentCodec
from ..pipeline import Pipeline
from . import Kind, register


def load(path, config, device, ema=True, autoencoder=None):
    """An autoencoder run as a Pipeline that does not sample (``pipe.codec`` encodes and decodes)."""
    return Pipeline(None, None, "autoencoder", (), codec=LatentCodec.from_dir(path, device), source=path)


register(Kind(name="autoencoder", what="an autoencoder", load=load, denoiser=False,
              use="train a latent model on it with 'unnoise train --latent DIR'"))
