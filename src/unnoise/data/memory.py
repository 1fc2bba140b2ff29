"""An in-memory tensor as a dataset of ``(x0, cond)`` items: the simplest training data source."""
from __future__ import annotations

import torch


class TensorDataset(torch.utils.data.Dataset):
    """Examples ``x`` ``(N, ...)`` with optional per-example conditions ``cond`` (a dict of ``(N, ...)``
    tensors, e.g. ``{"label": labels}``); item ``i`` is ``(x[i], {key: cond[key][i]})``.

    :meth:`gather` reads a whole batch with one index operation (what the Trainer uses instead of a
    DataLoader for in-memory data).
    """

    def __init__(self, x: torch.Tensor, cond: dict | None = None):
        x = torch.as_tensor(x)
        if x.ndim < 2 or x.shape[0] < 1:
            raise ValueError(f"training data must have shape (N, ...), got {tuple(x.shape)}")
        cond = {k: torch.as_tensor(v) for k, v in (cond or {}).items() if v is not None}
        for key, value in cond.items():
            if len(value) != len(x):
                raise ValueError(f"condition {key!r} has {len(value)} rows for {len(x)} examples")
        if "label" in cond:
            cond["label"] = cond["label"].long()
        self.x, self.cond = x, cond

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], {k: v[i] for k, v in self.cond.items()}

    def gather(self, idx: torch.Tensor):
        """The batch ``(x[idx], {key: cond[key][idx]})``."""
        idx = idx.to(self.x.device)
        return self.x[idx], {k: v[idx.to(v.device)] for k, v in self.cond.items()}

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.x, *self.cond.values()))

    def to(self, device) -> "TensorDataset":
        return TensorDataset(self.x.to(device), {k: v.to(device) for k, v in self.cond.items()})

    def pin_memory(self) -> "TensorDataset":
        return TensorDataset(self.x.pin_memory(), {k: v.pin_memory() for k, v in self.cond.items()})
