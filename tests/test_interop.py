"""unnoise.interop against diffusers itself: tiny models built from configs with random weights, saved to
temporary folders and read back offline.

- the schedule of every supported scheduler config visits exactly the sigmas / timesteps of ``set_timesteps``;
- the sigma -> timestep maps against the scheduler's own ``alphas_cumprod`` table;
- unnoise's ddim / euler / dpmpp_2m / unipc on a loaded UNet2DModel folder reproduce the diffusers loops over the
  whole trajectory (eps and v prediction);
- a Stable-Diffusion-layout folder: ``pipe.sample(prompt=..., guidance_scale=...)`` equals StableDiffusionPipeline;
- an exported diffusers-unet2d model sampled by DDIMPipeline equals unnoise's own DDIM samples;
- bad folders fail with one line naming the file.
"""
import itertools
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

import unnoise
from unnoise.cli import main

diffusers = pytest.importorskip("diffusers")

from unnoise.interop import (DiffusersSchedule, export_diffusers, is_diffusers_folder,  # noqa: E402
                             load_pipeline)


def tiny_unet(**kw):
    torch.manual_seed(0)
    cfg = dict(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
               down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
               norm_num_groups=4, attention_head_dim=8)
    cfg.update(kw)
    return diffusers.UNet2DModel(**cfg).eval()


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def save_pixel(folder, unet, scheduler):
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    return folder


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


# ----------------------------------------------------------------------------- grids and timestep maps
GRID_CLASSES = ["DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "EulerDiscreteScheduler",
                "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
                "DPMSolverMultistepScheduler", "UniPCMultistepScheduler",
                "DEISMultistepScheduler"]


def _reference_grid(sch, cls):
    """The sigmas and model timesteps a scheduler visits after set_timesteps (one entry per model call)."""
    if cls in ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler"):
        ts = sch.timesteps.double()
        if cls == "PNDMScheduler":  # PLMS repeats one timestep for its warm-up
            ts = torch.unique(ts).flip(0)
        ab = torch.cat([sch.alphas_cumprod[ts.long()], getattr(sch, "final_alpha_cumprod", torch.tensor(1.0))[None]])
        sig = (((1 - ab) / ab) ** 0.5).double()  # float32 arithmetic, as the scheduler's
        if sig[-1] >= sig[-2]:  # a last step from t = 0 to alpha_bar_0 is the identity
            sig = sig[:-1]
        return sig, ts
    sig, ts = sch.sigmas.double(), sch.timesteps.double()
    if cls == "HeunDiscreteScheduler":  # repeats each interior sigma for its corrector
        sig, ts = torch.cat([sig[:1], sig[1::2]]), torch.cat([ts[:1], ts[1::2]])
    return sig, ts


def test_grids_match_set_timesteps():
    """Every supported class x spacing x steps_offset x Karras x final sigma x betas: same sigmas, same timesteps."""
    checked = 0
    for cls, spacing, offset, karras, betas, k in itertools.product(
            GRID_CLASSES, ["leading", "trailing", "linspace"], [0, 1], [False, True],
            ["linear", "scaled_linear", "squaredcos_cap_v2"], [4, 10]):
        C = getattr(diffusers, cls)
        args = C.__init__.__code__.co_varnames
        kw = dict(timestep_spacing=spacing, steps_offset=offset, beta_schedule=betas)
        if betas == "scaled_linear":
            kw.update(beta_start=0.00085, beta_end=0.012)
        if karras:
            if "use_karras_sigmas" not in args:
                continue
            kw["use_karras_sigmas"] = True
        if offset and "final_sigmas_type" in args:
            kw["final_sigmas_type"] = "sigma_min"
        if "set_alpha_to_one" in args:
            kw["set_alpha_to_one"] = bool(offset)
        if cls == "PNDMScheduler":
            kw["skip_prk_steps"] = True
        sch = C(**kw)
        sch.set_timesteps(k)
        ours = DiffusersSchedule({**sch.config, "_class_name": cls})
        want_sig, want_t = _reference_grid(sch, cls)
        got = ours.sampling_sigmas(k).double()
        where = f"{cls} {kw} k={k}"
        assert got.shape == want_sig.shape, where
        assert torch.allclose(got, want_sig.float().double(), rtol=1e-6, atol=0), where
        assert torch.allclose(ours.timesteps(k), want_t, atol=1e-3), where
        assert torch.allclose(ours.timestep(got[: len(want_t)]), want_t, atol=2e-3), where
        checked += 1
    assert checked > 300


