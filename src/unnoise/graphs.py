"""Diffusion on categorical graphs (molecules: atom types on the nodes, bond types on the edges): the denoiser
and the ancestral sampler over the ``{"atoms", "bonds"}`` dict, on top of :mod:`unnoise.categorical`.

A graph with ``N`` (padded) nodes is ``{"atoms": (B, N), "bonds": (B, N, N)}`` long tensors, the bond matrix
symmetric with class 0 ("no edge") on the diagonal, plus ``cond["node_mask"]`` ``(B, N)`` marking the real nodes.
Its forward process, :class:`~unnoise.processes.GraphProcess`, runs one categorical process per key (DiGress:
the marginal process of each, with the data's atom and bond marginals) at one shared noise level; bond noise is
drawn on the upper triangle and mirrored, so every noisy graph is again symmetric.

* :class:`GraphDenoiser`: a network's ``{"atoms": logits, "bonds": logits}`` as ``D(x_t, sigma, cond) -> {key:
  log p(x_0 | x_t)}``, the categorical denoiser of each key.
* :func:`sample`: ancestral sampling, each key drawn from its own posterior ``p(x_s | x_t)`` given the joint
  prediction; the new bonds are the upper triangle mirrored.  Known atoms and bonds (scaffold completion) and the
  padding stay as given at every step.
"""
from __future__ import annotations

import torch

from .categorical import CategoricalDenoiser, _draw, clean_log_probs
from .processes import GraphProcess

__all__ = ["GraphDenoiser", "GraphProcess", "sample"]


class GraphDenoiser(CategoricalDenoiser):
    """A graph network ``net(x_t, c_noise, cond) -> {key: logits (B, ..., K_key)}`` as the categorical denoiser of
    a :class:`~unnoise.processes.GraphProcess`: log-probabilities per key (``1 - alpha`` is the network's noise
    input, as for :class:`~unnoise.categorical.CategoricalDenoiser`; a masked part keeps its carry-over)."""

    process_class = GraphProcess

    @staticmethod
    def _told_noise_level(process) -> bool:
        return True

    def forward(self, x, sigma, cond=None):
        parts = self.categorical.parts
        x = {k: x[k].long() for k in parts}
        first = x[next(iter(parts))]
        out = self.net(x, self.noise_input(sigma, first.shape[0], first.device), cond)
        return {key: clean_log_probs(out[key], x[key], proc, key) for key, proc in parts.items()}


@torch.no_grad()
def sample(denoiser, process: GraphProcess, num_nodes: int, n: int, steps: int, generator=None, cond=None,
           known: dict | None = None, known_mask: dict | None = None, device=None) -> dict:
    """Ancestral sampling of ``n`` graphs of ``num_nodes`` (padded) nodes in ``steps`` steps.

    ``cond["node_mask"]`` ``(n, num_nodes)`` marks the real nodes (all when absent): padded nodes are atom 0 with
    no bonds throughout.  ``known``/``known_mask``: dicts of tokens and bool masks per key (``atoms`` ``(n, N)``,
    ``bonds`` ``(n, N, N)``) kept as given at every step (a scaffold to complete).  Returns
    ``{"atoms": (n, N), "bonds": (n, N, N)}``, bonds symmetric with an empty diagonal.
    """
    node_key, edge_key = process.keys
    device = torch.device(device) if device is not None else torch.device("cpu")
    shapes = {node_key: (n, num_nodes), edge_key: (n, num_nodes, num_nodes)}
    mask = (cond or {}).get("node_mask")
    mask = torch.ones(n, num_nodes, dtype=torch.bool, device=device) if mask is None else mask.to(device).bool()
    pair = mask[:, :, None] & mask[:, None, :] & ~torch.eye(num_nodes, dtype=torch.bool, device=device)
    fixed = {node_key: ~mask, edge_key: ~pair}  # padding and the diagonal: class 0 throughout
    values = {k: torch.zeros(s, dtype=torch.long, device=device) for k, s in shapes.items()}
    for k in (known_mask or {}):
        if k not in shapes:
            raise ValueError(f"known entries are {node_key!r} and {edge_key!r}, not {k!r}")
        if tuple(known_mask[k].shape) != shapes[k] or tuple(known[k].shape) != shapes[k]:
            raise ValueError(f"known {k} and its mask must have shape {shapes[k]}")
        km = known_mask[k].to(device).bool() & ~fixed[k]
        values[k] = torch.where(km, known[k].to(device).long(), values[k])
        fixed[k] = fixed[k] | km
    if edge_key in (known_mask or {}) and not torch.equal(values[edge_key], values[edge_key].transpose(1, 2)):
        raise ValueError("known bonds must be symmetric")

    def keep(x):
        return {k: torch.where(fixed[k], values[k], x[k]) for k in x}

    x = keep(process.prior(process.noise(shapes, generator, device)))
    sigmas = process.levels.sampling_sigmas(steps)
    c = dict(cond or {})
    c["node_mask"] = mask
    for i in range(len(sigmas) - 1):
        sig_t, sig_s = float(sigmas[i]), float(sigmas[i + 1])
        logp = denoiser(x, torch.full((n,), sig_t, device=device), c)
        new = {k: _draw(proc.posterior(x[k], logp[k].double().exp(), sig_t, sig_s), generator)
               for k, proc in process.parts.items()}
        new[edge_key] = process.symmetric(new[edge_key])
        x = keep(new)
    return x
