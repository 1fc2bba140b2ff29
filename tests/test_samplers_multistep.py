"""Linear multistep samplers (``lms``, ``ipndm``) against k-diffusion's reference and their orders, the
default sampler and grids, and the checks on denoiser outputs and grids shared by every sampler."""
import importlib.util
import math
import os
import sys
import types

import pytest
import torch

import unnoise
from unnoise import samplers, schedules
from unnoise.analytic import GaussianMixture
from unnoise.samplers import AutoSigmas, lms_coefficients
from unnoise.schedules import karras_sigmas


def _load_k_sampling():
    """k-diffusion's sampling.py from file, with its heavy imports (torchsde, torchdiffeq, its utils) stubbed."""
    spec = importlib.util.find_spec("k_diffusion")  # locates the package without running its __init__
    if spec is None:
        raise ImportError("k_diffusion")
    path = os.path.join(os.path.dirname(spec.origin), "sampling.py")
    pkg = types.ModuleType("_kd_ref")
    pkg.__path__ = []
    utils = types.ModuleType("_kd_ref.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    stubs = {"_kd_ref": pkg, "_kd_ref.utils": utils}
    for name in ("torchsde", "torchdiffeq"):
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.odeint = stub.BrownianTree = None
            stubs[name] = stub
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location("_kd_ref.sampling", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return mod


@pytest.fixture(scope="module")
def kd():
    try:
        return _load_k_sampling()
    except ImportError:
        pytest.skip("k-diffusion is not installed")


# ----------------------------------------------------------------------------- LMS against k-diffusion
def test_lms_coefficients_match_k_diffusion(kd):
    import numpy as np
    sig = karras_sigmas(7, 0.01, 157.0).double().numpy()
    for i in range(len(sig) - 1):
        for order in range(1, min(i + 1, 4) + 1):
            ours = lms_coefficients(sig[i::-1][:order], sig[i], sig[i + 1])
            ref = [kd.linear_multistep_coeff(order, sig, i, j) for j in range(order)]
            np.testing.assert_allclose(ours, ref, rtol=2e-4, atol=1e-7)  # k-diffusion integrates with quad(epsrel=1e-4)


def test_lms_coefficients_closed_forms():
    """Equal steps give the textbook Adams-Bashforth weights; any weights integrate constants exactly."""
    h = -0.5
    for order, ab in ((1, [1]), (2, [3 / 2, -1 / 2]), (3, [23 / 12, -16 / 12, 5 / 12]),
                      (4, [55 / 24, -59 / 24, 37 / 24, -9 / 24])):
        nodes = [3.0 - k * h for k in range(order)]
        w = lms_coefficients(nodes, 3.0, 3.0 + h)
        assert w == pytest.approx([h * a for a in ab], rel=1e-12)
    w = lms_coefficients([5.0, 9.0, 20.0], 5.0, 1.0)
    assert sum(w) == pytest.approx(-4.0, rel=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_lms_trajectory_matches_k_diffusion(kd, order):
    gm = GaussianMixture.ring()
    sig = schedules.DDPM().sampling_sigmas(8, "trailing").double()
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sig[0]
    ref_steps, our_steps = [], []
    ref = kd.sample_lms(lambda x, s: gm.denoise(x, s), x.clone(), sig, order=order, disable=True,
                        callback=lambda d: ref_steps.append(d["x"].clone()))
    ours = unnoise.sample(gm.denoise, x.clone(), sig, sampler="lms", order=order,
                          callback=lambda i, x, den, s: our_steps.append(x.clone()))
    # k-diffusion's callback sees the start of each step, ours the end
    for a, b in zip(ref_steps[1:], our_steps[:-1]):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-3 * float(b.abs().max()))
    assert torch.allclose(ours, ref, rtol=1e-3, atol=1e-3)


# ----------------------------------------------------------------------------- orders of convergence
@pytest.mark.parametrize("name,order,min_order", [("lms", 2, 1.8), ("lms", 3, 2.6), ("lms", 4, 2.9),
                                                  ("ipndm", 4, 1.8), ("ipndm", 3, 1.8)])
def test_multistep_order_of_convergence(smooth8, ode_reference, name, order, min_order):
    """Error against a tight RK45 solve shrinks like NFE^-order (Karras grid 10 -> 0.01, 16 -> 32 steps)."""
    x, ref = ode_reference
    errs = []
    for steps in (8, 16, 32):
        sig = karras_sigmas(steps, 0.01, 10.0).double()
        out = unnoise.sample(smooth8.denoise, x, sig, sampler=name, order=order)
        errs.append(float(((out - ref) ** 2).mean().sqrt()))
    print(name, order, errs, math.log2(errs[0] / errs[1]), math.log2(errs[1] / errs[2]))
    assert errs[0] > errs[1] > errs[2], errs
    assert math.log2(errs[1] / errs[2]) > min_order, errs


# ----------------------------------------------------------------------------- checks in the shared call path
@pytest.mark.parametrize("name", ["ddim", "heun", "dpmpp_2m", "lms", "ipndm", "unipc", "rk45", "euler_maruyama"])
def test_non_finite_denoiser_output_stops_with_step_and_sigma(name):
    sig = karras_sigmas(6, 0.01, 80.0)

    def bad(x, sigma):  # fine until sigma drops below 5, then NaN
        out = 0.5 * x
        return out * float("nan") if float(sigma[0]) < 5 else out

    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0)) * 80
    with pytest.raises(ValueError, match=r"NaN or inf at call \d+ \(step \d+ of 6, sigma = [0-9.e+-]+\)"):
        unnoise.sample(bad, x, sig, sampler=name, generator=torch.Generator().manual_seed(0))