def test_default_spacing_of_configs_without_one():
    """Older configs do not name timestep_spacing: each class's own default applies (Euler: linspace)."""
    for cls in ("EulerDiscreteScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler"):
        sch = getattr(diffusers, cls)()
        sch.set_timesteps(7)
        cfg = {k: v for k, v in sch.config.items() if k != "timestep_spacing"}
        ours = DiffusersSchedule({**cfg, "_class_name": cls})
        assert torch.allclose(ours.timesteps(7), sch.timesteps.double()[:7], atol=1e-3), cls


def test_zero_terminal_snr():
    """Euler clamps alpha_bar_T to 2**-24 itself (sigma_max 4096, grid as diffusers); DDIM keeps 0: a clear error."""
    sch = diffusers.EulerDiscreteScheduler(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    sch.set_timesteps(6)
    ours = DiffusersSchedule(dict(sch.config, _class_name="EulerDiscreteScheduler"))
    assert torch.allclose(ours.sampling_sigmas(6).double(), sch.sigmas.double(), rtol=1e-6)
    assert torch.allclose(ours.timestep(ours.sampling_sigmas(6)[:-1]), sch.timesteps.double(), atol=2e-3)
    assert ours.sigma_max == pytest.approx(math.sqrt((1 - 2**-24) / 2**-24), rel=1e-6)
    ddim = dict(diffusers.DDIMScheduler(rescale_betas_zero_snr=True).config, _class_name="DDIMScheduler")
    with pytest.raises(ValueError, match="sigma_max is infinite") as err:
        DiffusersSchedule(ddim)
    assert "\n" not in str(err.value)
    assert DiffusersSchedule(ddim, terminal_alpha_bar=2**-24).sigma_max == pytest.approx(4096, rel=1e-6)


def test_timestep_maps_against_the_table():
    """At the table's sigmas every mode gives the integer t; between them log / linear give the fraction."""
    sch = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    ours = DiffusersSchedule(dict(sch.config, _class_name="DDPMScheduler"))
    table = (((1 - sch.alphas_cumprod) / sch.alphas_cumprod) ** 0.5).double()  # the schedulers' own sigma table
    ts = torch.tensor([0, 1, 17, 500, 998, 999])
    for mode in ("nearest", "log", "linear", "floor"):
        assert torch.allclose(ours.timestep(table[ts], mode), ts.double(), atol=1e-6), mode
    i, w = torch.tensor([3, 250, 700]), torch.tensor([0.2, 0.5 - 1e-3, 0.8], dtype=torch.float64)
    geo = torch.exp((1 - w) * table[i].log() + w * table[i + 1].log())
    assert torch.allclose(ours.timestep(geo, "log"), i + w, atol=1e-9)
    assert torch.equal(ours.timestep(geo, "nearest"), (i + w).round())
    assert torch.equal(ours.timestep(geo, "floor"), i.double())
    lin = (1 - w) * table[i] + w * table[i + 1]
    assert torch.allclose(ours.timestep(lin, "linear"), i + w, atol=1e-9)
    assert torch.allclose(ours.timestep(geo, "continuous"), geo.log() / 4)
    assert ours.timestep_mode == "nearest"
    euler = DiffusersSchedule(dict(diffusers.EulerDiscreteScheduler().config, _class_name="EulerDiscreteScheduler"))
    assert euler.timestep_mode == "linear"


# ----------------------------------------------------------------------------- loaded UNet2DModel vs diffusers loops
LOOPS = [("ddim", diffusers.DDIMScheduler, {"clip_sample": False}), ("euler", diffusers.EulerDiscreteScheduler, {}),
         ("dpmpp_2m", diffusers.DPMSolverMultistepScheduler, {}), ("unipc", diffusers.UniPCMultistepScheduler, {})]


def diffusers_loop(unet, sched, z, k, scale_free_sigmas, **step_kw):
    """The diffusers sampling loop; returns the trajectory in unnoise's scale-free variable."""
    sched.set_timesteps(k)
    x, out = z * sched.init_noise_sigma, []
    vp = not isinstance(sched, diffusers.EulerDiscreteScheduler)  # Euler's sample is already x / s
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            x = sched.step(unet(sched.scale_model_input(x, t), t).sample, t, x, **step_kw).prev_sample
            s = float(scale_free_sigmas[i + 1])
            out.append(x * math.sqrt(1 + s * s) if vp else x.clone())
    return out


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sampler,cls,extra", LOOPS, ids=[s for s, _, _ in LOOPS])
def test_loaded_unet_reproduces_diffusers_loop(tmp_path, unet, sampler, cls, extra, prediction):
    folder = save_pixel(tmp_path / "m", unet, cls(prediction_type=prediction, timestep_spacing="trailing", **extra))
    assert is_diffusers_folder(folder)
    pipe = unnoise.load(str(folder))  # unnoise.load dispatches diffusers folders to load_pipeline
    assert pipe.kind == "images" and tuple(pipe.shape) == (3, 8, 8)
    z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    k = 10
    want = diffusers_loop(unet, cls.from_pretrained(folder, subfolder="scheduler"), z, k,
                          pipe.schedule.sampling_sigmas(k))
    got = []
    final, raw = pipe.sample(2, sampler=sampler, steps=k, noise=z, return_model_space=True,
                             callback=lambda i, x, d, s: got.append(x.clone()))
    assert len(got) == len(want) == k
    assert max(rel(a, b) for a, b in zip(got, want)) <= 1e-4
    assert rel(raw, want[-1]) <= 1e-4
    assert torch.equal(final, raw.clamp(-1, 1))  # images come back in [-1, 1], as diffusers' pipelines return them


def test_clip_sample_clamps_the_denoiser(tmp_path, unet):
    """DDIM's clip_sample with the eps re-derived from the clipped x0 is D clamped to [-1, 1]."""
    folder = save_pixel(tmp_path / "m", unet, diffusers.DDIMScheduler(clip_sample=True, timestep_spacing="trailing"))
    pipe = load_pipeline(folder)
    assert pipe.denoiser.clip_sample == 1.0
    z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    want = diffusers_loop(unet, diffusers.DDIMScheduler.from_pretrained(folder, subfolder="scheduler"), z, 5,
                          pipe.schedule.sampling_sigmas(5), use_clipped_model_output=True)
    assert rel(pipe.sample(2, sampler="ddim", steps=5, noise=z), want[-1]) <= 1e-4


def test_class_conditional_unet(tmp_path):
    """class_labels through cond["label"]; CFG with the config's null class equals the eps-space CFG loop;
    without a null class guidance is refused."""
    unet = tiny_unet(num_class_embeds=4)
    folder = save_pixel(tmp_path / "c", unet, diffusers.DDIMScheduler(clip_sample=False, timestep_spacing="trailing"))
    with pytest.raises(ValueError, match="classifier-free guidance is unavailable"):
        load_pipeline(folder).denoiser.null_cond({"label": torch.tensor([1])})
    pipe = load_pipeline(folder, null_class=3)
    assert pipe.num_classes == 3
    z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    sched = diffusers.DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    sched.set_timesteps(5)  # T / k an integer: DDIM steps to t - T // k, which must be the next timestep
    x, w = z.clone(), 2.5
    with torch.no_grad():
        for t in sched.timesteps:
            e_c = unet(x, t, class_labels=torch.tensor([1, 1])).sample
            e_u = unet(x, t, class_labels=torch.tensor([3, 3])).sample
            x = sched.step(e_u + w * (e_c - e_u), t, x).prev_sample
    _, got = pipe.sample(2, sampler="ddim", steps=5, noise=z, class_label=1, guidance_scale=w, return_model_space=True)
    assert rel(got, x) <= 1e-4


# ----------------------------------------------------------------------------- Stable Diffusion layout
def tiny_sd_folder(folder):
    """A tiny SD layout: CLIP tokenizer from a written vocabulary and merges, CLIP text model, UNet, VAE."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    letters = "abcdefghijklmnopqrstuvwxyz"
    for c in letters:
        vocab[c] = len(vocab)
    for c in letters:
        vocab[c + "</w>"] = len(vocab)
    for m in ("re", "ca", "cat</w>"):
        vocab[m] = len(vocab)
    tok_dir = folder / "_tok"
    tok_dir.mkdir(parents=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\nr e\nc a\nca t</w>\n")
    tok = transformers.CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=12)
    te = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=12, bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4)
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), latent_channels=4, norm_num_groups=4,
        layers_per_block=1, sample_size=16)
    # Stable Diffusion 1.x's own scheduler settings: scaled-linear betas, leading spacing, offset 1, alpha_bar_0 end
    sched = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                    clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    sd = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                           safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    sd.save_pretrained(folder / "sd")
    return sd, folder / "sd"


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return tiny_sd_folder(tmp_path_factory.mktemp("sd"))


def test_sd_layout_matches_stable_diffusion_pipeline(sd_folder):
    sd, folder = sd_folder
    pipe = load_pipeline(folder)
    assert pipe.kind == "text" and tuple(pipe.shape) == (3, 16, 16) and tuple(pipe.model_shape) == (4, 8, 8)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    prompts = ["a cat", "red"]
    sd.scheduler = diffusers.DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    want = sd(prompts, num_inference_steps=6, guidance_scale=3.0, latents=z.clone(), output_type="pt").images * 2 - 1
    got = pipe.sample(2, sampler="ddim", steps=6, prompt=prompts, guidance_scale=3.0, noise=z.clone())
    assert rel(got, want) <= 1e-3
    # the codec: decode(encode(x)) goes through the VAE with its scaling factor
    lat = pipe.codec.encode(got)
    assert lat.shape == (2, 4, 8, 8)
    with torch.no_grad():
        want = sd.vae.decode(lat / sd.vae.config.scaling_factor).sample.clamp(-1, 1)
    assert torch.allclose(pipe.codec.decode(lat), want, atol=1e-5)


def test_sd_folder_through_the_command_line(sd_folder, tmp_path):
    """unnoise sample --prompt ... on a Stable-Diffusion folder writes what pipe.sample gives for the same seed."""
    _, folder = sd_folder
    out = str(tmp_path / "s.npy")
    assert main(["sample", "--checkpoint", str(folder), "--prompt", "a cat", "--sampler", "dpmpp_2m", "--steps", "4",
                 "--n", "2", "--guidance-scale", "3", "--seed", "1", "--out", out]) == 0
    want = load_pipeline(folder).sample(2, sampler="dpmpp_2m", steps=4, prompt=["a cat"] * 2, guidance_scale=3.0,
                                        generator=torch.Generator().manual_seed(1))
    got = torch.from_numpy(np.load(out))
    assert got.shape == (2, 3, 16, 16) and rel(got, want) <= 1e-5


# ----------------------------------------------------------------------------- export
@pytest.mark.parametrize("param", ["eps", "v"])
def test_export_samples_in_diffusers(tmp_path, param):
    torch.manual_seed(0)
    sched = unnoise.schedules.DDPM()
    net = unnoise.nets.build("diffusers-unet2d", shape=(3, 8, 8), base_channels=8, channel_mult=(1, 2),
                             num_res_blocks=1, attention_levels=(1,), norm_num_groups=4)
    json.dumps(net.config)
    den = unnoise.Denoiser(net, param, "vp").eval()
    out = export_diffusers(den, sched, tmp_path / "export")
    assert sorted(os.listdir(out)) == ["model_index.json", "scheduler", "unet"]
    assert [p for p in os.listdir(tmp_path) if p.startswith(".export-")] == []  # the temporary folder is gone
    ddim = diffusers.DDIMPipeline.from_pretrained(out, local_files_only=True)
    img = ddim(batch_size=2, generator=torch.Generator().manual_seed(5), num_inference_steps=10, eta=0.0,
               output_type="np").images
    want = torch.from_numpy(img).permute(0, 3, 1, 2)
    z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))  # the noise DDIMPipeline draws
    sig = sched.sampling_sigmas(10, "trailing")  # the exported scheduler's spacing (unnoise's default grid is not one)
    x = unnoise.sample(den, z * torch.sqrt(1 + sig[0] ** 2), sig, sampler="ddim")
    assert rel((x / 2 + 0.5).clamp(0, 1), want) <= 1e-4
    ddpm = diffusers.DDPMPipeline.from_pretrained(out, local_files_only=True)
    img = ddpm(batch_size=1, num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert img.shape == (1, 8, 8, 3) and bool(torch.isfinite(torch.from_numpy(img)).all())
    # and back: the folder loads as an unnoise pipeline that samples the same model
    back = load_pipeline(out)
    assert rel(back.sample(2, sampler="ddim", steps=10, noise=z, return_model_space=True)[1], x) <= 1e-4


def test_export_refuses_what_diffusers_cannot_run(tmp_path):
    unet_net = unnoise.nets.build("unet", shape=(3, 8, 8), base_channels=8, channel_mult=(1,), num_res_blocks=1,
                                  attention_levels=())
    with pytest.raises(ValueError, match="only models trained with --net diffusers-unet2d"):
        export_diffusers(unnoise.Denoiser(unet_net, "eps", "vp"), unnoise.schedules.DDPM(), tmp_path / "a")
    net = unnoise.nets.build("diffusers-unet2d", shape=(3, 8, 8), base_channels=8, channel_mult=(1,),
                             num_res_blocks=1, attention_levels=(), norm_num_groups=4)
    with pytest.raises(ValueError, match="parameterization"):
        export_diffusers(unnoise.Denoiser(net, "edm", "ve"), unnoise.schedules.DDPM(), tmp_path / "b")
    with pytest.raises(ValueError, match="discrete VP"):
        export_diffusers(unnoise.Denoiser(net, "eps", "vp"), unnoise.schedules.Karras(), tmp_path / "c")
    with pytest.raises(ValueError, match="differs"):
        export_diffusers(unnoise.Denoiser(net, "eps", "vp"), unnoise.schedules.Cosine(), tmp_path / "d")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists"):
        export_diffusers(unnoise.Denoiser(net, "eps", "vp"), unnoise.schedules.DDPM(), tmp_path / "e")
    assert (tmp_path / "e" / "keep.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- bad folders
def test_bad_folders_fail_with_one_line(tmp_path, unet):
    good = save_pixel(tmp_path / "good", unet, diffusers.DDPMScheduler())

    def broken(name, edit):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        edit(folder)
        return folder

    def set_class(path, cls):
        cfg = json.loads(path.read_text())
        cfg["_class_name"] = cls
        path.write_text(json.dumps(cfg))

    cases = [
        (broken("nosched", lambda f: os.remove(f / "scheduler" / "scheduler_config.json")), "scheduler_config.json"),
        (broken("unknown", lambda f: set_class(f / "scheduler" / "scheduler_config.json", "MagicScheduler")),
         "unknown scheduler 'MagicScheduler'"),
        (broken("model", lambda f: set_class(f / "unet" / "config.json", "UNet3DConditionModel")),
         "model class 'UNet3DConditionModel' cannot be wrapped"),
        (broken("pickle", lambda f: os.remove(f / "unet" / "diffusion_pytorch_model.safetensors")), "safetensors"),
        (broken("nounet", lambda f: (f / "model_index.json").write_text(json.dumps(
            {"_class_name": "DiTPipeline", "transformer": ["diffusers", "Transformer2DModel"]}))), "no unet component"),
    ]
    for folder, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            load_pipeline(folder)
        assert "\n" not in str(err.value), str(err.value)
    with pytest.raises(ValueError, match=r"vae.config\.json is missing"):  # SD layout with a missing component
        index = json.loads((good / "model_index.json").read_text())
        index.update(vae=["diffusers", "AutoencoderKL"], text_encoder=["transformers", "CLIPTextModel"])
        folder = broken("novae", lambda f: (f / "model_index.json").write_text(json.dumps(index)))
        load_pipeline(folder)
    assert not is_diffusers_folder(tmp_path / "nothing")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"kind": "images"}))
    assert not is_diffusers_folder(tmp_path / "run")  # an unnoise run is not a diffusers folder
