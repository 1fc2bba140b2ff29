"""Functions: Gaussian-process noise, its exact denoiser on any grid, the samplers under it, and the FNO."""
from __future__ import annotations

import math
import re

import pytest
import torch

import unnoise
from unnoise import analytic, gp
from unnoise.nets import FNO
from unnoise.processes import Gaussian, GaussianProcessNoise

DATA, NOISE = "matern52:0.2", "rbf:0.1"


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_kernels_are_exact_on_any_grid_and_their_operator_trace_converges():
    for spec in ("rbf:0.1", "matern52:0.1", "spectral:2"):
        k = gp.parse_kernel(spec)
        for n in (16, 64, 256):
            r = k.root(n)
            assert torch.allclose(r @ r, k.matrix(gp.grid(n)), atol=1e-12)  # the draw's covariance is K exactly
        # h tr(K) = int k(x, x) dx = 1 on every grid, 1-D and 2-D ...
        assert [round(k.operator_trace(s), 12) for s in ((8,), (64,), (512,), (8, 8), (32, 32))] == [1.0] * 5
        # ... and the operator's eigenvalues converge as the grid refines
        eig = [torch.linalg.eigvalsh(k.matrix(gp.grid(n)) / n).flip(0)[:4] for n in (32, 128, 512)]
        assert (eig[2] - eig[1]).abs().max() < (eig[1] - eig[0]).abs().max() + 1e-12
        assert (eig[2] - eig[1]).abs().max() < 1e-3
    # irregular points: the same exact square root of the full matrix
    pts = torch.rand(40, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = gp.parse_kernel("matern52:0.2").root_at(pts)
    assert torch.allclose(r @ r, gp.parse_kernel("matern52:0.2").matrix(pts), atol=1e-12)
    # white noise: the identity operator, discretised as the cell averages' covariance I / h, has trace n
    assert [n * (1.0 / n) * n for n in (8, 64, 512)] == [8.0, 64.0, 512.0]
    assert torch.linalg.eigvalsh(torch.eye(64)).sum() == 64  # the unweighted trace grows with the grid too


def test_kernel_specs_fail_in_one_line():
    for bad in ("rbf", "rbf:x", "gauss:0.1", "rbf:-1", "spectral:0.4", "rbf:nan"):
        with pytest.raises(ValueError):
            gp.parse_kernel(bad)
    assert gp.parse_kernel("RBF:0.10").spec == "rbf:0.1"


def test_process_colours_noise_consistently_across_resolutions():
    proc = unnoise.schedules.get("ddpm", noise_kernel=NOISE).forward
    assert isinstance(proc, GaussianProcessNoise) and proc.family == "vp"
    assert unnoise.schedules.get("ddpm", noise_kernel=NOISE).config()["noise_kernel"] == "rbf:0.1"
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 1, 8, 8, generator=g)  # 2-D: the product kernel's draw R_h Z R_w
    cov = torch.cov(proc.colour(z).reshape(len(z), -1).T.double())
    assert _rel(cov, gp.parse_kernel(NOISE).matrix(gp.grid_points((8, 8)))) < 0.05
    # the exact covariances on a grid and on a 4x finer one agree on the shared points
    fine, coarse = gp.parse_kernel(NOISE).matrix(gp.grid(64)), gp.parse_kernel(NOISE).matrix(gp.grid(16))
    assert torch.allclose(fine[::4, ::4], coarse, atol=1e-14)
    with pytest.raises(ValueError):
        proc.colour(torch.zeros(2, 8))


