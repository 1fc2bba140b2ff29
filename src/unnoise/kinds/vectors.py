"""Vectors ``(N, d)``: a built-in 2-D set or a file, standardised per feature, with the MLP."""
from __future__ import annotations

from ..commands.train_vectors import run_vectors
from . import Kind, SampleOutput, TrainEntry, register
from .common import standardised_loader
from .outputs import ARRAYS, plot_vectors, write_arrays

load = standardised_loader("vectors")


register(Kind(
    name="vectors", what="vectors (a built-in 2-D set or a .npy/.csv of shape (N, d))", load=load,
    abilities=frozenset({"compare"}),
    train=TrainEntry(lambda args: True, run_vectors,
                     {"num_points": 20000, "width": 256, "depth": 4, "no_normalize": False, "net": "mlp"},
                     "vectors (a built-in 2-D set or a .npy/.csv of shape (N, d))"),
    sample=SampleOutput(1000, "samples.npy", (".npy", ".csv"), write_arrays, ARRAYS, plot_vectors),
    recognise=lambda config: len(config.get("data", {}).get("shape", [0, 0])) == 1))
