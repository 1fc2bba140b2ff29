"""Regenerate every figure of docs/concepts.md into docs/figures/*.png.

Every figure is computed with exact denoisers (``unnoise.analytic.GaussianMixture`` and
``unnoise.analytic.EmpiricalDenoiser``), so nothing is trained and every curve is the method's own
behaviour, not a network's error.  Run from the repository root:

    .venv/bin/python docs/make_figures.py              # all figures, about a minute on 2 CPU cores
    .venv/bin/python docs/make_figures.py --fast --out /tmp/figs   # tiny sizes (used by the tests)
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import unnoise  # noqa: E402
from unnoise import analytic, compare, samplers, schedules  # noqa: E402
from unnoise.denoiser import score_from_denoised  # noqa: E402
from unnoise.imaging import image_grid, plot_image_trajectory  # noqa: E402
from unnoise.plotting import plot_trajectory  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DPI = 90


def _save(fig, out, name):
    path = os.path.join(out, name)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def two_class_mixture():
    """Two classes of a 2-D mixture: class 0 on the left (3 blobs), class 1 on the right (3 blobs)."""
    means0 = torch.tensor([[-2.0, -1.5], [-2.0, 0.0], [-2.0, 1.5]], dtype=torch.float64)
    means1 = torch.tensor([[2.0, -1.5], [2.0, 0.0], [2.0, 1.5]], dtype=torch.float64)
    cls = [analytic.GaussianMixture(means0, 0.3), analytic.GaussianMixture(means1, 0.3)]
    full = analytic.GaussianMixture(torch.cat([means0, means1]), 0.3)
    return cls, full


# ---------------------------------------------------------------------------------------------- figures
def fig_forward_2d(out, fast):
    """Forward noising q(x_t | x_0) of the swiss roll under DDPM's VP process, and the reverse DDPM
    sampler with the exact denoiser of the data set (plotting.plot_trajectory)."""
    g = torch.Generator().manual_seed(0)
    n = 300 if fast else 1000
    data = unnoise.data.toy_dataset("swiss_roll", n, g)
    sched = schedules.DDPM()
    ts = [0, 50, 150, 300, 600, 999]
    eps = torch.randn(data.shape, generator=g)
    forward = [(float(sched.sigmas[t]), data + float(sched.sigmas[t]) * eps) for t in ts]
    forward[0] = (0.0, data)
    sigmas = sched.sampling_sigmas(10 if fast else 40)
    reverse, den = [], analytic.EmpiricalDenoiser(data)
    x = torch.randn(n, 2, generator=g) * sigmas[0]
    reverse.append((float(sigmas[0]), x))
    # show the reverse states at the grid levels closest to the forward row's noise levels
    after = sigmas[1:-1].double()
    keep = {int((after.log() - math.log(s)).abs().argmin()) for s, _ in forward[1:-1]} | {len(sigmas) - 2}

    def cb(i, x, d, s):
        if i in keep:
            reverse.append((float(sigmas[i + 1]), x.clone()))
    unnoise.sample(den, x, sigmas, sampler="ddpm", generator=g, callback=cb)
    path = os.path.join(out, "forward_reverse_2d.png")
    plot_trajectory(forward, reverse, path, scale=sched.scale)
    return path


def fig_forward_digits(out, fast):
    """One digit under the three processes x_t = s(sigma) (x_0 + sigma eps), same eps in every row."""
    from unnoise.data.images import load_digits
    images, _, _ = load_digits()
    x0 = images[0]
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    sig = [0.0, 0.1, 0.3, 1.0, 3.0, 10.0]
    rows = [("VP (DDPM)\n$s=1/\\sqrt{1+\\sigma^2}$", "vp"), ("VE (NCSN/EDM)\n$s=1$", "ve"),
            ("flow\n$s=1/(1+\\sigma)$", "flow")]
    fig, axes = plt.subplots(len(rows), len(sig), figsize=(1.35 * len(sig) + 1.2, 1.45 * len(rows) + 0.5))
    for r, (label, proc) in enumerate(rows):
        for c, s in enumerate(sig):
            scale = float(schedules.signal_scale(proc, torch.tensor(s)))
            xt = scale * (x0 + s * eps)
            # VE grows without bound: show every panel on its own symmetric range (written below it)
            lim = max(1.0, float(xt.abs().max()))
            ax = axes[r][c]
            ax.imshow(xt[0].numpy(), cmap="gray", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"range ±{lim:.2g}", fontsize=7)
            if r == 0:
                ax.set_title(f"$\\sigma$={s:g}", fontsize=9)
        axes[r][0].set_ylabel(label, fontsize=8)
    fig.suptitle("forward process $x_t = s(\\sigma)\\,(x_0 + \\sigma\\,\\epsilon)$ on a scikit-learn digit", fontsize=10)
    fig.tight_layout()
    return _save(fig, out, "forward_digits.png")


def fig_score_field(out, fast):
    """The score (D - x) / sigma^2 of a noised ring mixture, as arrows over log p_sigma contours."""
    gm = analytic.GaussianMixture.ring(k=6, radius=2.0, std=0.2)
    pts = gm.sample(300 if fast else 600, generator=torch.Generator().manual_seed(0))
    k = 13 if fast else 19
    lin = torch.linspace(-3.5, 3.5, k)
    gx, gy = torch.meshgrid(lin, lin, indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    fine = torch.linspace(-3.5, 3.5, 80)
    fx, fy = torch.meshgrid(fine, fine, indexing="xy")
    fgrid = torch.stack([fx.flatten(), fy.flatten()], 1)
    levels = [0.2, 0.7, 2.0]
    fig, axes = plt.subplots(1, len(levels), figsize=(5.4 * len(levels), 4.2))
    for ax, s in zip(axes, levels):
        score = score_from_denoised(grid, gm.denoise(grid, s), s)
        logp = gm.log_prob(fgrid, s).reshape(80, 80)
        ax.contourf(fx, fy, logp.clamp_min(logp.max() - 12), levels=12, cmap="Blues", alpha=0.6)
        ax.scatter(pts[:, 0], pts[:, 1], s=2, color="0.3", alpha=0.5, label="data $x_0$")
        # arrows show the score's direction; its size |score| (orders of magnitude apart) is the colour
        mag = score.norm(dim=1)
        unit = score / mag.clamp_min(1e-12)[:, None]
        q = ax.quiver(grid[:, 0], grid[:, 1], unit[:, 0], unit[:, 1], torch.log10(mag.clamp_min(1e-6)),
                      cmap="autumn_r", angles="xy", scale_units="xy", scale=1 / (0.28 * 7 / (k - 1) * 1.6),
                      width=0.005)
        lo = float(torch.quantile(torch.log10(mag.clamp_min(1e-6)), 0.05))
        q.set_clim(lo, float(torch.log10(mag.max())))
        fig.colorbar(q, ax=ax, shrink=0.75, label="$\\log_{10}$ |score|")
        ax.set_title(f"$\\sigma$ = {s:g}", fontsize=10)
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle("score $\\nabla\\log p_\\sigma(x) = (D(x,\\sigma) - x)/\\sigma^2$ of the noised ring: direction "
                 "(arrows), size (colour), $\\log p_\\sigma$ (blue shading)", fontsize=11)
    return _save(fig, out, "score_field.png")


def fig_projection(out, fast):
    """The denoiser as an approximate projection onto the data manifold (a circle of training points)."""
    n = 200
    ang = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
    circle = torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    den = analytic.EmpiricalDenoiser(circle)
    k = 9 if fast else 13
    lin = torch.linspace(-2.0, 2.0, k, dtype=torch.float64)
    gx, gy = torch.meshgrid(lin, lin, indexing="xy")
    x = torch.stack([gx.flatten(), gy.flatten()], 1)
    x = x[x.norm(dim=1) > 0.15]
    proj = x / x.norm(dim=1, keepdim=True)
    levels = [0.05, 0.3, 1.0]
    fig, axes = plt.subplots(1, len(levels), figsize=(4.2 * len(levels), 4.3))
    for ax, s in zip(axes, levels):
        d = den.denoise(x, s)
        err = float((d - proj).norm(dim=1).mean())
        ax.plot(circle[:, 0], circle[:, 1], ".", ms=2, color="0.4", label="training points")
        ax.quiver(x[:, 0], x[:, 1], (d - x)[:, 0], (d - x)[:, 1], color="C2", angles="xy", scale_units="xy",
                  scale=1, width=0.004, label="$x \\to D(x,\\sigma)$")
        ax.set_title(f"$\\sigma$ = {s:g}: mean $|D - \\mathrm{{proj}}(x)|$ = {err:.2f}", fontsize=10)
        ax.set_aspect("equal")
        ax.set_xlim(-2.2, 2.2)
        ax.set_ylim(-2.2, 2.2)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle("the exact denoiser of points on a circle: at small $\\sigma$ it projects onto the circle, "
                 "at large $\\sigma$ it pulls towards the mean", fontsize=10)
    return _save(fig, out, "denoiser_projection.png")


def _paths(den, sampler, z, sigmas, seed, **options):
    """States of one sampler run after every step, in VP coordinates x_t = x / sqrt(1 + sigma^2)."""
    states = [z * sigmas[0] / math.sqrt(1 + float(sigmas[0]) ** 2)]

    def cb(i, x, d, s):
        s_next = float(sigmas[i + 1])
        states.append(x / math.sqrt(1 + s_next**2))
    g = torch.Generator().manual_seed(seed)
    unnoise.sample(den, z * sigmas[0], sigmas, sampler=sampler, generator=g, callback=cb, **options)
    return torch.stack(states)  # (steps + 1, n, 2)


def fig_trajectories(out, fast):
    """DDPM vs DDIM vs gradient estimation (and the reverse SDE) from the same noise, exact ring denoiser."""
    gm = analytic.GaussianMixture.ring(k=8, radius=2.0, std=0.1)
    sched = schedules.DDPM()
    sigmas = sched.sampling_sigmas(10 if fast else 25)
    z = torch.randn(6 if fast else 8, 2, generator=torch.Generator().manual_seed(3))
    runs = [("ddpm", "DDPM (ancestral, stochastic)", {}), ("ddim", "DDIM ($\\eta$=0, deterministic)", {}),
            ("gradient_estimation", "gradient estimation ($\\gamma$=2)", {}),
            ("euler_maruyama", "reverse SDE (Euler-Maruyama)", {})]
    runs = [r for r in runs if r[0] in samplers.available()]
    ref = gm.sample(1000, generator=torch.Generator().manual_seed(0)) / 1.0
    fig, axes = plt.subplots(1, len(runs), figsize=(3.9 * len(runs), 4.1))
    for ax, (name, label, opts) in zip(axes, runs):
        p = _paths(gm.denoise, name, z, sigmas, 0, **opts)
        ax.scatter(ref[:, 0], ref[:, 1], s=1, color="0.7", label="exact samples")
        for j in range(p.shape[1]):
            ax.plot(p[:, j, 0], p[:, j, 1], "-", lw=0.8, color=f"C{j % 10}", alpha=0.8)
        ax.plot(p[0, :, 0], p[0, :, 1], "k.", ms=5, label="start $x_T$")
        ax.plot(p[-1, :, 0], p[-1, :, 1], "r*", ms=7, label="end $x_0$")
        ax.set_title(f"{label}\nsampler=\"{name}\"", fontsize=9)
        ax.set_aspect("equal")
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_xlabel("$x_1$")
    axes[0].set_ylabel("$x_2$ (VP coordinates $x_t$)")
    axes[0].legend(loc="lower left", fontsize=7)
    fig.suptitle(f"{len(sigmas) - 1} steps of DDPM's trailing grid from the same noise, exact ring denoiser",
                 fontsize=10)
    return _save(fig, out, "trajectories.png")


# options that give each sampler a sensible cost per step; the rest use their defaults
QUALITY_OPTIONS = {"langevin": {"n_steps_each": 2}, "pc": {"n_corrector": 1}, "edm": {"S_churn": 10.0}}


def fig_sampler_quality(out, fast):
    """Sliced Wasserstein vs real NFE for every registered sampler, exact ring denoiser.

    Each sampler gets the largest step count whose measured NFE fits the budget
    (``unnoise.compare.fit_steps``); all runs start from the same noise.
    """
    from unnoise.metrics import sliced_wasserstein
    gm = compare.builtin_mixture("ring2d")
    n = 100 if fast else 2000
    budgets = (4, 8) if fast else (5, 10, 20, 50, 100)
    ref = gm.sample(n, generator=torch.Generator().manual_seed(100))
    ref2 = gm.sample(n, generator=torch.Generator().manual_seed(101))

    def swd(x):
        return sliced_wasserstein(x, ref, generator=torch.Generator().manual_seed(0))
    floor = swd(ref2)

    def grid(steps):
        return schedules.karras_sigmas(steps, 0.002, 80.0)
    # the fast mode only checks that the figure is drawn: a few samplers of each kind
    names = [s for s in ("ddim", "heun", "ddpm") if s in samplers.available()] if fast else samplers.available()
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    probe = torch.randn(2, 2, generator=torch.Generator().manual_seed(7))
    rows = []
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    for i, name in enumerate(names):
        opts = QUALITY_OPTIONS.get(name, {})
        stochastic = compare.is_stochastic(gm.denoise, name, grid(2), probe, opts)
        pts = []
        for budget in budgets:
            run_opts = opts
            if compare.is_adaptive(name):  # rk45: the tolerance, not the grid, sets the cost (as in compare)
                tol, nfe = compare.fit_tolerance(gm.denoise, name, budget, grid(2), z[:256], opts)
                steps = None if tol is None else 2
                run_opts = {**opts, "rtol": tol, "atol": tol}
            else:
                steps, nfe = compare.fit_steps(gm.denoise, name, budget, grid, probe, opts)
            if steps is None:
                continue
            sig = grid(steps)
            x, nfe = samplers.sample(gm.denoise, z * sig[0], sig, sampler=name, return_nfe=True,
                                     generator=torch.Generator().manual_seed(1), **run_opts)
            d = swd(x) if torch.isfinite(x).all() else float("inf")
            pts.append((nfe, d))
            rows.append((name, stochastic, budget, steps, nfe, d))
        if pts:
            ax.plot(*zip(*pts), marker="os^"[(i // 10) % 3], ms=4, lw=1.4, ls="--" if stochastic else "-",
                    color=plt.cm.tab10(i % 10), label=name + (" (SDE)" if stochastic else ""))
    ax.axhline(floor, color="k", lw=0.9, ls=":", label="exact vs exact (floor)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("denoiser evaluations (NFE)")
    ax.set_ylabel("sliced Wasserstein distance to exact samples")
    ax.set_title(f"every sampler on the 8-Gaussian ring, exact denoiser, Karras grid, {n} samples", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, out, "sampler_quality.png"), rows, floor


def fig_guidance(out, fast):
    """Classifier-free and classifier guidance on a two-class mixture with exact denoisers."""
    from unnoise.guidance import ClassifierFreeGuidance, ClassifierGuidance
    cls, full = two_class_mixture()
    null = 2

    def conditional(x, sigma, cond):
        # labels 0/1 -> that class's exact mixture; the null label -> the full mixture
        lab = torch.as_tensor(cond["label"]).reshape(-1)
        outs = [m.denoise(x, sigma) for m in cls] + [full.denoise(x, sigma)]
        return torch.stack(outs)[lab, torch.arange(len(x))]

    def classifier(x, sigma):
        # exact p(y | x, sigma) for equal class priors: log p_sigma(x | y) up to a constant
        return torch.stack([m.log_prob(x, sigma) for m in cls], 1)

    n = 200 if fast else 800
    scales = [0.0, 1.0, 3.0, 8.0]
    sigmas = schedules.karras_sigmas(8 if fast else 30, 0.002, 80.0)
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    labels = torch.zeros(n, dtype=torch.long)
    fig, axes = plt.subplots(2, len(scales), figsize=(3.3 * len(scales), 6.6), sharex=True, sharey=True)
    exact0 = cls[0].sample(n, generator=torch.Generator().manual_seed(1))
    for c, w in enumerate(scales):
        guided = [("classifier-free", ClassifierFreeGuidance(conditional, w, null_label=null)),
                  ("classifier", ClassifierGuidance(full.denoise, classifier, w))]
        for r, (kind, den) in enumerate(guided):
            x = unnoise.sample(den, z.clone(), sigmas, sampler="heun", cond=labels)
            ax = axes[r][c]
            ax.scatter(exact0[:, 0], exact0[:, 1], s=2, color="0.75", label="exact class 0")
            ax.scatter(x[:, 0], x[:, 1], s=2, color="C0" if r == 0 else "C1", label="guided samples")
            frac = float((x[:, 0] < 0).float().mean())
            ax.set_title(f"{kind}, w = {w:g}\n{100 * frac:.0f}% on the class-0 side", fontsize=9)
            ax.set_aspect("equal")
            ax.set_xlim(-4, 4)
            ax.set_ylim(-3.5, 3.5)
            if r == 1:
                ax.set_xlabel("$x_1$")
        axes[0][c].tick_params(labelbottom=False)
    axes[0][0].set_ylabel("$x_2$")
    axes[1][0].set_ylabel("$x_2$")
    axes[0][0].legend(loc="lower right", fontsize=7)
    fig.suptitle("guidance towards class 0 (left) of a two-class mixture: w = 0 unconditional, w = 1 exact "
                 "conditional, w > 1 sharpened", fontsize=10)
    return _save(fig, out, "guidance.png")


def fig_langevin(out, fast):
    """Annealed Langevin dynamics: the chain's state at the end of each noise level."""
    gm = analytic.GaussianMixture.ring(k=8, radius=2.0, std=0.1)
    levels = torch.cat([torch.exp(torch.linspace(math.log(5.0), math.log(0.05), 6)), torch.zeros(1)])
    n = 300 if fast else 1000
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0)) * levels[0]
    states = [("start", x.clone())]

    def cb(i, x, d, s):
        states.append((f"after $\\sigma$={s:.2g}", x.clone()))
    out_x = unnoise.sample(gm.denoise, x, levels, sampler="langevin", generator=torch.Generator().manual_seed(1),
                           callback=cb, n_steps_each=20 if fast else 50)
    states.append(("final $D(x,\\sigma_L)$", out_x))
    fig, axes = plt.subplots(1, len(states), figsize=(2.3 * len(states), 2.6), sharex=True, sharey=True)
    for ax, (label, pts) in zip(axes, states):
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.6)
        ax.set_title(label, fontsize=8)
        ax.set_xlim(-4, 4)
        ax.set_ylim(-4, 4)
        ax.set_aspect("equal")
        ax.set_xticks([-2, 0, 2])
        ax.set_yticks([-2, 0, 2])
        ax.set_xlabel("$x_1$", fontsize=8)
    axes[0].set_ylabel("$x_2$")
    fig.suptitle("annealed Langevin dynamics (sampler=\"langevin\") on the 8-Gaussian ring, exact score", fontsize=10)
    return _save(fig, out, "langevin.png")


