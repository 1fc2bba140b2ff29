"""Train a diffusion model on your own folder of images, then sample from it.

    .venv/bin/python examples/train_image_folder.py --folder path/to/images --out runs/mine
    .venv/bin/python examples/train_image_folder.py --fast          # makes a tiny folder of PNGs itself

The folder may hold PNG/JPEG files at any depth; if it holds only subfolders, each subfolder is a
class.  Images are resized (shorter side) and centre-cropped to ``--image-size`` and scaled to
[-1, 1].  The same run can be made from the command line with
``unnoise train --data FOLDER --image-size 32 --out runs/mine``.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np
import torch
from PIL import Image, ImageDraw

import unnoise
from unnoise.data.images import load_image_folder
from unnoise.imaging import save_image_grid
from unnoise.train import train_model


def make_folder(root: str, n: int, size: int, seed: int = 0) -> str:
    """Write ``n`` small PNGs of random discs and squares on black (a stand-in for your own photos)."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        img = Image.new("RGB", (size, size))
        draw = ImageDraw.Draw(img)
        r = rng.uniform(0.2, 0.35) * size
        cx, cy = rng.uniform(r, size - r, 2)
        colour = tuple(int(c) for c in rng.integers(80, 256, 3))
        box = [cx - r, cy - r, cx + r, cy + r]
        (draw.ellipse if i % 2 else draw.rectangle)(box, fill=colour)
        img.save(os.path.join(root, f"img_{i:03d}.png"))
    return root


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default=None, help="your image folder (default: a generated one)")
    p.add_argument("--out", default=None, help="run directory (default: a temporary directory)")
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=2000, help="training steps")
    p.add_argument("--fast", action="store_true", help="tiny sizes: a smoke run of the whole path in seconds")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # small model: one thread is fastest on a shared CPU
    out = args.out or tempfile.mkdtemp(prefix="unnoise_images_")
    if args.fast:
        args.image_size, args.steps = 8, 15
    folder = args.folder or make_folder(os.path.join(out, "images"), 16 if args.fast else 256, args.image_size)

    images, labels, classes = load_image_folder(folder, image_size=args.image_size, mode="RGB")
    print(f"{len(images)} images of shape {tuple(images.shape[1:])} from {folder}")
    # a U-Net sized for tiny images; every side must be divisible by 2^(levels - 1)
    net_config = dict(base_channels=8 if args.fast else 32, channel_mult=[1, 2], attention_levels=[],
                      num_res_blocks=1)
    config = unnoise.TrainConfig(steps=args.steps, batch_size=16 if args.fast else 64, lr=2e-3 if args.fast else 1e-3,
                                 log_every=10, checkpoint_every=0)
    trainer = train_model(images, os.path.join(out, "run"), net="unet", net_config=net_config,
                          parameterization="v", schedule="cosine", config=config, normalize=False,
                          progress=not args.fast)

    g = torch.Generator().manual_seed(0)
    samples = unnoise.load(os.path.join(out, "run")).sample(16, sampler="dpmpp_2m", steps=5 if args.fast else 30,
                                                            generator=g)
    grid = os.path.join(out, "samples.png")
    save_image_grid(samples.clamp(-1, 1), grid, nrow=4)
    result = {"images": len(images), "final_loss": trainer.history[-1]["loss"], "samples": grid,
              "samples_finite": bool(torch.isfinite(samples).all()), "run_dir": os.path.join(out, "run")}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
