"""No host reads in the hot path: ``Trainer.step`` between log steps and the sampler loop of ``unnoise.sample`` read
nothing back from tensors (on a GPU each read drains the queue of launched work).

On the CPU a read costs nothing, so the tests count them: every way Python takes a value out of a tensor
(``item``, ``tolist``, ``__bool__``, ``__float__``, ``__int__``, ``__index__``, ``cpu``, ``numpy``) is wrapped while
the steps run.  On CUDA the same runs go under ``torch.cuda.set_sync_debug_mode("error")``, which also catches
synchronisations inside torch's own C++ (blocking copies, ``nonzero``)."""
import contextlib
import inspect

import pytest
import torch

import unnoise
from unnoise.data.images import flip_rows
from unnoise.data.memory import TensorDataset
from unnoise.train import TrainConfig, Trainer
from unnoise.train import trainer as trainer_module

READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")


@contextlib.contextmanager
def host_reads(exempt=lambda tensor: False):
    """Count every read of a tensor's values into Python while the block runs (the list of names read), except
    reads of the tensors ``exempt`` accepts."""
    seen: list[str] = []
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counting(name, fn):
        def wrapper(self, *args, **kwargs):
            if not exempt(self):
                seen.append(name)
            return fn(self, *args, **kwargs)
        return wrapper

    for name, fn in originals.items():
        setattr(torch.Tensor, name, counting(name, fn))
    try:
        yield seen
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)


def vector_trainer(precision="fp32", conditional=False, augment=False, **overrides):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = unnoise.data.toy_dataset("moons", 256, g)
    cond = {"label": (data[:, 0] > 0).long()} if conditional else None
    net = unnoise.nets.build("mlp", shape=[2], width=32, depth=1, num_classes=2 if conditional else 0, dropout=0.1)
    cfg = TrainConfig(**{"steps": 10, "batch_size": 32, "device": "cpu", "log_every": 5, "lr": 3e-3,
                         "ema_decay": 0.9, "cond_dropout": 0.2, "grad_accum": 2, "precision": precision,
                         "warmup": 2, "lr_decay": "cosine", **overrides})
    hook = (lambda x0, u: torch.where((u < 0.5)[:, None], -x0, x0)) if augment else None
    return Trainer(unnoise.Denoiser(net), unnoise.schedules.get("ddpm"), TensorDataset(data, cond), cfg,
                   augment=hook)


def image_trainer(precision="fp32", **overrides):
    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    labels = torch.arange(16) % 3
    net = unnoise.nets.build("unet", shape=[1, 8, 8], base_channels=8, channel_mult=[1, 2], num_res_blocks=1,
                             attention_levels=[], num_classes=3)
    cfg = TrainConfig(steps=10, batch_size=8, device="cpu", log_every=5, lr=1e-3, cond_dropout=0.1,
                      precision=precision, **overrides)
    return Trainer(unnoise.Denoiser(net), unnoise.schedules.get("ddpm"), TensorDataset(x, {"label": labels}), cfg,
                   augment=flip_rows)


CASES = [("fp32", False, False), ("fp32", True, True), ("bf16", False, True), ("bf16", True, False)]


@pytest.mark.parametrize("fused", [False, True], ids=["default_adamw", "fused_adamw"])
@pytest.mark.parametrize("precision, conditional, augment", CASES)
def test_trainer_steps_read_nothing_back_between_log_steps(monkeypatch, precision, conditional, augment, fused):
    """Fused AdamW (the path of every accelerator, forced here on the CPU): zero reads between log points, and
    fit() reads once per log point (the ledger), nothing else.  The CPU's default AdamW path reads one bool a step,
    the skip decision (host memory there, so free; it keeps the CPU results bitwise those of before), and
    torch.optim's own host-side step counters (``step_t.item()``), told apart by identity."""
    monkeypatch.setattr(trainer_module, "fused_optimizer", lambda device: fused)
    t = vector_trainer(precision, conditional, augment)
    assert t._fused is fused
    per_step = [] if fused else ["__bool__"]

    def step_counter(tensor):  # the default AdamW's host-side step counters
        return any(tensor is s.get("step") for s in t.opt.state.values())

    with host_reads(step_counter) as seen:
        for _ in range(4):
            t.step()
    assert seen == per_step * 4 and t.step_count == 4

    # through fit(): besides those, reads only at the log points (steps 5 and 10), one each
    t.config.steps = 10
    with host_reads(step_counter) as seen:
        t.fit(progress=False)
    assert [r for r in seen if r != "__bool__" or fused] == ["tolist", "tolist"], seen
    assert seen.count("__bool__") == (0 if fused else 6)
    assert [h["step"] for h in t.history] == [5, 10] and t.skipped_steps == 0


def test_image_trainer_steps_read_nothing_back(monkeypatch):
    """A U-Net on images with class labels, label dropout and the flip augmentation, in bf16, fused AdamW."""
    monkeypatch.setattr(trainer_module, "fused_optimizer", lambda device: True)
    t = image_trainer("bf16")
    with host_reads() as seen:
        for _ in range(3):
            t.step()
    assert seen == []


