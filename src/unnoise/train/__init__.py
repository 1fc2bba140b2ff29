"""Training loop: AdamW, EMA, warm-up + cosine LR, mixed precision, gradient accumulation,
data-parallel training over processes, crash-safe checkpoints and exact resume.

One loop trains every kind of model: a module and an *objective* that maps this rank's rows
``(x0, sigma, noise, cond)`` to per-example losses (:class:`DenoisingObjective` for a denoiser, the
default; :class:`unnoise.guidance.ClassifierObjective`; :class:`unnoise.nets.autoencoder.AutoencoderObjective`).
Everything below (randomness, data path, checkpoints, resume) is the same for all of them.

How randomness is organised (this is what makes 1 and N processes, and resumed and
uninterrupted runs, agree):

* ``batch_size`` is the *global* batch of one optimizer step (all processes, all accumulation
  micro-batches together).
* Every process draws the *whole* global batch's randomness from identically seeded generators:
  the example indices from an epoch permutation (seeded by ``(seed, epoch)``, so the data position
  is just ``(epoch, offset)``), sigmas, condition dropout and augmentation draws from ``generator`` (CPU) and the noise from
  ``noise_generator`` (on the training device).  Rank ``r`` of ``W`` then takes rows
  ``[r B/W, (r+1) B/W)`` and splits them into ``grad_accum`` micro-batches.  DDP averages the
  gradients, so the update equals the single-process update on the same global batch up to
  float summation order.  Only the local rows of the data are gathered; drawing the noise for the
  whole global batch costs one RNG call of ``B`` examples per process, small next to the network.
* A checkpoint stores all generator states (as byte tensors), the global torch RNG of every rank
  (used by dropout), the data position, the optimizer moments and the step, so ``--resume``
  continues bitwise identically on the same hardware.

Data loading: the data are a map-style dataset whose items are ``(x0, cond)`` (``cond`` a dict of
tensors, ``{}`` when unconditional; an in-memory tensor is wrapped in
:class:`unnoise.data.memory.TensorDataset`).  Batch ``k`` is a pure function of ``k``: it holds
the examples at global positions ``[k B, (k+1) B)`` of the concatenated epoch permutations, so
the data position is derived from the step, prefetching cannot disturb it, and a resumed run
reads exactly the batches an uninterrupted one would (also mid-epoch).  Each rank reads only its
own rows of every batch.  In-memory tensors are gathered directly (on the GPU when they fit);
other datasets are read by a ``torch.utils.data.DataLoader`` with ``num_workers`` worker
processes (decoding happens there), pinned memory and prefetch on CUDA.
"""
from __future__ import annotations

from .build import data_std, standardise, train_model
from .config import LR_DECAYS, PRECISIONS, TrainConfig, TrainingDiverged, lr_at
from .objective import DenoisingObjective
from .order import EpochSampler, _RankBatches
from .trainer import Trainer

__all__ = ["DenoisingObjective", "EpochSampler", "LR_DECAYS", "PRECISIONS", "TrainConfig", "Trainer",
           "TrainingDiverged", "data_std", "lr_at", "standardise", "train_model"]
