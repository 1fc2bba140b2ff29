"""The angles kind: periodic data trained and sampled under wrapped Gaussian noise on the torus."""
import math

import numpy as np
import pytest
import torch

import unnoise
from unnoise import processes, torus
from unnoise.cli import main

COMMON = ["--batch-size", "256", "--checkpoint-every", "0", "--log-every", "50", "--device", "cpu", "--lr", "2e-3"]


def straddling_mixture():
    """Two von Mises modes in 2-D, both straddling the cut at +-pi in the first angle."""
    return unnoise.analytic.VonMisesMixture(means=[[math.pi - 0.1, 1.0], [-math.pi + 0.3, -1.5]],
                                            concentrations=[[8.0, 4.0], [6.0, 10.0]], weights=[0.5, 0.5])


def test_probability_flow_likelihood_on_the_torus_is_the_exact_log_density():
    """nll through the lifted ODE with the uniform prior of the wrapped process = -log p_{sigma_min}(x)."""
    vm = straddling_mixture()
    x = vm.sample(6, generator=torch.Generator().manual_seed(0)).double()
    got = unnoise.likelihood.nll(vm.denoise, x, sigma_max=6.0, sigma_min=0.05, rtol=1e-7, atol=1e-7,
                                 process=processes.WrappedGaussian())
    want = -vm.log_prob(x, sigma=0.05)
    assert torch.allclose(got, want, atol=2e-3), (got, want)
    # the Gaussian prior would be wrong here: the same integral closed by N(0, sigma_max^2) differs
    wrong = unnoise.likelihood.nll(vm.denoise, x, sigma_max=6.0, sigma_min=0.05, rtol=1e-7, atol=1e-7)
    assert (wrong - want).abs().min() > 0.1


def test_sampling_with_the_exact_score_through_a_wrapped_pipeline_matches_the_circular_moments():
    vm = straddling_mixture()
    pipe = unnoise.Pipeline(vm.denoise, unnoise.schedules.get("wrapped"), "angles", (2,))
    x = pipe.sample(4000, sampler="heun", steps=60, generator=torch.Generator().manual_seed(1))
    assert float(x.min()) >= -math.pi and float(x.max()) < math.pi
    for k in (1, 2):
        got = torch.exp(1j * k * x.double()).mean(0)
        want = vm.circular_moment(k)
        assert (got - want).abs().max() < 0.06, (k, got, want)


@pytest.fixture(scope="module")
def angle_data(tmp_path_factory):
    base = tmp_path_factory.mktemp("angles")
    x = straddling_mixture().sample(4000, generator=torch.Generator().manual_seed(2)).float()
    np.save(base / "angles.npy", x.numpy())
    return base, x


def test_a_periodic_run_beats_the_same_run_that_treats_angles_as_numbers(angle_data, tmp_path):
    base, data = angle_data
    torch.set_num_threads(1)
    periodic, plain = str(tmp_path / "periodic"), str(tmp_path / "plain")
    size = ["--width", "64", "--depth", "2", "--steps", "1500"]
    assert main(["train", "--data", str(base / "angles.npy"), "--periodic", "--out", periodic, *size, *COMMON]) == 0
    assert main(["train", "--data", str(base / "angles.npy"), "--out", plain, *size, *COMMON]) == 0
    pipe = unnoise.load(periodic)
    assert pipe.kind == "angles" and isinstance(pipe.schedule.forward, processes.WrappedGaussian)
    g = torch.Generator().manual_seed(3)
    got = pipe.sample(4000, steps=40, generator=g)
    assert float(got.min()) >= -math.pi and float(got.max()) < math.pi
    euclid = unnoise.load(plain).sample(4000, steps=40, generator=g)
    ref = straddling_mixture().sample(100000, generator=torch.Generator().manual_seed(4))

    def seam_tv(x, bins=36):
        """Total variation between histograms of the angle whose modes straddle the cut (on the circle)."""
        h = torch.histc(torus.wrap(x[:, 0].double()), bins, -math.pi, math.pi) / len(x)
        h_ref = torch.histc(ref[:, 0], bins, -math.pi, math.pi) / len(ref)
        return 0.5 * float((h - h_ref).abs().sum())
    floor = seam_tv(straddling_mixture().sample(4000, generator=torch.Generator().manual_seed(6)))
    # measured: periodic 0.026, Euclidean 0.080, exact samples of the same size 0.024; the Euclidean run also
    # leaves the circle (samples beyond +-pi)
    assert seam_tv(got) < floor + 0.02, (seam_tv(got), floor)
    assert seam_tv(euclid) > 2 * seam_tv(got), (seam_tv(euclid), seam_tv(got))
    assert float(euclid.abs().max()) > math.pi


def test_cli_samples_angles_and_rejects_bad_input_in_one_line(angle_data, tmp_path, capsys):
    base, data = angle_data
    run = str(tmp_path / "run")
    assert main(["train", "--data", str(base / "angles.npy"), "--periodic", "--width", "16", "--depth", "1",
                 "--steps", "3", "--out", run, *COMMON]) == 0
    out = tmp_path / "s.npy"
    assert main(["sample", "--checkpoint", run, "--n", "50", "--steps", "4", "--out", str(out), "--device", "cpu"]) == 0
    x = np.load(out)
    assert x.shape == (50, 2) and x.min() >= -math.pi and x.max() < math.pi
    degrees = tmp_path / "deg.npy"
    np.save(degrees, np.rad2deg(data.numpy()))
    nan = tmp_path / "nan.npy"
    arr = data.numpy().copy()
    arr[3, 1] = np.nan
    np.save(nan, arr)
    capsys.readouterr()
    cases = [(["--data", str(degrees), "--periodic"], "degrees"),
             (["--data", str(nan), "--periodic"], "NaN"),
             (["--data", str(base / "angles.npy"), "--periodic", "--schedule", "ddpm"], "--schedule wrapped"),
             (["--data", str(base / "angles.npy"), "--periodic", "--net", "unet"], "--net does not apply")]
    for extra, phrase in cases:
        assert main(["train", *extra, "--steps", "2", "--out", str(tmp_path / "bad"), *COMMON]) == 2, extra
        err = capsys.readouterr().err
        assert phrase in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (extra, err)
    # --wrap accepts values outside [-pi, pi) and trains on them wrapped
    assert main(["train", "--data", str(degrees), "--periodic", "--wrap", "--width", "8", "--depth", "1",
                 "--steps", "2", "--out", str(tmp_path / "wrapped"), *COMMON]) == 0
