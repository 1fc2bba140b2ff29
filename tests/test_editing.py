"""Editing: inpainting (replacement, RePaint, and SMC: the posterior sampler with a mask), SDEdit, DDIM
inversion and slerp interpolation."""
import math

import pytest
import torch

import unnoise
from unnoise import editing, inverse
from unnoise.analytic import EmpiricalDenoiser, GaussianMixture


def two_component_mixture():
    return GaussianMixture([[-1.0, -1.0], [1.0, 1.5]], [[0.5, 0.5], [0.3, 0.3]], [0.4, 0.6])


def exact_conditional_moments(gm, x_known):
    """Mean and variance of coordinate 1 given coordinate 0 = x_known for a diagonal mixture.

    Within a component the coordinates are independent, so the conditional is the mixture of the
    components' coordinate-1 Gaussians with weights ``w_k N(x_known; mu_k0, s_k0^2)`` renormalised.
    """
    m0, s0 = gm.means[:, 0], gm.stds[:, 0]
    w = gm.weights * torch.exp(-0.5 * ((x_known - m0) / s0) ** 2) / s0
    w = w / w.sum()
    mean = (w * gm.means[:, 1]).sum()
    var = (w * (gm.stds[:, 1] ** 2 + gm.means[:, 1] ** 2)).sum() - mean**2
    return float(mean), float(var)


# ----------------------------------------------------------------------------- RePaint walk
def test_repaint_schedule_visits():
    moves = editing.repaint_schedule(20, jump_length=5, jump_n_sample=3)
    downs = [m for m in moves if m[1] == m[0] + 1]
    ups = [m for m in moves if m[1] < m[0]]
    # jump points 5, 10, 15, 20, each jumping back twice, each jump redone as 5 down steps
    assert len(ups) == 4 * 2 and all(i - j == 5 and i % 5 == 0 for i, j in ups)
    assert len(downs) == 20 + 8 * 5
    assert moves[-1] == (19, 20)
    arrivals = [j for _, j in downs]
    assert all(arrivals.count(k) == 3 for k in (5, 10, 15, 20))
    assert editing.repaint_schedule(7, 3, 1) == [(i, i + 1) for i in range(7)]
    with pytest.raises(ValueError, match="jump_n_sample"):
        editing.repaint_schedule(10, 2, 0)


# ----------------------------------------------------------------------------- inpainting
@pytest.mark.parametrize("sampler,jumps", [("ddpm", 1), ("ddim", 1), ("ddpm", 3), ("euler", 1)])
def test_inpaint_keeps_known_pixels_exactly(sampler, jumps):
    g = torch.Generator().manual_seed(0)
    data = torch.rand(12, 3, 8, 8, generator=g) * 2 - 1
    den = EmpiricalDenoiser(data)
    known = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    mask = torch.zeros(1, 8, 8)
    mask[:, :, :4] = 1  # keep the left half in every channel
    sig = unnoise.schedules.get("ddpm").sampling_sigmas(12)
    out = editing.inpaint(den, known, mask, sig, sampler=sampler, generator=g, jump_length=4, jump_n_sample=jumps)
    assert out.shape == known.shape
    assert torch.equal(out[..., :4], known[..., :4])
    # the hole is filled by the data: the empirical denoiser lands on (a blend near) training images
    assert torch.isfinite(out).all() and not torch.allclose(out[..., 4:], known[..., 4:], atol=0.1)


def test_inpaint_ignores_values_under_the_hole():
    g = torch.Generator().manual_seed(1)
    gm = two_component_mixture()
    known = torch.tensor([[0.3, float("nan")]])
    sig = unnoise.schedules.get("karras").sampling_sigmas(10)
    out = editing.inpaint(gm.denoise, known, torch.tensor([True, False]), sig, generator=g)
    assert torch.isfinite(out).all() and out[0, 0] == 0.3


def test_inpaint_rejects_bad_masks():
    sig = unnoise.schedules.get("karras").sampling_sigmas(4)
    gm = two_component_mixture()
    with pytest.raises(ValueError, match="broadcast"):
        editing.inpaint(gm.denoise, torch.zeros(3, 2), torch.ones(3), sig)
    with pytest.raises(ValueError, match="only 0"):
        editing.inpaint(gm.denoise, torch.zeros(3, 2), torch.tensor([0.5, 1.0]), sig)


