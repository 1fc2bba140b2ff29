"""Captioned shapes: a generated image set for text-to-image and editing experiments.

Each image shows one coloured shape (circle, square or triangle; small or large) at one of five
places on a black background, with a caption such as ``"a small red circle at the top left"``.
Everything is drawn here (anti-aliased by 4x supersampling), so the set needs no download and every
attribute is known exactly, which lets benchmarks check generated images against their prompts.
"""
from __future__ import annotations

import torch

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (1.0, 0.1, 0.1), "green": (0.1, 0.85, 0.1), "blue": (0.15, 0.3, 1.0), "yellow": (1.0, 0.9, 0.1)}
SIZES = ("small", "large")
# (row, column) of the shape's centre as fractions of the image side
POSITIONS = {"top left": (0.27, 0.27), "top right": (0.27, 0.73), "bottom left": (0.73, 0.27),
             "bottom right": (0.73, 0.73), "center": (0.5, 0.5)}
ATTRIBUTES = ("shape", "colour", "size", "position")
_RADIUS = {"small": 0.12, "large": 0.22}  # half-extent as a fraction of the image side
_SUPERSAMPLE = 4


def caption(shape: str, colour: str, size: str, position: str) -> str:
    """``"a small red circle at the top left"`` (``"... in the center"`` for the centre)."""
    where = "in the center" if position == "center" else f"at the {position}"
    return f"a {size} {colour} {shape} {where}"


def _mask(shape: str, size: str, position: str, image_size: int, offset=(0.0, 0.0)) -> torch.Tensor:
    """Coverage in [0, 1] of one shape, ``(image_size, image_size)``."""
    n = image_size * _SUPERSAMPLE
    coords = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    cy, cx = POSITIONS[position]
    dy, dx = yy - (cy + offset[0]), xx - (cx + offset[1])
    r = _RADIUS[size]
    if shape == "circle":
        inside = dx**2 + dy**2 <= r**2
    elif shape == "square":
        inside = (dx.abs() <= 0.85 * r) & (dy.abs() <= 0.85 * r)
    elif shape == "triangle":  # apex up, base at dy = +r/2, circumradius r
        base, h = 0.5 * r, 1.5 * r
        inside = (dy <= base) & (dx.abs() <= (dy + r) * (r * 3**0.5 / 2) / h)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    cover = inside.float().reshape(image_size, _SUPERSAMPLE, image_size, _SUPERSAMPLE).mean((1, 3))
    return cover


def render(shape: str, colour: str, size: str, position: str, image_size: int = 32,
           offset=(0.0, 0.0)) -> torch.Tensor:
    """One image ``(3, image_size, image_size)`` in [-1, 1] (black background = -1)."""
    for value, allowed, what in ((colour, COLOURS, "colour"), (size, SIZES, "size"), (position, POSITIONS, "position")):
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
    cover = _mask(shape, size, position, image_size, offset)
    rgb = torch.tensor(COLOURS[colour]).reshape(3, 1, 1)
    return cover[None] * rgb * 2 - 1


def make_shapes(n: int, image_size: int = 32, generator: torch.Generator | None = None, jitter: float = 0.03):
    """``n`` random captioned images.

    Args:
        n: number of images.  image_size: side in pixels (>= 16).
        jitter: random shift of each shape's centre, uniform in ``[-jitter, jitter]`` of the side.

    Returns:
        ``(images, attributes, captions)``: ``(n, 3, S, S)`` float32 in [-1, 1]; a dict of ``(n,)``
        int64 tensors indexing :data:`SHAPES`, :data:`COLOURS`, :data:`SIZES`, :data:`POSITIONS`
        (keys ``shape``, ``colour``, ``size``, ``position``); the list of ``n`` captions.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    counts = {"shape": len(SHAPES), "colour": len(COLOURS), "size": len(SIZES), "position": len(POSITIONS)}
    attrs = {k: torch.randint(0, c, (n,), generator=generator) for k, c in counts.items()}
    offsets = (torch.rand(n, 2, generator=generator) * 2 - 1) * jitter
    colours, positions = list(COLOURS), list(POSITIONS)
    images, captions = torch.empty(n, 3, image_size, image_size), []
    for i in range(n):
        a = (SHAPES[attrs["shape"][i]], colours[attrs["colour"][i]], SIZES[attrs["size"][i]],
             positions[attrs["position"][i]])
        images[i] = render(*a, image_size=image_size, offset=tuple(offsets[i].tolist()))
        captions.append(caption(*a))
    return images, attrs, captions


def attribute_names(attrs: dict, i: int) -> dict:
    """The attribute names of example ``i`` of :func:`make_shapes`' ``attributes``."""
    tables = {"shape": SHAPES, "colour": list(COLOURS), "size": SIZES, "position": list(POSITIONS)}
    return {k: tables[k][int(attrs[k][i])] for k in ATTRIBUTES}