def fig_likelihood(out, fast):
    """Probability-flow ODE NLL (unnoise.likelihood.nll) against the exact log-density."""
    if not hasattr(unnoise, "likelihood"):
        return None
    gm = analytic.GaussianMixture.random(4, 2, generator=torch.Generator().manual_seed(0))
    x = gm.sample(16 if fast else 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sigma_min = 1e-3
    tol = 1e-3 if fast else 1e-5
    est = unnoise.likelihood.nll(gm.denoise, x, sigma_max=80.0, sigma_min=sigma_min, rtol=tol, atol=tol)
    exact = -gm.log_prob(x, sigma_min)
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    ax.plot(exact, est, "o", ms=4, label="examples")
    lo, hi = float(exact.min()) - 0.5, float(exact.max()) + 0.5
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    err = float((est - exact).abs().max())
    ax.set_xlabel("exact $-\\log p_{\\sigma_{min}}(x)$ (nats)")
    ax.set_ylabel("probability-flow ODE NLL (nats)")
    ax.set_title(f"likelihood.nll on a 2-D mixture\nmax |error| = {err:.1e} nats", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, out, "likelihood.png")


def fig_digits_reverse(out, fast):
    """How an image emerges: DDIM with the exact denoiser of scikit-learn's digits (imaging.plot_image_trajectory)."""
    from unnoise.data.images import load_digits
    images, _, _ = load_digits()
    if fast:
        images = images[:200]
    den = analytic.EmpiricalDenoiser(images)
    sched = schedules.DDPM()
    sigmas = sched.sampling_sigmas(10 if fast else 20)
    z = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(5)) * sigmas[0]
    keep = set(torch.linspace(0, len(sigmas) - 2, 8).round().long().tolist())
    steps = []

    def cb(i, x, d, s):
        if i in keep:
            steps.append((float(s), x[0].clone(), d[0].clone()))
    x = unnoise.sample(den, z, sigmas, sampler="ddim", callback=cb)
    steps.append((0.0, x[0], x[0]))
    path = os.path.join(out, "digits_reverse.png")
    plot_image_trajectory(steps, path, scale=sched.scale,
                          title="DDIM with the exact denoiser of the digits data set (it reproduces a training image)")
    return path


