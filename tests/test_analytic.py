"""The exact denoisers: Tweedie's formula, densities, and the empirical-data denoiser."""

import pytest
import torch

from unnoise.analytic import EmpiricalDenoiser, GaussianMixture


@pytest.fixture
def gm():
    return GaussianMixture(torch.tensor([[-1.0, 0.5], [1.5, -0.5]]), torch.tensor([[0.3, 0.6], [0.5, 0.2]]), [0.4, 0.6])


def test_log_prob_integrates_to_one(gm):
    xs = torch.linspace(-6, 6, 401, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    for sigma in (0.0, 0.5):
        mass = gm.log_prob(grid, sigma).exp().sum() * (xs[1] - xs[0]) ** 2
        assert mass.item() == pytest.approx(1.0, abs=2e-3)


def test_denoiser_is_tweedie(gm):
    """D(x, sigma) = x + sigma^2 grad log p_sigma(x), with the gradient taken by autograd."""
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    for sigma in (0.05, 0.7, 3.0):
        xr = x.clone().requires_grad_(True)
        grad, = torch.autograd.grad(gm.log_prob(xr, sigma).sum(), xr)
        assert torch.allclose(gm.denoise(x, sigma), x + sigma**2 * grad, atol=1e-9)
        assert torch.allclose(gm.score(x, sigma), grad, atol=1e-9)


def test_denoiser_matches_monte_carlo_posterior(gm):
    """E[x0 | x] estimated by importance-weighting prior samples with the likelihood N(x; x0, sigma^2)."""
    g = torch.Generator().manual_seed(1)
    x0 = gm.sample(400000, generator=g).double()
    x = torch.tensor([[0.2, 0.1], [1.0, -1.0]], dtype=torch.float64)
    sigma = 0.6
    logw = -((x[:, None, :] - x0[None]) ** 2).sum(-1) / (2 * sigma**2)
    w = torch.softmax(logw, dim=1)
    mc = w @ x0
    assert torch.allclose(gm.denoise(x, sigma), mc, atol=0.01)


def test_per_example_sigma_and_limits(gm):
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sig = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5], dtype=torch.float64)
    batched = gm.denoise(x, sig)
    single = torch.stack([gm.denoise(x[i:i + 1], float(sig[i]))[0] for i in range(5)])
    assert torch.allclose(batched, single)
    # sigma -> infinity: the posterior mean is the prior mean
    assert torch.allclose(gm.denoise(x, 1e6), gm.mean.expand(5, 2), atol=1e-6)


def test_exact_samples_moments(gm):
    x = gm.sample(200000, generator=torch.Generator().manual_seed(3)).double()
    assert torch.allclose(x.mean(0), gm.mean, atol=0.01)
    assert torch.allclose(torch.cov(x.T), gm.covariance(), atol=0.02)


def test_empirical_denoiser():
    data = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    emp = EmpiricalDenoiser(data)
    x = torch.tensor([[1.9, 0.2], [0.1, 2.0]], dtype=torch.float64)
    # sigma -> 0: the nearest training point (memorisation)
    assert torch.allclose(emp.denoise(x, 0.0), torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=torch.float64))
    # sigma large: the data mean
    assert torch.allclose(emp.denoise(x, 1e4), data.mean(0).expand(2, 2), atol=1e-4)
    # it is the mixture of point masses: matches a GaussianMixture with vanishing stds
    gm = GaussianMixture(data, 1e-6)
    assert torch.allclose(emp.denoise(x, 0.8), gm.denoise(x, 0.8), atol=1e-6)
    assert torch.allclose(emp.log_prob(x, 0.8), gm.log_prob(x, 0.8), atol=1e-6)


def test_empirical_denoiser_any_shape():
    data = torch.randn(10, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    emp = EmpiricalDenoiser(data, chunk=3)
    out = emp.denoise(data + 1e-3, 1e-2)
    assert out.shape == data.shape
    assert torch.allclose(out, data, atol=1e-4)


def test_bad_mixture_inputs():
    with pytest.raises(ValueError, match="means must have shape"):
        GaussianMixture(torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="stds must be positive"):
        GaussianMixture(torch.zeros(2, 2), 0.0)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(torch.zeros(2, 2), 1.0, [1.0, -1.0])
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\)"):
        GaussianMixture(torch.zeros(2, 2), 1.0).denoise(torch.zeros(4, 3), 1.0)
    with pytest.raises(ValueError, match="sigma must be a float or a"):
        GaussianMixture(torch.zeros(2, 2), 1.0).denoise(torch.zeros(4, 2), torch.ones(3))
