"""torch.distributed plumbing for data-parallel training: set-up, rank queries, reductions.

One process per device.  Launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), :func:`setup` joins the process group with NCCL
on CUDA and gloo on CPU.  With one process (plain ``python`` or ``torchrun --nproc_per_node 1``)
nothing is initialised and every helper below degrades to the identity, so the trainer runs the
same code path for 1 and N processes.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def env_world_size() -> int:
    """Number of processes the launcher started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> torch.device:
    """Join the process group when launched with more than one process; returns this rank's device.

    On CUDA each rank takes ``cuda:LOCAL_RANK``; on CPU all ranks use the CPU with gloo.
    Idempotent: a group that is already initialised (e.g. by the caller) is reused.
    """
    if env_world_size() > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    elif dist.is_initialized() and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def cleanup() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """Whether torch.distributed is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """True on the process that writes files and prints (rank 0)."""
    return rank() == 0


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place; returned for chaining)."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_agree(ok: bool, device: torch.device) -> bool:
    """True only if ``ok`` is True on every rank, so all ranks take the same branch."""
    if not active():
        return ok
    t = torch.tensor([0.0 if ok else 1.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return bool(t.item() == 0)


def broadcast_text(text: str, device: torch.device) -> str:
    """Send a short UTF-8 string from rank 0 to every rank (e.g. an error message)."""
    if not active():
        return text
    data = torch.tensor(list(text.encode()), dtype=torch.uint8, device=device)
    n = torch.tensor([data.numel()], dtype=torch.int64, device=device)
    dist.broadcast(n, 0)
    buf = data if rank() == 0 else torch.empty(int(n.item()), dtype=torch.uint8, device=device)
    if int(n.item()):
        dist.broadcast(buf, 0)
    return bytes(buf.cpu().tolist()).decode()


def gather_bytes(t: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    """All-gather a 1-D uint8 tensor (e.g. an RNG state) from every rank; sizes must match."""
    if not active():
        return [t]
    src = t.to(device)
    out = [torch.empty_like(src) for _ in range(world_size())]
    dist.all_gather(out, src)
    return [o.cpu() for o in out]
