"""unnoise.sample's contract: validation of inputs and options, NFE counting, callbacks."""
import pytest
import torch

import unnoise
from unnoise.analytic import GaussianMixture


@pytest.fixture
def gm():
    return GaussianMixture(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), 0.3)


def test_available_lists_core_samplers():
    names = unnoise.samplers.available()
    assert {"ddpm", "ddim", "euler"} <= set(names)
    assert names == sorted(names)


def test_nfe_is_counted_and_callback_called(gm):
    sig = unnoise.schedules.DDPM().sampling_sigmas(12)
    seen = []
    x, nfe = unnoise.sample(gm.denoise, torch.randn(8, 2) * sig[0], sig, sampler="ddim", return_nfe=True,
                            callback=lambda i, x, d, s: seen.append((i, s)))
    assert nfe == 12 and [i for i, _ in seen] == list(range(12))
    assert seen[0][1] == pytest.approx(float(sig[0]))


def test_euler_equals_deterministic_ddim(gm):
    sig = unnoise.schedules.Karras().sampling_sigmas(10)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0)) * sig[0]
    a = unnoise.sample(gm.denoise, x, sig, sampler="euler")
    b = unnoise.sample(gm.denoise, x, sig, sampler="ddim")
    assert torch.allclose(a, b, atol=1e-5)


def test_conditioning_is_passed_through():
    calls = []

    def den(x, sigma, cond=None):
        calls.append(cond)
        return torch.zeros_like(x)

    unnoise.sample(den, torch.randn(3, 2), torch.tensor([1.0, 0.0]), sampler="ddim", cond="label-7")
    assert calls == ["label-7"]


def test_bad_sampling_inputs(gm):
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="unknown sampler 'fastest'; available: "):
        unnoise.sample(gm.denoise, x, torch.tensor([1.0, 0.0]), sampler="fastest")
    with pytest.raises(ValueError, match="strictly decreasing"):
        unnoise.sample(gm.denoise, x, torch.tensor([0.5, 1.0, 0.0]), sampler="ddim")
    with pytest.raises(ValueError, match="at least 2 entries"):
        unnoise.sample(gm.denoise, x, torch.tensor([1.0]), sampler="ddim")
    with pytest.raises(ValueError, match="eta must be in"):
        unnoise.sample(gm.denoise, x, torch.tensor([1.0, 0.0]), sampler="ddim", eta=-0.1)
    with pytest.raises(ValueError, match="has no option"):
        unnoise.sample(gm.denoise, x, torch.tensor([1.0, 0.0]), sampler="ddim", etta=0.1)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        unnoise.sample(gm.denoise, bad, torch.tensor([1.0, 0.0]), sampler="ddim")
