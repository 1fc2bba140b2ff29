"""Every sampler against exact answers: diffusers' schedulers driven by the same eps, a tight
adaptive ODE solve, the exact moments / density of Gaussian mixtures, and exact identities
between samplers."""
import inspect
import math

import pytest
import torch

import unnoise
from unnoise.analytic import GaussianMixture
from unnoise.metrics import sliced_wasserstein
from unnoise.samplers import AutoSigmas, optimize_sigmas
from unnoise.schedules import DDPM, karras_sigmas

diffusers = pytest.importorskip("diffusers")

ALL = ["ddim", "ddpm", "euler", "heun", "rk45", "edm", "langevin", "euler_maruyama", "pc", "gradient_estimation",
       "flow_euler", "flow_heun", "dpmpp_2m", "dpmpp_3m", "unipc", "deis", "lms", "ipndm"]


def swd(a, b):
    return sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def ring():
    return GaussianMixture.ring()  # 8 components, radius 2, std 0.1


@pytest.fixture(scope="module")
def ring_exact(ring):
    """Exact samples plus the exact-vs-exact SWD floor (its worst case over 4 independent pairs)."""
    g = torch.Generator().manual_seed(11)
    exact = ring.sample(2000, generator=g)
    floor = max(swd(ring.sample(2000, generator=g), exact) for _ in range(4))
    return exact, floor


def test_registry_and_default():
    assert set(ALL) <= set(unnoise.samplers.available())
    # the default changed from dpmpp_2m to the measured one (issue 16; see test_samplers_multistep.py)
    assert inspect.signature(unnoise.sample).parameters["sampler"].default == unnoise.samplers.DEFAULT_SAMPLER


# ----------------------------------------------------------------------------- diffusers cross-checks
def _vp_trajectory(sched, denoiser, x, sigmas):
    """Drive a diffusers VP scheduler with eps = (x - D)/sigma; returns the scale-free result."""
    xt = x / torch.sqrt(1 + sigmas[0] ** 2)
    for i, t in enumerate(sched.timesteps):
        s = float(sigmas[i])
        xs = xt * math.sqrt(1 + s * s)
        xt = sched.step((xs - denoiser(xs, s)) / s, t, xt).prev_sample
    return xt * torch.sqrt(1 + sigmas[-1] ** 2)


MULTISTEP = [
    ("dpmpp_2m", {}, diffusers.DPMSolverMultistepScheduler, dict(solver_order=2, final_sigmas_type="zero")),
    ("dpmpp_3m", {}, diffusers.DPMSolverMultistepScheduler, dict(solver_order=3, final_sigmas_type="zero")),
    ("unipc", {"order": 1}, diffusers.UniPCMultistepScheduler, dict(solver_order=1, final_sigmas_type="zero")),
    ("unipc", {"order": 2}, diffusers.UniPCMultistepScheduler, dict(solver_order=2, final_sigmas_type="zero")),
    ("unipc", {"order": 3}, diffusers.UniPCMultistepScheduler, dict(solver_order=3, final_sigmas_type="zero")),
    # bh1 with a zero final sigma is 0 * inf (NaN) inside diffusers, so this one ends at sigma_min
    ("unipc", {"order": 2, "variant": "bh1"}, diffusers.UniPCMultistepScheduler,
     dict(solver_order=2, solver_type="bh1", final_sigmas_type="sigma_min")),
    ("deis", {"order": 1}, diffusers.DEISMultistepScheduler, dict(solver_order=1)),
    ("deis", {"order": 2}, diffusers.DEISMultistepScheduler, dict(solver_order=2)),
    ("deis", {"order": 3}, diffusers.DEISMultistepScheduler, dict(solver_order=3)),
]


