"""A diffusers UNet as an unnoise denoiser ``D(x, sigma, cond)``.

A diffusers model is called on the VP input ``x_t = s(sigma) x`` (``s = 1 / sqrt(1 + sigma^2)``, the scale-free
``x = x_0 + sigma eps``) and an integer or fractional timestep ``t(sigma)`` (:meth:`DiffusersSchedule.timestep`),
and predicts, by its scheduler's ``prediction_type``:

* ``epsilon``: ``eps``, so ``D = x - sigma eps``;
* ``v_prediction``: ``v = sqrt(ab) eps - sqrt(1 - ab) x_0 = (eps - sigma x_0) / sqrt(1 + sigma^2)``; solving with
  ``x = x_0 + sigma eps`` gives ``D = x / (1 + sigma^2) - sigma v / sqrt(1 + sigma^2)``;
* ``sample``: ``x_0`` itself, ``D = F``.

These are exactly unnoise's ``eps`` / ``v`` / ``x0`` preconditionings on the ``vp`` process
(:func:`unnoise.denoiser.preconditioning`), which this wrapper reuses.  The scheduler's ``clip_sample`` (DDPM,
DDIM) clamps the predicted ``x_0`` and re-derives ``eps`` from it, i.e. clamps ``D``; the wrapper does the same.
"""
from __future__ import annotations

import torch
from torch import nn

from ..denoiser import expand_sigma, preconditioning
from .schedule import TIMESTEP_MODES, DiffusersSchedule

PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}


