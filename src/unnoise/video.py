"""Video: one model that generates, predicts and interpolates clips ``(C, T, H, W)`` in ``[-1, 1]``.

Training (MCVD, Voleti et al. 2022; RaMViD, Hoppe et al. 2022): :class:`VideoObjective` draws per example
which frames are known: a prefix with probability ``p_past``, a suffix with probability ``p_future``
(independently; neither, ``(1 - p_past)(1 - p_future)`` of the time, is unconditional generation), of
uniformly drawn lengths with at least one frame left to generate.  Known frames are kept clean (their
noise is zeroed), the network is told which frames they are (``cond["frames"]``, see
:class:`unnoise.nets.VideoUNet`), and only the noised frames count in the loss.  The draws come from the
Trainer's noise generator (:meth:`VideoObjective.noise_shape` asks for four extra standard-normal numbers
per example, turned into uniforms), so they are reproducible from the seed, equal on 1 and N processes
and exact on resume.

Sampling with known frames (:func:`predict`): the known frames stay clean in the sampler's state and in
every network input, the network sees the mask, the rest is denoised from noise by any sampler, and the
known frames are pasted back bitwise.  With the model's exact conditional denoiser this samples the exact
conditional distribution (the tests check it on a Gaussian AR(1) video).  Clips longer than the model's
window are filled window by window from left to right; each window overlaps the previous one by
``overlap`` frames, which (with the known frames inside it) condition it.  ``method="replace"`` or
``"smc"`` instead inpaints with the unconditional model (:mod:`unnoise.editing`), which works for any
denoiser; :meth:`unnoise.runs.Pipeline.inpaint` with a mask over frames does the same for a video pipeline.
"""
from __future__ import annotations

import math
import os

import torch
from tqdm.auto import tqdm

from . import checkpoint, editing, inverse, io, nets, schedules
from .codecs import ImageCodec
from .data.memory import TensorDataset
from .data.video import check_clip, gif_paths, write_gif, write_strip
from .denoiser import Denoiser, expand_sigma
from .losses import x0_weight
from .pipeline import Pipeline
from .processes import Gaussian
from .samplers import DEFAULT_SAMPLER
from .samplers import sample as run_sampler
from .train import TrainConfig, Trainer, data_std

KIND = "video"
METHODS = ("condition", "replace", "smc")
EXTRA_DRAWS = 4  # uniforms per example: keep past?, keep future?, prefix length, suffix length


# ----------------------------------------------------------------------------- training
def frame_masks(u: torch.Tensor, frames: int, p_past: float, p_future: float) -> torch.Tensor:
    """Known-frame masks ``(B, frames)`` (1 = known) from uniforms ``u`` ``(B, 4)``.

    A prefix is known when ``u[:, 0] < p_past``, a suffix when ``u[:, 1] < p_future``; the prefix length
    is uniform in ``[1, T - 1 - suffix?]`` and the suffix length uniform in what is left but one frame, so
    at least one frame is always generated.  One-frame clips have no known frames."""
    idx = torch.arange(frames, device=u.device)
    past = (u[:, 0] < p_past) & (frames >= 2)
    future = (u[:, 1] < p_future) & (frames >= 2 + past.long())
    a = torch.where(past, 1 + torch.floor(u[:, 2] * (frames - 1 - future.long())).long(), 0)
    b = torch.where(future, 1 + torch.floor(u[:, 3] * (frames - 1 - a)).long(), 0)
    return ((idx[None] < a[:, None]) | (idx[None] >= frames - b[:, None])).float()


