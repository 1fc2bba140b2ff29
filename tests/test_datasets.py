"""Streaming datasets: image folders, memory-mapped arrays, lazy WAV crops, streaming statistics, the
preprocessing cache and ``unnoise prepare``, and what happens with corrupt, truncated and odd files."""
from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import unnoise.data.audio as audio_mod
from unnoise.cli import main
from unnoise.commands.train_arrays import channel_stats
from unnoise.data import load_array
from unnoise.data.audio import load_audio_folder, read_wav, write_wav
from unnoise.data.cache import CachedDataset, prepare
from unnoise.data.datasets import (ArrayDataset, AudioClips, ImageFolder, TensorDataset, normalise,
                                   streaming_stats, unnormalise)
from unnoise.data.images import load_image_folder
from unnoise.train import standardise


def _stack(ds):
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([x for x, _ in items]), [c for _, c in items]


@pytest.fixture
def classes(tmp_path):
    """Two class folders of small images of mixed modes and sizes, and one file with a broken header."""
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c / "deep").mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (9 + i, 14, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (12, 10), dtype=np.uint8)).save(root / c / "deep" / "g.jpg", quality=90)
    Image.new("RGBA", (10, 10), (10, 200, 30, 128)).save(root / "cat" / "alpha.png")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


# ----------------------------------------------------------------------------- image folders
def test_image_folder_streams_the_pixels_and_labels_of_load_image_folder(classes):
    with pytest.warns(UserWarning, match="broken.png"):
        ref, labels, names = load_image_folder(str(classes), image_size=8)
    with pytest.warns(UserWarning, match="broken.png"):
        ds = ImageFolder(str(classes), image_size=8)
    x, conds = _stack(ds)
    assert len(ds) == 9 and ds.shape == (3, 8, 8) and ds.class_names == names == ["cat", "dog"]
    assert torch.equal(x, ref)  # the same pixels, bit for bit
    assert torch.equal(torch.stack([c["label"] for c in conds]), labels)
    # independent check of one item: Pillow bicubic resize of the shorter side, centre crop, k / 127.5 - 1
    with Image.open(ds.paths[1]) as im:  # cat/1.png, 14 x 10
        small = im.convert("RGB").resize((11, 8), Image.Resampling.BICUBIC, reducing_gap=None).crop((1, 0, 9, 8))
    assert torch.equal(x[1], torch.from_numpy(np.asarray(small, np.float32)).permute(2, 0, 1) / 127.5 - 1)
    # through a DataLoader with worker processes the collated batch is the same
    batch, cond = next(iter(DataLoader(ds, batch_size=9, num_workers=2)))
    assert torch.equal(batch, ref) and torch.equal(cond["label"], labels)


