"""Tokens: text (a ``.txt`` corpus) under a categorical forward process.

``unnoise train --data corpus.txt`` encodes the corpus as characters (or with ``--tokenizer tokenizer.json``, a
trained ``tokenizers`` tokenizer), streams windows of ``--seq-len`` tokens of it (:mod:`unnoise.data.tokens`) and
trains a bidirectional transformer (:class:`unnoise.nets.transformer.SequenceTransformer`) under masked diffusion
(``--process masked``, the default) or uniform / marginal diffusion (``--process uniform | marginal``, the
marginals being the corpus's token frequencies) on the NELBO (:mod:`unnoise.categorical`).

``unnoise sample --checkpoint RUN --n 20 --out samples.txt`` writes one sample per line (line breaks inside a
sample are written as the two characters ``\\n``); ``--prompt TEXT`` keeps ``TEXT`` as the beginning of every
sample, ``--infill TEMPLATE`` fills every ``_`` of the template (``--placeholder`` picks another character).
In Python: ``unnoise.load(RUN).sample(n)`` returns a list of strings, ``.complete(prompt, n)`` and
``.infill(template, n)`` the same with given text kept.
"""
from __future__ import annotations

import os

import numpy as np

from .. import io
from ..categorical import CategoricalDenoiser
from ..commands.train_common import command_record, finish, train_config
from ..data.arrays import is_numeric_table
from ..data.tokens import CharCodec, TextCodec, TokenizerCodec, TokenWindows, codec_from_config, encode_corpus
from ..pipeline import Pipeline
from ..processes import Marginal, Masked
from ..train import Trainer
from .. import nets, schedules
from . import Kind, SampleOutput, TrainEntry, register
from .common import read_denoiser_run

PROCESSES = ("masked", "uniform", "marginal")


def add_args(p) -> None:
    """The options of ``unnoise train`` for text."""
    g = p.add_argument_group("tokens (--data FILE.txt: text under masked or uniform categorical diffusion)")
    g.add_argument("--seq-len", type=int, default=None, help="tokens per training window and sample (default: 128)")
    g.add_argument("--tokenizer", default=None, metavar="TOKENIZER_JSON",
                   help="a trained tokenizers tokenizer.json (default: one token per character of the corpus)")
    g.add_argument("--process", default=None, choices=PROCESSES,
                   help="masked (absorbing, the default), uniform, or marginal (redraws from the corpus's token "
                        "frequencies)")


def claims(args) -> bool:
    """Whether ``unnoise train`` was given a ``.txt`` corpus (``--data FILE.txt``): a ``.txt`` file whose first line
    is not a row of numbers (those are vectors), or any ``.txt`` with one of the text options."""
    data = getattr(args, "data", None)
    if not isinstance(data, str) or not data.lower().endswith(".txt"):
        return False
    asked = any(getattr(args, o, None) is not None for o in ("seq_len", "tokenizer", "process"))
    return asked or not is_numeric_table(data)


def build_process(name: str, ids: np.ndarray, vocab: int):
    """The forward process of a token run: masked, uniform, or marginal with the corpus's add-one token
    frequencies."""
    if name == "masked":
        return Masked(vocab)
    if name == "uniform":
        return Marginal.uniform(vocab)
    counts = np.bincount(ids, minlength=vocab).astype(np.float64) + 1.0
    return Marginal(counts / counts.sum())


def run_tokens(args) -> int:
    """``unnoise train --data FILE.txt``: a bidirectional transformer on windows of the corpus; the exit status."""
    if args.schedule != "categorical":
        raise ValueError(f"text trains under a categorical process: omit --schedule {args.schedule}")
    if args.parameterization != "logits":
        raise ValueError(f"text runs predict the clean tokens' log-probabilities: omit --parameterization "
                         f"{args.parameterization}")
    for name in ("seq_len", "width", "depth", "heads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if not os.path.isfile(args.data):
        raise ValueError(f"--data {args.data!r}: no such file")
    codec = TokenizerCodec(args.tokenizer) if args.tokenizer else CharCodec.from_file(args.data)
    ids = encode_corpus(args.data, codec)
    data = TokenWindows(ids, args.seq_len)
    process = build_process(args.process, ids, codec.vocab_size)
    sched = schedules.get("categorical", process=process.config())
    net = nets.build("transformer", vocab_size=process.num_states, num_outputs=process.num_classes,
                     seq_len=args.seq_len, hidden=args.width, layers=args.depth, heads=args.heads)
    denoiser = CategoricalDenoiser(net, sched.forward)
    info = {"kind": "tokens", "command": command_record(args),
            "data": {"shape": [args.seq_len], "num_examples": len(data), "num_tokens": int(len(ids))},
            "tokens": {"codec": codec.config(), "seq_len": args.seq_len}}
    main = int(os.environ.get("RANK", "0")) == 0
    trainer = Trainer(denoiser, sched, data, train_config(args), run_dir=args.out, info=info)
    if main:
        print(f"training a {args.process} text model with {nets.count_parameters(net):,} parameters on "
              f"{len(ids):,} tokens ({codec.vocab_size} distinct, {len(data):,} windows of {args.seq_len}; "
              f"device {trainer.device})")
    trainer.fit(progress=main)
    return finish(trainer, args.out)


def load(path, config, device, ema=True, autoencoder=None):
    """A token run as a Pipeline whose samples are strings."""
    denoiser, schedule, config, common = read_denoiser_run(path, device, ema)
    tokens = config.get("tokens", {})
    codec = TextCodec(codec_from_config(tokens.get("codec", {})), tokens.get("seq_len", 0))
    return Pipeline(denoiser, schedule, "tokens", (codec.seq_len,), codec=codec, **common)


def write_text(pipe, x, args, out):
    """One sample per line (a line break inside a sample written as ``\\n``, a backslash as ``\\\\``)."""
    lines = [s.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n") for s in x]
    io.save_text(out, "\n".join(lines) + "\n")
    return [out]


register(Kind(
    name="tokens", what="text (a .txt corpus: character or tokenizer tokens)", load=load, process="categorical",
    train=TrainEntry(claims, run_tokens,
                     {"seq_len": 128, "tokenizer": None, "process": "masked", "width": 128, "depth": 4, "heads": 4,
                      "schedule": "categorical", "parameterization": "logits"},
                     "text (--data FILE.txt)", add_args),
    sample=SampleOutput(20, "samples.txt", (".txt",), write_text, "a .txt file, one sample per line"),
    recognise=lambda config: "tokens" in config))