def test_smc_inpainting_matches_the_exact_conditional_and_replacement_does_not():
    gm = two_component_mixture()
    x_known = 0.2
    mean, var = exact_conditional_moments(gm, x_known)  # 0.400, 1.700
    n = 1500
    known = torch.zeros(n, 2)
    known[:, 0] = x_known
    mask = torch.tensor([1.0, 0.0])
    # a grid dense where the components separate (sigma ~ 0.3 .. 3); steps and particles both bias
    sig = unnoise.schedules.get("loglinear", sigma_min=0.01, sigma_max=20.0).sampling_sigmas(50)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(known.shape, generator=g) * float(sig[0])
    out = inverse.sample(gm.denoise, x, sig, y=known, operator=inverse.Mask(mask), method="smc", particles=16,
                         generator=g)
    assert torch.equal(out[:, 0], known[:, 0])
    u = out[:, 1].double()
    # one particle per example, so the examples are independent draws: standard errors
    se_mean, se_frac = math.sqrt(var / n), math.sqrt(0.25 / n)  # 0.034, 0.013
    assert abs(float(u.mean()) - mean) < 3 * se_mean + 0.03
    assert abs(float(u.var()) / var - 1) < 0.1
    # the share of the second component (u > 0.25 splits them; component 1 puts 0.6% above)
    w2 = (mean + 1) / 2.5
    assert abs(float((u > 0.25).double().mean()) - (w2 + (1 - w2) * 0.0062)) < 3 * se_frac + 0.01
    # the replacement method over-counts the evidence of the known coordinate (it is re-noised
    # independently at every step) and picks the likelier component too often: a real bias
    rep = editing.inpaint(gm.denoise, known, mask, sig, sampler="ddpm", generator=g)[:, 1].double()
    assert float(rep.mean()) - mean > 0.15


