"""Stand-in for ``unnoise.runs.Pipeline`` until that module exists (same constructor and ``sample``)."""
from __future__ import annotations

import torch

from ..samplers import sample as _sample


class Pipeline:
    """Minimal :class:`unnoise.runs.Pipeline`: a denoiser, its schedule, and how to sample it."""

    def __init__(self, denoiser, schedule, kind, shape, *, model_shape=None, codec=None, prompt_encoder=None,
                 num_classes=0, class_names=None, config=None, source=None):
        self.denoiser, self.schedule, self.kind, self.shape = denoiser, schedule, kind, tuple(shape)
        self.model_shape = tuple(model_shape or shape)
        self.codec, self.prompt_encoder, self.num_classes = codec, prompt_encoder, num_classes
        self.class_names, self.config, self.source = class_names, config or {}, source

    def sample(self, n, sampler=None, steps=None, spacing=None, guidance_scale=1.0, class_label=None, prompt=None,
               cond=None, noise=None, generator=None, progress=False, **options):
        """``n`` samples in data units, from ``noise`` (standard normal, ``(n, *model_shape)``) at sigma_max."""
        sigmas = self.schedule.sampling_sigmas(steps or 20, spacing)
        if noise is None:
            noise = torch.randn((n, *self.model_shape), generator=generator)
        x = noise / self.schedule.scale(sigmas[0]) if self.schedule.process != "ve" else noise * sigmas[0]
        cond = dict(cond or {})
        if class_label is not None:
            cond["label"] = torch.full((n,), int(class_label), dtype=torch.long)
        if prompt is not None:
            prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
            cond.update(self.prompt_encoder(prompts))
        den = self.denoiser
        if guidance_scale != 1.0:
            base, w = self.denoiser, float(guidance_scale)

            def den(x, sigma, c):
                both = {k: torch.cat([base.null_cond(c)[k], v]) for k, v in c.items()}
                u, y = base(torch.cat([x, x]), torch.as_tensor(sigma).reshape(-1).repeat(2) if torch.as_tensor(sigma).ndim else sigma, both).chunk(2)
                return u + w * (y - u)
        out = _sample(den, x, sigmas, sampler=sampler or "dpmpp_2m", generator=generator, cond=cond or None,
                      progress=progress, **options)
        return self.codec.decode(out) if self.codec is not None else out
