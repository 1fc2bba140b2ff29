"""Graphs of categorical nodes and edges (molecules: atoms and bonds) noised by one categorical process per key."""
from __future__ import annotations

import math

import torch

from .base import ForwardProcess
from .categorical import CategoricalProcess, check_weighting


class GraphProcess(ForwardProcess):
    """A categorical graph, ``{nodes: (B, N), edges: (B, N, N)}`` (by default the keys ``atoms`` and ``bonds``),
    noised by one categorical process per key at one shared noise level (DiGress: :class:`Marginal` processes with
    the data's node and edge marginals).  Edge noise is drawn on the upper triangle and mirrored, and the diagonal
    stays class 0, so every noisy graph is symmetric with an empty diagonal; sampling goes through
    :func:`unnoise.graphs.sample`.

    The loss is the sum of the two NELBO parts, the edge part over the unordered pairs ``i < j`` (each edge once):
    nats per graph.  Padded nodes (``cond["node_mask"]``) add nothing when the denoiser is certain of their class
    0, as :class:`unnoise.nets.GraphTransformer` is.
    """

    name = "graph"
    edge_weight = 5.0  # the edges' share of the crossentropy loss (DiGress's lambda)

    def __init__(self, nodes, edges, keys=("atoms", "bonds")):
        nodes = nodes if isinstance(nodes, CategoricalProcess) else CategoricalProcess.from_config(nodes)
        edges = edges if isinstance(edges, CategoricalProcess) else CategoricalProcess.from_config(edges)
        if nodes.levels.config() != edges.levels.config():
            raise ValueError("the node and edge processes of a graph must share their noise levels")
        self.keys = tuple(str(k) for k in keys)
        if len(self.keys) != 2 or self.keys[0] == self.keys[1]:
            raise ValueError(f"a graph has two keys (nodes, edges), got {keys!r}")
        self.parts = {self.keys[0]: nodes, self.keys[1]: edges}
        self.levels = nodes.levels

    @staticmethod
    def symmetric(edges: torch.Tensor) -> torch.Tensor:
        """The upper triangle of ``(..., N, N)`` mirrored below the diagonal, class 0 on the diagonal."""
        upper = torch.triu(edges, 1)
        return upper + upper.transpose(-1, -2)

    def _split(self, x, what):
        if not isinstance(x, dict) or set(x) != set(self.keys):
            raise ValueError(f"graph {what} are a dict with keys {', '.join(self.keys)}")
        return x[self.keys[0]], x[self.keys[1]]

    def noise(self, shape, generator=None, device=None, dtype=torch.float32):
        """Uniform draws per key (``shape`` a dict of shapes), as the categorical processes are driven by."""
        if not isinstance(shape, dict):
            raise ValueError(f"graph data are a dict of tensors ({', '.join(self.keys)}); got one shape")
        return {k: self.parts[k].noise(shape[k], generator, device, dtype) for k in sorted(shape)}

    def corrupt(self, x0, sigma, noise):
        nodes, edges = self._split(x0, "examples")
        u_nodes, u_edges = self._split(noise, "noise draws")
        a, b = self.keys
        return {a: self.parts[a].corrupt(nodes, sigma, u_nodes),
                b: self.symmetric(self.parts[b].corrupt(edges, sigma, u_edges))}

    def prior(self, noise, sigma_max=math.inf):
        u_nodes, u_edges = self._split(noise, "noise draws")
        a, b = self.keys
        return {a: self.parts[a].prior(u_nodes), b: self.symmetric(self.parts[b].prior(u_edges))}

    def prior_log_prob(self, x, sigma_max=math.inf, sigma_data=0.0):
        nodes, edges = self._split(x, "samples")
        i, j = torch.triu_indices(edges.shape[-1], edges.shape[-1], 1, device=edges.device)
        a, b = self.keys
        return self.parts[a].prior_log_prob(nodes) + self.parts[b].prior_log_prob(edges[:, i, j])

    def integrand(self, x0, x_t, log_probs, sigma) -> torch.Tensor:
        """The NELBO density of a graph: the node part plus the edge part over pairs ``i < j``."""
        a, b = self.keys
        n = x0[b].shape[-1]
        i, j = torch.triu_indices(n, n, 1, device=x0[b].device)
        return (self.parts[a].integrand(x0[a], x_t[a], log_probs[a], sigma)
                + self.parts[b].integrand(x0[b][:, i, j], x_t[b][:, i, j], log_probs[b][:, i, j], sigma))

    def loss(self, denoiser, x0, sigma, noise, cond=None, weighting="uniform", min_snr_gamma=5.0):
        """Per-graph loss in nats: the NELBO estimate (``weighting="uniform"``, as :meth:`CategoricalProcess.loss`,
        summed over both parts), or DiGress's ``crossentropy``: the mean cross-entropy of the clean nodes plus
        :attr:`edge_weight` times that of the clean edges, over the graph's real nodes (``cond["node_mask"]``) and
        the pairs ``i < j`` of them."""
        check_weighting(weighting)
        x_t = self.corrupt(x0, sigma, noise)
        log_probs = denoiser(x_t, sigma, cond)
        x0 = {k: v.long() for k, v in x0.items()}
        if weighting == "crossentropy":
            a, b = self.keys
            n = x0[b].shape[-1]
            real = cond.get("node_mask") if isinstance(cond, dict) else None
            real = torch.ones_like(x0[a], dtype=torch.bool) if real is None else real.bool()
            i, j = torch.triu_indices(n, n, 1, device=x0[b].device)
            nodes, n_nodes = self.parts[a].cross_entropy(x0[a], x_t[a], log_probs[a], real)
            edges, n_edges = self.parts[b].cross_entropy(x0[b][:, i, j], x_t[b][:, i, j], log_probs[b][:, i, j],
                                                         real[:, i] & real[:, j])
            return nodes / n_nodes.clamp_min(1) + self.edge_weight * edges / n_edges.clamp_min(1)
        per = self.integrand(x0, x_t, log_probs, sigma)
        weight = self.levels.rate(self.levels.time(torch.as_tensor(sigma, device=per.device).detach().double()))
        return per * weight.to(per.dtype)

    def config(self) -> dict:
        a, b = self.keys
        return {"name": self.name, "nodes": self.parts[a].config(), "edges": self.parts[b].config(),
                "keys": list(self.keys)}

    @staticmethod
    def from_config(config: dict) -> "GraphProcess":
        return GraphProcess(config["nodes"], config["edges"], config.get("keys", ("atoms", "bonds")))

    def __repr__(self):
        a, b = self.keys
        return f"GraphProcess({a}={self.parts[a]!r}, {b}={self.parts[b]!r})"
