"""Every parameterization wraps into the same denoiser; the losses are the stated weightings."""
import pytest
import torch
from torch import nn

from unnoise.analytic import GaussianMixture
from unnoise.denoiser import PARAMETERIZATIONS, Denoiser, eps_from_denoised, score_from_denoised
from unnoise.losses import WEIGHTINGS, denoising_loss, x0_weight


class OracleNet(nn.Module):
    """Returns the exact target F = (D* - c_skip x) / c_out for a known optimal denoiser D*."""

    def __init__(self, gm, parameterization, process, sigma_data=1.0):
        super().__init__()
        self.gm, self.p, self.process, self.sd = gm, parameterization, process, sigma_data
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x_in, c_noise, cond=None):
        from unnoise.denoiser import preconditioning
        sigma = torch.exp(4 * c_noise.double()).reshape(-1, 1)
        c_skip, c_out, c_in, _ = preconditioning(self.p, self.process, sigma, self.sd)
        x = x_in.double() / c_in
        return ((self.gm.denoise(x, sigma.reshape(-1)) - c_skip * x) / c_out).to(x_in.dtype)


@pytest.mark.parametrize("param", PARAMETERIZATIONS)
@pytest.mark.parametrize("process", ["vp", "ve", "flow"])
def test_parameterizations_reproduce_the_optimal_denoiser(param, process):
    gm = GaussianMixture(torch.tensor([[1.0, -1.0], [-0.5, 0.5]]), 0.4)
    den = Denoiser(OracleNet(gm, param, process, 0.7), param, process, sigma_data=0.7)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    sigma = torch.exp(torch.linspace(-3, 3, 32, dtype=torch.float64))
    assert torch.allclose(den(x, sigma), gm.denoise(x, sigma), atol=1e-8)


def test_known_coefficients():
    from unnoise.denoiser import preconditioning
    s = torch.tensor([0.5, 2.0], dtype=torch.float64)
    c_skip, c_out, c_in, _ = preconditioning("eps", "vp", s)
    assert torch.allclose(c_skip, torch.ones(2, dtype=torch.float64)) and torch.allclose(c_out, -s)
    assert torch.allclose(c_in, 1 / torch.sqrt(1 + s**2))  # x_t = sqrt(alpha_bar) x
    c_skip, c_out, c_in, _ = preconditioning("edm", "ve", s, sigma_data=0.5)
    assert torch.allclose(c_skip, 0.25 / (s**2 + 0.25))
    assert torch.allclose(c_out, s * 0.5 / torch.sqrt(s**2 + 0.25))
    # v-prediction: v = (eps - sigma x0)/sqrt(1+sigma^2) gives back x0
    x0, eps = torch.tensor([1.3], dtype=torch.float64), torch.tensor([-0.4], dtype=torch.float64)
    for sig in (0.3, 3.0):
        sig_t = torch.tensor([sig], dtype=torch.float64)
        c_skip, c_out, _, _ = preconditioning("v", "vp", sig_t)
        v = (eps - sig * x0) / (1 + sig**2) ** 0.5
        assert torch.allclose(c_skip * (x0 + sig * eps) + c_out * v, x0)
        c_skip, c_out, _, _ = preconditioning("flow", "flow", sig_t)
        assert torch.allclose(c_skip * (x0 + sig * eps) + c_out * (eps - x0), x0)


def test_eps_and_score_from_denoised():
    gm = GaussianMixture(torch.tensor([[0.0, 0.0]]), 1.0)  # N(0, I): D = x / (1 + sigma^2)
    x = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    d = gm.denoise(x, 2.0)
    assert torch.allclose(d, x / 5)
    assert torch.allclose(score_from_denoised(x, d, 2.0), -x / 5)  # grad log N(0, 5 I)
    assert torch.allclose(eps_from_denoised(x, d, 2.0), (x - x / 5) / 2)


class LinearNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x, c, cond=None):
        return self.lin(torch.cat([x, c[:, None]], 1))


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("param", ["eps", "v", "edm", "flow"])
def test_loss_is_weighted_x0_error(weighting, param):
    torch.manual_seed(0)
    den = Denoiser(LinearNet(), param, "vp", sigma_data=0.5).double()
    x0 = torch.randn(16, 2, dtype=torch.float64)
    noise = torch.randn(16, 2, dtype=torch.float64)
    sigma = torch.exp(torch.linspace(-2, 2, 16, dtype=torch.float64))
    per = denoising_loss(den, x0, sigma, weighting, noise=noise, reduce=False)
    d = den(x0 + sigma[:, None] * noise, sigma)
    _, c_out, _, _ = den.precondition(sigma)
    lam = x0_weight(weighting, sigma, c_out, 0.5)
    assert torch.allclose(per, lam * ((d - x0) ** 2).mean(1), rtol=1e-9)


def test_uniform_eps_loss_is_noise_prediction_mse():
    torch.manual_seed(1)
    den = Denoiser(LinearNet(), "eps", "vp").double()
    x0, noise = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    sigma = torch.full((8,), 0.7, dtype=torch.float64)
    x = x0 + 0.7 * noise
    eps_hat = den.net(x / (1 + 0.49) ** 0.5, torch.log(sigma) / 4)
    want = ((eps_hat - noise) ** 2).mean()
    assert torch.allclose(denoising_loss(den, x0, sigma, "uniform", noise=noise), want)


def test_min_snr_weights():
    s = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    # for eps-prediction min-SNR-gamma is min(SNR, gamma)/SNR on the eps-MSE
    w = x0_weight("min_snr", s, -s, min_snr_gamma=5.0) * s**2
    assert torch.allclose(w, torch.minimum(1 / s**2, torch.tensor(5.0, dtype=torch.float64)) * s**2)
    with pytest.raises(ValueError, match="unknown weighting"):
        x0_weight("bogus", s, s)


def test_bad_denoiser_names():
    with pytest.raises(ValueError, match="unknown parameterization"):
        Denoiser(LinearNet(), "score")
    with pytest.raises(ValueError, match="unknown process"):
        Denoiser(LinearNet(), "eps", "subvp")
