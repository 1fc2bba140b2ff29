"""Latent diffusion: codec, pipeline sampling/editing through latents, training and loading a latent run."""
import pytest
import torch

from unnoise import schedules
from unnoise.analytic import EmpiricalDenoiser
from unnoise.data.shapes import make_shapes
import unnoise
from unnoise.latent import LatentCodec, psnr, train_latent
from unnoise import checkpoint
from unnoise.nets.autoencoder import Autoencoder, estimate_latent_scale


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    ae = Autoencoder(in_channels=3, latent_channels=2, downsample=4, channels=8).eval()
    images = make_shapes(64, 16, torch.Generator().manual_seed(0))[0]
    scale, shift = estimate_latent_scale(ae, images)
    return LatentCodec(ae, scale, shift), images


def test_psnr_formula():
    x = torch.zeros(2, 3, 4, 4)
    assert psnr(x, x + 0.1) == pytest.approx(10 * torch.log10(torch.tensor(4 / 0.01)).item())
    assert psnr(x, x) == float("inf")


def test_codec_scales_and_inverts(codec):
    c, images = codec
    z = c.encode(images)
    assert z.shape == (64, 2, 4, 4)
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std()) - 1) < 1e-4  # the scale was estimated on these
    raw = c.autoencoder.encode(images).mode()
    assert torch.allclose(z, (raw - c.shift) * c.scale)
    assert torch.allclose(c.decode(z, clamp=False), c.autoencoder.decode(raw), atol=1e-5)


def test_latent_mask_covers_the_hole(codec):
    c, _ = codec
    mask = torch.ones(16, 16)
    mask[5, 9] = 0  # one unknown pixel
    lm = c.latent_mask(mask)
    assert lm.shape == (4, 4) and float(lm.sum()) == 15 and lm[1, 2] == 0
    with pytest.raises(ValueError, match="divisible"):
        c.latent_mask(torch.ones(10, 10))


def test_pipeline_samples_decode_memorised_latents(codec):
    """With the exact (empirical) denoiser of a set of latents, sampled latents are training latents,
    so the decoded images are the autoencoder's reconstructions of training images."""
    c, images = codec
    z_train = c.encode(images[:8])
    pipe = unnoise.Pipeline(EmpiricalDenoiser(z_train), schedules.get("karras"), "latent_images", (3, 16, 16),
                            model_shape=c.latent_shape((3, 16, 16)), codec=c)
    out, z = pipe.sample(6, sampler="ddim", steps=30, generator=torch.Generator().manual_seed(1),
                         return_model_space=True)
    assert out.shape == (6, 3, 16, 16) and float(out.abs().max()) <= 1
    d = torch.cdist(z.reshape(6, -1), z_train.reshape(8, -1))
    assert float(d.min(1).values.max()) < 1e-2 * float(d.max())
    nearest = d.argmin(1)
    assert torch.allclose(out, c.decode(z_train[nearest]), atol=1e-2)


def test_pipeline_inpaint_keeps_known_pixels_and_img2img_identity(codec):
    c, images = codec
    z_train = c.encode(images)
    pipe = unnoise.Pipeline(EmpiricalDenoiser(z_train), schedules.get("ddpm"), "latent_images", (3, 16, 16),
                            model_shape=c.latent_shape((3, 16, 16)), codec=c)
    x = images[:4]
    mask = torch.ones(16, 16)
    mask[4:12, 4:12] = 0
    g = torch.Generator().manual_seed(0)
    for method in ("replace", "smc"):
        out = pipe.inpaint(x, mask, steps=10, generator=g, method=method, particles=4)
        keep = mask.bool().expand_as(x)
        assert torch.equal(out[keep], x[keep])  # exact, not just within 1/255
        assert not torch.equal(out, x)
    assert torch.equal(pipe.img2img(x, 0.0), x)
    with pytest.raises(ValueError, match="does not fit"):
        pipe.inpaint(x, torch.ones(8, 8))
    with pytest.raises(ValueError, match="method"):
        pipe.inpaint(x, mask, method="magic")


