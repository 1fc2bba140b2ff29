"""Choosing the device a model trains or samples on."""
from __future__ import annotations

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other name (``cpu``, ``cuda:1``, ``mps``) as given.

    Raises one-line ValueError for a name torch does not know (``tpu``), a device type this torch
    build or machine does not have, or a CUDA index beyond the devices present."""
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"device must be a name such as 'cpu' or 'cuda:0', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} requested but this machine has {count} CUDA device(s) "
                             f"(cuda:0 to cuda:{count - 1}); choose one of them")
        return dev
    backend = getattr(torch, dev.type, None) if dev.type != "mps" else getattr(torch.backends, "mps", None)
    available = getattr(backend, "is_available", None)
    if available is None or dev.type in ("meta", "lazy"):
        raise ValueError(f"device type {dev.type!r} is not supported for training or sampling; use auto, cpu, "
                         "cuda, cuda:N or mps")
    if not available():
        raise ValueError(f"device {device!r} requested but it is not available on this machine; use --device cpu")
    return dev
