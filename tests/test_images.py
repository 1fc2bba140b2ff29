"""Image data: folder loading (grayscale, RGBA, palette, JPEG, corrupt files, class folders, crops),
bundled digits, flips, PNG grids, the Trainer's augment hook, and the image CLI end to end."""
import numpy as np
import pytest
import torch
from PIL import Image

from unnoise import nets, schedules
from unnoise.cli import main
from unnoise.data.images import flip_rows, load_digits, load_image_folder, random_flip
from unnoise.denoiser import Denoiser
from unnoise.imaging import image_grid, plot_image_trajectory, save_image_grid
from unnoise.train import TrainConfig, Trainer


@pytest.fixture
def folder(tmp_path):
    """Two classes: cats (a grey L image, an RGBA image fully transparent, a corrupt .png),
    dogs (a palette image and a wide RGB JPEG)."""
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs" / "sub").mkdir(parents=True)
    Image.new("L", (10, 10), 0).save(tmp_path / "cats" / "black_gray.png")
    Image.new("RGBA", (12, 12), (255, 0, 0, 0)).save(tmp_path / "cats" / "transparent.png")
    (tmp_path / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([0, 0, 255] + [0] * 765)  # index 0 = blue
    pal.save(tmp_path / "dogs" / "palette.png")
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, :10] = (255, 0, 0)
    wide[:, 10:20] = (0, 255, 0)
    wide[:, 20:] = (0, 0, 255)
    Image.fromarray(wide).save(tmp_path / "dogs" / "sub" / "stripes.jpg", quality=100)
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_modes_labels_crop_and_corrupt_file(folder):
    with pytest.warns(UserWarning, match="broken.png"):
        x, labels, names = load_image_folder(str(folder), image_size=8)
    assert names == ["cats", "dogs"]
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert labels.tolist() == [0, 0, 1, 1]  # sorted walk: cats/black_gray, cats/transparent, dogs/palette, dogs/sub
    assert torch.allclose(x[0], torch.full((3, 8, 8), -1.0))  # grayscale black -> all channels -1
    assert torch.allclose(x[1], torch.ones(3, 8, 8))  # transparent pixels composited onto white
    assert torch.allclose(x[2], torch.tensor([-1.0, -1.0, 1.0])[:, None, None].expand(3, 8, 8))  # palette blue
    # a 30x10 image: shorter side -> 8, centre crop keeps the middle (green) third
    centre = x[3][:, 1:-1, 2:-2].mean(dim=(1, 2))
    assert centre[1] > 0.9 and centre[0] < -0.8 and centre[2] < -0.8


def test_folder_grayscale_mode_and_errors(folder, tmp_path_factory):
    with pytest.warns(UserWarning):
        x, _, _ = load_image_folder(str(folder), image_size=6, mode="L")
    assert x.shape == (4, 1, 6, 6)
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(ValueError, match="no images"):
        load_image_folder(str(empty))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(str(empty / "missing"))
    with pytest.raises(ValueError, match="unknown image mode"):
        load_image_folder(str(folder), mode="CMYK")
    only_bad = tmp_path_factory.mktemp("bad")
    (only_bad / "a.jpg").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="a.jpg"), pytest.raises(ValueError, match="could be read"):
        load_image_folder(str(only_bad))


def test_folder_without_class_subfolders_has_no_labels(tmp_path):
    for i in range(3):
        Image.new("RGB", (9, 9), (i * 100, 0, 0)).save(tmp_path / f"{i}.png")
    x, labels, names = load_image_folder(str(tmp_path), image_size=4)
    assert x.shape == (3, 3, 4, 4) and labels is None and names == []
    assert torch.allclose(x[:, 0, 0, 0], torch.tensor([0, 100, 200]) / 127.5 - 1, atol=1e-6)


def test_digits_range_labels_and_upsampling():
    x, y, names = load_digits()
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert sorted(set(y.tolist())) == list(range(10)) and names[3] == "3"
    sk = pytest.importorskip("sklearn.datasets").load_digits()  # the bundled file is scikit-learn's array
    assert torch.equal(x[:, 0], torch.tensor(sk.images, dtype=torch.float32) / 8 - 1)
    assert torch.equal(y, torch.tensor(sk.target))
    x16, _, _ = load_digits(16)
    assert x16.shape == (1797, 1, 16, 16) and x16.min() >= -1 and x16.max() <= 1
    # 2x bilinear upsampling keeps each image's mean intensity (up to edge effects)
    assert (x16.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))).abs().max() < 0.05


def test_random_flip_flips_about_half():
    x = torch.randn(400, 2, 3, 5)
    out = random_flip(x, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all())
    assert 160 < int(flipped.sum()) < 240


def test_png_grid_layout_and_pixels(tmp_path):
    imgs = torch.stack([torch.full((1, 4, 4), -1.0), torch.full((1, 4, 4), 1.0), torch.zeros(1, 4, 4)])
    grid = image_grid(imgs, nrow=2, pad=1)
    assert grid.shape == (2 * 5 + 1, 2 * 5 + 1, 1)
    assert grid[1, 1, 0] == 0 and grid[1, 6, 0] == 255 and grid[6, 1, 0] == 128 and grid[0, 0, 0] == 255
    save_image_grid(imgs, str(tmp_path / "g.png"), nrow=3, upscale=2)
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (3 * 9 + 1, 9 + 1) and im.mode == "L"
    steps = [(s, torch.randn(1, 4, 4) * s, torch.zeros(1, 4, 4)) for s in (10.0, 1.0, 0.1)]
    plot_image_trajectory(steps, str(tmp_path / "t.png"))
    assert (tmp_path / "t.png").stat().st_size > 1000


