"""3-D from a 2-D prior: does score distillation recover a known shape on a CPU?

A small view-conditioned U-Net prior (the camera enters its noise embedding, unnoise.multiview) is trained on
renders of one built-in shape (unnoise.data.views) from random cameras, or with --shapes a class-conditional one
over several; then a voxel grid is distilled from it by SDS and by VSD (learned camera-conditioned particle
model), and scored against the true shape: voxel IoU (occupied voxels, density above 2 per unit) and the
silhouette IoU of renders from 8 held-out cameras, at several step counts, with the CPU time spent, and the
pixel MMD of its renders to the prior's samples at the held-out cameras.

Budget: one core (torch.set_num_threads(1)); prior training about 270 CPU s (2000 steps, batch 32, 32x32),
each 600-step distillation 60-90 CPU s.  Results go to docs/benchmarks.md.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/distill3d.py [--prior DIR] [--shape box] [--steps 400]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

import unnoise
from unnoise import distill, metrics, multiview
from unnoise import render as rendering
from unnoise.data import views


def prior_samples(pipe, cams, per_camera, generator, class_label=None):
    """Samples of the prior at each held-out camera (``per_camera`` each), in [-1, 1]."""
    cam = cams.repeat_interleave(per_camera, 0)
    encoding = multiview.view_settings(pipe).get("camera", "concat")
    extra = multiview.camera_cond(cam, pipe.model_shape[-1], encoding)
    return pipe.sample(len(cam), steps=25, cond=extra, class_label=class_label, generator=generator,
                       guidance_scale=1.0), cam


def pixel_mmd(pipe, grid, samples, cam):
    """MMD (RBF, unnoise.metrics.mmd_rbf) between the grid's renders and the prior's samples at the same cameras,
    on 16x16 area-downsampled pixels (divided by the root of their number): how far the renders are from what the
    prior draws."""
    with torch.no_grad():
        renders = rendering.render(grid, cam, pipe.model_shape[-1])
    def feats(x):  # scaled so a typical distance between two images is about 1, the kernels' bandwidths
        f = torch.nn.functional.avg_pool2d(x, x.shape[-1] // 16).flatten(1)
        return f / f.shape[1] ** 0.5
    return metrics.mmd_rbf(feats(renders), feats(samples))


def score(grid, truth_grid, truth_occ, cams):
    return {"voxel_iou": multiview.voxel_iou(rendering.occupancy(grid), truth_occ),
            "silhouette_iou": multiview.silhouette_iou(grid, truth_grid, cams)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", default=None, help="a view-conditioned prior run (default: train one into --work)")
    p.add_argument("--work", default="/tmp/unnoise_distill3d_bench", help="where the prior and results go")
    p.add_argument("--shape", default="box", help="the known shape")
    p.add_argument("--shapes", default=None,
                   help="train a class-conditional prior on these shapes (comma-separated; --shape among them)")
    p.add_argument("--guidance-scale", type=float, default=1.0,
                   help="CFG scale (on the class of a class-conditional prior and on the camera)")
    p.add_argument("--train-steps", type=int, default=2000)
    p.add_argument("--steps", type=int, default=400, help="distillation steps (scored at 1/4, 1/2 and all)")
    p.add_argument("--methods", default="sds,vsd,oracle",
                   help="sds, vsd, and oracle (SDS whose denoiser returns the true render: the renderer and optimiser "
                        "alone, no learned prior)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weighting", default="dreamfusion")
    p.add_argument("--sigma-max", type=float, default=3.0)
    p.add_argument("--anneal-to", type=lambda v: None if v == "none" else float(v), default=0.5,
                   help="where the top noise level is annealed to, or none")
    p.add_argument("--views", type=int, default=4, help="random cameras per step")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.work, exist_ok=True)
    results = {"shape": args.shape, "steps": args.steps, "runs": [], "settings": vars(args)}
    prior = args.prior
    if prior is None:
        shapes = tuple(args.shapes.split(",")) if args.shapes else (args.shape,)
        prior = os.path.join(args.work, f"prior_{'_'.join(shapes)}")
        t0 = time.process_time()
        multiview.train_view_prior(prior, shapes, steps=args.train_steps, seed=args.seed, progress=False)
        results["prior_train_cpu_s"] = time.process_time() - t0
        print(f"prior trained in {results['prior_train_cpu_s']:.0f} CPU s")
    pipe = unnoise.load(prior, device="cpu")
    shapes = multiview.view_settings(pipe)["shapes"]
    label = shapes.index(args.shape) if len(shapes) > 1 else None
    scale = args.guidance_scale
    results.update(prior_shapes=shapes, class_label=label, guidance_scale=scale)
    res = 32
    truth_grid = views.shape_grid(args.shape, res)
    truth_occ = views.true_occupancy(args.shape, res)
    truth_hi = views.shape_grid(args.shape, 48)  # what the prior's training images were rendered from
    cams = views.held_out_cameras(8)
    samples, sample_cams = prior_samples(pipe, cams, 8, torch.Generator().manual_seed(args.seed + 1), label)
    results["mmd_truth"] = pixel_mmd(pipe, truth_grid, samples, sample_cams)
    print(f"pixel MMD of the true shape's renders to the prior's samples: {results['mmd_truth']:.4f}")
    start = score(rendering.init_grid(res), truth_grid, truth_occ, cams)
    print(f"start (a ball of radius 0.45): voxel IoU {start['voxel_iou']:.3f}, "
          f"silhouette IoU {start['silhouette_iou']:.3f}")
    results["start"] = start
    checkpoints = sorted({args.steps // 4, args.steps // 2, args.steps})
    for method in args.methods.split(","):
        rows, t0 = [], time.process_time()

        def callback(step, params, method=method, rows=rows, t0=t0):
            if step in checkpoints:
                row = {"method": method, "step": step, "cpu_s": time.process_time() - t0,
                       **score({k: v.detach() for k, v in params.items()}, truth_grid, truth_occ, cams)}
                rows.append(row)
                print(f"{method} step {step}: voxel IoU {row['voxel_iou']:.3f}, silhouette IoU "
                      f"{row['silhouette_iou']:.3f}, {row['cpu_s']:.0f} CPU s", flush=True)
        g = torch.Generator().manual_seed(args.seed)
        if method == "oracle":  # SDS from the exact prior of one known view per camera: D = the true render
            grid = distill.optimize(
                lambda y, sigma, cond: rendering.render(truth_hi, cond["camera"], pipe.model_shape[-1]),
                rendering.init_grid(res), lambda p, cam: rendering.render(p, cam, pipe.model_shape[-1]), args.steps,
                "sds", lr=0.05, sigma_range=(0.05, 3.0), anneal_to=0.5, generator=g, cond=lambda cam: {"camera": cam},
                cameras=lambda gen: rendering.random_cameras(4, gen), callback=callback)
        else:
            grid = multiview.distill_grid(pipe, args.steps, method, class_label=label, guidance_scale=scale,
                                          resolution=res, callback=callback, generator=g, progress=False,
                                          views_per_step=args.views, weighting=args.weighting,
                                          sigma_range=(0.05, args.sigma_max), anneal_to=args.anneal_to)
        multiview.save_turntable(grid, os.path.join(args.work, f"{args.shape}_{len(shapes)}shapes_{method}.gif"))
        rows[-1]["mmd_to_prior"] = pixel_mmd(pipe, grid, samples, sample_cams)
        print(f"{method}: pixel MMD to the prior's samples {rows[-1]['mmd_to_prior']:.4f}")
        results["runs"] += rows
    name = (f"results_{args.shape}_{len(shapes)}shapes_{args.methods.replace(',', '-')}_{args.weighting}_"
            f"s{args.sigma_max}-{args.anneal_to}_v{args.views}_g{args.guidance_scale}_{args.steps}.json")
    with open(os.path.join(args.work, name), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
