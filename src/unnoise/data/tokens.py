"""Text as token sequences: codecs between text and integer tokens, a corpus file encoded in one streaming pass,
and the dataset of fixed-length windows of it that the ``tokens`` kind trains on.

* :class:`CharCodec` (the default): one token per character of the corpus's alphabet (sorted, so the same
  corpus always gives the same codec).
* :class:`TokenizerCodec`: a trained ``tokenizers`` tokenizer (its ``tokenizer.json``; ``pip install
  'unnoise[tokens]'``), e.g. a byte-pair encoding trained with the ``tokenizers`` library.

:func:`encode_corpus` reads the file in chunks (never whole into memory as text) into a 1-D array of token ids
of the smallest unsigned type that holds them (one byte per character for an alphabet of at most 256), and
:class:`TokenWindows` serves windows of ``seq_len`` tokens from it, so training reads no more than the
corpus's own size.
"""
from __future__ import annotations

import codecs
import json
import os

import numpy as np
import torch

TOKENIZERS_HINT = "pip install 'unnoise[tokens]'  (or: pip install tokenizers)"
CHUNK = 1 << 20  # characters read at a time


def _chunks(path: str, size: int | None = None):
    """The text of a UTF-8 file in pieces of about ``size`` characters (incremental decoding: a character split
    across two reads is joined), with a one-line error for a file that is not UTF-8 text."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, size = 0, size or CHUNK
    with open(path, "rb") as f:
        while True:
            raw = f.read(size)
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as err:
                raise ValueError(f"{path} is not UTF-8 text (byte {offset + err.start}); save it as UTF-8") from None
            offset += len(raw)
            if text:
                yield text
            if not raw:
                return


class CharCodec:
    """Characters <-> tokens over a fixed alphabet (``alphabet[i]`` is token ``i``)."""

    name = "chars"

    def __init__(self, alphabet):
        alphabet = list(alphabet)
        if not alphabet or any(not isinstance(c, str) or len(c) != 1 for c in alphabet) or \
                len(set(alphabet)) != len(alphabet):
            raise ValueError("a character alphabet is a non-empty list of distinct single characters")
        self.alphabet = alphabet
        self.index = {c: i for i, c in enumerate(alphabet)}

    @classmethod
    def from_file(cls, path: str) -> "CharCodec":
        """The alphabet of a corpus file (read in chunks)."""
        seen: set[str] = set()
        for text in _chunks(path):
            seen.update(text)
        if not seen:
            raise ValueError(f"{path} is empty: give a text file with the corpus to train on")
        return cls(sorted(seen))

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)

    def encode(self, text: str) -> list[int]:
        """Tokens of ``text``; a one-line error naming the first character outside the alphabet."""
        try:
            return [self.index[c] for c in text]
        except KeyError as err:
            raise ValueError(f"the character {err.args[0]!r} does not occur in the training corpus, so the model "
                             "has no token for it; remove or replace it") from None

    def decode(self, tokens) -> str:
        return "".join(self.alphabet[int(t)] for t in tokens)

    def config(self) -> dict:
        return {"name": self.name, "alphabet": "".join(self.alphabet)}


class TokenizerCodec:
    """A trained ``tokenizers`` tokenizer as a codec (``tokenizer.json`` text or a path to it)."""

    name = "tokenizer"

    def __init__(self, tokenizer_json: str):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ValueError(f"a tokenizer needs the tokenizers package: {TOKENIZERS_HINT}") from None
        if os.path.exists(tokenizer_json):
            with open(tokenizer_json) as f:
                tokenizer_json = f.read()
        try:
            self.tokenizer = Tokenizer.from_str(tokenizer_json)
        except Exception as err:  # tokenizers raises its own exception type
            raise ValueError(f"not a tokenizers tokenizer.json ({str(err).splitlines()[0][:200]})") from None
        self.json = tokenizer_json

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if text and not ids:
            raise ValueError(f"the tokenizer gives no tokens for {text[:40]!r}")
        return ids

    def decode(self, tokens) -> str:
        return self.tokenizer.decode([int(t) for t in tokens], skip_special_tokens=False)

    def config(self) -> dict:
        return {"name": self.name, "tokenizer": json.loads(self.json)}


def codec_from_config(config: dict):
    """The codec a run stored (:meth:`CharCodec.config` / :meth:`TokenizerCodec.config`)."""
    if config.get("name") == "chars":
        return CharCodec(list(config["alphabet"]))
    if config.get("name") == "tokenizer":
        return TokenizerCodec(json.dumps(config["tokenizer"]))
    raise ValueError(f"unknown text codec {config.get('name')!r}")


def encode_corpus(path: str, codec) -> np.ndarray:
    """The whole corpus as a 1-D array of token ids (uint8 / uint16 / int32: the smallest that holds the
    vocabulary), encoded chunk by chunk; chunks of a tokenizer end at a line break where there is one."""
    dtype = np.uint8 if codec.vocab_size <= 256 else np.uint16 if codec.vocab_size <= 65536 else np.int32
    parts, carry = [], ""
    for text in _chunks(path):
        if isinstance(codec, TokenizerCodec):
            text, cut = carry + text, None
            cut = text.rfind("\n") + 1 or len(text)
            text, carry = text[:cut], text[cut:]
        parts.append(np.asarray(codec.encode(text), dtype=dtype))
    if carry:
        parts.append(np.asarray(codec.encode(carry), dtype=dtype))
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype)
    if ids.size == 0:
        raise ValueError(f"{path} is empty: give a text file with the corpus to train on")
    return ids


class TokenWindows(torch.utils.data.Dataset):
    """Windows of ``seq_len`` consecutive tokens of a 1-D token array, starting every ``stride`` tokens (the last
    window ends at the corpus's end); item ``i`` is ``(tokens (seq_len,) long, {})``."""

    def __init__(self, ids: np.ndarray, seq_len: int, stride: int | None = None):
        if int(seq_len) < 1:
            raise ValueError(f"the sequence length must be positive, got {seq_len}")
        if len(ids) < int(seq_len):
            raise ValueError(f"the corpus has {len(ids)} tokens, fewer than one window of {seq_len}; use a shorter "
                             "--seq-len or a longer corpus")
        self.ids, self.seq_len = ids, int(seq_len)
        self.stride = int(stride or seq_len)
        self.starts = (len(ids) - self.seq_len) // self.stride + 1

    def __len__(self) -> int:
        return self.starts

    def __getitem__(self, i):
        if not -self.starts <= i < self.starts:
            raise IndexError(i)
        start = (i % self.starts) * self.stride
        return torch.from_numpy(self.ids[start:start + self.seq_len].astype(np.int64)), {}


class TextCodec:
    """A token run's codec for its :class:`~unnoise.pipeline.Pipeline`: ``decode`` turns ``(n, seq_len)`` tokens into
    ``n`` strings; :meth:`prefix` and :meth:`template` turn given text into the known tokens that sampling keeps."""

    def __init__(self, codec, seq_len: int):
        self.codec, self.seq_len = codec, int(seq_len)

    def decode(self, x: torch.Tensor) -> list[str]:
        return [self.codec.decode(row.tolist()) for row in x.cpu()]

    def _fit(self, ids: list[int], what: str) -> list[int]:
        if len(ids) > self.seq_len:
            raise ValueError(f"the {what} is {len(ids)} tokens long; the model writes windows of {self.seq_len}")
        return ids

    def prefix(self, prompts: list[str], n: int):
        """Known tokens ``(n, seq_len)`` and their mask for ``n`` samples beginning with the prompts (one, or
        one per sample)."""
        if len(prompts) == 1:
            prompts = prompts * n
        if len(prompts) != n or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"give one prompt or {n} prompts (strings)")
        known = torch.zeros(n, self.seq_len, dtype=torch.long)
        mask = torch.zeros(n, self.seq_len, dtype=torch.bool)
        for i, text in enumerate(prompts):
            ids = self._fit(self.codec.encode(text), "prompt")
            known[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[i, :len(ids)] = True
        return known, mask

    def template(self, template: str, placeholder: str, n: int):
        """``(known, mask, length)`` for a template in which every ``placeholder`` character is a token to
        sample; the text between placeholders is encoded piece by piece."""
        if not isinstance(placeholder, str) or len(placeholder) != 1:
            raise ValueError(f"the placeholder is one character, got {placeholder!r}")
        if placeholder not in template:
            raise ValueError(f"the template has no {placeholder!r}: mark each token to sample with it")
        ids, free = [], []
        piece = ""
        for c in template + "\0":
            if c == placeholder or c == "\0":
                if piece:
                    enc = self.codec.encode(piece)
                    ids += enc
                    free += [False] * len(enc)
                    piece = ""
                if c == placeholder:
                    ids.append(0)
                    free.append(True)
            else:
                piece += c
        self._fit(ids, "template")
        known = torch.zeros(n, self.seq_len, dtype=torch.long)
        mask = torch.zeros(n, self.seq_len, dtype=torch.bool)
        known[:, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[:, :len(ids)] = ~torch.tensor(free, dtype=torch.bool)
        return known, mask, len(ids)
