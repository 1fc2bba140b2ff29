"""3-D from a 2-D prior with diversity: are VSD's particles closer to the prior's samples than SDS's?

The prior is view-conditioned (unnoise.multiview) and trained on renders of one shape (the box) in colours that vary
with nothing in the condition saying which, so at every camera it holds many images: with --palette three, view i
in blue, red or yellow (i mod 3); with --palette gaussian, each view in its own colour drawn N(0.5, 0.25^2) per
channel (one mode, a continuous spread).  Several grids (particles) are distilled from it at once by SDS and by
VSD (learned camera-conditioned particle model, fitted to every particle's renders; or, with --particle-model
empirical, the exact denoiser of the particles' renders at each camera, every particle rendered from the same
cameras), at the guidance scales named in --runs (classifier-free, on the camera).  A judge, a small CNN trained
on a fresh multi-view set of the same data to tell the colour (class or RGB) and the camera, gives features (its
penultimate layer) for a Frechet distance between the particles' renders from 8 held-out cameras and the prior's
samples at the same cameras.  Also measured: the spread of judge features across particles at each camera against
across prior samples, the spread of the object's mean colour, its saturation, which colours the particles took
(the judge's guess), voxel IoU of every particle against the box, and the CPU time.  --figure writes the particles'
renders under rows of prior samples.

Budget: one core; prior training 181-198 CPU s (1500 steps), judge 28-29 CPU s, each distillation (4 particles x 2
cameras x 400 steps) 65-78 CPU s (SDS), 89-100 CPU s (VSD, particle net) and 66-71 CPU s (VSD, empirical).
Results go to docs/benchmarks.md.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/distill3d_diversity.py [--prior DIR] [--runs sds:1,vsd:1]
        [--palette gaussian] [--particle-model empirical] [--sigma-max 10 --anneal-to none]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch import nn

import unnoise
from unnoise import multiview
from unnoise import render as rendering
from unnoise.data import views
from unnoise.imaging import plot_image_rows
from unnoise.spectral import frechet_distance

COLORS = ((0.15, 0.3, 0.9), (0.9, 0.15, 0.1), (0.95, 0.8, 0.1))  # blue, red, yellow
GREY, SPREAD = 0.5, 0.25  # --palette gaussian: each view's colour N(0.5, 0.25^2) per channel, clipped to [0.03, 0.97]


def palette(name: str, n: int, seed: int):
    """The colours the prior's views are painted in, view i in colour i mod len: the three of COLORS, or (gaussian)
    one colour per view drawn around grey, a prior whose colour varies continuously with one mode."""
    if name == "three":
        return COLORS
    g = torch.Generator().manual_seed(seed + 7)
    return (torch.randn(n, 3, generator=g) * SPREAD + GREY).clamp(0.03, 0.97).tolist()


class Judge(nn.Module):
    """A small CNN on 32x32 renders: colour class and camera (cos, sin azimuth, elevation) from its 32 features."""

    def __init__(self, classes: int, width: int = 16, features: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * 16, features), nn.SiLU())
        self.color = nn.Linear(features, classes)
        self.camera = nn.Linear(features, 3)

    def forward(self, x):
        return self.body(x)


def camera_target(cam):
    return torch.stack([cam[:, 0].cos(), cam[:, 0].sin(), cam[:, 1]], dim=1)


def train_judge(steps: int, seed: int, name: str = "three"):
    """The judge, trained on a fresh multi-view set (another seed than the prior's); returns it and its held-out
    colour accuracy (three colours; for the gaussian palette the RMSE of its RGB guess) and camera error."""
    g = torch.Generator().manual_seed(seed + 100)
    colors = palette(name, 1536, seed + 100)
    images, cams, _ = views.multiview(("box",), 1536, 32, generator=g, colors=colors)
    if name == "three":
        labels = torch.arange(len(images)) % len(COLORS)
    else:
        labels = torch.tensor(colors)
    test = torch.arange(len(images)) >= 1280
    judge = Judge(len(COLORS))  # three outputs: class logits, or an RGB guess
    opt = torch.optim.Adam(judge.parameters(), lr=2e-3)
    train_idx = torch.nonzero(~test).flatten()
    for _ in range(steps):
        i = train_idx[torch.randint(len(train_idx), (64,), generator=g)]
        f = judge(images[i])
        colour_loss = (nn.functional.cross_entropy(judge.color(f), labels[i]) if name == "three"
                       else 10 * (judge.color(f) - labels[i]).pow(2).mean())
        loss = colour_loss + (judge.camera(f) - camera_target(cams[i])).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        f = judge(images[test])
        if name == "three":
            acc = float((judge.color(f).argmax(1) == labels[test]).float().mean())
        else:
            acc = float((judge.color(f) - labels[test]).pow(2).mean().sqrt())
        cam_err = float((judge.camera(f) - camera_target(cams[test])).pow(2).mean().sqrt())
    return judge.eval(), acc, cam_err


def saturation(x):
    """Mean HSV saturation of the object's pixels (those farther than 0.1 from the white background) of images in
    [-1, 1]."""
    rgb = ((x + 1) / 2).clamp(0, 1)
    hi, lo = rgb.max(1).values, rgb.min(1).values
    fg = (1 - rgb).abs().amax(1) > 0.1
    sat = (hi - lo) / hi.clamp_min(1e-6)
    return float(sat[fg].mean()) if fg.any() else 0.0


def spread(feats, n_cams):
    """Mean over cameras of the total variance (trace of the covariance) of the features at that camera; rows are
    ordered camera-major (n_cams blocks)."""
    return float(torch.stack([f.var(0).sum() for f in feats.chunk(n_cams)]).mean())


def prior_samples(pipe, cams, per_camera, seed):
    cam = cams.repeat_interleave(per_camera, 0)
    extra = multiview.camera_cond(cam, pipe.model_shape[-1], "vector")
    return pipe.sample(len(cam), steps=25, cond=extra, generator=torch.Generator().manual_seed(seed),
                       guidance_scale=1.0)


def describe(judge, images, name="three"):
    """The judge's features and its colour guess: a class (three colours) or an RGB triple (gaussian palette)."""
    with torch.no_grad():
        f = judge(images)
        colours = judge.color(f).argmax(1) if name == "three" else judge.color(f)
    return f, colours


def object_rgb(x):
    """(N, 3): the mean colour in [0, 1] of each image's object pixels (those farther than 0.1 from the white
    background)."""
    rgb = ((x + 1) / 2).clamp(0, 1)
    fg = ((1 - rgb).abs().amax(1, keepdim=True) > 0.1).float()
    return (rgb * fg).sum((2, 3)) / fg.sum((2, 3)).clamp_min(1)


def colour_spread(x, n_cams):
    """The standard deviation of the object's mean colour across the images at one camera, averaged over the
    channels and the cameras; rows are ordered camera-major."""
    return float(torch.stack([c.std(0).mean() for c in object_rgb(x).chunk(n_cams)]).mean())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", default=None, help="the colour-varying prior (default: train one into --work)")
    p.add_argument("--work", default="/tmp/unnoise_distill3d_diversity")
    p.add_argument("--train-steps", type=int, default=1500)
    p.add_argument("--runs", default="sds:1,sds:5,vsd:1,vsd:5", help="method:guidance pairs")
    p.add_argument("--particles", type=int, default=4)
    p.add_argument("--views", type=int, default=2, help="random cameras per particle per step")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--judge-steps", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--palette", default="three", choices=("three", "gaussian"),
                   help="three: view i of the box in blue, red or yellow (i mod 3); gaussian: each view in its own "
                        "colour, N(0.5, 0.25^2) per channel (one mode: SDS's collapse to it against VSD's spread)")
    p.add_argument("--init", default="same", choices=("same", "colours"),
                   help="same: every particle starts as the same grey ball; colours: each ball in its own random "
                        "colour (raw colour N(0, 1.5^2) per channel, the same draws for every method)")
    p.add_argument("--sigma-max", type=float, default=3.0, help="the top of the noise range (the bottom is 0.05)")
    p.add_argument("--anneal-to", default="0.5", help="where the top of the noise range is annealed to, or none")
    p.add_argument("--particle-lr", type=float, default=1e-3, help="Adam learning rate of VSD's particle net")
    p.add_argument("--particle-model", default="net", choices=("net", "empirical"),
                   help="VSD's particle model: net (learned, camera-conditioned) or empirical (the exact denoiser of "
                        "the particles' renders at each camera; every particle then sees the same cameras)")
    p.add_argument("--figure", default=None,
                   help="also write a PNG here: rows of prior samples at the 8 held-out cameras, then each run's "
                        "particles at the same cameras")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.work, exist_ok=True)
    out = {"settings": vars(args), "runs": []}
    prior = args.prior
    if prior is None:
        prior = os.path.join(args.work, "prior_colors" if args.palette == "three" else f"prior_{args.palette}")
        t0 = time.process_time()
        multiview.train_view_prior(prior, ("box",), steps=args.train_steps, seed=args.seed, progress=False,
                                   colors=palette(args.palette, 512, args.seed))
        out["prior_train_cpu_s"] = time.process_time() - t0
    pipe = unnoise.load(prior, device="cpu")
    torch.manual_seed(args.seed)
    t0 = time.process_time()
    judge, acc, cam_err = train_judge(args.judge_steps, args.seed, args.palette)
    out["judge"] = {"cpu_s": time.process_time() - t0, "colour_accuracy": acc, "camera_rmse": cam_err}
    print("judge", out["judge"], flush=True)
    cams = views.held_out_cameras(8)
    n = args.particles
    samples = prior_samples(pipe, cams, 12, args.seed + 1)  # the reference set: 12 per camera
    small = prior_samples(pipe, cams, n, args.seed + 2)  # another prior draw, as many as the particles' renders
    f_ref, c_ref = describe(judge, samples, args.palette)
    f_small, c_small = describe(judge, small, args.palette)
    true_colours = palette(args.palette, n, args.seed + 4)
    truth = torch.cat([rendering.render(views.shape_grid("box", 48, true_colours[k % len(true_colours)]), cams, 32)
                       for k in range(n)])  # the box in the colours in turn (gaussian: n draws), particle-major
    truth = truth.reshape(n, 8, *truth.shape[1:]).transpose(0, 1).reshape(-1, *truth.shape[1:])  # camera-major
    f_truth, _ = describe(judge, truth, args.palette)
    out["reference"] = {
        "prior_samples": {"spread": spread(f_ref, 8), "saturation": saturation(samples),
                          "colour_spread": colour_spread(samples, 8),
                          "colour_share": (torch.bincount(c_ref, minlength=3).tolist() if args.palette == "three"
                                           else None)},
        "other_prior_samples": {"frechet": frechet_distance(f_small, f_ref), "spread": spread(f_small, 8),
                                "saturation": saturation(small), "colour_spread": colour_spread(small, 8)},
        "true_box_in_the_colours": {"frechet": frechet_distance(f_truth, f_ref), "spread": spread(f_truth, 8),
                                    "saturation": saturation(truth), "colour_spread": colour_spread(truth, 8)}}
    print("reference", json.dumps(out["reference"]), flush=True)
    occ = views.true_occupancy("box", 32)
    rows = [small.reshape(8, n, *small.shape[1:])[:, k] for k in range(n)]  # prior draws, one row per draw
    labels = [f"prior {k + 1}" for k in range(n)]
    for run in args.runs.split(","):
        method, scale = run.split(":")
        t0 = time.process_time()
        start = rendering.init_grid(32)
        start = {k: torch.stack([v] * n) for k, v in start.items()}
        if args.init == "colours":
            tint = torch.randn(n, 3, 1, 1, 1, generator=torch.Generator().manual_seed(args.seed + 3)) * 1.5
            start["color"] = start["color"] + tint
        trace = {}

        def callback(step, params, trace=trace):  # each particle's mean colour (occupied voxels) on the way
            if step in (10, 25, 50, 100, 200, 400):
                occupied = torch.nn.functional.softplus(params["density"].detach()) > 2  # (n, R, R, R)
                rgb = torch.sigmoid(params["color"].detach())
                trace[step] = [[round(float(rgb[k][:, occupied[k]].mean(1)[c]), 2) for c in range(3)]
                               if occupied[k].any() else None for k in range(n)]
        grids = multiview.distill_grid(pipe, args.steps, method, guidance_scale=float(scale), particles=n,
                                       views_per_step=args.views, generator=torch.Generator().manual_seed(args.seed),
                                       init=start, particle_lr=args.particle_lr, callback=callback,
                                       particle_model=args.particle_model, sigma_range=(0.05, args.sigma_max),
                                       anneal_to=None if args.anneal_to == "none" else float(args.anneal_to))
        cpu = time.process_time() - t0
        with torch.no_grad():
            renders = torch.stack([rendering.render(multiview.particle(grids, k), cams, 32) for k in range(n)], 1)
        renders = renders.reshape(-1, *renders.shape[2:])  # camera-major
        f, colours = describe(judge, renders, args.palette)
        per_particle = colours.reshape(8, n, -1).transpose(0, 1)  # the judge's colour per particle, per camera
        row = {"method": method, "particle_model": args.particle_model, "guidance": float(scale), "cpu_s": cpu,
               "frechet": frechet_distance(f, f_ref), "spread": spread(f, 8), "saturation": saturation(renders),
               "colour_spread": colour_spread(renders, 8),
               "particle_colours": ([torch.bincount(c.flatten(), minlength=3).argmax().item() for c in per_particle]
                                    if args.palette == "three"
                                    else [[round(float(v), 2) for v in c.mean(0)] for c in per_particle]),
               "voxel_iou": [multiview.voxel_iou(rendering.occupancy(multiview.particle(grids, k)), occ)
                             for k in range(n)],
               "mean_rgb": [[round(float(v), 3) for v in ((renders.reshape(8, n, 3, 32, 32)[:, k] + 1) / 2)
                             .mean((0, 2, 3))] for k in range(n)], "colour_trace": trace}
        out["runs"].append(row)
        rows += [renders.reshape(8, n, *renders.shape[1:])[:, k] for k in range(n)]
        labels += [f"{method.upper()}{' ' + args.particle_model if method == 'vsd' else ''} g{scale} p{k + 1}"
                   for k in range(n)]
        print(json.dumps(row), flush=True)
        tag = f"{args.palette}_s{args.sigma_max}a{args.anneal_to}_{args.init}_{args.particle_model}_plr{args.particle_lr}_seed{args.seed}"
        torch.save(grids, os.path.join(args.work, f"grids_{method}_{scale}_{tag}.pt"))
        multiview.save_turntable(multiview.particle(grids, 0),
                                 os.path.join(args.work, f"{method}_{scale}_{tag}_p0.gif"))
    if args.figure:
        plot_image_rows(rows, labels, args.figure)
    runs = args.runs.replace(',', '-').replace(':', 'g')
    name = (f"results_{args.palette}_s{args.sigma_max}a{args.anneal_to}_{runs}_{n}p_{args.steps}_{args.init}_{args.particle_model}_plr{args.particle_lr}"
            f"_seed{args.seed}.json")
    with open(os.path.join(args.work, name), "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
