"""Arrays ``(N, channels, ...)`` (sequences, fields, volumes) with a convolutional backbone (``--net unet|diffwave``)."""
from __future__ import annotations

from ..commands.train_arrays import run_arrays_file
from ..commands.train_images import NET_DEFAULTS
from . import Kind, SampleOutput, TrainEntry, register
from .common import standardised_loader
from .outputs import ARRAYS, write_arrays

load = standardised_loader("arrays")


register(Kind(
    name="arrays", what="arrays (N, channels, ...)", load=load, abilities=frozenset({"compare"}),
    train=TrainEntry(lambda args: getattr(args, "net", None) not in (None, "mlp"), run_arrays_file,
                     {"net": None, "no_normalize": False, **NET_DEFAULTS},
                     "arrays (N, channels, ...) with --net unet|diffwave"),
    sample=SampleOutput(1000, "samples.npy", (".npy", ".csv"), write_arrays, ARRAYS),
    recognise=lambda config: len(config.get("data", {}).get("shape", [0, 0])) != 1))
