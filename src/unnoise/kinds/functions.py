"""Functions: values on a regular 1-D or 2-D grid, learned as functions and sampled at any resolution.

``unnoise train --data curves.npy --function-space [--kernel rbf:0.1]`` (``(N, L)``: N functions at L points of
``[0, 1)``; ``(N, H, W)``: fields on ``[0, 1)^2``; ``--data digits``: the bundled 8x8 digits as fields) trains a
Fourier neural operator (:class:`unnoise.nets.FNO`) under Gaussian-process noise
(:class:`unnoise.processes.GaussianProcessNoise`, the kernel stored with the schedule).  Neither is tied to the
training grid, so ``unnoise sample --checkpoint RUN --resolution 256`` samples the same model on a grid of 256
points (``HxW`` for fields): the start and every injected noise are the Gaussian process on that grid, and the
network is the same operator evaluated there.  Values are standardised by one mean and one standard deviation
(per-point statistics would not exist on another grid); samples come back ``(n, L)`` or ``(n, H, W)`` in the
data's units.

Points are ``i / n`` along each axis (:func:`unnoise.gp.grid`), so a grid refined by an integer factor contains
the training grid.  Functions of different lengths in one file (a ragged array) are refused: resample them onto
one grid first, or give their coordinates.

Coordinates.  ``--data F.npz`` holding two arrays, ``values`` ``(N, P)`` and ``points`` ``(N, P)`` (or
``(N, P, 1)``), gives each 1-D function at its own ``P`` points of ``[0, 1)``, irregular and different per
example; every example has the same number ``P`` of points (batches are plain ``(B, 1, P)`` tensors, no padding
or mask), so functions observed at different counts must be subsampled to a common ``P`` (or split into runs).
The points travel as the condition ``{"points": (B, P, 1)}``: the training noise is the Gaussian process at each
example's own points (:meth:`unnoise.gp.Kernel.colour_at`) and the FNO evaluates its spectral layers by the
non-uniform Fourier transform at them.  Such a run samples on a regular grid of ``P`` points by default, at any
``--resolution``, or at given coordinates (``unnoise sample --points pts.npy``, :meth:`Pipeline.at_points
<unnoise.pipeline.Pipeline.at_points>`; also for runs trained on grids, 1-D or 2-D).  Training on scattered 2-D
points is not supported (2-D fields train on grids).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from .. import data as data_mod
from ..codecs import Standardizer
from ..commands.train_common import command_record, finish, train_config
from ..data.images import load_digits
from ..data.memory import TensorDataset
from ..gp import check_points, parse_kernel
from ..nets.fno import check_resolution
from ..pipeline import Pipeline
from ..plotting import plot_functions
from ..train import train_model
from . import Kind, SampleOutput, TrainEntry, register
from .common import config_file, data_shape, read_denoiser_run
from .outputs import ARRAYS, write_arrays

DEFAULT_KERNEL, MAX_MODES = "matern52:0.1", 12


def add_args(p) -> None:
    """The options of ``unnoise train`` for functions."""
    g = p.add_argument_group("functions (--function-space: values on a regular 1-D or 2-D grid)")
    g.add_argument("--function-space", action="store_true", default=None,
                   help="the data are functions on a grid, (N, L) or (N, H, W), or an .npz of values (N, P) at "
                        "points (N, P) in [0, 1) (1-D, P points per example): train a Fourier neural operator "
                        "under Gaussian-process noise, so the model samples at any resolution")
    g.add_argument("--kernel", default=None, metavar="NAME:PARAMETER",
                   help=f"covariance of the noise: rbf:LENGTH, matern52:LENGTH or spectral:DECAY on the unit "
                        f"interval/square (default: {DEFAULT_KERNEL})")
    g.add_argument("--modes", type=int, default=None,
                   help=f"Fourier modes per axis of the neural operator (default: {MAX_MODES}, at most half the "
                        "training grid)")


class FunctionCodec(Standardizer):
    """Model space ``(n, 1, *grid)`` standardised by one mean and std <-> data ``(n, *grid)`` in data units."""

    def decode(self, x):
        return super().decode(x)[:, 0]

    def encode(self, x):
        return super().encode(x[:, None])


def read_function_points(spec: str):
    """``(values (N, P), points (N, P, 1))`` from a ``.npz`` with arrays ``values`` and ``points`` (functions given
    with their coordinates), or None when ``spec`` is not such a file; one-line ValueErrors for bad content."""
    if not (spec.lower().endswith(".npz") and os.path.exists(spec)):
        return None
    try:
        with np.load(spec, allow_pickle=False) as z:
            if "points" not in z.files:
                return None
            if sorted(z.files) != ["points", "values"]:
                raise ValueError(f"{spec}: functions with coordinates are an .npz of exactly two arrays, 'values' "
                                 f"(N, P) and 'points' (N, P), found {sorted(z.files)}")
            values, points = z["values"], z["points"]
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise ValueError(f"{spec}: the functions have different numbers of points; every example needs the same "
                             "count P (subsample them to a common P)") from None
        raise
    values = torch.as_tensor(values).double()
    if values.ndim != 2 or points.shape[:2] != values.shape:
        raise ValueError(f"{spec}: 'values' must be (N, P) and 'points' (N, P) with the same N and P, got "
                         f"{tuple(values.shape)} and {tuple(points.shape)}")
    if points.ndim == 3 and points.shape[2] != 1:
        raise ValueError(f"{spec}: training on scattered {points.shape[2]}-D points is not supported; give 1-D "
                         "coordinates (N, P), or fields on a regular grid (N, H, W)")
    data_mod.check_finite(values, spec)
    pts = check_points(torch.as_tensor(points).reshape(*values.shape, 1), 1, f"{spec} 'points'")
    return values.float(), pts


def read_functions(spec: str) -> torch.Tensor:
    """``(N, L)`` or ``(N, H, W)`` functions from a file (or ``digits``: ``(1797, 8, 8)`` in ``[-1, 1]``)."""
    if spec == "digits":
        return load_digits()[0][:, 0]
    if spec.lower().endswith(".npy") and os.path.exists(spec) and _is_object_npy(spec):
        raise ValueError(f"{spec}: the functions have different numbers of points (a ragged array); put them on "
                             "one regular grid, (N, L) or (N, H, W), e.g. by interpolation")
    x = data_mod.load_array(spec).float()
    if x.ndim not in (2, 3):
        raise ValueError(f"{spec}: functions are (N, L) values on a 1-D grid or (N, H, W) on a 2-D grid, got shape "
                         f"{tuple(x.shape)}")
    data_mod.check_finite(x, spec)
    return x


def _is_object_npy(path: str) -> bool:
    """Whether a .npy file holds Python objects (a ragged array), read from its header only."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            return reader(f)[2].hasobject
    except (OSError, ValueError):
        return False  # not a readable .npy: load_array says what is wrong


