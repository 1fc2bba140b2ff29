"""The hot paths against plain loops: the Trainer's step and unnoise.sample's loop, in one run, per precision.

1. Training, images/s.  The same diffusers ``UNet2DModel`` (unnoise's ``diffusers-unet2d`` backbone, eps
   prediction, DDPM schedule) trained by the unnoise Trainer and by the plain loop of diffusers' unconditional
   example (``DDPMScheduler.add_noise``, MSE on eps, grad clip 1.0, AdamW -- fused on CUDA --, ``EMAModel`` with
   foreach), and a residual MLP on 2-D points by the Trainer and by a plain loop of the same loss
   (``denoising_loss``, clip, AdamW, a foreach EMA).  fp32, bf16 autocast and bf16 + ``torch.compile``.
   The Trainer is timed as :meth:`Trainer.fit` runs it: a read of its ledger every ``--log-every`` steps.
   Plain loop and Trainer alternate ``--rounds`` times and the best round of each counts.
2. Sampling, steps/s: ``unnoise.sample`` (``euler`` and ``ipndm``) against a plain Euler loop calling the same
   denoiser (the EMA network of the U-Net run).

Sizes: ``--size small`` (default on the CPU: a 16x16 U-Net with 32 base channels, batch 16; MLP width 256,
batch 512) or ``--size cifar`` (default on CUDA: the DDPM CIFAR-10 layout, 128 base channels, 1-2-2-2, two
residual blocks, attention at 16x16, batch 128 of 32x32; MLP width 512 depth 6, batch 4096).  The script prepares
its own inputs (random images and points: throughput does not depend on the values).

Run on a GPU: ``.venv/bin/python benchmarks/gpu_hot_path.py`` (about 3 minutes on an H200; ``--no-compile`` to
leave out the compiled rows).  On the CPU: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gpu_hot_path.py
--device cpu --no-compile``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import time

import torch
import torch.nn.functional as F

import unnoise
from unnoise.data.memory import TensorDataset
from unnoise.interop import DiffusersUNet2D
from unnoise.losses import denoising_loss
from unnoise.train import TrainConfig, Trainer

SIZES = {
    "small": dict(unet=dict(shape=[3, 16, 16], base_channels=32, channel_mult=[1, 2], num_res_blocks=1,
                            attention_levels=[1], attention_head_dim=8), image_batch=16,
                  mlp=dict(width=256, depth=4), point_batch=512),
    "cifar": dict(unet=dict(shape=[3, 32, 32], base_channels=128, channel_mult=[1, 2, 2, 2], num_res_blocks=2,
                            attention_levels=[1], attention_head_dim=8), image_batch=128,
                  mlp=dict(width=512, depth=6), point_batch=4096),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, step, warmup, steps, read_every=None, read=None) -> float:
    """Seconds per step of ``step()`` after ``warmup`` calls (``read()`` every ``read_every`` steps)."""
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        step()
        if read_every and i % read_every == 0:
            read()
    sync(device)
    return (time.perf_counter() - t0) / steps


def autocast(device, precision):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


# ----------------------------------------------------------------------------- training
def unet_denoiser(size):
    torch.manual_seed(0)
    return unnoise.Denoiser(DiffusersUNet2D(**SIZES[size]["unet"]), parameterization="eps", process="vp")


def mlp_denoiser(size):
    torch.manual_seed(0)
    return unnoise.Denoiser(unnoise.nets.build("mlp", shape=[2], **SIZES[size]["mlp"]))


def trainer_step_time(den, data, batch, device, precision, compile_, args) -> tuple[float, Trainer]:
    cfg = TrainConfig(steps=10**9, batch_size=batch, device=str(device), lr=1e-4, ema_decay=0.9999, grad_clip=1.0,
                      precision=precision, compile=compile_, cond_dropout=0.0, log_every=args.log_every)
    t = Trainer(den, unnoise.schedules.get("ddpm"), data, cfg)
    read = t.ledger.read if hasattr(t, "ledger") else (lambda: None)  # (the Trainer before the ledger)
    return timed(device, t.step, args.warmup, args.steps, args.log_every, read), t


def plain_diffusers_step_time(den, data, batch, device, precision, compile_, args) -> float:
    """diffusers' unconditional training example, reduced to its step (same UNet2DModel, same init)."""
    import diffusers
    from diffusers.training_utils import EMAModel
    unet = copy.deepcopy(den.net.unet).to(device).train()
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    ema = EMAModel(unet.parameters(), decay=0.9999, foreach=True)
    x = data.to(device)
    model = torch.compile(unet) if compile_ else unet

    def step():
        idx = torch.randint(0, len(x), (batch,), device=device)
        x0 = x[idx]
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch,), device=device)
        noisy = sched.add_noise(x0, noise, t)
        with autocast(device, precision):
            pred = model(noisy, t).sample
        loss = F.mse_loss(pred.float(), noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
    return timed(device, step, args.warmup, args.steps)


def plain_unnoise_step_time(den, data, batch, device, precision, compile_, args) -> float:
    """The plainest loop of the same denoiser and loss: the reference for the Trainer's overhead."""
    den = copy.deepcopy(den).to(device).train()
    sched = unnoise.schedules.get("ddpm")
    table = sched.sigmas.to(device=device, dtype=torch.float32)
    opt = torch.optim.AdamW(den.parameters(), lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    params = list(den.parameters())
    ema = [p.detach().clone() for p in params]
    x = data.to(device)
    loss_fn = torch.compile(denoising_loss) if compile_ else denoising_loss

    def step():
        idx = torch.randint(0, len(x), (batch,), device=device)
        x0 = x[idx]
        sigma = table[torch.randint(0, len(table), (batch,), device=device)]
        with autocast(device, precision):
            loss = loss_fn(den, x0, sigma, noise=torch.randn_like(x0))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 1e-4)
    return timed(device, step, args.warmup, args.steps)


# ----------------------------------------------------------------------------- sampling
def sampling_rates(den, shape, n, device, steps, repeats, rounds) -> dict:
    den = den.to(device).eval()
    sched = unnoise.schedules.get("ddpm")
    sigmas = sched.sampling_sigmas(steps, spacing="trailing")
    levels = sigmas.tolist()
    x = torch.randn(n, *shape, device=device) * levels[0]

    def plain():
        y = x
        with torch.no_grad():
            for s, s_next in zip(levels[:-1], levels[1:]):
                d = den(y, torch.full((n,), s, device=device))
                y = y + (s_next - s) * (y - d) / s
        return y

    out = {}
    runs = (("plain Euler loop", plain),
            ("unnoise.sample euler", lambda: unnoise.sample(den, x, sigmas, sampler="euler")),
            ("unnoise.sample ipndm", lambda: unnoise.sample(den, x, sigmas, sampler="ipndm")))
    for _ in range(rounds):
        for name, run in runs:
            out[name] = max(out.get(name, 0.0), steps / timed(device, run, 1, repeats))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda when available)")
    ap.add_argument("--size", choices=sorted(SIZES), default=None, help="default: cifar on CUDA, small on the CPU")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 30 on CUDA, 10 on the CPU)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--log-every", type=int, default=25, help="the Trainer's read-back interval")
    ap.add_argument("--no-compile", action="store_true", help="leave out the bf16 + torch.compile rows")
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=None,
                    help="plain loop and Trainer alternate this many times; the best round counts (default 1 on "
                         "CUDA, 3 on the CPU, where other load comes and goes)")
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    size = args.size or ("cifar" if device.type == "cuda" else "small")
    args.steps = args.steps or (30 if device.type == "cuda" else 10)
    args.rounds = args.rounds or (1 if device.type == "cuda" else 3)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32 here
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"torch {torch.__version__}, {name}, size {size}, {args.steps} timed steps after {args.warmup}, "
          f"load average {os.getloadavg()[0]:.1f}")

    cfg = SIZES[size]
    g = torch.Generator().manual_seed(0)
    images = torch.rand(1024, *cfg["unet"]["shape"], generator=g) * 2 - 1
    points = torch.randn(8192, 2, generator=g)
    precisions = [("fp32", False), ("bf16", False)] + ([] if args.no_compile else [("bf16", True)])
    rows = []
    unet_trained = None
    for label, make, data, batch, plain in (
            ("UNet2DModel", unet_denoiser, images, cfg["image_batch"], plain_diffusers_step_time),
            ("MLP", mlp_denoiser, points, cfg["point_batch"], plain_unnoise_step_time)):
        n_params = sum(p.numel() for p in make(size).parameters())
        for precision, compile_ in precisions:
            column = precision + (" + compile" if compile_ else "")
            t_plain = t_trainer = float("inf")
            for _ in range(args.rounds):
                t_plain = min(t_plain, plain(make(size), data, batch, device, precision, compile_, args))
                t, trainer = trainer_step_time(make(size), TensorDataset(data), batch, device, precision, compile_,
                                               args)
                t_trainer = min(t_trainer, t)
            if label == "UNet2DModel" and unet_trained is None:
                unet_trained = trainer.ema
            rows.append((label, n_params, column, batch / t_plain, batch / t_trainer))
            print(f"  {label} {column}: plain {batch / t_plain:.1f}/s, Trainer {batch / t_trainer:.1f}/s", flush=True)

    print("\n| network (parameters) | precision | plain loop, examples/s | unnoise Trainer, examples/s "
          "| Trainer / plain |\n|---|---|---|---|---|")
    for label, n, column, plain, mine in rows:
        print(f"| {label} ({n / 1e6:.2f} M) | {column} | {plain:.1f} | {mine:.1f} | {mine / plain:.2f}x |")

    rates = sampling_rates(unet_trained, cfg["unet"]["shape"], cfg["image_batch"], device, args.sample_steps,
                           3 if device.type == "cpu" else 10, args.rounds)
    base = rates["plain Euler loop"]
    print(f"\n| sampling, UNet2DModel, batch {cfg['image_batch']}, {args.sample_steps} steps | steps/s | vs plain |"
          "\n|---|---|---|")
    for k, v in rates.items():
        print(f"| {k} | {v:.2f} | {v / base:.2f}x |")


if __name__ == "__main__":
    main()
