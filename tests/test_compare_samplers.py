"""Sampler comparison at equal real NFE: budget fitting, the command's outputs, bad input."""
import json
import math
import os

import pytest
import torch

from unnoise import compare, samplers, schedules
from unnoise.cli import main


def test_fit_steps_uses_real_calls_and_the_whole_budget():
    gm = compare.builtin_mixture("ring2d")
    sched = schedules.DDPM()
    probe = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))

    def grid(steps):
        return sched.sampling_sigmas(steps, "karras")

    for name in ("ddim", "heun"):
        for budget in (5, 10):
            steps, nfe = compare.fit_steps(gm.denoise, name, budget, grid, probe)
            assert nfe <= budget
            # maximal: one more step would exceed the budget
            assert compare.measure_nfe(gm.denoise, name, grid(steps + 1), probe) > budget
            if name == "ddim":
                assert (steps, nfe) == (budget, budget)
    # heun spends two calls per step but one on the last (to sigma = 0): 3 steps -> 5 calls
    assert compare.fit_steps(gm.denoise, "heun", 5, grid, probe) == (3, 5)


def test_one_step_over_budget_is_reported_not_run():
    gm = compare.builtin_mixture("ring2d")
    sched = schedules.DDPM()
    probe = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))
    steps, nfe = compare.fit_steps(gm.denoise, "heun", 1, lambda s: sched.sampling_sigmas(s, "karras"), probe)
    assert steps == 1 and nfe == 1  # the single step to sigma = 0 is one Euler call
    rows = compare.compare(gm.denoise, gm.sample(50), (2,), ["ddim"], [1, 2],
                           lambda s, name: sched.sampling_sigmas(s, "karras"), n=50)
    assert [r["nfe"] for r in rows] == [1, 2]


def test_command_writes_table_and_plot_for_a_mixture(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    rc = main(["compare-samplers", "--mixture", "ring2d", "--samplers", "ddim,heun", "--nfe", "3,12",
               "--n", "600", "--out", out])
    assert rc == 0
    for ext in ("csv", "json", "png"):
        assert os.path.getsize(os.path.join(out, f"compare.{ext}")) > 0
    with open(os.path.join(out, "compare.json")) as f:
        result = json.load(f)
    rows = {(r["sampler"], r["budget"]): r for r in result["rows"]}
    assert set(rows) == {("ddim", 3), ("ddim", 12), ("heun", 3), ("heun", 12)}
    for (name, budget), r in rows.items():
        assert r["nfe"] <= budget
    assert rows[("heun", 12)]["steps"] == 6  # 2 calls a step, 1 on the last
    # more evaluations, closer to the exact samples; at 12 NFE within 0.15 of the exact-vs-exact floor
    floor = result["floor_swd"]
    assert 0 < floor < 0.2
    assert rows[("ddim", 12)]["swd"] < rows[("ddim", 3)]["swd"]
    assert rows[("ddim", 12)]["swd"] < floor + 0.15
    text = capsys.readouterr().out
    assert "best at NFE <= 12" in text


def test_command_on_a_checkpoint_with_a_reference_set(tmp_path):
    from unnoise.data import toy_dataset
    from unnoise.train import TrainConfig, train_model
    data = toy_dataset("moons", 512, torch.Generator().manual_seed(0)) * 3.0 + 5.0  # far from standard units
    run_dir = str(tmp_path / "run")
    train_model(data, run_dir, net_config={"width": 32, "depth": 1},
                config=TrainConfig(steps=30, batch_size=128, log_every=10, device="cpu"), progress=False)
    ref = str(tmp_path / "ref.npy")
    import numpy as np
    np.save(ref, data.numpy())
    out = str(tmp_path / "cmp")
    assert main(["compare-samplers", "--checkpoint", run_dir, "--samplers", "ddim", "--nfe", "4",
                 "--n", "200", "--reference", ref, "--out", out]) == 0
    with open(os.path.join(out, "compare.json")) as f:
        result = json.load(f)
    row = result["rows"][0]
    assert row["nfe"] == 4 and math.isfinite(row["swd"])
    # samples are compared in data units: an untrained-ish model still lands near the data's centre,
    # so the distance is a few data scales at most, not the ~5-unit offset of unnormalised output
    assert row["swd"] < 4.0


def test_bad_input_fails_with_a_clear_message(tmp_path, capsys):
    assert main(["compare-samplers", "--mixture", "ring2d", "--samplers", "ddim,nope", "--out", str(tmp_path)]) == 2
    assert "unknown sampler(s) nope" in capsys.readouterr().err
    assert main(["compare-samplers", "--mixture", "ring2d", "--nfe", "5,x", "--out", str(tmp_path)]) == 2
    assert "--nfe" in capsys.readouterr().err
    assert main(["compare-samplers", "--mixture", "ring2d", "--samplers", "ddim", "--option", "ddim.foo=1",
                 "--out", str(tmp_path)]) == 2
    assert "no option 'foo'" in capsys.readouterr().err
    assert "ddim" in samplers.available()


def test_auto_grid_beats_karras_against_the_exact_ode_map():
    if not hasattr(samplers, "optimize_sigmas"):
        pytest.skip("no optimize_sigmas")
    gm = compare.builtin_mixture("ring2d")
    sched = schedules.DDPM()
    grid = compare.auto_grid(gm.denoise, (2,), 5, "dpmpp_2m", sched.sigma_min, sched.sigma_max, max_evals=20)
    assert grid.shape == (6,) and grid[-1] == 0 and torch.all(grid[1:] < grid[:-1])
    # judged on a fresh batch (not the pilot it was tuned on)
    z = torch.randn(500, 2, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    target = compare.ode_map(gm.denoise, z * sched.sigma_max, sched.sigma_max)

    def err(sig):
        out = samplers.sample(gm.denoise, z * sched.sigma_max, sig.double(), sampler="dpmpp_2m")
        return float(((out - target) ** 2).sum(1).mean().sqrt())
    assert err(grid) < 0.5 * err(sched.sampling_sigmas(5, "karras"))
