"""Text-to-image and editing on the captioned shapes set, judged by an independent attribute classifier.

1. Generate captioned shapes (32x32 RGB); train a small CNN that predicts each image's colour, shape,
   size and position from pixels (the judge; must reach > 98 % on held-out real images).
2. Train (or reuse, ``--run-dir``) the ``unnoise demo text`` models: KL autoencoder + text-conditioned
   latent diffusion with cross-attention to frozen MiniLM token embeddings.
3. Report the autoencoder's reconstruction PSNR on held-out images.
4. For random prompts, draw classifier-free-guided samples at several scales and report how often the
   judge finds the prompt's colour, shape, size and position (and colour + shape together).
5. Inpaint held-out images (a box in the middle; replacement method in latent space) and report the
   largest change of an unmasked pixel (the pipeline pastes known pixels back: must be <= 1/255).

Run: ``.venv/bin/python benchmarks/text_editing.py [--out bench_text] [--run-dir DIR]``
(``--run-dir`` reuses the output directory of a previous run or of ``unnoise demo text``).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

import unnoise
from unnoise.commands.demo_text import sample_prompts, train_text_model
from unnoise.data import shapes
from unnoise.imaging import plot_image_rows
from unnoise.latent import LatentCodec, psnr
from unnoise.text import TextEncoder

HEADS = {"shape": len(shapes.SHAPES), "colour": len(shapes.COLOURS), "size": len(shapes.SIZES),
         "position": len(shapes.POSITIONS)}


class AttributeJudge(nn.Module):
    """Small CNN with one softmax head per attribute."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(), nn.Flatten(),
                                  nn.Linear(64 * 8 * 8, 128), nn.SiLU())
        self.heads = nn.ModuleDict({k: nn.Linear(128, n) for k, n in HEADS.items()})

    def forward(self, x):
        h = self.body(x)
        return {k: head(h) for k, head in self.heads.items()}


