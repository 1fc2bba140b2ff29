"""Wrapping a network into the one object everything else uses: a denoiser ``D(x, sigma, cond)``.

``x`` is the scale-free noisy input ``x_0 + sigma * eps`` and ``D`` estimates ``E[x_0 | x]``.
Whatever a network was trained to predict, it enters through one preconditioning

    D(x, sigma) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x, c_noise(sigma), cond)

and the training target for ``F`` is ``(x_0 - c_skip x) / c_out``.  Per parameterization:

====== ============================ ============================= ==============================
param  c_skip                       c_out                         F predicts
====== ============================ ============================= ==============================
eps    1                            -sigma                        the noise eps
x0     0                            1                             the clean data x_0
v      1 / (1 + sigma^2)            -sigma / sqrt(1 + sigma^2)    v = (eps - sigma x_0)/sqrt(1+sigma^2)
flow   1 / (1 + sigma)              -sigma / (1 + sigma)          the velocity eps - x_0
edm    sd^2 / (sigma^2 + sd^2)      sigma sd / sqrt(sigma^2+sd^2) EDM's preconditioned target
====== ============================ ============================= ==============================

(``v`` is exactly the VP v-prediction of Salimans & Ho; ``flow`` is the rectified-flow velocity.)
The network input is the process's own ``x_t = s(sigma) x`` for eps/x0 on VP and flow processes,
and the unit-variance ``x / sqrt(sigma^2 + sigma_data^2)`` otherwise; ``c_noise = log(sigma) / 4``.
"""
from __future__ import annotations

import torch
from torch import nn

from .scales import PROCESSES, signal_scale

PARAMETERIZATIONS = ("eps", "x0", "v", "flow", "edm")


