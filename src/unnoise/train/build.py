"""End-to-end helper used by the command line: train on a tensor of examples (``unnoise.load`` samples the run).

Data are standardised per feature before training (statistics stored in the checkpoint) and
mapped back after sampling, so users see samples in their own units.
"""
from __future__ import annotations

import torch

from .. import nets, schedules
from ..data.memory import TensorDataset
from ..denoiser import Denoiser
from .config import TrainConfig
from .trainer import Trainer


def standardise(data: torch.Tensor, enabled: bool = True):
    """Return ``(normalised data, stats)``; stats = per-feature mean/std lists (or identity)."""
    if not enabled:
        return data, None
    flat = data.reshape(data.shape[0], -1)
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-8)
    stats = {"mean": mean.tolist(), "std": std.tolist()}
    return ((flat - mean) / std).reshape(data.shape), stats


def data_std(dataset, max_examples: int = 512) -> float:
    """Standard deviation of a dataset's examples (the denoiser's ``sigma_data``): exact for an
    in-memory tensor, else from ``max_examples`` evenly spaced examples (a streamed dataset is not
    read whole for it)."""
    if isinstance(dataset, TensorDataset):
        return float(dataset.x.std())
    n = len(dataset)
    idx = torch.linspace(0, n - 1, min(n, max_examples)).round().long().unique()
    return float(torch.stack([dataset[int(i)][0] for i in idx]).double().std())


def train_model(data, run_dir: str | None, net: str = "mlp", net_config: dict | None = None,
                parameterization: str = "v", schedule: str | schedules.Schedule = "ddpm",
                schedule_config: dict | None = None, config: TrainConfig | None = None,
                normalize: bool = True, labels=None, progress: bool = True, info: dict | None = None,
                augment=None, null_cond: dict | None = None, stats: dict | None = None) -> Trainer:
    """Build a denoiser for ``data`` and train it; returns the finished :class:`Trainer`.

    ``data``: a tensor ``(N, ...)`` of examples (standardised per feature when ``normalize``, with
    optional class ``labels``), or a dataset of ``(x0, cond)`` items in model units (an in-memory
    :class:`~unnoise.data.memory.TensorDataset`, a caption dataset, or a streamed
    :class:`~unnoise.data.ImageFolder`, :class:`~unnoise.data.ArrayDataset`, ... ; used as given, so
    ``normalize`` must be False and ``labels`` None; ``stats`` are then the normalisation statistics
    the dataset applies, recorded in the run so samples come back in data units).  ``null_cond``: the
    null value of each droppable condition (see :class:`~unnoise.denoiser.Denoiser`), e.g. the empty
    prompt.  ``info`` is merged into the checkpoint config (e.g. image size, class names); ``augment``
    is the Trainer's per-batch augmentation hook.
    """
    sched = schedules.get(schedule, **(schedule_config or {}))
    if isinstance(data, torch.utils.data.Dataset):
        if normalize or labels is not None:
            raise ValueError("a dataset is trained on as given: pass normalize=False and put labels in its items")
        if stats is not None and hasattr(data, "stats") and data.stats is None:
            data.stats = stats  # the streamed datasets normalise their items with these
        dataset = data
        sigma_data = data_std(dataset)
    else:
        normed, stats = standardise(data, normalize)
        dataset = TensorDataset(normed, None if labels is None else {"label": labels})
        sigma_data = float(normed.std())
    shape = list(dataset[0][0].shape)
    net_config = dict(net_config or {})
    net_config.setdefault("shape", shape)
    model = nets.build(net, **net_config)
    denoiser = Denoiser(model, parameterization, sched.process, sigma_data=sigma_data, null_cond=null_cond)
    run_info = {"data": {"shape": shape, "normalization": stats, "num_examples": len(dataset)}}
    run_info.update(info or {})
    trainer = Trainer(denoiser, sched, dataset, config, run_dir=run_dir, info=run_info, augment=augment)
    if progress:
        print(f"training {net} with {nets.count_parameters(model):,} parameters on {len(dataset):,} examples "
              f"of shape {tuple(shape)} ({parameterization}-prediction, {sched.name} schedule, "
              f"device {trainer.device})")
        print(nets.summary(model))
    trainer.fit(progress=progress)
    return trainer
