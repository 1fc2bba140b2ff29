"""Score distillation (SDS, VSD) against closed forms, the voxel renderer, and ``unnoise distill3d``."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from unnoise import analytic, distill, multiview
from unnoise import render as rendering
from unnoise.cli import main
from unnoise.data import views

MU, S = torch.tensor([[1.0, -2.0]]), 0.5


def gaussian_prior(means=MU, stds=(S,)):
    gm = analytic.GaussianMixture(means, torch.tensor(stds))
    return gm, lambda x, sigma, cond=None: gm.denoise(x.double(), torch.as_tensor(sigma).double()).float()


def identity(params, camera):
    return params


def test_expected_sds_gradient_is_the_closed_form_in_the_sigma_frame():
    """E_eps[(x - D(x + sigma eps)) / sigma] = sigma (x - mu) / (s^2 + sigma^2) for N(mu, s^2 I), which is
    DreamFusion's VP form alpha sigma_t (x - mu) / (alpha^2 s^2 + sigma_t^2) with alpha = 1 / sqrt(1 + sigma^2),
    sigma_t = alpha sigma.  D is linear, so antithetic pairs (eps, -eps) give the expectation exactly."""
    _, den = gaussian_prior()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g) * 2
    sigma = torch.exp(torch.empty(64).uniform_(-3, 2, generator=g))
    eps = torch.randn(64, 2, generator=g)
    plus, _ = distill.sds_gradient(den, x, sigma, eps, weighting="uniform")
    minus, _ = distill.sds_gradient(den, x, sigma, -eps, weighting="uniform")
    s = sigma[:, None]
    closed = s * (x - MU) / (S**2 + s**2)
    alpha = 1 / torch.sqrt(1 + s**2)
    vp = alpha * (alpha * s) * (x - MU) / (alpha**2 * S**2 + (alpha * s) ** 2)
    torch.testing.assert_close((plus + minus) / 2, closed, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(closed, vp, atol=1e-5, rtol=1e-4)
    # one draw is that mean plus noise s^2 eps / (s^2 + sigma^2) (minus sign: x - D)
    torch.testing.assert_close(plus - closed, -S**2 * eps / (S**2 + s**2), atol=1e-5, rtol=1e-4)


def test_weightings_are_functions_of_alpha_bar():
    sigma = torch.tensor([0.1, 1.0, 10.0])
    ab = 1 / (1 + sigma**2)
    torch.testing.assert_close(distill.weight(sigma, "dreamfusion"), 1 - ab)
    torch.testing.assert_close(distill.weight(sigma, "uniform"), torch.ones(3))
    torch.testing.assert_close(distill.weight(sigma, "fantasia3d"), ab.sqrt() * (1 - ab))
    lo, hi = distill.sigma_bounds(99, 100, (0.05, 5.0), anneal_to=0.5)
    assert lo == 0.05 and abs(hi - 0.5) < 1e-9
    assert abs(distill.sigma_bounds(0, 100, (0.05, 5.0), anneal_to=0.5)[1] - 5.0) < 1e-9


def run_points(den, method, steps=400, lr=0.2, sigma_range=(0.05, 5.0)):
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(0)) * 2
    return distill.optimize(den, x0, identity, steps, method, lr=lr, lr_end=lr / 100, optimizer="sgd",
                            sigma_range=sigma_range, weighting="uniform", generator=torch.Generator().manual_seed(1))


def test_vsd_with_the_exact_gaussian_particle_model_recovers_the_target_where_sds_collapses():
    torch.set_num_threads(1)
    _, den = gaussian_prior()
    sds = run_points(den, "sds")
    vsd = run_points(den, "vsd")
    # both find the mean
    torch.testing.assert_close(sds.mean(0), MU[0], atol=0.05, rtol=0)
    torch.testing.assert_close(vsd.mean(0), MU[0], atol=0.02, rtol=0)
    # VSD's fixed point is the prior itself: standard deviation s in every coordinate
    torch.testing.assert_close(vsd.std(0), torch.full((2,), S), atol=0.03, rtol=0)
    # SDS is mode seeking: the spread collapses (noise floor of the last steps only)
    assert float(sds.std(0).max()) < 0.3 * S


def test_sds_on_a_mixture_sends_every_particle_to_a_mode():
    torch.set_num_threads(1)
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    _, den = gaussian_prior(means, (0.3, 0.3))
    out = run_points(den, "sds", sigma_range=(0.02, 2.0))
    dist = torch.cdist(out, means)
    nearest = dist.min(1).values
    assert float(nearest.max()) < 0.3  # the component std is 0.3: each particle sits at a mode, not in its spread
    assert float(nearest.mean()) < 0.12
    counts = torch.bincount(dist.argmin(1), minlength=2)
    assert int(counts.min()) > 50  # both modes are found (the start covers both)


def test_vsd_with_the_empirical_particle_model_and_one_particle_is_sds_exactly():
    """With one particle the empirical particle model's denoiser is the particle's own render, so VSD's gradient
    (D_phi - D) / sigma is SDS's (x - D) / sigma to the bit, draw for draw; the same for several cameras."""
    torch.set_num_threads(1)
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    _, den = gaussian_prior(means, (0.3, 0.3))
    x0 = torch.tensor([[0.7, -0.4]])
    runs = {m: distill.optimize(den, x0, identity, 50, m, particle_model="empirical", lr=0.05,
                                generator=torch.Generator().manual_seed(3)) for m in ("sds", "vsd")}
    assert torch.equal(runs["sds"], runs["vsd"]) and not torch.equal(runs["sds"], x0)

    def three_views(p, camera):  # one particle seen three ways
        return torch.cat([p, 2 * p, p.flip(1)])
    runs = {m: distill.optimize(den, x0, three_views, 20, m, particle_model="empirical", particles=1, lr=0.05,
                                generator=torch.Generator().manual_seed(4)) for m in ("sds", "vsd")}
    assert torch.equal(runs["sds"], runs["vsd"])


