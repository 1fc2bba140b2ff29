"""Guidance combinators against exact results.

Analytic case: a Gaussian mixture whose component index is the class.  Its class posterior
p(k | x, sigma) = w_k N(x; mu_k, s_k^2 + sigma^2) / p_sigma(x) is closed form, and the conditional
denoiser of class k is the single component's E[x0 | x] = mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k).
Classifier guidance at scale 1 with that classifier must reproduce it exactly, and classifier-free
guidance built from the exact conditional/unconditional denoisers must equal classifier guidance at
every scale (both are D + w sigma^2 grad log p(k | x)).
"""
import math

import pytest
import torch

from unnoise import nets, schedules
from unnoise.analytic import GaussianMixture
from unnoise.guidance import (ClassifierFreeGuidance, ClassifierGuidance, NoisyClassifier, cfg, load_classifier,
                              train_classifier)
from unnoise.samplers import sample
from unnoise.train import TrainConfig, train_model

MEANS = torch.tensor([[-2.0, 0.5], [1.5, 1.0], [0.5, -2.0]], dtype=torch.float64)
STDS = torch.tensor([0.3, 0.6, 0.45], dtype=torch.float64)
WEIGHTS = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
GM = GaussianMixture(MEANS, STDS, WEIGHTS)


def posterior_logits(x, sigma):
    """Exact log w_k N(x; mu_k, (s_k^2 + sigma^2) I), up to a constant in k: (B, K)."""
    sig = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1)
    var = STDS[None] ** 2 + sig**2  # (B, K)
    d2 = ((x[:, None, :] - MEANS[None]) ** 2).sum(-1)
    return torch.log(WEIGHTS)[None] - 0.5 * d2 / var - math.log(2 * math.pi) * (MEANS.shape[1] / 2) - torch.log(var)


def component_denoiser(x, sigma, k):
    s2 = STDS[k].reshape(-1, 1) ** 2
    sig2 = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1) ** 2
    return MEANS[k] + s2 / (s2 + sig2) * (x - MEANS[k])


def conditional_mixture(x, sigma, cond):
    """Exact D(x, sigma, k); the null class 3 is the whole mixture."""
    labels = torch.as_tensor(cond["label"]).long()
    out = GM.denoise(x, sigma).clone()
    real = labels < 3
    if real.any():
        sig = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0])
        out[real] = component_denoiser(x[real], sig[real], labels[real])
    return out


@pytest.mark.parametrize("sigma", [0.05, 0.4, 1.0, 3.0, 20.0])
def test_classifier_guidance_with_exact_posterior_is_the_component_denoiser(sigma):
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(64, 2, generator=g, dtype=torch.float64)
    labels = torch.arange(64) % 3
    guided = ClassifierGuidance(GM.denoise, posterior_logits, scale=1.0)
    sig = torch.full((64,), sigma, dtype=torch.float64)
    assert torch.allclose(guided(x, sig, labels), component_denoiser(x, sig, labels), atol=1e-9, rtol=1e-9)


def test_cfg_equals_classifier_guidance_at_every_scale():
    g = torch.Generator().manual_seed(1)
    x = 2 * torch.randn(32, 2, generator=g, dtype=torch.float64)
    sig = torch.rand(32, generator=g, dtype=torch.float64) * 3 + 0.1
    labels = torch.arange(32) % 3
    for w in (0.0, 0.5, 1.0, 2.5, 7.0):
        a = cfg(conditional_mixture, w, null_label=3)(x, sig, labels)
        b = ClassifierGuidance(GM.denoise, posterior_logits, w)(x, sig, labels)
        assert torch.allclose(a, b, atol=1e-9), w


def test_cfg_scale_0_and_1_are_exactly_unconditional_and_conditional():
    torch.manual_seed(0)
    net = nets.build("unet", shape=(1, 8, 8), base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                     attention_levels=(), num_heads=2, num_classes=4)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    from unnoise.denoiser import Denoiser
    den = Denoiser(net, "eps", "vp").eval()
    x, sig, y = torch.randn(3, 1, 8, 8), torch.tensor([0.3, 1.0, 5.0]), torch.tensor([0, 1, 3])
    with torch.no_grad():
        cond, uncond = den(x, sig, y), den(x, sig, torch.full((3,), 4))
        assert not torch.equal(cond, uncond)
        assert torch.equal(cfg(den, 0.0)(x, sig, y), uncond)
        assert torch.equal(cfg(den, 1.0)(x, sig, y), cond)
        assert torch.allclose(cfg(den, 3.0)(x, sig, y), uncond + 3.0 * (cond - uncond), atol=1e-6)
        # an explicit null_label on a plain callable: only the label goes to the null class
        seen = []
        ClassifierFreeGuidance(lambda x, s, c: seen.append(c) or x, 2.0, null_label=4)(
            x, sig, {"label": y, "concat": torch.ones(3, 1, 8, 8)})
        assert torch.equal(seen[0]["label"], torch.full((3,), 4)) and torch.equal(seen[0]["concat"], torch.ones(3, 1, 8, 8))


