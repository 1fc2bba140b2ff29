"""The data order: which examples every global batch holds (:class:`EpochSampler`), and the
DataLoader's batch sampler of one rank's rows (``_RankBatches``)."""
from __future__ import annotations

import torch


class EpochSampler:
    """Example indices without replacement, epoch after epoch.  The permutation of epoch ``e`` is
    ``randperm(N)`` under seed ``(seed, e)`` and global position ``p`` holds example
    ``perm(p // N)[p % N]``, so every batch is a pure function of its position."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._perms: dict[int, torch.Tensor] = {}
        self._on_device: dict[tuple, torch.Tensor] = {}  # (epoch, device) -> the permutation there

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (2**63))
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}  # keep at most two
            self._perms[epoch] = torch.randperm(self.n, generator=g)
        return self._perms[epoch]

    def _permutation_on(self, epoch: int, device) -> torch.Tensor:
        """The permutation of ``epoch`` on ``device``, copied there once per epoch (asynchronously on CUDA), so
        the batches of in-memory data on a GPU are indexed without a host-to-device copy per step."""
        perm = self._permutation(epoch)
        if device is None or torch.device(device) == perm.device:
            return perm
        key = (epoch, str(device))
        if key not in self._on_device:
            self._on_device = {e: p for e, p in self._on_device.items() if e[0] >= epoch - 1}
            host = perm.pin_memory() if torch.device(device).type == "cuda" else perm
            self._on_device[key] = host.to(device, non_blocking=True)
        return self._on_device[key]

    def indices(self, start: int, k: int, device=None) -> torch.Tensor:
        """The ``(k,)`` examples at global positions ``[start, start + k)`` (on ``device``, default the CPU)."""
        parts, pos = [], start
        while pos < start + k:
            epoch, offset = divmod(pos, self.n)
            chunk = self._permutation_on(epoch, device)[offset:offset + start + k - pos]
            parts.append(chunk)
            pos += len(chunk)
        return torch.cat(parts)

    def state(self, position: int) -> dict:
        epoch, offset = divmod(position, self.n)
        return {"epoch": epoch, "offset": offset, "num_examples": self.n}

    def check_state(self, state: dict) -> None:
        if state.get("num_examples") != self.n:
            raise ValueError(f"the checkpoint was trained on {state.get('num_examples')} examples but this run has "
                             f"{self.n}; resume with the same data")


class _RankBatches(torch.utils.data.Sampler):
    """Batch sampler for the DataLoader: this rank's rows of global batch ``start``, ``start + 1``, ..."""

    def __init__(self, sampler: EpochSampler, batch_size: int, rows: slice, start: int):
        self.sampler, self.batch_size, self.rows, self.start = sampler, batch_size, rows, start

    def __iter__(self):
        step = self.start
        while True:
            yield self.sampler.indices(step * self.batch_size, self.batch_size)[self.rows].tolist()
            step += 1
