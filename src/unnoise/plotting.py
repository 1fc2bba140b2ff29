"""Pictures: loss curves, point clouds side by side, forward/reverse trajectories."""
from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure

from . import spectral
from .io import save_figure


def subplots(nrows: int = 1, ncols: int = 1, figsize=None, **kwargs):
    """``(figure, axes)`` like ``pyplot.subplots``, but outside pyplot: the figure is in no global registry (nothing
    to close, nothing leaks) and the user's matplotlib backend is left alone (importing unnoise never switches a
    notebook's inline backend); ``savefig`` renders PNG/PDF/SVG with matplotlib's own canvases."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _save(fig, path):
    """Save a figure atomically (:func:`unnoise.io.save_figure`)."""
    save_figure(fig, path, dpi=110, bbox_inches="tight")


def plot_loss(history: list[dict], path: str) -> None:
    """Training loss against step (log scale) from ``{"step", "loss"[, "loss_smooth"]}`` records, as a PNG."""
    steps = [h["step"] for h in history]
    fig, ax = subplots(figsize=(5, 3.2))
    ax.plot(steps, [h["loss"] for h in history], lw=0.8, alpha=0.4, label="loss")
    if "loss_smooth" in history[0]:
        ax.plot(steps, [h["loss_smooth"] for h in history], lw=1.6, label="smoothed")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)


EQUAL_ASPECT_MAX_RATIO = 10.0  # beyond this ratio of the two spans, equal axes would squash one to a sliver


def _limits(*clouds):
    pts = torch.cat([c[:, :2] for c in clouds])
    lo, hi = torch.quantile(pts, 0.005, dim=0), torch.quantile(pts, 0.995, dim=0)
    span = hi - lo
    span = torch.where(span > 0, span, torch.clamp(lo.abs(), min=1.0))  # a constant column still gets a range
    pad = 0.15 * span
    return (lo - pad).tolist(), (hi + pad).tolist()


def aspect(lo, hi) -> str:
    """``"equal"`` when the two coordinates' spans are within :data:`EQUAL_ASPECT_MAX_RATIO` of each other (a
    point cloud keeps its shape), else ``"auto"``: each axis scaled to its own span."""
    wx, wy = hi[0] - lo[0], hi[1] - lo[1]
    return "equal" if max(wx, wy) <= EQUAL_ASPECT_MAX_RATIO * min(wx, wy) else "auto"


def plot_points(panels: dict[str, torch.Tensor], path: str, title: str | None = None) -> None:
    """Scatter several ``(n, >=2)`` point sets side by side on shared axes (first two coordinates)."""
    clouds = [p.detach().cpu().float() for p in panels.values()]
    lo, hi = _limits(*clouds)
    shape = aspect(lo, hi)
    fig, axes = subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (name, pts) in zip(axes[0], zip(panels, clouds)):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, lw=0)
        ax.set_title(name)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect(shape)
        if shape == "equal":
            ax.set_xticks([])
            ax.set_yticks([])
        else:  # the axes have different scales: show them
            ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_angles(panels: dict[str, torch.Tensor], path: str, title: str | None = None) -> None:
    """Scatter point sets of angles on the torus ``[-pi, pi)^2`` (first two angles, wrapped), one panel each,
    the axes running over the whole period with ticks at -pi, 0 and pi (the edges are the same circle)."""
    fig, axes = subplots(1, len(panels), figsize=(3.6 * len(panels), 3.8), squeeze=False)
    ticks, labels = [-math.pi, 0.0, math.pi], ["-\u03c0", "0", "\u03c0"]
    for ax, (name, pts) in zip(axes[0], panels.items()):
        pts = torch.remainder(pts.detach().cpu().double()[:, :2] + math.pi, 2 * math.pi) - math.pi
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, lw=0)
        ax.set_title(name)
        ax.set_xlim(-math.pi, math.pi)
        ax.set_ylim(-math.pi, math.pi)
        ax.set_aspect("equal")
        ax.set_xticks(ticks, labels)
        ax.set_yticks(ticks, labels)
        ax.set_xlabel("angle 1")
        ax.set_ylabel("angle 2")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_ramachandran(panels: dict[str, torch.Tensor], path: str, title: str | None = None) -> None:
    """Ramachandran plots: 2-D histograms of ``(phi, psi)`` pairs (radians, ``(n, 2)``) in degrees over
    ``[-180, 180)^2``, one panel per set (e.g. generated beside the data)."""
    fig, axes = subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    fig.subplots_adjust(wspace=0.35)
    ticks = [-180, -90, 0, 90, 180]
    for ax, (name, pts) in zip(axes[0], panels.items()):
        deg = torch.rad2deg(torch.remainder(pts.detach().cpu().double()[:, :2] + math.pi, 2 * math.pi) - math.pi)
        ax.hist2d(deg[:, 0].numpy(), deg[:, 1].numpy(), bins=72, range=[[-180, 180], [-180, 180]], cmin=1,
                  cmap="viridis", norm="log")
        ax.set_title(name)
        ax.set_aspect("equal")
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.axhline(0, color="0.8", lw=0.5)
        ax.axvline(0, color="0.8", lw=0.5)
        ax.set_xlabel("\u03c6 (degrees)")
        ax.set_ylabel("\u03c8 (degrees)")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_trajectory(forward: list[tuple[float, torch.Tensor]], reverse: list[tuple[float, torch.Tensor]],
                    path: str, scale=None) -> None:
    """Two rows of 2-D scatters: the forward noising and the reverse denoising, labelled by sigma.

    ``scale(sigma)`` (the process's signal scale) maps scale-free points back to what the model sees,
    ``x_t = s * x``, so the rows show the real forward process (e.g. VP shrinks towards N(0, I)).
    """
    rows = [("forward  q(x_t | x_0)", forward), ("reverse  (sampler)", reverse)]
    n = max(len(forward), len(reverse))
    fig, axes = subplots(2, n, figsize=(2.3 * n, 4.9), squeeze=False)

    def shown(sig, pts):
        pts = pts.detach().cpu().float()
        return pts * float(scale(torch.tensor(sig))) if scale is not None else pts

    allpts = torch.cat([shown(s, p)[:, :2] for _, row in rows for s, p in row])
    lo, hi = torch.quantile(allpts, 0.005, dim=0).tolist(), torch.quantile(allpts, 0.995, dim=0).tolist()
    for r, (label, row) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            sig, pts = row[c]
            p = shown(sig, pts)
            ax.scatter(p[:, 0], p[:, 1], s=1.5, alpha=0.5, lw=0, color="C0" if r == 0 else "C3")
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
            ax.set_aspect("equal")
            ax.set_title(f"sigma={sig:.3g}", fontsize=8)
        axes[r][0].set_ylabel(label, fontsize=9)
    _save(fig, path)


def plot_spectrograms(rows: dict[str, torch.Tensor], sample_rate: int, path: str, n_fft: int = 256) -> None:
    """A grid of log-magnitude spectrograms, one row per entry of ``rows`` (each ``(n, channels, length)``)."""
    cols = min(len(v) for v in rows.values())
    fig, axes = subplots(len(rows), cols, figsize=(2.2 * cols, 2.0 * len(rows)), squeeze=False,
                             sharex=True, sharey=True)
    for r, (name, clips) in enumerate(rows.items()):
        mags = spectral.stft_magnitude(clips[:cols].float().mean(1), n_fft)
        db = 20 * torch.log10(mags + 1e-5)
        for c in range(cols):
            ax = axes[r, c]
            dur = clips.shape[-1] / sample_rate * 1000
            ax.imshow(db[c].numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-60, vmax=float(db.max()),
                      extent=(0, dur, 0, sample_rate / 2 / 1000))
            if c == 0:
                ax.set_ylabel(f"{name}\nkHz")
            if r == len(rows) - 1:
                ax.set_xlabel("ms")
    fig.suptitle(f"log-magnitude spectrograms (dB), {sample_rate} Hz clips")
    _save(fig, path)


def plot_functions(panels: dict[str, torch.Tensor], path: str, title: str | None = None, max_curves: int = 8,
                   points=None) -> None:
    """Functions on grids, one panel per set: 1-D ``(n, L)`` as up to ``max_curves`` curves over ``[0, 1)``;
    2-D ``(n, H, W)`` as a row of up to ``max_curves`` fields (shared colour scale per panel).  With ``points``
    ``(P, dims)``, values ``(n, P)`` at those coordinates: curves through the sorted points (1-D), or the points
    coloured by value (2-D)."""
    sets = {k: v.detach().cpu().float() for k, v in panels.items()}
    if points is not None and points.shape[1] == 2:
        k = min(max_curves, min(len(v) for v in sets.values()))
        fig, axes = subplots(len(sets), k, figsize=(1.5 * k, 1.6 * len(sets)), squeeze=False)
        for row, (name, f) in zip(axes, sets.items()):
            lo, hi = float(f[:k].min()), float(f[:k].max())
            for ax, values in zip(row, f[:k]):
                ax.scatter(points[:, 1], points[:, 0], c=values, s=6, cmap="viridis", vmin=lo, vmax=hi)
                ax.set_xlim(0, 1)
                ax.set_ylim(1, 0)
                ax.set_xticks([])
                ax.set_yticks([])
            row[0].set_title(f"{name} ({f.shape[1]} points)", fontsize=8, loc="left")
    elif points is not None or all(v.ndim == 2 for v in sets.values()):
        fig, axes = subplots(1, len(sets), figsize=(4.2 * len(sets), 3.2), squeeze=False)
        for ax, (name, f) in zip(axes[0], sets.items()):
            x = torch.arange(f.shape[1]) / f.shape[1] if points is None else points[:, 0].float()
            order = x.argsort()
            for curve in f[:max_curves]:
                ax.plot(x[order], curve[order], lw=1, marker="." if points is not None else None, ms=2)
            ax.set_title(f"{name} ({f.shape[1]} points)")
            ax.set_xlim(0, 1)
            ax.tick_params(labelsize=7)
    else:
        k = min(max_curves, min(len(v) for v in sets.values()))
        fig, axes = subplots(len(sets), k, figsize=(1.3 * k, 1.5 * len(sets)), squeeze=False)
        for row, (name, f) in zip(axes, sets.items()):
            lo, hi = float(f[:k].min()), float(f[:k].max())
            for ax, field in zip(row, f[:k]):
                ax.imshow(field, cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
            row[0].set_title(f"{name} ({f.shape[1]}x{f.shape[2]})", fontsize=8, loc="left")
    if title:
        fig.suptitle(title)
    _save(fig, path)
