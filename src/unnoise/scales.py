"""The signal scale of each process family: ``x_t = s(sigma) (x_0 + sigma eps)``.

* ``"vp"`` (DDPM family): ``alpha_bar = 1 / (1 + sigma^2)``, ``s = sqrt(alpha_bar)``;
* ``"ve"`` (NCSN / EDM): ``s = 1``;
* ``"flow"`` (rectified flow): ``x_t = (1 - t) x_0 + t eps`` so ``sigma = t / (1 - t)``, ``s = 1 - t``;
* ``"wrapped"`` (angles on the torus, :class:`unnoise.processes.WrappedGaussian`): ``s = 1``.
"""
from __future__ import annotations

import torch

PROCESSES = ("vp", "ve", "flow", "wrapped")


def signal_scale(process: str, sigma: torch.Tensor) -> torch.Tensor:
    """The scale ``s`` with ``x_t = s * (x_0 + sigma * eps)`` for a process (elementwise)."""
    sigma = torch.as_tensor(sigma)
    if process == "vp":
        return torch.rsqrt(1.0 + sigma**2)
    if process in ("ve", "wrapped"):
        return torch.ones_like(sigma)
    if process == "flow":
        return 1.0 / (1.0 + sigma)
    raise ValueError(f"unknown process {process!r}; choose one of {', '.join(PROCESSES)}")
