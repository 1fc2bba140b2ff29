"""unnoise: diffusion models in one formulation.

Every Gaussian forward process is ``x_t = s(t) (x_0 + sigma(t) eps)``, and the other processes (wrapped noise
on angles, ...) implement the same interface (:mod:`unnoise.processes`); everything downstream talks to one
denoiser ``D(x, sigma, cond) ~ E[x_0 | x_0 + sigma eps = x]``.  ``unnoise.load(path)`` reads any trained run
(or a diffusers folder) as a :class:`Pipeline`; :mod:`unnoise.kinds` is the registry of data kinds.
"""
from . import (analytic, checkpoint, data, denoiser, distill, editing, guidance, imaging, inverse, kinds, latent,
               likelihood, losses, metrics, multiview, nets, processes, render, runs, samplers, schedules, spectral,
               text, torus, upscale)
from .denoiser import Denoiser
from .guidance import cfg
from .pipeline import Pipeline
from .runs import load
from .samplers import sample
from .train import TrainConfig, Trainer
from . import interop  # noqa: E402  (registers the diffusers-folder loader; imports diffusers only when used)

__version__ = "0.1.0"

__all__ = ["Denoiser", "Pipeline", "TrainConfig", "Trainer", "analytic", "cfg", "checkpoint", "data", "denoiser",
           "distill", "editing", "guidance", "imaging", "interop", "inverse", "kinds", "latent", "likelihood", "load",
           "losses", "metrics", "multiview", "nets", "processes", "render", "runs", "sample", "samplers", "schedules",
           "spectral", "text", "torus", "upscale"]
