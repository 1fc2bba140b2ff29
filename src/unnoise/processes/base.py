"""The forward-process interface every process implements (see :mod:`unnoise.processes`)."""
from __future__ import annotations

import torch


def _expand(sigma, x: torch.Tensor) -> torch.Tensor:
    sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sig.reshape(-1, *([1] * (x.ndim - 1))) if sig.ndim else sig


class ForwardProcess:
    """The interface every forward process implements (see the module docstring)."""

    name = "process"

    def noise(self, shape, generator: torch.Generator | None = None, device=None,
              dtype: torch.dtype = torch.float32):
        """Standard-normal draws of ``shape`` (a tuple, or a dict of tuples for dict-valued data), drawn
        on ``device`` from ``generator``."""
        if isinstance(shape, dict):
            return {k: self.noise(shape[k], generator, device, dtype) for k in sorted(shape)}
        return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)

    def corrupt(self, x0, sigma, noise):  # pragma: no cover - overridden
        raise NotImplementedError

    def prior(self, noise: torch.Tensor, sigma_max: float) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def prior_log_prob(self, x: torch.Tensor, sigma_max: float, sigma_data: float = 0.0) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - overridden

    def loss(self, denoiser, x0, sigma, noise, cond=None, weighting: str = "uniform",
             min_snr_gamma: float = 5.0) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """A finished sample on the data's space (identity unless the space is not Euclidean)."""
        return x

    def colour(self, z: torch.Tensor) -> torch.Tensor:
        """The process's noise from a standard-normal draw ``z`` shaped like the data (white noise: ``z``)."""
        return z

    def config(self) -> dict:
        return {"name": self.name}

    def __repr__(self):
        return f"{type(self).__name__}()"
