"""KL-regularised convolutional autoencoder (2-D) for latent diffusion.

The encoder maps an image ``(B, C, H, W)`` to a diagonal Gaussian ``q(z | x) = N(mu, diag(var))``
over latents ``(B, latent_channels, H / f, W / f)`` with ``f = downsample`` (a power of 2); the
decoder maps a latent back.  Training minimises

    loss = recon(x, decode(z)) + kl_weight * KL(q(z | x) || N(0, I)),   z ~ q(z | x),

with ``recon`` the mean absolute (``l1``) or squared (``l2``) error per pixel and the KL in nats per
input element (the per-example closed form ``0.5 sum(mu^2 + var - 1 - log var)`` divided by
``C H W``), so ``kl_weight`` does not depend on the image size.  A small ``kl_weight`` keeps the
latent close to a deterministic code while bounding its scale.

Diffusion then runs on ``(mu - shift) * scale`` with ``scale`` and ``shift`` estimated from data
(:func:`estimate_latent_scale`) so the latents have zero mean and unit variance, which the noise
schedules assume.  Checkpoints: ``autoencoder.safetensors`` + ``autoencoder.json`` (no pickle).
"""
from __future__ import annotations

import json
import math
import os

import torch
from torch import nn
from torch.nn import functional as F

FORMAT = "unnoise-autoencoder"
CONFIG_NAME, WEIGHTS_NAME = "autoencoder.json", "autoencoder.safetensors"
LOSSES = ("l1", "l2")


def _groups(ch: int) -> int:
    for g in (32, 16, 8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class DiagonalGaussian:
    """``N(mean, diag(exp(logvar)))`` over tensors of any shape ``(B, ...)``."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean, self.logvar = mean, logvar.clamp(-30.0, 20.0)  # keeps exp() finite early in training

    @property
    def var(self):
        """Variance ``exp(logvar)``, shaped like the latent."""
        return torch.exp(self.logvar)

    @property
    def std(self):
        """Standard deviation ``exp(logvar / 2)``, shaped like the latent."""
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A reparameterised draw ``mean + std * z``."""
        device = generator.device if generator is not None else self.mean.device
        z = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=device)
        return self.mean + self.std * z.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        """The most likely latent: the mean."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """``KL(q || N(0, I)) = 0.5 sum(mu^2 + var - 1 - log var)`` per example, nats, ``(B,)``."""
        terms = self.mean**2 + self.var - 1.0 - self.logvar
        return 0.5 * terms.reshape(terms.shape[0], -1).sum(1)


class Autoencoder(nn.Module):
    """Convolutional VAE: ``encode(x) -> DiagonalGaussian``, ``decode(z) -> x``.

    Args:
        in_channels: image channels C.
        latent_channels: channels of the latent.
        downsample: spatial factor ``f`` (1, 2, 4, 8, ...); H and W must be divisible by it.
        channels: width of the first level; level ``i`` has ``channels * min(2^i, 4)``.
        blocks: residual blocks per level.
    """

    def __init__(self, in_channels: int = 3, latent_channels: int = 4, downsample: int = 4, channels: int = 32,
                 blocks: int = 1):
        super().__init__()
        if downsample < 1 or downsample & (downsample - 1):
            raise ValueError(f"downsample must be a power of 2 (1, 2, 4, 8, ...), got {downsample}")
        if in_channels < 1 or latent_channels < 1 or channels < 1 or blocks < 1:
            raise ValueError("in_channels, latent_channels, channels and blocks must be positive")
        self.config = dict(in_channels=in_channels, latent_channels=latent_channels, downsample=downsample,
                           channels=channels, blocks=blocks)
        self.in_channels, self.latent_channels, self.downsample = in_channels, latent_channels, downsample
        levels = int(math.log2(downsample))
        widths = [channels * min(2**i, 4) for i in range(levels + 1)]

        enc = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        for i in range(levels + 1):
            c_in = widths[max(i - 1, 0)]
            enc += [_ResBlock(c_in if b == 0 else widths[i], widths[i]) for b in range(blocks)]
            if i < levels:
                enc.append(nn.Conv2d(widths[i], widths[i], 3, stride=2, padding=1))
        enc += [nn.GroupNorm(_groups(widths[-1]), widths[-1]), nn.SiLU(),
                nn.Conv2d(widths[-1], 2 * latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)

        dec = [nn.Conv2d(latent_channels, widths[-1], 3, padding=1)]
        for i in range(levels, -1, -1):
            c_in = widths[min(i + 1, levels)]
            dec += [_ResBlock(c_in if b == 0 else widths[i], widths[i]) for b in range(blocks)]
            if i > 0:
                dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(widths[i], widths[i], 3, padding=1)]
        dec += [nn.GroupNorm(_groups(widths[0]), widths[0]), nn.SiLU(), nn.Conv2d(widths[0], in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def latent_shape(self, shape) -> tuple:
        """Latent shape ``(latent_channels, H / f, W / f)`` of an image shape ``(C, H, W)``."""
        c, h, w = shape
        if c != self.in_channels:
            raise ValueError(f"autoencoder built for {self.in_channels} channels, got images with {c}")
        if h % self.downsample or w % self.downsample:
            raise ValueError(f"image size {h}x{w} is not divisible by the downsampling factor {self.downsample}; "
                             "crop or resize the images")
        return (self.latent_channels, h // self.downsample, w // self.downsample)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """``(B, C, H, W)`` -> posterior over ``(B, latent_channels, H/f, W/f)``."""
        if x.ndim != 4:
            raise ValueError(f"autoencoder expects images (B, C, H, W), got shape {tuple(x.shape)}")
        self.latent_shape(x.shape[1:])
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent_channels, h, w)`` -> ``(B, C, h f, w f)``."""
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(f"latents must have shape (B, {self.latent_channels}, h, w), got {tuple(z.shape)}")
        return self.decoder(z)

    def forward(self, x, generator=None, sample_posterior: bool = True):
        post = self.encode(x)
        z = post.sample(generator) if sample_posterior else post.mode()
        return self.decode(z), post


