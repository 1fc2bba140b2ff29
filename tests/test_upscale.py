"""Super-resolution: box downsampling, the low-res lookup, checkpoints and the command."""
import numpy as np
import pytest
import torch

from unnoise.upscale import UpscaleNet, downsample


def test_downsample_is_the_box_mean():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    low = downsample(x, 2)
    assert low.shape == (2, 3, 2, 2)
    assert low[1, 2, 1, 0] == x[1, 2, 2:4, 0:2].mean()
    with pytest.raises(ValueError, match="divisible"):
        downsample(torch.zeros(1, 3, 5, 5), 2)


def test_table_lookup_equals_explicit_low_res_and_is_not_saved():
    torch.manual_seed(0)
    net = UpscaleNet(dict(shape=[3, 8, 8], base_channels=8, channel_mult=[1, 2], attention_levels=[]), factor=2).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    low = torch.randn(5, 3, 4, 4)
    net.set_table(low)
    x, c = torch.randn(2, 3, 8, 8), torch.zeros(2)
    assert torch.allclose(net(x, c, torch.tensor([3, 1])), net(x, c, {"concat": low[[3, 1]]}), atol=1e-6)
    assert not torch.allclose(net(x, c, torch.tensor([3, 1])), net(x, c, torch.tensor([0, 2])), atol=1e-4)
    assert "lowres_table" not in net.state_dict()
    with pytest.raises(ValueError, match="low-resolution"):
        UpscaleNet(dict(shape=[3, 8, 8], base_channels=8, channel_mult=[1], attention_levels=[])).eval()(x, c, None)


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
