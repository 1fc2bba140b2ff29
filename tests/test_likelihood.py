"""Likelihood routines against closed forms: exact mixture densities, a Gaussian DDPM chain."""
import math

import pytest
import torch

from unnoise import analytic, likelihood, schedules


def _mixture(dim):
    if dim == 2:
        return analytic.GaussianMixture.ring(8, 2.0, 0.2)
    return analytic.GaussianMixture.random(6, dim, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("dim", [2, 16])
def test_pf_ode_nll_matches_exact_mixture_density(dim):
    gm = _mixture(dim)
    x = gm.sample(24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got, stats = likelihood.nll(gm.denoise, x, sigma_max=80.0, sigma_min=1e-3, return_stats=True)
    true = -gm.log_prob(x)
    assert got.shape == (24,)
    # the bar: 0.02 nats per dimension for every example; the remaining error is the
    # N(0, sigma_max^2) prior's mismatch, O(|mean| / sigma_max) per coordinate
    assert torch.all((got - true).abs() / dim < 0.02)
    assert abs(float((got - true).mean())) / dim < 0.005
    assert stats["nfe"] > 0 and stats["steps"] > 0


def test_nll_is_of_the_density_at_sigma_min():
    # with a large sigma_min the result is -log p_{sigma_min}: the mixture smoothed by N(0, sigma_min^2)
    gm = _mixture(2)
    x = gm.sample(16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = likelihood.nll(gm.denoise, x, sigma_max=200.0, sigma_min=0.3)
    assert torch.allclose(got, -gm.log_prob(x, sigma=0.3), atol=2e-2)
    assert (got - (-gm.log_prob(x))).abs().mean() > 0.1  # and it is a different number from sigma = 0


def test_hutchinson_agrees_with_exact_within_its_standard_error():
    gm = _mixture(16)
    x = gm.sample(16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kw = dict(sigma_max=80.0, rtol=1e-3, atol=1e-3)
    exact = likelihood.nll(gm.denoise, x, **kw)
    for probe in ("rademacher", "gaussian"):
        est, stats = likelihood.nll(gm.denoise, x, divergence="hutchinson", probe=probe, num_probes=8,
                                    generator=torch.Generator().manual_seed(5), return_stats=True, **kw)
        se = stats["stderr"]
        assert torch.all(se > 0)
        z = (est - exact) / se
        # per example a t-statistic with 7 degrees of freedom; the batch mean is within 3 errors
        assert float(z.abs().median()) < 1.5
        batch_z = float((est - exact).mean() / (se.pow(2).sum().sqrt() / len(se)))
        assert abs(batch_z) < 3.0


def test_bits_per_dim_formulas():
    assert likelihood.bits_per_dim(math.log(2) * 10, 10) == pytest.approx(1.0)
    # a density uniform over the dequantised cube [-1 - h/2, 1 + h/2]^D (h = 2/255) is 8 bits exactly
    D, h = 3072, 2 / 255
    nll_uniform = D * math.log(2 + h)
    assert likelihood.bits_per_dim(nll_uniform, D, bins=256) == pytest.approx(8.0, abs=1e-12)
    # bins=256 adds D log(127.5) nats before converting
    assert likelihood.bits_per_dim(0.0, 4, bins=256) == pytest.approx(math.log(127.5) / math.log(2))
    with pytest.raises(ValueError, match="num_dims"):
        likelihood.bits_per_dim(1.0, 0)


def test_dequantize_fills_each_bin():
    k = torch.tensor([[0, 127, 255]] * 2000)
    u = likelihood.dequantize(k, generator=torch.Generator().manual_seed(0))
    centre = k / 127.5 - 1
    half = 1 / 255
    assert torch.all((u - centre).abs() <= half + 1e-6)
    assert float((u - centre).mean()) == pytest.approx(0.0, abs=5e-4)
    with pytest.raises(ValueError, match="integer"):
        likelihood.dequantize(torch.tensor([0.5]))


def test_ddpm_elbo_bounds_the_true_nll_in_2d():
    gm = _mixture(2)
    x = gm.sample(300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sched = schedules.DDPM()
    bound, terms = likelihood.ddpm_elbo(gm.denoise, sched, x, num_timesteps=60, return_terms=True,
                                        generator=torch.Generator().manual_seed(1))
    true = -gm.log_prob(x)
    gap = bound - true
    se = float(gap.std()) / math.sqrt(len(gap))
    # Gibbs: E_data[-ELBO] >= E_data[-log p_model] >= E_data[-log p_data]
    assert float(gap.mean()) > 3 * se
    # and close: with the exact denoiser only the fixed-small variance of the first steps costs
    # (about 0.45 nats per dimension here, measured over the full sum)
    assert float(gap.mean()) / 2 < 0.6
    assert torch.allclose(terms["prior"] + terms["diffusion"] + terms["decoder"], bound)
    bpd = likelihood.ddpm_elbo(gm.denoise, sched, x, num_timesteps=60, units="bpd",
                               generator=torch.Generator().manual_seed(1))
    assert torch.allclose(bpd, bound / (2 * math.log(2)))  # same draws, other units


def _gaussian_chain_closed_form(sched, s, std_dec):
    """1-D data N(0, s^2), exact denoiser: E_x0[-ELBO] and the model's exact -E log p(x0)."""
    betas, abar = sched.betas, sched.alphas_cumprod
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    sig2 = (1 - abar) / abar
    post_var = s**2 * sig2 / (s**2 + sig2)  # E(x0 - D)^2
    coef = abar_prev.sqrt() * betas / (1 - abar)
    var_t = (1 - abar_prev) / (1 - abar) * betas
    aT = abar[-1]
    prior = 0.5 * ((1 - aT) + aT * s**2 - 1 - torch.log(1 - aT))
    diffusion = (coef[1:] ** 2 * post_var[1:] / (2 * var_t[1:])).sum()
    decoder = 0.5 * post_var[0] / std_dec**2 + 0.5 * math.log(2 * math.pi * std_dec**2)
    elbo = float(prior + diffusion + decoder)
    # the model chain is linear Gaussian: x_{t-1} = A_t x_t + N(0, beta~_t), x_T ~ N(0, 1)
    coef_x = (1 - betas).sqrt() * (1 - abar_prev) / (1 - abar)
    shrink = s**2 / (s**2 + sig2) / abar.sqrt()  # D as a function of x_t
    v = torch.tensor(1.0, dtype=torch.float64)
    for t in range(len(betas) - 1, 0, -1):
        v = (coef[t] * shrink[t] + coef_x[t]) ** 2 * v + var_t[t]
    v0 = shrink[0] ** 2 * v + std_dec**2
    model_nll = float(0.5 * s**2 / v0 + 0.5 * torch.log(2 * math.pi * v0))
    return elbo, model_nll


def test_ddpm_elbo_matches_closed_form_gaussian_chain():
    s = 0.5
    gm = analytic.GaussianMixture([[0.0]], s)
    sched = schedules.DDPM()
    x = gm.sample(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bound = likelihood.ddpm_elbo(gm.denoise, sched, x, num_timesteps=20, generator=torch.Generator().manual_seed(2))
    elbo, model_nll = _gaussian_chain_closed_form(sched, s, float(sched.sigmas[0]))
    entropy = 0.5 + 0.5 * math.log(2 * math.pi * s**2)
    se = float(bound.std()) / math.sqrt(len(bound))
    assert float(bound.mean()) == pytest.approx(elbo, abs=4 * se + 1e-3)
    assert elbo >= model_nll >= entropy - 1e-9  # the bound holds in closed form too


def test_discretized_decoder_gives_a_probability_mass():
    # 8-bit data: with the discretized decoder the bound is on P(k), so it must be >= 0 nats
    k = torch.randint(0, 256, (64, 3), generator=torch.Generator().manual_seed(0))
    x = (k / 127.5 - 1).double()
    gm = analytic.GaussianMixture([[0.0, 0.0, 0.0]], 0.6)
    bound = likelihood.ddpm_elbo(gm.denoise, schedules.DDPM(), x, decoder="discretized", num_timesteps=20,
                                 generator=torch.Generator().manual_seed(0))
    assert torch.all(bound > 0)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        likelihood.ddpm_elbo(gm.denoise, schedules.DDPM(), x * 3, decoder="discretized")


def test_bad_input_fails_early():
    gm = _mixture(2)
    x = gm.sample(4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="divergence"):
        likelihood.nll(gm.denoise, x, divergence="trace")
    with pytest.raises(ValueError, match="sigma_min"):
        likelihood.nll(gm.denoise, x, sigma_min=0.0)
    with pytest.raises(ValueError, match="NaN"):
        likelihood.nll(gm.denoise, x * float("nan"))
    with pytest.raises(ValueError, match="discrete VP"):
        likelihood.ddpm_elbo(gm.denoise, schedules.Karras(), x)


def test_conditioning_stays_aligned_with_its_examples():
    # label c selects mixture c: the NLL of each example must be that of its own mixture, which
    # fails if labels and examples are misaligned when the batch is copied per dimension
    mixtures = [analytic.GaussianMixture([[-2.0, 0.0]], 0.3), analytic.GaussianMixture([[2.0, 1.0]], 0.5)]

    def D(x, sigma, cond):
        assert cond.shape == (x.shape[0],)
        out = torch.empty_like(x)
        for c, gm in enumerate(mixtures):
            m = cond == c
            out[m] = gm.denoise(x[m], sigma[m])
        return out

    labels = torch.tensor([0, 1, 1, 0, 1])
    x = torch.stack([mixtures[int(c)].sample(1, generator=torch.Generator().manual_seed(i), dtype=torch.float64)[0]
                     for i, c in enumerate(labels)])
    got = likelihood.nll(D, x, cond=labels, sigma_max=500.0)  # a far prior: means of 2 cost nothing
    true = torch.stack([-mixtures[int(c)].log_prob(x[i:i + 1])[0] for i, c in enumerate(labels)])
    assert torch.allclose(got, true, atol=0.02)


def test_network_denoiser_exact_and_hutchinson_agree_without_touching_weights():
    from unnoise import Denoiser, nets
    torch.manual_seed(0)
    den = Denoiser(nets.build("mlp", shape=[2]), "eps", "vp").eval()
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    exact = likelihood.nll(den, x, sigma_max=50.0, rtol=1e-3, atol=1e-3)
    est, st = likelihood.nll(den, x, sigma_max=50.0, divergence="hutchinson", probe="gaussian", num_probes=8,
                             rtol=1e-3, atol=1e-3, return_stats=True, generator=torch.Generator().manual_seed(0))
    assert exact.dtype == torch.float32 and torch.all(torch.isfinite(exact))
    assert float(((est - exact) / st["stderr"]).abs().max()) < 4.5
    assert all(p.grad is None for p in den.parameters())  # no gradients leak into the weights
