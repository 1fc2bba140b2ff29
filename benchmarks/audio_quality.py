"""Spectral quality of generated audio against held-out real clips.

Data: the built-in synthetic notes and chords (8 kHz, 1024-sample clips).  Each model trains for the
same wall-clock budget on the same clips (EDM preconditioning and noise distribution, batch 8), then
draws clips with DPM-Solver++(2M), 30 steps.

Metrics, both against held-out real clips:

* FD: Frechet distance between Gaussian fits of per-clip log-mel features (32 mel bands: the mean and
  the standard deviation of each band over time), see :func:`unnoise.spectral.clip_features`.
* SC-NN: spectral convergence ``|| |X| - |Y| ||_F / || |Y| ||_F`` of each clip to its nearest real
  clip, averaged (0 = an exact magnitude match).

Reference rows: a second set of real clips (the floor: what a perfect model scores with this many
clips), samples of the exact denoiser of the training set (it memorises the training clips, so it
checks the sampling path and lands on the floor), the real clips with randomised Fourier phases (same
average spectrum, no envelope or pitch structure in time) and white noise of the same power.

Run:  .venv/bin/python benchmarks/audio_quality.py --train-seconds 300
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import torch

from unnoise import spectral
from unnoise.analytic import EmpiricalDenoiser
from unnoise.data.audio import synthetic_audio
from unnoise.denoiser import Denoiser
from unnoise.nets.diffwave import DiffWave
from unnoise.nets.unet import UNet
from unnoise.samplers import sample
from unnoise.schedules import get as get_schedule
from unnoise.train import TrainConfig, Trainer

RATE, LENGTH = 8000, 1024


def nearest_convergence(gen: torch.Tensor, real: torch.Tensor, n_fft: int = 256) -> float:
    """Mean over ``gen`` of the spectral convergence to the nearest clip of ``real``."""
    mg = spectral.stft_magnitude(gen[:, 0], n_fft).flatten(1).double()
    mr = spectral.stft_magnitude(real[:, 0], n_fft).flatten(1).double()
    dist = torch.cdist(mg, mr)  # || |X| - |Y| ||_F for every pair
    best = dist.argmin(1)
    return float((dist.gather(1, best[:, None])[:, 0] / mr[best].norm(dim=1)).mean())


def phase_randomised(x: torch.Tensor, generator) -> torch.Tensor:
    spec = torch.fft.rfft(x.double(), dim=-1)
    phase = torch.exp(2j * torch.pi * torch.rand(spec.shape, generator=generator, dtype=torch.float64))
    return torch.fft.irfft(spec.abs() * phase, n=x.shape[-1], dim=-1).float()


def train_and_sample(name, net, data, scale, seconds, n, generator, batch_size=8, lr=5e-3):
    sched = get_schedule("edm")
    den = Denoiser(net, "edm", sched.process, sigma_data=1.0)
    trainer = Trainer(den, sched, data / scale, TrainConfig(steps=10**7, batch_size=batch_size, lr=lr, ema_decay=0.995,
                                                            warmup=50, device="cpu", log_every=100))
    timer = threading.Timer(seconds, trainer.request_stop, args=("time budget",))
    timer.start()
    t0 = time.perf_counter()
    trainer.fit(progress=False)
    timer.cancel()
    train_s = time.perf_counter() - t0
    sigmas = sched.sampling_sigmas(30)
    x = torch.randn(n, 1, LENGTH, generator=generator) * sigmas[0]
    t0 = time.perf_counter()
    gen = sample(trainer.ema, x, sigmas, sampler="dpmpp_2m") * scale
    info = {"params": sum(p.numel() for p in net.parameters()), "steps": trainer.step_count,
            "train_s": train_s, "sample_s": time.perf_counter() - t0}
    print(f"{name}: {info}", file=sys.stderr, flush=True)
    return gen.clamp(-1, 1), info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-seconds", type=float, default=300.0, help="training budget per model (default: 300)")
    p.add_argument("--n", type=int, default=128, help="clips per set (default: 128)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    train = synthetic_audio(4000, LENGTH, RATE, generator=g)
    held = synthetic_audio(2 * args.n, LENGTH, RATE, generator=torch.Generator().manual_seed(1))
    ref, floor_set = held[:args.n], held[args.n:]
    scale = float(train.std())
    feats = lambda c: spectral.clip_features(c, RATE)  # noqa: E731
    ref_feats = feats(ref)

    rows = []

    def add(name, clips, note="", info=None):
        rows.append({"model": name, "fd": spectral.frechet_distance(feats(clips), ref_feats),
                     "sc_nn": nearest_convergence(clips, ref), "note": note, **(info or {})})
        print(rows[-1], file=sys.stderr, flush=True)

    add("real clips (floor)", floor_set, "second held-out set")
    emp = EmpiricalDenoiser(train[:512] / scale)
    sigmas = get_schedule("edm").sampling_sigmas(30)
    x = torch.randn(args.n, 1, LENGTH, generator=g, dtype=torch.float64) * sigmas[0]
    add("exact denoiser of the training set", (sample(emp.denoise, x, sigmas, sampler="dpmpp_2m") * scale).float(),
        "memorises 512 training clips")
    # (network, learning rate): DiffWave as in `unnoise demo audio`; the U-Net, with attention, at a
    # gentler rate
    nets = {
        "DiffWave": (DiffWave(shape=(1, LENGTH), residual_channels=32, layers=10, dilation_cycle=10, emb_dim=64),
                     5e-3),
        "U-Net 1-D": (UNet(shape=(1, LENGTH), base_channels=16, channel_mult=(1, 2, 4, 4, 8), num_res_blocks=1,
                           attention_levels=(4,)), 2e-3),
    }
    for name, (net, lr) in nets.items():
        torch.manual_seed(0)
        gen, info = train_and_sample(name, net, train, scale, args.train_seconds, args.n, g, lr=lr)
        add(name, gen, f"{info['steps']} steps in {info['train_s']:.0f} s", info)
    add("phase-randomised real clips", phase_randomised(floor_set, g), "same spectrum, no structure in time")
    add("white noise", torch.randn(args.n, 1, LENGTH, generator=g) * scale, "same power")

    print(f"\n{args.n} clips per set, {LENGTH} samples at {RATE} Hz; training budget {args.train_seconds:.0f} s per "
          f"model on {args.threads} CPU thread(s)\n")
    print("| clips | FD log-mel (lower is better) | SC to nearest real | note |")
    print("|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['fd']:.1f} | {r['sc_nn']:.3f} | {r['note']} |")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