def expand_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    """Turn a float or ``(batch,)`` sigma into a tensor broadcastable against ``x``."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a float or a (batch,) tensor; got shape {tuple(sigma.shape)} "
                         f"for a batch of {x.shape[0]}")
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


def eps_from_denoised(x, denoised, sigma):
    """``eps = (x - D) / sigma``."""
    return (x - denoised) / expand_sigma(sigma, x)


def score_from_denoised(x, denoised, sigma):
    """Score of the noised density, ``grad log p_sigma(x) = (D - x) / sigma^2`` (Tweedie)."""
    return (denoised - x) / expand_sigma(sigma, x) ** 2


def preconditioning(parameterization: str, process: str, sigma: torch.Tensor, sigma_data: float = 1.0):
    """Return ``(c_skip, c_out, c_in, c_noise)`` for a sigma tensor (any shape, elementwise)."""
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {parameterization!r}; choose one of {', '.join(PARAMETERIZATIONS)}")
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; choose one of {', '.join(PROCESSES)}")
    one = torch.ones_like(sigma)
    sd2 = sigma_data**2
    if process == "wrapped":  # angles: the network sees them unscaled and embeds them periodically
        if parameterization != "eps":
            raise ValueError(f"the wrapped (periodic) process uses the eps parameterization, not {parameterization!r}")
        c_skip, c_out, c_in = one, -sigma, one
    elif parameterization in ("eps", "x0"):
        c_in = signal_scale(process, sigma) if process != "ve" else torch.rsqrt(sigma**2 + sd2)
        c_skip, c_out = (one, -sigma) if parameterization == "eps" else (0 * one, one)
    elif parameterization == "v":
        c_skip, c_out, c_in = 1 / (1 + sigma**2), -sigma * torch.rsqrt(1 + sigma**2), torch.rsqrt(1 + sigma**2)
    elif parameterization == "flow":
        c_skip, c_out, c_in = 1 / (1 + sigma), -sigma / (1 + sigma), 1 / (1 + sigma)
    else:  # edm
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * sigma_data * torch.rsqrt(sigma**2 + sd2)
        c_in = torch.rsqrt(sigma**2 + sd2)
    # log(0) would poison the embedding; sigma = 0 is only ever reached where c_out = 0 anyway
    c_noise = torch.log(sigma.clamp_min(1e-20)) / 4
    return c_skip, c_out, c_in, c_noise


class Denoiser(nn.Module):
    """A network ``F(x_in, c_noise, cond)`` wrapped into ``D(x, sigma, cond)``.

    Args:
        net: module called as ``net(x_in, c_noise, cond)`` with ``x_in`` shaped like ``x`` and
            ``c_noise`` of shape ``(batch,)``.
        parameterization: what ``net`` predicts: ``eps``, ``x0``, ``v``, ``flow`` or ``edm``.
        process: the forward process the model is trained under (``vp``, ``ve``, ``flow``); it fixes
            the network's input scaling.
        sigma_data: data standard deviation used by EDM preconditioning and VE input scaling.
        null_cond: the null value of each droppable condition for ONE example, e.g. the empty prompt's
            ``{"context": (L, C), "context_mask": (L,)}``; a class-conditional net's null label
            (index ``num_classes``) is added automatically.  Keys without a null (``concat``) are never
            dropped.  These values are what classifier-free guidance and condition dropout use
            (:meth:`null_cond`); they are saved with the weights.
    """

    def __init__(self, net: nn.Module, parameterization: str = "eps", process: str = "vp", sigma_data: float = 1.0,
                 null_cond: dict | None = None):
        super().__init__()
        preconditioning(parameterization, process, torch.ones(1), sigma_data)  # validates the names
        self.net = net
        self.parameterization = parameterization
        self.process = process
        self.sigma_data = float(sigma_data)
        self._null_keys: list[str] = []
        for key, value in (null_cond or {}).items():
            self.set_null(key, value)

    def set_null(self, key: str, value) -> None:
        """Set the null value (one example, unbatched) of condition ``key``."""
        if key == "label":
            raise ValueError("the null label is the network's num_classes; it cannot be set")
        value = torch.as_tensor(value)
        name = f"null_{key}"
        if key in self._null_keys:
            setattr(self, name, value.to(getattr(self, name).device))
        else:
            self.register_buffer(name, value)
            self._null_keys.append(key)

    @property
    def nulls(self) -> dict[str, torch.Tensor]:
        """Null value of each droppable condition (one example each)."""
        out = {key: getattr(self, f"null_{key}") for key in self._null_keys}
        num_classes = getattr(self.net, "num_classes", 0)
        if num_classes:
            out["label"] = torch.tensor(int(num_classes))
        return out

    def null_cond(self, cond: dict | None, drop: torch.Tensor | None = None) -> dict:
        """``cond`` with every droppable condition replaced by its null value: in all rows, or only
        where the ``(B,)`` bool ``drop`` is True (condition dropout during training)."""
        cond = as_cond(cond)
        out = dict(cond)
        for key, null in self.nulls.items():
            if key not in cond:
                continue
            value = cond[key]
            null = _fit(null.to(device=value.device, dtype=value.dtype), value.shape[1:]).expand_as(value)
            if drop is None:
                out[key] = null
            else:
                rows = drop.to(value.device).reshape(-1, *([1] * (value.ndim - 1)))
                out[key] = torch.where(rows, null, value)
        return out

    def precondition(self, sigma: torch.Tensor):
        """``(c_skip, c_out, c_in, c_noise)`` of this denoiser at ``sigma`` (see :func:`preconditioning`)."""
        return preconditioning(self.parameterization, self.process, sigma, self.sigma_data)

    def forward(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        s = expand_sigma(sigma, x)
        c_skip, c_out, c_in, c_noise = self.precondition(s)
        out = self.net(c_in * x, c_noise.reshape(-1), cond)
        return c_skip * x + c_out * out.to(x.dtype)

    def describe(self) -> dict:
        """The wrapper's settings as a JSON-able dict (stored in checkpoints; the null values' shapes,
        their contents go with the weights)."""
        out = {"parameterization": self.parameterization, "process": self.process, "sigma_data": self.sigma_data}
        if self._null_keys:
            out["null_cond"] = {k: {"shape": list(getattr(self, f"null_{k}").shape),
                                    "dtype": str(getattr(self, f"null_{k}").dtype).removeprefix("torch.")}
                                for k in self._null_keys}
        return out

    @classmethod
    def from_description(cls, net: nn.Module, description: dict) -> "Denoiser":
        """Rebuild from :meth:`describe` (null values as zeros until the weights are loaded)."""
        desc = dict(description)
        nulls = {k: torch.zeros(v["shape"], dtype=getattr(torch, v["dtype"]))
                 for k, v in desc.pop("null_cond", {}).items()}
        return cls(net, null_cond=nulls, **desc)


def _fit(null: torch.Tensor, shape) -> torch.Tensor:
    """Zero-pad or crop a null value to one example's ``shape`` (prompts of another token length)."""
    if tuple(null.shape) == tuple(shape) or null.ndim != len(shape):
        return null
    out = null.new_zeros(shape)
    common = tuple(slice(0, min(a, b)) for a, b in zip(null.shape, shape))
    out[common] = null[common]
    return out


def as_cond(cond) -> dict:
    """Normalise a condition: None -> ``{}``, a tensor of class labels -> ``{"label": labels}``, a dict as is."""
    if cond is None:
        return {}
    if isinstance(cond, dict):
        return cond
    return {"label": torch.as_tensor(cond)}