def test_empirical_particle_model_is_the_exact_denoiser_of_the_renders_at_each_camera():
    g = torch.Generator().manual_seed(0)
    n, views_, d = 3, 2, 4
    x = torch.randn(n * views_, d, generator=g)  # particle-major: row i * views_ + v
    y = x + torch.randn(n * views_, d, generator=g)
    sigma = torch.rand(n * views_, generator=g) + 0.5
    out = distill.EmpiricalParticles(x, n)(y, sigma)
    for i in range(n):
        for v in range(views_):
            r = x.reshape(n, views_, d)[:, v].double()  # the n renders at camera v
            q = y[i * views_ + v].double()
            w = torch.softmax(-(q - r).pow(2).sum(1) / (2 * float(sigma[i * views_ + v]) ** 2), 0)
            torch.testing.assert_close(out[i * views_ + v].double(), w @ r, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="particles"):
        distill.EmpiricalParticles(x, 4)


def test_vsd_with_the_empirical_particle_model_spreads_particles_over_modes_where_sds_takes_one():
    """Six particles start at one point (plus 1e-3 jitter) nearest the mode (2, 0) of a three-mode mixture.  SDS
    sends all six to that mode; VSD with the exact denoiser of the particles as its particle model sends them to
    two or three modes (seeds 0-3; every particle ends at a mode, within two component stds of one)."""
    torch.set_num_threads(1)
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    _, den = gaussian_prior(means, (0.3, 0.3, 0.3))
    for seed in range(4):
        x0 = torch.tensor([1.0, 0.0]) + 1e-3 * torch.randn(6, 2, generator=torch.Generator().manual_seed(seed))
        out = {m: distill.optimize(den, x0, identity, 800, m, particle_model="empirical", lr=0.1, optimizer="sgd",
                                   sigma_range=(0.02, 5.0), anneal_to=0.3, weighting="dreamfusion",
                                   generator=torch.Generator().manual_seed(seed + 1)) for m in ("sds", "vsd")}
        dist = {m: torch.cdist(o, means) for m, o in out.items()}
        reached = {m: set(torch.nonzero(d.min(0).values < 0.6).flatten().tolist()) for m, d in dist.items()}
        assert reached["sds"] == {1}, (seed, out["sds"])  # one mode, the nearest
        assert float(dist["sds"].min(1).values.max()) < 0.3, (seed, out["sds"])
        assert len(reached["vsd"]) >= 2, (seed, out["vsd"])
        assert float(dist["vsd"].min(1).values.max()) < 0.6, (seed, out["vsd"])