def test_trainer_applies_augment_to_each_batch():
    torch.manual_seed(0)
    seen = []

    def augment(x0, u):
        seen.append(x0.shape)
        assert u.shape == (5,) and torch.all((u >= 0) & (u < 1))
        return flip_rows(x0, u)

    net = nets.build("unet", shape=(1, 4, 4), base_channels=4, channel_mult=(1,), num_res_blocks=1,
                     attention_levels=(), num_heads=1)
    trainer = Trainer(Denoiser(net), schedules.get("ddpm"), torch.randn(10, 1, 4, 4),
                      TrainConfig(steps=2, batch_size=5, device="cpu", log_every=1), augment=augment)
    trainer.fit(progress=False)
    assert seen == [torch.Size([5, 1, 4, 4])] * 2


def test_cli_train_and_sample_image_folder(folder, tmp_path_factory, capsys):
    run = tmp_path_factory.mktemp("run")
    with pytest.warns(UserWarning, match="broken.png"):
        code = main(["train", "--data", str(folder), "--out", str(run), "--image-size", "8", "--conditional",
                     "--flip", "--steps", "2", "--batch-size", "4", "--base-channels", "8", "--channel-mult", "1,2",
                     "--device", "cpu"])
    assert code == 0
    text = capsys.readouterr().out
    assert "parameters" in text and "UNet(" in text and "2 classes (cats, dogs)" in text
    out = tmp_path_factory.mktemp("samples") / "dogs.png"
    assert main(["sample", "--checkpoint", str(run), "--n", "6", "--steps", "3", "--class-label", "dogs",
                 "--guidance-scale", "2", "--out", str(out), "--device", "cpu"]) == 0
    with Image.open(out) as im:  # 6 tiles of 8x8 upscaled to 64, about square: 3 x 2
        assert im.size == (3 * 65 + 1, 2 * 65 + 1) and im.mode == "RGB"
    assert main(["sample", "--checkpoint", str(run), "--class-label", "7", "--out", str(out)]) == 2
    assert "out of range" in capsys.readouterr().err
    with pytest.warns(UserWarning):
        assert main(["train", "--data", str(folder), "--out", str(run), "--image-size", "6", "--steps", "1",
                     "--channel-mult", "1,2,2", "--device", "cpu", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "divisible by 4" in err and "put back" in err
    assert (run / "model.safetensors").exists() and not list(run.parent.glob(f".{run.name}.replaced"))


def test_cli_classifier_guidance_and_errors(folder, tmp_path_factory, capsys):
    run, clf = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("clf")
    with pytest.warns(UserWarning):
        assert main(["train", "--data", str(folder), "--out", str(run), "--image-size", "8", "--steps", "1",
                     "--batch-size", "4", "--base-channels", "8", "--channel-mult", "1,2", "--device", "cpu"]) == 0
    with pytest.warns(UserWarning):
        assert main(["train-classifier", "--data", str(folder), "--out", str(clf), "--image-size", "8",
                     "--steps", "2", "--width", "8", "--batch-size", "4", "--device", "cpu"]) == 0
    import json
    config = json.loads((clf / "config.json").read_text())
    assert config["class_names"] == ["cats", "dogs"] and config["net"]["config"]["num_classes"] == 2
    assert config["kind"] == "classifier" and (clf / "metrics.jsonl").exists()
    out = tmp_path_factory.mktemp("s") / "x.npy"
    assert main(["sample", "--checkpoint", str(run), "--n", "4", "--steps", "2", "--classifier", str(clf),
                 "--class-label", "1", "--guidance-scale", "3", "--out", str(out), "--device", "cpu"]) == 0
    arr = np.load(out)
    assert arr.shape == (4, 3, 8, 8) and np.isfinite(arr).all() and np.abs(arr).max() <= 1
    capsys.readouterr()
    # an unconditional run cannot take classifier-free guidance or a class label
    assert main(["sample", "--checkpoint", str(run), "--guidance-scale", "2", "--out", str(out)]) == 2
    assert "class-conditional" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(run), "--class-label", "1", "--out", str(out)]) == 2
    assert "unconditional" in capsys.readouterr().err


def test_demo_digits_writes_one_row_per_class(tmp_path, capsys):
    assert main(["demo", "digits", "--out", str(tmp_path), "--steps", "2", "--device", "cpu"]) in (0, None)
    for name in ("samples.png", "grid.png", "trajectory.png", "run/loss.png", "run/config.json"):
        assert (tmp_path / name).exists(), name
    with Image.open(tmp_path / "grid.png") as im:  # 10 rows (classes) x 10 samples of 8x8 digits upscaled to 64
        assert im.size == (10 * 65 + 1, 10 * 65 + 1)
    import json
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["net"]["name"] == "unet" and config["net"]["config"]["num_classes"] == 10
    assert config["image"]["class_names"] == [str(k) for k in range(10)]
