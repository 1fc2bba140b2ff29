"""Periodic data: the wrapped normal against brute-force image sums, the von Mises mixture's heat-kernel series
against numerical convolution, exact samples and probability-flow samples against the circular moments."""
import math

import numpy as np
import pytest
import torch

import unnoise
from unnoise.analytic import VonMisesMixture, bessel_ratios
from unnoise.schedules import LogLinear
from unnoise.torus import (circular_embedding, score_norm_sq, wrap, wrapped_normal_log_prob, wrapped_normal_score)

scipy = pytest.importorskip("scipy")
from scipy import integrate, special  # noqa: E402

SIGMAS = [1e-3, 0.01, 0.1, 0.5, 1.0, 1.9, 1.999, 2.0, 2.001, 3.0, 10.0, 100.0]  # both regimes and the switch at 2


def brute_wrapped_normal(d, sigma, images=4000):
    """log p and score by a direct sum over 2 * images + 1 images (numpy, independent of unnoise)."""
    u = np.asarray(d, dtype=np.float64)[..., None] + 2 * np.pi * np.arange(-images, images + 1)
    logt = -0.5 * (u / sigma) ** 2
    logp = special.logsumexp(logt, axis=-1) - np.log(np.sqrt(2 * np.pi) * sigma)
    w = np.exp(logt - logt.max(-1, keepdims=True))
    return logp, -(w * u).sum(-1) / w.sum(-1) / sigma**2


def von_mises_convolved(theta, mu, kappa, sigma):
    """``int VM(t; mu, kappa) p_sigma(theta - t) dt`` over one period by adaptive quadrature (scipy)."""
    def log_integrand(t):
        return kappa * (np.cos(t - mu) - 1) + brute_wrapped_normal(theta - t, sigma, images=3)[0]
    top = log_integrand(np.linspace(mu - np.pi, mu + np.pi, 20001)).max()  # scaled, so far tails do not underflow
    val, _ = integrate.quad(lambda t: np.exp(log_integrand(t) - top), mu - np.pi, mu + np.pi,
                            points=[mu, theta, theta - 2 * np.pi, theta + 2 * np.pi], epsabs=0, epsrel=1e-13, limit=400)
    return top + np.log(val) - np.log(2 * np.pi * special.i0e(kappa))


@pytest.fixture(scope="module")
def vm():
    # modes straddle +-pi in the first angle (mu = pi) and sit near it in the second; one uniform angle (kappa = 0)
    return VonMisesMixture([[math.pi, 0.5], [2.6, -2.0], [-1.0, 2.9]], [[8.0, 4.0], [20.0, 0.0], [6.0, 15.0]],
                           [0.4, 0.35, 0.25])


def test_wrap_lands_in_the_interval_and_is_exact_for_large_values():
    x = torch.tensor([-math.pi, math.pi, 3 * math.pi, -3 * math.pi, 0.0, -1e-300, 7.0, -7.0, 1e10, -1e10, 1e15, 2e300],
                     dtype=torch.float64)
    w = wrap(x)
    assert torch.all((w >= -math.pi) & (w < math.pi))
    assert w[0] == -math.pi and w[1] == -math.pi and w[4] == 0
    for v, got in zip(x.tolist(), w.tolist()):  # math.fmod is exact: the only rounding is the final +-2 pi
        ref = math.fmod(v, 2 * math.pi)
        ref = ref - 2 * math.pi if ref >= math.pi else ref + 2 * math.pi if ref < -math.pi else ref
        assert got == pytest.approx(ref, abs=4e-16 * 2 * math.pi)
    x32 = torch.linspace(-50, 50, 1001)
    w32 = wrap(x32)
    assert w32.dtype == torch.float32 and torch.all((w32 >= -math.pi) & (w32 < math.pi))
    assert torch.allclose(torch.remainder(x32 - w32 + math.pi, 2 * math.pi), torch.full_like(x32, math.pi), atol=1e-4)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_wrapped_normal_matches_brute_force_image_sum(sigma):
    d = torch.tensor([-40.0, -7.5, -math.pi, -2.0, -0.3, 0.0, 1e-4, 0.7, 2.9, math.pi - 1e-9, 13.0],
                     dtype=torch.float64)
    logp, score = brute_wrapped_normal(wrap(d).numpy(), sigma)
    got_logp = wrapped_normal_log_prob(d, sigma).numpy()
    got_score = wrapped_normal_score(d, sigma).numpy()
    assert np.allclose(got_logp, logp, rtol=1e-13, atol=1e-13)
    assert np.allclose(got_score, score, rtol=1e-11, atol=1e-13 / sigma**2)
    # a tensor of sigmas spanning both regimes, broadcast against d
    sig = torch.tensor([sigma, 0.05, 50.0], dtype=torch.float64)[:, None]
    both = wrapped_normal_log_prob(d[None], sig)
    assert both.shape == (3, len(d)) and np.allclose(both[0].numpy(), logp, rtol=1e-13, atol=1e-13)
    assert np.allclose(both[1].numpy(), brute_wrapped_normal(wrap(d).numpy(), 0.05)[0], rtol=1e-13)


