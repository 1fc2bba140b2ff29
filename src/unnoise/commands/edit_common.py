"""Shared pieces of ``unnoise inpaint``, ``img2img`` and ``upscale``: loading an image run with
:func:`unnoise.load`, reading input images, checking the conditioning options, writing the result."""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .. import io, kinds
from ..devices import resolve_device, threads_for_small_model
from ..imaging import save_image_grid
from ..runs import load
from .common import add_device_arg, add_sampling_args, check_guidance_scale


def add_edit_args(p) -> None:
    p.add_argument("--checkpoint", required=True, help="an image run (pixel or latent) written by 'unnoise train'")
    p.add_argument("--input", required=True, help="input image (PNG/JPEG, resized to the run's size) or .npy (N, C, H, W)")
    p.add_argument("--out", required=True, help="output PNG grid (inputs in the first column) or .npy")
    p.add_argument("--n", type=int, default=4, help="edits per input image (default: 4)")
    p.add_argument("--prompt", default=None, help="text prompt (text-conditioned runs)")
    p.add_argument("--class-label", default=None, help="class index or name (class-conditional runs)")
    p.add_argument("--guidance-scale", type=float, default=1.0, help="classifier-free guidance scale (default: 1)")
    p.add_argument("--autoencoder", default=None, help="autoencoder directory of a latent run (default: the stored one)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_sampling_args(p)
    add_device_arg(p)


def load_image_pipeline(args, ability: str):
    """The run of ``--checkpoint`` as a Pipeline, checked to be of a kind that can do ``ability`` (``inpaint``,
    ``img2img``, ``restore``, ``upscale``: see :mod:`unnoise.kinds`); the output checked too."""
    check_result_path(args.out, input_files(args))
    device = resolve_device(args.device)
    pipe = load(args.checkpoint, device=device, autoencoder=args.autoencoder)
    threads_for_small_model([pipe.denoiser, getattr(pipe.codec, "autoencoder", None)], device)
    if not pipe.kind_entry.can(ability):
        raise ValueError(f"{args.checkpoint!r} is a {pipe.kind} run; this command needs a run of "
                         f"{kinds.able(ability)}")
    if getattr(args, "n", 1) < 1:
        raise ValueError(f"--n must be a positive integer, got {args.n}")
    check_guidance_scale(args.guidance_scale)
    if getattr(args, "prompt", None) is not None and pipe.prompt_encoder is None:
        raise ValueError(f"--prompt needs a text-conditioned run; {args.checkpoint!r} is a {pipe.kind} run")
    if getattr(args, "class_label", None) is not None and not pipe.num_classes:
        raise ValueError("--class-label needs a class-conditional run (train it with --conditional)")
    if args.guidance_scale != 1.0 and args.prompt is None and getattr(args, "class_label", None) is None:
        raise ValueError("--guidance-scale needs --prompt or --class-label (the condition to guide towards)")
    return pipe


def read_images(path: str, shape) -> torch.Tensor:
    """``(N, C, H, W)`` in [-1, 1] from an image file (resized to ``shape``) or a .npy array."""
    c, h, w = shape
    if not os.path.exists(path):
        raise FileNotFoundError(f"input {path!r} does not exist")
    if path.lower().endswith(".npy"):
        try:
            x = torch.from_numpy(np.load(path, allow_pickle=False)).float()
        except (ValueError, OSError) as err:
            raise ValueError(f"{path}: not a readable .npy array ({err})") from None
        if x.ndim == 3:
            x = x[None]
        if tuple(x.shape[1:]) != (c, h, w):
            raise ValueError(f"{path}: images must have shape (N, {c}, {h}, {w}) in [-1, 1], got {tuple(x.shape)}")
        if not torch.isfinite(x).all() or x.abs().max() > 1.0 + 1e-3:
            raise ValueError(f"{path}: images must be finite values in [-1, 1] (got range "
                             f"[{float(x.min()):.3g}, {float(x.max()):.3g}])")
        return x
    try:
        img = Image.open(path).convert("RGB" if c == 3 else "L").resize((w, h), Image.BICUBIC)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    arr = torch.from_numpy(np.asarray(img, dtype=np.float32))
    arr = arr[..., None] if arr.ndim == 2 else arr
    return (arr.permute(2, 0, 1) / 127.5 - 1.0)[None]


def check_result_path(path: str, inputs: dict | None = None) -> None:
    """--out is a .png or .npy file that can be written and is none of the ``inputs`` (``{"--input": path}``);
    checked before any model is loaded."""
    if not path.lower().endswith((".png", ".npy")):
        raise ValueError(f"--out must end in .png or .npy, got {path!r}")
    io.check_not_input(path, inputs or {})
    io.check_output_path(path)


def input_files(args) -> dict:
    """The files an editing command reads: ``--input``, ``--mask`` and the file of ``--operator mask:FILE``."""
    inputs = {"--input": getattr(args, "input", None), "--mask": getattr(args, "mask", None)}
    operator = getattr(args, "operator", None)
    if isinstance(operator, str) and operator.startswith("mask:"):
        inputs["--operator mask"] = operator[len("mask:"):]
    return inputs


def write_result(inputs: torch.Tensor, edits: torch.Tensor, path: str) -> None:
    """PNG: one row per input (the input, then its edits); .npy: the edits ``(N, n, C, H, W)``."""
    if path.lower().endswith(".npy"):
        io.save_npy(path, edits.numpy())
    else:
        rows = torch.cat([inputs[:, None], edits], 1)
        save_image_grid(rows.reshape(-1, *inputs.shape[1:]), path, nrow=rows.shape[1])