@pytest.mark.parametrize("name,opts,cls,cfg", MULTISTEP, ids=lambda v: v if isinstance(v, str) else None)
def test_multistep_matches_diffusers(name, opts, cls, cfg):
    """A full 8-step trajectory on the DDPM-linear VP grid (trailing), same eps at every step."""
    gm = GaussianMixture.random(5, 3, generator=torch.Generator().manual_seed(0))
    sched = cls(num_train_timesteps=1000, beta_schedule="linear", timestep_spacing="trailing", **cfg)
    sched.set_timesteps(8)
    sig = sched.sigmas.float().clone()
    # the diffusers grid is our DDPM schedule's trailing grid (its last entry aside)
    ours_grid = DDPM().sampling_sigmas(8, "trailing")
    assert torch.allclose(sig[:-1], ours_grid[:-1], rtol=1e-5)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1)) * sig[0]
    want = _vp_trajectory(sched, gm.denoise, x.clone(), sig)
    got = unnoise.sample(gm.denoise, x.clone(), sig, sampler=name, **opts)
    rel = float((got - want).abs().max() / want.abs().max())
    assert rel < 1e-5, rel


@pytest.mark.parametrize("name,cls", [("euler", diffusers.EulerDiscreteScheduler),
                                      ("heun", diffusers.HeunDiscreteScheduler)])
def test_euler_heun_match_diffusers(name, cls):
    gm = GaussianMixture.random(5, 3, generator=torch.Generator().manual_seed(0))
    sched = cls(num_train_timesteps=1000, beta_schedule="linear", timestep_spacing="trailing")
    sched.set_timesteps(8)
    sig = sched.sigmas.float().clone()
    if name == "heun":  # diffusers repeats each interior sigma for the corrector call
        sig = torch.cat([sig[:1], sig[1::2]])
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1)) * sig[0]
    want = x.clone()  # these schedulers work on the scale-free x itself
    for t in sched.timesteps:
        s = float(sched.sigmas[sched.step_index or 0])
        want = sched.step((want - gm.denoise(want, s)) / s, t, want).prev_sample
    got, nfe = unnoise.sample(gm.denoise, x.clone(), sig, sampler=name, return_nfe=True)
    assert float((got - want).abs().max() / want.abs().max()) < 1e-5
    assert nfe == len(sched.timesteps)  # Heun: 2 N - 1 evaluations, as diffusers


def test_flow_euler_matches_diffusers():
    """FlowMatchEulerDiscreteScheduler on our flow grid (t = sigma / (1 + sigma)), fed u = (x_t - D)/t."""
    gm = GaussianMixture.random(5, 3, generator=torch.Generator().manual_seed(0))
    sig = unnoise.schedules.Flow().sampling_sigmas(8)
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=1.0)
    sched.set_timesteps(sigmas=(sig / (1 + sig))[:-1].tolist())
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1)) * sig[0]
    xt = x / (1 + sig[0])
    for i, t in enumerate(sched.timesteps):
        tt = float(sched.sigmas[i])
        xt = sched.step((xt - gm.denoise(xt / (1 - tt), float(sig[i]))) / tt, t, xt).prev_sample
    got = unnoise.sample(gm.denoise, x.clone(), sig, sampler="flow_euler")
    assert float((got - xt).abs().max() / xt.abs().max()) < 1e-5


# ----------------------------------------------------------------------------- ODE solvers: error and order
# (sampler, lowest acceptable observed order between 16 and 32 steps, NFE per step)
ORDERS = [("euler", 0.8, 1), ("flow_euler", 0.8, 1), ("heun", 1.7, 2), ("flow_heun", 1.7, 2),
          ("dpmpp_2m", 1.7, 1), ("dpmpp_3m", 2.2, 1), ("unipc", 2.2, 1), ("deis", 2.0, 1),
          ("gradient_estimation", 0.3, 1)]


