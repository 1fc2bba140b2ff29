"""Inverse problems: operators (adjoints, pseudo-inverses), the exact Gaussian-mixture posterior, and
every posterior-sampling method scored against it."""
import math

import pytest
import torch

import unnoise
from unnoise import inverse as inv
from unnoise import metrics, schedules
from unnoise.analytic import GaussianMixture

F64 = torch.float64


def _dot(a, b):
    return float((a * b).sum())


def operators():
    """(name, operator, x_shape) for every operator kind, on small shapes."""
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(3, 6, 6, generator=g) > 0.5).to(F64)
    asym = torch.rand(3, 2, generator=g, dtype=F64)  # an asymmetric kernel: conj K is not K

    def conv(x):  # a linear callable: a fixed channel mix and a shift
        return torch.roll(torch.stack([x[:, 0] - 2 * x[:, 1], x[:, 2]], 1), 1, dims=-1)
    return [
        ("mask", inv.Mask(mask), (3, 6, 6)),
        ("blur_sigma", inv.Blur(sigma=1.0), (3, 6, 6)),
        ("blur_kernel", inv.Blur(kernel=asym), (3, 6, 6)),
        ("downsample", inv.Downsample(2), (3, 6, 6)),
        ("gray", inv.Grayscale(), (3, 6, 6)),
        ("matrix", inv.Matrix(torch.randn(5, 108, generator=g, dtype=F64), x_shape=(3, 6, 6)), (3, 6, 6)),
        ("callable", inv.Operator.from_callable(conv, x_shape=(3, 6, 6)), (3, 6, 6)),
    ]


@pytest.mark.parametrize("name,op,shape", operators(), ids=[o[0] for o in operators()])
def test_transpose_is_the_adjoint_and_matches_autograd(name, op, shape):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, *shape, generator=g, dtype=F64)
    y = torch.randn(op.forward(x).shape, generator=g, dtype=F64)
    assert _dot(op.forward(x), y) == pytest.approx(_dot(x, op.transpose(y)), rel=1e-10, abs=1e-10)
    # a closed-form transpose equals the generic vector-Jacobian product
    assert torch.allclose(op.transpose(y), inv.Operator.transpose(op, y), atol=1e-10)
    # the dense matrix view is the same linear map
    M = op.matrix(shape)
    assert torch.allclose(op.forward(x).reshape(4, -1), x.reshape(4, -1) @ M.T, atol=1e-10)


@pytest.mark.parametrize("name,op,shape", operators(), ids=[o[0] for o in operators()])
def test_pinv_and_gram_solve(name, op, shape):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, *shape, generator=g, dtype=F64)
    y = op.forward(x)
    M = op.matrix(shape)
    P = torch.linalg.pinv(M)
    # Moore-Penrose: A A^+ A = A, and A^+ y is the minimum-norm solution (= the dense pinv)
    assert torch.allclose(op.forward(op.pinv(y)), y, atol=1e-6)
    assert torch.allclose(op.pinv(y).reshape(3, -1), y.reshape(3, -1) @ P.T, atol=1e-6)
    # (A A^T + lam)^-1 b against a dense solve
    b = torch.randn(y.shape, generator=g, dtype=F64)
    z = op.gram_solve(b, 0.3)
    dense = torch.linalg.solve(M @ M.T + 0.3 * torch.eye(M.shape[0], dtype=F64), b.reshape(3, -1).T).T
    assert torch.allclose(z.reshape(3, -1), dense, atol=1e-6)


def test_parse_operator(tmp_path):
    import numpy as np
    from PIL import Image
    shape = (3, 8, 8)
    assert isinstance(inv.parse_operator("blur:sigma=2", shape), inv.Blur)
    assert inv.parse_operator("blur:1.5", shape).kernel.shape == (11, 11)
    assert inv.parse_operator("downsample:4", shape).factor == 4
    assert isinstance(inv.parse_operator("gray", shape), inv.Grayscale)
    box = inv.parse_operator("box:2,1,5,3", shape)
    assert float(box.mask.sum()) == 3 * (64 - 6) and float(box.mask[0, 1, 2]) == 0
    img = np.zeros((8, 8), dtype=np.uint8)
    img[:4] = 255  # white = unknown (as unnoise inpaint)
    Image.fromarray(img).save(tmp_path / "m.png")
    m = inv.parse_operator(f"mask:{tmp_path / 'm.png'}", shape)
    assert float(m.mask[:, :4].sum()) == 0 and float(m.mask[:, 4:].min()) == 1
    for bad in ("blur:sigma=x", "downsample:3", "gray:", "swirl:2", "box:1,2,3", "mask:/nonexistent.png"):
        if bad == "gray:":
            with pytest.raises(ValueError, match="RGB"):
                inv.parse_operator(bad, (1, 8, 8))
            continue
        with pytest.raises(ValueError):
            inv.parse_operator(bad, shape)