def test_cfg_drops_each_condition_to_the_denoisers_null_value():
    """Per key: the label to the null class, the context to the stored empty prompt (padded to the
    prompt's length), concatenated inputs untouched; condition dropout replaces only the chosen rows."""
    from unnoise.denoiser import Denoiser
    net = nets.build("unet", shape=(1, 4, 4), base_channels=4, channel_mult=(1,), num_res_blocks=1,
                     attention_levels=(0,), num_heads=1, num_classes=3, context_dim=5, cond_channels=1)
    null_ctx, null_mask = torch.randn(2, 5), torch.tensor([True, True])
    den = Denoiser(net, null_cond={"context": null_ctx, "context_mask": null_mask})
    cond = {"label": torch.tensor([0, 2]), "context": torch.randn(2, 4, 5),
            "context_mask": torch.ones(2, 4, dtype=torch.bool), "concat": torch.randn(2, 1, 4, 4)}
    null = den.null_cond(cond)
    assert torch.equal(null["label"], torch.tensor([3, 3]))
    assert torch.equal(null["context"][:, :2], null_ctx.expand(2, 2, 5)) and torch.all(null["context"][:, 2:] == 0)
    assert torch.equal(null["context_mask"], torch.tensor([[True, True, False, False]] * 2))
    assert torch.equal(null["concat"], cond["concat"])
    part = den.null_cond(cond, drop=torch.tensor([False, True]))
    assert torch.equal(part["label"], torch.tensor([0, 3])) and torch.equal(part["context"][0], cond["context"][0])
    assert torch.equal(part["context"][1], null["context"][1])
    seen = []
    den.net.forward = lambda x, c_noise, c: seen.append(c) or torch.zeros_like(x)
    cfg(den, 2.0)(torch.zeros(2, 1, 4, 4), 1.0, cond)
    assert torch.equal(seen[0]["label"], torch.tensor([3, 3])) and torch.equal(seen[1]["label"], cond["label"])


def test_guidance_errors_are_clear():
    with pytest.raises(ValueError, match="conditional denoiser"):
        cfg(GM.denoise, 2.0)
    with pytest.raises(ValueError, match="needs cond"):
        cfg(conditional_mixture, 2.0, null_label=3)(torch.zeros(1, 2), 1.0)


def test_classifier_guided_sampling_draws_the_requested_component():
    """Sampling the exact guided denoiser (scale 1) gives component k's mean and spread."""
    g = torch.Generator().manual_seed(2)
    sigmas = schedules.get("karras", sigma_min=0.002, sigma_max=40.0).sampling_sigmas(40)
    for k in (0, 2):
        x = torch.randn(2000, 2, generator=g, dtype=torch.float64) * sigmas[0]
        out = sample(ClassifierGuidance(GM.denoise, posterior_logits, 1.0), x, sigmas.double(), sampler="heun",
                     cond=torch.full((2000,), k))
        assert torch.allclose(out.mean(0), MEANS[k], atol=0.05)
        assert torch.allclose(out.std(0), STDS[k].expand(2), rtol=0.08)


def test_noisy_classifier_learns_and_knows_the_noise_level(tmp_path):
    """Two Gaussians 3 apart: near-perfect at small sigma, close to chance at sigma >> 3."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    labels = torch.arange(2000) % 2
    data = torch.randn(2000, 2, generator=g) * 0.3 + torch.tensor([[-1.5, 0.0], [1.5, 0.0]])[labels]
    clf = NoisyClassifier([2], 2, width=32, depth=2, sigma_data=1.0)
    sched = schedules.get("loglinear", sigma_min=0.01, sigma_max=30.0)
    trainer = train_classifier(clf, data, labels, sched, steps=300, batch_size=256, lr=3e-3, progress=False,
                               run_dir=str(tmp_path), info={"class_names": ["a", "b"]})
    assert trainer.history[-1]["accuracy"] > 0.6  # logged with the loss in metrics.jsonl
    with torch.no_grad():
        for sigma, lo, hi in ((0.05, 0.97, 1.0), (30.0, 0.4, 0.62)):
            x = data + sigma * torch.randn(data.shape, generator=g)
            acc = float((clf(x, sigma).argmax(1) == labels).float().mean())
            assert lo <= acc <= hi, (sigma, acc)
        loaded, config = load_classifier(str(tmp_path))
        assert config["class_names"] == ["a", "b"] and config["kind"] == "classifier"
        assert torch.equal(loaded(data[:5], 0.5), clf(data[:5], 0.5))
    (tmp_path / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="corrupt"):
        load_classifier(str(tmp_path))


def test_tiny_conditional_model_separates_two_classes():
    """Class 0 at x=-2, class 1 at x=+2: guided samples land on their class; unconditional on both."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    labels = torch.arange(4000) % 2
    data = torch.randn(4000, 2, generator=g) * 0.25 + torch.tensor([[-2.0, 0.0], [2.0, 0.0]])[labels]
    cfg_train = TrainConfig(steps=600, batch_size=256, lr=2e-3, ema_decay=0.99, cond_dropout=0.2, seed=0,
                            device="cpu", log_every=1000)
    trainer = train_model(data, None, net_config={"width": 64, "depth": 2, "num_classes": 2}, parameterization="v",
                          schedule="cosine", config=cfg_train, normalize=False, labels=labels, progress=False)
    den, sched = trainer.ema, trainer.schedule
    sigmas = sched.sampling_sigmas(25)
    for k, sign in ((0, -1), (1, 1)):
        x = torch.randn(500, 2, generator=g) * sigmas[0]
        out = sample(cfg(den, 1.0), x, sigmas, sampler="dpmpp_2m", cond=torch.full((500,), k))
        assert float((torch.sign(out[:, 0]) == sign).float().mean()) > 0.95
        assert abs(float(out[:, 0].mean()) - 2 * sign) < 0.3
    x = torch.randn(1000, 2, generator=g) * sigmas[0]
    out = sample(cfg(den, 0.0), x, sigmas, sampler="dpmpp_2m", cond=torch.zeros(1000, dtype=torch.long))
    assert 0.35 < float((out[:, 0] > 0).float().mean()) < 0.65
