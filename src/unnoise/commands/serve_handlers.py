"""What the ``unnoise serve`` page does, without the page: each action is one method of :class:`Models` that
checks its values against :class:`Limits`, calls the :class:`unnoise.Pipeline` method of the library
(``sample``, ``inpaint``, ``restore``, ``img2img``) and turns the result into pictures (uint8 arrays), sounds and a
line of text.  The Gradio layout (:mod:`unnoise.commands.serve_page`) only wires widgets to these methods, so the
tests call exactly the code the page calls.

Bad values raise ``ValueError`` with one line naming the problem (the page shows it as a message); a run whose
weights change on disk while serving raises too, until the page's Reload button loads the new weights.
"""
from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .. import inverse
from ..imaging import image_grid
from ..plotting import plot_points, plot_spectrograms
from ..runs import load
from ..samplers import DEFAULT_SAMPLER
from ..samplers import available as available_samplers
from .restore import shown

INPAINT_METHODS = ("replace", "repaint", "smc", "mmps")  # mmps: Pipeline.restore with a noiseless mask
OPERATORS = ("blur", "downsample", "gray", "mask")  # mask: the painted region is unknown
AUDIO_PLAYERS = 4  # clips shown as players (all of them go into the .npy download)


@dataclass(frozen=True)
class Limits:
    """Bounds on one request, so that one visitor cannot hold the device for hours."""

    max_n: int = 16
    max_steps: int = 200
    max_image_side: int = 2048  # uploaded pictures, in pixels
    max_particles: int = 64


@dataclass(frozen=True)
class Capabilities:
    """Which tabs the page shows for a run, and which condition widgets."""

    sample: bool
    inpaint: bool
    restore: bool
    img2img: bool
    compare: bool
    classes: bool
    prompt: bool
    image: bool
    audio: bool
    vectors: bool


def capabilities(pipe) -> Capabilities:
    """What the page offers for a loaded run: what its kind can do (its entry in :mod:`unnoise.kinds`), shown the
    way its samples are written (an image grid, WAV players, a scatter of points)."""
    entry = pipe.kind_entry
    samples = pipe.denoiser is not None and entry.sample is not None  # upscale runs need a low-resolution input
    image = samples and len(pipe.shape) == 3 and ".png" in entry.sample.extensions
    return Capabilities(sample=samples, inpaint=image and entry.can("inpaint"), restore=image and entry.can("restore"),
                        img2img=image and entry.can("img2img"), compare=samples,
                        classes=samples and bool(pipe.num_classes), prompt=samples and pipe.prompt_encoder is not None,
                        image=image, audio=samples and ".wav" in entry.sample.extensions,
                        vectors=samples and len(pipe.shape) == 1 and pipe.shape[0] >= 2)


class Cancelled(Exception):
    """Raised inside the network call when the visitor pressed Stop."""


def weights_stamp(path: str) -> tuple:
    """Sizes and modification times of a run's configuration and weights (top folder and one level below)."""
    found = []
    for root in [path] + [os.path.join(path, d) for d in sorted(os.listdir(path))
                          if os.path.isdir(os.path.join(path, d)) and d != "checkpoints"]:
        for name in sorted(os.listdir(root)):
            if name.endswith((".safetensors", ".json", ".bin", ".pt")):
                st = os.stat(os.path.join(root, name))
                found.append((os.path.relpath(os.path.join(root, name), path), st.st_size, st.st_mtime_ns))
    return tuple(found)


