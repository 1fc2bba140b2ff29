"""Angles: values on the torus ``[-pi, pi)^d`` (dihedral angles, wind directions, phases, times of day).

``unnoise train --data angles.npy --periodic`` (radians, shape ``(N, d)``) trains under the wrapped Gaussian
process (:class:`unnoise.processes.WrappedGaussian`, schedule ``wrapped``) with an MLP that sees the angles
as ``(cos, sin)`` features; ``unnoise sample`` returns angles in ``[-pi, pi)``.  Treating angles as ordinary
numbers puts probability mass in the gap between ``-pi`` and ``pi`` where a mode straddles the cut
(``benchmarks/periodic_samplers.py`` measures how much).
"""
from __future__ import annotations

import math
import os

import torch

from .. import data as data_mod
from ..commands.train_common import command_record, finish, train_config
from ..pipeline import Pipeline
from ..train import train_model
from . import Kind, SampleOutput, TrainEntry, register
from .common import data_shape, read_denoiser_run
from ..plotting import plot_angles
from .outputs import ARRAYS, write_arrays

SCHEDULE, PARAMETERIZATION = "wrapped", "eps"


def add_args(p) -> None:
    """The options of ``unnoise train`` for angles."""
    g = p.add_argument_group("angles (--periodic: values in radians on the torus [-pi, pi)^d)")
    g.add_argument("--periodic", action="store_true", default=None,
                   help="the data are angles in radians: train under wrapped Gaussian noise on the torus")
    g.add_argument("--wrap", action="store_true", default=None,
                   help="wrap values outside [-pi, pi) into it (without it they are an error)")


def read_angles(spec: str, wrap: bool = False) -> torch.Tensor:
    """``(N, d)`` angles in ``[-pi, pi)`` from a file; values outside are wrapped when ``wrap``, else an error."""
    x = data_mod.load_array(spec).float()
    x = x.reshape(x.shape[0], -1)
    data_mod.check_finite(x, spec)
    if wrap:
        return torch.remainder(x + math.pi, 2 * math.pi) - math.pi
    lo, hi = float(x.min()), float(x.max())
    if lo < -math.pi or hi >= math.pi:
        hint = " (they look like degrees: convert them with numpy.deg2rad)" if max(abs(lo), abs(hi)) > 2 * math.pi + 1e-6 \
            else ""
        raise ValueError(f"{spec}: angles must be radians in [-pi, pi), got values in [{lo:.4g}, {hi:.4g}]{hint}; "
                         "pass --wrap to wrap them")
    return x


def check_wrapped(args, who: str) -> None:
    """One-line errors for a periodic run asked for another schedule or parameterization than the wrapped
    process's (``who``: the start of the message, e.g. ``"--periodic trains"``)."""
    if args.schedule != SCHEDULE:
        raise ValueError(f"{who} under wrapped noise on the torus: use --schedule {SCHEDULE} (or omit it), "
                         f"not {args.schedule}")
    if args.parameterization != PARAMETERIZATION:
        raise ValueError(f"{who} an eps-network (the wrapped score): omit --parameterization {args.parameterization}")


def run_angles(args) -> int:
    """``unnoise train --periodic``: an MLP on (cos, sin) features under wrapped noise; the exit status."""
    check_wrapped(args, "--periodic trains")
    torch.manual_seed(args.seed)
    x = read_angles(args.data, bool(args.wrap))
    trainer = train_model(x, args.out, net_config={"width": args.width, "depth": args.depth, "periodic": True},
                          parameterization=PARAMETERIZATION, schedule=SCHEDULE, config=train_config(args),
                          normalize=False, info={"kind": "angles", "command": command_record(args)},
                          progress=int(os.environ.get("RANK", "0")) == 0)
    return finish(trainer, args.out)


def plot(pipe, x, args, path):
    """The first two angles of the samples on the torus."""
    if x.shape[1] < 2:
        raise ValueError("--plot draws the first two angles; this run has one angle per example")
    plot_angles({f"{args.sampler or 'default sampler'}, {args.steps} steps": x}, path)


def load(path, config, device, ema=True, autoencoder=None):
    """An angles run as a Pipeline whose samples are angles in ``[-pi, pi)``."""
    denoiser, schedule, config, common = read_denoiser_run(path, device, ema)
    return Pipeline(denoiser, schedule, "angles", data_shape(config), **common)


register(Kind(
    name="angles", what="angles (radians on the torus, --periodic)", load=load, process="wrapped",
    train=TrainEntry(lambda args: bool(getattr(args, "periodic", None)), run_angles,
                     {"periodic": True, "wrap": False, "width": 256, "depth": 4,
                      "schedule": SCHEDULE, "parameterization": PARAMETERIZATION},
                     "angles (--periodic)", add_args),
    sample=SampleOutput(1000, "samples.npy", (".npy", ".csv"), write_arrays, ARRAYS, plot)))
