"""Scaling the training loop: N processes = one process with the global batch, gradient
accumulation = the full batch, the LR schedule's closed form, mixed precision, metrics/previews."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import unnoise
from unnoise.data.memory import TensorDataset
from unnoise.cli import main as cli_main
from unnoise.train import EpochSampler, TrainConfig, Trainer, lr_at

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
TRAIN_ARGS = ["--data", "ring", "--num-points", "600", "--width", "32", "--depth", "1", "--steps", "12",
              "--batch-size", "64", "--device", "cpu", "--log-every", "4", "--checkpoint-every", "0",
              "--lr", "3e-3", "--ema-decay", "0.9"]


def small_trainer(run_dir=None, n=400, labels=False, **overrides):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = unnoise.data.toy_dataset("moons", n, g)
    lab = (data[:, 0] > 0).long() if labels else None
    net = unnoise.nets.build("mlp", shape=[2], width=32, depth=1, num_classes=2 if labels else 0,
                             dropout=overrides.pop("dropout", 0.0))
    cfg = TrainConfig(**{"steps": 10, "batch_size": 64, "device": "cpu", "log_every": 5, "lr": 3e-3,
                         "ema_decay": 0.9, **overrides})
    data = TensorDataset(data, None if lab is None else {"label": lab})
    return Trainer(unnoise.Denoiser(net), unnoise.schedules.get("ddpm"), data, cfg, run_dir=run_dir)


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path):
    """torchrun with 2 gloo processes (32 rows each) reaches the weights of 1 process with 64 rows."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli_main(["train", *TRAIN_ARGS, "--out", str(one)]) == 0  # 1 process: this one
    r2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                         "-m", "unnoise", "train", *TRAIN_ARGS, "--out", str(two)],
                        env=ENV, capture_output=True, text=True, timeout=120)
    assert r2.returncode == 0, r2.stderr[-3000:]
    a, b = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:  # the same update up to float summation order
        assert torch.allclose(a[k], b[k], atol=2e-5, rtol=0), (k, (a[k] - b[k]).abs().max())
    # the weights moved well beyond that tolerance, so a wrong split would show
    init = unnoise.nets.build("mlp", shape=[2], width=32, depth=1)
    assert max((a[f"model.{k}"] - v).abs().max() for k, v in init.state_dict().items()) > 1e-2
    # losses are reduced over ranks: the logged global losses agree
    la = [json.loads(s)["loss"] for s in (one / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(s)["loss"] for s in (two / "metrics.jsonl").read_text().splitlines()]
    assert len(la) == len(lb) == 3 and max(abs(x - y) for x, y in zip(la, lb)) < 1e-4
    # only rank 0 wrote: one metrics line per logged step, one checkpoint directory
    assert os.listdir(two / "checkpoints") == os.listdir(one / "checkpoints")


def test_gradient_accumulation_equals_the_full_batch():
    full, acc = small_trainer(), small_trainer(grad_accum=4)
    full.fit(progress=False)
    acc.fit(progress=False)
    diff = max((p - q).abs().max().item() for p, q in zip(full.denoiser.parameters(), acc.denoiser.parameters()))
    assert diff < 1e-5
    assert abs(full.history[-1]["loss"] - acc.history[-1]["loss"]) < 1e-5


def test_lr_schedule_closed_form():
    cfg = TrainConfig(steps=110, lr=1.0, warmup=10, lr_decay="cosine", min_lr=0.1)
    assert [lr_at(cfg, s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_at(cfg, 10) == pytest.approx(1.0)           # t = 0
    assert lr_at(cfg, 60) == pytest.approx(0.55)          # t = 1/2: min + (lr - min) / 2
    assert lr_at(cfg, 35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(cfg, 110) == pytest.approx(0.1)
    assert lr_at(TrainConfig(lr=0.3, warmup=4), 100) == 0.3  # "none": constant after warm-up
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig(lr_decay="linear").validate()
    t = small_trainer(steps=6, warmup=3, lr_decay="cosine")
    t.fit(progress=False)
    assert t.opt.param_groups[0]["lr"] == pytest.approx(lr_at(t.config, 5))


def test_bf16_autocast_matches_fp32_loss_and_fp16_needs_cuda():
    """Same weights, same batch: bf16 autocast (8 mantissa bits) changes the loss by well under 2%."""
    losses = {}
    for precision in ("fp32", "bf16"):
        t = small_trainer(precision=precision, steps=1)
        losses[precision] = t.step()
    assert abs(losses["bf16"] - losses["fp32"]) < 0.02 * losses["fp32"]
    assert losses["bf16"] != losses["fp32"]  # autocast really ran in bf16
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
            small_trainer(precision="fp16")
    with pytest.raises(ValueError, match="divisible"):
        small_trainer(batch_size=30, grad_accum=4)


def test_compile_traces_the_same_computation():
    """torch.compile (graph capture by dynamo; the "eager" backend keeps this test fast on CPU)."""
    plain, compiled = small_trainer(steps=3), small_trainer(steps=3, compile=True, compile_backend="eager")
    assert type(compiled.model).__name__ == "OptimizedModule"
    plain.fit(progress=False)
    compiled.fit(progress=False)
    for p, q in zip(plain.denoiser.parameters(), compiled.denoiser.parameters()):
        assert torch.allclose(p, q, atol=1e-6, rtol=0)


def test_epoch_sampler_visits_every_example_once_per_epoch():
    s = EpochSampler(10, seed=3)
    first = torch.cat([s.indices(0, 4), s.indices(4, 4), s.indices(8, 2)])
    assert sorted(first.tolist()) == list(range(10)) and s.state(10) == {"epoch": 1, "offset": 0, "num_examples": 10}
    crossing = s.indices(10, 13)  # epoch 1 whole, then 3 of epoch 2
    assert sorted(crossing[:10].tolist()) == list(range(10)) and s.state(23)["offset"] == 3
    assert not torch.equal(crossing[:10], first)  # a new permutation every epoch
    # a batch is a pure function of its position: a fresh sampler (a resumed run) reads the same
    assert torch.equal(EpochSampler(10, seed=3).indices(17, 7), torch.cat([crossing, s.indices(23, 7)])[7:14])
    with pytest.raises(ValueError, match="same data"):
        EpochSampler(11, 3).check_state(s.state(23))


def test_metrics_jsonl_and_sample_previews(tmp_path):
    t = small_trainer(str(tmp_path), steps=10, log_every=5, sample_every=10, warmup=4)
    t.fit(progress=False)
    records = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10]
    for r in records:
        assert {"loss", "loss_smooth", "lr", "grad_norm", "examples_per_s", "skipped_steps"} <= set(r)
        assert r["lr"] == pytest.approx(lr_at(t.config, r["step"] - 1)) and r["skipped_steps"] == 0
        assert r["grad_norm"] > 0 and r["examples_per_s"] > 0
    png = tmp_path / "samples" / "step_00000010.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "loss.png").exists()
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="pip install tensorboard"):
            small_trainer(tensorboard=True)
