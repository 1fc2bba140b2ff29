"""unnoise on diffusers models: sampler-loop overhead against diffusers' own pipelines, and sampler quality on a
loaded diffusers folder against a tight ODE solve of the same model.

1. Speed: random-weight UNet2DModel folders (tiny 8x8 and mid-size 32x32), loaded with
   ``unnoise.interop.load_pipeline``; per sample wall time of ``pipe.sample`` (ddim, dpmpp_2m) vs diffusers'
   ``DDIMPipeline`` / the same pipeline with ``DPMSolverMultistepScheduler`` at equal steps, and vs the bare
   network calls alone (the same number of ``unet(x, t)`` calls on a fixed input), and the loop alone: the same
   ``pipe.sample`` with the network replaced by a stub that returns a stored output (the loop's own cost, which
   unlike a difference of two noisy timings does not depend on the machine's load).  Rounds alternate the four,
   median per configuration.
2. Quality: a small ``diffusers-unet2d`` trained briefly on the bundled 8x8 digits (v prediction, DDPM linear
   betas), exported with ``export_diffusers`` and read back with ``load_pipeline``; RMS distance of each
   sampler's output to ``unnoise.compare.ode_map`` (Dormand-Prince, tol 1e-5; its floor is the RMS to a tol 1e-4
   solve) from the same x_T, on the folder's own default grid.

    OMP_NUM_THREADS=1 nice python benchmarks/diffusers_models.py [--rounds 5] [--train-steps 400]
"""
from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def make_folder(folder, size, widths, attn, scheduler):
    import diffusers
    torch.manual_seed(0)
    down = tuple("AttnDownBlock2D" if i in attn else "DownBlock2D" for i in range(len(widths)))
    up = tuple("AttnUpBlock2D" if i in attn else "UpBlock2D" for i in reversed(range(len(widths))))
    unet = diffusers.UNet2DModel(sample_size=size, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=widths, down_block_types=down, up_block_types=up,
                                 norm_num_groups=8, attention_head_dim=8).eval()
    diffusers.DDIMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    return unet


def speed(rounds, batch, steps):
    import diffusers
    from unnoise.interop import load_pipeline
    rows = []
    for label, size, widths, attn in [("tiny 8x8 (8, 16)", 8, (8, 16), (1,)),
                                      ("mid 32x32 (32, 64, 64)", 32, (32, 64, 64), (1, 2))]:
        for sampler, cls in [("ddim", diffusers.DDIMScheduler), ("dpmpp_2m", diffusers.DPMSolverMultistepScheduler)]:
            folder = tempfile.mkdtemp()
            sched = cls(timestep_spacing="trailing", **({"clip_sample": False} if sampler == "ddim" else {}))
            unet = make_folder(folder, size, widths, attn, sched)
            pipe = load_pipeline(folder)
            dpipe = diffusers.DDIMPipeline(unet=unet, scheduler=sched) if sampler == "ddim" else \
                diffusers.DDPMPipeline(unet=unet, scheduler=sched)
            dpipe.set_progress_bar_config(disable=True)
            n_params = sum(p.numel() for p in unet.parameters())
            z = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
            times = {"unnoise": [], "diffusers": [], "bare": []}

            def run_unnoise():
                pipe.sample(batch, sampler=sampler, steps=steps, noise=z)

            def run_diffusers():
                dpipe(batch_size=batch, num_inference_steps=steps, output_type="np",
                      generator=torch.Generator().manual_seed(0))

            def run_bare():
                t = torch.tensor(500)
                with torch.no_grad():
                    for _ in range(steps):
                        unet(z, t)
            out = unet(z, torch.tensor(500)).sample

            class Stub(torch.nn.Module):  # the same loop with a network that costs nothing
                dtype, config = unet.dtype, unet.config

                def forward(self, x, t, **kw):
                    return type("Out", (), {"sample": out})

            def run_loop_only():
                real, pipe.denoiser.unet = pipe.denoiser.unet, Stub()
                try:
                    pipe.sample(batch, sampler=sampler, steps=steps, noise=z)
                finally:
                    pipe.denoiser.unet = real
            times["loop only"] = []
            runs = (("unnoise", run_unnoise), ("diffusers", run_diffusers), ("bare", run_bare),
                    ("loop only", run_loop_only))
            for _, fn in runs:  # warm-up
                fn()
            for _ in range(rounds):
                for key, fn in runs:
                    t0 = time.perf_counter()
                    fn()
                    times[key].append(time.perf_counter() - t0)
            med = {k: statistics.median(v) / batch for k, v in times.items()}
            rows.append((label, n_params, sampler, med))
            print(f"{label} {sampler}: unnoise {med['unnoise'] * 1e3:.2f} ms/sample, diffusers "
                  f"{med['diffusers'] * 1e3:.2f}, bare calls {med['bare'] * 1e3:.2f}, "
                  f"loop without network {med['loop only'] * 1e3:.3f}", flush=True)
    return rows