def test_gp_marginal_and_exact_denoiser_closed_forms():
    m = lambda p: torch.sin(2 * math.pi * p[:, 0])  # noqa: E731
    gpd = analytic.GaussianProcessData(DATA, NOISE, shape=(12,), mean=m)
    gamma = 0.3
    mean, cov = gpd.marginal(gamma)
    assert torch.allclose(mean, math.sqrt(gamma) * gpd.mean)
    assert torch.allclose(cov, gamma * gpd.data_cov + (1 - gamma) * gpd.noise_cov)
    # the VP variable sqrt(gamma) x0 + sqrt(1 - gamma) eps is s (x0 + sigma eps) with s^2 = gamma = 1 / (1 + sigma^2)
    sigma = math.sqrt(1 / gamma - 1)
    assert torch.allclose(gamma * gpd.covariance(sigma), cov, atol=1e-12)
    # the denoiser is the Gaussian conditional mean, checked against the joint covariance of (x0, x)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 1, 12, generator=g, dtype=torch.float64)
    joint_gain = gpd.data_cov @ torch.linalg.inv(gpd.data_cov + sigma**2 * gpd.noise_cov)
    want = gpd.mean + (x.reshape(5, 12) - gpd.mean) @ joint_gain.T
    assert torch.allclose(gpd.denoise(x, sigma).reshape(5, 12), want, atol=1e-8)
    assert torch.equal(gpd.denoise(x, 0.0), x)
    # Monte Carlo: E[x0 | x] is the least-squares predictor: its residual is uncorrelated with x
    x0 = gpd.sample(20000, g).double()
    xs = x0 + sigma * gpd.noise(20000, g).double()
    res = (x0 - gpd.denoise(xs, sigma)).reshape(20000, -1)
    assert (res.T @ (xs.reshape(20000, -1) - gpd.mean) / 20000).abs().max() < 0.05


def _exact_sample_covariance(n, sampler="heun", steps=40):
    """The covariance of the samples of the exact denoiser, pushed exactly through the (linear) sampler."""
    sched = unnoise.schedules.get("karras", noise_kernel=NOISE)
    gpd = analytic.GaussianProcessData(DATA, NOISE, shape=(n,))
    sig = sched.sampling_sigmas(steps).double()
    z = torch.cat([torch.eye(n), torch.zeros(1, n)]).double().reshape(n + 1, 1, n)
    out = unnoise.sample(gpd.denoise, sched.forward.prior(z, float(sig[0])), sig, sampler=sampler,
                         process=sched.forward).reshape(n + 1, n)
    a = out[:n] - out[n:]  # the sampler's linear map applied to the prior's square root
    return a.T @ a, gpd.data_cov


def test_exact_denoiser_samples_have_the_data_covariance_on_the_training_and_a_4x_finer_grid():
    c16, d16 = _exact_sample_covariance(16)
    c64, d64 = _exact_sample_covariance(64)
    assert _rel(c16, d16) < 0.02 and _rel(c64, d64) < 0.02
    assert _rel(c64[::4, ::4], c16) < 1e-3  # the same law on the shared points


def test_stochastic_samplers_inject_the_process_noise():
    sched = unnoise.schedules.get("karras", noise_kernel=NOISE)
    gpd = analytic.GaussianProcessData(DATA, NOISE, shape=(16,))
    errors = {}
    for name, proc in (("gp", sched.forward), ("white", None)):
        g = torch.Generator().manual_seed(0)
        sig = sched.sampling_sigmas(60)
        x = sched.forward.prior(torch.randn(4000, 1, 16, generator=g), float(sig[0]))
        out = unnoise.sample(gpd.denoise, x, sig, sampler="euler_maruyama", process=proc, generator=g)
        errors[name] = _rel(torch.cov(out.reshape(4000, 16).T.double()), gpd.data_cov)
    assert errors["gp"] < 0.15 < 1.0 < errors["white"]  # white fresh noise adds rough variance the prior lacks