def test_a_nan_step_is_skipped_on_the_device_and_leaves_weights_ema_and_optimizer_exactly(monkeypatch):
    """A NaN injected at step k: the weights, the EMA and the optimizer state are exactly those before k, read
    back only afterwards; with both optimizer paths."""
    for fused in (False, True):
        monkeypatch.setattr(trainer_module, "fused_optimizer", lambda device: fused)
        t = vector_trainer()
        for _ in range(3):
            t.step()
        before = ([p.detach().clone() for p in t.denoiser.parameters()],
                  [p.detach().clone() for p in t.ema.parameters()],
                  {k: v.clone() for s in t.opt.state.values() for k, v in s.items()})
        t.augment = lambda x0, u: x0 * float("nan")
        with host_reads() as seen:
            loss = t.step()
        if fused:
            assert seen == []
        assert not torch.isfinite(loss)
        after = (list(t.denoiser.parameters()), list(t.ema.parameters()),
                 {k: v for s in t.opt.state.values() for k, v in s.items()})
        assert all(torch.equal(a, b) for a, b in zip(before[0], after[0]))
        assert all(torch.equal(a, b) for a, b in zip(before[1], after[1]))
        assert all(torch.equal(before[2][k], after[2][k]) for k in before[2])
        assert t.skipped_steps == 1 and t.bad_in_row == 1
        t.augment = None
        t.step()  # a good step counts again
        assert t.skipped_steps == 1 and t.bad_in_row == 0


def test_divergence_is_noticed_at_the_next_read_with_nothing_updated_after_it(monkeypatch):
    t = vector_trainer(steps=20, log_every=10, max_bad_steps=3)
    frozen = {}

    def poison(x0, u):
        if t.step_count == 5:  # max_bad_steps = 3 bad steps (2, 3, 4) done: diverged at step 5
            frozen["weights"] = [p.detach().clone() for p in t.denoiser.parameters()]
            frozen["ema"] = [p.detach().clone() for p in t.ema.parameters()]
        return x0 * float("inf") if t.step_count >= 2 and t.step_count != 6 else x0  # step 7 good
    t.augment = poison
    with pytest.raises(unnoise.train.TrainingDiverged, match=r"3 steps in a row.*\(step 5, noticed at step 10"):
        t.fit(progress=False)
    assert all(torch.equal(a, b) for a, b in zip(frozen["weights"], t.denoiser.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(frozen["ema"], t.ema.parameters()))


SAMPLERS = ["ddim", "ddpm", "euler", "heun", "edm", "euler_maruyama", "pc", "langevin", "gradient_estimation",
            "flow_euler", "flow_heun", "dpmpp_2m", "dpmpp_3m", "deis", "lms", "ipndm"]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_the_sampler_loop_reads_nothing_back_per_step(sampler):
    """``unnoise.sample`` reads a fixed handful of values (the grid, the start's finiteness, the final NaN check),
    the same for 4 and 16 steps: nothing per step.  (``unipc`` solves its coefficients in small float64 host
    tensors and ``rk45`` controls its step size from the state, so they are left out.)"""
    torch.manual_seed(0)
    net = unnoise.nets.build("mlp", shape=[2], width=16, depth=1)
    den = unnoise.Denoiser(net).eval()
    sched = unnoise.schedules.get("ddpm")
    counts = []
    for steps in (4, 16):
        x = torch.randn(8, 2, generator=torch.Generator().manual_seed(1)) * float(sched.sigma_max)
        sig = sched.sampling_sigmas(steps)
        with host_reads() as seen:
            unnoise.sample(den, x, sig, sampler=sampler, generator=torch.Generator().manual_seed(2))
        counts.append(list(seen))
    assert counts[0] == counts[1], counts
    assert len(counts[0]) <= 8, counts[0]


def test_a_nan_in_the_sampler_is_reported_once_at_the_end_naming_the_first_bad_step():
    sig = unnoise.schedules.get("karras").sampling_sigmas(6)
    calls = []

    def bad(x, sigma):
        calls.append(1)
        return 0.5 * x + torch.where(sigma[:, None] < 5, float("nan"), 0.0)

    with host_reads() as seen:
        with pytest.raises(ValueError, match=r"NaN or inf at call \d+ \(step \d+ of 6"):
            unnoise.sample(bad, torch.randn(4, 2) * 80, sig, sampler="ipndm")
    assert len(calls) == 6  # ran to the end: the check is one read after the loop
    assert len(seen) <= 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_steps_and_sampling_do_not_synchronise():
    t = vector_trainer(device="cuda")
    t.step()  # warm-up: lazy state, the first epoch's permutation
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            t.step()
        x = torch.randn(8, 2, device="cuda") * 80
        den = t.ema
        sig = unnoise.schedules.get("ddpm").sampling_sigmas(8)
        for sampler in SAMPLERS + ["unipc"]:
            fn = unnoise.samplers.core._get(sampler)
            kwargs = {"generator": torch.Generator("cuda").manual_seed(0)} \
                if "generator" in inspect.signature(fn).parameters else {}
            counted = unnoise.samplers.CountingDenoiser(den, None, sig)
            with torch.no_grad():
                fn(counted, x, sig.tolist(), **kwargs)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_the_fused_path_trains_as_the_default_path(monkeypatch):
    """The accelerators' path (fused AdamW, EMA weighted by the device flag) matches the CPU's default path to
    float rounding: the same batches, the same updates."""
    runs = []
    for fused in (False, True):
        monkeypatch.setattr(trainer_module, "fused_optimizer", lambda device: fused)
        t = vector_trainer(cond_dropout=0.0)
        for _ in range(6):
            t.step()
        runs.append(t)
    for a, b in zip(runs[0].denoiser.parameters(), runs[1].denoiser.parameters()):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)
    for a, b in zip(runs[0].ema.parameters(), runs[1].ema.parameters()):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)
    assert max((a - b).abs().max() for a, b in zip(runs[1].denoiser.parameters(),
                                                  vector_trainer().denoiser.parameters())) > 1e-3  # it moved
