"""A permutation-equivariant graph transformer for categorical graphs (molecules): nodes, edges and one global
feature are updated together, as in DiGress (Vignac et al. 2023).

Each layer computes, for every ordered pair of nodes ``(i, j)`` and head, the elementwise products
``S_ij = (q_i * k_j) / sqrt(d)`` and modulates them by the edge features (``S_ij (1 + W_m e_ij) + W_a e_ij``).
``S`` is both the new edge message (after a FiLM by the global feature) and the attention score: node ``i``
attends over the real nodes ``j`` with a softmax per feature dimension, ``x_i' = sum_j softmax_j(S_ij) v_j``.
The global feature takes pooled node and edge statistics (masked mean and standard deviation).  Residuals,
layer norms and feed-forward blocks follow on all three streams.

Every operation is either per node, per pair or a symmetric reduction over nodes, so permuting the nodes of the
input permutes the output the same way.  The input also carries structure features of the noisy graph, which
the attention alone cannot count (DiGress's "extra features"): ``features="walks"`` gives each node its degree
and closed walks of length 3 and 4, and the graph its size, edges and triangles; ``"molecular"`` (the default)
adds what decides whether a molecule is valid: each atom's valency (the sum of its bond orders), closed walks of
length 5 and 6 (five- and six-membered rings), the size of its connected component and whether that component is
the largest, and the graph's number of connected components (a valid molecule is one).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .embeddings import SinusoidalEmbedding

NEG = -1e4  # log-probability of the impossible classes at padded nodes and on the diagonal
FEATURES = {"walks": (3, 3), "molecular": (8, 5)}  # structure features: (per node, per graph)


def components(adj: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
    """Size of each node's connected component ``(B, N)`` (0 at padded nodes), from a 0/1 adjacency ``(B, N, N)``
    without self-loops: reachability by repeated squaring of ``I + A`` (``ceil(log2 N)`` products)."""
    n = adj.shape[-1]
    reach = (adj + torch.diag_embed(node_mask.to(adj.dtype))).clamp_max(1.0)
    for _ in range(max(1, math.ceil(math.log2(max(n, 2))))):
        reach = (reach @ reach).clamp_max(1.0)
    return reach.sum(-1) * node_mask.to(adj.dtype)


def _pool(x: torch.Tensor, weight: torch.Tensor, dims) -> torch.Tensor:
    """Masked mean and standard deviation of ``x`` over ``dims`` with 0/1 ``weight`` (broadcastable)."""
    count = weight.sum(dims).clamp_min(1.0)
    mean = (x * weight).sum(dims) / count
    var = ((x - mean.reshape(mean.shape[0], *([1] * (x.ndim - 2)), -1)) ** 2 * weight).sum(dims) / count
    return torch.cat([mean, var.clamp_min(1e-8).sqrt()], -1)


def structure_features(bonds: torch.Tensor, pair_mask: torch.Tensor, node_mask: torch.Tensor, bond_classes: int,
                       features: str = "molecular", dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(per node (B, N, F), per graph (B, G))`` structure features of a graph whose bond classes ``1 ..
    bond_classes - 1`` are edges of that order (any other class, the absorbing mask included, is no edge).

    Per node: degree / 4, closed walks of length 3 / 2 and 4 / 16; with ``"molecular"`` also the valency (sum of
    bond orders) / 4, closed walks of length 5 / 64 and 6 / 256, the component's size / N and 1 where that
    component is the largest.  Per graph: nodes / N, edges / N, triangles / N (times 2 and 6 from the walk
    counts); with ``"molecular"`` also (number of connected components - 1) / 4 and the largest component's share
    of the nodes."""
    n = bonds.shape[-1]
    adj = ((bonds > 0) & (bonds < bond_classes) & pair_mask).to(dtype)
    a2 = adj @ adj
    a3 = a2 @ adj
    a4 = a2 @ a2
    deg = adj.sum(-1)
    walks3 = torch.diagonal(a3, dim1=1, dim2=2)
    feats = [deg / 4, walks3 / 2, torch.diagonal(a4, dim1=1, dim2=2) / 16]
    size = node_mask.sum(-1).to(dtype)
    graph = [size / n, deg.sum(-1) / (2 * n), walks3.sum(-1) / (6 * n)]
    if features == "molecular":
        order = torch.where(adj.bool(), bonds, torch.zeros_like(bonds)).to(dtype)  # bond class = bond order
        comp = components(adj, node_mask)
        largest = comp.amax(-1, keepdim=True)
        count = (node_mask.to(dtype) / comp.clamp_min(1.0)).sum(-1)  # each component's nodes add up to 1
        feats += [order.sum(-1) / 4, torch.diagonal(a4 @ adj, dim1=1, dim2=2) / 64,
                  torch.diagonal(a3 @ a3, dim1=1, dim2=2) / 256, comp / n, ((comp == largest) & node_mask).to(dtype)]
        graph += [(count - 1) / 4, largest[:, 0] / size.clamp_min(1.0)]
    return torch.stack(feats, -1), torch.stack(graph, -1)


