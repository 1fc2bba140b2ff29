"""``unnoise demo audio``: train DiffWave on the built-in synthetic notes and chords (8 kHz), then write
real and generated clips as WAV files and a picture of their spectrograms side by side.

Training stops after ``--steps`` steps or :data:`TRAIN_SECONDS` seconds, whichever comes first, so the
whole demo stays within about ten minutes on two CPU cores.
"""
from __future__ import annotations

import os
import threading
import time

import torch

from .. import spectral
from ..data.audio import synthetic_audio, write_wav
from ..denoiser import Denoiser
from ..nets.diffwave import DiffWave
from ..plotting import plot_spectrograms
from ..runs import load
from ..schedules import get as get_schedule
from ..train import TrainConfig, Trainer
from .train_common import stopped_by_signal

SAMPLE_RATE = 8000
CLIP_LENGTH = 1024  # 128 ms at 8 kHz
TRAIN_SECONDS = 460.0
NET_CONFIG = dict(residual_channels=32, layers=10, dilation_cycle=10, emb_dim=64)


def run(args):
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    data = synthetic_audio(4000, CLIP_LENGTH, SAMPLE_RATE, generator=g)
    held_out = synthetic_audio(128, CLIP_LENGTH, SAMPLE_RATE, generator=g)
    # one scalar scale for every sample (not per position), so the model is free of the clip length
    scale = float(data.std())
    stats = {"mean": [0.0], "std": [scale]}
    sched = get_schedule("edm")
    net = DiffWave(shape=(1, CLIP_LENGTH), **NET_CONFIG)
    den = Denoiser(net, "edm", sched.process, sigma_data=1.0)
    run_dir = os.path.join(args.out, "run")
    # small batches and a high rate: in a few hundred CPU steps, more updates beat larger batches
    cfg = TrainConfig(steps=args.steps, batch_size=8, lr=5e-3, ema_decay=0.995, warmup=50, seed=args.seed,
                      device=args.device, log_every=25)
    info = {"data": {"shape": [1, CLIP_LENGTH], "normalization": stats, "num_examples": len(data)},
            "audio": {"sample_rate": SAMPLE_RATE}}
    trainer = Trainer(den, sched, data / scale, cfg, run_dir=run_dir, info=info)
    budget = max(10.0, TRAIN_SECONDS - (time.perf_counter() - t0))
    print(f"training DiffWave ({sum(p.numel() for p in net.parameters()):,} parameters, receptive field "
          f"{net.receptive_field} samples) on synthetic 8 kHz notes and chords for at most {args.steps} steps "
          f"or {budget / 60:.1f} minutes, {torch.get_num_threads()} thread(s)")
    timer = threading.Timer(budget, trainer.request_stop, args=("time limit",))
    timer.daemon = True
    timer.start()
    try:
        trainer.fit(progress=True)
    finally:
        timer.cancel()
    code = stopped_by_signal(trainer, run_dir)
    if code is not None:
        return code

    n = 64
    pipe = load(run_dir, device=trainer.device)  # the run as written, samples in data units
    gen = pipe.sample(n, sampler="dpmpp_2m", steps=30, generator=g).clamp(-1, 1)
    os.makedirs(args.out, exist_ok=True)
    for i in range(4):
        write_wav(os.path.join(args.out, f"real_{i}.wav"), held_out[i], SAMPLE_RATE)
        write_wav(os.path.join(args.out, f"generated_{i}.wav"), gen[i], SAMPLE_RATE)
    png = os.path.join(args.out, "spectrograms.png")
    plot_spectrograms({"real": held_out[:6], "generated": gen[:6]}, SAMPLE_RATE, png)

    feats = lambda clips: spectral.clip_features(clips, SAMPLE_RATE)  # noqa: E731
    fd = spectral.frechet_distance(feats(gen), feats(held_out[:n]))
    floor = spectral.frechet_distance(feats(held_out[n:2 * n]), feats(held_out[:n]))
    noise = spectral.frechet_distance(feats(torch.randn(n, 1, CLIP_LENGTH, generator=g) * scale), feats(held_out[:n]))
    print(f"\nFrechet distance of log-mel features to {n} held-out clips: generated {fd:.1f} "
          f"(real vs real {floor:.1f}, white noise {noise:.1f}) after {trainer.step_count} training steps")
    print(f"wrote {png}, real_*.wav and generated_*.wav (8 kHz, 16-bit) and the checkpoint in {run_dir}/ "
          f"in {time.perf_counter() - t0:.0f} s")
    print(f"next: unnoise sample --checkpoint {run_dir} --n 8 --out clips/ --plot clips.png")