@pytest.mark.parametrize("name,min_order,_", ORDERS, ids=[o[0] for o in ORDERS])
def test_ode_solvers_converge_to_reference_with_their_order(smooth8, ode_reference, name, min_order, _):
    """RMS error against a tight RK45 solve from the same starts shrinks like NFE^-order.

    Measured (64 points, Karras grid 10 -> 0.01): Euler 1.05, Heun 2.1, DPM++2M 2.2, DPM++3M 2.6,
    UniPC 2.9, DEIS 2.4, flow Heun 1.9; gradient estimation (gamma = 2) ~0.6 here.
    """
    x, ref = ode_reference
    opts = {"lower_order_final": False} if name in ("dpmpp_2m", "dpmpp_3m", "deis") else {}
    errs = []
    for steps in (8, 16, 32):
        out, nfe = unnoise.sample(smooth8.denoise, x, karras_sigmas(steps, 0.01, 10.0).double(), sampler=name,
                                  return_nfe=True, **opts)
        errs.append((nfe, float(((out - ref) ** 2).mean().sqrt())))
    assert errs[0][1] > errs[1][1] > errs[2][1], errs
    order = math.log(errs[1][1] / errs[2][1]) / math.log(errs[2][0] / errs[1][0])
    assert order > min_order, (order, errs)
    assert errs[2][1] < 0.06, errs  # 32 steps of any of them is within 0.06 RMS of the exact ODE


def test_dpmpp_3m_third_order_needs_the_taylor_weight(smooth8, ode_reference):
    """The reference 3M weight on h^2 D''/2 is half the Taylor one: order 2 asymptotically, vs 3."""
    x, ref = ode_reference

    def order(weight):
        errs = [float((unnoise.sample(smooth8.denoise, x, karras_sigmas(n, 0.01, 10.0).double(), sampler="dpmpp_3m",
                                      lower_order_final=False, d2_weight=weight) - ref).pow(2).mean().sqrt())
                for n in (32, 64)]
        return math.log2(errs[0] / errs[1])

    assert order("taylor") > 2.7
    assert order("reference") < 2.5


def test_rk45_error_control_and_nfe(smooth8, ode_reference):
    x, ref = ode_reference
    calls = []

    def counted(xx, s):
        calls.append(1)
        return smooth8.denoise(xx, s)

    grid = torch.tensor([10.0, 0.01, 0.0], dtype=torch.float64)
    errs = []
    for tol in (1e-3, 1e-5):
        out, nfe = unnoise.sample(counted, x, grid, sampler="rk45", rtol=tol, atol=tol, return_nfe=True)
        assert nfe == len(calls)  # every real call is reported (ODE stages + the final D)
        calls.clear()
        errs.append(float((out - ref).abs().max()))
    assert errs[1] < errs[0] / 10 and errs[1] < 1e-3, errs


def test_flow_euler_is_ddim_and_euler(smooth8, ode_reference):
    """Euler linear in t = sigma/(1+sigma) gives x_t' = (1 - t') D + t' eps: the DDIM update."""
    x, _ = ode_reference
    sig = karras_sigmas(7, 0.01, 10.0).double()
    a = unnoise.sample(smooth8.denoise, x, sig, sampler="flow_euler")
    for other in ("ddim", "euler"):
        assert torch.allclose(a, unnoise.sample(smooth8.denoise, x, sig, sampler=other), atol=1e-10)


def test_flow_heun_on_a_flow_grid(ring):
    """On the rectified-flow grid (uniform in t, sigma 999 -> 0.09) Heun linear in t is far more
    accurate than Heun linear in sigma at the same 11 evaluations (RMS error vs RK45: 0.010 vs 0.38)."""
    sig = unnoise.schedules.Flow().sampling_sigmas(6)
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * sig[0]
    ref = unnoise.sample(ring.denoise, x, sig[[0, -2, -1]].double(), sampler="rk45", rtol=1e-5, atol=1e-5)

    def err(name):
        return float((unnoise.sample(ring.denoise, x, sig.double(), sampler=name) - ref).pow(2).mean().sqrt())

    assert err("flow_heun") < err("heun") / 10


