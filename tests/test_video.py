"""Video: prediction and interpolation are exact with an exact denoiser (a Gaussian AR(1) video), known
frames come back bitwise and cost no loss, the temporal layers see frame order, the moving digits are
what they claim, GIFs round-trip, bad input is one line, and a tiny run trains and predicts."""
from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
import pytest
import torch

from unnoise import cli, nets, schedules, video
from unnoise.analytic import GaussianMixture
from unnoise.commands import train as train_command
from unnoise.commands import train_common
from unnoise.commands.train_video import run_video
from unnoise.data.video import (MovingDigits, VideoArray, VideoFolder, WithStills, center_on_ink, read_clip, read_gif,
                                video_dataset, write_gif, write_strip)
from unnoise.denoiser import Denoiser, expand_sigma
from unnoise.train import TrainConfig, Trainer

RHO = 0.8
SIGMAS = torch.cat([torch.exp(torch.linspace(math.log(80.0), math.log(0.002), 60)), torch.zeros(1)])


class ExactAR1Video:
    """The exact conditional denoiser ``D(x, sigma, {"frames": known})`` of clips ``(B, 1, T, 1, 1)`` whose
    pixel is a stationary AR(1) process ``x_{k+1} = rho x_k + sqrt(1 - rho^2) eta``: given the known frames
    (clean), the others are Gaussian with the conditional mean and covariance, whose exact denoiser is a
    one-component :class:`GaussianMixture`."""

    def __init__(self, rho: float):
        self.rho = rho

    def __call__(self, x, sigma, cond=None):
        B, T = x.shape[0], x.shape[2]
        i = torch.arange(T)
        cov = self.rho ** (i[:, None] - i[None]).abs().double()
        mask = cond["frames"].bool() if cond else torch.zeros(B, T, dtype=torch.bool)
        flat, sig = x.reshape(B, T).double(), expand_sigma(sigma, x).reshape(-1).double().expand(B)
        out = flat.clone()
        for pattern in torch.unique(mask, dim=0):
            rows, k, u = (mask == pattern).all(1), pattern, ~pattern
            if not u.any():
                continue
            gain = cov[u][:, k] @ torch.linalg.inv(cov[k][:, k]) if k.any() else torch.zeros(int(u.sum()), 0, dtype=torch.float64)
            mean = flat[rows][:, k] @ gain.T
            s = cov[u][:, u] - gain @ cov[k][:, u]
            gm = GaussianMixture(torch.zeros(1, int(u.sum())), covariances=s[None])
            block = out[rows]
            block[:, u] = gm.denoise(flat[rows][:, u] - mean, sig[rows]) + mean
            out[rows] = block
        return out.reshape(x.shape).to(x.dtype)


def ar1_clips(n, frames, first):
    clip = torch.zeros(n, 1, frames, 1, 1)
    clip[:, :, 0] = first
    return clip


def test_prediction_reproduces_the_ar1_conditional_and_keeps_known_frames_bitwise():
    n, T, a = 20000, 6, 1.3
    clip = ar1_clips(n, T, a)
    out = video.predict(ExactAR1Video(RHO), clip, [0], sigmas=SIGMAS, sampler="dpmpp_2m",
                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :, 0], clip[:, :, 0])
    for j in range(1, T):
        frame = out[:, 0, j, 0, 0].double()
        mean, var = RHO**j * a, 1 - RHO ** (2 * j)
        assert abs(frame.mean() - mean) < 5 * math.sqrt(var / n), (j, float(frame.mean()), mean)
        assert abs(frame.var() / var - 1) < 0.05, (j, float(frame.var()), var)


def test_interpolation_reproduces_the_gaussian_bridge():
    n, T, a, b = 20000, 6, 1.0, -0.5
    clip = ar1_clips(n, T, a)
    clip[:, :, T - 1] = b
    out = video.predict(ExactAR1Video(RHO), clip, [0, T - 1], sigmas=SIGMAS, sampler="dpmpp_2m",
                        generator=torch.Generator().manual_seed(1))
    assert torch.equal(out[:, :, [0, T - 1]], clip[:, :, [0, T - 1]])
    m = T - 1
    for j in range(1, m):
        den = 1 - RHO ** (2 * m)
        mean = (RHO**j * (1 - RHO ** (2 * (m - j))) * a + RHO ** (m - j) * (1 - RHO ** (2 * j)) * b) / den
        var = (1 - RHO ** (2 * j)) * (1 - RHO ** (2 * (m - j))) / den
        frame = out[:, 0, j, 0, 0].double()
        assert abs(frame.mean() - mean) < 5 * math.sqrt(var / n), (j, float(frame.mean()), mean)
        assert abs(frame.var() / var - 1) < 0.05, (j, float(frame.var()), var)


