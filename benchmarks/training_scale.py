"""Training throughput vs number of processes, Trainer overhead vs a bare PyTorch loop, and the
cost of a crash-safe checkpoint as a fraction of step time (CPU).

1. ``unnoise train`` on the built-in ring set (residual MLP, width 256, depth 4, global batch
   512) as 1 process with 1 thread, 1 process with 2 threads and ``torchrun --nproc_per_node 2``
   (gloo, 1 thread each).  Throughput (examples/s, global) is the median of the windows logged in
   metrics.jsonl after the first; configurations alternate round after round so that load on a
   shared machine hits all of them alike.
2. In one process: the Trainer's step time vs a bare loop (same network, batch, AdamW, loss; no
   EMA, no NaN checks, no reductions), and the time and size of one training checkpoint (step
   directory with weights, EMA, optimizer and RNG states, fsynced, plus the top-level copy).

Run: ``.venv/bin/python benchmarks/training_scale.py [--steps 150] [--rounds 2]``
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import unnoise
from unnoise import checkpoint
from unnoise.losses import denoising_loss
from unnoise.train import TrainConfig, Trainer

WIDTH, DEPTH, BATCH = 256, 4, 512


def cli_throughput(nproc: int, threads: int, steps: int, out: str) -> float:
    args = ["-m", "unnoise", "train", "--data", "ring", "--num-points", "20000", "--width", str(WIDTH),
            "--depth", str(DEPTH), "--batch-size", str(BATCH), "--steps", str(steps), "--log-every", "25",
            "--checkpoint-every", "0", "--device", "cpu", "--out", out]
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc_per_node", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MPLBACKEND": "Agg"}
    r = subprocess.run(launcher + args, env=env, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr[-3000:])
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rates = [json.loads(line)["examples_per_s"] for line in f]
    shutil.rmtree(out)
    return statistics.median(rates[1:])


def trainer(run_dir, width, depth):
    torch.manual_seed(0)
    data = unnoise.data.toy_dataset("ring", 20000, torch.Generator().manual_seed(0))
    net = unnoise.nets.build("mlp", shape=[2], width=width, depth=depth)
    cfg = TrainConfig(steps=10**9, batch_size=BATCH, device="cpu", keep_checkpoints=2)
    return Trainer(unnoise.Denoiser(net), unnoise.schedules.get("ddpm"), data, cfg, run_dir=run_dir)


def bare_step_time(width, depth, steps):
    """The same network and loss in the plainest loop: the reference for the Trainer's overhead."""
    torch.manual_seed(0)
    data = unnoise.data.toy_dataset("ring", 20000, torch.Generator().manual_seed(0))
    den = unnoise.Denoiser(unnoise.nets.build("mlp", shape=[2], width=width, depth=depth))
    sched = unnoise.schedules.get("ddpm")
    opt = torch.optim.AdamW(den.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        idx = torch.randint(0, len(data), (BATCH,), generator=g)
        loss = denoising_loss(den, data[idx], sched.sample_training_sigmas(BATCH, g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[2:])


def checkpoint_cost(width, depth, steps, saves):
    tmp = tempfile.mkdtemp()
    try:
        t = trainer(tmp, width, depth)
        step_times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            t.step()
            step_times.append(time.perf_counter() - t0)
        save_times = []
        for _ in range(saves):
            t.step()
            t0 = time.perf_counter()
            t.save()
            save_times.append(time.perf_counter() - t0)
        path = checkpoint.latest_checkpoint(tmp)
        size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
        size += os.path.getsize(os.path.join(tmp, "model.safetensors"))
        n_params = sum(p.numel() for p in t.denoiser.parameters())
        return n_params, statistics.median(step_times[2:]), statistics.median(save_times), size
    finally:
        shutil.rmtree(tmp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=150, help="training steps per throughput run")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    configs = [(1, 1), (1, 2), (2, 1)]
    rates = {c: [] for c in configs}
    out = tempfile.mkdtemp()
    for r in range(args.rounds):
        for nproc, threads in configs:
            rates[(nproc, threads)].append(cli_throughput(nproc, threads, args.steps, os.path.join(out, "run")))
            print(f"round {r}: {nproc} process(es) x {threads} thread(s): {rates[(nproc, threads)][-1]:.0f} ex/s",
                  flush=True)
    base = statistics.median(rates[(1, 1)])
    print(f"\n| processes x threads | examples/s (median) | vs 1 x 1 |\n|---|---|---|")
    for (nproc, threads), v in rates.items():
        m = statistics.median(v)
        print(f"| {nproc} x {threads} | {m:.0f} | {m / base:.2f} |")

    torch.set_num_threads(1)
    print("\n| MLP width x depth | parameters | bare loop step | Trainer step | checkpoint | checkpoint size "
          "| checkpoint / step | overhead at --checkpoint-every 500 |\n|---|---|---|---|---|---|---|---|")
    for width, depth in ((256, 4), (1024, 8)):
        bare = bare_step_time(width, depth, 20)
        n, step, save, size = checkpoint_cost(width, depth, 20, 3)
        print(f"| {width} x {depth} | {n:,} | {bare * 1e3:.1f} ms | {step * 1e3:.1f} ms | {save * 1e3:.0f} ms "
              f"| {size / 2**20:.1f} MiB | {save / step:.1f} steps | {100 * save / (500 * step):.2f} % |")


if __name__ == "__main__":
    main()
