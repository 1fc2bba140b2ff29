"""unnoise: diffusion models in one formulation.

Every forward process is ``x_t = s(t) (x_0 + sigma(t) eps)``; everything downstream talks to one
denoiser ``D(x, sigma, cond) ~ E[x_0 | x_0 + sigma eps = x]``.
"""
from . import analytic, checkpoint, data, denoiser, losses, metrics, nets, samplers, schedules
from .denoiser import Denoiser
from .samplers import sample
from .train import TrainConfig, Trainer
from . import editing, latent, text, upscale  # noqa: E402
from . import likelihood  # noqa: E402
from . import guidance, imaging  # noqa: E402
from .guidance import cfg  # noqa: E402
from . import spectral  # noqa: E402
from . import runs  # noqa: E402
from .runs import Pipeline, load  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Denoiser", "Pipeline", "TrainConfig", "Trainer", "analytic", "checkpoint", "data", "denoiser", "load",
           "losses", "metrics", "nets", "runs", "sample", "samplers", "schedules"]