def test_wrapped_normal_score_is_the_derivative_and_stable_at_the_extremes():
    d = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64)
    for sigma in (0.05, 0.8, 2.0, 4.0):
        h = 1e-5 * min(sigma, 1.0)
        fd = (wrapped_normal_log_prob(d + h, sigma) - wrapped_normal_log_prob(d - h, sigma)) / (2 * h)
        assert torch.allclose(wrapped_normal_score(d, sigma), fd, rtol=1e-7, atol=1e-8)
    # sigma -> 0: the Gaussian score -d / sigma^2, no underflow; sigma -> inf: 0, no 0/0
    assert torch.allclose(wrapped_normal_score(d, 1e-3), -d / 1e-6, rtol=1e-12)
    big = wrapped_normal_score(d, 100.0)
    assert torch.all(torch.isfinite(big)) and torch.all(big == 0)
    assert torch.allclose(wrapped_normal_log_prob(d, 100.0), torch.full_like(d, -math.log(2 * math.pi)))


def test_score_norm_sq_limits_and_quadrature():
    sig = torch.tensor([[1e-3, 0.02], [0.3, 6.0]], dtype=torch.float64)
    got = score_norm_sq(sig)
    assert got.shape == (2, 2)
    assert float(got[0, 0]) == pytest.approx(1e6, rel=1e-10)  # 1 / sigma^2: the Gaussian's Fisher information
    assert float(got[0, 1]) == pytest.approx(1 / 0.02**2, rel=1e-10)
    assert float(got[1, 1]) == pytest.approx(2 * math.exp(-36), rel=1e-12)  # 2 e^{-sigma^2} + O(e^{-2 sigma^2})
    for sigma in (0.3, 1.0, 2.0, 3.0):
        def integrand(t):
            logp, score = brute_wrapped_normal(t, sigma, images=50)
            return np.exp(logp) * score**2
        ref, _ = integrate.quad(integrand, -np.pi, np.pi, epsabs=0, epsrel=1e-12, limit=200)
        assert float(score_norm_sq(sigma)) == pytest.approx(ref, rel=1e-10)


def test_circular_embedding():
    x = torch.tensor([[0.0, math.pi / 2], [math.pi, -math.pi / 2]])
    e = circular_embedding(x)
    assert e.shape == (2, 4)
    assert torch.allclose(e, torch.tensor([[1.0, 0.0, 0.0, 1.0], [-1.0, 0.0, 0.0, -1.0]]), atol=1e-7)
    assert torch.allclose(circular_embedding(x + 2 * math.pi), e, atol=1e-6)


def test_bessel_ratios_match_scipy_up_to_large_kappa():
    kappa = torch.tensor([0.0, 1e-3, 0.5, 3.0, 30.0, 200.0, 500.0], dtype=torch.float64)
    got = bessel_ratios(kappa, 250).numpy()
    k = kappa.numpy()
    ref = np.stack([special.ive(n, k) / special.ive(0, k) for n in range(251)], -1)
    assert got[0, 0] == 1 and np.all(got[0, 1:] == 0)
    keep = ref > 1e-200
    assert np.allclose(got[keep], ref[keep], rtol=1e-11, atol=0)


@pytest.mark.parametrize("kappa,sigma", [(0.5, 0.3), (4.0, 0.05), (4.0, 1.0), (30.0, 0.2), (30.0, 2.5), (200.0, 0.02),
                                         (200.0, 0.3), (500.0, 1e-3)])