def test_white_noise_processes_draw_exactly_what_they_drew_before():
    x = torch.zeros(3, 5)
    a = unnoise.samplers.noise_like(x, torch.Generator().manual_seed(3))
    with unnoise.samplers.core.process_noise(Gaussian("vp")):
        b = unnoise.samplers.noise_like(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_fno_agrees_across_grids_on_shared_points():
    torch.manual_seed(0)
    net = FNO((1, 64), width=16, modes=8, depth=3).double()
    c = torch.zeros(1, dtype=torch.float64)

    def on(fn, n):
        return fn(torch.arange(n, dtype=torch.float64) / n).reshape(1, 1, n)

    smooth = lambda x: torch.sin(2 * math.pi * x) + 0.5 * torch.cos(6 * math.pi * x)  # noqa: E731
    rough = lambda x: torch.sin(2 * math.pi * x).abs()  # noqa: E731  (a kink: Fourier coefficients ~ 1/k^2)
    with torch.no_grad():
        ref_s, ref_r = net(on(smooth, 1024), c), net(on(rough, 1024), c)
        for n in (32, 64, 256):
            assert _max_rel(net(on(smooth, n), c), ref_s[..., ::1024 // n]) < 1e-10
        err = [_max_rel(net(on(rough, n), c), ref_r[..., ::1024 // n]) for n in (32, 64, 256)]
        assert err[0] > err[1] > err[2] and err[2] < 1e-3  # aliasing of the kink: shrinks as the grid refines
        net2 = FNO((1, 16, 16), width=8, modes=4, depth=2).double()
        ax = lambda n: 2 * math.pi * torch.arange(n, dtype=torch.float64) / n  # noqa: E731
        f2 = lambda n: (torch.sin(ax(n))[:, None] * torch.cos(ax(n))[None]).reshape(1, 1, n, n)  # noqa: E731
        ref2 = net2(f2(64), c)
        assert _max_rel(net2(f2(16), c), ref2[..., ::4, ::4]) < 1e-10
        with pytest.raises(ValueError, match="below twice"):
            net(on(smooth, 12), c)


def _max_rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_function_runs_sample_at_any_resolution_and_bad_input_is_one_line(tmp_path, capsys):
    from unnoise.cli import main
    g = torch.Generator().manual_seed(0)
    curves = analytic.GaussianProcessData(DATA, shape=(16,)).sample(32, g)[:, 0].numpy() * 2 + 1
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "c.npy", curves)
    run = str(tmp_path / "run")
    common = ["--steps", "2", "--batch-size", "8", "--checkpoint-every", "0", "--device", "cpu"]
    assert main(["train", "--data", str(tmp_path / "c.npy"), "--function-space", "--kernel", "matern52:0.1",
                 "--width", "8", "--depth", "1", "--modes", "4", "--out", run, *common]) == 0
    pipe = unnoise.load(run)
    assert pipe.schedule.forward.kernel.spec == "matern52:0.1" and pipe.shape == (16,)
    fine = pipe.at_resolution(64)
    assert fine.shape == (64,) and fine.model_shape == (1, 64) and pipe.shape == (16,)
    z = torch.randn(3, 1, 64, generator=g)  # the start is the process's prior: the GP noise on the finer grid
    sigmas = pipe.schedule.sampling_sigmas(2)
    want = unnoise.sample(pipe.denoiser, pipe.schedule.forward.prior(z, float(sigmas[0])), sigmas, sampler="ddim")
    got = fine.sample(3, sampler="ddim", steps=2, noise=z)
    stats = pipe.config["data"]["normalization"]  # one mean and one std for every point
    assert stats["mean"] == [pytest.approx(float(curves.mean()), rel=1e-5)] and len(stats["std"]) == 1
    assert torch.allclose(got, want[:, 0] * stats["std"][0] + stats["mean"][0], atol=1e-4)
    assert main(["sample", "--checkpoint", run, "--resolution", "48", "--n", "2", "--steps", "2",
                 "--out", str(tmp_path / "s.npy"), "--plot", str(tmp_path / "s.png"), "--device", "cpu"]) == 0
    assert np.load(tmp_path / "s.npy").shape == (2, 48) and (tmp_path / "s.png").exists()
    pts = torch.rand(20, generator=g, dtype=torch.float64)  # sampling at given irregular points
    np.save(tmp_path / "pts.npy", pts.numpy())
    at = pipe.at_points(pts)
    z = torch.randn(3, 1, 20, generator=g)
    proc = pipe.schedule.forward.at_points(pts)
    want = unnoise.sample(pipe.denoiser, proc.prior(z, float(sigmas[0])), sigmas, sampler="ddim",
                          cond={"points": pts.reshape(1, 20, 1).expand(3, 20, 1)})
    assert torch.equal(proc.colour(z), gp.Kernel("matern52", 0.1).colour_at(z, pts))  # the GP at the points
    got = at.sample(3, sampler="ddim", steps=2, noise=z)
    assert got.shape == (3, 20) and torch.allclose(got, want[:, 0] * stats["std"][0] + stats["mean"][0], atol=1e-4)
    assert main(["sample", "--checkpoint", run, "--points", str(tmp_path / "pts.npy"), "--n", "2", "--steps", "2",
                 "--out", str(tmp_path / "p.npy"), "--plot", str(tmp_path / "p.png"), "--device", "cpu"]) == 0
    assert np.load(tmp_path / "p.npy").shape == (2, 20) and (tmp_path / "p.png").exists()
    for name, value in (("out.npy", pts.numpy() + 1), ("nan.npy", np.where(pts.numpy() > 0.5, np.nan, 0.2)),
                        ("two.npy", np.zeros((20, 2))), ("few.npy", pts.numpy()[:5])):
        np.save(tmp_path / name, value)
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros(3), np.zeros(4)
    np.save(tmp_path / "ragged.npy", ragged, allow_pickle=True)
    nan = curves.copy()
    nan[3, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    capsys.readouterr()
    for argv, words in (
            (["train", "--data", str(tmp_path / "ragged.npy"), "--function-space", "--out", str(tmp_path / "r")],
             "ragged"),
            (["train", "--data", str(tmp_path / "nan.npy"), "--function-space", "--out", str(tmp_path / "r")],
             "NaN"),
            (["train", "--data", str(tmp_path / "c.npy"), "--function-space", "--kernel", "gauss:1",
              "--out", str(tmp_path / "r")], "unknown kernel"),
            (["sample", "--checkpoint", run, "--resolution", "6", "--out", str(tmp_path / "x.npy")], "below twice"),
            (["sample", "--checkpoint", run, "--resolution", "a", "--out", str(tmp_path / "x.npy")], "resolution"),
            (["sample", "--checkpoint", run, "--points", str(tmp_path / "out.npy")], "[0, 1)"),
            (["sample", "--checkpoint", run, "--points", str(tmp_path / "nan.npy")], "NaN"),
            (["sample", "--checkpoint", run, "--points", str(tmp_path / "two.npy")], "(P, 1)"),
            (["sample", "--checkpoint", run, "--points", str(tmp_path / "few.npy")], "fewer than the 8"),
            (["sample", "--checkpoint", run, "--points", str(tmp_path / "pts.npy"), "--resolution", "32"],
             "not both")):
        assert main([*argv, "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err


def test_fno_at_points_is_the_fft_route_on_the_regular_grid():
    torch.manual_seed(0)
    for shape, grid in (((1, 32), (32,)), ((1, 16, 20), (16, 20))):
        net = FNO(shape, width=8, modes=6, depth=2)
        x, c = torch.randn(3, *shape), torch.randn(3)
        with torch.no_grad():
            on_grid = net(x, c).reshape(3, 1, -1)
            at_points = net(x.reshape(3, 1, -1), c, {"points": gp.grid_points(grid)[None].expand(3, -1, -1)})
        assert _max_rel(at_points, on_grid) < 1e-6  # float32: the same sums, in another order
    w = gp.quadrature_weights(gp.grid_points((10,)))
    assert torch.allclose(w, torch.full((10,), 0.1, dtype=torch.float64), atol=1e-15)
    w = gp.quadrature_weights(torch.tensor([[0.1], [0.9], [0.3]], dtype=torch.float64))
    assert torch.allclose(w, torch.tensor([0.2, 0.4, 0.4], dtype=torch.float64))  # cells on the circle


def test_fno_at_random_points_converges_to_the_fine_grid_output():
    torch.manual_seed(0)
    net = FNO((1, 64), width=16, modes=8, depth=3).double()
    c = torch.zeros(1, dtype=torch.float64)
    f = lambda x: torch.sin(2 * math.pi * x) + 0.5 * torch.cos(6 * math.pi * x)  # noqa: E731
    n = 4096
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ref = net(f(torch.arange(n, dtype=torch.float64) / n).reshape(1, 1, n), c)[0, 0]
        errors = []
        for p in (32, 128, 512):
            pts = torch.rand(p, generator=g, dtype=torch.float64)
            out = net(f(pts).reshape(1, 1, p), c, {"points": pts.reshape(1, p, 1)})[0, 0]
            i = (pts * n).floor().long()  # the fine-grid output linearly interpolated at the points
            t = pts * n - i
            want = (1 - t) * ref[i] + t * ref[(i + 1) % n]
            errors.append(float((out - want).abs().max() / ref.abs().max()))
        # 1-D cell weights: the coefficients' quadrature error falls fast (observed ~5e-2, ~5e-3, ~1e-4)
        assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3
        net2 = FNO((1, 16, 16), width=8, modes=4, depth=2).double()
        m = 96
        ref2 = net2((torch.sin(2 * math.pi * gp.grid(m))[:, None] * torch.cos(2 * math.pi * gp.grid(m))[None])
                    .reshape(1, 1, m, m), c).reshape(-1)
        errors = []
        for p in (64, 4096):  # random points of the fine grid: the reference is exact there
            idx = torch.randperm(m * m, generator=g)[:p]
            pts = gp.grid_points((m, m))[idx]
            f2 = torch.sin(2 * math.pi * pts[:, 0]) * torch.cos(2 * math.pi * pts[:, 1])
            out = net2(f2.reshape(1, 1, p), c, {"points": pts[None]})[0, 0]
            errors.append(float((out - ref2[idx]).abs().max() / ref2.abs().max()))
        assert errors[1] < errors[0] / 2 and errors[1] < 0.06  # 2-D weights 1/P: a Monte-Carlo rule, ~P^(-1/2)


def test_exact_denoiser_samples_at_irregular_points_have_the_data_covariance():
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(24, 1, generator=g, dtype=torch.float64)
    sched = unnoise.schedules.get("karras", noise_kernel=NOISE)
    proc = sched.forward.at_points(pts)
    gpd = analytic.GaussianProcessData(DATA, NOISE, points=pts)
    n, sig = 24, sched.sampling_sigmas(40).double()
    z = torch.cat([torch.eye(n), torch.zeros(1, n)]).double().reshape(n + 1, 1, n)
    out = unnoise.sample(gpd.denoise, proc.prior(z, float(sig[0])), sig, sampler="heun",
                         process=proc).reshape(n + 1, n)
    a = out[:n] - out[n:]  # the linear sampler applied to the prior's square root at the points
    assert _rel(a.T @ a, gpd.data_cov) < 0.02
    pipe = unnoise.Pipeline(lambda x, s, cond=None: gpd.denoise(x, s), sched, "functions", (16,), model_shape=(1, 16))
    at = pipe.at_points(pts)
    assert at.shape == (24,) and at.model_shape == (1, 24) and at.at_resolution(32).points is None
    x = at.sample(4000, sampler="euler_maruyama", steps=60, generator=torch.Generator().manual_seed(0))
    assert _rel(torch.cov(x.reshape(4000, n).T.double()), gpd.data_cov) < 0.15  # injected noise: the GP at the points
    for bad, words in ((pts + 1, "[0, 1)"), (pts * float("nan"), "NaN"), (torch.rand(5, 2), "(P, 1)")):
        with pytest.raises(ValueError, match=re.escape(words)):
            pipe.at_points(bad)


def test_function_runs_train_on_coordinates_given_per_example(tmp_path, capsys):
    from unnoise.cli import main
    np = pytest.importorskip("numpy")
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(24, 16, generator=g, dtype=torch.float64)  # each example its own 16 points
    kernel = gp.Kernel("matern52", 0.2)
    values = kernel.colour_at(torch.randn(24, 1, 16, generator=g, dtype=torch.float64), pts[..., None])[:, 0]
    np.savez(tmp_path / "f.npz", values=values.numpy(), points=pts.numpy())
    proc = GaussianProcessNoise("vp", "rbf:0.1")
    z = torch.randn(3, 1, 16, generator=g)
    per_example = proc.colour(z, pts[:3, :, None])  # the training noise: the GP at each example's own points
    for i in range(3):
        assert torch.allclose(per_example[i], proc.kernel.colour_at(z[i:i + 1], pts[i])[0], atol=1e-6)
    run = str(tmp_path / "run")
    assert main(["train", "--data", str(tmp_path / "f.npz"), "--function-space", "--kernel", "rbf:0.1", "--width", "8",
                 "--depth", "1", "--modes", "4", "--out", run, "--steps", "2", "--batch-size", "8",
                 "--checkpoint-every", "0", "--device", "cpu"]) == 0
    pipe = unnoise.load(run)
    assert pipe.shape == (16,) and pipe.sample(2, steps=2).shape == (2, 16)  # by default: the grid of P points
    assert pipe.at_points(pts[0]).sample(2, steps=2).shape == (2, 16)
    bad = {"twod": dict(values=values.numpy(), points=np.zeros((24, 16, 2))),
           "outside": dict(values=values.numpy(), points=pts.numpy() + 1),
           "shape": dict(values=values.numpy(), points=pts.numpy()[:, :8]),
           "extra": dict(values=values.numpy(), points=pts.numpy(), labels=np.zeros(24))}
    for name, arrays in bad.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros(3), np.zeros(4)
    np.savez(tmp_path / "ragged.npz", values=ragged, points=ragged)
    capsys.readouterr()
    for name, words in (("twod", "2-D points"), ("outside", "[0, 1)"), ("shape", "same N and P"),
                        ("extra", "exactly two arrays"), ("ragged", "same count")):
        assert main(["train", "--data", str(tmp_path / f"{name}.npz"), "--function-space", "--out",
                     str(tmp_path / "r"), "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
