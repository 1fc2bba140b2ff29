"""What the Trainer minimises: :class:`DenoisingObjective` (the default) and the module that joins
the trained network and its objective for DDP and torch.compile."""
from __future__ import annotations

import torch

from ..processes import ForwardProcess, Gaussian


class DenoisingObjective:
    """The loss of a :class:`Denoiser` under its forward process (``process.loss``, see :mod:`unnoise.processes`;
    for Gaussian noise :func:`unnoise.losses.denoising_loss` per example), the Trainer's default objective.

    An *objective* is what the Trainer optimises: ``objective(model, x0, sigma, noise, cond)`` returns
    the ``(B,)`` per-example losses, or a dict of ``(B,)`` per-example values with key ``"loss"`` (the
    others, e.g. an accuracy, are averaged over the global batch and logged).  ``x0``/``cond`` are this
    rank's rows of the batch, ``sigma`` ``(B,)`` is drawn from the schedule's training distribution
    (zeros without a schedule) and ``noise`` is the forward process's standard draw of shape
    ``(B, *noise_shape(model, example_shape))``.  ``kind`` names the run kind written to ``config.json`` (None here: a diffusion
    run's kind, ``images``, ``text``, ..., comes with the Trainer's ``info``); ``describe()`` the
    objective's settings (stored under ``"objective"``).  The classifier
    (:class:`unnoise.guidance.ClassifierObjective`) and the autoencoder
    (:class:`unnoise.nets.autoencoder.AutoencoderObjective`) train through the same loop this way.
    """

    kind = None

    def __init__(self, weighting: str = "uniform", min_snr_gamma: float = 5.0, process: ForwardProcess | None = None):
        self.weighting, self.min_snr_gamma = weighting, float(min_snr_gamma)
        self.process = process if process is not None else Gaussian()

    def __call__(self, model, x0, sigma, noise, cond):
        return self.process.loss(model, x0, sigma, noise, cond, self.weighting, self.min_snr_gamma)

    def noise_shape(self, model, example_shape) -> tuple:
        """Shape of one example's noise draw: the example's own."""
        return tuple(example_shape)

    def describe(self) -> dict:
        """JSON settings of the objective."""
        return {"name": "denoising", "weighting": self.weighting, "min_snr_gamma": self.min_snr_gamma}


class _LossModule(torch.nn.Module):
    """The trained module plus its objective in one ``forward``, so DDP and torch.compile see a single module."""

    def __init__(self, module: torch.nn.Module, objective):
        super().__init__()
        self.module, self.objective = module, objective

    def forward(self, x0, sigma, noise, cond):
        out = self.objective(self.module, x0, sigma, noise, cond)
        return out if isinstance(out, dict) else {"loss": out}
