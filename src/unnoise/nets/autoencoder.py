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
schedules assume.

Training runs through the same :class:`~unnoise.train.Trainer` as diffusion (:class:`AutoencoderObjective`;
exact resume, crash-safe checkpoints, torchrun, ``metrics.jsonl``), and a trained autoencoder is a run
directory of the common format: ``config.json`` with ``"kind": "autoencoder"`` and the latent
``"scale"``/``"shift"``, ``model.safetensors`` and ``checkpoints/`` (no pickle).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..checkpoint import load_model
from ..data.memory import TensorDataset
from ..train import TrainConfig, Trainer
from . import register

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


class AutoencoderObjective:
    """The autoencoder's loss per example, as a :class:`~unnoise.train.Trainer` objective (run kind
    ``"autoencoder"``): ``recon + kl_weight * kl`` with ``recon`` the mean absolute (``l1``) or squared
    (``l2``) error over the example's elements and ``kl`` its ``KL(q(z|x) || N(0, I))`` divided by the
    number of input elements.

    The posterior draw is reparameterised, ``z = mu + std * noise``, with ``noise`` the Trainer's
    standard normal draw of the latent's shape (:meth:`noise_shape`), so training is reproducible and
    resumes exactly.  ``sigma`` and ``cond`` are not used.  Also reports ``recon`` and ``kl``.
    """

    kind = "autoencoder"

    def __init__(self, kl_weight: float = 1e-6, loss: str = "l1"):
        if loss not in LOSSES:
            raise ValueError(f"unknown reconstruction loss {loss!r}; choose l1 or l2")
        if not kl_weight >= 0:
            raise ValueError(f"kl_weight must be non-negative, got {kl_weight}")
        self.kl_weight, self.loss = float(kl_weight), loss

    def noise_shape(self, model: Autoencoder, example_shape) -> tuple:
        """One example's latent shape (the reparameterisation noise)."""
        return model.latent_shape(tuple(example_shape))

    def __call__(self, model: Autoencoder, x0, sigma=None, noise=None, cond=None) -> dict:
        post = model.encode(x0)
        z = post.mean + post.std * noise.to(post.mean.dtype)
        recon = model.decode(z)
        err = (recon - x0).abs() if self.loss == "l1" else (recon - x0) ** 2
        rec = err.reshape(err.shape[0], -1).mean(1)
        kl = post.kl() / x0[0].numel()
        return {"loss": rec + self.kl_weight * kl, "recon": rec, "kl": kl}

    def describe(self) -> dict:
        """JSON settings of the objective."""
        return {"name": "autoencoder", "kl_weight": self.kl_weight, "loss": self.loss}


def autoencoder_loss(model: Autoencoder, x: torch.Tensor, kl_weight: float = 1e-6, loss: str = "l1",
                     generator: torch.Generator | None = None) -> dict:
    """``{"loss", "recon", "kl"}`` of :class:`AutoencoderObjective`, batch means (recon per pixel, KL in
    nats per input element), with the posterior noise drawn from ``generator``."""
    objective = AutoencoderObjective(kl_weight, loss)
    shape = (x.shape[0], *objective.noise_shape(model, x.shape[1:]))
    device = generator.device if generator is not None else x.device
    noise = torch.randn(shape, generator=generator, dtype=x.dtype, device=device).to(x.device)
    return {k: v.mean() for k, v in objective(model, x, None, noise, {}).items()}


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


def fit_autoencoder(model: Autoencoder, data, steps: int = 2000, batch_size: int = 64, lr: float = 1e-3,
                    kl_weight: float = 1e-6, loss: str = "l1", seed: int = 0, device: str | torch.device = "cpu",
                    progress: bool = True, config=None, run_dir: str | None = None, info: dict | None = None,
                    augment=None):
    """Train ``model`` by :class:`AutoencoderObjective` through the :class:`~unnoise.train.Trainer`;
    returns the finished Trainer (``model`` holds the trained weights, ``trainer.history`` the log).

    Args:
        data: images ``(N, C, H, W)`` (e.g. in [-1, 1]) or a dataset of ``(image, cond)`` items.
        steps, batch_size, lr, seed, device: used when ``config`` is None (then AdamW with the default
            weight decay 0.01, gradient clipping at 1, no EMA).
        config: a full :class:`~unnoise.train.TrainConfig` instead.
        run_dir: where the run is written (``config.json`` with ``"kind": "autoencoder"``,
            ``model.safetensors``, ``checkpoints/``, ``metrics.jsonl``).  When training finishes, the
            latent ``scale``/``shift`` (:func:`estimate_latent_scale` on up to 4096 training images) and
            the reconstruction ``psnr_db`` of the first 256 are added to ``config.json``, so
            :meth:`unnoise.latent.LatentCodec.from_dir` can read the directory.
        info: extra JSON for ``config.json``.  augment: the Trainer's ``augment(x0, u)`` hook.
    """
    if isinstance(data, torch.Tensor):
        if data.ndim != 4:
            raise ValueError(f"autoencoder training data must be images (N, C, H, W), got {tuple(data.shape)}")
        data = TensorDataset(data)
    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError("steps, batch_size and lr must be positive")
    objective = AutoencoderObjective(kl_weight, loss)
    shape = tuple(data[0][0].shape)
    if len(shape) != 3:
        raise ValueError(f"autoencoder training examples must be images (C, H, W), got {shape}")
    model.latent_shape(shape)
    if config is None:
        config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, weight_decay=1e-2, ema_decay=0.0,
                             grad_clip=1.0, cond_dropout=0.0, seed=seed, log_every=25, device=str(device))
    trainer = Trainer(model, None, data, config, run_dir=run_dir, info=info, augment=augment, objective=objective)
    trainer.fit(progress=progress)
    model.eval()
    if run_dir and trainer.stopped_by is None:
        images = _first_images(data, 4096)
        scale, shift = estimate_latent_scale(trainer.ema, images)
        with torch.no_grad():
            held = images[:256].to(trainer.device)
            rec = trainer.ema.decode(trainer.ema.encode(held).mode()).cpu()
        mse = float(((rec.double() - held.cpu().double()) ** 2).mean())
        psnr_db = float("inf") if mse == 0 else 10.0 * math.log10(4.0 / mse)
        trainer.info.update(scale=scale, shift=shift, psnr_db=psnr_db)
        trainer.save()  # the finished run, now with its latent scale
    return trainer


def _first_images(data, n: int) -> torch.Tensor:
    if hasattr(data, "x"):
        return data.x[:n].cpu()
    return torch.stack([data[i][0] for i in range(min(n, len(data)))])


def load_autoencoder(directory: str, device: str | torch.device = "cpu", ema: bool = True) -> tuple[Autoencoder, dict]:
    """Load an autoencoder run (``unnoise train-autoencoder``, :func:`fit_autoencoder`): ``(model in eval
    mode, config)``; ``config["scale"]``/``config["shift"]`` are the latent scaling."""
    try:
        return load_model(directory, "autoencoder", ema=ema, device=device)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} (write an autoencoder with 'unnoise train-autoencoder')") from None


register("autoencoder", Autoencoder)
