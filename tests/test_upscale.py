"""Super-resolution: box downsampling, the low-res lookup, checkpoints and the command."""
import numpy as np
import pytest
import torch

from unnoise.upscale import downsample, lowres_dataset


def test_downsample_is_the_box_mean():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    low = downsample(x, 2)
    assert low.shape == (2, 3, 2, 2)
    assert low[1, 2, 1, 0] == x[1, 2, 2:4, 0:2].mean()
    with pytest.raises(ValueError, match="divisible"):
        downsample(torch.zeros(1, 3, 5, 5), 2)


def test_low_res_condition_reaches_the_unet_and_is_never_dropped():
    """Items are (high, {"concat": box-downsampled high}); the Trainer passes the low-res image to the U-Net
    in every row even with condition dropout on (it has no null value)."""
    from unnoise import nets, schedules
    from unnoise.denoiser import Denoiser
    from unnoise.train import TrainConfig, Trainer
    torch.manual_seed(0)
    images = torch.rand(8, 3, 8, 8) * 2 - 1
    data = lowres_dataset(images, 2)
    x3, c3 = data[3]
    assert torch.equal(x3, images[3]) and torch.equal(c3["concat"], downsample(images[3:4], 2)[0])
    net = nets.build("unet", shape=[3, 8, 8], base_channels=8, channel_mult=[1, 2], attention_levels=[], cond_channels=3)
    den = Denoiser(net, "v", "vp")
    assert den.nulls == {}
    t = Trainer(den, schedules.get("ddpm"), data, TrainConfig(steps=1, batch_size=8, cond_dropout=0.5, device="cpu"))
    seen, forward = [], net.forward
    net.forward = lambda xin, c_noise, cond: seen.append(cond) or forward(xin, c_noise, cond)
    t.fit(progress=False)
    idx = t.sampler.indices(0, 8)
    assert torch.equal(seen[0]["concat"], downsample(images[idx], 2))
    with pytest.raises(ValueError, match="concat"):
        net(images[:2], torch.zeros(2), None)


def test_cli_train_and_upscale(tmp_path):
    from unnoise.cli import main
    run = str(tmp_path / "sr")
    assert main(["upscale", "--train", "--data", "shapes", "--num-images", "32", "--image-size", "16", "--factor", "2",
                 "--base-channels", "8", "--train-steps", "2", "--batch-size", "8", "--out", run, "--device", "cpu"]) == 0
    low = np.random.default_rng(0).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "low.npy", low)
    out = str(tmp_path / "high.npy")
    assert main(["upscale", "--checkpoint", run, "--input", str(tmp_path / "low.npy"), "--out", out, "--steps", "2",
                 "--device", "cpu"]) == 0
    high = np.load(out)
    assert high.shape == (2, 1, 3, 16, 16) and np.abs(high).max() <= 1
    assert main(["upscale", "--out", out]) == 2