def test_vsd_with_the_empirical_particle_model_spreads_particles_to_the_prior_s_spread_where_sds_collapses():
    """A unimodal target N(mu, s^2 I): eight particles start at one point (1e-3 jitter).  Both methods find the
    mean; SDS leaves the particles at its mode (spread below s / 3), VSD with the exact denoiser of the eight
    particles pushes them apart until their spread is near s (0.42-0.48 for s = 0.5 at seeds 0 and 1)."""
    torch.set_num_threads(1)
    _, den = gaussian_prior()
    for seed in range(2):
        x0 = 1e-3 * torch.randn(8, 2, generator=torch.Generator().manual_seed(seed))
        out = {m: distill.optimize(den, x0, identity, 800, m, particle_model="empirical", lr=0.1, optimizer="sgd",
                                   sigma_range=(0.02, 5.0), anneal_to=0.3, weighting="dreamfusion",
                                   generator=torch.Generator().manual_seed(seed + 1)) for m in ("sds", "vsd")}
        for o in out.values():
            torch.testing.assert_close(o.mean(0), MU[0], atol=0.1, rtol=0)
        assert float(out["sds"].std(0).max()) < S / 3, (seed, out["sds"])
        assert 0.75 * S < float(out["vsd"].std(0).min()) and float(out["vsd"].std(0).max()) < 1.2 * S, (seed,
                                                                                                      out["vsd"])


def test_bad_inputs_are_one_line():
    _, den = gaussian_prior()
    x0 = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="differentiable"):
        distill.optimize(den, x0, lambda p, c: p.detach(), 2)
    with pytest.raises(ValueError, match="sds or|sds, vsd"):
        distill.optimize(den, x0, identity, 2, method="dds")
    with pytest.raises(ValueError, match="weighting"):
        distill.optimize(den, x0, identity, 2, weighting="snr")
    with pytest.raises(ValueError, match="at least 2"):
        distill.optimize(den, x0[:1], identity, 2, method="vsd")
    with pytest.raises(ValueError, match="sigma_range"):
        distill.optimize(den, x0, identity, 2, sigma_range=(0.0, 1.0))


def test_vsd_net_particle_model_starts_as_the_prior_and_runs():
    """The learned particle model is a residual with a zero output layer: the first VSD step moves nothing."""
    _, den = gaussian_prior()
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    one = distill.optimize(den, x0, identity, 1, "vsd", particle_model="net", lr=0.1, optimizer="sgd")
    torch.testing.assert_close(one, x0)
    out = distill.optimize(den, x0, identity, 20, "vsd", particle_model="net", lr=0.1)
    assert out.shape == x0.shape and torch.isfinite(out).all() and not torch.equal(out, x0)


