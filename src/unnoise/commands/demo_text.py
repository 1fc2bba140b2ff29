"""``unnoise demo text``: text-to-image with latent diffusion on the captioned shapes set.

Trains, from scratch and offline: a KL autoencoder (32x32 RGB -> 4x8x8 latents), then a
U-Net with cross-attention to the frozen MiniLM token embeddings of the captions, with caption
dropout to the empty prompt so classifier-free guidance works.  Writes a grid of prompts and
guided samples.  About 6 minutes on 2 CPU cores with the defaults (one torch thread).
"""
from __future__ import annotations

import os
import time

import torch

from ..data.shapes import make_shapes
from ..imaging import plot_image_rows
from ..latent import LatentCodec, psnr, train_latent
from ..nets.autoencoder import Autoencoder, fit_autoencoder
from ..runs import load, prompt_encoder
from ..text import TextEncoder
from ..train import TrainConfig
from .train_common import stopped_by_signal

PROMPTS = ["a large red circle in the center", "a small blue square at the top left",
           "a large green triangle at the bottom right", "a small yellow circle at the top right",
           "a large blue triangle at the bottom left", "a small red square in the center",
           "a large yellow square at the top left", "a small green circle at the bottom left"]
DEFAULTS = dict(num_images=4000, ae_steps=600, steps=2000, batch_size=64, guidance=3.0, sample_steps=25)


def train_text_model(out: str, seed: int = 0, num_images: int = 4000, ae_steps: int = 600, steps: int = 2000,
                     batch_size: int = 64, device: str = "cpu", progress: bool = True, log=print,
                     reuse_autoencoder: bool = False):
    """Autoencoder + text-conditioned latent diffusion on shapes; returns ``(pipeline, encoder, info)``.

    ``reuse_autoencoder`` keeps an autoencoder already in ``out/autoencoder`` instead of training one.
    When a signal stopped either training, returns ``(None, None, {"stopped": trainer, "run_dir": ...})``.
    """
    t0 = time.perf_counter()
    images, _, captions = make_shapes(num_images, 32, torch.Generator().manual_seed(seed))
    ae_dir, run_dir = os.path.join(out, "autoencoder"), os.path.join(out, "run")
    torch.manual_seed(seed)
    held = make_shapes(256, 32, torch.Generator().manual_seed(seed + 1))[0]
    if not (reuse_autoencoder and os.path.exists(os.path.join(ae_dir, "config.json"))):
        ae = Autoencoder(3, latent_channels=4, downsample=4, channels=16)
        trainer = fit_autoencoder(ae, images, steps=ae_steps, batch_size=32, lr=2e-3, kl_weight=1e-6, loss="l2",
                                  seed=seed, device=device, progress=progress, run_dir=ae_dir,
                                  info={"data": {"source": "shapes", "shape": [3, 32, 32], "num_examples": len(images)}})
        if trainer.stopped_by:  # Ctrl-C: no diffusion training on a half-trained autoencoder
            return None, None, {"stopped": trainer, "ae_dir": ae_dir, "run_dir": ae_dir}
    codec = LatentCodec.from_dir(ae_dir)
    ae_psnr = psnr(codec.decode(codec.encode(held)), held)
    t_ae = time.perf_counter() - t0
    log(f"autoencoder: held-out PSNR {ae_psnr:.1f} dB ({t_ae:.0f} s)")

    encoder = TextEncoder()
    net_config = dict(shape=[4, 8, 8], base_channels=32, channel_mult=[1, 2], attention_levels=[1], num_res_blocks=1,
                      num_heads=4)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=2e-3, ema_decay=0.999, warmup=100, seed=seed,
                      device=device, cond_dropout=0.1, checkpoint_every=0, log_every=50)
    trainer = train_latent(images, ae_dir, run_dir, net="unet", net_config=net_config, captions=captions,
                           text_encoder=encoder, schedule="cosine", parameterization="v", config=cfg, progress=progress)
    if trainer.stopped_by:
        return None, None, {"stopped": trainer, "ae_dir": ae_dir, "run_dir": run_dir}
    t_all = time.perf_counter() - t0
    log(f"text-conditioned latent diffusion trained ({t_all - t_ae:.0f} s)")
    pipe = load(run_dir, device=device)
    pipe.prompt_encoder = prompt_encoder(encoder=encoder)  # the encoder already loaded
    return pipe, encoder, {"psnr_db": ae_psnr, "train_s": t_all, "ae_dir": ae_dir, "run_dir": run_dir}


def sample_prompts(pipe, prompts, per_prompt: int, guidance: float, steps: int, seed: int = 0,
                   sampler: str = "dpmpp_2m"):
    """Guided samples for each prompt: ``(len(prompts), per_prompt, 3, 32, 32)``."""
    rows = []
    for i, prompt in enumerate(prompts):
        g = torch.Generator().manual_seed(seed + i)
        rows.append(pipe.sample(per_prompt, sampler=sampler, steps=steps, generator=g, prompt=prompt,
                                guidance_scale=guidance))
    return torch.stack(rows)


def run(args):
    t0 = time.perf_counter()
    steps = DEFAULTS["steps"] if args.steps == 5000 else args.steps  # 5000 is the 2-D demos' default
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    os.makedirs(args.out, exist_ok=True)
    pipe, encoder, info = train_text_model(args.out, args.seed, DEFAULTS["num_images"], DEFAULTS["ae_steps"], steps,
                                           DEFAULTS["batch_size"], device)
    if pipe is None:
        return stopped_by_signal(info["stopped"], info["run_dir"]) or 1
    rows = sample_prompts(pipe, PROMPTS, 8, DEFAULTS["guidance"], DEFAULTS["sample_steps"], args.seed)
    path = os.path.join(args.out, "text_samples.png")
    plot_image_rows(list(rows), PROMPTS, path,
                    title=f"prompt -> samples (latent diffusion, guidance {DEFAULTS['guidance']:g}, "
                          f"{DEFAULTS['sample_steps']} DPM-Solver++ steps)")
    print(f"wrote {path}, the autoencoder in {info['ae_dir']}/ and the run in {info['run_dir']}/ "
          f"in {time.perf_counter() - t0:.0f} s")
    print(f"next: unnoise sample --checkpoint {info['run_dir']} --prompt \"a small green triangle at the top right\" "
          f"--guidance-scale 3 --out my_shapes.png")
    return 0
