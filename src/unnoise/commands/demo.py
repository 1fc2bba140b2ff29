"""``unnoise demo``: train on a built-in data set and write pictures, with no arguments needed."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time

import torch

from .. import checkpoint, io, metrics
from ..data import TOY_DATASETS, toy_dataset
from ..data.datasets import unnormalise
from ..runs import load
from ..plotting import plot_points, plot_trajectory
from ..samplers import sample
from ..train import TrainConfig, train_model
from .demo_audio import run as run_audio
from .demo_digits import run as run_digits
from .demo_text import run as run_text
from .train_common import stopped_by_signal

DEMOS = {name: "2-D point set" for name in TOY_DATASETS}
DEMOS["digits"] = "8x8 handwritten digits, class-conditional U-Net with guidance (3000 steps unless --steps)"
DEMOS["text"] = "text-to-image: latent diffusion with cross-attention on captioned shapes (about 6 minutes)"
DEMOS["audio"] = "synthetic 8 kHz notes and chords, DiffWave; WAV clips and spectrograms (under 10 minutes)"


def register(sub):
    p = sub.add_parser("demo", help="train on a built-in data set and write pictures (about 5 minutes on 2 CPU cores)",
                       description="Train a small model on a built-in data set, sample it with DDPM and DDIM, "
                                   "and write samples.png (data beside samples), trajectory.png (forward noising "
                                   "and reverse denoising) and loss.png to --out.")
    p.add_argument("name", nargs="?", default="swiss_roll", choices=sorted(DEMOS),
                   help="which demo (default: swiss_roll)")
    p.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--steps", type=int, default=5000, help="training steps (default: 5000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the previous demo output in --out (all of it: run/, its checkpoints and metrics)")
    p.set_defaults(func=run)


def clear_out(out: str, overwrite: bool) -> None:
    """A demo writes into a new or empty --out, or replaces a previous demo output as a whole with --overwrite
    (never mixing two runs' checkpoints and metrics); a folder of other files is refused."""
    if os.path.isfile(out):
        raise NotADirectoryError(f"--out {out} is a file; give a folder for the demo's output")
    if not checkpoint.foreign_entries(out):
        return
    previous = any(checkpoint.is_run_dir(os.path.join(out, sub)) for sub in ("run", "autoencoder"))
    if not previous:
        raise FileExistsError(errno.EEXIST, f"--out {out} is a non-empty folder that is not a demo output; choose a "
                                            "new or empty folder")
    if not overwrite:
        raise FileExistsError(errno.EEXIST, f"{out} already holds a demo's output; pass --overwrite to replace it "
                                            "(all of it), or choose another --out")
    for sub in ("run", "autoencoder"):  # not while a demo is writing it
        if os.path.isdir(os.path.join(out, sub)):
            checkpoint.lock_run_dir(os.path.join(out, sub))
            checkpoint.unlock_run_dir(os.path.join(out, sub))
    aside = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out)), prefix=io.TMP_PREFIX + "demo-")
    os.rename(out, os.path.join(aside, "old"))  # atomic: the old output is gone from --out at once
    shutil.rmtree(aside, ignore_errors=True)
    print(f"replaced the previous demo output in {out}")


def run(args):
    clear_out(args.out, args.overwrite)
    if args.name == "digits":
        return run_digits(args)
    if args.name == "text":
        return run_text(args)
    if args.name == "audio":
        return run_audio(args)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    data = toy_dataset(args.name, 20000, g)
    held_out = toy_dataset(args.name, 2000, g)
    run_dir = os.path.join(args.out, "run")
    cfg = TrainConfig(steps=args.steps, batch_size=512, lr=1e-3, ema_decay=0.995, seed=args.seed, device=args.device,
                      warmup=100)
    trainer = train_model(data, run_dir, schedule="ddpm", config=cfg)
    code = stopped_by_signal(trainer, run_dir)
    if code is not None:
        return code
    den, sched, stats = trainer.ema, trainer.schedule, trainer.info["data"]["normalization"]

    n = 2000
    pipe = load(run_dir, device=trainer.device)
    ddpm = pipe.sample(n, "ddpm", steps=1000, generator=g, progress=True)
    ddim = pipe.sample(n, "ddim", steps=50, generator=g)
    samples_png = os.path.join(args.out, "samples.png")
    swd = {k: metrics.sliced_wasserstein(v, held_out, generator=torch.Generator().manual_seed(1))
           for k, v in (("ddpm", ddpm), ("ddim", ddim))}
    floor = metrics.sliced_wasserstein(toy_dataset(args.name, n, g), held_out, generator=torch.Generator().manual_seed(1))
    plot_points({"data": held_out, f"DDPM, 1000 steps (SWD {swd['ddpm']:.3f})": ddpm,
                 f"DDIM, 50 steps (SWD {swd['ddim']:.3f})": ddim}, samples_png,
                title=f"{args.name}: data and samples (data vs data SWD {floor:.3f})")

    # forward noising of the data and reverse DDPM trajectory at the same noise levels
    levels = [0.0, 0.1, 0.3, 0.6, 1.0, 2.0, 157.4]
    normed = (held_out - torch.tensor(stats["mean"])) / torch.tensor(stats["std"])
    forward = [(s, unnormalise(normed + s * torch.randn(normed.shape, generator=g), stats)) for s in levels]
    snaps = {}
    sigmas = sched.sampling_sigmas(1000)

    def grab(i, x, denoised, sigma):
        nxt = float(sigmas[i + 1])
        for lv in levels:
            if lv not in snaps and nxt <= lv:
                snaps[lv] = (nxt, unnormalise(x.detach().cpu().clone(), stats))

    x = torch.randn(n, 2, generator=g) * sigmas[0]
    snaps[levels[-1]] = (float(sigmas[0]), unnormalise(x.clone(), stats))
    sample(den, x, sigmas, sampler="ddpm", generator=g, callback=grab)
    reverse = [snaps[lv] for lv in reversed(levels)]
    traj_png = os.path.join(args.out, "trajectory.png")
    plot_trajectory(forward, reverse, traj_png, scale=sched.scale)

    print(f"\nsliced Wasserstein distance to held-out data: DDPM {swd['ddpm']:.3f}, DDIM {swd['ddim']:.3f} "
          f"(two data samples differ by {floor:.3f})")
    print(f"wrote {samples_png}, {traj_png}, {run_dir}/loss.png and the checkpoint in {run_dir}/ "
          f"in {time.perf_counter() - t0:.0f} s")
    print(f"next: unnoise sample --checkpoint {run_dir} --sampler ddim --steps 20 --plot my_samples.png")