# ------------------------------------------------------------------------------------- exact posterior
def rotated_mixture():
    g = torch.Generator().manual_seed(3)
    L = torch.randn(2, 3, 3, generator=g, dtype=F64)
    covs = L @ L.transpose(1, 2) / 3 + 0.05 * torch.eye(3, dtype=F64)
    return GaussianMixture(torch.randn(2, 3, generator=g, dtype=F64), weights=[0.3, 0.7], covariances=covs)


def test_full_covariance_mixture_is_exact():
    gm = rotated_mixture()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    for sigma in (0.0, 0.7):
        ref = torch.logsumexp(torch.stack([
            math.log(w) + torch.distributions.MultivariateNormal(m, c + sigma**2 * torch.eye(3, dtype=F64)).log_prob(x)
            for w, m, c in zip(gm.weights, gm.means, gm.covariances)]), 0)
        assert torch.allclose(gm.log_prob(x, sigma), ref, atol=1e-10)
    # Tweedie: D = x + sigma^2 grad log p_sigma, with the gradient by autograd
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.log_prob(xg, 0.7).sum(), xg)
    assert torch.allclose(gm.denoise(x, 0.7), x + 0.49 * grad, atol=1e-10)
    assert torch.allclose(gm.score(x, 0.7), grad, atol=1e-10)
    s = gm.sample(40000, generator=torch.Generator().manual_seed(5), dtype=F64)
    assert torch.allclose(s.mean(0), gm.mean, atol=0.03)
    assert torch.allclose(torch.cov(s.T), gm.covariance(), atol=0.05)
    with pytest.raises(ValueError, match="not both"):
        GaussianMixture(gm.means, 0.1, covariances=gm.covariances)
    with pytest.raises(ValueError, match="semi-definite"):
        GaussianMixture(gm.means, covariances=-gm.covariances)


def test_posterior_against_brute_force_bayes_on_a_grid():
    """2-D: prior density times likelihood, normalised on a fine grid, vs the closed-form mixture."""
    prior = GaussianMixture([[-1.0, -1.2], [-0.8, 1.2], [1.5, 0.0]], [[0.3, 0.4], [0.3, 0.3], [0.5, 0.3]],
                            [0.3, 0.3, 0.4])
    A = torch.tensor([[1.0, 0.5]], dtype=F64)
    y = torch.tensor([-0.6], dtype=F64)
    post = prior.posterior(A, y, 0.2)
    t = torch.linspace(-4, 4, 401, dtype=F64)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    cell = float(t[1] - t[0]) ** 2
    log_un = prior.log_prob(grid) - 0.5 * ((grid @ A.T)[:, 0] - y) ** 2 / 0.04
    p = torch.softmax(log_un, 0)
    dens = p / cell
    assert torch.allclose(post.log_prob(grid).exp(), dens, atol=2e-3 * float(dens.max()))
    mean = (p[:, None] * grid).sum(0)
    cov = (p[:, None, None] * (grid - mean)[:, :, None] * (grid - mean)[:, None, :]).sum(0)
    assert torch.allclose(post.mean, mean, atol=1e-4)
    assert torch.allclose(post.covariance(), cov, atol=1e-4)