class DiffusersDenoiser(nn.Module):
    """``D(x, sigma, cond)`` of a diffusers ``UNet2DModel`` / ``UNet2DConditionModel``.

    Args:
        unet: the diffusers model.
        schedule: the :class:`DiffusersSchedule` of its scheduler config (the sigma table and the timestep rule).
        prediction_type: ``epsilon``, ``v_prediction`` or ``sample`` (default: the scheduler config's).
        timestep_mode: sigma -> timestep rule (``nearest``, ``log``, ``linear``, ``floor``, ``continuous``);
            default: the one the scheduler itself uses (:attr:`DiffusersSchedule.timestep_mode`: ``nearest`` for
            every integer-timestep scheduler, ``linear`` / ``log`` for Euler-type ones).
        null_class: the class index meaning "no class" for a class-conditional UNet (None: it has none, and
            classifier-free guidance is unavailable).
        null_context: ``(1, L, C)`` text context of the empty prompt, the unconditional context of a text model.
        clip_sample: clamp ``D`` to ``[-r, r]`` (default: the scheduler's ``clip_sample`` / ``clip_sample_range``).

    ``cond`` keys: ``label`` -> ``class_labels``, ``context`` -> ``encoder_hidden_states``, ``context_mask`` ->
    ``encoder_attention_mask``; others are ignored.
    """

    def __init__(self, unet: nn.Module, schedule: DiffusersSchedule, prediction_type: str | None = None,
                 timestep_mode: str | None = None, null_class: int | None = None,
                 null_context: torch.Tensor | None = None, clip_sample: float | None = None):
        super().__init__()
        prediction_type = prediction_type or schedule.prediction_type
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {prediction_type!r}; unnoise wraps {', '.join(PREDICTION_TYPES)}")
        timestep_mode = timestep_mode or schedule.timestep_mode
        if timestep_mode not in TIMESTEP_MODES:
            raise ValueError(f"unknown timestep_mode {timestep_mode!r}; choose one of {', '.join(TIMESTEP_MODES)}")
        if clip_sample is None and schedule.scheduler_config.get("clip_sample", False) \
                and schedule.scheduler_config["_class_name"] in ("DDPMScheduler", "DDIMScheduler"):
            clip_sample = float(schedule.scheduler_config.get("clip_sample_range", 1.0))
        self.unet, self.schedule = unet, schedule
        self.prediction_type, self.parameterization = prediction_type, PREDICTION_TYPES[prediction_type]
        self.timestep_mode, self.null_class, self.clip_sample = timestep_mode, null_class, clip_sample
        self.register_buffer("null_context", null_context, persistent=False)
        cfg = getattr(unet, "config", {})
        self.conditional = "cross_attention_dim" in cfg
        n_class = cfg.get("num_class_embeds") or 0
        # unnoise's convention: labels 0..num_classes-1, the null class right after them
        self.num_classes = null_class if null_class is not None else n_class
        self.learned_variance = cfg.get("out_channels", 0) == 2 * cfg.get("in_channels", -1)
        self._cache: dict = {}

    def timestep(self, sigma) -> torch.Tensor:
        """The model timestep(s) for ``sigma`` under this wrapper's rule (float64, on the CPU)."""
        return self.schedule.timestep(sigma, self.timestep_mode)

    def _coefficients(self, sigma: float):
        """``(c_skip, c_out, c_in, t)`` as Python floats for one noise level, cached (samplers revisit a few)."""
        hit = self._cache.get(sigma)
        if hit is None:
            sig = torch.tensor([sigma], dtype=torch.float64)
            c = preconditioning(self.parameterization, "vp", sig)[:3]
            hit = (*(float(v) for v in c), float(self.timestep(sig)[0]))
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[sigma] = hit
        return hit

    def forward(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        levels = torch.as_tensor(sigma).reshape(-1).tolist()
        if len(levels) in (1, x.shape[0]) and all(v == levels[0] for v in levels):
            # one noise level for the whole batch (every sampler step): scalar coefficients, no tensor algebra
            c_skip, c_out, c_in, t = self._coefficients(levels[0])
            t = torch.full((x.shape[0],), t, device=x.device)
        else:
            s = expand_sigma(sigma, x)
            c_skip, c_out, c_in, _ = preconditioning(self.parameterization, "vp", s)
            t = self.timestep(s.reshape(-1).double()).to(device=x.device, dtype=torch.float32)
        kwargs = {}
        cond = {"label": cond} if torch.is_tensor(cond) else (cond or {})
        if "label" in cond:
            kwargs["class_labels"] = torch.as_tensor(cond["label"], device=x.device).long()
        if self.conditional:
            if "context" not in cond:
                raise ValueError("this text-conditional UNet needs cond={'context': (B, L, C)}; "
                                 "use the pipeline's prompt encoder (pipe.sample(prompt=...))")
            kwargs["encoder_hidden_states"] = cond["context"].to(self.unet.dtype)
            if cond.get("context_mask") is not None:
                kwargs["encoder_attention_mask"] = cond["context_mask"]
        dtype = self.unet.dtype
        out = self.unet((c_in * x).to(dtype), t, **kwargs).sample.to(x.dtype)
        if self.learned_variance:
            out = out[:, : x.shape[1]]
        den = c_skip * x + c_out * out
        return den.clamp(-self.clip_sample, self.clip_sample) if self.clip_sample else den

    _NO_NULL = ("classifier-free guidance is unavailable: this class-conditional diffusers UNet has no null class "
                "(pass null_class= to load_pipeline if one of its classes means 'no class')")

    @property
    def nulls(self) -> dict:
        """The null value of each droppable condition, one example each: ``label`` -> the null class (0-d),
        ``context`` -> the empty prompt's ``(L, C)``.  ValueError for a class-conditional UNet without a null
        class (classifier-free guidance is unavailable for it)."""
        out = {}
        if self.null_class is not None:
            out["label"] = torch.tensor(int(self.null_class))
        elif self.num_classes:
            raise ValueError(self._NO_NULL)
        if self.null_context is not None:
            out["context"] = self.null_context[0]
        return out

    def null_cond(self, cond, drop: torch.Tensor | None = None) -> dict:
        """The unconditional version of ``cond`` (in all rows, or where the ``(B,)`` bool ``drop`` is True):
        ``label`` -> the null class, ``context`` -> the empty prompt's context (``context_mask`` dropped);
        other keys unchanged.  ValueError when the model has no null class (CFG unavailable)."""
        cond = dict(cond) if isinstance(cond, dict) else {"label": cond}
        if "label" in cond and self.null_class is None:
            raise ValueError(self._NO_NULL)
        if "context" in cond and self.null_context is None:
            raise ValueError("classifier-free guidance needs the empty prompt's context (null_context=)")
        out = dict(cond)
        for key, null in self.nulls.items():
            if key not in cond:
                continue
            value = torch.as_tensor(cond[key])
            null = null.to(device=value.device, dtype=value.dtype).expand_as(value)
            if drop is None:
                out[key] = null
            else:
                out[key] = torch.where(drop.to(value.device).reshape(-1, *([1] * (value.ndim - 1))), null, value)
        if "context" in cond and drop is None:
            out.pop("context_mask", None)
        return out