def fig_readme(out, fast):
    """The picture at the top of README: noise -> data for the swiss roll and for digits."""
    from unnoise.data.images import load_digits
    images, _, _ = load_digits()
    if fast:
        images = images[:200]
    g = torch.Generator().manual_seed(0)
    sched = schedules.DDPM()
    sigmas = sched.sampling_sigmas(10 if fast else 30)
    z = torch.randn(16, 1, 8, 8, generator=g) * sigmas[0]
    digits = unnoise.sample(analytic.EmpiricalDenoiser(images), z, sigmas, sampler="dpmpp_2m")
    gm = analytic.GaussianMixture.ring(k=8, radius=2.0, std=0.15)
    x = unnoise.sample(gm.denoise, torch.randn(1500, 2, generator=g) * sigmas[0], sigmas, sampler="dpmpp_2m")
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    noise = z[:, :, :, :].reshape(-1) / float(sigmas[0])
    axes[0].scatter(torch.randn(1500, generator=g), torch.randn(1500, generator=g), s=1.5, color="0.5")
    axes[0].set_title("noise $\\mathcal{N}(0, I)$", fontsize=10)
    axes[1].scatter(x[:, 0], x[:, 1], s=1.5, color="C0")
    axes[1].set_title("samples: 8-Gaussian ring (dpmpp_2m)", fontsize=10)
    for ax in axes[:2]:
        ax.set_aspect("equal")
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
    axes[2].imshow(image_grid(digits, nrow=4, pad=1, upscale=4)[..., 0], cmap="gray", interpolation="nearest")
    axes[2].set_title("samples: 8x8 digits (dpmpp_2m)", fontsize=10)
    axes[2].axis("off")
    del noise
    fig.suptitle("unnoise: from noise to data with one denoiser $D(x, \\sigma)$", fontsize=11)
    return _save(fig, out, "overview.png")