def test_posterior_against_monte_carlo():
    """8-D through a 3x8 matrix: importance-weighted prior samples (means, covariances, weights)."""
    g = torch.Generator().manual_seed(6)
    prior = GaussianMixture.random(3, 8, generator=g)
    A = torch.randn(3, 8, generator=g, dtype=F64) / 2
    x_true = prior.sample(1, generator=g, dtype=F64)
    y = (x_true @ A.T)[0] + 0.5 * torch.randn(3, generator=g, dtype=F64)
    post = prior.posterior(inv.Matrix(A), y, 0.5)
    n = 400000
    k = torch.multinomial(prior.weights.float(), n, replacement=True, generator=g)
    xs = prior.means[k] + prior.stds[k] * torch.randn(n, 8, generator=g, dtype=F64)
    w = torch.softmax(-0.5 * (((xs @ A.T) - y) ** 2).sum(1) / 0.25, 0)
    assert 1.0 / float((w**2).sum()) > 2000  # enough effective samples for the tolerances below
    for j in range(3):
        wj = w * (k == j)
        assert float(wj.sum()) == pytest.approx(float(post.weights[j]), abs=0.02)
        if post.weights[j] > 0.2:
            mj = (wj[:, None] * xs).sum(0) / wj.sum()
            cj = ((wj[:, None] * (xs - mj)).T @ (xs - mj)) / wj.sum()
            assert torch.allclose(mj, post.means[j], atol=0.05)
            assert torch.allclose(cj, post.covariances[j], atol=0.05)
    # noiseless: the posterior satisfies A x = y exactly
    exact = prior.posterior(A, y, 0.0).sample(100, generator=g, dtype=F64)
    assert torch.allclose(exact @ A.T, y.expand(100, 3), atol=1e-8)


# ------------------------------------------------------------------------------- guided denoisers
def test_guided_denoisers_are_exact_for_gaussian_priors():
    g = torch.Generator().manual_seed(7)
    L = torch.randn(6, 6, generator=g, dtype=F64)
    full = GaussianMixture(torch.randn(1, 6, generator=g, dtype=F64), weights=[1.0],
                           covariances=(L @ L.T / 6 + 0.1 * torch.eye(6, dtype=F64))[None])
    iso = GaussianMixture(torch.randn(1, 6, generator=g, dtype=F64), 0.7)
    op = inv.Matrix(torch.randn(3, 6, generator=g, dtype=F64))
    y = torch.randn(6, 3, generator=g, dtype=F64)
    x = 2 * torch.randn(6, 6, generator=g, dtype=F64)
    s = torch.tensor([0.05, 0.3, 1.0, 2.0, 5.0, 20.0], dtype=F64)
    noise = torch.tensor([0.1, 0.2, 0.05], dtype=F64)  # per measurement

    def exact(prior):
        return torch.stack([prior.posterior(op, y[i], noise).denoise(x[i:i + 1], s[i:i + 1])[0] for i in range(6)])
    # MMPS (Tweedie covariance): exact for any Gaussian prior; PiGDM and DDNM for an isotropic one
    assert torch.allclose(inv.MMPS(full.denoise, y, op, noise, iterations=3)(x, s), exact(full), atol=1e-8)
    ex_iso = exact(iso)
    for cls in (inv.MMPS, inv.PGDM, inv.DDNM):
        kw = {"iterations": 3} if cls is inv.MMPS else {"data_var": 0.49}
        assert torch.allclose(cls(iso.denoise, y, op, noise, **kw)(x, s), ex_iso, atol=1e-8)
    # ... and PiGDM is not exact for the correlated prior (its r^2 I is the wrong covariance)
    assert float((inv.PGDM(full.denoise, y, op, noise)(x, s) - exact(full)).abs().max()) > 0.1


def test_ddnm_noiseless_is_consistent():
    gm = GaussianMixture.random(4, 5, generator=torch.Generator().manual_seed(8))
    op = inv.Matrix(torch.randn(2, 5, generator=torch.Generator().manual_seed(9), dtype=F64))
    y = torch.randn(10, 2, generator=torch.Generator().manual_seed(10), dtype=F64)
    x = torch.randn(10, 5, dtype=F64, generator=torch.Generator().manual_seed(11))
    d = inv.DDNM(gm.denoise, y, op, 0.0)(x, torch.full((10,), 0.5, dtype=F64))
    assert torch.allclose(op.forward(d), y, atol=1e-10)


# ------------------------------------------------------------------- methods against the exact posterior
def mask_problem():
    """2-D mixture, x_1 observed through a mask with noise 0.1: a bimodal posterior in x_2 whose modes
    weigh 0.69 / 0.31 (the prior's 0.5 / 0.5, reweighted by the evidence)."""
    prior = GaussianMixture([[-1.3, -1.2], [-0.5, 1.2], [1.5, 0.0]], [[0.3, 0.4], [0.3, 0.3], [0.5, 0.3]],
                            [0.3, 0.3, 0.4])
    op = inv.Mask(torch.tensor([1.0, 0.0], dtype=F64))
    y = torch.tensor([[-1.0, 0.0]], dtype=F64)
    return prior, op, y, 0.1, prior.posterior(op, y[0], 0.1)