def test_train_latent_run_roundtrip(tmp_path, codec):
    from unnoise.train import TrainConfig
    c, images = codec
    ae_dir = tmp_path / "ae"
    checkpoint.save(str(ae_dir), c.autoencoder, None, info={"kind": "autoencoder", "scale": c.scale, "shift": c.shift})
    run = tmp_path / "run"
    cfg = TrainConfig(steps=3, batch_size=8, log_every=1, device="cpu")
    train_latent(images, str(ae_dir), str(run), net="unet",
                 net_config=dict(base_channels=8, channel_mult=[1], attention_levels=[]), config=cfg, progress=False)
    pipe = unnoise.load(str(run))
    config = pipe.config
    assert pipe.kind == "latent_images" and pipe.shape == (3, 16, 16) and pipe.model_shape == (2, 4, 4)
    assert config["latent"]["autoencoder"] == str(ae_dir.resolve())
    assert config["latent"]["latent_shape"] == [2, 4, 4] and config["data"]["shape"] == [2, 4, 4]
    out = pipe.sample(2, steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()
    with pytest.raises(FileNotFoundError, match="--autoencoder"):
        unnoise.load(str(run), autoencoder=str(tmp_path / "moved"))


def test_cli_train_autoencoder_train_latent_sample(tmp_path):
    import json

    from unnoise.cli import main
    ae, run = str(tmp_path / "ae"), str(tmp_path / "run")
    assert main(["train-autoencoder", "--out", ae, "--num-images", "32", "--image-size", "16", "--steps", "2",
                 "--batch-size", "8", "--channels", "8", "--latent-channels", "2", "--device", "cpu"]) == 0
    cfg = json.load(open(tmp_path / "ae" / "config.json"))
    assert cfg["kind"] == "autoencoder" and cfg["net"]["config"]["downsample"] == 4 and cfg["scale"] > 0
    assert "psnr_db" in cfg and (tmp_path / "ae" / "metrics.jsonl").exists()
    assert main(["train", "--latent", ae, "--data", "shapes", "--num-images", "32", "--image-size", "16",
                 "--out", run, "--steps", "2", "--batch-size", "8", "--base-channels", "8", "--conditional",
                 "--checkpoint-every", "0", "--device", "cpu"]) == 0
    run_cfg = json.load(open(tmp_path / "run" / "config.json"))
    assert run_cfg["latent"]["autoencoder"] == str((tmp_path / "ae").resolve())
    assert run_cfg["latent_classes"]["class_names"][0] == "red circle"
    out = str(tmp_path / "s.npy")
    assert main(["sample", "--checkpoint", run, "--n", "3", "--steps", "2", "--out", out, "--class-label",
                 "blue square", "--guidance-scale", "2", "--device", "cpu"]) == 0
    import numpy as np
    x = np.load(out)
    assert x.shape == (3, 3, 16, 16) and np.abs(x).max() <= 1
    # editing commands on the latent run: known pixels stay exact, strength 0 is the identity
    np.save(tmp_path / "in.npy", x[:2])
    edited = str(tmp_path / "inp.npy")
    assert main(["inpaint", "--checkpoint", run, "--input", str(tmp_path / "in.npy"), "--box", "4,4,12,12",
                 "--out", edited, "--steps", "3", "--n", "2", "--class-label", "1", "--device", "cpu"]) == 0
    y = np.load(edited)
    assert y.shape == (2, 2, 3, 16, 16)
    keep = np.ones((16, 16), bool)
    keep[4:12, 4:12] = False
    assert np.array_equal(y[:, :, :, keep], np.repeat(x[:2, None], 2, 1)[:, :, :, keep])
    same = str(tmp_path / "same.npy")
    assert main(["img2img", "--checkpoint", run, "--input", str(tmp_path / "in.npy"), "--strength", "0",
                 "--out", same, "--n", "1", "--device", "cpu"]) == 0
    assert np.array_equal(np.load(same)[:, 0], x[:2])
    assert main(["inpaint", "--checkpoint", run, "--input", str(tmp_path / "in.npy"), "--out", edited]) == 2
    assert main(["train", "--latent", str(tmp_path / "missing"), "--data", "shapes", "--out", run]) == 2


class _ImageItems(torch.utils.data.Dataset):
    """A map-style image dataset that is not in memory as one tensor (items built on access)."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i].clone(), {"label": torch.tensor(i % 3)}


def test_latent_cache_from_a_dataset_and_training_on_it(tmp_path, codec):
    from unnoise.latent import encode_dataset
    from unnoise.train import TrainConfig
    c, images = codec
    cache = encode_dataset(c, _ImageItems(images), batch_size=24)  # batches that do not divide 64
    assert torch.allclose(cache.x, c.encode(images), atol=1e-5)
    assert torch.equal(cache.cond["label"], torch.arange(64) % 3)
    ae_dir = tmp_path / "ae"
    checkpoint.save(str(ae_dir), c.autoencoder, None, info={"kind": "autoencoder", "scale": c.scale, "shift": c.shift})
    t = train_latent(_ImageItems(images), str(ae_dir), None, net="unet",
                     net_config=dict(base_channels=8, channel_mult=[1], attention_levels=[], num_classes=3),
                     config=TrainConfig(steps=2, batch_size=8, device="cpu"), progress=False)
    assert t.step_count == 2 and t.example_shape == (2, 4, 4) and "label" in t.data.cond