def autoencoder_loss(model: Autoencoder, x: torch.Tensor, kl_weight: float = 1e-6, loss: str = "l1",
                     generator: torch.Generator | None = None) -> dict:
    """``{"loss", "recon", "kl"}``: recon per pixel, KL in nats per input element, batch means."""
    if loss not in LOSSES:
        raise ValueError(f"unknown reconstruction loss {loss!r}; choose l1 or l2")
    recon, post = model(x, generator)
    err = (recon - x).abs() if loss == "l1" else (recon - x) ** 2
    rec = err.mean()
    kl = post.kl().mean() / x[0].numel()
    return {"loss": rec + kl_weight * kl, "recon": rec, "kl": kl}


@torch.no_grad()
def estimate_latent_scale(model: Autoencoder, data: torch.Tensor, batch_size: int = 256) -> tuple[float, float]:
    """``(scale, shift)`` so that ``(mu - shift) * scale`` has zero mean and unit variance over ``data``.

    Uses the posterior means ``mu`` (the deterministic code the diffusion model is trained on).
    """
    model.eval()
    device = next(model.parameters()).device
    zs = torch.cat([model.encode(data[i:i + batch_size].to(device)).mode().double().cpu()
                    for i in range(0, len(data), batch_size)])
    shift, std = float(zs.mean()), float(zs.std())
    if not math.isfinite(std) or std <= 0:
        raise ValueError("latents have zero or non-finite spread; the autoencoder is untrained or broken")
    return 1.0 / std, shift


def fit_autoencoder(model: Autoencoder, data: torch.Tensor, steps: int = 2000, batch_size: int = 64,
                    lr: float = 1e-3, kl_weight: float = 1e-6, loss: str = "l1", seed: int = 0,
                    device: str | torch.device = "cpu", progress: bool = True, log=None) -> list[dict]:
    """Train ``model`` on images ``(N, C, H, W)`` (e.g. in [-1, 1]) with AdamW; returns the logged history."""
    from tqdm.auto import tqdm
    if data.ndim != 4:
        raise ValueError(f"autoencoder training data must be images (N, C, H, W), got {tuple(data.shape)}")
    if not torch.isfinite(data).all():
        raise ValueError("autoencoder training data contain NaN or inf")
    if steps < 1 or batch_size < 1 or lr <= 0 or kl_weight < 0:
        raise ValueError("steps, batch_size and lr must be positive and kl_weight non-negative")
    model.latent_shape(data.shape[1:])
    g = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    history = []
    bar = tqdm(range(steps), desc="autoencoder", disable=not progress, dynamic_ncols=True)
    for step in bar:
        idx = torch.randint(0, len(data), (batch_size,), generator=g)
        out = autoencoder_loss(model, data[idx].to(device), kl_weight, loss, generator=g)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if not math.isfinite(float(out["loss"].detach())):
            raise FloatingPointError(f"autoencoder loss became non-finite at step {step}; lower the learning rate")
        if (step + 1) % 25 == 0 or step + 1 == steps:
            rec = {"step": step + 1, **{k: float(v.detach()) for k, v in out.items()}}
            history.append(rec)
            bar.set_postfix(recon=f"{rec['recon']:.4f}", kl=f"{rec['kl']:.2f}")
            if log is not None:
                log(rec)
    model.eval()
    return history


def save_autoencoder(directory: str, model: Autoencoder, scale: float = 1.0, shift: float = 0.0,
                     info: dict | None = None) -> None:
    """Write ``autoencoder.json`` (config, latent scale/shift, extra info) and ``autoencoder.safetensors``."""
    from safetensors.torch import save_file

    from ..checkpoint import atomic_write_bytes
    os.makedirs(directory, exist_ok=True)
    config = {"format": FORMAT, "version": 1, "config": model.config, "scale": float(scale), "shift": float(shift),
              **(info or {})}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(os.path.join(directory, WEIGHTS_NAME), lambda p: save_file(tensors, p))

    def write(p):
        with open(p, "w") as f:
            json.dump(config, f, indent=2)
    atomic_write_bytes(os.path.join(directory, CONFIG_NAME), write)


def load_autoencoder(directory: str, device: str | torch.device = "cpu") -> tuple[Autoencoder, dict]:
    """Load a directory written by :func:`save_autoencoder`: ``(model in eval mode, config dict)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    path = os.path.join(directory, CONFIG_NAME)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"autoencoder directory {directory!r} does not exist")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: {directory!r} is not an autoencoder directory "
                                "(write one with 'unnoise train-autoencoder')")
    try:
        with open(path) as f:
            config = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the autoencoder is corrupt") from None
    if config.get("format") != FORMAT:
        raise ValueError(f"{path} is not an unnoise autoencoder config (format={config.get('format')!r})")
    model = Autoencoder(**config["config"])
    try:
        model.load_state_dict(load_file(os.path.join(directory, WEIGHTS_NAME)))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ValueError(f"{directory}/{WEIGHTS_NAME} is missing, corrupt or does not match the config ({err})") from None
    return model.to(device).eval(), config