# ----------------------------------------------------------------------------- renderer
def small_grid(res=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return {"density": torch.randn(res, res, res, generator=g, dtype=dtype) * 2,
            "color": torch.randn(3, res, res, res, generator=g, dtype=dtype)}


def test_renderer_gradient_matches_finite_differences():
    grid = small_grid()
    cam = rendering.cameras([0.3, 2.0], [0.2, -0.1]).double()
    for shading in (False, True):
        def f(d, c):
            return rendering.render({"density": d, "color": c}, cam, size=4, n_samples=12, shading=shading)
        d = grid["density"].clone().requires_grad_(True)
        c = grid["color"].clone().requires_grad_(True)
        assert torch.autograd.gradcheck(f, (d, c), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_opposite_cameras_see_mirrored_silhouettes():
    """A grid symmetric in depth (x for cameras on the x axis) seen from azimuth 0 and pi: mirror images."""
    grid = small_grid(res=9, dtype=torch.float32)
    grid["density"] = grid["density"] + grid["density"].flip(0)
    cam = rendering.cameras([0.0, math.pi], [0.0, 0.0])
    _, alpha = rendering.render(grid, cam, size=16, shading=False, return_alpha=True)
    torch.testing.assert_close(alpha[0], alpha[1].flip(-1), atol=1e-5, rtol=0)
    assert (alpha[0] - alpha[0].flip(-1)).abs().max() > 0.05  # the silhouette itself is not symmetric
    # and a known shape's silhouette has its projected size: a sphere of radius 0.6 at distance 3
    sphere = views.shape_grid("sphere", 48)
    _, a = rendering.render(sphere, rendering.cameras([0.0], [0.0]), size=64, shading=False, return_alpha=True)
    half_angle = math.asin(0.6 / 3.0)
    expected = math.pi * (math.tan(half_angle) / math.tan(rendering.DEFAULT_FOV / 2)) ** 2 / 4  # fraction of image
    assert abs(float((a[0] > 0.5).float().mean()) - expected) < 0.02


def test_camera_condition_reaches_the_unet_through_its_noise_embedding():
    """The view-conditioned prior's camera: Fourier features of azimuth and elevation added to the U-Net's noise
    embedding (``cond["vector"]``).  The older constant input channels are a per-channel offset after a
    convolution, which a per-channel normalisation removes: both cameras give the same (zero) activations."""
    from unnoise import nets
    cam = rendering.cameras([0.0, math.pi / 2, math.pi], [0.0, 0.0, 0.0])
    f = multiview.camera_cond(cam, 16)["vector"]
    assert f.shape == (3, multiview.CAMERA_FEATURES)
    # cos k az, sin k az, cos k el, sin k el for k = 1..4: the first harmonics are camera_features
    torch.testing.assert_close(f[:, [0, 4, 8, 12]], rendering.camera_features(cam))
    torch.testing.assert_close(f[:, :4], torch.stack([torch.cos(cam[:, 0] * k) for k in (1, 2, 3, 4)], 1))
    # a half turn changes the odd harmonics only (a box looks the same from there)
    torch.testing.assert_close(f[0, [1, 3, 5, 7]], f[2, [1, 3, 5, 7]], atol=1e-6, rtol=0)
    assert float((f[0] - f[2]).abs().max()) > 1.9
    torch.manual_seed(0)
    flat = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=0), torch.nn.GroupNorm(8, 8))
    with torch.no_grad():
        const = flat(multiview.camera_cond(cam, 16, "concat")["concat"])
    assert float(const.abs().max()) < 1e-3  # every camera: all zeros
    net = nets.UNet(shape=(3, 8, 8), base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(),
                    vector_dim=multiview.CAMERA_FEATURES)
    for w in net.parameters():  # zero-initialised layers (the output, the embedding projections): make them live
        if not w.any():
            torch.nn.init.normal_(w, std=0.1)
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        a = net(x, torch.zeros(3), {"vector": f})
        b = net(x, torch.zeros(3), {"vector": f.flip(0)})
    assert float((a[0] - b[0]).abs().mean()) > 1e-3 and float((a[1] - b[1]).abs().max()) == 0
    with pytest.raises(ValueError, match="vector condition"):
        net(x, torch.zeros(3), None)
    with pytest.raises(ValueError, match="takes no vector"):
        nets.UNet(shape=(3, 8, 8), base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                  attention_levels=())(x, torch.zeros(3), {"vector": f})
    with pytest.raises(ValueError, match="camera encoding"):
        multiview.camera_cond(cam, 16, "euler")