def test_undecodable_image_is_replaced_by_the_next_with_a_warning(tmp_path):
    for i in range(3):
        Image.new("RGB", (6, 6), (i * 60, 0, 0)).save(tmp_path / f"{i}.png")
    good = (tmp_path / "1.png").read_bytes()
    (tmp_path / "1.png").write_bytes(good[: len(good) // 2 + 10])  # header intact, data cut: only decoding fails
    ds = ImageFolder(str(tmp_path), image_size=6)  # headers all readable: no warning, nothing decoded yet
    assert len(ds) == 3 and ds[0][1] == {}
    with pytest.warns(UserWarning, match=r"1\.png"):
        x1, _ = ds[1]
    assert torch.equal(x1, ds[2][0])  # the next readable image takes its place
    assert float(x1[0, 0, 0]) == pytest.approx(120 / 127.5 - 1)
    fresh = ImageFolder(str(tmp_path), image_size=6)
    with pytest.warns(UserWarning):
        assert torch.equal(fresh[1][0], x1)  # deterministic: depends only on the files


def test_folder_of_unreadable_images_stops_with_one_line(tmp_path):
    for name in ("a.png", "b.jpg"):
        (tmp_path / name).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="a.png.*b.jpg"), pytest.raises(ValueError) as err:
        ImageFolder(str(tmp_path), image_size=8)
    msg = str(err.value)
    assert "none of the 2 image files" in msg and "could be read" in msg and "\n" not in msg


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path, mode):
    values = np.array([[0, 1000, 32768, 65535]] * 4, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")  # a 16-bit grayscale PNG
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode == "I;16"
    (x,), _, _ = load_image_folder(str(tmp_path), image_size=4, mode=mode)
    expect = torch.from_numpy(values.astype(np.float64) / 65535 * 2 - 1).float()
    assert x.shape == ((3 if mode == "RGB" else 1), 4, 4)
    assert torch.allclose(x, expect.expand_as(x), atol=1e-5)  # 8-bit conversion would make 1000 and up white
    assert float(x[0, 0, 1]) < -0.9
    # a resized 16-bit image matches the 8-bit image of the same content to 8-bit precision
    ramp = np.tile(np.linspace(0, 65535, 24), (20, 1)).round().astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    Image.fromarray((ramp / 257).round().astype(np.uint8)).save(tmp_path / "flat.png")
    ds = ImageFolder(str(tmp_path), image_size=10, mode=mode)
    assert (ds[0][0] - ds[1][0]).abs().max() < 2.5 / 127.5


# ----------------------------------------------------------------------------- arrays
def test_array_dataset_is_memory_mapped_and_equals_np_load(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.normal(3.0, 2.0, size=(37, 2, 5))
    np.save(tmp_path / "a.npy", arr)
    ds = ArrayDataset(str(tmp_path / "a.npy"))
    assert len(ds) == 37 and ds.shape == (2, 5) and ds._arr is None  # nothing read at construction
    x, cond = _stack(ds)
    assert cond[0] == {} and isinstance(ds._arr, np.memmap)
    assert torch.equal(x, torch.from_numpy(np.load(tmp_path / "a.npy")).float())
    assert len(pickle.dumps(ds)) < 2000  # a worker gets the path, not the data
    batches = torch.cat([b for b, _ in DataLoader(ds, batch_size=8, num_workers=2)])
    assert torch.equal(batches, x)
    np.save(tmp_path / "v.npy", np.arange(5.0))  # 1-D -> (N, 1)
    assert ArrayDataset(str(tmp_path / "v.npy"))[4][0].tolist() == [4.0]
    stats = streaming_stats(ds, axis="channel", batch_size=5)
    normed = _stack(ArrayDataset(str(tmp_path / "a.npy"), stats=stats))[0]
    assert torch.allclose(normed, channel_stats(x.double())[0].float(), atol=1e-5)
    assert torch.allclose(unnormalise(normed, stats), x, atol=1e-5)
    arr[7, 1, 2] = np.nan
    np.save(tmp_path / "nan.npy", arr)
    with pytest.raises(ValueError, match=r"nan\.npy: example 7 contains NaN"):
        ArrayDataset(str(tmp_path / "nan.npy"))[7]


def test_array_files_fail_with_their_name_and_the_real_problem(tmp_path):
    (tmp_path / "g.npy").write_bytes(b"this is not numpy data at all")
    np.save(tmp_path / "o.npy", np.array([1, "a", None], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "o.npz", a=np.array([[1], "b"], dtype=object))
    (tmp_path / "r.csv").write_text("x,y,z\n1,2,3\n4,5\n")
    (tmp_path / "w.csv").write_text("1,2\n3,four\n")
    np.save(tmp_path / "t.npy", np.zeros((50, 4)))
    (tmp_path / "t.npy").write_bytes((tmp_path / "t.npy").read_bytes()[:400])
    cases = {"g.npy": "not a .npy file", "o.npy": "Python objects", "o.npz": "Python objects",
             "r.csv": "line 3 has 2 values but line 2 has 3", "w.csv": "line 2: 'four' is not a number",
             "t.npy": "truncated"}
    for name, phrase in cases.items():
        for loader in (load_array, ArrayDataset):
            with pytest.raises(ValueError) as err:
                loader(str(tmp_path / name))
            msg = str(err.value)
            assert msg.startswith(str(tmp_path / name)) and phrase in msg, msg
            assert "allow_pickle" not in msg and "usecols" not in msg


# ----------------------------------------------------------------------------- statistics
def test_streaming_stats_equal_full_tensor_stats():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(103, 3, 7, generator=g, dtype=torch.float64) * torch.tensor([1.0, 0.01, 5.0])[:, None] + 1e4
    ds = TensorDataset(x)
    for axis, (_, full) in (("feature", standardise(x)), ("channel", channel_stats(x))):
        stream = streaming_stats(ds, axis=axis, batch_size=10)  # 11 uneven batches
        assert len(stream["mean"]) == len(full["mean"]) == 21
        rel = lambda a, b: (torch.tensor(a) - torch.tensor(b)).abs().max() / torch.tensor(b).abs().max()  # noqa
        assert rel(stream["mean"], full["mean"]) < 1e-12
        assert (torch.tensor(stream["std"]) / torch.tensor(full["std"]) - 1).abs().max() < 1e-6
    mono = streaming_stats(TensorDataset(x[:, :1]), axis="channel", batch_size=7)
    assert mono == {"mean": [pytest.approx(float(x[:, 0].mean()), rel=1e-12)],
                    "std": [pytest.approx(float(x[:, 0].std()), rel=1e-9)]}
    # a dataset with conditions: the items' dicts pass through, normalise/unnormalise are inverses
    td = TensorDataset(x.float(), {"label": torch.arange(103) % 4})
    assert int(td[6][1]["label"]) == 2
    stats = streaming_stats(td)
    back = unnormalise(torch.stack([normalise(td[i][0], stats) for i in range(3)]), stats)
    assert torch.allclose(back, x[:3].float(), rtol=1e-6)
    with pytest.raises(ValueError, match="rows for 103 examples"):
        TensorDataset(x, {"label": torch.arange(5)})
    bad = x.clone()
    bad[50, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        streaming_stats(TensorDataset(bad), batch_size=16)


# ----------------------------------------------------------------------------- cache
def test_cache_round_trips_exactly_and_resumes(classes, tmp_path):
    with pytest.warns(UserWarning):
        ds = ImageFolder(str(classes), image_size=8)
    ref, ref_cond = _stack(ds)
    out = tmp_path / "cache"
    index = prepare(ds, str(out), shard_size=4, info={"source": "imgs"}, progress=False)
    assert index["count"] == 9 and index["shape"] == [3, 8, 8] and len(index["shards"]) == 3
    assert json.loads((out / "index.json").read_text())["class_names"] == ["cat", "dog"]
    assert np.load(out / "shard_00000.npy").dtype == np.uint8
    cached = CachedDataset(str(out))
    x, cond = _stack(cached)
    assert torch.equal(x, ref)  # uint8 round trip is exact for 8-bit images
    assert [int(c["label"]) for c in cond] == [int(c["label"]) for c in ref_cond]
    assert torch.equal(cached.labels, ds.labels) and cached.class_names == ["cat", "dog"]
    assert torch.equal(torch.cat([b for b, _ in DataLoader(cached, batch_size=3, num_workers=2)]), ref)
    # a second call with the same settings does nothing; other settings need overwrite
    first = os.stat(out / "shard_00000.npy").st_mtime_ns
    prepare(ds, str(out), shard_size=4, info={"source": "imgs"}, progress=False)
    assert os.stat(out / "shard_00000.npy").st_mtime_ns == first
    with pytest.raises(ValueError, match="other settings"):
        prepare(ds, str(out), shard_size=5, progress=False)
    # an interrupted prepare (last shard and the index missing) finishes with only the missing shard
    for name in ("index.json", "shard_00002.json", "shard_00002.npy"):
        os.remove(out / name)
    with pytest.raises(FileNotFoundError, match="interrupted"):
        CachedDataset(str(out))
    prepare(ds, str(out), shard_size=4, info={"source": "imgs"}, progress=False)
    assert os.stat(out / "shard_00000.npy").st_mtime_ns == first
    assert torch.equal(_stack(CachedDataset(str(out)))[0], ref)
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]


def test_float_cache_with_stats(tmp_path):
    x = torch.randn(30, 2, 6, generator=torch.Generator().manual_seed(3)) * 4 + 2
    ds = TensorDataset(x)
    prepare(ds, str(tmp_path / "f32"), dtype="float32", shard_size=7, stats="channel", progress=False)
    cached = CachedDataset(str(tmp_path / "f32"))
    stats = streaming_stats(ds, axis="channel")
    assert cached.stats["mean"] == pytest.approx(stats["mean"], rel=1e-12)
    assert torch.equal(_stack(CachedDataset(str(tmp_path / "f32"), normalise=False))[0], x)
    assert torch.allclose(_stack(cached)[0], torch.stack([normalise(v, stats) for v in x]), atol=1e-6)
    prepare(ds, str(tmp_path / "f16"), dtype="float16", progress=False)
    assert torch.equal(_stack(CachedDataset(str(tmp_path / "f16")))[0], x.half().float())
    with pytest.raises(ValueError, match="uint8 cache holds images in"):
        prepare(ds, str(tmp_path / "u8"), dtype="uint8", progress=False)
    # a batched transform (as latent encoding is) runs before storing; the shape is the transformed one
    index = prepare(ds, str(tmp_path / "lat"), dtype="float32", transform=lambda b: b[:, :, ::2] * 2,
                    shard_size=8, batch_size=5, progress=False)
    assert index["shape"] == [2, 3]
    assert torch.equal(_stack(CachedDataset(str(tmp_path / "lat")))[0], x[:, :, ::2] * 2)


def test_prepare_command(classes, tmp_path, capsys):
    out = tmp_path / "c"
    with pytest.warns(UserWarning, match="broken.png"):
        assert main(["prepare", "--data", str(classes), "--image-size", "8", "--out", str(out), "--workers", "0",
                     "--shard-size", "6"]) == 0
    text = capsys.readouterr().out
    assert "9 images in 2 classes" in text and "examples/s" in text
    assert CachedDataset(str(out)).index["info"]["image_size"] == 8
    assert main(["prepare", "--data", str(classes), "--image-size", "0", "--out", str(out)]) == 2
    assert "--image-size must be a positive integer" in capsys.readouterr().err
    np.save(tmp_path / "a.npy", np.random.default_rng(0).normal(size=(9, 3)))
    assert main(["prepare", "--data", str(tmp_path / "a.npy"), "--out", str(tmp_path / "ac"), "--workers", "0"]) == 0
    assert len(CachedDataset(str(tmp_path / "ac")).stats["mean"]) == 3


# ----------------------------------------------------------------------------- audio
def _wav_folder(root):
    write_wav(str(root / "a.wav"), torch.linspace(-0.9, 0.9, 500)[None], 8000, format="float32")
    os.makedirs(root / "sub")
    write_wav(str(root / "sub" / "b.wav"), torch.full((2, 40), 0.25), 16000, format="float32")  # short, stereo
    write_wav(str(root / "sub" / "c.wav"), torch.sin(torch.arange(3000) / 7.0)[None] * 0.5, 12000)  # resampled


def test_audio_clips_equal_the_in_memory_crops(tmp_path):
    _wav_folder(tmp_path)
    ref = load_audio_folder(str(tmp_path), 40, clip_length=64, generator=torch.Generator().manual_seed(0))
    ds = AudioClips(str(tmp_path), 40, clip_length=64, generator=torch.Generator().manual_seed(0))
    x, cond = _stack(ds)
    assert ds.shape == (1, 64) and cond[0] == {}
    assert torch.equal(x, ref)
    assert len({f for f, _ in ds.crops}) == 3 and len({s for _, s in ds.crops}) > 10
    stats = streaming_stats(ds, axis="channel")
    normed = AudioClips(str(tmp_path), 40, clip_length=64, generator=torch.Generator().manual_seed(0), stats=stats)
    assert torch.allclose(normed[3][0], (ref[3] - stats["mean"][0]) / stats["std"][0], atol=1e-6)


def test_corrupt_and_truncated_wavs(tmp_path):
    _wav_folder(tmp_path)
    (tmp_path / "head.wav").write_bytes(b"RIFF" + struct.pack("<I", 4) + b"WAVE")  # scipy: "local variable 'fs'"
    (tmp_path / "junk.wav").write_bytes(b"not a wave file")
    with pytest.raises(ValueError, match=r"head\.wav: not a readable WAV file \(no fmt chunk\)"):
        read_wav(str(tmp_path / "head.wav"))
    full = (tmp_path / "sub" / "c.wav").read_bytes()
    (tmp_path / "sub" / "c.wav").write_bytes(full[:44 + 2 * 1000 + 1])  # 1000 of 3000 16-bit frames, half a frame
    truncated = r"c\.wav: the file is truncated: its header declares 3000 frames but only 1000 are"
    with pytest.warns(UserWarning, match=truncated):
        audio, _ = read_wav(str(tmp_path / "sub" / "c.wav"))
    assert audio.shape == (1, 1000)
    with pytest.warns(UserWarning) as record:
        ds = AudioClips(str(tmp_path), 20, clip_length=64, generator=torch.Generator().manual_seed(1))
    text = " ".join(str(w.message) for w in record)
    assert "skipped 2 unreadable WAV file(s)" in text and "head.wav" in text and "junk.wav" in text
    assert "truncated" in text and len(ds.paths) == 3 and ds[0][0].shape == (1, 64)
    # 24-bit PCM (three bytes per sample) reads as k / 2^23
    import wave
    with wave.open(str(tmp_path / "w24.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(3), w.setframerate(8000)
        w.writeframes(b"".join(int(k).to_bytes(3, "little", signed=True) for k in (-2**23, -1, 0, 2**22, 2**23 - 1)))
    assert read_wav(str(tmp_path / "w24.wav"))[0].tolist() == [[-1.0, -2**-23, 0.0, 0.5, 1 - 2**-23]]
    empty = tmp_path / "bad"
    empty.mkdir()
    (empty / "x.wav").write_bytes(b"RIFF\0\0\0\0WAVE")
    with pytest.warns(UserWarning), pytest.raises(ValueError) as err:
        AudioClips(str(empty), 4)
    assert "none of the 1 .wav files" in str(err.value) and "\n" not in str(err.value)


def test_write_wav_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "keep.wav"
    write_wav(str(path), torch.zeros(1, 100), 8000)
    before = path.read_bytes()
    def failing(target, rate, data):
        with open(target, "wb") as f:
            f.write(b"RIFF partial")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(audio_mod, "_write_wav_file", failing)
    with pytest.raises(OSError, match="No space"):
        write_wav(str(path), torch.ones(1, 100) * 0.5, 8000)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["keep.wav"]


# ----------------------------------------------------------------------------- with the Trainer
def test_trainer_reaches_the_same_weights_from_folder_cache_and_tensor(tmp_path):
    from unnoise import nets, schedules
    from unnoise.denoiser import Denoiser
    from unnoise.train import TrainConfig, Trainer
    rng = np.random.default_rng(5)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    folder = ImageFolder(str(tmp_path), image_size=8)
    prepare(folder, str(tmp_path / "cache"), shard_size=5, progress=False)
    sources = [(load_image_folder(str(tmp_path), 8)[0], 0), (folder, 0), (CachedDataset(str(tmp_path / "cache")), 2)]
    weights = []
    for data, workers in sources:
        torch.manual_seed(0)
        net = nets.build("unet", shape=(3, 8, 8), base_channels=4, channel_mult=(1,), num_res_blocks=1,
                         attention_levels=(), num_heads=1)
        trainer = Trainer(Denoiser(net), schedules.get("ddpm"), data,
                          TrainConfig(steps=4, batch_size=4, device="cpu", num_workers=workers))
        trainer.fit(progress=False)  # 4 steps of 4: crosses the 12-image epoch boundary
        weights.append(torch.cat([p.detach().flatten() for p in trainer.denoiser.parameters()]))
    assert torch.equal(weights[0], weights[1]) and torch.equal(weights[0], weights[2])
