"""Reading diffusers folders (``model_index.json`` + component folders) as :class:`unnoise.pipeline.Pipeline` objects.

Supported layouts, all read offline from local files (``from_pretrained(dir, local_files_only=True)``, safetensors
weights only, so no pickle is ever loaded):

* pixel models: ``unet/`` (``UNet2DModel``, unconditional or class-conditional via ``num_class_embeds``) and
  ``scheduler/``; also a bare UNet folder (``config.json`` of a ``UNet2DModel`` plus its weights) that holds a
  ``scheduler_config.json`` next to them;
* Stable-Diffusion-layout text-to-image models: ``unet/`` (``UNet2DConditionModel``), ``scheduler/``, ``vae/``
  (``AutoencoderKL``; its ``scaling_factor`` / ``shift_factor`` make the codec), ``text_encoder/``
  (``CLIPTextModel``) and ``tokenizer/`` (``CLIPTokenizer``) as the prompt encoder.

Anything else fails with one ValueError naming the file and what is supported.
"""
from __future__ import annotations

import importlib.util
import json
import os

import torch

from ..checkpoint import read_tuned_grids
from ..codecs import ImageCodec
from ..pipeline import Pipeline
from .denoiser import DiffusersDenoiser
from .schedule import FAMILIES, DiffusersSchedule

UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")
SUPPORTED = ("pixel models (unet/ UNet2DModel + scheduler/) and Stable-Diffusion layouts (unet/ UNet2DConditionModel, "
             "scheduler/, vae/ AutoencoderKL, text_encoder/ CLIPTextModel, tokenizer/ CLIPTokenizer)")


def _read_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{path} is missing; unnoise reads {SUPPORTED}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None


def _is_bare_unet(path) -> bool:
    cfg = os.path.join(path, "config.json")
    if not os.path.isfile(cfg) or not os.path.isfile(os.path.join(path, "scheduler_config.json")):
        return False
    try:
        return _read_json(cfg).get("_class_name") in UNET_CLASSES
    except ValueError:
        return False


def is_diffusers_folder(path) -> bool:
    """True when ``path`` is a diffusers folder :func:`load_pipeline` should read (``model_index.json``, or a bare
    UNet folder with its ``scheduler_config.json``); unnoise's own runs are not."""
    path = os.fspath(path)
    return os.path.isdir(path) and (os.path.isfile(os.path.join(path, "model_index.json")) or _is_bare_unet(path))


def _check_weights(folder, stem):
    names = os.listdir(folder) if os.path.isdir(folder) else []
    if not any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names):
        raise ValueError(f"{os.path.join(folder, stem + '.safetensors')} is missing; unnoise loads safetensors "
                         f"weights only (never pickled .bin files)")


def _load_unet(folder, device, dtype):
    cfg_path = os.path.join(folder, "config.json")
    cfg = _read_json(cfg_path)
    cls = cfg.get("_class_name")
    if cls not in UNET_CLASSES:
        raise ValueError(f"{cfg_path}: model class {cls!r} cannot be wrapped; unnoise wraps {', '.join(UNET_CLASSES)}")
    if cfg.get("time_embedding_type", "positional") != "positional":
        raise ValueError(f"{cfg_path}: time_embedding_type {cfg['time_embedding_type']!r} is not supported "
                         "(unnoise wraps positional timestep embeddings, the DDPM/latent-diffusion UNets)")
    for key in ("addition_embed_type", "class_embed_type", "encoder_hid_dim_type"):
        if cls == "UNet2DConditionModel" and cfg.get(key) is not None:
            raise ValueError(f"{cfg_path}: {key}={cfg[key]!r} (extra conditioning, e.g. SDXL) is not supported; "
                             "unnoise wraps text-only UNet2DConditionModel (Stable Diffusion 1.x/2.x layout)")
    if cls == "UNet2DModel" and cfg.get("class_embed_type") not in (None,):
        raise ValueError(f"{cfg_path}: class_embed_type={cfg['class_embed_type']!r} is not supported; unnoise wraps "
                         "class-conditional UNet2DModel through num_class_embeds")
    _check_weights(folder, "diffusion_pytorch_model")
    import diffusers  # optional dependency: pip install 'unnoise[diffusers]'

    model = getattr(diffusers, cls).from_pretrained(folder, **_pretrained_options(dtype))
    return model.to(device=device).eval().requires_grad_(False), cfg


def _pretrained_options(dtype) -> dict:
    """``from_pretrained`` keywords: local safetensors only, the dtype at load (a later ``.to(dtype)`` makes diffusers
    warn), and low-memory loading only where accelerate is installed (without it diffusers warns and falls back)."""
    return dict(local_files_only=True, use_safetensors=True, torch_dtype=dtype,
                low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None)


