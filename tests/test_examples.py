"""The examples and the figure script run, in their fast modes, and say something true.

Every script is started once, all at the same time (each is mostly waiting on imports), through
the same Python that runs the tests; each test then checks one script's output.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = ["overview", "forward_reverse_2d", "forward_digits", "score_field", "denoiser_projection", "trajectories",
           "langevin", "sampler_quality", "guidance", "likelihood", "digits_reverse", "latent"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("examples")
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    commands = {
        "train_image_folder": ["examples/train_image_folder.py", "--fast", "--out", str(tmp / "images")],
        "train_vectors": ["examples/train_vectors.py", "--fast", "--out", str(tmp / "vectors")],
        "sample_with_sampler": ["examples/sample_with_sampler.py", "--fast", "--sampler", "heun", "--steps", "12",
                                "--out", str(tmp / "heun.npy")],
        "likelihood": ["examples/likelihood.py", "--fast"],
        "custom_sampler": ["examples/custom_sampler.py", "--fast"],
        "make_figures": ["docs/make_figures.py", "--fast", "--out", str(tmp / "figures")],
    }
    procs = {name: subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
             for name, cmd in commands.items()}
    out = {}
    for name, proc in procs.items():
        text, _ = proc.communicate(timeout=600)
        out[name] = (proc.returncode, text)
    out["tmp"] = tmp
    return out


def _result(runs, name):
    code, text = runs[name]
    assert code == 0, f"{name} failed:\n{text[-3000:]}"
    return json.loads(text.strip().splitlines()[-1])


def test_train_image_folder(runs):
    res = _result(runs, "train_image_folder")
    assert res["images"] == 16 and res["samples_finite"]
    assert res["final_loss"] < 1.5  # v-prediction of unit-scale targets: 1.0 is predicting zero
    with Image.open(res["samples"]) as img:
        assert img.size[0] >= 4 * 8  # a 4x4 grid of 8x8 images (upscaled)
    assert os.path.exists(os.path.join(res["run_dir"], "config.json"))


def test_train_vectors_beats_a_gaussian_fit(runs):
    res = _result(runs, "train_vectors")
    # even a short run must capture more than the mean and covariance of the helix
    assert res["swd_samples"] < res["swd_gaussian_fit"]
    assert res["swd_floor"] < res["swd_samples"]
    # samples come back in data units (means near (10, -5, ~3.6), not standardised near 0)
    for m, d in zip(res["sample_mean"], res["data_mean"]):
        assert abs(m - d) < 0.5


def test_sample_with_sampler(runs):
    res = _result(runs, "sample_with_sampler")
    assert res["sampler"] == "heun" and res["finite"]
    assert res["nfe"] == 2 * 12 - 1  # Heun: two evaluations a step, one on the step to sigma = 0
    assert res["swd"] < 2 * res["swd_floor"] + 0.05
    assert os.path.exists(runs["tmp"] / "heun.npy")


def test_likelihood_matches_exact(runs):
    res = _result(runs, "likelihood")
    assert res["max_abs_error"] < 0.1  # nats, at the fast mode's tolerance 1e-4
    assert abs(res["nll_ode"] - res["nll_exact"]) < 0.02
    # the variational bound is a bound: never below the exact NLL
    assert res["elbo_bound"] >= res["nll_exact_sigma0"] - 1e-6


def test_custom_sampler_is_second_order(runs):
    res = _result(runs, "custom_sampler")
    assert res["registered"]
    rows = {(r["sampler"], r["nfe"]): r["ode_error_rms"] for r in res["rows"]}
    for nfe in (19, 39):
        assert rows[("exp_midpoint", nfe)] < rows[("ddim", nfe)]
    # doubling the steps: the second-order method's error falls faster than first-order DDIM's
    # (measured ratios: DDIM 2.1, exp_midpoint 3.3)
    assert rows[("exp_midpoint", 19)] / rows[("exp_midpoint", 39)] > rows[("ddim", 19)] / rows[("ddim", 39)] + 0.5


def test_make_figures_writes_every_figure(runs):
    code, text = runs["make_figures"]
    assert code == 0, text[-3000:]
    for name in FIGURES:
        path = runs["tmp"] / "figures" / f"{name}.png"
        assert path.exists(), f"{name}.png missing:\n{text[-2000:]}"
        with Image.open(path) as img:
            assert img.size[0] > 100 and img.size[1] > 50


def test_committed_figures_are_small_and_referenced():
    fig_dir = os.path.join(ROOT, "docs", "figures")
    concepts = open(os.path.join(ROOT, "docs", "concepts.md"), encoding="utf-8").read()
    for name in FIGURES:
        path = os.path.join(fig_dir, f"{name}.png")
        assert os.path.exists(path), f"run .venv/bin/python docs/make_figures.py ({name}.png is missing)"
        assert os.path.getsize(path) < 300_000
    for name in FIGURES:
        if name != "overview":
            assert f"figures/{name}.png" in concepts, f"{name}.png is not shown in docs/concepts.md"