def test_non_finite_message_names_the_first_bad_step():
    sig = karras_sigmas(6, 0.01, 80.0)
    bad_at = float(sig[3])

    def bad(x, sigma):
        return x / (1 + sigma[:, None] ** 2) + (float("inf") if float(sigma[0]) <= bad_at else 0.0)

    with pytest.raises(ValueError, match=f"step 3 of 6, sigma = {bad_at:.4g}"):
        unnoise.sample(bad, torch.randn(3, 2) * 80, sig, sampler="dpmpp_2m")


@pytest.mark.parametrize("out_shape", [(1, 2), (4,), (4, 1)])
def test_wrong_denoiser_output_shape_raises(out_shape):
    with pytest.raises(ValueError, match="shaped like x"):
        unnoise.sample(lambda x, s: torch.zeros(out_shape), torch.randn(4, 2) * 80, karras_sigmas(3, 0.01, 80.0),
                       sampler="euler")


@pytest.mark.parametrize("lo,hi,rho", [(1.0, 0.5, 7.0), (-0.1, 80.0, 7.0), (0.0, 80.0, 7.0), (0.01, float("inf"), 7.0),
                                       (0.01, 80.0, 0.0), (0.01, 80.0, -2.0), (float("nan"), 1.0, 7.0)])
def test_karras_sigmas_rejects_bad_ranges(lo, hi, rho):
    with pytest.raises(ValueError, match="sigma_min|rho"):
        karras_sigmas(5, lo, hi, rho)


def test_auto_sigmas_rejects_bad_ranges():
    for lo, hi in ((1.0, 0.5), (-0.1, 80.0)):
        with pytest.raises(ValueError, match="sigma_min"):
            AutoSigmas(5, lo, hi)


def test_auto_sigmas_checks_the_start():
    gm = GaussianMixture.ring()
    auto = AutoSigmas(3, 0.01, 80.0, pilot=8, max_evals=4)
    with pytest.raises(ValueError, match="sigma_max = 80"):
        unnoise.sample(gm.denoise, torch.randn(16, 2), auto, sampler="dpmpp_2m")  # forgot * sigma_max
    out = unnoise.sample(gm.denoise, torch.randn(16, 2) * 80, auto, sampler="dpmpp_2m")
    assert out.shape == (16, 2) and torch.all(torch.isfinite(out))


# ----------------------------------------------------------------------------- the measured defaults
def test_default_sampler_and_grid_are_the_documented_ones():
    import inspect
    assert samplers.DEFAULT_SAMPLER == "ipndm" and samplers.sampler_options("ipndm") == {"order": 3}
    assert inspect.signature(unnoise.sample).parameters["sampler"].default == samplers.DEFAULT_SAMPLER
    assert schedules.DEFAULT_VP_GRID == {5: "trailing", 10: (math.inf, 0.1), 20: (math.inf, 0.01)}
    for sched in (schedules.DDPM(), schedules.Cosine(), schedules.ScaledLinear()):
        for steps, entry in ((3, "trailing"), (7, "trailing"), (8, (math.inf, 0.1)), (10, (math.inf, 0.1)),
                             (15, (math.inf, 0.01)), (20, (math.inf, 0.01)), (24, (math.inf, 0.01)), (25, "trailing"),
                             (100, "trailing")):
            sig = sched.sampling_sigmas(steps)
            assert len(sig) == steps + 1 and sig[-1] == 0 and torch.all(sig[1:] < sig[:-1])
            if entry == "trailing":
                assert torch.equal(sig, sched.sampling_sigmas(steps, "trailing"))
            else:
                rho, lo = entry
                assert torch.equal(sig, karras_sigmas(steps, max(lo, sched.sigma_min), sched.sigma_max, rho))
            assert float(sig[0]) == pytest.approx(sched.sigma_max, rel=1e-6)


def test_sample_without_options_is_the_default_sampler():
    gm = GaussianMixture.ring()
    sig = schedules.DDPM().sampling_sigmas(10)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0)) * sig[0]
    assert torch.equal(unnoise.sample(gm.denoise, x, sig), unnoise.sample(gm.denoise, x, sig, sampler="ipndm"))


def test_geometric_grid_is_the_karras_limit():
    geo = karras_sigmas(6, 0.05, 157.0, math.inf).double()
    assert torch.allclose(geo[:-1], torch.logspace(math.log10(157.0), math.log10(0.05), 6, dtype=torch.float64),
                          rtol=1e-6)
    assert torch.allclose(karras_sigmas(6, 0.05, 157.0, 1e6).double(), geo, rtol=1e-4)


def test_tune_grid_record():
    import json
    gm = GaussianMixture.ring()
    rec = unnoise.samplers.tune_grid(gm.denoise, (2,), 4, 0.01, 80.0, pilot=16, max_evals=6)
    assert set(rec) == {"steps", "sampler", "sigmas", "nfe_cost"}
    assert rec["steps"] == 4 and rec["sampler"] == samplers.DEFAULT_SAMPLER and len(rec["sigmas"]) == 5
    assert rec["sigmas"][-1] == 0.0 and rec["sigmas"][0] == pytest.approx(80.0)
    assert rec["nfe_cost"] >= 6 * 4  # at least the search's sampler runs
    assert json.loads(json.dumps(rec)) == rec