def test_gradient_estimation_reduces_to_ddim(ring):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 2, generator=g, dtype=torch.float64) * 80
    sig = karras_sigmas(10, 0.002, 80.0).double()
    ddim = unnoise.sample(ring.denoise, x, sig, sampler="ddim")
    same = unnoise.sample(ring.denoise, x, sig, sampler="gradient_estimation", gamma=1.0)
    assert torch.allclose(same, ddim, rtol=0, atol=1e-12)  # the same update, up to float64 rounding
    # mu = 1/2: descend to sigma'^2/sigma and re-noise to sigma' -- DDIM with eta = 1, noise for noise
    a = unnoise.sample(ring.denoise, x, sig, sampler="gradient_estimation", gamma=1.0, mu=0.5,
                       generator=torch.Generator().manual_seed(9))
    b = unnoise.sample(ring.denoise, x, sig, sampler="ddim", eta=1.0, generator=torch.Generator().manual_seed(9))
    assert torch.allclose(a, b, atol=1e-10)
    # gamma = 2 differs from DDIM and, at 10 steps, is closer to the exact ODE solution
    ref = unnoise.sample(ring.denoise, x, sig[[0, -2, -1]], sampler="rk45", rtol=1e-4, atol=1e-4)
    ge = unnoise.sample(ring.denoise, x, sig, sampler="gradient_estimation")
    assert (ge - ref).pow(2).mean() < (ddim - ref).pow(2).mean()


def test_unipc_predictor_alone_is_dpmpp_2m(ring, smooth8, ode_reference):
    """UniP-2 (bh2) has the single weight 1/2 on (m1 - m0)/r1: exactly DPM-Solver++(2M)'s update."""
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 80
    sig = karras_sigmas(8, 0.002, 80.0).double()
    a = unnoise.sample(ring.denoise, x, sig, sampler="unipc", order=2, disable_corrector=tuple(range(8)))
    assert torch.allclose(a, unnoise.sample(ring.denoise, x, sig, sampler="dpmpp_2m"), rtol=0, atol=1e-10)
    # the free corrector is what lifts UniPC's order: on the smooth problem, 32 steps, 1.5e-3 vs 4.6e-3
    x, ref = ode_reference
    sig = karras_sigmas(32, 0.01, 10.0).double()

    def err(**opts):
        return float((unnoise.sample(smooth8.denoise, x, sig, sampler="unipc", **opts) - ref).pow(2).mean().sqrt())

    assert err() < 0.5 * err(disable_corrector=tuple(range(32)))


def test_edm_without_churn_is_heun(ring):
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(2)) * 80
    sig = karras_sigmas(6, 0.002, 80.0)
    assert torch.equal(unnoise.sample(ring.denoise, x, sig, sampler="edm"),
                       unnoise.sample(ring.denoise, x, sig, sampler="heun"))


# ----------------------------------------------------------------------------- distributions
# (sampler, options, steps) chosen so each has converged; NFE in brackets
CONVERGED = [("ddim", {}, 20), ("heun", {}, 12), ("dpmpp_2m", {}, 15), ("dpmpp_3m", {}, 15), ("unipc", {}, 15),
             ("deis", {}, 15), ("flow_heun", {}, 12), ("gradient_estimation", {}, 15), ("rk45", {"rtol": 1e-3, "atol": 1e-3}, 2),
             ("ddpm", {}, 40), ("euler_maruyama", {}, 40), ("pc", {}, 25), ("edm", {"S_churn": 20.0}, 15),
             ("gradient_estimation", {"mu": 0.5}, 40)]


@pytest.mark.parametrize("name,opts,steps", CONVERGED, ids=[f"{c[0]}{'-' + str(c[1]) if c[1] else ''}" for c in CONVERGED])
def test_sampler_reaches_the_ring(ring, ring_exact, name, opts, steps):
    """SWD to exact samples within 1.5x the worst exact-vs-exact floor (~0.1 at n = 2000).

    The bound is meaningful: DDIM with 3 steps scores ~0.5 and with 5 steps ~0.24 (see
    test_bound_rejects_an_unconverged_sampler).
    """
    exact, floor = ring_exact
    g = torch.Generator().manual_seed(4)
    out = unnoise.sample(ring.denoise, torch.randn(2000, 2, generator=g) * 80, karras_sigmas(steps, 0.002, 80.0),
                         sampler=name, generator=g, **opts)
    assert swd(out, exact) < 1.5 * floor, (swd(out, exact), floor)


