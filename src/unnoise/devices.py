"""Choosing the device a model trains or samples on, and the CPU threads a small network gets."""
from __future__ import annotations

import os

import torch

SMALL_MODEL_PARAMS = 5_000_000  # below this a network's CPU ops are too small to gain from threads


def threads_for_small_model(modules, device="cpu") -> bool:
    """Run torch on one CPU thread when every network in ``modules`` is small (under
    :data:`SMALL_MODEL_PARAMS` parameters in all) and works on the CPU, unless ``OMP_NUM_THREADS`` says otherwise.

    The operations of a small network are too short to gain from intra-op threads, and on an oversubscribed CPU
    (another process on a core) OpenMP threads that wait for each other make every step 10-70 times slower
    (docs/benchmarks.md: 48 it/s -> 0.4 it/s for the demo).  Returns whether the thread count was lowered."""
    if os.environ.get("OMP_NUM_THREADS") or torch.device(device).type != "cpu" or torch.get_num_threads() == 1:
        return False
    modules = [m for m in (modules if isinstance(modules, (list, tuple)) else [modules]) if m is not None]
    params = sum(p.numel() for m in modules if isinstance(m, torch.nn.Module) for p in m.parameters())
    if not modules or params >= SMALL_MODEL_PARAMS:
        return False
    torch.set_num_threads(1)
    return True


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
