"""Backbones.  Every network is called as ``net(x_in, c_noise, cond)`` and exposes ``.config``
(the keyword arguments that rebuild it), so checkpoints can store ``{"name": ..., "config": ...}``."""
from __future__ import annotations

from torch import nn

from .embeddings import NoiseLevelEmbedding, SinusoidalEmbedding
from .dit import DiT
from .fno import FNO
from .diffwave import DiffWave
from .graph_transformer import GraphTransformer
from .mlp import MLP
from .residue_transformer import ResidueTransformer
from .transformer import SequenceTransformer
from .unet import UNet
from .video_unet import VideoUNet

NETS: dict[str, type] = {"mlp": MLP, "unet": UNet, "dit": DiT}
NETS["diffwave"] = DiffWave
NETS["video_unet"] = VideoUNet
NETS["residue_transformer"] = ResidueTransformer
NETS["fno"] = FNO
NETS["transformer"] = SequenceTransformer
NETS["graph_transformer"] = GraphTransformer


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
    """The registry name of a backbone instance (for checkpoints); ValueError if its class is not registered."""
    for name, cls in NETS.items():
        if type(net) is cls:
            return name
    raise ValueError(f"{type(net).__name__} is not a registered backbone; call unnoise.nets.register first")


def count_parameters(net: nn.Module) -> int:
    """Total number of parameters (trainable or not) of a module."""
    return sum(p.numel() for p in net.parameters())


def summary(net: nn.Module, max_depth: int = 1) -> str:
    """A short text summary of any network: class, key config, parameters per top-level child.

    ``max_depth`` = how many levels of submodules to list (1: the direct children).
    """
    total = count_parameters(net)
    config = getattr(net, "config", None)
    head = type(net).__name__
    if config:
        shown = {k: v for k, v in config.items() if v not in (None, 0, [], ())}
        head += "(" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"
    lines = [head, f"  parameters: {total:,}"]

    def walk(module, prefix, depth):
        for name, child in module.named_children():
            n = count_parameters(child)
            if n == 0:
                continue
            kind = type(child).__name__
            if isinstance(child, (nn.ModuleList, nn.Sequential)):
                kind += f"[{len(child)}]"
            lines.append(f"  {'  ' * (depth - 1)}{prefix}{name}: {kind}, {n:,} ({100 * n / max(total, 1):.1f}%)")
            if depth < max_depth:
                walk(child, prefix + name + ".", depth + 1)

    walk(net, "", 1)
    return "\n".join(lines)


__all__ = ["DiT", "DiffWave", "FNO", "GraphTransformer", "MLP", "NETS", "NoiseLevelEmbedding", "ResidueTransformer",
           "SequenceTransformer", "SinusoidalEmbedding", "UNet", "VideoUNet", "build", "count_parameters",
           "name_of", "register", "summary"]