def train_digits(steps, seed=0):
    """A small diffusers-unet2d on the 8x8 digits, v prediction, DDPM linear betas (a plain AdamW loop)."""
    import unnoise
    from sklearn.datasets import load_digits
    x0 = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 8 - 1  # [-1, 1], (1797, 1, 8, 8)
    torch.manual_seed(seed)
    sched = unnoise.schedules.DDPM()
    net = unnoise.nets.build("diffusers-unet2d", shape=(1, 8, 8), base_channels=16, channel_mult=(1, 2),
                             num_res_blocks=1, attention_levels=(1,), norm_num_groups=8)
    den = unnoise.Denoiser(net, "v", "vp")
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(x0), (64,), generator=g)
        sigma = sched.sample_training_sigmas(64, generator=g)
        s = sigma.reshape(-1, 1, 1, 1)
        x = x0[idx] + s * torch.randn(x0[idx].shape, generator=g)
        c_skip, c_out, c_in, c_noise = den.precondition(s)
        target = (x0[idx] - c_skip * x) / c_out
        loss = ((net(c_in * x, c_noise.reshape(-1), None) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"  train step {step}: loss {loss.item():.4f}", flush=True)
    return den.eval(), sched


def quality(train_steps, n=32):
    import unnoise
    import unnoise.compare
    from unnoise.interop import export_diffusers, load_pipeline
    t0 = time.perf_counter()
    den, sched = train_digits(train_steps)
    print(f"  trained in {time.perf_counter() - t0:.0f} s", flush=True)
    folder = tempfile.mkdtemp() + "/digits"
    export_diffusers(den, sched, folder)
    pipe = load_pipeline(folder)
    z = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    sig0 = float(pipe.schedule.sampling_sigmas(5)[0])  # trailing grids all start at t = 999
    x_T = z * math.sqrt(1 + sig0**2)
    t0 = time.perf_counter()
    ref = unnoise.compare.ode_map(pipe.denoiser, x_T, sig0, tol=1e-5)
    coarse = unnoise.compare.ode_map(pipe.denoiser, x_T, sig0, tol=1e-4)
    floor = float(((coarse - ref) ** 2).mean().sqrt())
    print(f"  reference ODE solves in {time.perf_counter() - t0:.0f} s; RMS(tol 1e-4 vs 1e-5) = {floor:.2e}", flush=True)
    rows = []
    for steps in (5, 10, 20):
        sig = pipe.schedule.sampling_sigmas(steps)
        assert float(sig[0]) == sig0
        for sampler in ("ddim", "euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "deis"):
            x, nfe = unnoise.sample(pipe.denoiser, x_T.clone(), sig, sampler=sampler, return_nfe=True)
            rms = float(((x - ref) ** 2).mean().sqrt())
            rows.append((steps, sampler, nfe, rms))
            print(f"  {steps} steps {sampler}: NFE {nfe}, RMS to ODE {rms:.4f}", flush=True)
    return rows, float(ref.std()), floor


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--train-steps", type=int, default=400)
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [] if args.skip_speed else speed(args.rounds, args.batch, args.steps)
    print("\n| model | parameters | sampler | unnoise ms/sample | diffusers ms/sample | unnoise / diffusers "
          "| bare network calls ms/sample | unnoise / bare | loop alone (stub network) ms/sample | loop alone / bare |"
          "\n|---|---|---|---|---|---|---|---|---|---|")
    for label, n_params, sampler, m in rows:
        print(f"| {label} | {n_params:,} | {sampler} | {m['unnoise'] * 1e3:.2f} | {m['diffusers'] * 1e3:.2f} | "
              f"{m['unnoise'] / m['diffusers']:.2f} | {m['bare'] * 1e3:.2f} | {m['unnoise'] / m['bare']:.2f} | "
              f"{m['loop only'] * 1e3:.3f} | {100 * m['loop only'] / m['bare']:.1f} % |")
    qrows, spread, floor = quality(args.train_steps)
    print(f"\nsample spread (std of the ODE solutions): {spread:.3f}; reference floor (RMS between the "
          f"tol 1e-4 and 1e-5 solves): {floor:.2e}")
    print("\n| steps | sampler | NFE | RMS to the tight ODE solve |\n|---|---|---|---|")
    for steps, sampler, nfe, rms in qrows:
        print(f"| {steps} | {sampler} | {nfe} | {rms:.4f} |")


if __name__ == "__main__":
    main()
