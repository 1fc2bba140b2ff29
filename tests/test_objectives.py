"""The classifier and the autoencoder train through the one Trainer: exact resume after a stop,
metrics.jsonl with the objective's own metrics, the common run format with its kind."""
import json
import os
import signal

import pytest
import torch

from unnoise import schedules
from unnoise.guidance import NoisyClassifier, load_classifier, train_classifier
from unnoise.latent import LatentCodec
from unnoise.nets.autoencoder import Autoencoder, estimate_latent_scale, fit_autoencoder, load_autoencoder
from unnoise.train import TrainConfig


def interrupt_at(step):
    """An augment hook that delivers a real SIGINT during step ``step`` (it runs once per step)."""
    calls = [0]

    def hook(x0, u):
        calls[0] += 1
        if calls[0] == step + 1:
            os.kill(os.getpid(), signal.SIGINT)
        return x0
    return hook


def config(**overrides):
    return TrainConfig(**{"steps": 8, "batch_size": 8, "lr": 3e-3, "ema_decay": 0.9, "grad_accum": 2,
                          "lr_decay": "cosine", "warmup": 2, "checkpoint_every": 0, "log_every": 2,
                          "cond_dropout": 0.0, "device": "cpu", **overrides})


def assert_bitwise(a, b):
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def metrics(run):
    return [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]


def test_classifier_resumes_exactly_and_logs_accuracy(tmp_path):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    data = torch.randn(40, 3, 8, 8, generator=g) + labels[:, None, None, None]
    sched = schedules.get("ddpm")

    def make():
        torch.manual_seed(0)
        return NoisyClassifier([3, 8, 8], 2, width=8, depth=2, sigma_data=1.0)
    ref_run, run = str(tmp_path / "ref"), str(tmp_path / "run")
    ref = train_classifier(make(), data, labels, sched, config=config(), run_dir=ref_run, progress=False)
    first = train_classifier(make(), data, labels, sched, config=config(), run_dir=run, progress=False,
                             augment=interrupt_at(4))
    assert first.stopped_by == "SIGINT" and first.step_count == 5
    torch.manual_seed(123)  # the resumed run's randomness must come from the checkpoint
    second = train_classifier(make(), data, labels, sched, config=config(resume_from=run), run_dir=run,
                              progress=False)
    assert second.step_count == 8
    assert_bitwise(ref.denoiser.state_dict(), second.denoiser.state_dict())
    assert_bitwise(ref.ema.state_dict(), second.ema.state_dict())
    lines = metrics(run)
    assert [m["step"] for m in lines] == [2, 4, 6, 8]
    assert all(0 <= m["accuracy"] <= 1 and m["loss"] > 0 for m in lines)
    assert [m["accuracy"] for m in lines] == [m["accuracy"] for m in metrics(ref_run)]
    loaded, cfg = load_classifier(run)
    assert cfg["kind"] == "classifier" and cfg["step"] == 8 and cfg["objective"]["name"] == "cross_entropy"
    assert_bitwise(loaded.state_dict(), ref.ema.state_dict())
    with pytest.raises(ValueError, match="not a autoencoder"):
        load_autoencoder(run)


def test_autoencoder_resumes_exactly_and_writes_its_latent_scale(tmp_path):
    g = torch.Generator().manual_seed(1)
    data = torch.tanh(torch.randn(32, 3, 8, 8, generator=g))

    def make():
        torch.manual_seed(0)
        return Autoencoder(3, latent_channels=2, downsample=2, channels=8)
    ref_run, run = str(tmp_path / "ref"), str(tmp_path / "run")
    ref = fit_autoencoder(make(), data, config=config(), run_dir=ref_run, progress=False)
    first = fit_autoencoder(make(), data, config=config(), run_dir=run, progress=False, augment=interrupt_at(4))
    assert first.stopped_by == "SIGINT" and first.step_count == 5
    with pytest.raises(ValueError, match="did not finish"):  # no latent scale before training ends
        LatentCodec.from_dir(run)
    torch.manual_seed(123)
    second = fit_autoencoder(make(), data, config=config(resume_from=run), run_dir=run, progress=False)
    assert_bitwise(ref.denoiser.state_dict(), second.denoiser.state_dict())
    assert_bitwise(ref.ema.state_dict(), second.ema.state_dict())
    lines = metrics(run)
    assert [m["step"] for m in lines] == [2, 4, 6, 8]
    assert [(m["recon"], m["kl"]) for m in lines] == [(m["recon"], m["kl"]) for m in metrics(ref_run)]
    assert all(m["loss"] == pytest.approx(m["recon"] + 1e-6 * m["kl"], rel=1e-5) for m in lines)
    codec = LatentCodec.from_dir(run)
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["kind"] == "autoencoder" and "schedule" not in cfg and cfg["objective"]["loss"] == "l1"
    assert (codec.scale, codec.shift) == estimate_latent_scale(second.ema, data)
    assert os.path.exists(os.path.join(run, "checkpoints", "step_00000008", "state.safetensors"))


def test_version_1_classifier_and_autoencoder_directories_still_load(tmp_path):
    """Directories written before the common run format (classifier.json, autoencoder.json) still load."""
    from safetensors.torch import save_file
    torch.manual_seed(0)
    clf = NoisyClassifier([2], 2, width=8, depth=1)
    ae = Autoencoder(3, latent_channels=2, downsample=2, channels=8)
    for name, model, extra in (("classifier", clf, {"class_names": ["a", "b"]}), ("autoencoder", ae,
                                                                                  {"scale": 0.5, "shift": 0.1})):
        d = tmp_path / name
        d.mkdir()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / f"{name}.safetensors"))
        (d / f"{name}.json").write_text(json.dumps({"format": f"unnoise-{name}", "version": 1,
                                                    "config": model.config, **extra}))
    loaded, cfg = load_classifier(str(tmp_path / "classifier"))
    assert cfg["class_names"] == ["a", "b"] and cfg["kind"] == "classifier"
    assert_bitwise(loaded.state_dict(), clf.state_dict())
    codec = LatentCodec.from_dir(str(tmp_path / "autoencoder"))
    assert (codec.scale, codec.shift) == (0.5, 0.1)
    assert_bitwise(codec.autoencoder.state_dict(), ae.state_dict())
