"""What the kind modules share: reading a denoiser run's weights into the pieces of a Pipeline."""
from __future__ import annotations

import os

from .. import checkpoint
from ..codecs import Standardizer
from ..pipeline import Pipeline


def read_denoiser_run(path: str, device, ema: bool = True):
    """``(denoiser, schedule, config, common)`` of a denoiser run: ``common`` holds the Pipeline keywords every
    kind passes (``config``, ``source``, ``tuned_grids``)."""
    denoiser, schedule, config = checkpoint.load(path, ema=ema, device=device)
    common = dict(config=config, source=path, tuned_grids=checkpoint.read_tuned_grids(path))
    return denoiser, schedule, config, common


def config_file(path: str) -> str:
    """The run's ``config.json``, for messages."""
    return os.path.join(path, checkpoint.CONFIG_NAME)


def data_shape(config: dict) -> tuple:
    """One example's shape as the run's ``data`` entry records it."""
    return tuple(config.get("data", {}).get("shape", ()))


def standardised_loader(kind: str):
    """The loader of a kind whose model space is its data standardised (vectors, arrays, audio): the Pipeline's
    codec undoes the run's normalisation statistics, so samples come back in the data's units."""
    def load(path, config, device, ema=True, autoencoder=None):
        denoiser, schedule, config, common = read_denoiser_run(path, device, ema)
        return Pipeline(denoiser, schedule, kind, data_shape(config),
                        codec=Standardizer(config.get("data", {}).get("normalization"), config_file(path)), **common)
    load.__doc__ = f"A {kind} run as a Pipeline that returns samples in the data's units (statistics undone)."
    return load