class _Layer(nn.Module):
    def __init__(self, dx: int, de: int, dy: int, heads: int, dropout: float):
        super().__init__()
        if dx % heads:
            raise ValueError(f"width {dx} must be a multiple of heads {heads}")
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dx, dx), nn.Linear(dx, dx), nn.Linear(dx, dx)
        self.e_mul, self.e_add = nn.Linear(de, dx), nn.Linear(de, dx)
        self.y_e = nn.Linear(dy, 2 * dx)
        self.y_x = nn.Linear(dy, 2 * dx)
        self.e_out, self.x_out = nn.Linear(dx, de), nn.Linear(dx, dx)
        self.y_in = nn.Linear(dy + 2 * dx + 2 * de, dy)
        self.norm_x1, self.norm_x2 = nn.LayerNorm(dx), nn.LayerNorm(dx)
        self.norm_e1, self.norm_e2 = nn.LayerNorm(de), nn.LayerNorm(de)
        self.norm_y1, self.norm_y2 = nn.LayerNorm(dy), nn.LayerNorm(dy)
        self.ff_x = nn.Sequential(nn.Linear(dx, 2 * dx), nn.SiLU(), nn.Dropout(dropout), nn.Linear(2 * dx, dx))
        self.ff_e = nn.Sequential(nn.Linear(de, 2 * de), nn.SiLU(), nn.Dropout(dropout), nn.Linear(2 * de, de))
        self.ff_y = nn.Sequential(nn.Linear(dy, 2 * dy), nn.SiLU(), nn.Dropout(dropout), nn.Linear(2 * dy, dy))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, e, y, node_mask, pair_mask):
        b, n, dx = x.shape
        h = self.heads
        q = self.q(x).reshape(b, n, 1, h, dx // h)
        k = self.k(x).reshape(b, 1, n, h, dx // h)
        s = (q * k / math.sqrt(dx // h)).reshape(b, n, n, dx)
        s = s * (1 + self.e_mul(e)) + self.e_add(e)
        ye_mul, ye_add = self.y_e(y)[:, None, None].chunk(2, -1)
        e_new = self.e_out(s * (1 + ye_mul) + ye_add) * pair_mask[..., None]
        scores = s.masked_fill(~node_mask[:, None, :, None], float("-inf"))  # attend over real nodes j
        attn = torch.softmax(scores, dim=2)
        v = self.v(x)[:, None]  # (b, 1, n, dx)
        x_new = (attn * v).sum(2)
        yx_mul, yx_add = self.y_x(y)[:, None].chunk(2, -1)
        x_new = self.x_out(x_new * (1 + yx_mul) + yx_add) * node_mask[..., None]
        pooled = torch.cat([y, _pool(x, node_mask[..., None].to(x.dtype), 1),
                            _pool(e, pair_mask[..., None].to(e.dtype), (1, 2))], -1)
        y = self.norm_y1(y + self.drop(self.y_in(pooled)))
        x = self.norm_x1(x + self.drop(x_new))
        e = self.norm_e1(e + self.drop(e_new))
        x = self.norm_x2(x + self.ff_x(x)) * node_mask[..., None]
        e = self.norm_e2(e + self.ff_e(e)) * pair_mask[..., None]
        y = self.norm_y2(y + self.ff_y(y))
        return x, e, y


class GraphTransformer(nn.Module):
    """``net({"atoms": (B, N), "bonds": (B, N, N)}, c_noise (B,), cond) -> {"atoms": (B, N, K_a), "bonds": (B, N, N,
    K_b)}`` log-probabilities of the clean classes.

    Args:
        atom_classes, bond_classes: the clean classes (outputs).
        in_atom_classes, in_bond_classes: the classes the noisy input can take (default the same; one more for
            an absorbing ``mask`` state).
        width, edge_width, global_width: feature sizes of nodes, edges and the global feature.
        heads, depth: attention heads and layers.
        dropout: dropout in every block.
        features: the structure features of the noisy graph given to the input, ``"molecular"`` or ``"walks"``
            (see the module docstring).

    ``cond["node_mask"]`` ``(B, N)`` (True on real nodes; default all) marks the nodes of each graph: padded nodes
    neither send nor receive messages, and their output (and the diagonal of ``bonds``) is certain class 0, so
    they add nothing to a likelihood.  The bond output is symmetric.
    """

    def __init__(self, atom_classes: int, bond_classes: int = 4, in_atom_classes: int | None = None,
                 in_bond_classes: int | None = None, width: int = 64, edge_width: int = 32,
                 global_width: int = 64, heads: int = 4, depth: int = 4, dropout: float = 0.0,
                 features: str = "molecular"):
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"unknown graph features {features!r}; choose one of {', '.join(FEATURES)}")
        in_atom_classes = int(in_atom_classes or atom_classes)
        in_bond_classes = int(in_bond_classes or bond_classes)
        self.config = dict(atom_classes=int(atom_classes), bond_classes=int(bond_classes),
                           in_atom_classes=in_atom_classes, in_bond_classes=in_bond_classes, width=int(width),
                           edge_width=int(edge_width), global_width=int(global_width), heads=int(heads),
                           depth=int(depth), dropout=float(dropout), features=features)
        node_feats, graph_feats = FEATURES[features]
        self.atom_in = nn.Embedding(in_atom_classes, width)
        self.bond_in = nn.Embedding(in_bond_classes, edge_width)
        self.node_feats = nn.Linear(node_feats, width)
        self.noise = SinusoidalEmbedding(global_width)
        self.y_in = nn.Sequential(nn.Linear(global_width + graph_feats, global_width), nn.SiLU(),
                                  nn.Linear(global_width, global_width))
        self.layers = nn.ModuleList(_Layer(width, edge_width, global_width, heads, dropout) for _ in range(depth))
        self.atom_out = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, atom_classes))
        self.bond_out = nn.Sequential(nn.Linear(edge_width, edge_width), nn.SiLU(),
                                      nn.Linear(edge_width, bond_classes))

    def forward(self, x: dict, c_noise: torch.Tensor, cond: dict | None = None) -> dict:
        atoms, bonds = x["atoms"], x["bonds"]
        b, n = atoms.shape
        node_mask = (cond or {}).get("node_mask")
        node_mask = torch.ones(b, n, dtype=torch.bool, device=atoms.device) if node_mask is None else node_mask.bool()
        eye = torch.eye(n, dtype=torch.bool, device=atoms.device)
        pair_mask = node_mask[:, :, None] & node_mask[:, None, :] & ~eye
        dtype = self.node_feats.weight.dtype
        feats, graph = structure_features(bonds, pair_mask, node_mask, self.config["bond_classes"],
                                          self.config["features"], dtype)
        h = (self.atom_in(atoms) + self.node_feats(feats)) * node_mask[..., None]
        e = self.bond_in(bonds) * pair_mask[..., None]
        y = self.y_in(torch.cat([self.noise(c_noise.reshape(-1).to(dtype).expand(b)), graph], -1))
        for layer in self.layers:
            h, e, y = layer(h, e, y, node_mask, pair_mask)
        atom_logits = self.atom_out(h)
        bond_logits = self.bond_out(e)
        bond_logits = (bond_logits + bond_logits.transpose(1, 2)) / 2
        return {"atoms": _certain(atom_logits, ~node_mask), "bonds": _certain(bond_logits, ~pair_mask)}


def _certain(logits: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """Log-probabilities, with class 0 certain where ``fixed``."""
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)
    pad = torch.full_like(logp, NEG)
    pad[..., 0] = 0.0
    return torch.where(fixed[..., None], pad, logp)