def test_bound_rejects_an_unconverged_sampler(ring, ring_exact):
    exact, floor = ring_exact
    g = torch.Generator().manual_seed(4)
    out = unnoise.sample(ring.denoise, torch.randn(2000, 2, generator=g) * 80, karras_sigmas(3, 0.002, 80.0),
                         sampler="ddim")
    assert swd(out, exact) > 2 * floor


def test_annealed_langevin_reaches_the_ring(ring, ring_exact):
    """NCSN-style: 10 geometric levels 5 -> 0.05, 20 Langevin steps each, final denoising."""
    exact, floor = ring_exact
    g = torch.Generator().manual_seed(6)
    sig = _geometric(5.0, 0.05, 10)
    out, nfe = unnoise.sample(ring.denoise, torch.randn(2000, 2, generator=g) * 5, sig, sampler="langevin",
                              n_steps_each=20, generator=g, return_nfe=True)
    assert nfe == 10 * 20 + 1
    assert swd(out, exact) < 1.5 * floor


def _geometric(hi, lo, levels):
    return torch.cat([torch.exp(torch.linspace(math.log(hi), math.log(lo), levels)), torch.zeros(1)])


# (sampler, options, grid); 8-D components have stds 0.1-0.5, so the DDPM-type samplers need ~60 steps
STOCHASTIC = [("euler_maruyama", {}, karras_sigmas(60, 0.002, 80.0)), ("pc", {}, karras_sigmas(30, 0.002, 80.0)),
              ("pc", {"predictor": "euler_maruyama"}, karras_sigmas(40, 0.002, 80.0)),
              ("edm", {"S_churn": 20.0}, karras_sigmas(15, 0.002, 80.0)), ("ddpm", {}, karras_sigmas(60, 0.002, 80.0)),
              ("gradient_estimation", {"mu": 0.5}, karras_sigmas(60, 0.002, 80.0)),
              ("langevin", {"n_steps_each": 20}, _geometric(20.0, 0.05, 15))]


@pytest.mark.parametrize("name,opts,sig", STOCHASTIC, ids=[s[0] + "".join(f"-{v}" for v in s[1].values())
                                                          for s in STOCHASTIC])
def test_stochastic_samplers_match_mixture_moments(name, opts, sig):
    """8-D random mixture (4 well-separated components): mean, covariance and component weights."""
    gm = GaussianMixture.random(4, 8, generator=torch.Generator().manual_seed(3))
    n, g = 2000, torch.Generator().manual_seed(7)
    out = unnoise.sample(gm.denoise, torch.randn(n, 8, generator=g) * sig[0], sig,
                         sampler=name, generator=g, **opts).double()
    cov = gm.covariance()
    z = (out.mean(0) - gm.mean) / (cov.diag() / n).sqrt()
    assert z.abs().max() < 4.0, z  # 8 coordinates, each a standard normal if exact
    # exact samples give ~0.02 here; the estimate's own spread is ~0.03
    assert (torch.cov(out.T) - cov).norm() / cov.norm() < 0.08
    frac = torch.bincount(torch.cdist(out, gm.means).argmin(1), minlength=4) / n
    se = (gm.weights * (1 - gm.weights) / n).sqrt()
    assert ((frac - gm.weights).abs() / se).max() < 4.0, (frac, gm.weights)


