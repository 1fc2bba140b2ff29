"""Arrays ``(N, channels, ...)`` (sequences, fields, volumes) with a convolutional backbone (``--net unet|diffwave``)."""
from __future__ import annotations

from ..codecs import Standardizer
from ..commands.train_arrays import run_arrays_file
from ..commands.train_images import NET_DEFAULTS
from ..pipeline import Pipeline
from . import Kind, SampleOutput, TrainEntry, register
from .common import config_file, data_shape, read_denoiser_run
from .outputs import ARRAYS, write_arrays


def load(path, config, device, ema=True, autoencoder=None):
    """An arrays run as a Pipeline that returns samples in the data's units (per-channel statistics undone)."""
    denoiser, schedule, config, common = read_denoiser_run(path, device, ema)
    return Pipeline(denoiser, schedule, "arrays", data_shape(config),
                    codec=Standardizer(config.get("data", {}).get("normalization"), config_file(path)), **common)


register(Kind(
    name="arrays", what="arrays (N, channels, ...)", load=load, abilities=frozenset({"compare"}),
    train=TrainEntry(lambda args: getattr(args, "net", None) not in (None, "mlp"), run_arrays_file,
                     {"net": None, "no_normalize": False, **NET_DEFAULTS},
                     "arrays (N, channels, ...) with --net unet|diffwave"),
    sample=SampleOutput(1000, "samples.npy", (".npy", ".csv"), write_arrays, ARRAYS),
    recognise=lambda config: len(config.get("data", {}).get("shape", [0, 0])) != 1))