def test_heat_kernel_series_matches_numerical_convolution(kappa, sigma):
    """One angle of one component: the log density at every angle, the far tails included (1e-10)."""
    mu = 2.9
    vm1 = VonMisesMixture([[mu]], [[kappa]])
    theta = np.linspace(-np.pi, np.pi, 15, endpoint=False)
    ref = np.array([von_mises_convolved(t, mu, kappa, sigma) for t in theta])
    got = vm1.log_prob(torch.tensor(theta[:, None]), sigma).numpy()
    assert np.allclose(got, ref, rtol=1e-10, atol=1e-10)


def test_density_integrates_to_one_and_sigma_zero_is_the_von_mises(vm):
    t = torch.linspace(-math.pi, math.pi, 129, dtype=torch.float64)[:-1]
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    for sigma in (0.0, 0.05, 0.7, 3.0):
        mass = vm.log_prob(grid, sigma).exp().sum() * (2 * math.pi / 128) ** 2
        assert float(mass) == pytest.approx(1.0, abs=1e-12)
    x = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    comps = [vm.weights[k] * torch.prod(torch.exp(vm.concentrations[k] * torch.cos(x[0] - vm.means[k]))
                                        / (2 * math.pi * torch.special.i0(vm.concentrations[k]))) for k in range(3)]
    assert float(vm.log_prob(x)) == pytest.approx(math.log(sum(comps)), rel=1e-13)
    assert vm.log_prob(torch.zeros(1, 2, dtype=torch.float64), 1e-9).item() == pytest.approx(
        vm.log_prob(torch.zeros(1, 2, dtype=torch.float64)).item(), rel=1e-12)


def test_score_is_the_derivative_of_log_prob_and_periodic(vm):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(40, 2, generator=g, dtype=torch.float64) * 2 - 1) * 9  # lifts well outside [-pi, pi)
    for sigma in (0.0, 0.01, 0.2, 1.5, 5.0):
        h = 1e-6
        fd = torch.stack([(vm.log_prob(x + h * e, sigma) - vm.log_prob(x - h * e, sigma)) / (2 * h)
                          for e in torch.eye(2, dtype=torch.float64)], 1)
        sc = vm.score(x, sigma)
        assert torch.allclose(sc, fd, rtol=1e-6, atol=1e-6)
        assert torch.allclose(vm.score(x + 2 * math.pi * torch.tensor([3.0, -1.0], dtype=torch.float64), sigma), sc,
                              rtol=1e-9, atol=1e-9)
        assert torch.allclose(vm.denoise(x, sigma), x + sigma**2 * sc)
    sig = torch.linspace(0.01, 2.0, 40, dtype=torch.float64)
    single = torch.stack([vm.score(x[i:i + 1], float(sig[i]))[0] for i in range(40)])
    assert torch.allclose(vm.score(x, sig), single, rtol=1e-12, atol=1e-12)


def test_concentrated_tails_stay_exact():
    """kappa = 500: far from both modes the series cancels to noise; the log-space quadrature takes over."""
    vm2 = VonMisesMixture([[0.0], [0.4]], [[500.0], [300.0]], [0.5, 0.5])
    theta = np.array([-3.0, -1.5, 1.6, 3.1])
    for sigma in (0.01, 0.1):  # Gauss-Hermite (kappa sigma <= 2) and trapezoidal branches
        ref = np.array([np.logaddexp(von_mises_convolved(t, 0.0, 500.0, sigma),
                                     von_mises_convolved(t, 0.4, 300.0, sigma)) for t in theta]) - np.log(2)
        x = torch.tensor(theta[:, None])
        assert np.allclose(vm2.log_prob(x, sigma).numpy(), ref, rtol=1e-10)
        h = 1e-6
        fd = (vm2.log_prob(x + h, sigma) - vm2.log_prob(x - h, sigma)) / (2 * h)
        assert torch.allclose(vm2.score(x, sigma)[:, 0], fd, rtol=1e-6)


