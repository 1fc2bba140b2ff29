"""KL autoencoder: shapes, the closed-form KL, latent scaling, training and checkpoints."""
import json
import math

import pytest
import torch

from unnoise.nets.autoencoder import (Autoencoder, DiagonalGaussian, autoencoder_loss, estimate_latent_scale,
                                      fit_autoencoder, load_autoencoder)


def blobs(n, size=16, seed=0):
    """Smooth random images in [-1, 1]: one Gaussian blob of a random colour per image."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = torch.rand(n, 2, generator=g) * size
    colour = torch.rand(n, 3, 1, 1, generator=g) * 2 - 1
    d2 = (yy[None] - centre[:, 0, None, None]) ** 2 + (xx[None] - centre[:, 1, None, None]) ** 2
    return (colour * torch.exp(-d2 / 12.0)[:, None]).clamp(-1, 1)


@pytest.mark.parametrize("f,lc", [(1, 2), (2, 4), (4, 3)])
def test_shapes(f, lc):
    model = Autoencoder(in_channels=3, latent_channels=lc, downsample=f, channels=8)
    x = torch.randn(2, 3, 16, 16)
    post = model.encode(x)
    assert post.mean.shape == post.logvar.shape == (2, lc, 16 // f, 16 // f)
    assert model.latent_shape((3, 16, 16)) == (lc, 16 // f, 16 // f)
    assert model.decode(post.sample()).shape == x.shape


def test_bad_inputs():
    with pytest.raises(ValueError, match="power of 2"):
        Autoencoder(downsample=3)
    model = Autoencoder(downsample=4, channels=8)
    with pytest.raises(ValueError, match="divisible"):
        model.encode(torch.zeros(1, 3, 18, 18))
    with pytest.raises(ValueError, match="channels"):
        model.encode(torch.zeros(1, 1, 16, 16))


def test_kl_closed_form():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 4, 3, 3, generator=g, dtype=torch.float64), torch.randn(5, 4, 3, 3, generator=g, dtype=torch.float64)
    post = DiagonalGaussian(mu, logvar)
    expected = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).reshape(5, -1).sum(1)
    assert torch.allclose(post.kl(), expected)
    # cross-check against torch.distributions
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * logvar).exp()),
                                            torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    assert torch.allclose(post.kl(), ref.reshape(5, -1).sum(1))
    assert torch.allclose(DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 3)).kl(), torch.zeros(2))
    # samples have the posterior's moments
    big = DiagonalGaussian(torch.full((20000, 1), 0.5), torch.full((20000, 1), math.log(4.0)))
    z = big.sample(g)
    assert abs(float(z.mean()) - 0.5) < 0.05 and abs(float(z.std()) - 2.0) < 0.05


def test_loss_terms():
    model = Autoencoder(latent_channels=2, downsample=2, channels=8)
    x = blobs(4)
    out = autoencoder_loss(model, x, kl_weight=0.5, loss="l2", generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out["loss"], out["recon"] + 0.5 * out["kl"])
    post = model.encode(x)
    assert torch.allclose(out["kl"], post.kl().mean() / x[0].numel())
    with pytest.raises(ValueError, match="l1 or l2"):
        autoencoder_loss(model, x, loss="huber")


def test_latent_scale_gives_unit_variance():
    model = Autoencoder(latent_channels=4, downsample=4, channels=8)
    with torch.no_grad():  # a code far from unit scale, as trained autoencoders have
        model.encoder[-1].weight.mul_(7.0)
        model.encoder[-1].bias.add_(3.0)
    scale, shift = estimate_latent_scale(model, blobs(256, seed=1))
    held_out = model.encode(blobs(256, seed=2)).mode().detach()
    scaled = (held_out - shift) * scale
    assert abs(float(scaled.std()) - 1) < 0.1 and abs(float(scaled.mean())) < 0.1
    assert abs(float(held_out.std()) - 1) > 0.5  # the raw code was not unit scale


def test_training_reduces_reconstruction_error_and_roundtrips(tmp_path):
    torch.manual_seed(0)
    data = blobs(64)
    model = Autoencoder(latent_channels=4, downsample=2, channels=8)
    with torch.no_grad():
        before = float(autoencoder_loss(model, data, loss="l1")["recon"])
    trainer = fit_autoencoder(model, data, steps=50, batch_size=16, lr=3e-3, kl_weight=1e-6, progress=False,
                              run_dir=str(tmp_path), info={"data": {"shape": [3, 16, 16]}})
    with torch.no_grad():
        after = float(autoencoder_loss(model, data, loss="l1")["recon"])
    assert after < 0.5 * before and len(trainer.history) == 2 and "recon" in trainer.history[-1]
    loaded, cfg = load_autoencoder(str(tmp_path))
    assert cfg["kind"] == "autoencoder" and cfg["data"]["shape"] == [3, 16, 16]
    assert (cfg["scale"], cfg["shift"]) == estimate_latent_scale(model, data)
    x = data[:3]
    assert torch.equal(loaded.decode(loaded.encode(x).mode()), model.eval().decode(model.encode(x).mode()))
    (tmp_path / "config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not an unnoise checkpoint"):
        load_autoencoder(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="train-autoencoder"):
        (tmp_path / "empty").mkdir()
        load_autoencoder(str(tmp_path / "empty"))