def test_windows_beyond_the_model_extend_autoregressively_and_stay_exact_for_a_markov_video():
    n, a = 20000, 1.0
    clip = ar1_clips(n, 2, a)
    out = video.predict(ExactAR1Video(RHO), clip, [0], frames=11, window=4, overlap=1, sigmas=SIGMAS,
                        sampler="dpmpp_2m", generator=torch.Generator().manual_seed(3))
    assert out.shape == (n, 1, 11, 1, 1) and torch.equal(out[:, :, 0], clip[:, :, 0])
    assert video.windows(11, 4, 1) == [0, 3, 6, 7]
    for j in (3, 6, 10):  # past the first window: conditioned on generated frames only
        frame = out[:, 0, j, 0, 0].double()
        mean, var = RHO**j * a, 1 - RHO ** (2 * j)
        assert abs(frame.mean() - mean) < 5 * math.sqrt(var / n), (j, float(frame.mean()), mean)
        assert abs(frame.var() / var - 1) < 0.05, (j, float(frame.var()), var)


def test_inpainting_with_the_unconditional_denoiser_is_biased_where_conditioning_is_exact():
    """The library's other routes on the same video: replacement over-counts the known frame (its mean
    reverts to 0 far too fast); sequential Monte Carlo is asymptotically exact, and already much closer."""
    n, T, a = 1000, 4, 1.3
    errors = {}
    for method, options in (("replace", {}), ("smc", {"particles": 16})):
        out = video.predict(ExactAR1Video(RHO), ar1_clips(n, T, a), [0], sigmas=SIGMAS, method=method,
                            generator=torch.Generator().manual_seed(0), **options)
        assert torch.equal(out[:, :, 0], ar1_clips(n, T, a)[:, :, 0])
        errors[method] = abs(float(out[:, 0, 1, 0, 0].mean()) / (RHO * a) - 1)
    assert errors["replace"] > 0.3 and errors["smc"] < errors["replace"] / 3, errors


def small_denoiser(frames=4, size=8, **net):
    torch.manual_seed(0)
    model = nets.build("video_unet", shape=[1, frames, size, size], base_channels=8, channel_mult=[1, 2],
                       num_heads=2, **net)
    return Denoiser(model, "v", "vp", sigma_data=0.5)