def test_multiview_set_and_scores():
    images, cams, labels = views.multiview(("sphere", "box"), 3, 16)
    assert images.shape == (6, 3, 16, 16) and cams.shape == (6, 4) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert images.min() >= -1 and images.max() <= 1
    truth = views.shape_grid("box", 24)
    assert multiview.voxel_iou(rendering.occupancy(truth), views.true_occupancy("box", 24)) > 0.9
    assert multiview.silhouette_iou(truth, truth, views.held_out_cameras(3)) == 1.0


def test_multiview_colours_paint_view_i_in_colour_i_mod_k_with_the_same_cameras():
    colours = ((0.15, 0.3, 0.9), (0.9, 0.15, 0.1), (0.95, 0.8, 0.1))
    plain, cams, _ = views.multiview(("box",), 5, 16, generator=torch.Generator().manual_seed(3))
    painted, cams2, _ = views.multiview(("box",), 5, 16, generator=torch.Generator().manual_seed(3), colors=colours)
    torch.testing.assert_close(cams, cams2)  # the random draws do not change
    torch.testing.assert_close(painted[0], plain[0])  # view 0 in colour 0, the box's own blue
    for i in range(5):
        obj = ((painted[i] + 1) / 2 - 1).abs().amax(0) > 0.1  # pixels off the white background
        rgb = ((painted[i] + 1) / 2)[:, obj].mean(1)
        assert int(rgb.argmax()) == [2, 0, 0][i % 3], (i, rgb)  # blue, red, yellow (red and green high)
        assert (float(rgb[1]) > 0.4) == (i % 3 == 2), (i, rgb)  # green is lit in yellow alone


def test_distill_grid_optimises_several_particles_each_from_its_own_cameras(prior):
    import unnoise
    pipe = unnoise.load(prior, device="cpu")
    start = rendering.init_grid(8)
    rendered = []
    grids = multiview.distill_grid(pipe, 3, "sds", resolution=8, views_per_step=1, particles=3, lr=0.1,
                                   generator=torch.Generator().manual_seed(0),
                                   callback=lambda step, p: rendered.append(step))
    assert grids["density"].shape == (3, 8, 8, 8) and grids["color"].shape == (3, 3, 8, 8, 8)
    assert rendered == [1, 2, 3]
    parts = [multiview.particle(grids, k) for k in range(3)]
    for k, part in enumerate(parts):  # every particle moved, and each its own way (its own cameras and noise)
        assert not torch.equal(part["density"], start["density"])
        assert torch.isfinite(part["color"]).all()
        for other in parts[k + 1:]:
            assert float((part["color"] - other["color"]).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="particles"):
        multiview.distill_grid(pipe, 1, particles=0)


def test_distill_grid_with_the_empirical_particle_model_renders_every_particle_from_the_same_cameras(prior,
                                                                                                monkeypatch):
    import unnoise
    pipe = unnoise.load(prior, device="cpu")
    seen = []
    render = rendering.render

    def spy(params, camera, *args, **kwargs):
        seen.append(camera.clone())
        return render(params, camera, *args, **kwargs)
    monkeypatch.setattr(multiview.rendering, "render", spy)
    grids = multiview.distill_grid(pipe, 2, "vsd", resolution=8, views_per_step=2, particles=3, lr=0.1,
                                   particle_model="empirical", generator=torch.Generator().manual_seed(0))
    assert grids["density"].shape == (3, 8, 8, 8) and torch.isfinite(grids["color"]).all()
    assert len(seen) == 6 and all(c.shape == (2, 4) for c in seen)  # 2 steps x 3 particles, 2 cameras each
    for step in (0, 1):
        assert torch.equal(seen[3 * step], seen[3 * step + 1]) and torch.equal(seen[3 * step], seen[3 * step + 2])
    assert not torch.equal(seen[0], seen[3])  # new cameras each step


# ----------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    torch.set_num_threads(1)
    run = str(tmp_path_factory.mktemp("prior") / "views")
    assert main(["distill3d", "--train-prior", "--shapes", "sphere", "--train-steps", "4", "--views-per-shape", "8",
                 "--image-size", "16", "--out", run, "--device", "cpu"]) == 0
    return run


