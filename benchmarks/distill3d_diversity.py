"""3-D from a 2-D prior with diversity: are VSD's particles closer to the prior's samples than SDS's?

The prior is view-conditioned (unnoise.multiview) and trained on renders of one shape (the box) painted in one of
several colours (view i in colour i mod 3), with no condition saying which: at every camera it holds several
images, one per colour.  Several grids (particles) are distilled from it at once by SDS and by VSD (learned
camera-conditioned particle model, fitted to every particle's renders; or, with --particle-model empirical, the
exact denoiser of the particles' renders at each camera, every particle rendered from the same cameras), each at
guidance 1 and at a higher guidance (classifier-free, on the camera).  A judge, a small CNN trained on a fresh multi-view set of the same
data to tell the colour and the camera, gives features (its penultimate layer) for a Frechet distance between
the particles' renders from 8 held-out cameras and the prior's samples at the same cameras.  Also measured: the
spread of judge features across particles at each camera against across prior samples, the mean colour
saturation of the object's pixels, which colours the particles took (the judge's colour guess), voxel IoU of
every particle against the box, and the CPU time.

Budget: one core; prior training 181 CPU s (1500 steps), judge 29 CPU s, each distillation (4 particles x 2
cameras x 400 steps) 66-78 CPU s (SDS), 89-100 CPU s (VSD, particle net) and 66-68 CPU s (VSD, empirical).
Results go to docs/benchmarks.md.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/distill3d_diversity.py [--prior DIR] [--runs sds:1,vsd:1]
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
from unnoise.spectral import frechet_distance

COLORS = ((0.15, 0.3, 0.9), (0.9, 0.15, 0.1), (0.95, 0.8, 0.1))  # blue, red, yellow


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


def train_judge(steps: int, seed: int):
    """The judge, trained on a fresh multi-view set (another seed than the prior's); returns it and its held-out
    colour accuracy and camera error."""
    g = torch.Generator().manual_seed(seed + 100)
    images, cams, _ = views.multiview(("box",), 1536, 32, generator=g, colors=COLORS)
    labels = torch.arange(len(images)) % len(COLORS)
    test = torch.arange(len(images)) >= 1280
    judge = Judge(len(COLORS))
    opt = torch.optim.Adam(judge.parameters(), lr=2e-3)
    train_idx = torch.nonzero(~test).flatten()
    for _ in range(steps):
        i = train_idx[torch.randint(len(train_idx), (64,), generator=g)]
        f = judge(images[i])
        loss = (nn.functional.cross_entropy(judge.color(f), labels[i])
                + (judge.camera(f) - camera_target(cams[i])).pow(2).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        f = judge(images[test])
        acc = float((judge.color(f).argmax(1) == labels[test]).float().mean())
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


def describe(judge, images, n_cams):
    with torch.no_grad():
        f = judge(images)
        colours = judge.color(f).argmax(1)
    return f, colours


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
    p.add_argument("--init", default="same", choices=("same", "colours"),
                   help="same: every particle starts as the same grey ball; colours: each ball in its own random "
                        "colour (raw colour N(0, 1.5^2) per channel, the same draws for every method)")
    p.add_argument("--particle-lr", type=float, default=1e-3, help="Adam learning rate of VSD's particle net")
    p.add_argument("--particle-model", default="net", choices=("net", "empirical"),
                   help="VSD's particle model: net (learned, camera-conditioned) or empirical (the exact denoiser of "
                        "the particles' renders at each camera; every particle then sees the same cameras)")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.work, exist_ok=True)
    out = {"settings": vars(args), "runs": []}
    prior = args.prior
    if prior is None:
        prior = os.path.join(args.work, "prior_colors")
        t0 = time.process_time()
        multiview.train_view_prior(prior, ("box",), steps=args.train_steps, seed=args.seed, progress=False,
                                   colors=COLORS)
        out["prior_train_cpu_s"] = time.process_time() - t0
    pipe = unnoise.load(prior, device="cpu")
    torch.manual_seed(args.seed)
    t0 = time.process_time()
    judge, acc, cam_err = train_judge(args.judge_steps, args.seed)
    out["judge"] = {"cpu_s": time.process_time() - t0, "colour_accuracy": acc, "camera_rmse": cam_err}
    print("judge", out["judge"], flush=True)
    cams = views.held_out_cameras(8)
    n = args.particles
    samples = prior_samples(pipe, cams, 12, args.seed + 1)  # the reference set: 12 per camera
    small = prior_samples(pipe, cams, n, args.seed + 2)  # another prior draw, as many as the particles' renders
    f_ref, c_ref = describe(judge, samples, 8)
    f_small, c_small = describe(judge, small, 8)
    truth = torch.cat([rendering.render(views.shape_grid("box", 48, COLORS[k % len(COLORS)]), cams, 32)
                       for k in range(n)])  # the box in the colours in turn, particle-major
    truth = truth.reshape(n, 8, *truth.shape[1:]).transpose(0, 1).reshape(-1, *truth.shape[1:])  # camera-major
    f_truth, _ = describe(judge, truth, 8)
    out["reference"] = {
        "prior_samples": {"spread": spread(f_ref, 8), "saturation": saturation(samples),
                          "colour_share": torch.bincount(c_ref, minlength=3).tolist()},
        "other_prior_samples": {"frechet": frechet_distance(f_small, f_ref), "spread": spread(f_small, 8),
                                "saturation": saturation(small)},
        "true_box_in_the_colours": {"frechet": frechet_distance(f_truth, f_ref), "spread": spread(f_truth, 8),
                                    "saturation": saturation(truth)}}
    print("reference", json.dumps(out["reference"]), flush=True)
    occ = views.true_occupancy("box", 32)
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
                                       particle_model=args.particle_model)
        cpu = time.process_time() - t0
        with torch.no_grad():
            renders = torch.stack([rendering.render(multiview.particle(grids, k), cams, 32) for k in range(n)], 1)
        renders = renders.reshape(-1, *renders.shape[2:])  # camera-major
        f, colours = describe(judge, renders, 8)
        per_particle = colours.reshape(8, n).T  # the judge's colour per particle, per camera
        row = {"method": method, "particle_model": args.particle_model, "guidance": float(scale), "cpu_s": cpu,
               "frechet": frechet_distance(f, f_ref), "spread": spread(f, 8), "saturation": saturation(renders),
               "particle_colours": [torch.bincount(c, minlength=3).argmax().item() for c in per_particle],
               "voxel_iou": [multiview.voxel_iou(rendering.occupancy(multiview.particle(grids, k)), occ)
                             for k in range(n)],
               "mean_rgb": [[round(float(v), 3) for v in ((renders.reshape(8, n, 3, 32, 32)[:, k] + 1) / 2)
                             .mean((0, 2, 3))] for k in range(n)], "colour_trace": trace}
        out["runs"].append(row)
        print(json.dumps(row), flush=True)
        tag = f"{args.init}_{args.particle_model}_plr{args.particle_lr}_seed{args.seed}"
        torch.save(grids, os.path.join(args.work, f"grids_{method}_{scale}_{tag}.pt"))
        multiview.save_turntable(multiview.particle(grids, 0),
                                 os.path.join(args.work, f"{method}_{scale}_{tag}_p0.gif"))
    runs = args.runs.replace(',', '-').replace(':', 'g')
    name = (f"results_{runs}_{n}p_{args.steps}_{args.init}_{args.particle_model}_plr{args.particle_lr}"
            f"_seed{args.seed}.json")
    with open(os.path.join(args.work, name), "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
