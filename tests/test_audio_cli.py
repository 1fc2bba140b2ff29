"""``unnoise train --data FOLDER_OF_WAVS`` and ``unnoise sample`` of the audio run: WAV files out."""
import json
import math
import os
import wave

import numpy as np
import pytest
import torch

from unnoise.cli import main
from unnoise.commands.train_arrays import channel_stats
from unnoise.data.audio import AudioFolder, read_wav, write_wav

RATE, LENGTH, CLIPS = 2000, 128, 16
TRAIN = ["--sample-rate", str(RATE), "--clip-length", str(LENGTH), "--num-clips", str(CLIPS), "--steps", "4",
         "--batch-size", "4", "--base-channels", "8", "--checkpoint-every", "0", "--log-every", "2", "--seed", "3"]


def write_folder(root, stereo_first=True):
    """Four short tones: mono and stereo, 4 kHz and 8 kHz files (so loading resamples and converts)."""
    os.makedirs(root, exist_ok=True)
    for i, (rate, chans) in enumerate([(4000, 2 if stereo_first else 1), (4000, 1), (8000, 1), (4000, 1)]):
        t = torch.arange(300 + 50 * i) / rate
        tone = 0.4 * torch.sin(2 * math.pi * (150 + 60 * i) * t)
        write_wav(os.path.join(root, f"tone_{i}.wav"), tone[None].repeat(chans, 1), rate)
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("audio_cli")
    wavs = write_folder(str(base / "wavs"))
    out = str(base / "run")
    assert main(["train", "--data", wavs, "--out", out, "--channels", "2", *TRAIN]) == 0
    return out, wavs


def read_pcm16(path):
    """(rate, channels, frames, int16 samples (frames, channels)) through the standard library."""
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2 and w.getcomptype() == "NONE"
        frames = w.readframes(w.getnframes())
        data = np.frombuffer(frames, dtype="<i2").reshape(-1, w.getnchannels())
        return w.getframerate(), w.getnchannels(), w.getnframes(), data


def test_run_config_records_rate_and_trains_on_the_folder_crops(run_dir):
    out, wavs = run_dir
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["audio"]["sample_rate"] == RATE and cfg["audio"]["channels"] == 2
    assert cfg["audio"]["num_files"] == 4 and cfg["net"]["name"] == "diffwave"
    assert cfg["data"]["shape"] == [2, LENGTH] and cfg["data"]["num_examples"] == CLIPS
    # the stored per-channel statistics are those of the folder's crops (same seed), resampled to RATE
    crops = AudioFolder(wavs, sample_rate=RATE, channels=2, clip_length=LENGTH).crops(
        CLIPS, torch.Generator().manual_seed(3))
    _, stats = channel_stats(crops)
    np.testing.assert_allclose(cfg["data"]["normalization"]["mean"], stats["mean"], atol=1e-6)
    np.testing.assert_allclose(cfg["data"]["normalization"]["std"], stats["std"], rtol=1e-5)


def test_sample_writes_16bit_wavs_to_a_folder(run_dir, tmp_path):
    out, _ = run_dir
    clips, png = str(tmp_path / "clips"), str(tmp_path / "spec.png")
    assert main(["sample", "--checkpoint", out, "--n", "3", "--steps", "3", "--out", clips, "--plot", png]) == 0
    names = sorted(os.listdir(clips))
    assert names == ["sample_000.wav", "sample_001.wav", "sample_002.wav"]
    for name in names:
        rate, chans, frames, data = read_pcm16(os.path.join(clips, name))
        assert (rate, chans, frames) == (RATE, 2, LENGTH)
        # SciPy's reader agrees with the standard library sample for sample (k / 32768 in [-1, 1))
        audio, r = read_wav(os.path.join(clips, name))
        assert r == RATE and audio.shape == (2, LENGTH)
        np.testing.assert_array_equal(audio.numpy(), data.T.astype(np.float32) / 32768)
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_sample_to_wav_names_and_raw_arrays(run_dir, tmp_path):
    out, _ = run_dir
    one = str(tmp_path / "clip.wav")
    assert main(["sample", "--checkpoint", out, "--n", "1", "--steps", "2", "--out", one]) == 0
    assert read_pcm16(one)[:3] == (RATE, 2, LENGTH)
    two = str(tmp_path / "pair.wav")
    assert main(["sample", "--checkpoint", out, "--n", "2", "--steps", "2", "--out", two]) == 0
    assert sorted(os.listdir(tmp_path)) == ["clip.wav", "pair_000.wav", "pair_001.wav"]
    # .npy still gives the raw (unclipped) arrays of an audio run
    arr = str(tmp_path / "raw.npy")
    assert main(["sample", "--checkpoint", out, "--n", "2", "--steps", "2", "--out", arr]) == 0
    assert np.load(arr).shape == (2, 2, LENGTH)


def test_sample_errors_are_clear(run_dir, tmp_path, capsys):
    out, _ = run_dir
    assert main(["sample", "--checkpoint", out, "--n", "2", "--out", str(tmp_path / "clips.mp3")]) == 2
    assert "audio runs write WAV files" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", out, "--n", "2", "--out", str(tmp_path / "c"),
                 "--plot", str(tmp_path / "s.jpg")]) == 2
    assert "ending in .png" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "c")  # nothing written before the check


def test_train_errors_are_clear(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    args = ["--out", str(tmp_path / "run"), *TRAIN]
    assert main(["train", "--data", str(empty), *args]) == 2
    assert "holds no .wav files" in capsys.readouterr().err
    assert main(["train", "--data", str(empty), "--out", str(tmp_path / "run")]) == 2
    assert "neither .wav files nor images" in capsys.readouterr().err
    mixed = write_folder(str(tmp_path / "mixed"))
    from PIL import Image
    Image.new("RGB", (8, 8)).save(os.path.join(mixed, "cover.png"))
    assert main(["train", "--data", mixed, *args]) == 2
    assert "separate folders" in capsys.readouterr().err
    wavs = write_folder(str(tmp_path / "wavs"))
    assert main(["train", "--data", wavs, "--net", "dit", *args]) == 2
    assert "use one of diffwave, unet" in capsys.readouterr().err
    assert main(["train", "--data", "ring", *args]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "run")


def test_mono_unet_run_writes_mono_wavs(tmp_path):
    wavs = write_folder(str(tmp_path / "wavs"))  # one stereo file among mono ones: averaged to mono
    out = str(tmp_path / "run")
    assert main(["train", "--data", wavs, "--out", out, "--net", "unet", "--channel-mult", "1,2",
                 "--attention-levels", "", *TRAIN]) == 0
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["audio"]["channels"] == 1 and cfg["data"]["shape"] == [1, LENGTH] and cfg["net"]["name"] == "unet"
    assert main(["sample", "--checkpoint", out, "--n", "2", "--steps", "2", "--out", str(tmp_path / "c")]) == 0
    for i in range(2):
        assert read_pcm16(str(tmp_path / "c" / f"sample_{i:03d}.wav"))[:3] == (RATE, 1, LENGTH)
