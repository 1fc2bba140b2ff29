"""Each schedule's sigma grid against its defining formula, and the VP <-> sigma mapping."""
import math

import numpy as np
import pytest
import torch

from unnoise import schedules


def test_vp_sigma_mapping_roundtrip():
    ab = torch.tensor([0.999, 0.5, 1e-4], dtype=torch.float64)
    sig = schedules.sigma_from_alpha_bar(ab)
    assert torch.allclose(sig, torch.sqrt((1 - ab) / ab))
    assert torch.allclose(schedules.alpha_bar_from_sigma(sig), ab)
    # s = sqrt(alpha_bar) for the VP process
    assert torch.allclose(schedules.signal_scale("vp", sig), torch.sqrt(ab))


def test_ddpm_linear_betas_and_sigmas():
    s = schedules.DDPM(num_steps=1000, beta_start=1e-4, beta_end=0.02)
    betas = np.linspace(1e-4, 0.02, 1000)
    ab = np.cumprod(1 - betas)
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), ab, rtol=1e-12)
    np.testing.assert_allclose(s.sigmas.numpy(), np.sqrt((1 - ab) / ab), rtol=1e-12)


def test_cosine_alpha_bar_formula():
    s = schedules.Cosine(num_steps=1000, s=0.008)
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    # away from the beta clip at the end, alpha_bar_t = f((t+1)/T) / f(0)
    for t in (0, 10, 500, 900):
        assert s.alphas_cumprod[t].item() == pytest.approx(f((t + 1) / 1000) / f(0), rel=1e-9)


def test_scaled_linear_and_sigmoid_betas():
    s = schedules.ScaledLinear(num_steps=100, beta_start=0.00085, beta_end=0.012)
    np.testing.assert_allclose(s.betas.numpy(), np.linspace(0.00085**0.5, 0.012**0.5, 100) ** 2, rtol=1e-12)
    sg = schedules.Sigmoid(num_steps=100, beta_start=1e-4, beta_end=0.02)
    ref = 1 / (1 + np.exp(-np.linspace(-6, 6, 100))) * (0.02 - 1e-4) + 1e-4
    np.testing.assert_allclose(sg.betas.numpy(), ref, rtol=1e-12)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_discrete_spacings_match_diffusers(spacing):
    from diffusers import DDIMScheduler
    ours = schedules.DDPM()
    ref = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", timestep_spacing=spacing)
    ref.set_timesteps(10)
    assert ours.timesteps(10, spacing).tolist() == ref.timesteps.tolist()
    sig = ours.sampling_sigmas(10, spacing)
    assert len(sig) == 11 and sig[-1] == 0
    # diffusers keeps alpha_bar in float32; rebuild it in float64 from its betas for a tight check
    ab = torch.cumprod(1 - ref.betas.double(), 0)[ref.timesteps]
    np.testing.assert_allclose(sig[:-1].numpy(), torch.sqrt((1 - ab) / ab).numpy(), rtol=1e-5)


def test_karras_grid_formula():
    s = schedules.Karras(sigma_min=0.002, sigma_max=80.0, rho=7.0)
    sig = s.sampling_sigmas(5).double()
    i = torch.arange(5, dtype=torch.float64)
    ref = (80 ** (1 / 7) + i / 4 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert torch.allclose(sig[:-1], ref, rtol=1e-6)
    assert sig[-1] == 0


def test_loglinear_is_geometric():
    s = schedules.LogLinear(sigma_min=0.01, sigma_max=50.0)
    sig = s.sampling_sigmas(6)[:-1].double()
    ratios = sig[1:] / sig[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-5)
    assert sig[0].item() == pytest.approx(50.0, rel=1e-6) and sig[-1].item() == pytest.approx(0.01, rel=1e-5)


def test_flow_mapping_and_grid():
    s = schedules.Flow(t_max=0.999)
    sig = s.sampling_sigmas(4).double()
    t = torch.linspace(0.999, 0, 5, dtype=torch.float64)[:-1]
    assert torch.allclose(sig[:-1], t / (1 - t), rtol=1e-6)
    # x_t = (1 - t) x0 + t eps  <=>  s = 1 - t, sigma = t / (1 - t)
    assert torch.allclose(schedules.signal_scale("flow", sig[:-1]), 1 - t, rtol=1e-6)


@pytest.mark.parametrize("name", ["ddpm", "cosine", "scaled_linear", "sigmoid", "loglinear", "karras", "flow"])
def test_every_schedule_grid_is_valid(name, g):
    s = schedules.get(name)
    for steps in (1, 7, 50):
        sig = s.sampling_sigmas(steps)
        assert sig.shape == (steps + 1,)
        assert sig[-1] == 0 and torch.all(sig[1:] < sig[:-1])
    train = s.sample_training_sigmas(4096, g)
    assert torch.all(train > 0) and torch.all(torch.isfinite(train))
    rebuilt = schedules.get(**s.config())
    assert torch.equal(rebuilt.sampling_sigmas(8), s.sampling_sigmas(8))


def test_discrete_training_sigmas_are_uniform_over_timesteps(g):
    s = schedules.DDPM(num_steps=10)
    sig = s.sample_training_sigmas(20000, g).double()
    counts = torch.stack([(torch.isclose(sig, v.float().double(), rtol=1e-6)).sum() for v in s.sigmas])
    assert counts.sum() == 20000
    assert torch.all((counts - 2000).abs() < 200)  # ~4.7 standard deviations


def test_karras_training_sigmas_lognormal(g):
    s = schedules.Karras(p_mean=-1.2, p_std=1.2)
    logs = torch.log(s.sample_training_sigmas(50000, g).double())
    assert logs.mean().item() == pytest.approx(-1.2, abs=0.03)
    assert logs.std().item() == pytest.approx(1.2, abs=0.03)


def test_bad_schedule_inputs():
    with pytest.raises(ValueError, match="unknown schedule 'nope'"):
        schedules.get("nope")
    with pytest.raises(ValueError, match="positive integer"):
        schedules.DDPM().sampling_sigmas(0)
    with pytest.raises(ValueError, match="cannot take 2000"):
        schedules.DDPM().sampling_sigmas(2000, "trailing")
    with pytest.raises(ValueError, match="unknown spacing"):
        schedules.DDPM().sampling_sigmas(10, "sideways")
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        schedules.Karras(sigma_min=5.0, sigma_max=1.0)
