"""Nothing lost, nothing silent (library level): output locations checked before work, atomic writes that
leave the previous file byte-identical on a full disk, resume from the newest readable checkpoint,
leftovers of a crash cleaned, an existing run never replaced by accident, one line for every error."""
import argparse
import errno
import json
import os
import shutil
import signal
import subprocess

import numpy as np
import pytest
import torch
from safetensors import SafetensorError

import unnoise
from unnoise import checkpoint, cli, imaging, plotting
from unnoise import io as uio
from unnoise.devices import resolve_device
from unnoise.train import TrainConfig, Trainer


def trainer(run_dir=None, width=32, **overrides):
    torch.manual_seed(0)
    data = unnoise.data.toy_dataset("moons", 200, torch.Generator().manual_seed(0))
    net = unnoise.nets.build("mlp", shape=[2], width=width, depth=1)
    cfg = TrainConfig(**{"steps": 4, "batch_size": 50, "device": "cpu", "log_every": 2, "lr": 3e-3, **overrides})
    return Trainer(unnoise.Denoiser(net), unnoise.schedules.get("ddpm"), data, cfg, run_dir=run_dir)


def snapshot(directory):
    """{relative path: bytes} of every file under ``directory``."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = f.read()
    return out


def temporaries(directory):
    return [os.path.join(r, n) for r, ds, fs in os.walk(directory) for n in ds + fs if n.startswith(".tmp-")]


def one_line(err):
    text = str(err)
    assert "\n" not in text and "Traceback" not in text, text
    return text


@pytest.fixture
def tmpfs(tmp_path):
    """A real, tiny file system (root only); yields ``(mount point, size in bytes)``."""
    point = tmp_path / "tmpfs"
    point.mkdir()
    size = 8 << 20
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield point, size
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def fill(directory, leave: int) -> None:
    """Fill the file system of ``directory`` until about ``leave`` bytes are free."""
    free = shutil.disk_usage(directory).free
    with open(os.path.join(directory, "filler"), "wb") as f:
        f.write(b"\0" * max(0, free - leave))


# ----------------------------------------------------------------------------- output writes
def _figure(path):
    fig, ax = plotting.subplots()
    ax.plot([0, 1], [1, 0])
    uio.save_figure(fig, path)


WRITERS = {  # name -> (file name, write(path))
    "npy": ("x.npy", lambda p: uio.save_npy(p, np.arange(5000.0))),
    "png": ("x.png", lambda p: uio.save_png(p, np.zeros((64, 64, 3), np.uint8))),
    "json": ("x.json", lambda p: uio.save_json(p, {"a": list(range(2000))})),
    "text": ("x.txt", lambda p: uio.save_text(p, "y" * 20000)),
    "figure": ("x.png", _figure),
    "image grid": ("grid.png", lambda p: imaging.save_image_grid(torch.rand(16, 3, 8, 8) * 2 - 1, p)),
    "loss plot": ("loss.png", lambda p: plotting.plot_loss([{"step": i + 1, "loss": 1 / (i + 1)} for i in range(9)], p)),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_full_disk_during_an_output_write_leaves_the_previous_file(tmp_path, monkeypatch, name):
    filename, write = WRITERS[name]
    path = str(tmp_path / filename)
    write(path)  # a good previous file
    before = open(path, "rb").read()

    def full(p):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(uio, "fsync_file", full)  # the data reached the temporary file, then the disk filled
    with pytest.raises(OSError, match=rf"could not write {path}: No space left on device .*previous {filename} "
                                      "is intact") as info:
        write(path)
    one_line(info.value)
    assert info.value.errno == errno.ENOSPC
    assert open(path, "rb").read() == before and not temporaries(tmp_path)


def test_real_full_disk_keeps_outputs_and_checkpoints(tmpfs):
    point, _ = tmpfs
    prev = str(point / "prev.npy")
    uio.save_npy(prev, np.arange(10.0))
    before = open(prev, "rb").read()
    fill(point, 64 << 10)
    with pytest.raises(OSError, match="No space left on device.*previous prev.npy is intact"):
        uio.save_npy(prev, np.zeros(1 << 18))  # 2 MiB into 64 KiB
    assert open(prev, "rb").read() == before and not temporaries(point)
    os.remove(point / "filler")

    # a training checkpoint: today's safetensors says "SafetensorError: ... (os error 28)"
    run = str(point / "run")
    t = trainer(run, width=96, keep_checkpoints=1)
    t.fit(progress=False)
    kept = snapshot(run)
    fill(point, 16 << 10)  # less than one weights file
    t.config.steps = 6
    with pytest.raises(OSError, match=r"checkpoint of step 6 .*No space left on device.*step_00000004 is intact"):
        t.fit(progress=False)
    after = snapshot(run)
    assert {k: v for k, v in after.items() if k != "metrics.jsonl"} == \
           {k: v for k, v in kept.items() if k != "metrics.jsonl"}
    assert not temporaries(run)
    assert checkpoint.latest_checkpoint(run).endswith("step_00000004")
    checkpoint.load_training_checkpoint(checkpoint.latest_checkpoint(run))


def test_safetensors_io_failure_is_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    run = str(tmp_path / "run")
    t = trainer(run, checkpoint_every=2)
    real = checkpoint.files.save_file

    def broken(tensors, path):
        if t.step_count == 4:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, path)
    monkeypatch.setattr(checkpoint.files, "save_file", broken)
    with pytest.raises(OSError, match=r"No space left on device.*step_00000002 is intact") as info:
        t.fit(progress=False)
    one_line(info.value)
    assert not temporaries(run) and checkpoint.latest_checkpoint(run).endswith("step_00000002")


# ----------------------------------------------------------------------------- locations checked early
def _under_a_file(tmp_path):
    (tmp_path / "plain").write_text("x")
    return str(tmp_path / "plain" / "out.npy"), {}


def _a_directory(tmp_path):
    return str(tmp_path), {}


def _existing(tmp_path):
    (tmp_path / "old.npy").write_text("x")
    return str(tmp_path / "old.npy"), {"overwrite": False}


def _too_big(tmp_path):
    return str(tmp_path / "big.npy"), {"needed_bytes": 1 << 60}


def _file_as_dir(tmp_path):
    (tmp_path / "plain").write_text("x")
    return str(tmp_path / "plain"), {"is_dir": True}


@pytest.mark.parametrize("case, error, phrase", [
    (_under_a_file, NotADirectoryError, "plain is a file, not a directory"),
    (_a_directory, IsADirectoryError, "is a directory; give a file name"),
    (_existing, FileExistsError, "already exists; choose another name or pass --overwrite"),
    (_too_big, OSError, "not enough free space"),
    (_file_as_dir, NotADirectoryError, "is a file, not a directory"),
])
def test_check_output_path_refuses_in_one_line(tmp_path, case, error, phrase):
    path, kwargs = case(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(error, match=phrase) as info:
        uio.check_output_path(path, **kwargs)
    assert path in one_line(info.value) or os.path.dirname(path) in str(info.value)
    assert snapshot(tmp_path) == before and not temporaries(tmp_path)
    # and the check passes where the file can go: parents are created, nothing is left behind
    ok = tmp_path / "new" / "deeper" / "out.npy"
    assert uio.check_output_path(str(ok), overwrite=False) == str(ok)
    assert ok.parent.is_dir() and not list(ok.parent.iterdir())


def test_writes_under_a_regular_file_are_one_line(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(NotADirectoryError, match="could not write .*plain/out.npy.*nothing was written") as info:
        uio.save_npy(str(tmp_path / "plain" / "out.npy"), np.zeros(3))
    one_line(info.value)


def test_read_only_file_system(tmpfs):
    point, _ = tmpfs
    prev = point / "prev.png"
    uio.save_png(str(prev), np.zeros((4, 4), np.uint8))
    before = prev.read_bytes()
    r = subprocess.run(["mount", "-o", "remount,ro", str(point)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot remount read-only")
    with pytest.raises(OSError, match="read-only") as info:
        uio.check_output_path(str(point / "sub" / "x.npy"))
    one_line(info.value)
    with pytest.raises(OSError, match=r"could not write .*prev.png: Read-only file system.*previous prev.png is "
                                      "intact") as info:
        imaging.save_image_grid(torch.zeros(1, 1, 8, 8), str(prev))
    one_line(info.value)
    with pytest.raises(PermissionError, match="not writable"):
        trainer(str(point))  # a Trainer checks its run directory before any step
    assert prev.read_bytes() == before


# ----------------------------------------------------------------------------- resume
def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _garbage(path):
    with open(path, "w") as f:
        f.write("{not json")


@pytest.mark.parametrize("damaged, damage", [("model.safetensors", _truncate), ("state.safetensors", _truncate),
                                             ("state.json", _garbage), ("config.json", os.remove)])
def test_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path, damaged, damage):
    run = str(tmp_path / "run")
    trainer(run, steps=6, checkpoint_every=2).fit(progress=False)
    newest = os.path.join(run, "checkpoints", "step_00000006")
    damage(os.path.join(newest, damaged))
    with pytest.warns(UserWarning, match=r"skipping damaged checkpoint .*step_00000006 .*using .*step_00000004"):
        resumed = trainer(run, steps=8, checkpoint_every=2, resume_from=run)
    assert resumed.step_count == 4
    # a step directory is a resume source of its own, and resolves to its run
    step2 = os.path.join(run, "checkpoints", "step_00000002")
    assert checkpoint.resolve_resume(step2) == (os.path.abspath(run), os.path.abspath(step2))
    assert trainer(run, steps=8, resume_from=step2).step_count == 2
    with pytest.raises(ValueError, match="is a checkpoint directory, not a run directory"):
        checkpoint.latest_checkpoint(step2)  # the old meaning of a resume source: a run directory
    if os.path.isdir(newest):  # asked for by name, a damaged one is an error naming the file
        with pytest.raises((ValueError, FileNotFoundError), match=damaged):
            checkpoint.resolve_resume(newest)


def test_every_checkpoint_damaged_is_one_clear_error(tmp_path):
    run = str(tmp_path / "run")
    trainer(run, steps=4, checkpoint_every=2).fit(progress=False)
    for _, path in checkpoint.list_step_dirs(run):
        _truncate(os.path.join(path, "model.safetensors"))
    with pytest.raises(ValueError, match=r"every training checkpoint .* is damaged \(2 found\).*step_00000004"):
        checkpoint.resolve_resume(run)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        checkpoint.resolve_resume(str(tmp_path / "nothing"))


def test_leftovers_of_a_crash_are_removed_at_the_next_start(tmp_path):
    run = tmp_path / "run"
    trainer(str(run), steps=4, checkpoint_every=2).fit(progress=False)
    ck = run / "checkpoints"
    (run / ".tmp-abcd-model.safetensors").write_bytes(b"half")
    (ck / ".tmp-xyz-latest").write_text("step_")
    (ck / ".tmp-step_00000006-q1w2").mkdir()
    (ck / ".tmp-step_00000006-q1w2" / "model.safetensors").write_bytes(b"half")
    (ck / ".tmp-prune-step_00000001").mkdir()
    half = ck / "step_00000003"  # a step directory that pruning had half deleted
    half.mkdir()
    (half / "config.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    complete = snapshot(ck / "step_00000004")
    t = trainer(str(run), steps=6, resume_from=str(run))  # the next start
    assert t.step_count == 4
    assert sorted(os.listdir(ck)) == ["latest", "step_00000002", "step_00000004"]
    assert not temporaries(run) and (run / "notes.txt").read_text() == "mine"
    assert snapshot(ck / "step_00000004") == complete


# ----------------------------------------------------------------------------- an existing run
def test_an_existing_run_is_refused_or_replaced_safely(tmp_path):
    run = str(tmp_path / "run")
    trainer(run, steps=2).fit(progress=False)
    old = snapshot(run)
    assert checkpoint.is_run_dir(run) and not checkpoint.is_run_dir(str(tmp_path))
    with pytest.raises(FileExistsError, match=r"already holds a training run; continue it with --resume .*"
                                              r"replace it with --overwrite") as info:
        checkpoint.prepare_run_dir(run)
    one_line(info.value)
    with pytest.raises(ValueError, match="give only one of them"):
        checkpoint.prepare_run_dir(run, resume=True, overwrite=True)
    assert checkpoint.prepare_run_dir(run, resume=True) is None and snapshot(run) == old
    assert checkpoint.prepare_run_dir(str(tmp_path / "fresh")) is None

    aside = checkpoint.prepare_run_dir(run, overwrite=True)
    assert snapshot(aside) == old and not os.path.exists(run)
    # killed before the new run's first checkpoint: --resume must not continue the old run
    new = trainer(run, steps=2, lr=1e-2)
    with pytest.raises(FileNotFoundError, match=r"no complete training checkpoint.*the run it replaced is kept in"):
        checkpoint.resolve_resume(run)
    # replacing again keeps the real old run, not the unfinished replacement
    assert checkpoint.prepare_run_dir(run, overwrite=True) in (None, aside) and snapshot(aside) == old
    new = trainer(run, steps=2, lr=1e-2)
    new.fit(progress=False)  # the first checkpoint of the new run: the old one goes
    assert not os.path.exists(aside)
    assert json.load(open(os.path.join(run, "config.json")))["train"]["lr"] == 1e-2
    lines = open(os.path.join(run, "metrics.jsonl")).read().splitlines()
    assert [json.loads(s)["step"] for s in lines] == [2]  # nothing appended to the old log


# ----------------------------------------------------------------------------- signals
def test_an_ignored_sigint_stays_ignored(tmp_path):
    """A job started with '&' from a script has SIGINT ignored: training must not take it over."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        t = trainer(steps=4)
        t.augment = lambda x0, g: (os.kill(os.getpid(), signal.SIGINT), x0)[1] if t.step_count == 1 else x0
        t.fit(progress=False)
        assert t.stopped_by is None and t.step_count == 4
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_signal_during_the_final_save_reaches_the_previous_handler(tmp_path):
    seen = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        t = trainer(str(tmp_path / "run"), steps=3)
        save = t.save

        def save_and_get_terminated():
            os.kill(os.getpid(), signal.SIGTERM)  # arrives when no step is left to act on it
            save()
        t.save = save_and_get_terminated
        t.fit(progress=False)
        assert t.step_count == 3 and t.stopped_by is None
        assert seen == [signal.SIGTERM]  # passed on once, not swallowed
        assert signal.getsignal(signal.SIGTERM) is not None and seen == [signal.SIGTERM]
        checkpoint.load_training_checkpoint(checkpoint.latest_checkpoint(str(tmp_path / "run")))
    finally:
        signal.signal(signal.SIGTERM, before)