class VAECodec:
    """An ``AutoencoderKL`` with its scaling (and shift) factor as a codec between images and latents.

    ``encode(x) = (mean of q(z | x) - shift) * scaling_factor`` (the posterior mean: deterministic);
    ``decode(z) = decoder(z / scaling_factor + shift)`` clamped to ``[-1, 1]``.
    """

    def __init__(self, vae):
        self.vae = vae
        self.scaling_factor = float(vae.config.get("scaling_factor", 0.18215))
        self.shift_factor = float(vae.config.get("shift_factor") or 0.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in ``[-1, 1]`` ``(n, 3, H, W)`` -> latents ``(n, C, H/f, W/f)``."""
        with torch.no_grad():
            z = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mean
        return ((z - self.shift_factor) * self.scaling_factor).to(x.dtype)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images in ``[-1, 1]``."""
        with torch.no_grad():
            x = self.vae.decode((z / self.scaling_factor + self.shift_factor).to(self.vae.dtype)).sample
        return x.to(z.dtype).clamp(-1, 1)


class CLIPPromptEncoder:
    """``prompts -> {"context": (B, L, C)}`` as Stable Diffusion encodes them: pad to the tokenizer's
    ``model_max_length``, truncate, the text encoder's last hidden state."""

    def __init__(self, tokenizer, text_encoder, device="cpu", dtype=torch.float32):
        self.tokenizer, self.text_encoder, self.device, self.dtype = tokenizer, text_encoder, device, dtype

    def __call__(self, prompts) -> dict:
        if isinstance(prompts, str):
            prompts = [prompts]
        tok = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        mask = tok.attention_mask.to(self.device) if getattr(self.text_encoder.config, "use_attention_mask", False) \
            else None
        with torch.no_grad():
            ctx = self.text_encoder(tok.input_ids.to(self.device), attention_mask=mask)[0]
        return {"context": ctx.to(self.dtype)}


def load_pipeline(path, device="cpu", dtype=torch.float32, *, timestep_mode: str | None = None,
                  null_class: int | None = None, terminal_alpha_bar: float | None = None):
    """Load a diffusers folder as a :class:`unnoise.pipeline.Pipeline` (offline, safetensors only).

    Args:
        path: a folder with ``model_index.json`` (pixel or Stable-Diffusion layout) or a bare UNet folder with
            its ``scheduler_config.json``.
        device, dtype: where and in which precision the models run.
        timestep_mode: sigma -> timestep rule of the denoiser (default: the scheduler's own; see
            :class:`DiffusersDenoiser`).
        null_class: for class-conditional UNets, the class index that means "no class" (enables CFG); default
            the unet config's ``null_class`` entry if any, else none (guidance then fails with a clear message).
        terminal_alpha_bar: for zero-terminal-SNR schedulers whose ``alpha_bar_T = 0`` (see :class:`DiffusersSchedule`).

    The pipeline's ``schedule`` is the folder's scheduler (:class:`DiffusersSchedule`), so
    ``pipe.sample(n, steps=k, noise=z)`` visits the timesteps ``scheduler.set_timesteps(k)`` does, from ``x_T = z``.
    ``kind`` is ``"images"`` for pixel models and ``"text"`` for the Stable Diffusion layout.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"{path} is not a folder; a diffusers model is a folder with model_index.json")
    try:
        import diffusers  # noqa: F401  (optional dependency: pip install 'unnoise[diffusers]')
    except ImportError:
        raise ValueError(f"{path} is a diffusers folder; reading it needs the diffusers extra "
                         "(pip install 'unnoise[diffusers]')") from None
    index_path = os.path.join(path, "model_index.json")
    if os.path.isfile(index_path):
        index = _read_json(index_path)
        comps = {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0] is not None}
        if "unet" not in comps:
            others = ", ".join(sorted(comps)) or "none"
            raise ValueError(f"{index_path}: no unet component (components: {others}); unnoise reads {SUPPORTED}")
        unet_dir, sched_path = os.path.join(path, "unet"), os.path.join(path, "scheduler", "scheduler_config.json")
        text = bool(comps & {"vae", "text_encoder", "tokenizer"})
    elif _is_bare_unet(path):
        unet_dir, sched_path, text = path, os.path.join(path, "scheduler_config.json"), False
    else:
        raise ValueError(f"{index_path} is missing; unnoise reads {SUPPORTED}")
    sched_cfg = _read_json(sched_path)
    if sched_cfg.get("_class_name") not in FAMILIES:
        raise ValueError(f"{sched_path}: unknown scheduler {sched_cfg.get('_class_name')!r}; "
                         f"unnoise reads {', '.join(sorted(FAMILIES))}")
    schedule = DiffusersSchedule(sched_cfg, terminal_alpha_bar=terminal_alpha_bar, source=sched_path)
    if text:
        for comp, cfg_name in (("vae", "config.json"), ("text_encoder", "config.json")):
            _read_json(os.path.join(path, comp, cfg_name))  # a missing component fails here, naming the file
        tok_dir = os.path.join(path, "tokenizer")
        if not (os.path.isfile(os.path.join(tok_dir, "vocab.json")) or os.path.isfile(os.path.join(tok_dir, "tokenizer.json"))):
            raise ValueError(f"{os.path.join(tok_dir, 'vocab.json')} is missing; unnoise reads {SUPPORTED}")
    unet, unet_cfg = _load_unet(unet_dir, device, dtype)
    config = {"format": "diffusers", "source": os.path.abspath(path), "unet": unet_cfg["_class_name"],
              "scheduler": sched_cfg}
    size = unet_cfg.get("sample_size") or 64
    hw = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    if not text:
        if unet_cfg["_class_name"] != "UNet2DModel":
            raise ValueError(f"{os.path.join(unet_dir, 'config.json')}: a UNet2DConditionModel needs the Stable Diffusion "
                             "layout (vae/, text_encoder/, tokenizer/); unnoise reads " + SUPPORTED)
        if null_class is None:
            null_class = unet_cfg.get("null_class")
        den = DiffusersDenoiser(unet, schedule, timestep_mode=timestep_mode, null_class=null_class)
        shape = (unet_cfg.get("in_channels", 3), *hw)
        return Pipeline(den, schedule, "images", shape, codec=ImageCodec(), num_classes=den.num_classes,
                        config=config, source=path,  # pixels in [-1, 1], clamped as diffusers' pipelines do
                        tuned_grids=read_tuned_grids(path))
    if unet_cfg["_class_name"] != "UNet2DConditionModel":
        raise ValueError(f"{os.path.join(unet_dir, 'config.json')}: the text-to-image layout needs a "
                         "UNet2DConditionModel; unnoise reads " + SUPPORTED)
    vae_cfg = _read_json(os.path.join(path, "vae", "config.json"))
    if vae_cfg.get("_class_name") != "AutoencoderKL":
        raise ValueError(f"{os.path.join(path, 'vae', 'config.json')}: vae class {vae_cfg.get('_class_name')!r} cannot "
                         "be used; unnoise reads AutoencoderKL")
    te_cfg = _read_json(os.path.join(path, "text_encoder", "config.json"))
    if "CLIPTextModel" not in (te_cfg.get("architectures") or ["CLIPTextModel"]):
        raise ValueError(f"{os.path.join(path, 'text_encoder', 'config.json')}: text encoder "
                         f"{te_cfg.get('architectures')} cannot be used; unnoise reads CLIPTextModel")
    _check_weights(os.path.join(path, "vae"), "diffusion_pytorch_model")
    _check_weights(os.path.join(path, "text_encoder"), "model")
    import diffusers  # optional dependency: pip install 'unnoise[diffusers]'
    import transformers  # optional dependency: pip install 'unnoise[diffusers]'

    vae = diffusers.AutoencoderKL.from_pretrained(os.path.join(path, "vae"), **_pretrained_options(dtype))
    vae = vae.to(device=device).eval().requires_grad_(False)
    te = transformers.CLIPTextModel.from_pretrained(os.path.join(path, "text_encoder"), local_files_only=True,
                                                    use_safetensors=True)
    te = te.to(device=device, dtype=dtype).eval().requires_grad_(False)
    tok = transformers.CLIPTokenizer.from_pretrained(os.path.join(path, "tokenizer"), local_files_only=True)
    encoder = CLIPPromptEncoder(tok, te, device, dtype)
    den = DiffusersDenoiser(unet, schedule, timestep_mode=timestep_mode, null_context=encoder([""])["context"])
    factor = 2 ** (len(vae_cfg.get("block_out_channels", [64])) - 1)
    shape = (vae_cfg.get("in_channels", 3), hw[0] * factor, hw[1] * factor)
    model_shape = (unet_cfg.get("in_channels", 4), *hw)
    return Pipeline(den, schedule, "text", shape, model_shape=model_shape, codec=VAECodec(vae),
                    prompt_encoder=encoder, config=config, source=path, tuned_grids=read_tuned_grids(path))
