"""The forward-process interface: the Gaussian process of every existing kind gives bitwise the results the code
gave before the interface existed (the same seed, the same checkpoints and samples), and the wrapped process on
the torus corrupts, starts and trains as its formulas say."""
import hashlib
import math
import os
import pathlib
import subprocess
import sys
import tarfile

import pytest
import torch

import unnoise
from unnoise import processes

ROOT = pathlib.Path(__file__).resolve().parents[1]
# the last commit before the forward-process interface and the kinds registry
BEFORE = "5a795e3"

# Trains a tiny run of every kind that existed before, through the command line, and samples each; the same
# script runs on the code of BEFORE and on today's code, in separate processes on this machine.
SCRIPT = r'''
import math, os, sys
import numpy as np
import torch
torch.set_num_threads(1)
from unnoise.cli import main
from unnoise.data.audio import write_wav

out = sys.argv[1]
C = ["--steps", "3", "--batch-size", "8", "--checkpoint-every", "2", "--log-every", "1", "--device", "cpu"]
def run(*argv):
    code = main(list(argv))
    assert code == 0, argv
np.save(f"{out}/series.npy", np.random.default_rng(0).normal(size=(16, 2, 8)).astype(np.float32) * 3 + 1)
os.makedirs(f"{out}/wavs")
for i in range(3):
    t = torch.arange(400) / 2000
    write_wav(f"{out}/wavs/t{i}.wav", 0.3 * torch.sin(2 * math.pi * (100 + 50 * i) * t)[None], 2000)
run("train", "--data", "ring", "--num-points", "64", "--width", "16", "--depth", "1", "--out", f"{out}/vectors", *C)
run("train", "--data", "ring", "--num-points", "64", "--width", "16", "--depth", "1", "--schedule", "karras",
    "--parameterization", "edm", "--out", f"{out}/vectors_ve", *C)
run("train", "--data", f"{out}/series.npy", "--net", "diffwave", "--base-channels", "8", "--out", f"{out}/arrays", *C)
run("train", "--data", "digits", "--conditional", "--base-channels", "8", "--channel-mult", "1,2",
    "--out", f"{out}/images", *C)
run("train", "--data", f"{out}/wavs", "--sample-rate", "2000", "--clip-length", "64", "--num-clips", "8",
    "--base-channels", "8", "--out", f"{out}/audio", *C)
run("train-autoencoder", "--out", f"{out}/autoencoder", "--num-images", "32", "--image-size", "16", "--steps", "2",
    "--batch-size", "8", "--channels", "8", "--latent-channels", "2", "--device", "cpu")
run("train", "--latent", f"{out}/autoencoder", "--data", "shapes", "--num-images", "32", "--image-size", "16",
    "--base-channels", "8", "--channel-mult", "1", "--attention-levels", "", "--out", f"{out}/latent_images", *C)
run("upscale", "--train", "--data", "digits", "--factor", "2", "--base-channels", "8", "--train-steps", "2",
    "--batch-size", "8", "--out", f"{out}/upscale", "--device", "cpu")
run("train-classifier", "--data", "digits", "--steps", "2", "--width", "8", "--batch-size", "8",
    "--out", f"{out}/classifier", "--device", "cpu")
run("train", "--latent", f"{out}/autoencoder", "--text", "--data", "shapes", "--num-images", "32", "--image-size",
    "16", "--base-channels", "8", "--channel-mult", "1", "--attention-levels", "", "--out", f"{out}/text", *C)
for kind in ("vectors", "vectors_ve", "arrays", "images", "audio", "latent_images", "text"):
    for sampler in ("ddpm", "ipndm"):
        run("sample", "--checkpoint", f"{out}/{kind}", "--n", "4", "--steps", "3", "--sampler", sampler,
            "--out", f"{out}/{kind}_{sampler}.npy", "--device", "cpu", *(["--prompt", "a red circle"] * (kind == "text")))
x = np.random.default_rng(1).uniform(-1, 1, size=(2, 1, 8, 8)).astype(np.float32)
np.save(f"{out}/digits_in.npy", x)
np.save(f"{out}/low_in.npy", x[:, :, ::2, ::2])
E = ["--n", "2", "--steps", "4", "--device", "cpu"]
run("upscale", "--checkpoint", f"{out}/upscale", "--input", f"{out}/low_in.npy", "--out", f"{out}/upscaled.npy",
    "--steps", "3", "--device", "cpu")
run("img2img", "--checkpoint", f"{out}/images", "--input", f"{out}/digits_in.npy", "--out", f"{out}/img2img.npy", *E)
run("inpaint", "--checkpoint", f"{out}/images", "--input", f"{out}/digits_in.npy", "--box", "2,2,6,6",
    "--out", f"{out}/inpaint.npy", *E)
run("restore", "--checkpoint", f"{out}/images", "--input", f"{out}/digits_in.npy", "--operator", "blur:sigma=1",
    "--noise", "0.05", "--out", f"{out}/restore.npy", *E)
'''
COMPARED = (".safetensors", ".npy")  # weights, optimizer and RNG states, samples (logs hold times; PNGs fonts)


def _digests(folder: pathlib.Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in COMPARED}