def train_judge(seed: int, steps: int = 600):
    g = torch.Generator().manual_seed(seed + 100)
    x, attrs, _ = shapes.make_shapes(6000, 32, g)
    xt, at, _ = shapes.make_shapes(1000, 32, torch.Generator().manual_seed(seed + 101))
    torch.manual_seed(seed)
    judge = AttributeJudge()
    opt = torch.optim.Adam(judge.parameters(), lr=2e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        xb = x[idx] + 0.05 * torch.randn(x[idx].shape, generator=g)  # tolerate slight generation noise
        out = judge(xb)
        loss = sum(F.cross_entropy(out[k], attrs[k][idx]) for k in HEADS)
        opt.zero_grad()
        loss.backward()
        opt.step()
    judge.eval()
    with torch.no_grad():
        pred = judge(xt)
    acc = {k: float((pred[k].argmax(1) == at[k]).float().mean()) for k in HEADS}
    return judge, acc


def random_prompts(n: int, seed: int):
    g = torch.Generator().manual_seed(seed + 7)
    colours, positions = list(shapes.COLOURS), list(shapes.POSITIONS)
    out = []
    for _ in range(n):
        a = {"shape": shapes.SHAPES[int(torch.randint(3, (1,), generator=g))],
             "colour": colours[int(torch.randint(len(colours), (1,), generator=g))],
             "size": shapes.SIZES[int(torch.randint(2, (1,), generator=g))],
             "position": positions[int(torch.randint(len(positions), (1,), generator=g))]}
        out.append((shapes.caption(**a), a))
    return out


def agreement(judge, images, attrs_list, per_prompt):
    tables = {"shape": list(shapes.SHAPES), "colour": list(shapes.COLOURS), "size": list(shapes.SIZES),
              "position": list(shapes.POSITIONS)}
    with torch.no_grad():
        pred = judge(images.reshape(-1, *images.shape[2:]))
    want = {k: torch.tensor([tables[k].index(a[k]) for a in attrs_list]).repeat_interleave(per_prompt) for k in HEADS}
    hit = {k: pred[k].argmax(1) == want[k] for k in HEADS}
    res = {k: float(v.float().mean()) for k, v in hit.items()}
    res["colour+shape"] = float((hit["colour"] & hit["shape"]).float().mean())
    res["all four"] = float((hit["colour"] & hit["shape"] & hit["size"] & hit["position"]).float().mean())
    return res


def mixture_inpainting(seed: int = 0, n: int = 2000):
    """Filled-coordinate moments on an exact 2-component mixture: exact vs replacement, RePaint, SMC."""
    from unnoise import editing, inverse, schedules
    from unnoise.analytic import GaussianMixture
    gm = GaussianMixture([[-1.0, -1.0], [1.0, 1.5]], [[0.5, 0.5], [0.3, 0.3]], [0.4, 0.6])
    xk = 0.2
    m0, s0 = gm.means[:, 0], gm.stds[:, 0]
    w = gm.weights * torch.exp(-0.5 * ((xk - m0) / s0) ** 2) / s0
    w = w / w.sum()
    mean = float((w * gm.means[:, 1]).sum())
    var = float((w * (gm.stds[:, 1] ** 2 + gm.means[:, 1] ** 2)).sum()) - mean**2
    known = torch.zeros(n, 2)
    known[:, 0] = xk
    mask = torch.tensor([1.0, 0.0])
    sig = schedules.get("loglinear", sigma_min=0.01, sigma_max=20.0).sampling_sigmas(50)
    rows = {"exact conditional": (mean, var, float(w[1]))}

    def smc(g):  # sequential Monte Carlo: the posterior sampler with the mask as its operator
        x = torch.randn(known.shape, generator=g) * float(sig[0])
        return inverse.sample(gm.denoise, x, sig, y=known, operator=inverse.Mask(mask), method="smc", particles=16,
                              generator=g)
    runs = {"replacement (DDPM steps)": lambda g: editing.inpaint(gm.denoise, known, mask, sig, generator=g),
            "RePaint (jump 5, 5 samples)": lambda g: editing.inpaint(gm.denoise, known, mask, sig, generator=g,
                                                                     jump_length=5, jump_n_sample=5),
            "SMC (16 particles)": smc}
    for name, fn in runs.items():
        u = fn(torch.Generator().manual_seed(seed))[:, 1].double()
        rows[name] = (float(u.mean()), float(u.var()), float((u > 0.25).double().mean()))
    print("\n| method | mean of filled coordinate | variance | share of component 2 |")
    print("|---|---|---|---|")
    for name, (a, b, c) in rows.items():
        print(f"| {name} | {a:.3f} | {b:.3f} | {c:.3f} |")
    print(f"(n = {n}; standard error of the mean {(var / n) ** 0.5:.3f}, of the share {(0.25 / n) ** 0.5:.3f})\n")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench_text")
    ap.add_argument("--run-dir", default=None, help="reuse this directory (holding autoencoder/ and run/)")
    ap.add_argument("--steps", type=int, default=2000, help="diffusion training steps when training")
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--per-prompt", type=int, default=8)
    ap.add_argument("--scales", default="1,3,5")
    ap.add_argument("--sample-steps", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    mixture_rows = mixture_inpainting(args.seed)

    judge_path = os.path.join(args.out, "judge.pt")
    if os.path.exists(judge_path):  # a judge trained by an earlier run of this script
        judge = AttributeJudge()
        judge.load_state_dict(torch.load(judge_path, weights_only=True))
        judge.eval()
        xt, at, _ = shapes.make_shapes(1000, 32, torch.Generator().manual_seed(args.seed + 101))
        with torch.no_grad():
            pred = judge(xt)
        judge_acc = {k: float((pred[k].argmax(1) == at[k]).float().mean()) for k in HEADS}
    else:
        judge, judge_acc = train_judge(args.seed)
        torch.save(judge.state_dict(), judge_path)
    print("judge accuracy on held-out real images:", {k: f"{v:.3f}" for k, v in judge_acc.items()})

    if args.run_dir:
        pipe = unnoise.load(os.path.join(args.run_dir, "run"))
        encoder = TextEncoder()
        train_s = None
    else:
        pipe, encoder, info = train_text_model(args.out, args.seed, steps=args.steps)
        train_s = info["train_s"]
    codec: LatentCodec = pipe.codec

    held, held_attrs, _ = shapes.make_shapes(512, 32, torch.Generator().manual_seed(args.seed + 999))
    rec_psnr = psnr(codec.decode(codec.encode(held)), held)
    with torch.no_grad():
        rec_pred = judge(codec.decode(codec.encode(held)))
    rec_acc = float(sum((rec_pred[k].argmax(1) == held_attrs[k]).float().mean() for k in HEADS) / len(HEADS))

    prompts = random_prompts(args.prompts, args.seed)
    rows = {}
    results = {}
    for scale in [float(s) for s in args.scales.split(",")]:
        t = time.perf_counter()
        imgs = sample_prompts(pipe, [p for p, _ in prompts], args.per_prompt, scale, args.sample_steps, args.seed)
        results[scale] = agreement(judge, imgs, [a for _, a in prompts], args.per_prompt)
        results[scale]["seconds"] = time.perf_counter() - t
        rows[scale] = imgs
        print(f"guidance {scale:g}:", {k: f"{v:.3f}" for k, v in results[scale].items()})

    # inpainting: a 12x12 box in the middle of held-out images, prompt = the image's own caption
    x = held[:32]
    keep = torch.ones(1, 32, 32)
    keep[:, 10:22, 10:22] = 0
    g = torch.Generator().manual_seed(args.seed)
    inp = pipe.inpaint(x, keep, sampler="ddpm", steps=50, generator=g)
    kept = keep.bool().expand_as(x)
    max_change = float((inp - x).abs()[kept].max())
    print(f"inpainting: largest change of an unmasked pixel {max_change:.2e} (limit 1/255 = {1/255:.2e})")

    best = max(results, key=lambda s: results[s]["colour+shape"])
    pic = os.path.join(args.out, "text_shapes.png")
    plot_image_rows([r for r in rows[best][:6]], [p for p, _ in prompts[:6]], pic,
                    title=f"prompts and guided samples (guidance {best:g})")
    summary = {"judge_accuracy": judge_acc, "ae_psnr_db": rec_psnr, "judge_on_reconstructions": rec_acc,
               "guided": {str(k): v for k, v in results.items()}, "inpaint_max_unmasked_change": max_change,
               "mixture_inpainting": mixture_rows, "train_seconds": train_s, "total_seconds": time.perf_counter() - t0,
               "torch_threads": torch.get_num_threads()}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))
    print("\n| guidance scale | colour | shape | size | position | colour + shape | all four | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for scale, r in results.items():
        print(f"| {scale:g} | {r['colour']:.1%} | {r['shape']:.1%} | {r['size']:.1%} | {r['position']:.1%} | "
              f"{r['colour+shape']:.1%} | {r['all four']:.1%} | {r['seconds']:.0f} |")
    print(f"\nautoencoder PSNR {rec_psnr:.2f} dB; judge on reconstructions {rec_acc:.1%}; "
          f"inpainting max unmasked change {max_change:.1e}")
    print(f"wrote {pic} and {args.out}/results.json")


if __name__ == "__main__":
    main()