def test_exact_samples_match_the_circular_moments(vm):
    n = 40000
    x32 = vm.sample(n, generator=torch.Generator().manual_seed(1))
    assert x32.dtype == torch.float32 and x32.shape == (n, 2) and torch.all((x32 >= -math.pi) & (x32 < math.pi))
    x = x32.double()
    for k in (1, 2, 3):
        emp = torch.exp(1j * k * x).mean(0)
        assert torch.allclose(emp, vm.circular_moment(k), atol=4 / math.sqrt(n))  # 4 standard errors or fewer
    # a single concentrated component: (I_1 / I_0)(kappa) e^{i mu}
    one = VonMisesMixture([[-3.0]], [[500.0]])
    y = one.sample(20000, generator=torch.Generator().manual_seed(2)).double()
    ratio = special.ive(1, 500.0) / special.ive(0, 500.0)
    assert torch.allclose(torch.exp(1j * y).mean(0), torch.tensor([ratio * complex(math.cos(-3.0), math.sin(-3.0))],
                                                                  dtype=torch.complex128), atol=4e-3 / math.sqrt(20)
                          + 4 * math.sqrt(1 - ratio**2) / math.sqrt(20000))
    assert vm.circular_moment(0).real.tolist() == pytest.approx([1.0, 1.0])
    assert torch.allclose(vm.circular_moment(-2), vm.circular_moment(2).conj())


def test_probability_flow_in_the_lifted_space_matches_the_circular_moments(vm):
    """Start uniform at sigma = 4, run samplers on the lifted denoiser, wrap once at the end."""
    n, g = 3000, torch.Generator().manual_seed(3)
    x_T = (torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    for sampler, steps in (("heun", 20), ("dpmpp_2m", 30)):
        sigmas = LogLinear(0.005, 4.0).sampling_sigmas(steps)
        out = wrap(unnoise.sample(vm.denoise, x_T.clone(), sigmas, sampler=sampler))
        assert torch.all((out >= -math.pi) & (out < math.pi))
        for k in (1, 2, 3):  # Monte-Carlo standard error of each part <= (2 n)^-1/2 = 0.013
            assert torch.allclose(torch.exp(1j * k * out).mean(0), vm.circular_moment(k), atol=0.06)
    # samplers that only combine eps = -sigma * score give the same angles when x is wrapped after every step
    sigmas = LogLinear(0.005, 4.0).sampling_sigmas(10)
    end = wrap(unnoise.sample(vm.denoise, x_T.clone(), sigmas, sampler="ipndm"))
    each = unnoise.sample(vm.denoise, x_T.clone(), sigmas, sampler="ipndm",
                          callback=lambda i, x, den, s: x.copy_(wrap(x)))
    assert torch.allclose(circular_embedding(wrap(each)), circular_embedding(end), atol=1e-9)


def test_bad_inputs_are_one_line_errors(vm):
    with pytest.raises(ValueError, match="means must be finite with shape"):
        VonMisesMixture(torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="concentrations must be finite and >= 0"):
        VonMisesMixture(torch.zeros(2, 2), [[1.0, -1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match=r"concentrations must be a float, \(K,\) or \(K, d\)"):
        VonMisesMixture(torch.zeros(2, 2), torch.ones(3, 2))
    with pytest.raises(ValueError, match="weights must be 2 positive"):
        VonMisesMixture(torch.zeros(2, 2), 1.0, [1.0, 0.0])
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\)"):
        vm.score(torch.zeros(4, 3), 0.5)
    with pytest.raises(ValueError, match="x contains NaN"):
        vm.log_prob(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="sigma must be finite and >= 0"):
        vm.score(torch.zeros(2, 2), -1.0)
    with pytest.raises(ValueError, match="sigma must be a float or a"):
        vm.denoise(torch.zeros(4, 2), torch.ones(3))
    with pytest.raises(ValueError, match="k must be an integer"):
        vm.circular_moment(1.5)
    with pytest.raises(ValueError, match="sigma must be positive and finite"):
        wrapped_normal_log_prob(torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="sigma must be positive and finite"):
        score_norm_sq(torch.tensor([1.0, float("inf")]))


def test_large_batches_are_chunked_and_empty_batches_work():
    vm_big = VonMisesMixture(torch.zeros(4, 3), torch.full((4, 3), 400.0))
    x = (torch.rand(3000, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2 - 1) * math.pi
    assert 2**22 // vm_big._ratios.numel() < len(x)  # several chunks
    whole = vm_big.score(x, 1.0)
    assert torch.allclose(whole[-7:], vm_big.score(x[-7:], 1.0), rtol=1e-13, atol=1e-13)
    assert vm_big.log_prob(torch.zeros(0, 3), 0.1).shape == (0,)