def _run_script(src: pathlib.Path, out: pathlib.Path) -> None:
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1", UNNOISE_LOG_DIR=str(out))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_gaussian_process_gives_bitwise_the_checkpoints_and_samples_of_before(tmp_path):
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "src"], capture_output=True,
                                 timeout=60)
    except FileNotFoundError:
        pytest.skip("git is not installed")
    if archive.returncode != 0:
        pytest.skip(f"commit {BEFORE} is not in this clone's history: {archive.stderr.decode()[:200]}")
    (tmp_path / "before.tar").write_bytes(archive.stdout)
    with tarfile.open(tmp_path / "before.tar") as tar:
        tar.extractall(tmp_path / "before", filter="data")
    _run_script(tmp_path / "before" / "src", tmp_path / "old")
    _run_script(ROOT / "src", tmp_path / "new")
    old, new = _digests(tmp_path / "old"), _digests(tmp_path / "new")
    assert len(old) > 40 and any(k.endswith("_ipndm.npy") for k in old)
    assert new == old


# ----------------------------------------------------------------------------- the wrapped process
def test_the_schedule_owns_its_forward_process_and_describes_it():
    assert isinstance(unnoise.schedules.DDPM().forward, processes.Gaussian)
    assert unnoise.schedules.DDPM().forward.family == "vp"
    assert unnoise.schedules.get("karras").forward.family == "ve"
    wrapped = unnoise.schedules.get("wrapped")
    assert isinstance(wrapped.forward, processes.WrappedGaussian)
    assert unnoise.schedules.get(**wrapped.config()).process == "wrapped"


def test_gaussian_prior_is_the_diffusers_start_and_its_log_density_is_the_normal_one():
    noise = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    vp = unnoise.schedules.DDPM()
    x = vp.forward.prior(noise, vp.sigma_max)
    assert torch.allclose(x * float(vp.scale(torch.tensor(vp.sigma_max))), noise, atol=1e-6)
    assert torch.equal(processes.Gaussian("ve").prior(noise, 80.0), noise * 80.0)
    lp = processes.Gaussian("ve").prior_log_prob(noise.double(), 2.0, 1.0)
    want = torch.distributions.Normal(0.0, math.sqrt(5.0)).log_prob(noise.double()).sum(1)
    assert torch.allclose(lp, want, atol=1e-12)


def test_wrapped_process_corrupts_onto_the_torus_and_starts_uniform():
    proc = processes.WrappedGaussian()
    g = torch.Generator().manual_seed(3)
    x0 = torch.full((20000, 1), 3.0, dtype=torch.float64)
    noise = torch.randn(20000, 1, generator=g, dtype=torch.float64)
    x = proc.corrupt(x0, 0.5, noise)
    assert float(x.min()) >= -math.pi and float(x.max()) < math.pi
    # the wrapped normal's circular moments: E[e^{i k x}] = e^{i k x0} e^{-k^2 sigma^2 / 2}
    for k in (1, 2):
        m = torch.exp(1j * k * x[:, 0]).mean()
        want = complex(math.cos(3.0 * k), math.sin(3.0 * k)) * math.exp(-k**2 * 0.125)
        assert abs(complex(m) - want) < 4 / math.sqrt(20000)
    start = proc.prior(torch.randn(20000, 2, generator=g), 4.0)
    assert float(start.min()) >= -math.pi and float(start.max()) < math.pi
    u = torch.sort((start[:, 0] + math.pi) / (2 * math.pi)).values
    ks = float((u - torch.arange(1, 20001) / 20000).abs().max())
    assert ks < 1.63 / math.sqrt(20000)  # Kolmogorov-Smirnov at the 1 % level: uniform
    assert torch.equal(proc.prior_log_prob(start, 4.0), torch.full((20000,), -2 * math.log(2 * math.pi)))
    wrapped = proc.project(torch.tensor([math.pi, -3 * math.pi, 7.0], dtype=torch.float64))
    assert torch.allclose(wrapped, torch.tensor([-math.pi, -math.pi, 7.0 - 2 * math.pi], dtype=torch.float64))


def test_wrapped_loss_target_is_the_noise_at_small_sigma_and_vanishes_at_large_sigma():
    """The target of the eps-network is -sigma x wrapped score: eps itself where the images of x0 do not overlap,
    and 0 where the noised density is uniform."""
    proc = processes.WrappedGaussian()
    net = unnoise.nets.build("mlp", shape=[2], width=8, depth=1, periodic=True)
    den = unnoise.Denoiser(net, "eps", "wrapped")
    g = torch.Generator().manual_seed(0)
    x0 = (torch.rand(512, 2, generator=g) * 2 - 1) * math.pi
    noise = torch.randn(512, 2, generator=g)
    with torch.no_grad():
        out = net(proc.corrupt(x0, 0.01, noise), torch.full((512,), math.log(0.01) / 4), None)
        small = proc.loss(den, x0, torch.full((512,), 0.01), noise)
        big_out = net(proc.corrupt(x0, 30.0, noise), torch.full((512,), math.log(30.0) / 4), None)
        big = proc.loss(den, x0, torch.full((512,), 30.0), noise)
    assert torch.allclose(small, ((out - noise) ** 2).mean(1), atol=1e-4)
    assert torch.allclose(big, (big_out**2).mean(1), atol=1e-6)
