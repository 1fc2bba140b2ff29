"""Never lose work: exact resume, kill -9 in the middle of a checkpoint, SIGINT/SIGTERM, NaN steps,
corrupt or mismatched checkpoints, unwritable or full disks."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import unnoise
from unnoise import checkpoint
from unnoise.cli import main as cli_main
from unnoise.data.memory import TensorDataset
from unnoise.train import TrainConfig, Trainer, TrainingDiverged

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
CLI = [sys.executable, "-m", "unnoise", "train", "--data", "ring", "--num-points", "500", "--width", "32",
       "--depth", "1", "--batch-size", "50", "--device", "cpu", "--log-every", "5", "--lr", "3e-3",
       "--lr-decay", "cosine", "--warmup", "3"]


def small_trainer(run_dir=None, **overrides):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = unnoise.data.toy_dataset("moons", 300, g)
    labels = (data[:, 0] > 0).long()
    width = overrides.pop("width", 32)
    net = unnoise.nets.build("mlp", shape=[2], width=width, depth=1, num_classes=2, dropout=0.1)
    cfg = TrainConfig(**{"steps": 20, "batch_size": 60, "device": "cpu", "log_every": 5, "lr": 3e-3,
                         "ema_decay": 0.9, "cond_dropout": 0.2, "warmup": 3, "lr_decay": "cosine",
                         "grad_accum": 2, **overrides})
    return Trainer(unnoise.Denoiser(net), unnoise.schedules.get("ddpm"), TensorDataset(data, {"label": labels}), cfg,
                   run_dir=run_dir, info={"data": {"num_examples": 300}})


def assert_bitwise(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def stop_at(trainer, step, how="request"):
    """Make ``trainer`` receive a stop request (or a real signal) once it has done ``step`` steps."""
    def hook(x0, u):
        if trainer.step_count == step:
            if how == "request":
                trainer.request_stop()
            else:
                os.kill(os.getpid(), how)
        return x0
    trainer.augment = hook


@pytest.fixture
def default_sigint():
    """SIGINT as in an interactive Python (``default_int_handler``), whatever this process inherited:
    a process started with ``&`` from a script (e.g. a CI job) starts with SIGINT ignored, which the
    trainer rightly leaves alone, so a test that sends SIGINT must set its own starting point."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


# ----------------------------------------------------------------------------- exact resume
def test_stop_and_resume_is_bitwise_identical(tmp_path, default_sigint):
    """Dropout, label dropout, accumulation, cosine LR: an interrupted run continues exactly."""
    ref = small_trainer(str(tmp_path / "ref"), checkpoint_every=5)
    ref.fit(progress=False)
    run = str(tmp_path / "run")
    first = small_trainer(run, checkpoint_every=5)
    stop_at(first, 7, signal.SIGINT)  # a real Ctrl-C, delivered to this process's handler
    first.fit(progress=False)
    assert first.stopped_by == "SIGINT" and first.step_count == 8
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    assert open(os.path.join(run, "checkpoints", "latest")).read().strip() == "step_00000008"
    torch.manual_seed(12345)  # the global RNG state must come from the checkpoint, not from here
    second = small_trainer(run, checkpoint_every=5, resume_from=run)
    assert second.step_count == 8
    second.fit(progress=False)
    assert_bitwise(ref.denoiser.state_dict(), second.denoiser.state_dict())
    assert_bitwise(ref.ema.state_dict(), second.ema.state_dict())
    assert [h["step"] for h in second.history] == [5, 10, 15, 20]
    lines = [json.loads(s)["step"] for s in open(os.path.join(run, "metrics.jsonl"))]
    assert lines == [5, 10, 15, 20]  # no duplicated log lines after the resume
    # last K kept (default 3): steps 10, 15, 20 remain
    assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == ["latest", "step_00000010", "step_00000015",
                                                                    "step_00000020"]


def test_state_flattening_roundtrip():
    t = small_trainer(steps=2)
    t.fit(progress=False)
    tensors = {}
    js = checkpoint.flatten_state(t.opt.state_dict(), tensors, "optim")
    json.dumps(js)  # plain JSON
    back = checkpoint.unflatten_state(json.loads(json.dumps(js)), tensors)
    orig = t.opt.state_dict()
    assert back["param_groups"] == orig["param_groups"]
    assert back["state"].keys() == orig["state"].keys()
    for i in orig["state"]:
        for k, v in orig["state"][i].items():
            assert torch.equal(back["state"][i][k], v)


