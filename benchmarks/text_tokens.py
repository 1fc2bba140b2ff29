"""Masked diffusion against an autoregressive model of the same size and budget on a real text corpus, and the
speed of ancestral sampling with and without the cache.

Corpus: the English reference text of the Python language (``pydoc_data.topics``, the text ``help()`` shows,
shipped inside every CPython installation; Python Software Foundation License), about 465 000 characters, encoded
as characters (``CharCodec``); the first 90 % trains, windows of the last 10 % are the validation set.

Two :class:`~unnoise.nets.transformer.SequenceTransformer` networks of the same width, depth and heads, trained by
the same Trainer (AdamW, same learning rate, warm-up, batch, steps, seed, EMA):

* **masked**: the ``tokens`` kind's model, bidirectional, under masked diffusion (:class:`~unnoise.processes.Masked`,
  log-linear levels), trained on its NELBO; scored by :func:`unnoise.categorical.bits_per_token` (the NELBO by
  32-point quadrature, an upper bound on its negative log-likelihood);
* **AR**: the same network with causal attention and a begin-of-window token, trained on next-character
  cross-entropy; scored by its exact negative log-likelihood.

Both scored on the same validation windows with their EMA weights; perplexity per character is ``2^bits``.  Then
the time per sample of ancestral sampling at 10 / 50 / 100 / 500 steps (batch 1: cached and uncached, the
network calls counted; batch 32 uncached up to 100 steps), beside the autoregressive model's ``seq_len`` network calls.

Run: ``python benchmarks/text_tokens.py [--steps 2000] [--hidden 96] [--layers 3] [--seq-len 64]
[--eval-every 2000 --ar-steps 12000] [--lr-decay cosine] [--only masked|ar]`` (``--eval-every``: a learning curve
of both models, each scored every 2000 steps; ``--only``: one of the two models) (single-threaded; the defaults
are a CPU budget of minutes).
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import numpy as np
import pydoc_data.topics
import torch

from unnoise import categorical, nets, schedules
from unnoise.data.tokens import CharCodec, TokenWindows, encode_corpus
from unnoise.processes import Masked
from unnoise.train import TrainConfig, Trainer


class NextTokenObjective:
    """Next-token cross-entropy of a causal network (the autoregressive baseline), summed over the window:
    token ``i`` is predicted from the begin-of-window token and tokens ``< i``."""

    kind = "autoregressive"

    def __init__(self, bos: int):
        self.bos = bos

    def inputs(self, x):
        return torch.cat([torch.full_like(x[:, :1], self.bos), x[:, :-1]], 1)

    def nll(self, model, x):
        logits = model(self.inputs(x), torch.zeros(len(x), device=x.device))
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), x, reduction="none").sum(1)

    def __call__(self, model, x0, sigma, noise, cond):
        return self.nll(model, x0)

    def noise_shape(self, model, example_shape):
        return tuple(example_shape)

    def describe(self):
        return {"name": "next_token"}


def corpus(path: str) -> str:
    text = "".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text


def train(model, schedule, data, args, objective=None, steps=None, score=None):
    """Train for ``steps``; with ``score`` (EMA model -> validation bits) and ``args.eval_every``, also score the
    EMA weights every that many steps (the learning rate is constant after warm-up, so the curve is what runs
    stopped at each of those budgets would give).  Returns ``(trainer, training seconds, [(step, bits)])``."""
    steps = steps or args.steps
    cfg = TrainConfig(steps=steps, batch_size=args.batch, lr=args.lr, warmup=100, log_every=steps,
                      checkpoint_every=0, device="cpu", num_workers=0, seed=0, ema_decay=0.995, lr_decay=args.lr_decay)
    trainer = Trainer(model, schedule, data, cfg, objective=objective)
    t, spent, curve = time.perf_counter(), 0.0, []
    if not (score and args.eval_every):
        trainer.fit(progress=False)
        return trainer, time.perf_counter() - t, curve
    while trainer.step_count < steps:
        trainer.step()
        if trainer.step_count % args.eval_every == 0 or trainer.step_count == steps:
            spent += time.perf_counter() - t
            curve.append((trainer.step_count, score(trainer.ema)))
            print(f"  step {trainer.step_count}: {curve[-1][1]:.3f} bits / char ({spent:.0f} s)", flush=True)
            t = time.perf_counter()
    return trainer, spent + time.perf_counter() - t, curve


@torch.no_grad()
def sampling_speed(denoiser, process, seq_len, steps_list, causal_net=None, bos=None):
    rows = []
    categorical.sample(denoiser, process, (1, seq_len), 2)  # warm-up
    for steps in steps_list:
        row = {"steps": steps}
        for cached in (True, False):
            g = torch.Generator().manual_seed(0)
            t = time.perf_counter()
            reps, calls = 3, 0
            for _ in range(reps):
                _, c = categorical.sample(denoiser, process, (1, seq_len), steps, generator=g, cached=cached,
                                          return_calls=True)
                calls += c
            row["cached" if cached else "uncached"] = (time.perf_counter() - t) / reps
            row["calls_cached" if cached else "calls"] = calls / reps
        if steps <= 100:
            g = torch.Generator().manual_seed(0)
            t = time.perf_counter()
            categorical.sample(denoiser, process, (32, seq_len), steps, generator=g, cached=False)
            row["batch32"] = (time.perf_counter() - t) / 32
        rows.append(row)
    if causal_net is not None:
        t = time.perf_counter()
        x = torch.full((1, 1), bos, dtype=torch.long)
        for _ in range(seq_len):
            logits = causal_net(x, torch.zeros(1))[:, -1]
            nxt = torch.multinomial(torch.softmax(logits, -1), 1)
            x = torch.cat([x, nxt], 1)
        rows.append({"ar": time.perf_counter() - t})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--valid-windows", type=int, default=256)
    ap.add_argument("--nelbo-points", type=int, default=32)
    ap.add_argument("--ar-steps", type=int, default=None, help="training steps of the AR model (default --steps)")
    ap.add_argument("--eval-every", type=int, default=0,
                    help="also score both models on the validation windows every this many steps (a learning curve)")
    ap.add_argument("--lr-decay", choices=("none", "cosine"), default="none",
                    help="the learning rate after warm-up: constant, or a cosine to zero at the last step (then only "
                         "the last point of a --eval-every curve is what a run of that length gives)")
    ap.add_argument("--only", choices=("masked", "ar"), default=None, help="train and score one of the two models")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "python_reference.txt")
        text = corpus(path)
        codec = CharCodec.from_file(path)
        ids = encode_corpus(path, codec)
    cut = int(0.9 * len(ids))
    train_data = TokenWindows(ids[:cut], args.seq_len, stride=args.seq_len // 2)
    valid = TokenWindows(ids[cut:], args.seq_len)
    idx = np.linspace(0, len(valid) - 1, min(args.valid_windows, len(valid))).round().astype(int)
    x_valid = torch.stack([valid[int(i)][0] for i in idx])
    v = codec.vocab_size
    print(f"corpus: {len(text):,} characters, {v} distinct; {len(train_data):,} training windows of "
          f"{args.seq_len} (stride {args.seq_len // 2}), {len(x_valid)} validation windows; "
          f"{args.steps} steps of batch {args.batch}")

    process = Masked(v)
    sched = schedules.get("categorical", process=process.config())
    shape = dict(seq_len=args.seq_len, hidden=args.hidden, layers=args.layers, heads=args.heads)
    masked_net = nets.build("transformer", vocab_size=v + 1, num_outputs=v, **shape)
    def score_masked(model):
        return float(categorical.bits_per_token(model, sched.forward, x_valid, points=args.nelbo_points).mean())

    if args.only != "ar":
        print("masked diffusion:")
        masked, t_masked, curve_m = train(categorical.CategoricalDenoiser(masked_net, sched.forward), sched,
                                          train_data, args, score=score_masked)
        bits_masked = score_masked(masked.ema)

    ar_net = nets.build("transformer", vocab_size=v + 1, num_outputs=v, causal=True, **shape)
    objective = NextTokenObjective(bos=v)
    def score_ar(model):
        with torch.no_grad():
            return float(objective.nll(model, x_valid).mean()) / (args.seq_len * math.log(2))

    if args.only != "masked":
        print("autoregressive:")
        ar, t_ar, curve_a = train(ar_net, None, train_data, args, objective, steps=args.ar_steps, score=score_ar)
        bits_ar = score_ar(ar.ema)
    n_params = nets.count_parameters(masked_net)
    if args.only:
        bits, spent = (bits_masked, t_masked) if args.only == "masked" else (bits_ar, t_ar)
        print(f"\n{args.only}: {bits:.3f} bits / char (perplexity {2 ** bits:.2f}) after {spent:.0f} s of training, "
              f"{n_params:,} parameters, learning rate {args.lr} ({args.lr_decay} decay)")
        return
    ppl_m, ppl_a = 2 ** bits_masked, 2 ** bits_ar
    print(f"\n{n_params:,} parameters each; training {t_masked:.0f} s (masked), {t_ar:.0f} s (AR)")
    print("| model | bits / char (validation) | perplexity / char |")
    print("|---|---|---|")
    print(f"| masked diffusion (NELBO, {args.nelbo_points}-point quadrature) | {bits_masked:.3f} | {ppl_m:.2f} |")
    print(f"| autoregressive (exact NLL) | {bits_ar:.3f} | {ppl_a:.2f} |")
    print(f"perplexity ratio masked / AR: {ppl_m / ppl_a:.3f} (MDLM on LM1B: 27.04 / 22.32 = {27.04 / 22.32:.3f})")
    if curve_m and curve_a:
        best_a = min(b for _, b in curve_a)
        ar_at = dict(curve_a)
        print("\n| training steps | masked: bits / char | AR: bits / char | ratio masked / AR | ratio masked / AR's best "
              "so far |\n|---|---|---|---|---|")
        for step, b in curve_m:
            so_far = min([a for s, a in curve_a if s <= step] or [float("nan")])
            a = ar_at.get(step)
            print(f"| {step} | {b:.3f} | {'-' if a is None else f'{a:.3f}'} | "
                  f"{'-' if a is None else f'{2 ** (b - a):.2f}'} | {2 ** (b - so_far):.2f} |")
        print(f"best: masked {min(b for _, b in curve_m):.3f}, AR {best_a:.3f} bits / char, perplexity ratio "
              f"{2 ** (min(b for _, b in curve_m) - best_a):.3f}")

    rows = sampling_speed(masked.ema, sched.forward, args.seq_len, (10, 50, 100, 500), ar.ema, v)
    print("\n| steps | batch 1, cached: s / sample (network calls) | batch 1, uncached (calls) | batch 32, uncached: "
          "s / sample |")
    print("|---|---|---|---|")
    for r in rows[:-1]:
        b32 = f"{r['batch32']:.4f}" if "batch32" in r else "-"
        print(f"| {r['steps']} | {r['cached']:.3f} ({r['calls_cached']:.0f}) | {r['uncached']:.3f} ({r['calls']:.0f}) "
              f"| {b32} |")
    print(f"autoregressive, batch 1 ({args.seq_len} calls): {rows[-1]['ar']:.3f} s / sample")
    print("\nmasked samples (100 steps):")
    for s in categorical.sample(masked.ema, sched.forward, (3, args.seq_len), 100,
                                generator=torch.Generator().manual_seed(1)):
        print("  " + repr(codec.decode(s.tolist())))


if __name__ == "__main__":
    main()