class VideoObjective:
    """The Trainer objective of a video denoiser trained with random known frames (see the module doc).

    Args:
        p_past: probability that a prefix of frames is known (prediction).
        p_future: probability that a suffix is known (with a prefix: interpolation).
        weighting, min_snr_gamma: the loss weighting (:mod:`unnoise.losses`).
    Returns per example ``{"loss", "known_frames"}`` (the fraction of frames given, logged).
    """

    kind = None  # a diffusion run: the kind "video" comes with the Trainer's info

    def __init__(self, p_past: float = 0.5, p_future: float = 0.25, weighting: str = "uniform",
                 min_snr_gamma: float = 5.0):
        for name, p in (("p_past", p_past), ("p_future", p_future)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        self.p_past, self.p_future = float(p_past), float(p_future)
        self.weighting, self.min_snr_gamma = weighting, float(min_snr_gamma)

    def noise_shape(self, model, example_shape) -> tuple:
        """One flat draw per example: the clip's noise and :data:`EXTRA_DRAWS` numbers for the mask."""
        return (math.prod(example_shape) + EXTRA_DRAWS,)

    def split(self, noise: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(eps shaped like x0, uniforms (B, 4))`` from the Trainer's flat noise."""
        n = math.prod(x0.shape[1:])
        return noise[:, :n].reshape(x0.shape), torch.special.ndtr(noise[:, n:].float())

    def __call__(self, model, x0, sigma, noise, cond):
        eps, u = self.split(noise, x0)
        known = frame_masks(u, x0.shape[2], self.p_past, self.p_future).to(x0.dtype)
        net_cond = {"frames": known}
        if "stills" in cond:  # independent still images: nothing is known, no temporal attention
            known = known * (~cond["stills"].bool()).to(known.dtype)[:, None]
            net_cond = {"frames": known, "stills": cond["stills"]}
        m = known[:, None, :, None, None]
        s = expand_sigma(sigma, x0)
        x = x0 + s * eps * (1 - m)  # known frames clean
        c_skip, c_out, c_in, c_noise = model.precondition(s)
        out = model.net(c_in * x, c_noise.reshape(-1), net_cond).to(x0.dtype)
        target = (x0 - c_skip * x) / c_out
        w = x0_weight(self.weighting, s, c_out, model.sigma_data, self.min_snr_gamma) * c_out**2
        err = (w * (out - target) ** 2 * (1 - m)).reshape(x0.shape[0], -1).sum(1)
        generated = (1 - known).sum(1) * math.prod(x0.shape[1:]) / x0.shape[2]
        return {"loss": err / generated.clamp_min(1), "known_frames": known.mean(1)}

    def describe(self) -> dict:
        """JSON settings of the objective."""
        return {"name": "video_denoising", "p_past": self.p_past, "p_future": self.p_future,
                "weighting": self.weighting, "min_snr_gamma": self.min_snr_gamma}


DEFAULT_NET = dict(base_channels=32, channel_mult=[1, 2, 2], num_res_blocks=1, attention_levels=[],
                   temporal_levels=None, num_heads=4)


def train(data, run_dir: str | None, net_config: dict | None = None, parameterization: str = "v",
          schedule: str = "ddpm", config: TrainConfig | None = None, p_past: float = 0.5, p_future: float = 0.25,
          info: dict | None = None, progress: bool = True) -> Trainer:
    """Train a :class:`~unnoise.nets.VideoUNet` denoiser on a dataset of ``(clip, cond)`` items (or a tensor
    ``(N, C, T, H, W)`` in ``[-1, 1]``) with :class:`VideoObjective`; returns the finished Trainer.  The run
    (kind ``video``) loads with :func:`load`."""
    if isinstance(data, torch.Tensor):
        data = check_clip(data, "training clips")
        if data.ndim != 5:
            raise ValueError(f"training clips must be (N, C, T, H, W), got {tuple(data.shape)}")
        data = TensorDataset(data)
    shape = list(data[0][0].shape)
    if len(shape) != 4:
        raise ValueError(f"video items must be clips (C, T, H, W), got shape {shape}")
    config = config or TrainConfig()
    sched = schedules.get(schedule)
    net_config = {**DEFAULT_NET, **(net_config or {}), "shape": shape}
    with torch.random.fork_rng(devices=[]):  # initial weights from the run's seed, the global RNG untouched
        torch.manual_seed(config.seed)
        model = nets.build("video_unet", **net_config)
    denoiser = Denoiser(model, parameterization, sched.process, sigma_data=data_std(data))
    objective = VideoObjective(p_past, p_future, config.weighting, config.min_snr_gamma)
    run_info = {"kind": KIND, "data": {"shape": shape, "normalization": None, "num_examples": len(data)},
                "video": {"frames": shape[1], "channels": shape[0], "size": shape[2:]}}
    run_info.update(info or {})
    trainer = Trainer(denoiser, sched, data, config, run_dir=run_dir, info=run_info, objective=objective)
    if progress:
        print(f"training video_unet with {nets.count_parameters(model):,} parameters on {len(data):,} clips of "
              f"shape {tuple(shape)} ({parameterization}-prediction, {sched.name} schedule, device {trainer.device}, "
              f"known frames: past {p_past}, future {p_future})")
    trainer.fit(progress=progress)
    return trainer


# ----------------------------------------------------------------------------- runs
def load_video(path: str, config: dict | None = None, device="cpu", ema: bool = True) -> Pipeline:
    """The :class:`~unnoise.pipeline.Pipeline` of a video run (kind ``video``; model space = pixels in [-1, 1]):
    ``pipe.sample(n)`` generates clips ``(n, C, T, H, W)``, :func:`predict` fills in unknown frames."""
    denoiser, schedule, stored = checkpoint.load(path, ema=ema, device=device)
    config = config or stored
    if config.get("kind") != KIND:
        raise ValueError(f"{path!r} is a {config.get('kind')} run, not a video run")
    shape = tuple(config["data"]["shape"])
    return Pipeline(denoiser, schedule, KIND, shape, codec=ImageCodec(), config=config, source=path,
                    tuned_grids=checkpoint.read_tuned_grids(path))


def load(path: str, device="cpu", ema: bool = True) -> Pipeline:
    """Load a video run directory (see :func:`load_video`)."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"run directory {path!r} does not exist")
    return load_video(path, checkpoint.read_config(path), device, ema)


# ----------------------------------------------------------------------------- prediction
def known_mask(known, batch: int, frames: int) -> torch.Tensor:
    """A ``(batch, frames)`` bool mask from frame indices (a list, the same for every clip) or a bool mask
    ``(frames,)`` / ``(batch, frames)``; one-line ValueErrors for indices outside the clip."""
    if isinstance(known, torch.Tensor) and known.dtype == torch.bool:
        if known.shape[-1] != frames or known.ndim > 2:
            raise ValueError(f"the known-frame mask has shape {tuple(known.shape)}; the clip has {frames} frames")
        return known.reshape(-1, frames).expand(batch, frames).clone()
    idx = [int(i) for i in (known.tolist() if isinstance(known, torch.Tensor) else known)]
    bad = [i for i in idx if not 0 <= i < frames]
    if bad:
        raise ValueError(f"known frame index {bad[0]} is out of range for a clip of {frames} frames "
                         f"(indices 0..{frames - 1})")
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    mask[:, idx] = True
    return mask


def windows(frames: int, window: int, overlap: int) -> list[int]:
    """Start frames of the windows that cover ``frames`` frames, left to right, overlapping by ``overlap``."""
    if frames <= window:
        return [0]
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window={window}), got {overlap}")
    starts, s = [], 0
    while s + window < frames:
        starts.append(s)
        s += window - overlap
    return starts + [frames - window]


def _conditioned(den, x_known: torch.Tensor, mask: torch.Tensor):
    """``D(x, sigma)`` with the known frames pasted clean into the input and the output, the mask in cond."""
    m = mask[:, None, :, None, None]
    cond = {"frames": mask.to(x_known.dtype)}

    def denoise(x, sigma, _cond=None):
        return torch.where(m, x_known, den(torch.where(m, x_known, x), sigma, cond))
    return denoise


@torch.no_grad()
def predict(model, clip: torch.Tensor, known, *, frames: int | None = None, window: int | None = None,
            overlap: int | None = None, method: str = "condition", sampler: str | None = None,
            steps: int | None = None, sigmas=None, generator: torch.Generator | None = None, progress: bool = False,
            **options) -> torch.Tensor:
    """Generate the unknown frames of ``clip`` given its known frames; the known frames come back bitwise.

    Prediction when the known frames come first, interpolation when they are the ends, any pattern in general.

    Args:
        model: a video :class:`~unnoise.runs.Pipeline` (data units, its grid and window), or a denoiser
            ``D(x, sigma, cond)`` on clips (then ``sigmas`` is required and data units are model units).
        clip: ``(C, T, H, W)`` or ``(B, C, T, H, W)``; values of unknown frames are ignored (may be NaN).
        known: frame indices known in every clip (e.g. ``[0, 1, 2, 3]``), or a bool mask ``(T,)``/``(B, T)``.
        frames: length of the result (default ``T``); frames beyond ``T`` are generated.
        window: frames the model sees at once (default: a Pipeline's training length, else the whole clip);
            longer results are filled window by window, left to right.
        overlap: frames shared by consecutive windows (default ``window // 2``).
        method: ``condition`` (the model is told the known frames; a model trained by
            :class:`VideoObjective`), ``replace`` or ``smc`` (inpainting with the unconditional model).
        sampler, steps, sigmas: the sampler and grid (default: the Pipeline's default sampler, 50 steps;
            ``replace`` uses ``ddpm``).  generator: all randomness.  **options: sampler options.
    Returns:
        clips shaped like ``clip`` but with ``frames`` frames.
    """
    if method not in METHODS:
        raise ValueError(f"unknown prediction method {method!r}; choose one of {', '.join(METHODS)}")
    single = torch.as_tensor(clip).ndim == 4
    clip = torch.as_tensor(clip)
    if clip.ndim not in (4, 5) or not torch.is_floating_point(clip):
        raise ValueError(f"clip must be a float tensor (C, T, H, W) or (B, C, T, H, W), got shape {tuple(clip.shape)}")
    clip = clip[None] if single else clip
    B, C, T, H, W = clip.shape
    total = T if frames is None else int(frames)
    if total < T:
        raise ValueError(f"frames={total} is shorter than the clip ({T} frames); give frames >= {T}")
    mask = known_mask(known, B, T)
    if T < total:  # frames after the clip are unknown
        mask = torch.cat([mask, torch.zeros(B, total - T, dtype=torch.bool)], 1)
        clip = torch.cat([clip, torch.zeros(B, C, total - T, H, W, dtype=clip.dtype)], 2)
    keep = mask[:, None, :, None, None]
    if not torch.isfinite(torch.where(keep, clip, 0)).all():
        raise ValueError("the known frames contain NaN or inf")
    pipe = model if isinstance(model, Pipeline) else None
    if pipe is not None:
        pipe._require_sampling("predict")
        if (pipe.shape[0], *pipe.shape[2:]) != (C, H, W):
            raise ValueError(f"the model makes frames of shape {(pipe.shape[0], *pipe.shape[2:])} (C, H, W); the clip's "
                             f"frames are {(C, H, W)}: resize the clip to {pipe.shape[2]}x{pipe.shape[3]}")
        den, window = pipe.denoiser, window or pipe.shape[1]
        grid_sampler = "smc" if method == "smc" else (sampler or ("ddpm" if method == "replace" else None))
        sigmas = pipe.grid(steps, None, grid_sampler) if sigmas is None else torch.as_tensor(sigmas)
        device, process = pipe.device, pipe.schedule.forward
        known_model = pipe.encode(torch.where(keep, clip, torch.zeros_like(clip)))
    else:
        if sigmas is None:
            raise ValueError("predict with a plain denoiser needs sigmas (e.g. schedule.sampling_sigmas(50))")
        den, window, device, process = model, window or total, clip.device, Gaussian()
        sigmas = torch.as_tensor(sigmas)
        known_model = torch.where(keep, clip, torch.zeros_like(clip))
    window = min(int(window), total)
    overlap = window // 2 if overlap is None else int(overlap)
    x = known_model.clone()
    have = mask.clone().to(device)
    starts = windows(total, window, overlap)
    for s in tqdm(starts, desc="windows", disable=not progress or len(starts) == 1):
        part = slice(s, s + window)
        m = have[:, part]
        if bool(m.all()):
            continue
        noise = process.noise((B, C, window, H, W), generator).to(device)
        x[:, :, part] = _fill(den, x[:, :, part], m, sigmas, noise, pipe, method, sampler, generator, options)
        have[:, part] = True
    out = pipe.decode(x) if pipe is not None else x
    out = torch.where(keep.to(out.device), clip.to(out.device, out.dtype), out)
    return out[0] if single else out


def _fill(den, x_known, mask, sigmas, noise, pipe, method, sampler, generator, options):
    """One window: the frames where ``mask`` is False generated given the others (model space)."""
    sigma0 = float(sigmas[0])
    start = pipe.start(noise, sigma0) if pipe is not None else noise * sigma0
    m = mask[:, None, :, None, None]
    keep = m.expand_as(x_known)
    if method == "replace":
        return editing.inpaint(den, x_known, keep, sigmas, sampler=sampler or "ddpm", generator=generator,
                               x_init=start, **options)
    if method == "smc":  # sequential Monte Carlo with the known entries as a noiseless Mask measurement
        mask_op = inverse.Mask(keep, x_shape=x_known.shape[1:])
        return inverse.sample(den, start, sigmas, y=x_known, operator=mask_op, method="smc", generator=generator,
                              **options)
    out = run_sampler(_conditioned(den, x_known, mask), torch.where(m, x_known, start), sigmas,
                      sampler=sampler or DEFAULT_SAMPLER, generator=generator, **options)
    return torch.where(m, x_known, out)


# ----------------------------------------------------------------------------- writing samples
EXTENSIONS = (".gif", ".npy", ".png")
WRITES = "animated GIFs (NAME.gif: one per clip, NAME_000.gif, ...), a .npy array or a .png strip (a row per clip)"
DEFAULT_N, DEFAULT_OUT = 8, "clips.gif"


def write_video(pipe, x: torch.Tensor, args, out: str) -> list[str]:
    """Write clips ``(n, C, T, H, W)`` (data units) by the extension of ``out``; returns the paths written.
    GIFs keep the model's frame size (so they can be read back, e.g. by ``unnoise predict``); ``args.fps``
    (default 8) sets their frame rate."""
    ext = os.path.splitext(out)[1].lower()
    if ext == ".npy":
        io.save_npy(out, x.numpy())
        return [out]
    if ext == ".png":
        write_strip(out, x)
        return [out]
    if ext != ".gif":
        raise ValueError(f"--out {out!r}: video runs write {WRITES}")
    fps = float(getattr(args, "fps", None) or 8.0)
    paths = gif_paths(out, len(x))
    for path, clip in zip(paths, x):
        write_gif(path, clip, fps=fps)
    return paths


__all__ = ["DEFAULT_N", "DEFAULT_OUT", "EXTENSIONS", "KIND", "METHODS", "VideoObjective", "frame_masks",
           "known_mask", "load", "load_video", "predict", "train", "windows", "write_video"]
