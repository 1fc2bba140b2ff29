"""Training throughput of unnoise's U-Net vs diffusers' UNet2DModel at a similar parameter count (CPU).

Both networks get the same layout: 3 levels with (32, 64, 64) channels, 2 residual blocks per level,
self-attention at the middle level and in the bottleneck, GroupNorm with 32 groups (ours: the largest
divisor <= 32), and the same input (a batch of 32x32 RGB images).  One training step = forward,
MSE loss, backward and an AdamW update.  Timings alternate between the two networks, round after
round, so load on a shared machine hits both alike; the table reports the median over rounds.

Run: ``.venv/bin/python benchmarks/unet_throughput.py [--batch 16] [--rounds 5] [--threads 1]``
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import UNet2DModel

from unnoise import nets


def ours(size: int) -> torch.nn.Module:
    return nets.build("unet", shape=(3, size, size), base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=2,
                      attention_levels=(1,), num_heads=1)


def reference(size: int) -> torch.nn.Module:
    return UNet2DModel(sample_size=size, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64),
                       layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=32,
                       attention_head_dim=None)


def make_step(net, call, batch, size, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g)
    t = torch.rand(batch, generator=g)
    target = torch.randn(batch, 3, size, size, generator=g)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step():
        loss = torch.nn.functional.mse_loss(call(net, x, t), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (default: 5)")
    p.add_argument("--steps", type=int, default=3, help="training steps per round and network (default: 3)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    a, b = ours(args.size), reference(args.size)
    steps = {
        "unnoise UNet": make_step(a, lambda n, x, t: n(x, t, None), args.batch, args.size, 0),
        "diffusers UNet2DModel": make_step(b, lambda n, x, t: n(x, t * 999).sample, args.batch, args.size, 0),
    }
    params = {"unnoise UNet": nets.count_parameters(a), "diffusers UNet2DModel": nets.count_parameters(b)}
    for fn in steps.values():  # warm-up (allocations, first-call overheads)
        fn()
    rates = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            rates[name].append(args.batch * args.steps / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\nbatch {args.batch} of 3x{args.size}x{args.size}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"thread(s), median of {args.rounds} alternating rounds of {args.steps} steps")
    print("\n| network | parameters | training images/s (median) | min .. max over rounds |")
    print("|---|---|---|---|")
    for k in steps:
        print(f"| {k} | {params[k]:,} | {med[k]:.1f} | {min(rates[k]):.1f} .. {max(rates[k]):.1f} |")
    print(f"\nratio unnoise / diffusers: {med['unnoise UNet'] / med['diffusers UNet2DModel']:.2f}x "
          f"(parameter ratio {params['unnoise UNet'] / params['diffusers UNet2DModel']:.2f})")


if __name__ == "__main__":
    main()