def run_functions(args) -> int:
    """``unnoise train --function-space``: an FNO under Gaussian-process noise; the exit status."""
    kernel = parse_kernel(args.kernel)
    torch.manual_seed(args.seed)
    given = read_function_points(args.data)
    x, points = given if given is not None else (read_functions(args.data), None)
    grid = tuple(x.shape[1:])  # with coordinates: the regular grid of P points the run samples on by default
    modes = args.modes if args.modes is not None else max(1, min(MAX_MODES, min(grid) // 2))
    if modes < 1:
        raise ValueError(f"--modes must be a positive integer, got {modes}")
    check_resolution(grid, modes)
    mean, std = float(x.mean()), max(float(x.std()), 1e-8)
    stats = {"mean": [mean], "std": [std]}
    dataset = TensorDataset(((x - mean) / std)[:, None], None if points is None else {"points": points})
    trainer = train_model(dataset, args.out, net="fno",
                          net_config={"width": args.width, "depth": args.depth, "modes": modes},
                          parameterization=args.parameterization, schedule=args.schedule,
                          schedule_config={"noise_kernel": kernel.spec}, config=train_config(args),
                          normalize=False, stats=stats,
                          info={"kind": "functions", "command": command_record(args)},
                          progress=int(os.environ.get("RANK", "0")) == 0)
    return finish(trainer, args.out)


def plot(pipe, x, args, path):
    """The first samples as curves (1-D) or fields (2-D)."""
    plot_functions({f"{args.sampler or 'default sampler'}, {args.steps} steps": x}, path, points=pipe.points)


def load(path, config, device, ema=True, autoencoder=None):
    """A functions run as a Pipeline whose samples are ``(n, *grid)`` in data units, at any resolution
    (:meth:`~unnoise.pipeline.Pipeline.at_resolution`)."""
    denoiser, schedule, config, common = read_denoiser_run(path, device, ema)
    model_shape = data_shape(config)
    stats = config.get("data", {}).get("normalization")
    return Pipeline(denoiser, schedule, "functions", model_shape[1:], model_shape=model_shape,
                    codec=FunctionCodec(stats, config_file(path)), **common)


register(Kind(
    name="functions", what="functions on a grid (--function-space)", load=load, process="gp",
    abilities=frozenset({"resolution"}),
    train=TrainEntry(lambda args: bool(getattr(args, "function_space", None)), run_functions,
                     {"function_space": True, "kernel": DEFAULT_KERNEL, "modes": None, "width": 32, "depth": 4},
                     "functions (--function-space)", add_args),
    sample=SampleOutput(100, "samples.npy", (".npy", ".csv"), write_arrays, ARRAYS, plot)))