def test_known_frames_are_kept_clean_and_contribute_zero_loss():
    den = small_denoiser()
    for p in den.parameters():  # a network whose output is not zero
        p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(3))
    objective = video.VideoObjective(p_past=1.0, p_future=0.0)
    g = torch.Generator().manual_seed(4)
    x0 = torch.rand(6, 1, 4, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(6, *objective.noise_shape(den, x0.shape[1:]), generator=g)
    sigma = torch.full((6,), 2.0)
    seen = {}
    net = den.net
    forward = net.forward

    def spy(x_in, c_noise, cond):
        seen["x_in"], seen["frames"] = x_in, cond["frames"]
        out = forward(x_in, c_noise, cond)
        seen["out"] = out
        return out
    net.forward = spy
    loss = objective(den, x0, sigma, noise, {})["loss"]
    known = seen["frames"].bool()
    assert known.any(1).all() and (~known).any(1).all()  # every clip: a known prefix, something to generate
    c_in = den.precondition(expand_sigma(sigma, x0))[2]
    m = known[:, None, :, None, None].expand_as(x0)
    assert torch.allclose(seen["x_in"][m], (c_in * x0).expand_as(x0)[m])  # known frames enter without noise

    def bumped(x_in, c_noise, cond):  # change the output on the known frames only
        out = forward(x_in, c_noise, cond)
        return torch.where(known[:, None, :, None, None], out + 100.0, out)
    net.forward = bumped
    assert torch.equal(objective(den, x0, sigma, noise, {})["loss"], loss)
    net.forward = forward


def test_frame_masks_follow_the_probabilities_and_always_leave_a_frame_to_generate():
    u = torch.rand(40000, 4, generator=torch.Generator().manual_seed(5))
    m = video.frame_masks(u, 8, 0.5, 0.25)
    past, future = m[:, 0].bool(), m[:, -1].bool()
    assert abs(past.float().mean() - 0.5) < 0.01 and abs(future.float().mean() - 0.25) < 0.01
    assert abs((~past & ~future).float().mean() - 0.375) < 0.01
    assert (m.sum(1) <= 7).all()
    # known frames are a prefix and/or a suffix: at most two switches along the clip
    assert ((m[:, 1:] != m[:, :-1]).sum(1) <= 2).all()
    assert video.frame_masks(u[:5], 1, 1.0, 1.0).sum() == 0


def test_temporal_layers_see_frame_order():
    den = small_denoiser(frames=5)
    for p in den.net.parameters():
        p.data.normal_(0, 0.1, generator=torch.Generator().manual_seed(6))
    x = torch.randn(2, 1, 5, 8, 8, generator=torch.Generator().manual_seed(7))
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        out = den.net(x, torch.zeros(2))
        shuffled = den.net(x[:, :, perm], torch.zeros(2))
        assert (shuffled - out[:, :, perm]).abs().max() > 1e-3  # not equivariant: order matters
        for module in den.net.modules():  # without the position bias attention is permutation-equivariant
            if isinstance(module, nets.video_unet.TemporalAttention):
                module.bias.zero_()
        out, shuffled = den.net(x, torch.zeros(2)), den.net(x[:, :, perm], torch.zeros(2))
        assert torch.allclose(shuffled, out[:, :, perm], atol=1e-5)
        # still images as one-frame clips / independent frames: no temporal mixing at all
        still = den.net(x, torch.zeros(2), {"stills": torch.ones(2, dtype=torch.bool)})
        single = torch.cat([den.net(x[:, :, t:t + 1], torch.zeros(2)) for t in range(5)], 2)
        assert torch.allclose(still, single, atol=1e-5)


def test_spacetime_attention_reaches_other_positions_of_other_frames_where_temporal_attention_cannot():
    g = torch.Generator().manual_seed(8)
    temporal, joint = nets.video_unet.TemporalAttention(8, 2), nets.video_unet.SpaceTimeAttention(8, 2, max_offset=2)
    for module in (temporal, joint):
        for p in module.parameters():
            p.data.normal_(0, 0.5, generator=g)
    frames, h = 3, torch.randn(2 * 3, 8, 4, 4, generator=g)  # (B*T, C, H, W)
    moved = h.clone()  # clip 0, frame 0: pixels (0, 0) and (0, 1) swapped (the frame's GroupNorm statistics stay)
    moved[0, :, 0, 0], moved[0, :, 0, 1] = h[0, :, 0, 1], h[0, :, 0, 0]
    with torch.no_grad():
        for module, reaches in ((temporal, False), (joint, True)):
            change = (module(moved, frames) - module(h, frames)).abs().amax(1)  # (B*T, H, W)
            assert (change[1, 2, 2] > 1e-4) == reaches  # frame 1, pixel (2, 2) of the same clip
            assert change[1, 0, 0] > 1e-4  # the same pixel of another frame: both reach it
            assert change[3:].max() == 0  # never another clip
        # the bias is time_bias[j - i] + space_bias[dy, dx], offsets clipped to max_offset
        bias = joint.position_bias(frames, 4, 4, h.device)  # tokens (frame, row, column)
        token = lambda t, y, x: (t * 4 + y) * 4 + x
        for (ti, yi, xi), (tj, yj, xj) in (((0, 0, 0), (2, 3, 1)), ((1, 2, 2), (0, 0, 3)), ((2, 1, 0), (2, 1, 0))):
            dy, dx = max(-2, min(2, yj - yi)), max(-2, min(2, xj - xi))
            expected = joint.time_bias[:, tj - ti + joint.max_distance] + joint.space_bias[:, dy + 2, dx + 2]
            assert torch.equal(bias[:, token(ti, yi, xi), token(tj, yj, xj)], expected)
        # still images: every frame attends to itself alone, so it is the one-frame clip's output
        stills = joint(h, frames, torch.ones(2, dtype=torch.bool))
        single = torch.stack([joint(h[i:i + 1], 1)[0] for i in range(6)])
        assert torch.allclose(stills, single, atol=1e-5)
    # a window: the keys within `window` pixels of the query in every frame, the same as the full attention with the
    # positions beyond made impossible (offsets clip to max_offset = window + 1: that bias row and column -> -1e9)
    local = nets.video_unet.SpaceTimeAttention(8, 2, max_offset=2, window=1)
    local.load_state_dict(joint.state_dict())
    with torch.no_grad():
        walled = nets.video_unet.SpaceTimeAttention(8, 2, max_offset=2)
        walled.load_state_dict(joint.state_dict())
        for i in (0, 4):
            walled.space_bias[:, i, :] = walled.space_bias[:, :, i] = -1e9
        assert torch.allclose(local(h, frames), walled(h, frames), atol=1e-5)
        still = torch.tensor([True, False])
        assert torch.allclose(local(h, frames, still), walled(h, frames, still), atol=1e-5)
        wide = nets.video_unet.SpaceTimeAttention(8, 2, max_offset=2, window=3)  # covers the 4x4 frame
        wide.load_state_dict(joint.state_dict())
        assert torch.allclose(wide(h, frames, windowed=True), joint(h, frames), atol=1e-5)
    net = nets.VideoUNet((1, 4, 8, 8), base_channels=8, channel_mult=[1, 2], spacetime_levels=[1])
    kinds = [type(m).__name__ for m in net.modules() if "Attention" in type(m).__name__ and type(m).__name__ != "AttentionBlock"]
    assert kinds.count("SpaceTimeAttention") == 4 and kinds.count("TemporalAttention") == 3  # level 1 and the middle
    with pytest.raises(ValueError, match="spacetime_levels"):
        nets.VideoUNet((1, 4, 8, 8), base_channels=8, channel_mult=[1, 2], spacetime_levels=[2])


def test_a_decay_time_bias_falls_with_the_frame_distance_and_cannot_pair_frames_two_apart():
    from unnoise.nets.video_unet import time_bias_matrix, time_bias_parameter
    g = torch.Generator().manual_seed(11)
    param = time_bias_parameter("decay", 3, 4)
    with torch.no_grad():
        param.normal_(0, 2, generator=g)
    bias = time_bias_matrix(param, "decay", 7, 4)  # (heads, T, T), distances clipped to 4
    past, future = torch.nn.functional.softplus(param[:, 0]), torch.nn.functional.softplus(param[:, 1])
    for i in range(7):
        for j in range(7):
            d = max(-4, min(4, j - i))
            expected = param[:, 2] if d == 0 else -(past if d < 0 else future) * abs(d)
            assert torch.allclose(bias[:, i, j], expected)
    # whatever the parameters, a frame two apart never gets more attention bias than the neighbour between them
    assert (bias[:, 3, 5] <= bias[:, 3, 4]).all() and (bias[:, 3, 1] <= bias[:, 3, 2]).all()
    table = time_bias_parameter("table", 3, 4)
    assert table.shape == (3, 9) and not table.any()
    # fresh decay slopes are 1/2, 1/4, ... across the heads, the same frame's bias 0
    fresh = time_bias_matrix(time_bias_parameter("decay", 2, 4), "decay", 3, 4)
    assert torch.allclose(fresh[:, 0], torch.tensor([[0.0, -0.5, -1.0], [0.0, -0.25, -0.5]]))
    net = nets.VideoUNet((1, 4, 8, 8), base_channels=8, channel_mult=[1, 2], spacetime_levels=[1], time_bias="decay")
    biased = [m for m in net.modules() if isinstance(m, (nets.video_unet.TemporalAttention,
                                                         nets.video_unet.SpaceTimeAttention))]
    assert len(biased) == 7 and all(m.time_bias_kind == "decay" for m in biased)
    assert "time_bias=decay" in net.extra_repr() and net.config["time_bias"] == "decay"
    with pytest.raises(ValueError, match="unknown time_bias 'ramp'"):
        nets.VideoUNet((1, 4, 8, 8), base_channels=8, channel_mult=[1, 2], time_bias="ramp")


def test_blur_downsampling_sees_a_dot_alike_at_both_phases_of_the_coarse_grid():
    from unnoise.nets.video_unet import BlurDownsample
    down = BlurDownsample(1)
    with torch.no_grad():  # the convolution reduced to its centre tap: what is left is blur, then every other pixel
        down.conv.weight.zero_()
        down.conv.weight[0, 0, 1, 1] = 1.0
        down.conv.bias.zero_()
        masses = []
        for y, x in ((4, 4), (5, 4), (4, 5), (5, 5)):
            dot = torch.zeros(1, 1, 10, 10)
            dot[0, 0, y, x] = 1.0
            masses.append(float(down(dot).sum()))
            plain = dot[..., ::2, ::2].sum()  # a plain stride-2 sample keeps the dot or loses it
            assert float(plain) == (1.0 if (y, x) == (4, 4) else 0.0)
        assert masses == pytest.approx([0.25] * 4)  # the blurred dot leaves the same mass at every phase
        flat = torch.full((1, 1, 6, 6), 0.7)
        assert torch.allclose(down(flat), torch.full((1, 1, 3, 3), 0.7))  # constants pass unchanged, to the edges
    net = nets.VideoUNet((1, 4, 8, 8), base_channels=8, channel_mult=[1, 2], antialias=True)
    assert sum(isinstance(m, BlurDownsample) for m in net.modules()) == 1 and "antialias" in net.extra_repr()
    assert not any(isinstance(m, BlurDownsample) for m in nets.VideoUNet((1, 4, 8, 8), channel_mult=[1, 2]).modules())


def test_moving_digits_move_with_constant_velocity_bounce_and_follow_the_seed():
    d = MovingDigits(20, frames=30, size=32, max_speed=3, seed=11)
    room = 32 - 8
    bounced = 0
    for i in range(20):
        which, pos, vel = d.trajectory(i)
        assert ((pos >= 0) & (pos <= room)).all()
        for k in range(29):
            step = pos[k] + vel[k]
            inside = (step >= 0) & (step <= room)
            expected = torch.where(inside, step, torch.where(step < 0, -step, 2 * room - step))
            assert torch.equal(pos[k + 1], expected)  # constant velocity, reflected at the walls
            assert torch.equal(vel[k + 1], torch.where(inside, vel[k], -vel[k]))
            bounced += int((~inside).sum())
        x, cond = d[i]
        assert x.shape == (1, 30, 32, 32) and cond == {}
        r, c = int(pos[5, 0, 0]), int(pos[5, 0, 1])
        digit = d.digits[which[0]] * 2 - 1
        assert torch.equal(x[0, 5, r:r + 8, c:c + 8], digit)  # the digit sits where the trajectory says
    assert bounced > 10
    again, other = MovingDigits(20, frames=30, size=32, max_speed=3, seed=11), MovingDigits(20, 30, 32, max_speed=3, seed=12)
    assert torch.equal(again[7][0], d[7][0]) and not torch.equal(other[7][0], d[7][0])
    held_out = MovingDigits(5, 10, 32, split="test")
    assert set(held_out.labels.tolist()) <= set(range(10)) and len(held_out.digits) == 1797 - 1500
    stochastic = MovingDigits(40, frames=30, size=16, max_speed=2, stochastic=True, seed=1)
    changed = 0
    for i in range(40):
        _, pos, vel = stochastic.trajectory(i)
        changed += int((vel[1:].abs() != vel[:-1].abs()).any())
    assert changed > 0  # speeds along a wall are redrawn at bounces


def test_the_window_centred_on_ink_is_the_digit_drawn_there_wherever_it_moved():
    d = MovingDigits(16, frames=10, size=16, seed=1, split="test")
    clips = d.clips()  # (16, 1, 10, 16, 16)
    crops = center_on_ink(clips[:, 0], 16)
    assert crops.shape == (16, 10, 16, 16)
    moved = 0
    for i in range(16):
        which, pos, _ = d.trajectory(i)
        assert torch.equal(d.digit_labels(i), d.labels[which])
        digit = (d.digits[which[0]] * 2 - 1).double()
        ink = (digit + 1) / 2  # the digit's own centre of ink, rounded (halves up): where the window puts it
        centre = [(ink.sum(1 - a) * torch.arange(8.0, dtype=ink.dtype)).sum() / ink.sum() for a in (0, 1)]
        r, c = (8 - int(math.floor(float(v) + 0.5)) for v in centre)
        expected = torch.full((16, 16), -1.0, dtype=torch.float64)
        expected[r:r + 8, c:c + 8] = digit
        moved += len(set(map(tuple, pos[:, 0].tolist()))) - 1
        for t in range(10):
            assert torch.equal(crops[i, t].double(), expected)  # exactly the digit, the rest black
    assert moved > 50  # the digits did move (the windows agree although the frames differ)
    assert torch.equal(center_on_ink(torch.full((2, 5, 7), -1.0), 4), torch.full((2, 4, 4), -1.0))  # blank frames
    dot = torch.full((9, 9), -1.0)
    dot[0, 8] = 1.0  # one bright pixel in a corner: the window leaves the frame and is black there
    window = center_on_ink(dot, 5)
    assert window[2, 2] == 1.0 and (window == 1.0).sum() == 1 and window.shape == (5, 5)
    with pytest.raises(ValueError, match="side"):
        center_on_ink(dot, 0)


def test_gif_round_trip_strip_and_clip_sources(tmp_path):
    clip = MovingDigits(3, frames=6, size=16, seed=0).clips(0, 3)
    path = str(tmp_path / "a.gif")
    write_gif(path, clip[0])
    back = read_gif(path)
    assert back.shape == clip[0].shape and (back - clip[0]).abs().max() <= 0.5 / 127.5 + 1e-6
    assert torch.equal(read_clip(path), back)
    write_strip(str(tmp_path / "s.png"), clip)
    assert os.path.getsize(tmp_path / "s.png") > 0
    # a folder of GIFs and frame folders, long videos cut into clips
    folder = tmp_path / "videos"
    folder.mkdir()
    write_gif(str(folder / "one.gif"), clip[1])
    frames = folder / "two"
    frames.mkdir()
    for t in range(6):
        write_strip(str(frames / f"{t:03d}.png"), clip[2][:, t:t + 1], pad=0, upscale=1)
    ds = VideoFolder(str(folder), frames=3)
    assert len(ds) == 4 and ds.shape == (1, 3, 16, 16)
    assert (ds[3][0] - clip[2][:, 3:6]).abs().max() <= 0.5 / 127.5 + 1e-6
    np.save(tmp_path / "v.npy", clip.numpy())
    arr = VideoArray(str(tmp_path / "v.npy"), frames=2)
    assert len(arr) == 9 and torch.equal(arr[4][0], clip[1][:, 2:4])
    assert len(video_dataset("moving-digits", frames=4, image_size=16, num_clips=5)) == 5


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="out of range for a clip of 4 frames"):
        video.predict(ExactAR1Video(RHO), ar1_clips(2, 4, 0.0), [0, 4], sigmas=SIGMAS)
    with pytest.raises(ValueError, match="out of range"):
        video.known_mask([-1], 1, 4)
    folder = tmp_path / "mixed" / "v"
    folder.mkdir(parents=True)
    write_strip(str(folder / "0.png"), torch.zeros(1, 1, 1, 8, 8), pad=0, upscale=1)
    write_strip(str(folder / "1.png"), torch.zeros(1, 1, 1, 16, 16), pad=0, upscale=1)
    with pytest.raises(ValueError, match="mixed sizes") as err:
        VideoFolder(str(tmp_path / "mixed"))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="mixed sizes"):
        read_clip(str(folder))
    np.save(tmp_path / "short.npy", np.zeros((2, 1, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="shorter than a clip of 4"):
        VideoArray(str(tmp_path / "short.npy"), frames=4)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("video") / "run")
    data = MovingDigits(32, frames=4, size=8, digit_size=4, seed=0)
    cfg = TrainConfig(steps=3, batch_size=4, lr=1e-3, device="cpu", num_workers=0, log_every=1)
    trainer = video.train(data, out, net_config=dict(base_channels=8, channel_mult=[1, 2], num_heads=2),
                          config=cfg, progress=False, info={"video": {"source": "moving-digits"}})
    return out, trainer


def test_tiny_training_runs_and_predicts(tiny_run, tmp_path):
    out, trainer = tiny_run
    assert trainer.step_count == 3 and all(math.isfinite(h["loss"]) for h in trainer.history)
    assert all(0 <= h["known_frames"] < 1 for h in trainer.history)
    pipe = video.load(out)
    assert pipe.kind == "video" and pipe.shape == (1, 4, 8, 8)
    clip = MovingDigits(2, frames=6, size=8, digit_size=4, seed=5, split="test").clips()
    g = torch.Generator().manual_seed(0)
    pred = video.predict(pipe, clip, [0, 1], steps=3, generator=g)
    assert pred.shape == clip.shape and torch.equal(pred[:, :, :2], clip[:, :, :2])
    assert torch.isfinite(pred).all() and not torch.equal(pred[:, :, 2:], clip[:, :, 2:])
    again = video.predict(pipe, clip, [0, 1], steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(pred, again)
    # the library route: Pipeline.inpaint with a mask over frames keeps the known frames exactly
    mask = torch.tensor([1.0, 0, 0, 1])[:, None, None]
    filled = pipe.inpaint(clip[:, :, :4], mask, steps=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(filled[:, :, [0, 3]], clip[:, :, [0, 3]])
    samples = pipe.sample(2, steps=3, generator=torch.Generator().manual_seed(2))
    assert samples.shape == (2, 1, 4, 8, 8)
    paths = video.write_video(pipe, samples, None, str(tmp_path / "s.gif"))
    assert [os.path.basename(p) for p in paths] == ["s_000.gif", "s_001.gif"]


def test_training_resumes_exactly(tmp_path, tiny_run):
    data = MovingDigits(32, frames=4, size=8, digit_size=4, seed=0)
    net = dict(base_channels=8, channel_mult=[1, 2], num_heads=2)

    def run(out, steps, resume=""):
        cfg = TrainConfig(steps=steps, batch_size=4, device="cpu", num_workers=0, checkpoint_every=2,
                          resume_from=resume)
        return video.train(data, out, net_config=net, config=cfg, progress=False)
    whole = run(str(tmp_path / "a"), 4)
    run(str(tmp_path / "b"), 2)
    # a run written before the network had its space-time settings: its config lacks them, and it still resumes
    step_config = tmp_path / "b" / "checkpoints" / "step_00000002" / "config.json"
    config = json.loads(step_config.read_text())
    for key in ("spacetime_levels", "spacetime_window", "time_bias", "antialias"):
        del config["net"]["config"][key]
    step_config.write_text(json.dumps(config))
    resumed = run(str(tmp_path / "b"), 4, resume=str(tmp_path / "b"))
    for p, q in zip(whole.denoiser.parameters(), resumed.denoiser.parameters()):
        assert torch.equal(p, q)
    config["net"]["config"]["spacetime_levels"] = [1]  # a different model is still refused
    step_config.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="written for a different model"):
        run(str(tmp_path / "c"), 4, resume=str(tmp_path / "b" / "checkpoints" / "step_00000002"))


def test_predict_command(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    clip = MovingDigits(1, frames=4, size=8, digit_size=4, seed=9).clips()[0]
    src = str(tmp_path / "in.gif")
    write_gif(src, clip)
    dst = str(tmp_path / "out.gif")
    code = cli.main(["predict", "--checkpoint", out, "--input", src, "--known", "0,1", "--frames", "6",
                     "--steps", "2", "--out", dst, "--device", "cpu"])
    assert code == 0
    got = read_gif(dst)
    assert got.shape == (1, 6, 8, 8) and (got[:, :2] - read_gif(src)[:, :2]).abs().max() <= 0.5 / 127.5 + 1e-6
    capsys.readouterr()
    code = cli.main(["predict", "--checkpoint", out, "--input", src, "--known", "0,1,5", "--out", dst,
                     "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "--known" in err and "4 frames" in err


def train_args(argv):
    """``unnoise train ARGV`` parsed and resolved as the command resolves it (the kind registry's video entry)."""
    parser = argparse.ArgumentParser()
    train_command.register(parser.add_subparsers())
    train_common._PARSERS.pop()
    args = train_common.resolve_resume(parser.parse_args(["train", *argv]))
    assert train_command.train_kind(args).name == "video"
    return args


def test_train_video_command_on_moving_digits_and_on_a_npy(tmp_path, capsys):
    common = ["--steps", "2", "--batch-size", "4", "--base-channels", "8", "--channel-mult", "1,2", "--device", "cpu",
              "--num-workers", "0"]
    out = str(tmp_path / "digits")
    args = train_args(["--video", "--data", "moving-digits", "--frames", "4", "--image-size", "16", "--num-clips", "16",
                       "--out", out, *common])
    assert run_video(args) == 0
    pipe = video.load(out)
    assert pipe.shape == (1, 4, 16, 16) and pipe.config["video"]["moving_digits"]["stochastic"] is False
    assert pipe.config["objective"]["p_past"] == 0.5 and pipe.config["command"]["frames"] == 4
    clips = MovingDigits(3, frames=6, size=8, digit_size=4, seed=2).clips()
    np.save(tmp_path / "clips.npy", clips.numpy())
    out = str(tmp_path / "npy")
    args = train_args(["--video", "--data", str(tmp_path / "clips.npy"), "--frames", "3", "--p-future", "0", "--out", out,
                       "--spacetime-levels", "0,1", "--spacetime-window", "1", "--time-bias", "decay", *common])
    assert run_video(args) == 0
    pipe = video.load(out)
    assert pipe.shape == (1, 3, 8, 8) and pipe.config["data"]["num_examples"] == 6
    joint = [m for m in pipe.denoiser.net.modules() if isinstance(m, nets.video_unet.SpaceTimeAttention)]
    assert len(joint) == 7 and all(m.window == 1 and m.time_bias_kind == "decay" for m in joint)
    assert pipe.config["objective"]["p_future"] == 0.0
    bad = train_args(["--video", "--data", str(tmp_path / "clips.npy"), "--frames", "7", "--out", str(tmp_path / "x"),
                      *common])
    with pytest.raises(ValueError, match="shorter than a clip of 7"):
        run_video(bad)
    with pytest.raises(ValueError, match="--spacetime-levels names level"):
        run_video(train_args(["--video", "--data", str(tmp_path / "clips.npy"), "--spacetime-levels", "2",
                              "--out", str(tmp_path / "y"), *common]))
    from unnoise.commands.train_video import warn_joint_attention_cost
    warn_joint_attention_cost({"spacetime_levels": [0, 1]}, (1, 16, 32, 32))  # 16 384 and 4096 positions
    warn_joint_attention_cost({"spacetime_levels": [0], "spacetime_window": 2}, (1, 16, 32, 32))
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "16,384 positions per clip" in notes[0] and "1,024 MiB" in notes[0]
    with pytest.raises(ValueError, match="--spacetime-window applies to the levels of --spacetime-levels"):
        run_video(train_args(["--video", "--data", str(tmp_path / "clips.npy"), "--spacetime-window", "2",
                              "--out", str(tmp_path / "z"), *common]))


def test_stills_train_as_clips_of_independent_frames():
    videos = MovingDigits(6, frames=4, size=8, digit_size=4, seed=0)
    images = torch.rand(9, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    data = WithStills(videos, images)
    assert len(data) == 8 and data[6][1]["stills"] and not data[0][1]["stills"]
    assert torch.equal(data[7][0][:, 2], images[6])  # still k of clip j is image j * T + k
    den = small_denoiser()
    objective = video.VideoObjective(p_past=1.0, p_future=1.0)
    x0 = torch.stack([data[i][0] for i in (0, 6)])
    noise = torch.randn(2, *objective.noise_shape(den, x0.shape[1:]), generator=torch.Generator().manual_seed(1))
    out = objective(den, x0, torch.ones(2), noise, {"stills": torch.tensor([False, True])})
    assert out["known_frames"][0] > 0 and out["known_frames"][1] == 0
    cfg = TrainConfig(steps=2, batch_size=4, device="cpu", num_workers=0)
    trainer = Trainer(den, schedules.get("ddpm"), data, cfg, objective=objective)
    trainer.fit(progress=False)
    assert all(math.isfinite(h["loss"]) for h in trainer.history)
