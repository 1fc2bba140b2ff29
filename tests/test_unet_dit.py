"""U-Net (1-D/2-D/3-D) and DiT backbones: shapes on non-square sizes, clear size errors, zero-initialised
outputs, config round trips, attention masking, concatenated conditioning, checkpoints."""
import pytest
import torch

from unnoise import checkpoint, nets, schedules
from unnoise.denoiser import Denoiser

TINY = dict(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,), num_heads=2)


def randomise_outputs(net, seed=0):
    """Fresh nets are zero-initialised at the output; give every parameter random values to test wiring."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("shape", [(2, 12), (3, 6, 10), (1, 4, 6, 2)])
def test_unet_shapes_1d_2d_3d_non_square(shape):
    torch.manual_seed(0)
    net = nets.build("unet", shape=shape, num_classes=3, **TINY)
    assert net.dims == len(shape) - 1
    x = torch.randn(2, *shape)
    out = net(x, torch.tensor([-1.0, 0.5]), torch.tensor([0, 3]))  # 3 = null class
    assert out.shape == x.shape
    # output convolution is zero-initialised: a fresh network predicts exactly 0
    assert torch.count_nonzero(out) == 0
    randomise_outputs(net)
    out = net(x, torch.tensor([-1.0, 0.5]), torch.tensor([0, 3]))
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().sum() > 0


def test_unet_single_level_accepts_odd_sizes():
    net = nets.build("unet", shape=(1, 7, 5), base_channels=8, channel_mult=(1,), num_res_blocks=1,
                     attention_levels=(0,), num_heads=2)
    assert net(torch.randn(3, 1, 7, 5), torch.zeros(3)).shape == (3, 1, 7, 5)


def test_unet_size_errors_are_clear():
    with pytest.raises(ValueError, match="divisible by 4"):
        nets.build("unet", shape=(1, 10, 16), base_channels=8, channel_mult=(1, 2, 2))
    net = nets.build("unet", in_channels=1, dims=1, base_channels=8, channel_mult=(1, 2, 2))
    with pytest.raises(ValueError, match=r"size \(18,\) cannot be halved 2 times"):
        net(torch.randn(1, 1, 18), torch.zeros(1))
    with pytest.raises(ValueError, match="expects input"):
        net(torch.randn(1, 2, 16), torch.zeros(1))
    with pytest.raises(ValueError, match="dims must be 1, 2 or 3"):
        nets.build("unet", in_channels=1, dims=4)


def test_unet_config_rebuilds_identical_network():
    torch.manual_seed(1)
    net = randomise_outputs(nets.build("unet", shape=(1, 8, 8), num_classes=4, context_dim=6, cond_channels=1,
                                       dropout=0.1, **TINY)).eval()
    twin = nets.build(nets.name_of(net), **net.config).eval()
    twin.load_state_dict(net.state_dict())
    x, c = torch.randn(2, 1, 8, 8), torch.randn(2)
    cond = {"label": torch.tensor([1, 4]), "context": torch.randn(2, 3, 6), "concat": torch.randn(2, 1, 4, 4)}
    assert torch.equal(net(x, c, cond), twin(x, c, cond))


def test_cross_attention_respects_context_mask():
    torch.manual_seed(2)
    net = randomise_outputs(nets.build("unet", shape=(1, 8, 8), context_dim=4, **TINY)).eval()
    x, c = torch.randn(2, 1, 8, 8), torch.zeros(2)
    ctx = torch.randn(2, 5, 4)
    mask = torch.tensor([[True, True, False, False, False]] * 2)
    base = net(x, c, {"context": ctx, "context_mask": mask})
    hidden = ctx.clone()
    hidden[:, 3] += 10.0  # a masked-out token: no effect
    assert torch.allclose(net(x, c, {"context": hidden, "context_mask": mask}), base, atol=1e-5)
    visible = ctx.clone()
    visible[:, 0] += 10.0  # an attended token: changes the output
    assert (net(x, c, {"context": visible, "context_mask": mask}) - base).abs().max() > 1e-3
    # no context = the unconditional network (cross-attention skipped)
    assert (net(x, c, None) - base).abs().max() > 1e-3


def test_concat_conditioning_is_resized_and_required():
    torch.manual_seed(3)
    net = randomise_outputs(nets.build("unet", shape=(1, 8, 8), cond_channels=1, **TINY)).eval()
    x = torch.randn(2, 1, 8, 8)
    low = torch.randn(2, 1, 4, 4)
    up = torch.nn.functional.interpolate(low, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(net(x, torch.zeros(2), {"concat": low}), net(x, torch.zeros(2), {"concat": up}))
    with pytest.raises(ValueError, match="extra input channel"):
        net(x, torch.zeros(2), None)


def test_class_label_changes_output_and_null_is_default():
    torch.manual_seed(4)
    net = randomise_outputs(nets.build("unet", shape=(1, 8, 8), num_classes=2, **TINY)).eval()
    x, c = torch.randn(1, 1, 8, 8), torch.zeros(1)
    assert torch.equal(net(x, c, None), net(x, c, torch.tensor([2])))  # missing labels = null class
    assert (net(x, c, torch.tensor([0])) - net(x, c, torch.tensor([1]))).abs().max() > 1e-4


@pytest.mark.parametrize("size,patch", [((6, 10), 2), ((12, 8), 4)])
def test_dit_shapes_and_zero_init(size, patch):
    torch.manual_seed(5)
    net = nets.build("dit", shape=(3, *size), patch_size=patch, hidden_size=32, depth=2, num_heads=4, num_classes=5)
    x = torch.randn(2, 3, *size)
    out = net(x, torch.zeros(2), torch.tensor([1, 5]))
    assert out.shape == x.shape and torch.count_nonzero(out) == 0  # adaLN-Zero + zero final layer
    randomise_outputs(net)
    out = net(x, torch.zeros(2), torch.tensor([1, 5]))
    assert torch.isfinite(out).all() and out.abs().sum() > 0


def test_dit_patches_are_local_before_attention():
    """With zero-depth (no attention), each output patch depends only on its own input patch."""
    torch.manual_seed(6)
    net = randomise_outputs(nets.build("dit", shape=(1, 4, 6), patch_size=2, hidden_size=16, depth=0, num_heads=2))
    x = torch.randn(1, 1, 4, 6)
    y = x.clone()
    y[..., 0:2, 0:2] += 1.0  # perturb patch (0, 0) only
    diff = (net(y, torch.zeros(1)) - net(x, torch.zeros(1))).abs()
    assert diff[..., 0:2, 0:2].sum() > 0
    diff[..., 0:2, 0:2] = 0
    assert diff.max() == 0


def test_dit_size_errors_are_clear():
    with pytest.raises(ValueError, match="divisible by 4"):
        nets.build("dit", shape=(1, 10, 12), patch_size=4)
    net = nets.build("dit", in_channels=1, patch_size=2, hidden_size=16, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.randn(1, 1, 5, 6), torch.zeros(1))
    with pytest.raises(ValueError, match="2-D data"):
        nets.build("dit", shape=(1, 8))


def test_checkpoint_round_trip_and_summary(tmp_path):
    torch.manual_seed(7)
    for name, cfg in (("unet", TINY), ("dit", dict(hidden_size=16, depth=1, num_heads=2))):
        net = randomise_outputs(nets.build(name, shape=(1, 8, 8), num_classes=3, **cfg))
        den = Denoiser(net, "v", "vp", 0.5)
        sched = schedules.get("cosine")
        checkpoint.save(str(tmp_path / name), den, sched)
        loaded, _, _ = checkpoint.load(str(tmp_path / name))
        x = torch.randn(2, 1, 8, 8)
        assert torch.equal(den.eval()(x, 0.7, torch.tensor([0, 2])), loaded(x, 0.7, torch.tensor([0, 2])))
        text = nets.summary(net)
        assert f"{nets.count_parameters(net):,}" in text and type(net).__name__ in text