def test_langevin_samples_the_exact_noised_density():
    """A single level: unadjusted Langevin with the exact score targets p_sigma (bias O(step)).

    1-D mixture 0.3 N(-1, 0.5^2) + 0.7 N(1, 0.5^2) at sigma = 0.5, started far from it (0.3 N(0,1)).
    300 steps of size 0.05; KS distance to the exact noised CDF and its moments.
    """
    gm = GaussianMixture(torch.tensor([[-1.0], [1.0]]), torch.tensor([0.5, 0.5]), torch.tensor([0.3, 0.7]))
    s, n, g = 0.5, 2000, torch.Generator().manual_seed(0)
    x = unnoise.sample(gm.denoise, 0.3 * torch.randn(n, 1, generator=g), torch.tensor([s, 0.0]), sampler="langevin",
                       n_steps_each=300, eps_step=0.05, denoise_final=False, generator=g).double().squeeze(1)
    std = torch.sqrt(gm.stds[:, 0] ** 2 + s**2)
    xs = x.sort().values
    cdf = (gm.weights * 0.5 * (1 + torch.erf((xs[:, None] - gm.means[:, 0]) / (std * math.sqrt(2))))).sum(1)
    emp = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = float(torch.maximum((emp - cdf).abs(), (emp - 1 / n - cdf).abs()).max())
    assert ks < 1.63 / math.sqrt(n), ks  # 1% critical value of the KS test
    var = float(gm.covariance(s)[0, 0])
    assert abs(float(x.mean()) - float(gm.mean)) < 4 * math.sqrt(var / n)
    assert abs(float(x.var()) / var - 1) < 0.08


# ----------------------------------------------------------------------------- NFE accounting
@pytest.mark.parametrize("name,opts,expected", [
    ("euler", {}, lambda n: n), ("heun", {}, lambda n: 2 * n - 1), ("flow_heun", {}, lambda n: 2 * n - 1),
    ("dpmpp_2m", {}, lambda n: n), ("dpmpp_3m", {}, lambda n: n), ("unipc", {}, lambda n: n),
    ("deis", {}, lambda n: n), ("pc", {"n_corrector": 2}, lambda n: 3 * n), ("euler_maruyama", {}, lambda n: n),
    ("langevin", {"n_steps_each": 3}, lambda n: 3 * n + 1), ("edm", {"S_churn": 5.0}, lambda n: 2 * n - 1)])
def test_nfe_counts(ring, name, opts, expected):
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(0)) * 80
    _, nfe = unnoise.sample(ring.denoise, x, karras_sigmas(6, 0.002, 80.0), sampler=name, return_nfe=True,
                            generator=torch.Generator().manual_seed(1), **opts)
    assert nfe == expected(6)


@pytest.mark.parametrize("name", ALL)
def test_callback_sees_every_step(ring, name):
    """``callback(i, x, denoised, sigma)``: once per step (per level for Langevin; once for rk45)."""
    seen = []
    sig = karras_sigmas(4, 0.002, 80.0)
    out = unnoise.sample(ring.denoise, torch.randn(6, 2) * 80, sig, sampler=name, generator=torch.Generator(),
                         callback=lambda i, x, den, s: seen.append((i, x.shape, den.shape, float(s))))
    expected = {"rk45": 1}.get(name, 4)
    assert len(seen) == expected and all(shape == (6, 2) and dshape == (6, 2) for _, shape, dshape, _ in seen)
    assert out.shape == (6, 2) and torch.all(torch.isfinite(out))


# ----------------------------------------------------------------------------- automatic grids
def test_optimize_sigmas_beats_the_karras_grid_on_fresh_points(smooth8):
    steps = 5
    grid = optimize_sigmas(smooth8.denoise, (8,), steps, sampler="dpmpp_2m", sigma_min=0.01, sigma_max=10.0,
                           pilot=32, max_evals=25, reference_tol=1e-4, generator=torch.Generator().manual_seed(0))
    assert grid.shape == (steps + 1,) and grid[-1] == 0 and torch.all(grid[1:] < grid[:-1])
    assert math.isclose(float(grid[0]), 10.0, rel_tol=1e-5) and math.isclose(float(grid[-2]), 0.01, rel_tol=1e-5)
    # held-out starts (not the pilot batch): error against the exact ODE solution
    x = torch.randn(128, 8, generator=torch.Generator().manual_seed(99)) * 10
    ref = unnoise.sample(smooth8.denoise, x, torch.tensor([10.0, 0.01, 0.0]), sampler="rk45", rtol=1e-5, atol=1e-5)

    def err(sig):
        return float((unnoise.sample(smooth8.denoise, x, sig, sampler="dpmpp_2m") - ref).pow(2).mean().sqrt())

    assert err(grid) < 0.8 * err(karras_sigmas(steps, 0.01, 10.0))


