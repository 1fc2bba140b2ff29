"""Backbones.  Every network is called as ``net(x_in, c_noise, cond)`` and exposes ``.config``
(the keyword arguments that rebuild it), so checkpoints can store ``{"name": ..., "config": ...}``."""
from __future__ import annotations

from torch import nn

from .embeddings import NoiseLevelEmbedding, SinusoidalEmbedding
from .mlp import MLP

NETS: dict[str, type] = {"mlp": MLP}


def register(name: str, cls: type) -> None:
    """Make a backbone class buildable by name (and loadable from checkpoints)."""
    NETS[name] = cls


def build(name: str, **config) -> nn.Module:
    """Build a backbone by name from its config."""
    try:
        cls = NETS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(sorted(NETS))}") from None
    return cls(**config)


def name_of(net: nn.Module) -> str:
    for name, cls in NETS.items():
        if type(net) is cls:
            return name
    raise ValueError(f"{type(net).__name__} is not a registered backbone; call unnoise.nets.register first")


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


__all__ = ["MLP", "NETS", "NoiseLevelEmbedding", "SinusoidalEmbedding", "build", "count_parameters", "name_of", "register"]