def display_upscale(shape) -> int:
    """Pixels per model pixel on the page: small images (8x8 digits) are enlarged to about 128 pixels."""
    return max(1, 128 // int(shape[-1]))


def picture(images: torch.Tensor, shape, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """``(N, C, H, W)`` images in [-1, 1] as the uint8 grid the page shows (nearest enlargement, ``pad`` pixels
    between tiles): ``(h, w, 3)`` for colour, ``(h, w)`` for gray.  One image with ``pad=0`` reads back exactly."""
    grid = image_grid(images, nrow=nrow, pad=pad, upscale=display_upscale(shape))
    return grid[..., 0] if grid.shape[2] == 1 else grid


def _int(value, name: str, low: int, high: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not low <= number <= high:
        raise ValueError(f"{name} must be between {low} and {high} (the server's limit), got {int(number)}")
    return int(number)


def _float(value, name: str, low: float = -math.inf, high: float = math.inf) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}], got {value!r}")
    return number


class Models:
    """The runs a server offers; one of them in memory at a time; one job at a time on the device.

    Args:
        runs: run directories (or diffusers folders) by name, in the order of the page's model picker.
        device: where the models run; limits: bounds on each request.
    """

    def __init__(self, runs: dict[str, str], device="cpu", limits: Limits | None = None):
        if not runs:
            raise ValueError("give at least one --checkpoint RUN")
        self.runs = dict(runs)
        self.device = device
        self.limits = limits or Limits()
        self.lock = threading.Lock()  # one job at a time on the device
        self.stop = threading.Event()
        self.pipe = self.name = self.stamp = None
        self.workdir = tempfile.mkdtemp(prefix="unnoise-serve-")
        self.offers = {}  # what each run can do, for the page's tabs: every run loads once (one at a time) to
        for name in reversed(list(self.runs)):  # fail before the server starts; the first stays in memory
            self.offers[name] = capabilities(self.pipeline(name))

    # ------------------------------------------------------------------ the model in memory
    def pipeline(self, name: str | None = None, reload: bool = False):
        """The loaded Pipeline of run ``name`` (default: the one in memory); loads it when another is in memory.
        Raises when the run's weights changed on disk since loading, unless ``reload``."""
        name = name or self.name
        if name not in self.runs:
            raise ValueError(f"unknown model {name!r}; this server offers {', '.join(self.runs)}")
        path = self.runs[name]
        if name == self.name and not reload:
            if weights_stamp(path) != self.stamp:
                raise ValueError(f"the run {path!r} changed on disk since it was loaded (new weights or config); "
                                 "press 'Reload run' to use the new weights")
            return self.pipe
        if not os.path.isdir(path):
            raise FileNotFoundError(f"run directory {path!r} does not exist")
        self.pipe = None  # one model in memory: drop the old one before loading the next
        stamp = weights_stamp(path)
        pipe = load(path, device=self.device)
        if pipe.denoiser is None:
            raise ValueError(f"{path!r} is a {pipe.kind} run, which does not sample; serve a diffusion run")
        self.pipe, self.name, self.stamp = pipe, name, stamp
        return pipe

    def capabilities(self, name: str | None = None) -> Capabilities:
        return capabilities(self.pipeline(name))

    def tabs(self) -> dict[str, bool]:
        """The page's tabs: those that any served run can use (Gradio cannot hide a tab after the page loads)."""
        return {tab: any(getattr(c, tab) for c in self.offers.values())
                for tab in ("sample", "inpaint", "restore", "img2img", "compare")}

    def describe(self, name: str | None = None) -> str:
        """One line for the page: the run in memory and the tabs it can use."""
        pipe = self.pipeline(name)
        caps = capabilities(pipe)
        tabs = [label for tab, label in (("sample", "Sample"), ("inpaint", "Inpaint"), ("restore", "Restore"),
                                         ("img2img", "img2img"), ("compare", "Compare")) if getattr(caps, tab)]
        return f"{pipe.kind} run, shape {pipe.shape}: {', '.join(tabs) or 'no tab'} apply"

    def cancel(self) -> None:
        """Stop the job that is running (it ends at its next network call)."""
        self.stop.set()

    def _run(self, name, work):
        """Run ``work(pipe)`` as the device's only job, counting network calls and honouring Stop."""
        pipe = self.pipeline(name)
        with self.lock:
            self.stop.clear()
            calls = [0]

            def count(module, args):
                if self.stop.is_set():
                    raise Cancelled()
                calls[0] += 1
            hook = pipe.denoiser.register_forward_pre_hook(count) if isinstance(pipe.denoiser, torch.nn.Module) \
                else None
            start = time.perf_counter()
            try:
                out = work(pipe)
            finally:
                if hook is not None:
                    hook.remove()
            return out, calls[0] if hook is not None else None, time.perf_counter() - start

    # ------------------------------------------------------------------ checks shared by the actions
    def _common(self, pipe, n, steps, sampler):
        lim = self.limits
        n = _int(n, "n (number of samples)", 1, lim.max_n)
        steps = _int(steps, "steps", 1, lim.max_steps)
        sampler = sampler or None
        if sampler is not None and sampler not in available_samplers():
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(available_samplers())}")
        return n, steps, sampler

    def _condition(self, pipe, class_label, prompt, guidance_scale):
        caps = capabilities(pipe)
        label = None if class_label in (None, "", "none") else class_label
        if label is not None:
            if not caps.classes:
                raise ValueError("this run is not class-conditional: leave the class empty")
            label = pipe.class_index(label if not str(label).isdigit() else int(label))
        prompt = prompt if prompt else None
        if prompt is not None and not caps.prompt:
            raise ValueError("this run is not text-conditioned: leave the prompt empty")
        scale = _float(guidance_scale, "guidance scale", -50.0, 50.0)
        if scale != 1.0 and label is None and prompt is None:
            raise ValueError("a guidance scale other than 1 needs a class or a prompt to guide towards")
        return dict(class_label=label, prompt=prompt, guidance_scale=scale)

    def _image(self, pipe, image) -> torch.Tensor:
        """A picture from the page (uint8 ``(H, W[, C])``) as ``(1, C, H, W)`` in [-1, 1] at the run's size."""
        if image is None:
            raise ValueError("give an image first (upload one, or press 'Use last sample')")
        arr = np.asarray(image)
        if arr.ndim not in (2, 3) or arr.size == 0:
            raise ValueError(f"not an image: an array of shape {arr.shape}")
        if max(arr.shape[:2]) > self.limits.max_image_side:
            raise ValueError(f"the image is {arr.shape[1]}x{arr.shape[0]} pixels; this server takes at most "
                             f"{self.limits.max_image_side} pixels a side")
        c, h, w = pipe.shape
        pil = Image.fromarray(arr.astype(np.uint8)).convert("RGB" if c == 3 else "L")
        if pil.size != (w, h):  # exact for pictures the page enlarged (whole pixel blocks)
            pil = pil.resize((w, h), Image.BOX if pil.size[0] >= w and pil.size[1] >= h else Image.BICUBIC)
        x = torch.from_numpy(np.asarray(pil, dtype=np.float32))
        x = x[..., None] if x.ndim == 2 else x
        return (x.permute(2, 0, 1) / 127.5 - 1.0)[None]

    def _fill_mask(self, pipe, painted) -> torch.Tensor:
        """``(1, H, W)`` keep-mask (1 = keep) from a painted region (``(h, w)`` booleans, True = fill): a model
        pixel is filled when any painted page pixel falls in it."""
        if painted is None or not np.any(painted):
            raise ValueError("paint the region to fill on the image first")
        _, h, w = pipe.shape
        m = torch.from_numpy(np.asarray(painted, dtype=np.float32))[None, None]
        fill = torch.nn.functional.adaptive_max_pool2d(m, (h, w))[0] > 0
        return (~fill).float()

    # ------------------------------------------------------------------ the actions
    def sample(self, name, sampler, steps, seed, guidance_scale=1.0, class_label=None, prompt=None, n=4,
               on_step=None) -> dict:
        """``n`` samples of run ``name`` with the seed's noise, as ``Pipeline.sample`` draws them.

        ``on_step(i, steps, denoised)`` sees each step's denoised estimate (model space). Returns a dict:
        ``samples`` (data units), ``image`` (uint8 grid, image runs), ``plot`` (a PNG path: vectors' scatter,
        audio spectrograms), ``audio`` (list of ``(rate, int16 array)``), ``npy`` (a download) and ``info``."""
        pipe = self.pipeline(name)
        if not capabilities(pipe).sample:
            raise ValueError(f"a {pipe.kind} run does not sample on this page")
        n, steps, sampler = self._common(pipe, n, steps, sampler)
        cond = self._condition(pipe, class_label, prompt, guidance_scale)
        seed = _int(seed, "seed", 0, 2**63 - 1)
        callback = None if on_step is None else (lambda i, x, den, sigma: on_step(i, steps, den))
        x, nfe, seconds = self._run(name, lambda p: p.sample(
            n, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(seed), callback=callback, **cond))
        return self._present(pipe, x, f"{n} samples, {sampler or DEFAULT_SAMPLER}, {steps} steps, seed {seed}",
                             nfe, seconds)

    def _present(self, pipe, x, what, nfe, seconds) -> dict:
        caps = capabilities(pipe)
        out = {"samples": x, "image": None, "plot": None, "audio": [], "npy": None}
        stem = os.path.join(self.workdir, f"{time.time_ns()}")
        if caps.image:
            out["image"] = picture(x, pipe.shape)
        elif caps.vectors:
            out["plot"] = stem + ".png"
            plot_points({what: x.reshape(len(x), -1)}, out["plot"])
        elif caps.audio:
            rate = int(pipe.config["audio"]["sample_rate"])
            clips = x.clamp(-1, 1)
            out["audio"] = [(rate, (c.mean(0) * 32767).round().to(torch.int16).numpy()) for c in clips[:AUDIO_PLAYERS]]
            out["plot"] = stem + ".png"
            length = int(x.shape[-1])
            plot_spectrograms({what: clips[:8]}, rate, out["plot"], n_fft=min(256, 1 << (length.bit_length() - 1)))
        out["npy"] = stem + ".npy"
        np.save(out["npy"], x.numpy())
        calls = f"{nfe} network evaluations" if nfe is not None else "network evaluations not counted"
        out["info"] = f"{what}: {calls}, {seconds:.2f} s"
        return out

    def inpaint(self, name, image, painted, method="replace", sampler="ddpm", steps=50, seed=0, n=4,
                jump_n_sample=5, particles=16) -> dict:
        """Fill the painted region of ``image`` ``n`` times (``Pipeline.inpaint``); every other pixel is kept.
        Returns ``input`` (uint8, the image with the region shown gray), ``image`` (the fills) and ``info``."""
        pipe = self.pipeline(name)
        if not capabilities(pipe).inpaint:
            raise ValueError(f"a {pipe.kind} run cannot inpaint")
        n, steps, sampler = self._common(pipe, n, steps, sampler)
        if method not in INPAINT_METHODS:
            raise ValueError(f"unknown method {method!r}; choose {', '.join(INPAINT_METHODS)}")
        seed = _int(seed, "seed", 0, 2**63 - 1)
        x = self._image(pipe, image)
        keep = self._fill_mask(pipe, painted)
        opts = {}
        if method == "repaint":
            opts = {"jump_n_sample": _int(jump_n_sample, "RePaint resampling", 2, 20), "jump_length": min(10, steps)}
        if method == "smc":
            opts = {"particles": _int(particles, "particles", 2, self.limits.max_particles)}
        gen = torch.Generator().manual_seed(seed)
        if method == "mmps":
            out, nfe, seconds = self._run(name, lambda p: p.restore(
                x, inverse.Mask(keep, x_shape=p.shape), noise_std=0.0, method="mmps", n=n, steps=steps,
                generator=gen)[0])
        else:
            out, nfe, seconds = self._run(name, lambda p: p.inpaint(
                x.repeat(n, 1, 1, 1), keep, sampler=sampler or "ddpm", steps=steps,
                method="smc" if method == "smc" else "replace", generator=gen, **opts))
        filled = int((keep == 0).sum())
        result = self._present(pipe, out, f"{n} fills of {filled} of {keep.numel()} pixels, {method}, {steps} steps, "
                                          f"seed {seed}", nfe, seconds)
        result["input"] = picture(torch.where(keep.bool(), x, torch.zeros_like(x)), pipe.shape)
        result["keep"] = keep
        result["original"] = x
        return result

    def restore(self, name, image, operator="blur", parameter=1.0, noise=0.0, method="mmps", steps=50, seed=0, n=4,
                painted=None) -> dict:
        """Simulate a measurement of ``image`` (``operator`` with ``parameter``, plus Gaussian ``noise``) and draw
        ``n`` restorations (``Pipeline.restore``). Returns ``measurement`` (uint8), ``image`` and ``info``."""
        pipe = self.pipeline(name)
        if not capabilities(pipe).restore:
            raise ValueError(f"a {pipe.kind} run cannot restore")
        lim = self.limits
        n = _int(n, "n (number of samples)", 1, lim.max_n)
        steps = _int(steps, "steps", 1, lim.max_steps)
        if method not in inverse.available():
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(inverse.available())}")
        noise = _float(noise, "noise level", 0.0, 2.0)
        seed = _int(seed, "seed", 0, 2**63 - 1)
        x = self._image(pipe, image)
        if operator == "blur":
            op = inverse.parse_operator(f"blur:sigma={_float(parameter, 'blur sigma', 0.1, 20.0)}", pipe.shape)
        elif operator == "downsample":
            factor = _int(parameter, "downsampling factor", 2, min(pipe.shape[1:]))
            op = inverse.parse_operator(f"downsample:{factor}", pipe.shape)
        elif operator == "gray":
            if pipe.shape[0] != 3:
                raise ValueError("grayscale needs a colour (3-channel) run")
            op = inverse.parse_operator("gray", pipe.shape)
        elif operator == "mask":
            op = inverse.Mask(self._fill_mask(pipe, painted), x_shape=pipe.shape)
        else:
            raise ValueError(f"unknown operator {operator!r}; choose {', '.join(OPERATORS)}")
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            y = op(x)
        y = y + noise * torch.randn(y.shape, generator=gen)
        out, nfe, seconds = self._run(name, lambda p: p.restore(y, op, noise_std=noise, method=method, n=n,
                                                                steps=steps, generator=gen))
        result = self._present(pipe, out[0], f"{n} restorations, {operator}, {method}, {steps} steps", nfe, seconds)
        result["measurement"] = picture(shown(op, y, pipe.shape).clamp(-1, 1), pipe.shape)
        return result

    def img2img(self, name, image, strength=0.5, sampler=None, steps=50, seed=0, n=4) -> dict:
        """``n`` edits of ``image`` at ``strength`` (``Pipeline.img2img``, SDEdit)."""
        pipe = self.pipeline(name)
        if not capabilities(pipe).img2img:
            raise ValueError(f"a {pipe.kind} run has no img2img")
        n, steps, sampler = self._common(pipe, n, steps, sampler)
        strength = _float(strength, "strength", 0.0, 1.0)
        seed = _int(seed, "seed", 0, 2**63 - 1)
        x = self._image(pipe, image)
        gen = torch.Generator().manual_seed(seed)
        out, nfe, seconds = self._run(name, lambda p: p.img2img(x.repeat(n, 1, 1, 1), strength, sampler=sampler,
                                                                steps=steps, generator=gen))
        return self._present(pipe, out, f"{n} edits, strength {strength:g}, {steps} steps", nfe, seconds)

    def compare(self, name, sampler_a, steps_a, sampler_b, steps_b, seed=0, n=4) -> tuple[dict, dict]:
        """The same noise (from ``seed``) sampled two ways, for side-by-side pictures."""
        pipe = self.pipeline(name)
        if not capabilities(pipe).compare:
            raise ValueError(f"a {pipe.kind} run does not sample")
        n, steps_a, sampler_a = self._common(pipe, n, steps_a, sampler_a)
        _, steps_b, sampler_b = self._common(pipe, n, steps_b, sampler_b)
        seed = _int(seed, "seed", 0, 2**63 - 1)
        noise = pipe.noise(n, torch.Generator().manual_seed(seed))
        results = []
        for sampler, steps in ((sampler_a, steps_a), (sampler_b, steps_b)):
            x, nfe, seconds = self._run(name, lambda p: p.sample(
                n, sampler=sampler, steps=steps, noise=noise, generator=torch.Generator().manual_seed(seed)))
            results.append(self._present(pipe, x, f"{sampler or DEFAULT_SAMPLER}, {steps} steps", nfe, seconds))
        return results[0], results[1]

    def preview(self, pipe, denoised: torch.Tensor) -> np.ndarray | None:
        """The page's live picture of a step's denoised estimate (image runs; None otherwise)."""
        if not capabilities(pipe).image:
            return None
        return picture(pipe.decode(denoised), pipe.shape)


__all__ = ["Cancelled", "Capabilities", "Limits", "Models", "capabilities", "display_upscale", "picture",
           "weights_stamp"]