N_SAMPLES, STEPS = 2000, 50


def _run(method, seed=0, **options):
    prior, op, y, noise, post = mask_problem()
    sig = schedules.karras_sigmas(STEPS, 0.002, 80.0)
    z = torch.randn(N_SAMPLES, 2, generator=torch.Generator().manual_seed(seed), dtype=F64) * sig[0]
    out, cost = inv.sample(prior.denoise, z, sig, y=y, operator=op, noise_std=noise, method=method,
                           generator=torch.Generator().manual_seed(seed + 1), return_cost=True, **options)
    ref = post.sample(N_SAMPLES, generator=torch.Generator().manual_seed(seed + 2), dtype=F64)
    swd = metrics.sliced_wasserstein(out, ref, generator=torch.Generator().manual_seed(0))
    return out, post, swd, cost


def _upper(x):
    return float((x[:, 1] > 0).double().mean())


def test_smc_matches_the_exact_posterior_and_converges_with_particles():
    post = mask_problem()[-1]
    exact_upper = float(post.weights[1] / post.weights[:2].sum())  # 0.31
    floors = [metrics.sliced_wasserstein(post.sample(N_SAMPLES, generator=torch.Generator().manual_seed(20 + s), dtype=F64),
                                         post.sample(N_SAMPLES, generator=torch.Generator().manual_seed(40 + s), dtype=F64),
                                         generator=torch.Generator().manual_seed(0)) for s in range(2)]
    floor = sum(floors) / 2  # ~0.07 with 2000 samples
    res = {k: _run("smc", particles=k) for k in (1, 4, 32)}
    assert all(c["nfe"] == STEPS and c["rows"] == STEPS * N_SAMPLES * k for k, (_, _, _, c) in res.items())
    err = {k: abs(_upper(out) - exact_upper) for k, (out, _, _, _) in res.items()}
    swd = {k: r[2] for k, r in res.items()}
    # one particle is replacement-like (measured 0.45 in the upper mode instead of 0.31); the error
    # shrinks with particles (measured 0.14, 0.04, < 0.01) and 32 reach the exact-vs-exact floor
    assert err[1] > 0.1 and err[4] < err[1] and err[32] < 0.03, err
    assert swd[1] > 3 * swd[32] and swd[32] < 2 * floor, (swd, floor)
    out = res[32][0]
    assert float(out[:, 0].mean()) == pytest.approx(float(post.mean[0]), abs=0.01)
    # the DDPM chain of 50 Karras steps is itself under-dispersed near the data (run with the exact
    # posterior denoiser it gives std 0.088 for the exact 0.102; 0.097 at 200 steps): SMC targets that chain
    assert float(out[:, 0].std()) == pytest.approx(float(post.covariance()[0, 0].sqrt()), rel=0.25)


# Each approximate method's bias on the 2-D mask problem (2000 samples, 50 Karras steps, DDPM, exact
# prior denoiser), measured over two seeds and asserted in a band around it so that a change that
# removes or worsens the bias fails.  Exact: 0.31 of the mass in the upper mode, std of x_1 0.10,
# SWD floor ~0.07.  Measured (SWD; upper-mode fraction; std x_1):
#   dps  0.26-0.27; 0.27; 0.52 (mode weights roughly right, but x_1 does not fit the measurement)
#   pgdm 0.26-0.29; 0.36-0.38; 0.11
#   mmps 0.39-0.41; 0.42-0.43; 0.09
#   ddnm 0.48-0.49; 0.47; 0.09  (close to the prior's 0.5: the evidence is nearly ignored)
BIAS_BANDS = {  # method: (SWD band, upper-mode fraction band, std band of x_1)
    "dps": ((0.17, 0.40), (0.20, 0.34), (0.40, 0.65)),
    "pgdm": ((0.16, 0.40), (0.33, 0.42), (0.09, 0.14)),
    "mmps": ((0.28, 0.52), (0.38, 0.47), (0.07, 0.11)),
    "ddnm": ((0.36, 0.60), (0.43, 0.51), (0.07, 0.11)),
}


