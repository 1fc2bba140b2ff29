"""Captioned shapes: captions describe exactly what is drawn."""
import math

import pytest
import torch

from unnoise.data import shapes


def test_images_match_their_captions():
    g = torch.Generator().manual_seed(0)
    x, attrs, caps = shapes.make_shapes(60, image_size=32, generator=g)
    assert x.shape == (60, 3, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    colours = list(shapes.COLOURS)
    for i in range(60):
        a = shapes.attribute_names(attrs, i)
        assert caps[i] == shapes.caption(a["shape"], a["colour"], a["size"], a["position"])
        cover = (x[i] + 1).amax(0) / 2  # the brightest channel is >= 0.85 inside the shape
        fg = cover > 0.4
        ys, xs = torch.nonzero(fg, as_tuple=True)
        cy, cx = shapes.POSITIONS[a["position"]]
        # the centroid of the drawn pixels lies near the named place (jitter 0.03, triangle offset)
        assert abs(float(xs.float().mean() + 0.5) / 32 - cx) < 0.08
        assert abs(float(ys.float().mean() + 0.5) / 32 - cy) < 0.1
        # the colour of the pixels inside the shape is the named colour
        inside = (x[i][:, fg] + 1) / 2
        rgb = torch.tensor(shapes.COLOURS[a["colour"]])
        nearest = min(colours, key=lambda c: float(((inside.mean(1) - torch.tensor(shapes.COLOURS[c])) ** 2).sum()))
        assert nearest == a["colour"] and torch.allclose(inside.amax(1), rgb, atol=1e-6)


def test_areas_follow_the_geometry():
    r = {"small": 0.12, "large": 0.22}
    expected = {"circle": math.pi, "square": (2 * 0.85) ** 2, "triangle": 3 * math.sqrt(3) / 4}  # times r^2
    for shape, factor in expected.items():
        for size, rad in r.items():
            img = shapes.render(shape, "red", size, "center", image_size=64)
            area = float(((img[0] + 1) / 2 / shapes.COLOURS["red"][0]).sum()) / 64**2
            assert abs(area / (factor * rad**2) - 1) < 0.03, (shape, size)


def test_reproducible_and_validated():
    a = shapes.make_shapes(5, generator=torch.Generator().manual_seed(3))
    b = shapes.make_shapes(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and a[2] == b[2]
    assert shapes.caption("circle", "blue", "large", "center") == "a large blue circle in the center"
    with pytest.raises(ValueError, match="colour"):
        shapes.render("circle", "pink", "small", "center")
    with pytest.raises(ValueError, match="shape"):
        shapes.render("hexagon", "red", "small", "center")
    with pytest.raises(ValueError, match="positive"):
        shapes.make_shapes(0)
