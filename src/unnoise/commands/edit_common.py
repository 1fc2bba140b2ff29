"""Shared pieces of ``unnoise inpaint`` and ``unnoise img2img``: loading a run as an image pipeline,
reading input images and masks, building the condition from a prompt or class label."""
from __future__ import annotations

import os

import torch

from .common import add_device_arg, add_sampling_args


class PixelPipeline:
    """Image-space counterpart of :class:`unnoise.latent.LatentPipeline` for runs trained on pixels."""

    def __init__(self, denoiser, schedule, image_shape):
        self.denoiser, self.schedule, self.image_shape = denoiser, schedule, tuple(image_shape)

    def img2img(self, images, strength, sampler="ddim", steps=50, spacing=None, generator=None, cond=None, **options):
        from ..editing import img2img
        return img2img(self.denoiser, images, self.schedule.sampling_sigmas(steps, spacing), strength,
                       sampler=sampler, cond=cond, generator=generator, **options).clamp(-1, 1)

    def inpaint(self, images, mask, sampler="ddpm", steps=50, spacing=None, generator=None, cond=None,
                method="replace", jump_length=10, jump_n_sample=1, particles=16, **options):
        from ..editing import inpaint, inpaint_smc
        sig = self.schedule.sampling_sigmas(steps, spacing)
        keep = torch.as_tensor(mask, dtype=images.dtype).expand_as(images)
        if method == "smc":
            out = inpaint_smc(self.denoiser, images, keep, sig, particles=particles, cond=cond, generator=generator)
        elif method == "replace":
            out = inpaint(self.denoiser, images, keep, sig, sampler=sampler, cond=cond, generator=generator,
                          jump_length=jump_length, jump_n_sample=jump_n_sample, **options)
        else:
            raise ValueError(f"unknown inpainting method {method!r}; choose replace or smc")
        return torch.where(keep.bool(), images, out.clamp(-1, 1))


def add_edit_args(p) -> None:
    p.add_argument("--checkpoint", required=True, help="an image run (pixel or latent) written by 'unnoise train'")
    p.add_argument("--input", required=True, help="input image (PNG/JPEG, resized to the run's size) or .npy (N, C, H, W)")
    p.add_argument("--out", required=True, help="output PNG grid (inputs in the first row) or .npy")
    p.add_argument("--n", type=int, default=4, help="edits per input image (default: 4)")
    p.add_argument("--prompt", default=None, help="text prompt (text-conditioned runs)")
    p.add_argument("--class-label", default=None, help="class index or name (class-conditional runs)")
    p.add_argument("--guidance-scale", type=float, default=1.0, help="classifier-free guidance scale (default: 1)")
    p.add_argument("--autoencoder", default=None, help="autoencoder directory of a latent run (default: the stored one)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_sampling_args(p)
    add_device_arg(p)


def load_pipeline(args, device):
    """``(pipeline, config)`` for a latent or pixel image run."""
    from ..checkpoint import load, read_config
    config = read_config(args.checkpoint)
    if "latent" in config:
        from ..latent import load_latent_run
        return load_latent_run(args.checkpoint, device=device, autoencoder=args.autoencoder)
    if "image" not in config:
        raise ValueError(f"{args.checkpoint!r} is not an image run; editing needs a run trained on images")
    denoiser, schedule, config = load(args.checkpoint, device=device)
    return PixelPipeline(denoiser, schedule, config["data"]["shape"]), config


def read_images(path: str, shape) -> torch.Tensor:
    """``(N, C, H, W)`` in [-1, 1] from an image file (resized to ``shape``) or a .npy array."""
    import numpy as np
    c, h, w = shape
    if not os.path.exists(path):
        raise FileNotFoundError(f"input {path!r} does not exist")
    if path.lower().endswith(".npy"):
        x = torch.from_numpy(np.load(path, allow_pickle=False)).float()
        if x.ndim == 3:
            x = x[None]
        if tuple(x.shape[1:]) != (c, h, w):
            raise ValueError(f"{path}: images must have shape (N, {c}, {h}, {w}) in [-1, 1], got {tuple(x.shape)}")
        return x
    from PIL import Image, UnidentifiedImageError
    try:
        img = Image.open(path).convert("RGB" if c == 3 else "L").resize((w, h), Image.BICUBIC)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    arr = torch.from_numpy(np.asarray(img, dtype=np.float32))
    arr = arr[..., None] if arr.ndim == 2 else arr
    return (arr.permute(2, 0, 1) / 127.5 - 1.0)[None]


def make_cond(args, pipe, config, n: int, device):
    """The condition for ``n`` samples (prompt, class label or none) and the guided pipeline."""
    from ..guidance import cfg
    from .train_images import resolve_labels
    cond = None
    if args.prompt is not None:
        if "text" not in config:
            raise ValueError("--prompt needs a text-conditioned run (unnoise train --latent AE --text)")
        from ..text import TextEncoder, prompt_cond
        cond = prompt_cond(TextEncoder(), args.prompt, n, device)
    elif "text" in config:
        cond = {}  # the empty prompt
    else:
        info = config.get("latent_classes") or config.get("image") or {}
        if args.class_label is not None or info.get("num_classes"):
            cond = resolve_labels(args.class_label, n, info)
            cond = None if cond is None else cond.to(device)
    if cond is not None and args.guidance_scale != 1.0:
        pipe.denoiser = cfg(pipe.denoiser, args.guidance_scale)
    return cond


def write_result(inputs: torch.Tensor, edits: torch.Tensor, path: str) -> None:
    """PNG: one row per input (the input, then its edits); .npy: the edits ``(N, n, C, H, W)``."""
    import numpy as np
    if path.lower().endswith(".npy"):
        np.save(path, edits.numpy())
    elif path.lower().endswith(".png"):
        from ..imaging import save_image_grid
        rows = torch.cat([inputs[:, None], edits], 1)
        save_image_grid(rows.reshape(-1, *inputs.shape[1:]), path, nrow=rows.shape[1])
    else:
        raise ValueError(f"--out must end in .png or .npy, got {path!r}")