@pytest.mark.parametrize("method", sorted(BIAS_BANDS))
def test_approximate_methods_bias_is_measured(method):
    out, post, swd, cost = _run(method)
    (slo, shi), (ulo, uhi), (dlo, dhi) = BIAS_BANDS[method]
    up, std = _upper(out), float(out[:, 0].std())
    assert slo <= swd <= shi, f"{method}: SWD {swd:.3f} outside its measured band [{slo}, {shi}]"
    assert ulo <= up <= uhi, f"{method}: upper-mode fraction {up:.3f} outside [{ulo}, {uhi}] (exact 0.31)"
    assert dlo <= std <= dhi, f"{method}: std of x_1 {std:.3f} outside [{dlo}, {dhi}] (exact 0.10)"
    assert cost["nfe"] == STEPS


def test_dps_accepts_a_nonlinear_operator_and_fits_the_data():
    prior, _, _, _, _ = mask_problem()
    op = inv.Operator.from_callable(lambda x: (x**2).sum(1, keepdim=True), linear=False)
    y = torch.tensor([[1.5]], dtype=F64)
    sig = schedules.karras_sigmas(40, 0.002, 80.0)
    z = torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * sig[0]
    out = inv.sample(prior.denoise, z, sig, y=y, operator=op, noise_std=0.05, method="dps", step=0.02,
                     generator=torch.Generator().manual_seed(1))
    free = unnoise.sample(prior.denoise, z, sig, sampler="ddpm", generator=torch.Generator().manual_seed(1))
    resid = ((out**2).sum(1) - 1.5).abs().median()
    assert resid < 0.5 * ((free**2).sum(1) - 1.5).abs().median()
    with pytest.raises(ValueError, match="linear operator"):
        inv.sample(prior.denoise, z, sig, y=y, operator=op, noise_std=0.05, method="mmps")


def test_guided_methods_run_with_other_samplers_and_cond():
    prior, op, y, noise, post = mask_problem()
    seen = []

    def den(x, sigma, cond):
        seen.append(cond["label"].shape)
        return prior.denoise(x, sigma)
    sig = schedules.karras_sigmas(10, 0.002, 80.0)
    z = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * sig[0]
    cond = {"label": torch.zeros(8, dtype=torch.long)}
    out, cost = inv.sample(den, z, sig, y=y, operator=op, noise_std=noise, method="pgdm", sampler="heun",
                           cond=cond, return_cost=True)
    assert out.shape == (8, 2) and cost["nfe"] == 19 and cost["vjps"] == 19
    assert all(s == (8,) for s in seen)
    inv.sample(den, z, sig, y=y, operator=op, noise_std=noise, method="smc", cond=cond, particles=3)
    assert seen[-1] == (24,)


def test_sample_errors():
    prior, op, y, noise, _ = mask_problem()
    sig = schedules.karras_sigmas(5, 0.002, 80.0)
    z = torch.randn(4, 2, dtype=F64) * 80
    assert inv.available() == ["ddnm", "dps", "mmps", "pgdm", "smc"]
    with pytest.raises(ValueError, match="unknown method"):
        inv.sample(prior.denoise, z, sig, y=y, operator=op, method="magic")
    with pytest.raises(ValueError, match="y must have shape"):
        inv.sample(prior.denoise, z, sig, y=torch.zeros(4, 3), operator=op, method="dps")
    with pytest.raises(ValueError, match="no option"):
        inv.sample(prior.denoise, z, sig, y=y, operator=op, method="mmps", particles=3)
    with pytest.raises(ValueError, match="no option"):
        inv.sample(prior.denoise, z, sig, y=y, operator=op, method="dps", iterations=3)
    with pytest.raises(ValueError, match="noise_std"):
        inv.sample(prior.denoise, z, sig, y=y, operator=op, noise_std=-1.0, method="dps")
    with pytest.raises(ValueError, match="Operator"):
        inv.sample(prior.denoise, z, sig, y=y, operator=lambda x: x, method="dps")


def test_mask_ignores_values_outside_the_mask():
    prior, op, y, noise, _ = mask_problem()
    sig = schedules.karras_sigmas(8, 0.002, 80.0)
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * sig[0]
    full = torch.tensor([[-1.0, float("nan")]], dtype=F64)
    for method in ("dps", "smc"):
        a = inv.sample(prior.denoise, z, sig, y=y, operator=op, noise_std=noise, method=method,
                       generator=torch.Generator().manual_seed(1))
        b = inv.sample(prior.denoise, z, sig, y=full, operator=op, noise_std=noise, method=method,
                       generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, b)
