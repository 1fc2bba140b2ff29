"""Streaming image data: peak memory and time to the first step of ``unnoise train`` on image folders of
1,000 and 16,000 random 64 px PNGs, and training examples/s fed from the streamed folder, the prepared
cache and an in-memory tensor (CPU).

1. Folders of random RGB PNGs (64 x 64, written in a temporary directory by two processes).
2. ``unnoise train --data FOLDER --image-size 64 --steps 5 ...`` as a subprocess under
   ``/usr/bin/time -v``: its peak resident memory (the largest single process; "tree" = the peak of the
   summed RSS of the process and its DataLoader workers, sampled every 50 ms, which over-counts pages
   they share) and the time from launch to the first training step (the training bar reaching 1/5)
   for both folder sizes.  ``--train-args`` adds options (e.g. a worker count) for the CLI under test.
   The same measurement runs for a bare streaming loop (this script in ``--child`` mode: ImageFolder +
   DataLoader with 2 workers + 5 steps of the same U-Net, no Trainer), which shows what the data path
   itself costs.
3. Examples/s of a small U-Net training step (64 px, base 16, levels 1,2, no attention, batch 8,
   AdamW, v-loss on DDPM sigmas, 1 torch thread) fed through a DataLoader with 2 workers from (a) the
   streamed folder, (b) the cache written by ``unnoise prepare``, (c) a TensorDataset in memory; the
   three loaders stay alive and the sources take turns step by step (one network), so load on a
   shared machine hits all alike; median step time (fetch + step).  Also the loaders' own rate
   without training (what the data path could deliver).

Run: ``.venv/bin/python benchmarks/data_streaming.py [--sizes 1000,16000] [--steps 40] [--parts memory,throughput]``
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch

SIZE, BATCH = 64, 8
UNET = dict(base_channels=16, channel_mult=(1, 2), attention_levels=(), num_res_blocks=2)


# ----------------------------------------------------------------------------- data
def _write_pngs(args):
    root, lo, hi, seed = args
    from PIL import Image
    rng = np.random.default_rng(seed + lo)
    for i in range(lo, hi):
        arr = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(arr).save(os.path.join(root, f"{i:06d}.png"), compress_level=1)


def make_folder(root: str, n: int, seed: int = 0) -> str:
    os.makedirs(root, exist_ok=True)
    chunks = [(root, lo, min(n, lo + 500), seed) for lo in range(0, n, 500)]
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(_write_pngs, chunks)
    return root


# ----------------------------------------------------------------------------- a training step
def build_step(seed: int = 0):
    import unnoise
    from unnoise.losses import denoising_loss
    torch.manual_seed(seed)
    den = unnoise.Denoiser(unnoise.nets.build("unet", shape=(3, SIZE, SIZE), **UNET))
    sched = unnoise.schedules.get("ddpm")
    opt = torch.optim.AdamW(den.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(seed)

    def step(x0):
        loss = denoising_loss(den, x0, sched.sample_training_sigmas(len(x0), g), generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def loader(ds, workers: int = 2, seed: int = 0):
    from torch.utils.data import DataLoader, RandomSampler
    sampler = RandomSampler(ds, replacement=False, generator=torch.Generator().manual_seed(seed))
    return DataLoader(ds, batch_size=BATCH, sampler=sampler, num_workers=workers, drop_last=True,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers else None)


def loader_rate(ds, batches: int, workers: int = 2) -> float:
    """Examples/s of the DataLoader alone over ``batches`` batches after the first (start-up excluded)."""
    it = iter(loader(ds, workers))
    next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * BATCH / (time.perf_counter() - t0)


def interleaved_steps(sources: dict, steps: int, workers: int = 2) -> dict:
    """Per-step times (batch fetch + training step) of one U-Net fed from each source in turn.

    All loaders stay alive with their workers, and the sources take turns step by step, so load from
    other jobs on a shared machine hits every source alike; each source's first batch (worker start-up)
    is not timed.
    """
    step = build_step()
    its = {name: iter(loader(ds, workers)) for name, ds in sources.items()}
    for it in its.values():
        step(next(it)[0])
    times = {name: [] for name in sources}
    for _ in range(steps):
        for name, it in its.items():
            t0 = time.perf_counter()
            try:
                x0, _ = next(it)
            except StopIteration:
                its[name] = it = iter(loader(sources[name], workers))
                x0, _ = next(it)
            step(x0)
            times[name].append(time.perf_counter() - t0)
    return times


# ----------------------------------------------------------------------------- subprocess measurement
def _tree_rss_kib(pid: int) -> int:
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack += [int(c) for c in f.read().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def measure(cmd: list[str], marker: str, env: dict) -> dict:
    """Run ``cmd`` under /usr/bin/time -v: peak RSS (single process, tree), time to ``marker`` in its output."""
    start = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-v"] + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    peak, first, text = [0], [None], []
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid))
            time.sleep(0.05)
    threading.Thread(target=sample, daemon=True).start()
    pattern = re.compile(marker)
    buf = b""
    while True:
        chunk = proc.stdout.read1(4096)
        if not chunk:
            break
        buf += chunk
        if first[0] is None and pattern.search(buf.decode(errors="replace")):
            first[0] = time.perf_counter() - start
    proc.wait()
    done.set()
    wall = time.perf_counter() - start
    out = buf.decode(errors="replace")
    text.append(out)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out).group(1))
    return {"max_rss_mb": rss / 1024, "tree_rss_mb": peak[0] / 1024, "first_step_s": first[0], "wall_s": wall}


def cli_run(folder: str, out: str, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "unnoise", "train", "--data", folder, "--image-size", str(SIZE), "--steps", "5",
           "--batch-size", str(BATCH), "--base-channels", str(UNET["base_channels"]), "--channel-mult", "1,2",
           "--attention-levels", "", "--checkpoint-every", "0", "--device", "cpu", "--out", out] + extra
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    try:
        return measure(cmd, r"training[^\n\r]*\b1/5\b", env)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def child_run(folder: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", folder]
    return measure(cmd, r"step 1 done", {**os.environ, "OMP_NUM_THREADS": "1"})


def child_main(folder: str) -> None:
    """The bare streaming loop: ImageFolder -> DataLoader (2 workers) -> 5 U-Net steps."""
    from unnoise.data.datasets import ImageFolder
    torch.set_num_threads(1)
    ds = ImageFolder(folder, SIZE)
    step = build_step()
    for k, (x0, _) in enumerate(loader(ds, 2)):
        step(x0)
        print(f"step {k + 1} done", flush=True)
        if k == 4:
            break


# ----------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,16000", help="folder sizes (default: 1000,16000)")
    ap.add_argument("--steps", type=int, default=40, help="timed training steps per source (default: 40)")
    ap.add_argument("--throughput-size", type=int, default=1000, help="folder used for examples/s (default: 1000)")
    ap.add_argument("--train-args", default="", help="extra options for 'unnoise train' (space-separated)")
    ap.add_argument("--skip-cli", action="store_true", help="skip the 'unnoise train' subprocess runs")
    ap.add_argument("--parts", default="memory,throughput", help="which parts to run (default: memory,throughput)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_main(args.child)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    tmp = tempfile.mkdtemp(prefix="unnoise-stream-")
    try:
        parts = args.parts.split(",")
        sizes = [int(s) for s in args.sizes.split(",")] if "memory" in parts else []
        folders = {}
        for n in sorted(set(sizes + [args.throughput_size])):
            t0 = time.perf_counter()
            folders[n] = make_folder(os.path.join(tmp, f"png{n}"), n)
            mb = sum(e.stat().st_size for e in os.scandir(folders[n])) / 2**20
            print(f"wrote {n:,} PNGs ({mb:.0f} MB) in {time.perf_counter() - t0:.1f} s", flush=True)

        if sizes:
            print("\n| run | images | peak RSS, largest process | peak RSS, process tree | time to first step "
                  "| wall |\n|---|---|---|---|---|---|")
        for n in sizes:
            runs = [("bare streaming loop (ImageFolder, 2 workers)", lambda: child_run(folders[n]))]
            if not args.skip_cli:
                runs.insert(0, ("`unnoise train`", lambda: cli_run(folders[n], os.path.join(tmp, "run"),
                                                                   args.train_args.split())))
            for name, fn in runs:
                r = fn()
                first = f"{r['first_step_s']:.1f} s" if r["first_step_s"] is not None else "n/a"
                print(f"| {name} | {n:,} | {r['max_rss_mb']:.0f} MB | {r['tree_rss_mb']:.0f} MB | {first} "
                      f"| {r['wall_s']:.1f} s |", flush=True)

        if "throughput" not in parts:
            return
        from unnoise.data.cache import CachedDataset, prepare
        from unnoise.data.datasets import ImageFolder, TensorDataset
        torch.set_num_threads(1)
        folder = folders[args.throughput_size]
        streamed = ImageFolder(folder, SIZE)
        t0 = time.perf_counter()
        prepare(streamed, os.path.join(tmp, "cache"), num_workers=2, progress=False)
        prep = time.perf_counter() - t0
        cached = CachedDataset(os.path.join(tmp, "cache"))
        memory = TensorDataset(torch.stack([cached[i][0] for i in range(len(cached))]))
        print(f"\nprepared the {len(streamed):,}-image cache in {prep:.1f} s ({len(streamed) / prep:.0f} images/s, "
              "2 workers)", flush=True)
        sources = {"streamed folder": streamed, "prepared cache": cached, "in-memory tensor": memory}
        alone = {name: loader_rate(ds, 4 * args.steps) for name, ds in sources.items()}
        times = interleaved_steps(sources, args.steps)
        rate = {name: BATCH / statistics.median(t) for name, t in times.items()}
        base = rate["in-memory tensor"]
        print(f"\n| source (DataLoader, 2 workers) | training examples/s (median step) | vs in-memory "
              f"| loader alone, examples/s |\n|---|---|---|---|")
        for name in sources:
            print(f"| {name} | {rate[name]:.1f} | {rate[name] / base:.2f} | {alone[name]:.0f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