def test_distill3d_writes_grid_turntable_and_mesh(prior, tmp_path):
    out = tmp_path / "shape"
    code = main(["distill3d", "--checkpoint", prior, "--steps", "3", "--resolution", "12", "--views", "1",
                 "--method", "vsd", "--guidance-scale", "2", "--preview-every", "2", "--out", str(out),
                 "--device", "cpu"])  # guidance on the camera: the prior was trained with a null camera
    assert code == 0
    grid = multiview.read_grid(str(out / "grid.npy"))
    assert grid["density"].shape == (12, 12, 12) and grid["color"].shape == (3, 12, 12, 12)
    assert sorted(os.listdir(out / "previews")) == ["step_000002.png", "step_000003.png"]
    with Image.open(out / "turntable.gif") as gif:
        assert gif.n_frames == 24
    text = (out / "shape.ply").read_text().splitlines()
    n_vert = int(text[2].split()[-1])
    assert n_vert > 0 and text[11] == "end_header"
    verts = np.array([[float(v) for v in line.split()[:3]] for line in text[12:12 + n_vert]])
    assert np.abs(verts).max() <= 1.0 + 1e-6  # in the grid's world cube
    assert len(json.loads((out / "history.json").read_text())) == 3


def test_distill3d_writes_one_folder_per_particle(prior, tmp_path):
    out = tmp_path / "shapes"
    code = main(["distill3d", "--checkpoint", prior, "--steps", "2", "--resolution", "10", "--views", "1",
                 "--method", "vsd", "--particles", "3", "--anneal-to", "none",  # auto: the empirical particle model
                 "--preview-every", "2", "--out", str(out), "--device", "cpu"])
    assert code == 0
    grids = [multiview.read_grid(str(out / f"p{k}" / "grid.npy")) for k in (1, 2, 3)]
    assert all(g["density"].shape == (10, 10, 10) for g in grids)
    assert not torch.equal(grids[0]["color"], grids[1]["color"])  # each particle its own noise
    assert not (out / "grid.npy").exists()
    with Image.open(out / "particles.png") as im:  # 3 rows of 8 views
        assert abs(im.size[0] / im.size[1] - 8 / 3) < 0.1
    with Image.open(out / "previews" / "step_000002.png") as im:  # 3 rows of 4 views
        assert abs(im.size[0] / im.size[1] - 4 / 3) < 0.05


def test_distill3d_noise_defaults_follow_the_method():
    """SDS: sigma 0.05-3 annealed to 0.5; VSD: 0.05-10 throughout (its particles repel only where their noisy
    renders overlap); given values win."""
    from unnoise.cli import build_parser
    from unnoise.commands.distill3d import check_args

    def resolved(*argv):
        args = build_parser().parse_args(["distill3d", "--checkpoint", "x", "--out", "o", *argv])
        check_args(args)
        return args.sigma_max, args.anneal_to
    assert resolved() == (3.0, 0.5)
    assert resolved("--method", "vsd") == (10.0, None)
    assert resolved("--method", "vsd", "--sigma-max", "4", "--anneal-to", "1") == (4.0, 1.0)
    assert resolved("--anneal-to", "none") == (3.0, None)


def test_distill3d_bad_input_is_one_line(prior, tmp_path, capsys):
    capsys.readouterr()
    for argv, phrase in ((["--prompt", "a red sphere"], "text-conditioned"),
                         (["--class-label", "1"], "class-conditional"),
                         (["--mesh", "shape.stl"], ".ply or .obj"),
                         (["--particles", "0"], "--particles"),
                         (["--anneal-to", "later"], "--anneal-to")):
        code = main(["distill3d", "--checkpoint", prior, "--steps", "1", "--out", str(tmp_path / "o"), *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and phrase in err, (argv, err)
        assert not (tmp_path / "o" / "grid.npy").exists()