def test_smc_inpainting_is_the_posterior_sampler_with_a_mask():
    """Pipeline.inpaint(method="smc") is inverse.sample(method="smc") with the equivalent noiseless Mask:
    the same generator gives the same samples; one mask per example works too."""
    g = torch.Generator().manual_seed(0)
    data = torch.rand(12, 3, 8, 8, generator=g) * 2 - 1
    images = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1
    pipe = unnoise.Pipeline(EmpiricalDenoiser(data), unnoise.schedules.get("karras"), "images", (3, 8, 8))
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1
    out = pipe.inpaint(images, mask, steps=8, method="smc", particles=4, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    sig = pipe.grid(8, None, "smc")
    x = torch.randn(images.shape, generator=g) * float(sig[0])  # the pipeline's start (a VE schedule)
    ref = inverse.sample(pipe.denoiser, x, sig, y=images, operator=inverse.Mask(mask), method="smc", particles=4,
                         generator=g)
    assert torch.equal(out, ref)
    assert torch.equal(ref[..., :4], images[..., :4]) and not torch.allclose(ref[..., 4:], images[..., 4:], atol=0.1)
    # one mask per example: each keeps its own known entries exactly
    masks = torch.zeros(3, 1, 8, 8)
    masks[0, :, :4], masks[1, :, 4:], masks[2, :, ::2] = 1, 1, 1
    y = torch.where(masks.bool(), images, torch.full_like(images, float("nan")))
    per = inverse.sample(pipe.denoiser, x, sig, y=y, operator=inverse.Mask(masks, x_shape=(3, 8, 8)),
                         method="smc", particles=4, generator=torch.Generator().manual_seed(2))
    keep = masks.bool().expand_as(images)
    assert torch.equal(per[keep], images[keep]) and torch.isfinite(per).all()


# ----------------------------------------------------------------------------- SDEdit
def test_img2img_strength_zero_and_one():
    gm = two_component_mixture()
    sig = unnoise.schedules.get("ddpm").sampling_sigmas(20)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(editing.img2img(gm.denoise, x, sig, 0.0, generator=torch.Generator().manual_seed(0)), x)
    a = editing.img2img(gm.denoise, x, sig, 1.0, sampler="ddpm", generator=torch.Generator().manual_seed(5))
    b = editing.img2img(gm.denoise, x + 10, sig, 1.0, sampler="ddpm", generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)  # the input is ignored
    g = torch.Generator().manual_seed(5)
    ref = unnoise.sample(gm.denoise, torch.randn(x.shape, generator=g) * sig[0], sig, sampler="ddpm", generator=g)
    assert torch.equal(a, ref)  # ... and it is exactly plain sampling
    with pytest.raises(ValueError, match="strength"):
        editing.img2img(gm.denoise, x, sig, 1.5)


def test_img2img_keeps_the_data_distribution():
    """Data noised to sigma are exact draws of p_sigma, so denoising them with the exact denoiser
    and the probability-flow ODE gives the data distribution back (moments to sampling error)."""
    gm = two_component_mixture()
    g = torch.Generator().manual_seed(7)
    x = gm.sample(4000, generator=g)
    sig = unnoise.schedules.get("karras").sampling_sigmas(60)
    out = editing.img2img(gm.denoise, x, sig, 0.5, sampler="ddim", generator=g).double()
    assert torch.allclose(out.mean(0), gm.mean, atol=0.06)
    assert torch.allclose(torch.cov(out.T), gm.covariance(), atol=0.1)
    # a small strength changes the input little: the start is x + sigma_start z with sigma_start small
    near = editing.img2img(gm.denoise, x, sig, 0.1, generator=g)
    assert float((near - x).norm(dim=1).mean()) < float(sig[54]) * 1.5


# ----------------------------------------------------------------------------- inversion
def test_ddim_inversion_reconstructs():
    g = torch.Generator().manual_seed(0)
    gm = GaussianMixture.random(4, 3, generator=g)
    x0 = gm.sample(128, generator=g, dtype=torch.float64)
    sig = unnoise.schedules.get("ddpm").sampling_sigmas(100).double()
    z = editing.ddim_invert(gm.denoise, x0, sig)
    assert abs(float(z.std() / sig[0]) - 1) < 0.15  # the inverted state is noise-like at sigma_max
    rec = unnoise.sample(gm.denoise, z, sig, sampler="ddim")
    err = (rec - x0).norm(dim=1)
    assert float(err.mean()) < 0.08  # Euler in sigma both ways: O(1/steps), worst near mode boundaries
    # fixed-point refinement makes the inversion the exact inverse of the DDIM steps
    z_fp = editing.ddim_invert(gm.denoise, x0, sig, fixed_point_iters=3)
    rec_fp = unnoise.sample(gm.denoise, z_fp, sig, sampler="ddim")
    err_fp = (rec_fp - x0).norm(dim=1)
    assert float(err_fp.mean()) < 0.2 * float(err.mean()) and float(err_fp.max()) < 0.01


def test_slerp_and_interpolation():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 64, generator=g, dtype=torch.float64), torch.randn(5, 64, generator=g, dtype=torch.float64)
    b = b * (a.norm(dim=1, keepdim=True) / b.norm(dim=1, keepdim=True))
    assert torch.allclose(editing.slerp(a, b, 0.0), a) and torch.allclose(editing.slerp(a, b, 1.0), b)
    mid = editing.slerp(a, b, 0.5)
    assert torch.allclose(mid.norm(dim=1), a.norm(dim=1))  # equal norms stay on the sphere
    cos = lambda u, v: (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1))
    assert torch.allclose(cos(mid, a), cos(mid, b))  # halfway in angle
    assert torch.allclose(editing.slerp(a, a, 0.3), a)  # parallel inputs fall back to lerp

    gm = two_component_mixture()
    xa, xb = gm.sample(32, generator=g, dtype=torch.float64), gm.sample(32, generator=g, dtype=torch.float64)
    sig = unnoise.schedules.get("karras").sampling_sigmas(60).double()
    path = editing.interpolate(gm.denoise, xa, xb, sig, [0.0, 0.5, 1.0], fixed_point_iters=2)
    assert path.shape == (3, 32, 2)
    assert float((path[0] - xa).norm(dim=1).max()) < 0.05 and float((path[2] - xb).norm(dim=1).max()) < 0.05
