"""Latent diffusion: diffusion on an autoencoder's scaled latents, with images in and out.

The diffusion model is an ordinary denoiser over latents ``z = (mu(x) - shift) * scale`` (``mu`` the
autoencoder's posterior mean, ``scale``/``shift`` estimated so the latents have zero mean and unit
variance), so every sampler, guidance method and editing routine runs unchanged on them.  The
:class:`LatentCodec` maps images to latents and back (and pixel masks to latent masks: a latent cell
is known only when every pixel it covers is known); it is the codec of a latent run's
:class:`unnoise.Pipeline`, which samples, inpaints and edits with images in and out.

A run directory trained with ``unnoise train --latent AE_DIR`` stores ``{"latent": {...}}`` in its
config (the autoencoder's directory, scale, shift and image shape); :func:`unnoise.load` reads it.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data.memory import TensorDataset
from .nets.autoencoder import Autoencoder, load_autoencoder
from .text import CaptionDataset, TextEncoder, empty_prompt
from .train import train_model


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB over whole tensors, ``10 log10(range^2 / MSE)`` (range 2 for [-1, 1])."""
    mse = float(((x.double() - y.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(data_range**2 / mse)).item()


class LatentCodec:
    """Images ``(B, C, H, W)`` <-> scaled latents ``(B, c, H/f, W/f)`` through a KL autoencoder.

    Args:
        autoencoder: a trained :class:`~unnoise.nets.autoencoder.Autoencoder`.
        scale, shift: latents are ``(mu - shift) * scale``.
        source: the autoencoder's directory (stored in run configs so the run can find it again).
    """

    def __init__(self, autoencoder: Autoencoder, scale: float = 1.0, shift: float = 0.0, source: str | None = None):
        self.autoencoder = autoencoder.eval()
        self.scale, self.shift, self.source = float(scale), float(shift), source

    @classmethod
    def from_dir(cls, directory: str, device="cpu") -> "LatentCodec":
        """The codec of an autoencoder run directory (``unnoise train-autoencoder``; its EMA weights and
        the latent ``scale``/``shift`` of its ``config.json``)."""
        model, cfg = load_autoencoder(directory, device)
        if "scale" not in cfg:
            raise ValueError(f"{os.path.join(directory, 'config.json')} has no latent scale: the autoencoder's "
                             f"training did not finish; continue it with 'unnoise train-autoencoder --resume "
                             f"{directory}' and the same options")
        return cls(model, cfg["scale"], cfg.get("shift", 0.0), os.path.abspath(directory))

    @property
    def device(self):
        return next(self.autoencoder.parameters()).device

    @property
    def factor(self) -> int:
        return self.autoencoder.downsample

    def latent_shape(self, image_shape) -> tuple:
        return self.autoencoder.latent_shape(tuple(image_shape))

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """``(B, C, H, W)`` images -> ``(B, c, h, w)`` scaled latents (posterior means), on the images' device."""
        out = [self.autoencoder.encode(images[i:i + batch_size].to(self.device)).mode().to(images.device)
               for i in range(0, len(images), batch_size)]
        return (torch.cat(out) - self.shift) * self.scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int = 256, clamp: bool = True) -> torch.Tensor:
        """``(B, c, h, w)`` scaled latents -> ``(B, C, H, W)`` images (clamped to [-1, 1] by default)."""
        out = [self.autoencoder.decode(latents[i:i + batch_size].to(self.device) / self.scale + self.shift)
               .to(latents.device) for i in range(0, len(latents), batch_size)]
        x = torch.cat(out)
        return x.clamp(-1, 1) if clamp else x

    def latent_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Pixel keep-mask ``(..., H, W)`` (1 = known) -> latent keep-mask ``(..., H/f, W/f)``.

        A latent cell counts as known only if every pixel of its ``f x f`` patch is known, so the
        generated latent region covers the whole hole.
        """
        m = torch.as_tensor(mask, dtype=torch.float32)
        lead = m.shape[:-2]
        flat = m.reshape(-1, 1, *m.shape[-2:])
        if flat.shape[-1] % self.factor or flat.shape[-2] % self.factor:
            raise ValueError(f"mask size {tuple(m.shape[-2:])} is not divisible by the downsampling factor {self.factor}")
        hole = F.max_pool2d(1 - flat, self.factor)
        return (1 - hole).reshape(*lead, *hole.shape[-2:])

    def describe(self, image_shape) -> dict:
        return {"autoencoder": self.source, "scale": self.scale, "shift": self.shift,
                "image_shape": list(image_shape), "latent_shape": list(self.latent_shape(image_shape))}


def encode_dataset(codec: LatentCodec, dataset, batch_size: int = 256, num_workers: int = 0,
                   progress: bool = False):
    """A latent cache: every ``(image, cond)`` item of ``dataset`` encoded once by ``codec``, streamed in
    batches through a DataLoader (``num_workers`` processes decode the images), into an in-memory
    :class:`~unnoise.data.memory.TensorDataset` of ``(latent, cond)`` items.

    Only the latents (``f^2 C / c`` times smaller than the images) and the conditions are kept, so a
    streamed image dataset never has to fit in memory; the Trainer then reads the cache with its fast
    gather path.  ``cond`` tensors are kept per key (all items must carry the same keys).
    """
    if len(dataset) < 1:
        raise ValueError("the image dataset is empty")
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    latents, conds = [], {}
    for images, cond in tqdm(loader, desc="encoding", disable=not progress, dynamic_ncols=True):
        if images.ndim != 4:
            raise ValueError(f"latent diffusion needs images (C, H, W) per item, got {tuple(images.shape[1:])}")
        latents.append(codec.encode(images, batch_size).cpu())
        if conds and set(cond) != set(conds):
            raise ValueError(f"dataset items carry different condition keys ({sorted(cond)} vs {sorted(conds)})")
        for key, value in cond.items():
            conds.setdefault(key, []).append(value)
    return TensorDataset(torch.cat(latents), {k: torch.cat(v) for k, v in conds.items()})


def train_latent(images, autoencoder_dir: str, run_dir: str | None, net: str = "unet",
                 net_config: dict | None = None, labels=None, info: dict | None = None, progress: bool = True,
                 encode_batch: int = 256, captions: list[str] | None = None, text_encoder=None, **train_kwargs):
    """Encode ``images`` with the autoencoder in ``autoencoder_dir`` and train a diffusion model on the latents.

    ``images``: a tensor ``(N, C, H, W)``, or a dataset of ``(image, cond)`` items (e.g. a streamed image
    folder, conditions such as ``{"label": y}`` carried along), encoded once into a latent cache
    (:func:`encode_dataset`) so the images are never all in memory.
    ``train_kwargs`` go to :func:`unnoise.train.train_model` (schedule, parameterization, config, ...);
    latents are not standardised again (the codec's scale already makes them unit variance).
    ``labels``: class labels ``(N,)`` of a class-conditional model.  ``captions``: one string per image
    for a text-conditioned model: the distinct captions are encoded once by ``text_encoder`` (default
    a :class:`~unnoise.text.TextEncoder`) into a :class:`~unnoise.text.CaptionDataset`, the network
    gets cross-attention (``context_dim``), and the denoiser's null condition is the empty prompt
    (caption dropout, classifier-free guidance, sampling without a prompt).  Returns the finished
    :class:`~unnoise.train.Trainer`.
    """
    codec = LatentCodec.from_dir(autoencoder_dir, "cpu")
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"latent diffusion needs images (N, C, H, W), got {tuple(images.shape)}")
        image_shape, n = tuple(images.shape[1:]), len(images)
        latents = codec.encode(images, encode_batch)
    else:
        if labels is not None or captions is not None:
            raise ValueError("a dataset of images carries its own conditions: give labels/captions only with a tensor")
        image_shape, n = tuple(images[0][0].shape), len(images)
        latents = encode_dataset(codec, images, encode_batch, progress=progress)
    info = dict(info or {})
    info.setdefault("kind", "latent_images" if captions is None else "text")
    info["latent"] = codec.describe(image_shape)
    if progress:
        z = latents if isinstance(latents, torch.Tensor) else latents.x
        print(f"encoded {n:,} images {image_shape} -> latents {tuple(z.shape[1:])} (std {float(z.std()):.3f})")
    if captions is None:
        return train_model(latents, run_dir, net=net, net_config=net_config, normalize=False, labels=labels,
                           info=info, progress=progress, **train_kwargs)
    if labels is not None:
        raise ValueError("give captions or class labels, not both")
    encoder = text_encoder if text_encoder is not None else TextEncoder()
    data = CaptionDataset.from_captions(latents, list(captions), encoder)
    null = empty_prompt(encoder, data.table.shape[1])
    net_config = {**dict(net_config or {}), "context_dim": int(data.table.shape[2])}
    net_config.pop("num_classes", None)
    info.setdefault("text", {"captions": data.names, "encoder": "all-MiniLM-L6-v2"})
    if progress:
        print(f"{len(images):,} captioned images, {len(data.names)} distinct captions, prompt table "
              f"{tuple(data.table.shape)}")
    return train_model(data, run_dir, net=net, net_config=net_config, normalize=False, info=info,
                       progress=progress, null_cond=null, **train_kwargs)