# ----------------------------------------------------------------------------- the command's last line
def _raise(err):
    def run(args):
        raise err
    return run


@pytest.mark.parametrize("err, status, phrase, logged", [
    (ValueError("--steps must be positive, got 0"), 2, "unnoise fake: error: --steps must be positive", False),
    (FileNotFoundError(2, "No such file or directory", "/no/data.npy"), 2,
     "error: /no/data.npy: No such file or directory", False),
    (OSError(errno.ENOSPC, "could not write out.npy: No space left on device; the previous out.npy is intact"), 1,
     "error: could not write out.npy: No space left on device; the previous out.npy is intact", False),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x.png"), 1, "/mnt/ro/x.png: Read-only file system", False),
    (KeyboardInterrupt(), 130, "unnoise fake: interrupted", False),
    (RuntimeError("shape '[2, 3]' is invalid\nfor input of size 5"), 1,
     "unnoise fake: internal error: RuntimeError: shape '[2, 3]' is invalid; the traceback is in", True),
])
def test_cli_main_prints_one_line(tmp_path, monkeypatch, capsys, err, status, phrase, logged):
    def parser():
        p = argparse.ArgumentParser(prog="unnoise")
        sub = p.add_subparsers(dest="command")
        sub.add_parser("fake").set_defaults(func=_raise(err))
        return p
    monkeypatch.setattr(cli, "build_parser", parser)
    monkeypatch.setenv("UNNOISE_LOG_DIR", str(tmp_path / "logs"))
    assert cli.main(["fake"]) == status
    out = capsys.readouterr()
    assert out.err.count("\n") == 1 and "Traceback" not in out.err and phrase in out.err, out.err
    logs = sorted((tmp_path / "logs").glob("unnoise-*.log")) if (tmp_path / "logs").exists() else []
    assert bool(logs) == logged
    if logged:
        assert str(logs[0]) in out.err
        text = logs[0].read_text()
        assert "Traceback" in text and "for input of size 5" in text and "command: unnoise fake" in text


@pytest.mark.parametrize("device, phrase", [("tpu", "unknown device 'tpu'"), ("meta", "not supported"),
                                            ("cuda:99", "CUDA")])
def test_unknown_or_missing_devices_are_one_line(device, phrase):
    with pytest.raises(ValueError, match=phrase) as info:
        resolve_device(device)
    one_line(info.value)
    assert resolve_device("cpu") == torch.device("cpu")


def test_cli_device_tpu_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--data", "ring", "--num-points", "100", "--steps", "1", "--device", "tpu",
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "unnoise train: error: unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"
