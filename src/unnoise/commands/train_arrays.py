"""``unnoise train --data FILE --net diffwave|unet``: sequences ``(N, channels, length)`` and volumes
``(N, channels, D, H, W)`` from .npy/.npz arrays (or a .csv with one single-channel series per row),
with the convolutional backbones.

Data are scaled per channel (one mean and standard deviation per channel over all examples and
positions), not per position, so the statistics mean the same thing at every time step or voxel.
"""
from __future__ import annotations

import os

import torch

from ..data import ArrayDataset, TensorDataset, load_vectors
from ..data.datasets import streaming_stats
from ..codecs import Standardizer
from ..train import train_model
from .train_common import command_record, finish, train_config
from .train_images import net_config_from_args

# which backbones accept which array ranks (example dimensions after the leading N)
ARRAY_NETS = {"diffwave": (2,), "unet": (2, 3, 4)}


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Scale ``(N, C, *spatial)`` data to zero mean, unit variance per channel: ``(scaled, stats)``.

    ``stats`` holds per-feature ``mean``/``std`` lists as :func:`unnoise.data.datasets.unnormalise` expects
    them (one entry when there is one channel, since a single value broadcasts over every feature).
    """
    dims = [0] + list(range(2, x.ndim))
    mean = x.mean(dims, keepdim=True)
    std = x.std(dims, keepdim=True).clamp_min(1e-8)
    scaled = (x - mean) / std
    if x.shape[1] == 1:
        return scaled, {"mean": [float(mean)], "std": [float(std)]}
    full = lambda t: t.expand(1, *x.shape[1:]).reshape(-1).tolist()  # noqa: E731
    return scaled, {"mean": full(mean), "std": full(std)}


def array_net_config(args, shape) -> tuple[str, dict]:
    """``(net name, config)`` for the array shape ``(C, *spatial)`` from the command-line options."""
    name = args.net
    ranks = ARRAY_NETS.get(name)
    if ranks is None:
        raise ValueError(f"--net {name} does not take arrays of shape (N, {', '.join(map(str, shape))}); "
                         f"use one of {', '.join(ARRAY_NETS)} (or mlp for flat vectors)")
    if len(shape) not in ranks:
        kinds = {2: "(N, channels, length)", 3: "(N, channels, H, W)", 4: "(N, channels, D, H, W)"}
        raise ValueError(f"--net {name} needs data shaped {' or '.join(kinds[r] for r in ranks)}, "
                         f"got (N, {', '.join(map(str, shape))})")
    if name == "diffwave":
        return name, dict(residual_channels=args.base_channels)
    return net_config_from_args(args, num_classes=0)


def run_arrays_file(args) -> int:
    """Train a convolutional backbone on the arrays in ``--data``: a ``.npy`` is memory-mapped and
    streamed (statistics from one pass), a ``.csv`` holds one single-channel series per row."""
    if os.path.splitext(args.data)[1].lower() in (".csv", ".txt", ".npz") or not os.path.exists(args.data):
        x = load_vectors(args.data)
        if x.ndim == 2 and os.path.splitext(args.data)[1].lower() in (".csv", ".txt"):
            x = x[:, None, :]  # a CSV holds one single-channel series per row
        return run_arrays(args, TensorDataset(x))
    return run_arrays(args, ArrayDataset(args.data))


def run_arrays(args, dataset, extra_info: dict | None = None, kind: str = "arrays") -> int:
    """Train a convolutional backbone on a dataset of ``(C, *spatial)`` examples (statistics per channel
    from one streaming pass unless ``--no-normalize``).

    ``extra_info``: more entries for the run's config (e.g. ``{"audio": {"sample_rate": 8000}}``); ``kind``: the
    run's kind (``arrays``, or ``audio`` for clips).
    """
    shape = tuple(dataset[0][0].shape)
    if len(shape) < 2:
        raise ValueError(f"--net {args.net} needs data with channels and positions, (N, channels, length) or "
                         f"(N, channels, D, H, W); got examples of shape {shape} (use --net mlp for vectors)")
    name, net_config = array_net_config(args, shape)
    stats = None if args.no_normalize else streaming_stats(dataset, axis="channel")
    if stats and isinstance(dataset, TensorDataset):  # in memory: normalise once (streamed datasets do it per item)
        dataset = TensorDataset(Standardizer(stats).encode(dataset.x), dataset.cond)
    cfg = train_config(args)
    info = {"kind": kind, "command": command_record(args), **(extra_info or {})}
    trainer = train_model(dataset, args.out, net=name, net_config=net_config, parameterization=args.parameterization,
                          schedule=args.schedule, config=cfg, normalize=False, stats=stats, info=info,
                          progress=int(os.environ.get("RANK", "0")) == 0)
    return finish(trainer, args.out)
