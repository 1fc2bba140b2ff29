"""Pictures of image samples: PNG grids, labelled rows (one per class), and one sample's path
from noise to image."""
from __future__ import annotations

import math

import numpy as np
import torch

from .io import save_png
from .plotting import _save, subplots


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` in ``[-1, 1]`` -> ``(N, H, W, C)`` uint8 (values outside are clipped)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    arr = ((images.detach().cpu().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return arr.permute(0, 2, 3, 1).numpy()


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1, upscale: int = 1) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images into one ``(rows*H', cols*W', C)`` uint8 array.

    ``nrow`` images per row (default: about square); ``upscale`` enlarges each pixel (nearest) so
    tiny images such as 8x8 digits stay visible; ``pad`` pixels of white between tiles.
    """
    arr = to_uint8(images)
    n, h, w, c = arr.shape
    if upscale > 1:
        arr = arr.repeat(upscale, axis=1).repeat(upscale, axis=2)
        h, w = h * upscale, w * upscale
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = arr[i]
    return grid


def save_image_grid(images: torch.Tensor, path: str, nrow: int | None = None, pad: int = 1,
                    upscale: int | None = None) -> None:
    """Write ``(N, C, H, W)`` images in ``[-1, 1]`` as one PNG grid (``upscale`` default: tiles >= 64 px).

    Written atomically (:func:`unnoise.io.save_png`): a failed write leaves any previous file intact."""
    if upscale is None:
        upscale = max(1, 64 // images.shape[-1])
    grid = image_grid(images, nrow, pad, upscale)
    save_png(path, grid)


def plot_image_rows(rows: list[torch.Tensor], labels: list[str], path: str, title: str | None = None) -> None:
    """One labelled row per entry of ``rows`` (each ``(n, C, H, W)`` in ``[-1, 1]``), e.g. one row per class."""
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    n = max(len(r) for r in rows)
    fig, axes = subplots(len(rows), 1, figsize=(0.55 * n + 0.8, 0.62 * len(rows)), squeeze=False)
    fig.subplots_adjust(hspace=0.08, top=0.94 if title else 0.99)
    for ax, row, label in zip(axes[:, 0], rows, labels):
        grid = image_grid(row, nrow=n, pad=1, upscale=4)
        ax.imshow(grid[..., 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        for side in ax.spines.values():
            side.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10, y=0.995)
    _save(fig, path)


def plot_image_trajectory(steps: list[tuple[float, torch.Tensor, torch.Tensor]], path: str, scale=None,
                          title: str | None = None) -> None:
    """One sample's way from noise to image: for each ``(sigma, x, denoised)`` (``x`` and ``denoised``
    of shape ``(C, H, W)``) the noisy state (top row) and the denoiser's estimate of the clean image
    (bottom row).

    ``x`` is scale-free (``x_0 + sigma eps``); ``scale(sigma)`` maps it to what the process holds,
    ``x_t = s x`` (a VP process keeps it in about ``[-1, 1]``); without it ``x / sqrt(1 + sigma^2)``.
    """
    n = len(steps)
    fig, axes = subplots(2, n, figsize=(1.25 * n, 2.9), squeeze=False)
    for k, (sigma, x, den) in enumerate(steps):
        s = float(scale(torch.tensor(sigma))) if scale is not None else 1 / math.sqrt(1 + sigma**2)
        for r, img in enumerate((x * s, den)):
            ax = axes[r][k]
            grid = image_grid(img[None], nrow=1, pad=0)
            ax.imshow(grid[..., 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=255,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][k].set_title(f"sigma={sigma:.3g}", fontsize=7)
    axes[0][0].set_ylabel("x_t", fontsize=8)
    axes[1][0].set_ylabel("D(x, sigma)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    _save(fig, path)


__all__ = ["image_grid", "plot_image_rows", "plot_image_trajectory", "save_image_grid", "to_uint8"]
