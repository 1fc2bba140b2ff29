"""Guidance as denoiser combinators: each takes a denoiser and returns another ``D(x, sigma, cond)``,
so it works with every sampler.

Classifier-free guidance (Ho & Salimans 2022).  One network learns both ``D(x, sigma, y)`` and the
unconditional ``D(x, sigma, null)`` (label dropout to the null class).  The guided denoiser

    D_w = D_null + w (D_y - D_null)

is, through Tweedie's ``D = x + sigma^2 grad log p_sigma(x)``, the denoiser of the tilted density
``p(x) p(y | x)^w``: ``w = 0`` is unconditional, ``w = 1`` conditional, ``w > 1`` sharpens the class.

Classifier guidance (Dhariwal & Nichol 2021).  Bayes gives ``log p_sigma(x | y) = log p_sigma(x) +
log p(y | x, sigma) - log p(y)``; the last term does not depend on ``x``, so

    grad log p_sigma(x | y) = grad log p_sigma(x) + grad_x log p(y | x, sigma)

and by Tweedie ``D(x, sigma | y) = x + sigma^2 grad log p_sigma(x | y)``, i.e.

    D_guided = D(x, sigma) + w sigma^2 grad_x log p(y | x, sigma)

with ``w = 1`` the exact conditional denoiser and ``w`` the usual guidance scale.  ``p(y | x, sigma)``
is a classifier of *noisy* inputs (:class:`NoisyClassifier`), trained by :func:`train_classifier`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import nets
from .checkpoint import load_model
from .data.memory import TensorDataset
from .denoiser import as_cond, expand_sigma
from .nets.embeddings import NoiseLevelEmbedding
from .nets.mlp import ResidualBlock
from .nets.unet import _CONV, Downsample, ResBlock
from .train import TrainConfig, Trainer


def _null_fn(denoiser, null_label: int | None):
    """The function mapping a condition to its unconditional version (per key, the denoiser's nulls)."""
    if null_label is not None:
        def label_null(cond):
            cond = as_cond(cond)
            if "label" not in cond:
                raise ValueError("classifier-free guidance with null_label needs cond={'label': ...}")
            return {**cond, "label": torch.full_like(torch.as_tensor(cond["label"]), int(null_label))}
        return label_null
    obj = denoiser
    while obj is not None:  # look through wrappers (guidance combinators, counters) for the model's nulls
        fn = getattr(obj, "null_cond", None)
        if callable(fn) and getattr(obj, "nulls", True):
            return fn
        obj = getattr(obj, "denoiser", None)
    raise ValueError("classifier-free guidance needs a conditional denoiser (one with null conditions, e.g. a "
                     "class-conditional or text-conditioned model) or an explicit null_label")


class ClassifierFreeGuidance(nn.Module):
    """``D(x, sigma, cond) = D(x, sigma, null) + scale * (D(x, sigma, cond) - D(x, sigma, null))``.

    Args:
        denoiser: a conditional denoiser ``D(x, sigma, cond)`` with ``cond`` a dict (``{"label": (B,)}``,
            ``{"context": ..., "context_mask": ...}``, ...; a bare label tensor means ``{"label": labels}``).
            Its unconditional version replaces each condition by the denoiser's null value for that key
            (:meth:`unnoise.denoiser.Denoiser.null_cond`: the null class, the empty prompt); conditions
            without a null (``concat``) stay.
        scale: guidance weight ``w``; 0 gives exactly the unconditional and 1 exactly the conditional
            denoiser (each then costs one call instead of two).
        null_label: guide a plain callable by labels alone, with this index as the null class.
    """

    def __init__(self, denoiser, scale: float, null_label: int | None = None):
        scale = float(scale)
        if not math.isfinite(scale):
            raise ValueError(f"guidance scale must be a finite number, got {scale}")
        null = _null_fn(denoiser, null_label)
        super().__init__()
        self.denoiser, self.scale, self._null = denoiser, scale, null

    def forward(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        if cond is None:
            raise ValueError("classifier-free guidance needs cond (the condition to guide towards)")
        cond = as_cond(cond)
        if self.scale == 1.0:
            return self.denoiser(x, sigma, cond)
        uncond = self.denoiser(x, sigma, self._null(cond))
        if self.scale == 0.0:
            return uncond
        return uncond + self.scale * (self.denoiser(x, sigma, cond) - uncond)


def cfg(denoiser, scale: float, null_label: int | None = None) -> ClassifierFreeGuidance:
    """Classifier-free guided denoiser; see :class:`ClassifierFreeGuidance`."""
    return ClassifierFreeGuidance(denoiser, scale, null_label)


class ClassifierGuidance(nn.Module):
    """``D(x, sigma, y) = D(x, sigma) + scale * sigma^2 * grad_x log p(y | x, sigma)``.

    The correction is the difference of two posterior means, ``scale * (E[x_0 | x, y] - E[x_0 | x])``; when
    the data lie in a box of side ``data_range`` per coordinate (images in [-1, 1]: 2), both means lie in it, so
    the exact correction lies in ``[-scale * data_range, scale * data_range]`` per coordinate, at every noise
    level.  A trained classifier's gradient does not respect that where it learned nothing: at sigma far above
    the data's scale its logits are near the prior, but their gradient does not fall like ``1 / sigma^2``, so
    ``sigma^2 * grad`` grows like sigma (about 2e4 at the first step of a cosine grid, against a data range of 2).
    An ancestral DDPM sampler on a fine grid barely feels one large correction at the top, but an ODE step from
    sigma to a much smaller sigma' carries ``(1 - sigma'/sigma)`` of it into the sample, which saturates.  With
    ``data_range`` given the correction is clipped to that bound (the Tweedie bound above), which leaves an exact
    classifier's correction unchanged.

    Args:
        denoiser: unconditional denoiser ``D(x, sigma)`` (called without cond).
        classifier: callable ``(x, sigma) -> (B, K)`` logits of ``p(y | x, sigma)`` on scale-free noisy
            inputs ``x = x_0 + sigma eps`` (normalised here by a log-softmax).
        scale: guidance weight (1 = the exact conditional denoiser if the classifier is exact).
        data_range: the side of the box the data lie in, per coordinate (None: no clipping).
    """

    def __init__(self, denoiser, classifier, scale: float = 1.0, data_range: float | None = None):
        super().__init__()
        scale = float(scale)
        if not math.isfinite(scale):
            raise ValueError(f"guidance scale must be a finite number, got {scale}")
        if data_range is not None and not (math.isfinite(data_range) and data_range > 0):
            raise ValueError(f"data_range must be a positive number, got {data_range}")
        self.denoiser, self.classifier, self.scale = denoiser, classifier, scale
        self.data_range = None if data_range is None else float(data_range)

    def log_prob_grad(self, x: torch.Tensor, sigma, labels: torch.Tensor) -> torch.Tensor:
        """``grad_x log p(y | x, sigma)`` for integer ``labels`` ``(B,)``, shaped like ``x``."""
        labels = torch.as_tensor(labels, device=x.device).long().reshape(-1)
        if labels.shape[0] == 1 and x.shape[0] > 1:
            labels = labels.expand(x.shape[0])
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            logp = F.log_softmax(self.classifier(xg, sigma).double(), dim=1)
            picked = logp.gather(1, labels[:, None]).sum()
            (grad,) = torch.autograd.grad(picked, xg)
        return grad.to(x.dtype)

    def forward(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        den = self.denoiser(x, sigma)
        if cond is None or self.scale == 0.0:
            return den
        labels = as_cond(cond).get("label")
        if labels is None:
            raise ValueError("classifier guidance needs cond={'label': (B,) class indices}")
        correction = self.scale * expand_sigma(sigma, x) ** 2 * self.log_prob_grad(x, sigma, labels)
        if self.data_range is not None:
            bound = abs(self.scale) * self.data_range
            correction = correction.clamp(-bound, bound)
        return den + correction


# ---------------------------------------------------------------------------------------- classifier
class NoisyClassifier(nn.Module):
    """Classifier of noisy inputs ``p(y | x_0 + sigma eps, sigma)``: ``(x, sigma) -> (B, num_classes)`` logits.

    Inputs are scaled to unit variance by ``1 / sqrt(sigma^2 + sigma_data^2)`` and the network is
    conditioned on ``log(sigma) / 4`` by scale-shift in every block.  Images ``(C, *spatial)`` get a
    small conv net (U-Net encoder blocks, global average pool); vectors ``(d,)`` a residual MLP.

    Args:
        shape: one example's shape.  num_classes: number of classes.
        width: channels (conv) or hidden width (MLP).  depth: blocks / downsampling levels.
        sigma_data: data standard deviation (input scaling).
    """

    def __init__(self, shape, num_classes: int, width: int = 32, depth: int = 2, sigma_data: float = 0.5,
                 emb_dim: int = 64):
        super().__init__()
        shape = [int(s) for s in shape]
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.config = dict(shape=shape, num_classes=num_classes, width=width, depth=depth, sigma_data=sigma_data,
                           emb_dim=emb_dim)
        self.shape, self.num_classes, self.sigma_data = tuple(shape), num_classes, float(sigma_data)
        self.embed = NoiseLevelEmbedding(emb_dim)
        self.image = len(shape) >= 2
        if self.image:
            dims = len(shape) - 1
            if dims not in _CONV:
                raise ValueError(f"classifier supports 1-D to 3-D data, got shape {shape}")
            self.inp = _CONV[dims](shape[0], width, 3, padding=1)
            blocks, ch = [], width
            for i in range(depth):
                blocks += [ResBlock(dims, ch, width * 2**i, emb_dim, 0.0)]
                ch = width * 2**i
                if i < depth - 1:
                    blocks.append(Downsample(dims, ch))
            self.blocks = nn.ModuleList(blocks)
            self.norm = nn.GroupNorm(1, ch)
        else:
            self.inp = nn.Linear(shape[0], width)
            self.blocks = nn.ModuleList(ResidualBlock(width, emb_dim, 0.0) for _ in range(depth))
            self.norm, ch = nn.LayerNorm(width), width
        self.head = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"classifier built for examples of shape {self.shape}, got {tuple(x.shape[1:])}")
        s = expand_sigma(sigma, x)
        emb = self.embed(torch.log(s.reshape(-1).clamp_min(1e-20)) / 4)
        h = self.inp(x * torch.rsqrt(s**2 + self.sigma_data**2))
        for block in self.blocks:
            h = block(h) if isinstance(block, Downsample) else block(h, emb)
        if self.image:
            h = F.silu(self.norm(h)).mean(dim=tuple(range(2, h.ndim)))
        else:
            h = F.silu(self.norm(h))
        return self.head(h)


class ClassifierObjective:
    """Cross-entropy of ``p(y | x_0 + sigma eps, sigma)`` per example: the :class:`~unnoise.train.Trainer`
    objective of a :class:`NoisyClassifier` (run kind ``"classifier"``).

    The Trainer draws ``sigma`` from the schedule's training distribution (so the classifier is
    accurate where guidance uses it) and standard normal ``noise``; the classifier sees
    ``x = x_0 + sigma noise`` and the label ``cond["label"]``.  Also reports the per-example
    ``accuracy`` (argmax equals the label), logged in ``metrics.jsonl``.
    """

    kind = "classifier"

    def __call__(self, model, x0, sigma, noise, cond):
        labels = cond.get("label")
        if labels is None:
            raise ValueError("classifier training needs labelled examples: dataset items (x0, {'label': y})")
        logits = model(x0 + expand_sigma(sigma, x0) * noise, sigma)
        labels = labels.long()
        return {"loss": F.cross_entropy(logits.float(), labels, reduction="none"),
                "accuracy": (logits.argmax(1) == labels).float()}

    def describe(self) -> dict:
        """JSON settings of the objective."""
        return {"name": "cross_entropy"}


def train_classifier(classifier: NoisyClassifier, data, labels=None, schedule=None, steps: int = 1000,
                     batch_size: int = 128, lr: float = 1e-3, seed: int = 0, augment=None, progress: bool = True,
                     config=None, run_dir: str | None = None, info: dict | None = None):
    """Fit ``classifier`` by cross-entropy on ``x_0 + sigma eps`` (:class:`ClassifierObjective`) through
    the :class:`~unnoise.train.Trainer`: exact resume, crash-safe checkpoints, NaN guard, torchrun,
    ``metrics.jsonl`` (loss and accuracy).  Returns the finished Trainer; ``classifier`` holds the
    trained weights.

    Args:
        data: ``(N, ...)`` clean examples with ``labels`` ``(N,)`` integers in ``[0, num_classes)``, or a
            dataset of ``(x0, {"label": y})`` items (then ``labels`` is None).
        schedule: its training sigmas are the noise levels the classifier learns.
        steps, batch_size, lr, seed: used when ``config`` is None (then AdamW with weight decay 1e-4,
            no EMA, no gradient clipping, on the classifier's device).
        augment: the Trainer's ``augment(x0, u)`` hook (e.g. :func:`unnoise.data.images.flip_rows`).
        config: a full :class:`~unnoise.train.TrainConfig` instead.
        run_dir: where the run is written (``config.json`` with ``"kind": "classifier"``,
            ``model.safetensors``, ``checkpoints/``, ``metrics.jsonl``); read it with :func:`load_classifier`.
        info: extra JSON for ``config.json`` (e.g. ``{"class_names": [...]}``).
    """
    if schedule is None:
        raise ValueError("train_classifier needs the schedule whose training noise levels the classifier learns")
    if isinstance(data, torch.Tensor):
        if labels is None:
            raise ValueError("a tensor of examples needs labels (N,) for classifier training")
        labels = torch.as_tensor(labels).long()
        if len(labels) != len(data):
            raise ValueError(f"{len(labels)} labels for {len(data)} examples")
        if labels.min() < 0 or labels.max() >= classifier.num_classes:
            raise ValueError(f"labels must lie in [0, {classifier.num_classes}), got range "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        data = TensorDataset(data, {"label": labels})
    elif labels is not None:
        raise ValueError("give labels only with a tensor of examples; dataset items carry their own {'label': y}")
    if config is None:
        device = next(classifier.parameters()).device
        config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, weight_decay=1e-4, ema_decay=0.0,
                             grad_clip=0.0, cond_dropout=0.0, seed=seed, log_every=25, device=str(device))
    info = {"class_names": [str(i) for i in range(classifier.num_classes)], **(info or {})}
    trainer = Trainer(classifier, schedule, data, config, run_dir=run_dir, info=info, augment=augment,
                      objective=ClassifierObjective())
    trainer.fit(progress=progress)
    classifier.eval()
    return trainer


def load_classifier(directory: str, device="cpu", ema: bool = True):
    """Load a classifier run written by :func:`train_classifier` (``unnoise train-classifier``): returns
    ``(classifier in eval mode, config)`` (``config["class_names"]``, ``config["schedule"]``, ...)."""
    return load_model(directory, "classifier", ema=ema, device=device)


nets.register("noisy_classifier", NoisyClassifier)


__all__ = ["ClassifierFreeGuidance", "ClassifierGuidance", "ClassifierObjective", "NoisyClassifier", "cfg",
           "load_classifier", "train_classifier"]