# ----------------------------------------------------------------------------- crashes and signals
def in_process(args):
    """The same command in this process (no interpreter start-up; 1 thread as in the subprocesses)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return cli_main(args[3:])
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert in_process(CLI + ["--steps", "30", "--checkpoint-every", "10", "--out", str(out)]) == 0
    return load_file(out / "model.safetensors")


# atomic writes per checkpoint: latest, model.safetensors, config.json, loss.png; so the 6th is the
# top-level model.safetensors of the 2nd checkpoint
@pytest.mark.parametrize("fault, keep, leftover", [("before_rename@2", 3, ".tmp-step_00000020-"),
                                                   ("before_replace@6", 3, "-model.safetensors"),
                                                   ("before_prune@1", 1, ".tmp-prune-step_00000010")])
def test_sigkill_while_writing_a_checkpoint_then_resume(tmp_path, reference_run, fault, keep, leftover):
    """kill -9 with the 2nd checkpoint half written (a step directory not yet renamed, or the
    top-level weights file not yet renamed) or while pruning the 1st: the last complete checkpoint
    survives, the leftovers are removed at the next start and the resumed run ends bitwise where an
    uninterrupted one does."""
    out = tmp_path / "run"
    r = subprocess.run(CLI + ["--steps", "30", "--checkpoint-every", "10", "--keep-checkpoints", str(keep),
                              "--out", str(out)],
                       env={**ENV, "UNNOISE_FAULT": fault}, capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL
    ckpts = out / "checkpoints"
    leftovers = [n for n in os.listdir(ckpts) if n.startswith(".tmp-")] + \
                [n for n in os.listdir(out) if n.startswith(".tmp-")]
    assert any(leftover in n for n in leftovers), leftovers  # the crash really happened mid-write
    latest = checkpoint.latest_checkpoint(str(out))
    assert os.path.basename(latest) in ("step_00000010", "step_00000020")
    checkpoint.load_training_checkpoint(latest)  # complete and readable
    checkpoint.load(str(out))  # the top-level sampling checkpoint is whole too
    assert in_process(CLI[:4] + ["--resume", str(out)]) == 0
    assert_bitwise(reference_run, load_file(out / "model.safetensors"))
    assert not [n for n in os.listdir(ckpts) + os.listdir(out) if n.startswith(".tmp-")]  # stale ones cleaned


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(CLI + ["--steps", "1000000", "--checkpoint-every", "0", "--out", str(out)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 90
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "Traceback" not in stderr and "stopped by SIGTERM" in stdout
    latest = checkpoint.latest_checkpoint(str(out))
    _, weights, _, state = checkpoint.load_training_checkpoint(latest)
    step = state["step"]
    assert 5 <= step < 1000000 and os.path.basename(latest) == f"step_{step:08d}"
    assert all(torch.isfinite(v).all() for v in weights.values())
    # it continues from there (a larger --steps overrides the stored one)
    assert in_process(CLI[:4] + ["--resume", str(out), "--steps", str(step + 5)]) == 0
    assert json.loads((out / "config.json").read_text())["step"] == step + 5


# ----------------------------------------------------------------------------- NaN / inf
def test_nan_batches_are_skipped_counted_and_stop_the_run(tmp_path):
    t = small_trainer(str(tmp_path), steps=12, checkpoint_every=4, max_bad_steps=3)
    before = {}

    def poison(x0, u):
        if t.step_count in (5, 6):  # two bad steps in a row: skipped, training goes on
            before[t.step_count] = [p.detach().clone() for p in t.denoiser.parameters()]
            x0 = x0.clone()
            x0[0, 0] = float("nan")
        return x0
    t.augment = poison
    t.fit(progress=False)
    assert t.skipped_steps == 2 and t.step_count == 12
    # a skipped step leaves the weights exactly as they were
    assert all(torch.equal(a, b) for a, b in zip(before[6], before[5]))
    assert all(torch.isfinite(p).all() for p in t.denoiser.parameters())
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["skipped_steps"] == 2

    # a finite loss with an inf gradient is skipped too
    t = small_trainer(steps=6)
    bad = {"on": False}
    first = next(t.denoiser.parameters())
    first.register_hook(lambda grad: grad * float("inf") if bad["on"] else grad)
    t.fit(progress=False)
    snapshot = [p.detach().clone() for p in t.denoiser.parameters()]
    bad["on"] = True
    t.config.steps = 7
    t.fit(progress=False)
    assert t.skipped_steps == 1 and t.bad_in_row == 1 and math.isfinite(t.history[-1]["loss"])
    assert all(torch.equal(a, b) for a, b in zip(snapshot, t.denoiser.parameters()))

    run = tmp_path / "diverge"
    t = small_trainer(str(run), steps=40, checkpoint_every=4, max_bad_steps=3)
    t.augment = lambda x0, u: x0 * float("inf") if t.step_count >= 9 else x0
    with pytest.raises(TrainingDiverged, match=r"3 steps in a row had a NaN/inf.*step_00000008"):
        t.fit(progress=False)
    assert checkpoint.list_step_dirs(str(run))[-1][0] == 8  # nothing written after the bad steps
    _, weights, _, _ = checkpoint.load_training_checkpoint(checkpoint.latest_checkpoint(str(run)))
    assert all(torch.isfinite(v).all() for v in weights.values())
    # even a direct save refuses poisoned weights and keeps the last checkpoint
    with torch.no_grad():
        next(t.denoiser.parameters())[0] = float("nan")
    with pytest.raises(FloatingPointError, match="refusing to write a checkpoint"):
        t.save()
    assert checkpoint.list_step_dirs(str(run))[-1][0] == 8


# ----------------------------------------------------------------------------- bad checkpoints
@pytest.fixture
def saved_run(tmp_path):
    run = str(tmp_path / "run")
    small_trainer(run, steps=4).fit(progress=False)
    return run


def test_truncated_or_corrupt_files_are_named(saved_run):
    weights = os.path.join(saved_run, "model.safetensors")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    with pytest.raises(ValueError, match=r"model\.safetensors is corrupt or truncated"):
        checkpoint.load(saved_run)
    state = os.path.join(checkpoint.latest_checkpoint(saved_run), "state.safetensors")
    with open(state, "wb") as f:
        f.write(b"\x07" * 100)
    with pytest.raises(ValueError, match=r"step_00000004/state\.safetensors is corrupt or truncated"):
        small_trainer(resume_from=saved_run)
    cfg = os.path.join(saved_run, "config.json")
    with open(cfg, "w") as f:
        f.write('{"format": "unnoise-checkpoint", "net": ')
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        checkpoint.load(saved_run)


def test_config_from_another_model_names_the_mismatch(saved_run):
    cfg_path = os.path.join(saved_run, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["net"]["config"]["width"] = 48  # config.json of another model beside these weights
    json.dump(cfg, open(cfg_path, "w"))
    with pytest.raises(ValueError, match=r"model\.safetensors: the ema weights do not match.*shape mismatch "
                                         r"\(inp\.weight: file has \(32, 2\), network expects \(48, 2\)"):
        checkpoint.load(saved_run)
    # resuming with a different network is refused before any weights are touched
    with pytest.raises(ValueError, match=r"config\.json was written for a different model: its net"):
        small_trainer(width=16, resume_from=saved_run)
    with pytest.raises(FileNotFoundError, match="no complete training checkpoint"):
        small_trainer(resume_from=os.path.dirname(saved_run))


# ----------------------------------------------------------------------------- disks
def test_unwritable_or_full_run_directory_fails_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="cannot create run directory"):
        small_trainer(str(blocker / "run"))
    import shutil as sh
    usage = sh.disk_usage(str(tmp_path))
    monkeypatch.setattr(checkpoint.disk.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(OSError, match="not enough free space"):
        small_trainer(str(tmp_path / "full"))


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    run = str(tmp_path / "run")
    t = small_trainer(run, steps=8, checkpoint_every=4)
    real = checkpoint.files.save_file

    def fill_disk(tensors, path):
        if t.step_count == 8:
            with open(path, "wb") as f:
                f.write(b"\0" * 10)
            raise OSError(28, "No space left on device")
        return real(tensors, path)
    monkeypatch.setattr(checkpoint.files, "save_file", fill_disk)
    with pytest.raises(OSError, match=r"No space left on device.*step_00000004 is intact"):
        t.fit(progress=False)
    assert checkpoint.latest_checkpoint(run).endswith("step_00000004")
    assert not [n for n in os.listdir(os.path.join(run, "checkpoints")) if n.startswith(".tmp-")]
    monkeypatch.setattr(checkpoint.files, "save_file", real)
    resumed = small_trainer(run, steps=8, checkpoint_every=4, resume_from=run)
    assert resumed.step_count == 4
    shutil.rmtree(run)