def test_auto_sigmas_through_sample(smooth8):
    """``sample(..., sigmas=AutoSigmas(...))`` optimises once, caches, and samples on that grid."""
    kw = dict(pilot=16, max_evals=6, reference_tol=1e-3)
    grid = optimize_sigmas(smooth8.denoise, (8,), 3, "heun", 0.01, 10.0, generator=torch.Generator().manual_seed(0), **kw)
    auto = AutoSigmas(3, 0.01, 10.0, seed=0, **kw)
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(1)) * 10
    out = unnoise.sample(smooth8.denoise, x, auto, sampler="heun")
    assert torch.equal(auto.last, grid)
    assert torch.equal(out, unnoise.sample(smooth8.denoise, x, grid, sampler="heun"))
    cached = auto.last
    unnoise.sample(smooth8.denoise, x, auto, sampler="heun")
    assert auto.last is cached


def test_optimize_sigmas_rejects_stochastic_samplers(ring):
    with pytest.raises(ValueError, match="deterministic"):
        optimize_sigmas(ring.denoise, (2,), 4, sampler="ddpm", pilot=8, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- bad options
BAD = [
    ("ddim", {"eta": -0.5}, "eta"),
    ("ddim", {"eta": "0.5"}, "eta"),
    ("gradient_estimation", {"mu": "half"}, "mu"),
    ("edm", {"S_churn": -1.0}, "S_churn"),
    ("edm", {"S_noise": -1.0}, "S_noise"),
    ("gradient_estimation", {"gamma": 0.0}, "gamma"),
    ("gradient_estimation", {"gamma": -2.0}, "gamma"),
    ("gradient_estimation", {"mu": 1.0}, "mu"),
    ("langevin", {"n_steps_each": 0}, "n_steps_each"),
    ("langevin", {"eps_step": -1.0}, "eps_step"),
    ("pc", {"snr": 0.0}, "snr"),
    ("pc", {"predictor": "leapfrog"}, "predictor"),
    ("pc", {"n_corrector": -1}, "n_corrector"),
    ("rk45", {"rtol": 0.0}, "rtol"),
    ("unipc", {"order": 4}, "order"),
    ("unipc", {"variant": "bh3"}, "variant"),
    ("deis", {"order": 0}, "order"),
    ("dpmpp_3m", {"d2_weight": "exact"}, "d2_weight"),
    ("dpmpp_2m", {"eta": 0.5}, "no option"),
    ("heun", {"S_churn": 1.0}, "no option"),
]


@pytest.mark.parametrize("name,opts,match", BAD, ids=[f"{b[0]}-{next(iter(b[1]))}" for b in BAD])
def test_bad_options_raise(ring, name, opts, match):
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match=match):
        unnoise.sample(ring.denoise, x, karras_sigmas(3, 0.002, 80.0), sampler=name, **opts)


def test_bad_grids_and_budgets_raise(ring):
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="decreasing"):
        unnoise.sample(ring.denoise, x, torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="at least 2"):
        unnoise.sample(ring.denoise, x, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="unknown sampler"):
        unnoise.sample(ring.denoise, x, torch.tensor([1.0, 0.0]), sampler="dpmpp_9m")
    with pytest.raises(ValueError, match="steps"):
        optimize_sigmas(ring.denoise, (2,), 0)
    with pytest.raises(ValueError, match="steps"):
        AutoSigmas(0, 0.01, 10.0)
    with pytest.raises(ValueError, match="sigma_min"):
        optimize_sigmas(ring.denoise, (2,), 4, sigma_min=5.0, sigma_max=1.0)