def fig_latent(out, fast):
    """Latent diffusion on digits: a small KL autoencoder, then diffusion with an exact latent denoiser."""
    from unnoise.data.images import load_digits
    from unnoise.imaging import plot_image_rows
    from unnoise.latent import LatentCodec
    from unnoise.nets.autoencoder import Autoencoder, estimate_latent_scale, fit_autoencoder
    images, labels, _ = load_digits()
    torch.manual_seed(0)
    ae = Autoencoder(in_channels=1, latent_channels=2, downsample=2, channels=16)
    fit_autoencoder(ae, images, steps=20 if fast else 300, batch_size=64, lr=3e-3, progress=False)
    codec = LatentCodec(ae, *estimate_latent_scale(ae, images))
    z = codec.encode(images)  # (N, 2, 4, 4): half as many numbers as the 8x8 image
    # the latent "model": one Gaussian per digit class fitted to its latents, used through its exact denoiser
    flat = z.reshape(len(z), -1).double()
    means = torch.stack([flat[labels == k].mean(0) for k in range(10)])
    stds = torch.stack([flat[labels == k].std(0) for k in range(10)]).clamp_min(0.05)
    gm = analytic.GaussianMixture(means, stds)

    def latent_denoiser(x, sigma, cond=None):
        return gm.denoise(x.reshape(len(x), -1), sigma).reshape(x.shape)
    pipe = unnoise.Pipeline(latent_denoiser, schedules.DDPM(), "latent_images", tuple(images.shape[1:]),
                            model_shape=codec.latent_shape(images.shape[1:]), codec=codec)
    samples = pipe.sample(12, sampler="ddim", steps=10 if fast else 30, generator=torch.Generator().manual_seed(0))
    recon = codec.decode(z[:12])
    err = float((codec.decode(z[:200]) - images[:200]).abs().mean())
    path = os.path.join(out, "latent.png")
    plot_image_rows([images[:12], recon, samples], ["data", f"encode+decode\n(L1 {err:.2f})",
                                                    "latent diffusion\nsamples"], path,
                    title=f"latent diffusion on digits: 8x8 image <-> {tuple(z.shape[1:])} latent "
                          "(samples: DDIM on a 10-Gaussian latent mixture, decoded)")
    return path


