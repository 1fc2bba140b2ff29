"""Runs that cannot collide and commands that never silently drop an option (issue 29): one writer per run directory
(an OS lock that a kill -9 releases), --resume options applied with a word or refused, the demo's Ctrl-C and its
second run, one thread for small networks, large --n written in batches, like-with-like sampler comparisons, plots
of vectors whose columns have different scales."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import unnoise
from unnoise import checkpoint, plotting
from unnoise.cli import main
from unnoise.commands import compare_samplers, demo
from unnoise.commands import sample as sample_cmd
from unnoise.devices import threads_for_small_model
from unnoise.train import TrainConfig, Trainer

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
TRAIN = [sys.executable, "-m", "unnoise", "train", "--data", "ring", "--num-points", "256", "--width", "16", "--depth",
         "1", "--batch-size", "32", "--device", "cpu", "--log-every", "1"]
TINY = ["--steps", "2", "--batch-size", "8", "--checkpoint-every", "0", "--log-every", "1", "--device", "cpu"]


def wait_for(predicate, proc, seconds=120):
    deadline = time.time() + seconds
    while not predicate():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline
        time.sleep(0.05)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.strip() and "it/s" not in line and "%|" not in line]


# ----------------------------------------------------------------------------- one writer per run directory
def test_two_trainings_into_one_directory_one_proceeds_the_other_exits_at_once(tmp_path):
    out = str(tmp_path / "run")
    cmd = TRAIN + ["--steps", "1000000", "--checkpoint-every", "0", "--out", out]
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        deadline = time.time() + 120
        while all(p.poll() is None for p in procs):
            assert time.time() < deadline
            time.sleep(0.05)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        _, err = loser.communicate()
        assert loser.returncode == 2, err
        lines = error_lines(err)
        assert len(lines) == 1 and "Traceback" not in err, err
        assert f"is being written by process {winner.pid}" in lines[0], lines
        assert winner.poll() is None  # the other goes on training
        # --resume and --overwrite into the running run are refused too, naming it, before anything is touched
        wait_for(lambda: os.path.exists(os.path.join(out, "metrics.jsonl")), winner)
        for extra in (["--overwrite"], []):
            r = subprocess.run(TRAIN + ["--steps", "10", "--out", out, *extra], env=ENV, capture_output=True,
                               text=True, timeout=120)
            assert r.returncode == 2 and f"process {winner.pid}" in r.stderr, r.stderr
        winner.send_signal(signal.SIGTERM)
        _, err = winner.communicate(timeout=60)
        assert winner.returncode == 128 + signal.SIGTERM, err[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    lines = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    steps = [line["step"] for line in lines]
    assert steps == sorted(set(steps))  # one run's metrics, each step once
    assert not os.path.exists(os.path.join(out, checkpoint.LOCK_NAME))  # released and removed at the end


def test_a_sigkilled_training_leaves_no_lock_behind(tmp_path):
    out = str(tmp_path / "run")
    proc = subprocess.Popen(TRAIN + ["--steps", "1000000", "--checkpoint-every", "5", "--out", out], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: checkpoint.list_step_dirs(out), proc)
        assert open(os.path.join(out, checkpoint.LOCK_NAME)).read().strip() == str(proc.pid)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    step = int(checkpoint.read_state_json(checkpoint.latest_checkpoint(out))["step"])
    r = subprocess.run(TRAIN[:3] + ["train", "--resume", out, "--steps", str(step + 3)], env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming {out} at step {step} with --steps {step + 3} (was 1000000)" in r.stdout
    assert json.loads(open(os.path.join(out, "config.json")).read())["step"] == step + 3


def test_the_lock_is_taken_over_when_its_file_is_left_by_a_dead_process(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / checkpoint.LOCK_NAME).write_text("999999\n")  # written by a process that no longer holds it
    checkpoint.lock_run_dir(str(run))
    assert (run / checkpoint.LOCK_NAME).read_text().strip() == str(os.getpid())
    checkpoint.unlock_run_dir(str(run))
    assert not (run / checkpoint.LOCK_NAME).exists()


# ----------------------------------------------------------------------------- the demo
def test_the_demos_first_ctrl_c_says_so_and_samples_nothing(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "unnoise", "demo", "--out", str(out), "--steps", "1000000",
                             "--device", "cpu"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (out / "run" / "metrics.jsonl").exists(), proc)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGINT, stderr[-2000:]
    assert "Traceback" not in stderr
    said = [line for line in stdout.splitlines() if "stopped by SIGINT" in line]
    assert len(said) == 1 and "nothing was sampled" in said[0], stdout
    assert not (out / "samples.png").exists() and not (out / "trajectory.png").exists()
    assert checkpoint.list_step_dirs(str(out / "run"))  # the half-trained model is saved


def test_demo_overwrite_replaces_the_whole_previous_output(tmp_path, capsys):
    out = tmp_path / "demo_out"
    (out / "run" / "checkpoints" / "step_00000005").mkdir(parents=True)
    (out / "run" / "metrics.jsonl").write_text('{"step": 5}\n')
    (out / "run" / "config.json").write_text("{}")
    (out / "samples.png").write_bytes(b"old")
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        demo.clear_out(str(out), overwrite=False)
    assert (out / "samples.png").read_bytes() == b"old"
    demo.clear_out(str(out), overwrite=True)
    assert not out.exists()  # nothing of the earlier run is left to mix with the next
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a demo output"):
        demo.clear_out(str(tmp_path / "mine"), overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


# ----------------------------------------------------------------------------- threads
def test_small_networks_run_on_one_thread_unless_omp_num_threads_says_otherwise(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(2)
        big = torch.nn.Linear(3000, 3000)  # 9 million parameters
        assert not threads_for_small_model(big, "cpu") and torch.get_num_threads() == 2
        data = unnoise.data.toy_dataset("moons", 64, torch.Generator().manual_seed(0))
        net = unnoise.nets.build("mlp", shape=[2], width=16, depth=1)
        Trainer(unnoise.Denoiser(net), unnoise.schedules.get("ddpm"), data, TrainConfig(steps=1, batch_size=16,
                                                                                         device="cpu"))
        assert torch.get_num_threads() == 1  # the Trainer, which every training command and demo goes through
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert not threads_for_small_model(net, "cpu") and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- data and samples
@pytest.fixture(scope="module")
def vec(tmp_path_factory):
    base = tmp_path_factory.mktemp("safety")
    run = str(base / "vec")
    assert main(["train", "--data", "ring", "--num-points", "64", "--width", "16", "--depth", "1", "--out", run,
                 *TINY]) == 0
    return base, run


def test_many_samples_are_drawn_in_batches_and_written_as_they_come(vec, monkeypatch, capsys):
    base, run = vec
    monkeypatch.setattr(sample_cmd, "BATCH_VALUES", 64)  # 32 two-dimensional samples a batch
    out, csv, plot = str(base / "many.npy"), str(base / "many.csv"), str(base / "many.png")
    assert main(["sample", "--checkpoint", run, "--n", "100", "--steps", "3", "--out", out, "--plot", plot]) == 0
    text = capsys.readouterr().out
    assert "in batches of 32" in text and "the first 32 samples" in text
    x = np.load(out)
    assert x.shape == (100, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    assert len({tuple(r) for r in x.round(6)}) == 100  # every batch its own noise
    assert main(["sample", "--checkpoint", run, "--n", "70", "--steps", "3", "--out", csv]) == 0
    assert np.loadtxt(csv, delimiter=",").shape == (70, 2)
    assert not [n for n in os.listdir(base) if n.startswith(".tmp-")]


def test_arrays_of_five_dimensional_examples_are_trained_as_flat_vectors_and_said_so(tmp_path, capsys):
    data = tmp_path / "a.npy"
    np.save(data, np.random.default_rng(0).normal(size=(200, 3, 4, 5, 6, 7)).astype(np.float32))
    assert main(["train", "--data", str(data), "--width", "16", "--depth", "1", "--out", str(tmp_path / "run"),
                 *TINY]) == 0
    note = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and "(3, 4, 5, 6, 7)" in note[0] and "2520" in note[0]
    assert unnoise.load(str(tmp_path / "run")).shape == (2520,)


def test_compare_samplers_scores_like_with_like_against_a_reference_file(tmp_path, capsys):
    data = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "ref.npy"
    np.save(path, data.numpy())
    ref, floor, n = compare_samplers._load_reference(str(path), 1000, torch.Generator(), 0)
    assert n == 150 and len(ref) == 150  # samplers draw as many as the floor's sets hold
    assert torch.equal(ref, data[150:])  # and are scored against the floor's second half
    assert floor == unnoise.compare.sample_quality(data[:150], data[150:], 0)["swd"]
    # a sampler that returned exactly data from the first half scores the floor, not better
    assert unnoise.compare.sample_quality(data[:n], ref, 0)["swd"] == floor
    ref, floor, n = compare_samplers._load_reference(str(path), 100, torch.Generator(), 0)
    assert n == 100 and torch.equal(ref, data[150:250])


def test_plots_of_columns_with_different_scales_fill_the_panel(tmp_path):
    g = torch.Generator().manual_seed(0)
    pts = torch.stack([torch.rand(2000, generator=g) * 1000.0, torch.rand(2000, generator=g)], 1)
    path = str(tmp_path / "p.png")
    plotting.plot_points({"samples": pts}, path)
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    blue = (np.abs(img - np.array([31, 119, 180])).sum(-1) < 120)  # matplotlib's first colour
    rows = np.nonzero(blue.any(1))[0]
    assert rows.max() - rows.min() > 0.5 * img.shape[0]  # not a sliver: y has its own scale
    assert plotting.aspect([0, 0], [1, 1.5]) == "equal" and plotting.aspect([0, 0], [1000, 1]) == "auto"


def test_train_classifier_resume_refuses_a_changed_option_and_applies_steps(tmp_path, capsys):
    run = str(tmp_path / "clf")
    opts = ["--data", "digits", "--batch-size", "8", "--width", "8", "--checkpoint-every", "0", "--device", "cpu"]
    assert main(["train-classifier", *opts, "--steps", "3", "--out", run]) == 0
    capsys.readouterr()
    assert main(["train-classifier", *opts, "--steps", "3", "--resume", run, "--lr", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lr 0.1 (the run has 0.001) differs" in err[0]
    assert main(["train-classifier", *opts, "--steps", "3", "--resume", run]) == 2
    assert "already at step 3" in capsys.readouterr().err
    assert main(["train-classifier", *opts, "--steps", "5", "--resume", run]) == 0
    assert f"resuming {run} at step 3 with --steps 5 (was 3)" in capsys.readouterr().out
