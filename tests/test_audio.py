"""Audio: WAV input/output, resampling, folders of clips, the synthetic set, spectral features,
the DiffWave backbone, a short training run and inpainting in time."""
from __future__ import annotations

import math
import os
import wave
from fractions import Fraction

import numpy as np
import pytest
import torch

import unnoise
from unnoise import spectral
from unnoise.data.audio import (PITCHES_HZ, AudioFolder, adsr, convert_channels, load_audio_folder, read_wav,
                                resample, synthetic_audio, write_wav)
from unnoise.nets.diffwave import DiffWave


def _stdlib_write(path, ints: np.ndarray, rate: int, width: int = 2):
    """Write integer frames ``(frames, channels)`` with the standard library, as an independent writer."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(ints.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(ints).astype({1: "u1", 2: "<i2", 4: "<i4"}[width]).tobytes())


def _stdlib_read(path):
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return frames.reshape(-1, w.getnchannels()), w.getframerate()


# ----------------------------------------------------------------------------- WAV files
@pytest.mark.parametrize("channels", [1, 2])
def test_pcm16_round_trip_is_bit_exact(tmp_path, channels):
    rng = np.random.default_rng(channels)
    ints = rng.integers(-32768, 32768, size=(1001, channels), dtype=np.int64)
    ints[:2] = [[-32768] * channels, [32767] * channels]  # the extremes survive too
    src = tmp_path / "src.wav"
    _stdlib_write(src, ints, 11025)
    audio, rate = read_wav(str(src))
    assert rate == 11025 and audio.shape == (channels, 1001) and audio.dtype == torch.float32
    assert torch.equal(audio, torch.from_numpy(ints.T / 32768.0).float())  # k -> k / 32768 exactly
    out = tmp_path / "out.wav"
    write_wav(str(out), audio, rate)
    back, back_rate = _stdlib_read(out)
    assert back_rate == 11025 and np.array_equal(back, ints)
    assert torch.equal(read_wav(str(out))[0], audio)


def test_float32_round_trip_and_pcm_clipping(tmp_path):
    x = torch.randn(2, 513, generator=torch.Generator().manual_seed(0)) * 0.4
    write_wav(str(tmp_path / "f.wav"), x, 8000, format="float32")
    y, rate = read_wav(str(tmp_path / "f.wav"))
    assert rate == 8000 and torch.equal(y, x)
    # PCM clips out-of-range values to the representable extremes instead of wrapping around
    write_wav(str(tmp_path / "c.wav"), torch.tensor([[1.5, -1.5, 1.0, -1.0]]), 8000)
    ints, _ = _stdlib_read(tmp_path / "c.wav")
    assert ints[:, 0].tolist() == [32767, -32768, 32767, -32768]


def test_other_pcm_widths(tmp_path):
    _stdlib_write(tmp_path / "u8.wav", np.array([[0], [128], [255]]), 8000, width=1)
    assert read_wav(str(tmp_path / "u8.wav"))[0].tolist() == [[-1.0, 0.0, 127 / 128]]
    _stdlib_write(tmp_path / "i32.wav", np.array([[-2**31], [0], [2**30]]), 8000, width=4)
    assert read_wav(str(tmp_path / "i32.wav"))[0].tolist() == [[-1.0, 0.0, 0.5]]


def test_channel_conversion_and_rejections(tmp_path):
    stereo = torch.tensor([[0.5, -0.25, 0.0], [0.25, 0.25, 1.0]])
    write_wav(str(tmp_path / "s.wav"), stereo, 8000)
    mono, _ = read_wav(str(tmp_path / "s.wav"), channels=1)
    assert torch.allclose(mono, stereo.mean(0, keepdim=True), atol=1 / 32768)
    up = convert_channels(mono, 2)
    assert up.shape == (2, 3) and torch.equal(up[0], up[1])
    with pytest.raises(ValueError, match="3 channels but 2 are needed"):
        convert_channels(torch.zeros(3, 10), 2)
    with pytest.raises(ValueError, match="sample rate is 8000 Hz but 16000 Hz is needed"):
        read_wav(str(tmp_path / "s.wav"), sample_rate=16000, allow_resample=False)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really a wave file")
    with pytest.raises(ValueError, match="not a readable WAV file"):
        read_wav(str(tmp_path / "bad.wav"))
    with pytest.raises(FileNotFoundError):
        read_wav(str(tmp_path / "missing.wav"))
    with pytest.raises(ValueError, match="NaN"):
        write_wav(str(tmp_path / "nan.wav"), torch.tensor([[0.0, float("nan")]]), 8000)
    with pytest.raises(ValueError, match="unknown WAV format"):
        write_wav(str(tmp_path / "x.wav"), torch.zeros(1, 4), 8000, format="mp3")


def test_resampling_keeps_a_tone_and_removes_aliases(tmp_path):
    rate, n = 16000, 16000
    t = np.arange(n) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 5000 * t)  # 5 kHz > 4 kHz Nyquist
    write_wav(str(tmp_path / "hi.wav"), torch.from_numpy(tone).float()[None], rate, format="float32")
    low, new_rate = read_wav(str(tmp_path / "hi.wav"), sample_rate=8000)
    assert new_rate == 8000 and low.shape == (1, 8000)
    expect = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    # away from the edges (filter start-up) the 440 Hz tone is kept and the 5 kHz tone is gone:
    # a 5 kHz tone would alias to 3 kHz at 8 kHz, so any leak would show as a large residual
    err = np.abs(low[0, 200:-200].numpy() - expect[200:-200]).max()
    assert err < 5e-3
    # 3 -> 2 rate change keeps the length ratio exactly
    assert resample(torch.zeros(2, 300), 48000, 32000).shape == (2, 200)


@pytest.mark.parametrize("rates", [(48000, 32000), (44100, 16000), (16000, 44100), (16000, 8000), (8000, 22050),
                                   (44100, 48000), (3, 7), (5, 1)])
def test_resample_equals_scipy_resample_poly(rates):
    signal = pytest.importorskip("scipy.signal")
    ratio = Fraction(rates[1], rates[0])
    g = torch.Generator().manual_seed(sum(rates))
    for length in (0, 1, 2, 7, 300, 5001):
        x = torch.randn(2, length, generator=g, dtype=torch.float64)
        want = signal.resample_poly(x.numpy(), ratio.numerator, ratio.denominator, axis=-1)
        got = resample(x, *rates)
        assert got.shape == want.shape and got.dtype == torch.float64
        assert np.abs(got.numpy() - want).max(initial=0.0) <= 1e-12 * np.abs(want).max(initial=1.0)


def test_written_wav_files_read_back_in_scipy(tmp_path):
    wavfile = pytest.importorskip("scipy.io.wavfile")
    audio = torch.linspace(-1.2, 1.2, 2 * 301).reshape(2, 301)
    write_wav(str(tmp_path / "s.wav"), audio, 22050)  # pcm16, stereo, clipped at full scale
    rate, data = wavfile.read(str(tmp_path / "s.wav"))
    assert rate == 22050 and data.dtype == np.int16 and data.shape == (301, 2)
    assert np.array_equal(data.T, np.clip(np.round(audio.double().numpy() * 32768), -32768, 32767))
    write_wav(str(tmp_path / "f.wav"), audio[:1], 8000, format="float32")
    rate, data = wavfile.read(str(tmp_path / "f.wav"))
    assert rate == 8000 and data.dtype == np.float32 and np.array_equal(data, audio[0].numpy())


# ----------------------------------------------------------------------------- folders and synthetic audio
def test_audio_folder_crops(tmp_path):
    g = torch.Generator().manual_seed(0)
    clip_a = torch.linspace(-0.9, 0.9, 500)[None]
    write_wav(str(tmp_path / "a.wav"), clip_a, 8000, format="float32")
    os.makedirs(tmp_path / "sub")
    write_wav(str(tmp_path / "sub" / "b.wav"), torch.full((2, 40), 0.25), 16000, format="float32")  # short, stereo
    folder = AudioFolder(str(tmp_path), sample_rate=8000, channels=1, clip_length=64)
    assert len(folder) == 2 and folder.audio[1].shape == (1, 20)  # resampled 16 k -> 8 k, down-mixed
    crops = folder.crops(50, g)
    assert crops.shape == (50, 1, 64)
    starts = set()
    for c in crops:
        if torch.all(c[0, 20:] == 0):  # the short file, zero-padded at the end
            assert torch.allclose(c[0, 5:15], torch.full((10,), 0.25), atol=0.02)
        else:  # a crop of the ramp: exactly a contiguous piece of it
            start = int(torch.argmin((clip_a[0] - c[0, 0]).abs()))
            assert torch.equal(c[0], clip_a[0, start:start + 64])
            starts.add(start)
    assert len(starts) > 5  # random offsets, not one fixed crop
    again = load_audio_folder(str(tmp_path), 50, clip_length=64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, crops)  # the seed fixes the crops
    with pytest.raises(ValueError, match="clip_length must be positive"):
        AudioFolder(str(tmp_path), clip_length=0)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="no .wav files"):
        AudioFolder(str(tmp_path / "empty"))


def test_synthetic_audio_properties():
    x = synthetic_audio(64, 2048, 8000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (64, 1, 2048)
    peaks = x.abs().amax((1, 2))
    assert torch.all(peaks >= 0.3 - 1e-6) and torch.all(peaks <= 0.8 + 1e-6)
    assert torch.equal(x, synthetic_audio(64, 2048, 8000, generator=torch.Generator().manual_seed(0)))
    # single notes: the strongest frequency is one of the scale's pitches (to within one FFT bin)
    one = synthetic_audio(16, 8000, 8000, max_notes=1, generator=torch.Generator().manual_seed(1))
    spec = torch.fft.rfft(one[:, 0].double()).abs()
    top = spec.argmax(1).double()  # 1 Hz bins for one second at 8 kHz
    dist = (top[:, None] - torch.tensor(PITCHES_HZ, dtype=torch.float64)[None]).abs().min(1).values
    assert torch.all(dist <= 1.0)
    env = adsr(101, 0.1, 0.2, 0.5, 0.3)
    assert env[[0, 10, 30, 50, 70, 85, 100]].tolist() == pytest.approx([0, 1, 0.5, 0.5, 0.5, 0.25, 0], abs=1e-9)
    with pytest.raises(ValueError, match="too low"):
        synthetic_audio(1, 100, sample_rate=4000)


# ----------------------------------------------------------------------------- spectral features
def test_mel_filterbank_and_frechet_distance():
    fb = spectral.mel_filterbank(16, 256, 8000)
    assert fb.shape == (16, 129) and torch.all(fb >= 0)
    assert torch.all((fb.max(1).values > 0.5) & (fb.max(1).values <= 1))
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 5, generator=g, dtype=torch.float64)
    shift = torch.arange(5, dtype=torch.float64)
    # b = 2a + c has covariance 4 S_a, so the distance is |mu_a - mu_b|^2 + tr(S_a + 4 S_a - 2 * 2 S_a)
    b = 2 * a + shift
    expect = float(((a.mean(0) - b.mean(0)) ** 2).sum() + torch.trace(torch.cov(a.T)))
    assert spectral.frechet_distance(a, b) == pytest.approx(expect, rel=1e-9)
    assert spectral.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    from scipy.linalg import sqrtm
    c = torch.randn(300, 5, generator=g, dtype=torch.float64)
    sa, sc = torch.cov(a.T).numpy(), torch.cov(c.T).numpy()
    ref = ((a.mean(0) - c.mean(0)) ** 2).sum().item() + np.trace(sa + sc - 2 * np.real(sqrtm(sa @ sc)))
    assert spectral.frechet_distance(a, c) == pytest.approx(ref, rel=1e-6)


def test_spectral_features_separate_real_from_noise():
    g = torch.Generator().manual_seed(0)
    real = synthetic_audio(192, 1024, generator=g)
    fa, fb = spectral.clip_features(real[:96], 8000), spectral.clip_features(real[96:], 8000)
    noise = torch.randn(96, 1, 1024, generator=g) * real.std()
    floor, far = spectral.frechet_distance(fa, fb), spectral.frechet_distance(fa, spectral.clip_features(noise, 8000))
    assert far > 10 * floor
    sc = spectral.spectral_convergence(real[:4], real[:4])
    assert torch.all(sc == 0)


# ----------------------------------------------------------------------------- DiffWave
def _perturbed_net(net):
    # a fresh DiffWave outputs exactly 0 (zero-initialised output layer); give it random weights
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.3)
    return net


@pytest.mark.parametrize("length", [1, 7, 257, 1001])
def test_diffwave_keeps_any_length(length):
    net = DiffWave(shape=(2, 64), residual_channels=8, layers=4, dilation_cycle=3, emb_dim=16)
    x = torch.randn(3, 2, length)
    out = net(x, torch.zeros(3))
    assert out.shape == x.shape and torch.all(out == 0)  # starts at F = 0
    assert _perturbed_net(net)(x, torch.zeros(3)).abs().sum() > 0


def test_diffwave_receptive_field_is_non_causal_and_exact():
    net = _perturbed_net(DiffWave(channels=1, residual_channels=8, layers=5, dilation_cycle=3, emb_dim=16)).double()
    assert net.receptive_field == 1 + 2 * (1 + 2 + 4 + 1 + 2)
    x = torch.randn(1, 1, 101, dtype=torch.float64, requires_grad=True)
    net(x, torch.zeros(1, dtype=torch.float64))[0, 0, 50].backward()
    reach = (x.grad[0, 0].abs() > 0).nonzero().flatten()
    half = (net.receptive_field - 1) // 2
    # output 50 sees exactly the inputs 50 - half .. 50 + half: past and future (non-causal)
    assert reach.min() == 50 - half and reach.max() == 50 + half


def test_diffwave_config_rebuilds_and_checks_input():
    net = _perturbed_net(DiffWave(shape=[1, 128], residual_channels=8, layers=3, dilation_cycle=2, emb_dim=16,
                                  num_classes=3))
    twin = unnoise.nets.build("diffwave", **net.config)
    twin.load_state_dict(net.state_dict())
    x, c = torch.randn(2, 1, 50), torch.tensor([0.1, -0.5])
    assert torch.equal(twin(x, c, torch.tensor([0, 3])), net(x, c, torch.tensor([0, 3])))
    assert unnoise.nets.name_of(net) == "diffwave"
    with pytest.raises(ValueError, match=r"expects \(batch, 1, length\)"):
        net(torch.randn(2, 2, 50), c)
    with pytest.raises(ValueError, match="use the U-Net"):
        DiffWave(shape=(1, 16, 16))


# ----------------------------------------------------------------------------- training and inpainting
def test_tiny_audio_run_lowers_the_loss():
    g = torch.Generator().manual_seed(0)
    clips = synthetic_audio(128, 128, generator=g) / 0.2  # about unit variance
    sched = unnoise.schedules.DDPM()
    den = unnoise.Denoiser(DiffWave(shape=(1, 128), residual_channels=8, layers=4, dilation_cycle=4, emb_dim=16))
    ev = torch.Generator().manual_seed(1)
    x0, sigma = clips[:64], sched.sample_training_sigmas(64, ev)
    noise = torch.randn(x0.shape, generator=ev)

    def eval_loss(d):
        with torch.no_grad():
            return float(unnoise.losses.denoising_loss(d, x0, sigma, noise=noise))

    # a fresh DiffWave predicts eps = 0, so its eps-MSE is exactly the mean of eps^2
    assert eval_loss(den) == pytest.approx(float((noise**2).mean()), rel=1e-6)
    trainer = unnoise.Trainer(den, sched, clips, unnoise.TrainConfig(steps=40, batch_size=16, lr=1e-2, device="cpu",
                                                                     ema_decay=0.9, seed=0))
    trainer.fit(progress=False)
    assert eval_loss(trainer.denoiser) < 0.6 * float((noise**2).mean())


def test_inpainting_a_gap_in_time_with_the_empirical_denoiser():
    from unnoise.editing import inpaint
    g = torch.Generator().manual_seed(0)
    clips = synthetic_audio(16, 96, max_notes=1, generator=g).double()
    den = unnoise.analytic.EmpiricalDenoiser(clips)
    mask = torch.ones(1, 96, dtype=torch.bool)
    mask[:, 32:64] = False  # a 4 ms hole in the middle of each clip
    known = clips[[3, 11]].clone()
    known[:, :, 32:64] = float("nan")  # whatever is under the hole must not matter
    sigmas = unnoise.schedules.DDPM().sampling_sigmas(40)
    filled = inpaint(den, known, mask, sigmas, sampler="ddpm", generator=g)
    assert filled.shape == known.shape and torch.isfinite(filled).all()
    assert torch.equal(filled[:, :, :32], clips[[3, 11], :, :32])  # the known samples are kept exactly
    # the optimal denoiser of a finite set memorises it: the hole is filled with the one training clip
    # that agrees with the known samples on both sides
    assert (filled[:, :, 32:64] - clips[[3, 11], :, 32:64]).abs().max() < 1e-3
    gap_energy = clips[[3, 11], :, 32:64].abs().max()
    assert gap_energy > 0.1  # (the hole was not silent, so this is not trivially satisfied)


# ----------------------------------------------------------------------------- time series through the CLI
def test_time_series_train_and_sample_with_diffwave(tmp_path):
    from unnoise.cli import main
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 1, 40)
    # two channels with very different offsets and scales: a sine and a noisy ramp
    series = torch.stack([torch.sin(2 * math.pi * (3 * t + torch.rand(64, 1, generator=g))),
                          100 + 10 * t + torch.randn(64, 40, generator=g)], 1)
    np.save(tmp_path / "series.npy", series.numpy())
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "series.npy"), "--out", str(run), "--net", "diffwave",
                 "--base-channels", "8", "--steps", "5", "--batch-size", "8", "--device", "cpu"]) == 0
    den, _, config = unnoise.checkpoint.load(str(run))
    assert config["net"]["name"] == "diffwave" and config["net"]["config"]["channels"] == 2
    stats = config["data"]["normalization"]
    assert len(stats["mean"]) == 2 * 40  # per channel, repeated over the time steps
    assert stats["mean"][0] == pytest.approx(float(series[:, 0].mean()), abs=1e-5)
    assert stats["mean"][40] == pytest.approx(float(series[:, 1].mean()), rel=1e-6)
    assert stats["std"][40] == pytest.approx(float(series[:, 1].std()), rel=1e-5)
    assert main(["sample", "--checkpoint", str(run), "--n", "4", "--steps", "3", "--out",
                 str(tmp_path / "s.npy")]) == 0
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (4, 2, 40)
    assert abs(samples[:, 1].mean() - 105) < 30  # mapped back to the data's own units


def test_time_series_from_csv_with_the_1d_unet_and_clear_errors(tmp_path, capsys):
    from unnoise.cli import main
    rows = torch.randn(16, 32, generator=torch.Generator().manual_seed(0)).cumsum(1)  # random walks
    np.savetxt(tmp_path / "walks.csv", rows.numpy(), delimiter=",")
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "walks.csv"), "--out", str(run), "--net", "unet",
                 "--base-channels", "8", "--channel-mult", "1,2", "--attention-levels", "", "--steps", "3",
                 "--batch-size", "4", "--device", "cpu"]) == 0
    config = unnoise.checkpoint.read_config(str(run))
    assert config["net"]["config"]["dims"] == 1 and config["data"]["shape"] == [1, 32]
    # the 1-D U-Net halves the length, so an odd length is refused with the fix in the message
    np.save(tmp_path / "odd.npy", np.zeros((8, 1, 33), dtype=np.float32) + np.arange(33, dtype=np.float32))
    assert main(["train", "--data", str(tmp_path / "odd.npy"), "--out", str(tmp_path / "r2"), "--net", "unet",
                 "--channel-mult", "1,2", "--steps", "1", "--device", "cpu"]) == 2
    assert "divisible by 2" in capsys.readouterr().err
    np.save(tmp_path / "img.npy", np.random.default_rng(0).normal(size=(8, 1, 8, 8)).astype(np.float32))
    assert main(["train", "--data", str(tmp_path / "img.npy"), "--out", str(tmp_path / "r3"), "--net", "diffwave",
                 "--steps", "1", "--device", "cpu"]) == 2
    assert "needs data shaped (N, channels, length)" in capsys.readouterr().err


def test_unet1d_keeps_shapes_for_even_lengths():
    from unnoise.nets.unet import UNet
    net = UNet(shape=(2, 64), base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=(2,))
    for length in (4, 64, 100):
        x = torch.randn(2, 2, length)
        assert net(x, torch.zeros(2)).shape == x.shape
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 2, 101), torch.zeros(1))