def fig_inverse(out, fast):
    """Posterior sampling methods beside the exact posterior of a 2-D mixture observed through a mask."""
    from unnoise import inverse, metrics
    prior = analytic.GaussianMixture([[-1.3, -1.2], [-0.5, 1.2], [1.5, 0.0]], [[0.3, 0.4], [0.3, 0.3], [0.5, 0.3]],
                                     [0.3, 0.3, 0.4])
    op = inverse.Mask(torch.tensor([1.0, 0.0], dtype=torch.float64))
    y = torch.tensor([[-1.0, 0.0]], dtype=torch.float64)
    post = prior.posterior(op, y[0], 0.1)
    n, steps = (300, 20) if fast else (2000, 50)
    sig = schedules.karras_sigmas(steps, 0.002, 80.0)
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sig[0]
    exact = post.sample(n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    prior_x = prior.sample(n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    runs = [("exact posterior", exact)]
    k = 8 if fast else 32
    for method, opt in (("dps", {"step": 0.1}), ("pgdm", {}), ("mmps", {}), ("ddnm", {}), ("smc", {"particles": k})):
        x = inverse.sample(prior.denoise, z.clone(), sig, y=y, operator=op, noise_std=0.1, method=method,
                           generator=torch.Generator().manual_seed(1), **opt)
        runs.append((method + (f", {k} particles" if method == "smc" else ""), x))
    fig, axes = plt.subplots(1, len(runs), figsize=(2.6 * len(runs), 3.3), sharex=True, sharey=True)
    for ax, (name, x) in zip(axes, runs):
        ax.scatter(prior_x[:, 0], prior_x[:, 1], s=1, color="0.85")
        ax.axvspan(-1.1, -0.9, color="C1", alpha=0.15, lw=0)
        ax.scatter(x[:, 0], x[:, 1], s=1.5, color="C3" if name == "exact posterior" else "C0")
        up = float((x[:, 1] > 0).double().mean())
        d = metrics.sliced_wasserstein(x, exact, generator=torch.Generator().manual_seed(0))
        label = f"{name}\nupper mode {100 * up:.0f}%" + ("" if name == "exact posterior" else f", SWD {d:.2f}")
        ax.set_title(label, fontsize=8)
        ax.set_xlim(-2.5, 3.0)
        ax.set_ylim(-2.6, 2.6)
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
    axes[0].set_ylabel("$x_2$")
    fig.suptitle(f"posterior of a 2-D mixture (grey: prior) given $x_1 = -1.0 \\pm 0.1$ (band): {steps} DDPM steps "
                 "with the exact prior denoiser", fontsize=9)
    fig.tight_layout()
    return _save(fig, out, "inverse.png")


FIGURES = [fig_readme, fig_forward_2d, fig_forward_digits, fig_score_field, fig_projection, fig_trajectories,
           fig_langevin, fig_sampler_quality, fig_guidance, fig_likelihood, fig_digits_reverse, fig_latent,
           fig_inverse]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "figures"), help="output folder (default: docs/figures)")
    parser.add_argument("--fast", action="store_true", help="tiny sizes, for the tests (pictures are coarser)")
    parser.add_argument("--only", default=None, help="comma-separated figure function names, e.g. fig_guidance")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    # these tensors are small: one thread avoids oversubscribing a busy machine (it is faster, not slower)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.fast:  # coarser pictures save faster
        global DPI
        DPI = 40
    todo = FIGURES if not args.only else [f for f in FIGURES if f.__name__ in args.only.split(",")]
    for fn in todo:
        t0 = time.perf_counter()
        res = fn(args.out, args.fast)
        path = res[0] if isinstance(res, tuple) else res
        if path is None:
            print(f"{fn.__name__}: skipped")
            continue
        print(f"{fn.__name__}: {os.path.relpath(path)} ({os.path.getsize(path) / 1024:.0f} KB, "
              f"{time.perf_counter() - t0:.1f} s)")
        if isinstance(res, tuple):
            rows, floor = res[1], res[2]
            print(f"  exact-vs-exact SWD floor {floor:.4f}")
            print(f"  {'sampler':<24}{'NFE<=':>6}{'steps':>6}{'NFE':>5}{'SWD':>10}")
            for name, stochastic, budget, steps, nfe, d in rows:
                print(f"  {name + (' (SDE)' if stochastic else ''):<24}{budget:>6}{steps:>6}{nfe:>5}{d:>10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
