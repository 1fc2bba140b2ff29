"""``unnoise demo digits``: a class-conditional U-Net on the bundled 8x8 digits (UCI), sampled
with classifier-free guidance, one row per class (a few minutes on a laptop CPU)."""
from __future__ import annotations

import os
import time

import torch

from ..codecs import ImageCodec
from ..data.images import load_digits
from ..imaging import plot_image_rows, plot_image_trajectory, save_image_grid
from ..pipeline import Pipeline
from ..train import TrainConfig, train_model
from .train_common import stopped_by_signal

# Settings measured to give recognisable digits in under 10 minutes on 2 CPU cores (docs/benchmarks.md).
DIGITS_NET = dict(base_channels=32, channel_mult=[1, 2], num_res_blocks=1, attention_levels=[1], dropout=0.0)
DIGITS_SCHEDULE = "cosine"
DIGITS_PARAM = "v"
DIGITS_STEPS = 3000


def train_digits(run_dir: str | None, steps: int = DIGITS_STEPS, image_size: int = 8, seed: int = 0, device: str = "cpu",
                 data: torch.Tensor | None = None, labels: torch.Tensor | None = None, progress: bool = True,
                 batch_size: int = 128, net_config: dict | None = None):
    """Train the class-conditional digits model; returns the :class:`~unnoise.train.Trainer`.

    ``data``/``labels`` default to all 1797 digits at ``image_size``; pass a subset to hold data out.
    """
    if data is None:
        data, labels, _ = load_digits(image_size)
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=2e-3, ema_decay=0.999, cond_dropout=0.1,
                         warmup=200, seed=seed, device=device, log_every=50)
    info = {"image": {"size": int(data.shape[-1]), "channels": int(data.shape[1]), "num_classes": 10,
                      "class_names": [str(i) for i in range(10)], "source": "digits"}}
    return train_model(data, run_dir, net="unet", net_config={**DIGITS_NET, **(net_config or {}), "num_classes": 10},
                       parameterization=DIGITS_PARAM, schedule=DIGITS_SCHEDULE, config=config, normalize=False,
                       labels=labels, progress=progress, info=info)


def digits_pipeline(denoiser, schedule, shape=(1, 8, 8)) -> Pipeline:
    """A trained (EMA) digits denoiser as an image Pipeline with its 10 classes."""
    return Pipeline(denoiser, schedule, "images", shape, codec=ImageCodec(), num_classes=10,
                    class_names=[str(i) for i in range(10)])


def sample_classes(denoiser, schedule, labels: torch.Tensor, shape, guidance_scale: float = 2.0,
                   sampler: str = "dpmpp_2m", steps: int = 30, generator: torch.Generator | None = None,
                   callback=None) -> torch.Tensor:
    """Samples ``(len(labels), *shape)`` in ``[-1, 1]`` of the given classes under classifier-free guidance."""
    return digits_pipeline(denoiser, schedule, shape).sample(
        len(labels), sampler=sampler, steps=steps, guidance_scale=guidance_scale, class_label=labels.tolist(),
        generator=generator, callback=callback)


def run(args):
    t0 = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    run_dir = os.path.join(args.out, "run")
    # --steps defaults to the toy demos' 5000; digits need fewer to stay within 10 minutes on 2 cores
    steps = DIGITS_STEPS if args.steps == 5000 else args.steps
    device = "cpu" if args.device == "auto" and not torch.cuda.is_available() else args.device
    trainer = train_digits(run_dir, steps=steps, seed=args.seed, device=device)
    code = stopped_by_signal(trainer, run_dir)
    if code is not None:
        return code
    t_train = time.perf_counter() - t0
    den, sched = trainer.ema, trainer.schedule
    g = torch.Generator().manual_seed(args.seed)
    scale, per_class = 2.0, 10
    labels = torch.arange(10).repeat_interleave(per_class)
    imgs = sample_classes(den, sched, labels, (1, 8, 8), guidance_scale=scale, generator=g)
    samples_png = os.path.join(args.out, "samples.png")
    plot_image_rows(list(imgs.split(per_class)), [f"class {k}" for k in range(10)], samples_png,
                    title=f"class-conditional digits, guidance scale {scale:g}, DPM++(2M) 30 steps")
    grid_png = os.path.join(args.out, "grid.png")
    save_image_grid(imgs, grid_png, nrow=per_class)

    # one sample's trajectory: the noisy state and the denoiser's estimate at a few steps
    pipe = digits_pipeline(den, sched)
    noise = pipe.noise(1, g)
    snaps, state = [], {"x": pipe.start(noise, float(pipe.grid(30)[0]))}
    keep = {0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29}

    def grab(i, x_next, denoised, sigma):
        # the callback sees the state after step i; the input of step i is the previous state
        if i in keep:
            snaps.append((float(sigma), state["x"][0].cpu().clone(), denoised[0].clamp(-1, 1).cpu().clone()))
        state["x"] = x_next.clone()

    pipe.sample(1, sampler="dpmpp_2m", steps=30, guidance_scale=scale, class_label=3, noise=noise, generator=g,
                callback=grab)
    traj_png = os.path.join(args.out, "trajectory.png")
    plot_image_trajectory(snaps, traj_png, scale=sched.scale, title="one sample of class 3, from noise to image")
    print(f"\ntrained in {t_train:.0f} s; wrote {samples_png}, {grid_png}, {traj_png}, {run_dir}/loss.png and the "
          f"checkpoint in {run_dir}/ in {time.perf_counter() - t0:.0f} s")
    print(f"next: unnoise sample --checkpoint {run_dir} --class-label 7 --guidance-scale 3 --out sevens.png")
