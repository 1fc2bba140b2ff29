"""unnoise tune-grid: the stored grid is used by Pipeline.grid / unnoise sample, ignored with a warning
when the step count differs, and bad inputs exit 2 with one line."""
import json
import os
import warnings

import numpy as np
import pytest
import torch

import unnoise
from unnoise import checkpoint
from unnoise.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tg") / "run")
    assert main(["train", "--data", "ring", "--num-points", "64", "--width", "16", "--depth", "1", "--steps", "3",
                 "--batch-size", "8", "--checkpoint-every", "0", "--device", "cpu", "--out", out]) == 0
    before = {f: os.path.getmtime(os.path.join(out, f)) for f in ("config.json", "model.safetensors")}
    assert main(["tune-grid", "--checkpoint", out, "--steps", "5", "--pilot", "8", "--device", "cpu"]) == 0
    assert before == {f: os.path.getmtime(os.path.join(out, f)) for f in before}
    return out


def test_stored_grid_is_used(run_dir, tmp_path):
    stored = json.load(open(os.path.join(run_dir, checkpoint.TUNED_GRIDS_NAME)))["grids"]
    assert [(g["steps"], g["sampler"]) for g in stored] == [(5, unnoise.samplers.DEFAULT_SAMPLER)]
    assert stored[0]["nfe_cost"] > 0
    pipe = unnoise.load(run_dir)
    tuned = torch.tensor(stored[0]["sigmas"])
    assert torch.equal(pipe.grid(5), tuned)
    assert not torch.equal(pipe.schedule.sampling_sigmas(5), tuned)
    assert torch.equal(pipe.grid(5, spacing="leading"), pipe.schedule.sampling_sigmas(5, "leading"))
    assert torch.equal(pipe.grid(5, sampler="euler"), pipe.schedule.sampling_sigmas(5))  # tuned for ipndm only
    out = str(tmp_path / "s.npy")
    assert main(["sample", "--checkpoint", run_dir, "--steps", "5", "--n", "16", "--device", "cpu",
                 "--out", out]) == 0
    noise = pipe.noise(16, torch.Generator().manual_seed(0))
    x = pipe.start(noise, float(tuned[0]))
    want = pipe.decode(unnoise.sample(pipe.denoiser, x, tuned)).numpy()
    np.testing.assert_allclose(np.load(out), want, rtol=1e-5, atol=1e-5)


def test_other_step_count_warns_and_uses_default(run_dir, tmp_path):
    pipe = unnoise.load(run_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert torch.equal(pipe.grid(7), pipe.schedule.sampling_sigmas(7))
        pipe.grid(7)
    lines = [str(w.message) for w in caught]
    assert len(lines) == 1 and "[5]" in lines[0] and "unnoise tune-grid" in lines[0]
    out = str(tmp_path / "s7.npy")
    with pytest.warns(UserWarning, match="tune-grid"):
        assert main(["sample", "--checkpoint", run_dir, "--steps", "7", "--n", "8", "--device", "cpu",
                     "--out", out]) == 0
    noise = pipe.noise(8, torch.Generator().manual_seed(0))
    default = pipe.schedule.sampling_sigmas(7)
    want = pipe.decode(unnoise.sample(pipe.denoiser, pipe.start(noise, float(default[0])), default)).numpy()
    np.testing.assert_allclose(np.load(out), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("extra", [["--steps", "0"], ["--steps", "5,x"], ["--steps", "5", "--sampler", "ddpm"],
                                   ["--steps", "5", "--sampler", "nope"]])
def test_bad_inputs_exit_2(run_dir, extra, capsys):
    before = open(os.path.join(run_dir, checkpoint.TUNED_GRIDS_NAME)).read()
    assert main(["tune-grid", "--checkpoint", run_dir, "--pilot", "4", "--device", "cpu", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err and len(err.splitlines()) == 1
    assert open(os.path.join(run_dir, checkpoint.TUNED_GRIDS_NAME)).read() == before


def test_not_a_run_exits_2(tmp_path, capsys):
    assert main(["tune-grid", "--checkpoint", str(tmp_path), "--steps", "5", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an unnoise run" in err
