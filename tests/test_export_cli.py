"""``unnoise train --net diffusers-unet2d`` + ``unnoise export``: a run diffusers loads and samples exactly as
unnoise does; diffusers folders through ``unnoise sample`` and ``compare-samplers``; the bad cases in one line."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

import unnoise
from unnoise.cli import main

diffusers = pytest.importorskip("diffusers")

TINY = ["--data", "digits", "--net", "diffusers-unet2d", "--base-channels", "8", "--channel-mult", "1,2",
        "--steps", "3", "--batch-size", "16", "--checkpoint-every", "0", "--device", "cpu"]


def rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    out = {}
    for param in ("eps", "v"):
        run, folder = str(base / f"run_{param}"), str(base / f"export_{param}")
        assert main(["train", *TINY, "--parameterization", param, "--out", run]) == 0
        assert main(["export", "--checkpoint", run, "--format", "diffusers", folder]) == 0
        out[param] = (run, folder)
    return base, out


@pytest.mark.parametrize("param", ["eps", "v"])
def test_exported_run_samples_in_diffusers_as_in_unnoise(runs, param):
    _, out = runs
    run, folder = out[param]
    assert sorted(os.listdir(folder)) == ["model_index.json", "scheduler", "unet"]
    sched_cfg = json.load(open(os.path.join(folder, "scheduler", "scheduler_config.json")))
    assert sched_cfg["prediction_type"] == {"eps": "epsilon", "v": "v_prediction"}[param]
    ddim = diffusers.DDIMPipeline.from_pretrained(folder, local_files_only=True)
    pipe = unnoise.load(run)  # the run itself, not the export
    k, z = 10, torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    final, raw = pipe.sample(3, sampler="ddim", steps=k, spacing="trailing", noise=z, return_model_space=True)
    # diffusers' own loop on the exported components, unclamped (the random model's samples leave [-1, 1])
    sched = ddim.scheduler
    sched.set_timesteps(k)
    x = z.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(ddim.unet(x, t).sample, t, x, eta=0.0).prev_sample
    assert rel(raw, x) <= 1e-4
    # and the pipeline a diffusers user calls: the same noise from the same seed, images in [0, 1]
    img = ddim(batch_size=3, generator=torch.Generator().manual_seed(4), num_inference_steps=k, eta=0.0,
               output_type="np").images
    assert np.abs(img - (final / 2 + 0.5).permute(0, 2, 3, 1).numpy()).max() <= 1e-4


def test_diffusers_folder_through_sample_and_compare_samplers(runs):
    base, out = runs
    folder = out["v"][1]
    npy = str(base / "s.npy")
    assert main(["sample", "--checkpoint", folder, "--n", "4", "--steps", "6", "--sampler", "dpmpp_2m",
                 "--seed", "2", "--out", npy]) == 0
    want = unnoise.load(folder).sample(4, sampler="dpmpp_2m", steps=6, generator=torch.Generator().manual_seed(2))
    got = torch.from_numpy(np.load(npy))
    assert got.shape == (4, 1, 8, 8) and rel(got, want) <= 1e-6
    png = str(base / "grid.png")
    assert main(["sample", "--checkpoint", folder, "--n", "4", "--steps", "3", "--out", png]) == 0
    assert os.path.getsize(png) > 0
    cmp = str(base / "cmp")
    assert main(["compare-samplers", "--checkpoint", folder, "--samplers", "ddim,euler", "--nfe", "4", "--n", "32",
                 "--out", cmp]) == 0
    rows = json.load(open(os.path.join(cmp, "compare.json")))
    rows = rows["rows"]
    assert {r["sampler"] for r in rows} == {"ddim", "euler"}
    assert all(np.isfinite(r["swd"]) and r["nfe"] <= 4 for r in rows)


def test_tune_grid_on_a_diffusers_folder_is_used_by_sample(runs, tmp_path):
    _, out = runs
    folder = str(tmp_path / "folder")
    shutil.copytree(out["v"][1], folder)
    assert main(["tune-grid", "--checkpoint", folder, "--steps", "4", "--sampler", "ddim"]) == 0
    stored = json.load(open(os.path.join(folder, "tuned_grids.json")))["grids"]
    pipe = unnoise.load(folder)
    assert torch.allclose(pipe.grid(4, sampler="ddim"), torch.tensor(stored[0]["sigmas"]))
    assert not torch.allclose(pipe.grid(4, sampler="ddim")[:-1], pipe.schedule.sampling_sigmas(4)[:-1])


def test_overwrite_replaces_only_an_earlier_export(runs, capsys):
    base, out = runs
    run, folder = out["eps"]
    before = os.path.getmtime(os.path.join(folder, "model_index.json"))
    assert main(["export", "--checkpoint", run, folder]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "--checkpoint", run, "--out", folder, "--overwrite"]) == 0
    assert sorted(os.listdir(folder)) == ["model_index.json", "scheduler", "unet"]
    assert os.path.getmtime(os.path.join(folder, "model_index.json")) >= before
    assert not [p for p in os.listdir(base) if p.startswith(".export")]  # no temporary folder left behind
    mine = base / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["export", "--checkpoint", run, str(mine), "--overwrite"]) == 2
    assert "not a diffusers folder" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"


def test_bad_requests_fail_with_one_line(runs, capsys, tmp_path):
    base, out = runs
    run, folder = out["eps"]
    vec = str(tmp_path / "vec")
    assert main(["train", "--data", "ring", "--num-points", "64", "--width", "8", "--depth", "1", "--steps", "2",
                 "--batch-size", "8", "--checkpoint-every", "0", "--out", vec]) == 0
    unet_run = str(tmp_path / "unet")
    assert main(["train", *[a if a != "diffusers-unet2d" else "unet" for a in TINY], "--out", unet_run]) == 0
    capsys.readouterr()
    cases = [
        (["export", "--checkpoint", vec, str(tmp_path / "a")], "is a vectors run"),
        (["export", "--checkpoint", unet_run, str(tmp_path / "b")], "only models trained with --net diffusers-unet2d"),
        (["export", "--checkpoint", folder, str(tmp_path / "c")], "already a diffusers folder"),
        (["export", "--checkpoint", run], "give the folder to write"),
        (["export", "--checkpoint", str(tmp_path / "nope"), str(tmp_path / "d")], "nope"),
        (["train", *TINY, "--schedule", "karras", "--out", str(tmp_path / "e")], "discrete VP schedule"),
        (["train", *TINY, "--parameterization", "edm", "--out", str(tmp_path / "f")], "--parameterization must be"),
    ]
    for argv, phrase in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and phrase in err, (argv, err)
    for name in "abcdef":
        assert not (tmp_path / name).exists()
