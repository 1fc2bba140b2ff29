"""``unnoise train`` on vectors ``(N, d)``: a built-in 2-D set or a file, with the MLP."""
from __future__ import annotations

import os

import torch

from .. import data as data_mod
from ..train import train_model
from .train_common import command_record, finish, train_config


def run_vectors(args) -> int:
    """Vectors ``(N, d)``: a built-in 2-D set or a file, standardised per feature, with the MLP."""
    torch.manual_seed(args.seed)  # the network's initial weights (and dropout) follow the seed
    g = torch.Generator().manual_seed(args.seed)
    x = data_mod.load_vectors(args.data, n=args.num_points, generator=g)
    if x.ndim != 2:  # no convolutional net takes such examples; the MLP models them as flat vectors, and says so
        shape = tuple(x.shape[1:])
        x = x.reshape(x.shape[0], -1)
        print(f"note: examples of shape {shape} are trained as vectors of {x.shape[1]} features with the MLP "
              "(--net unet takes (N, C, L), (N, C, H, W) or (N, C, D, H, W)); samples come out flat, "
              f"(N, {x.shape[1]})")
    cfg = train_config(args)
    trainer = train_model(x, args.out, net_config={"width": args.width, "depth": args.depth},
                          parameterization=args.parameterization, schedule=args.schedule, config=cfg,
                          normalize=not args.no_normalize, info={"kind": "vectors", "command": command_record(args)},
                          progress=int(os.environ.get("RANK", "0")) == 0)
    return finish(trainer, args.out)
