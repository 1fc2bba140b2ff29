"""Vectors ``(N, d)``: a built-in 2-D set or a file, standardised per feature, with the MLP."""
from __future__ import annotations

from ..codecs import Standardizer
from ..commands.train_vectors import run_vectors
from ..pipeline import Pipeline
from . import Kind, SampleOutput, TrainEntry, register
from .common import config_file, data_shape, read_denoiser_run
from .outputs import ARRAYS, plot_vectors, write_arrays


def load(path, config, device, ema=True, autoencoder=None):
    """A vectors run as a Pipeline that returns samples in the data's units (per-feature statistics undone)."""
    denoiser, schedule, config, common = read_denoiser_run(path, device, ema)
    return Pipeline(denoiser, schedule, "vectors", data_shape(config),
                    codec=Standardizer(config.get("data", {}).get("normalization"), config_file(path)), **common)


register(Kind(
    name="vectors", what="vectors (a built-in 2-D set or a .npy/.csv of shape (N, d))", load=load,
    abilities=frozenset({"compare"}),
    train=TrainEntry(lambda args: True, run_vectors,
                     {"num_points": 20000, "width": 256, "depth": 4, "no_normalize": False, "net": "mlp"},
                     "vectors (a built-in 2-D set or a .npy/.csv of shape (N, d))"),
    sample=SampleOutput(1000, "samples.npy", (".npy", ".csv"), write_arrays, ARRAYS, plot_vectors),
    recognise=lambda config: len(config.get("data", {}).get("shape", [0, 0])) == 1))
