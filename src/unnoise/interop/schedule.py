"""A diffusers scheduler config as an unnoise :class:`~unnoise.schedules.DiscreteVP` schedule.

diffusers' discrete schedulers all share one VP table, ``alpha_bar_t = prod_{i <= t} (1 - beta_i)`` for
``t = 0 .. T-1``, so in unnoise's scale-free variable ``x = x_t / sqrt(alpha_bar_t)`` timestep ``t`` is the noise
level ``sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)``.  What differs between the scheduler classes is which
timesteps (or sigmas) ``set_timesteps(k)`` visits and where the last step lands.  Three families cover the
supported classes (the rules below are the ones each class applies; the tests check every combination against
diffusers itself):

* ``integer`` (DDPM, DDIM, PNDM): integer timesteps; ``linspace`` = ``round(linspace(0, T-1, k))``,
  ``leading`` = ``(T // k) * arange(k) + steps_offset``, ``trailing`` = ``round(arange(T, 0, -T/k)) - 1``.
  The last step lands on ``final_alpha_cumprod``: ``alpha_bar = 1`` (sigma 0) when ``set_alpha_to_one``
  (DDIM's default; DDPM always), else ``alpha_bar_0`` (sigma_min; PNDM's default).
* ``euler`` (Euler, Euler ancestral, Heun, LMS): as above but ``linspace`` is fractional (not rounded), and
  the sigmas are the table linearly interpolated in ``t``; ``use_karras_sigmas`` puts a Karras grid between the
  smallest and largest of those sigmas (or the config's ``sigma_min`` / ``sigma_max``), and the model then sees the
  timestep interpolated in log sigma.  The last sigma is 0 (or ``sigma_0`` with ``final_sigmas_type="sigma_min"``).
* ``multistep`` (DPM-Solver++ multistep, UniPC, DEIS): ``k + 1`` points with the last dropped
  (``linspace`` = ``round(linspace(0, T-1, k+1))[:-1]``, ``leading`` ratio ``T // (k+1)``), trailing as above;
  Karras sigmas span the whole table and the model sees the *rounded* log-sigma-interpolated timestep.

The sigma -> timestep map a denoiser needs (:meth:`DiffusersSchedule.timestep`) follows from the same rules:
``nearest`` (round the log-sigma-interpolated position; exact for every integer-timestep scheduler), ``log``
(fractional, linear in log sigma between table entries, as ``_sigma_to_t`` in diffusers and k-diffusion),
``linear`` (fractional, the inverse of the Euler family's interpolation linear in sigma), ``floor`` (DPM-Solver's
int cast of Karras timesteps on a cosine table) and ``continuous`` (``t = log(sigma) / 4``, Euler's
``timestep_type="continuous"``).  All five give the integer ``t`` at the table's own sigmas.
"""
from __future__ import annotations

import math

import torch

from ..schedules import SPACINGS, DiscreteVP, karras_sigmas, _check_steps

FAMILIES = {
    "DDPMScheduler": "integer", "DDIMScheduler": "integer", "PNDMScheduler": "integer",
    "EulerDiscreteScheduler": "euler", "EulerAncestralDiscreteScheduler": "euler", "HeunDiscreteScheduler": "euler",
    "LMSDiscreteScheduler": "euler",
    "DPMSolverMultistepScheduler": "multistep",
    "UniPCMultistepScheduler": "multistep", "DEISMultistepScheduler": "multistep",
}
TIMESTEP_MODES = ("nearest", "log", "linear", "floor", "continuous")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
# the classes whose own __init__ replaces a zero terminal alpha_bar by 2**-24 (so their sigma_max is 4096)
_CLAMPS_ZERO_SNR = ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler",
                    "UniPCMultistepScheduler")
# options that change the grid in ways unnoise does not reproduce: name -> the value that is fine
_UNSUPPORTED = {"use_exponential_sigmas": False, "use_beta_sigmas": False, "use_lu_lambdas": False,
                "use_flow_sigmas": False, "use_dynamic_shifting": False, "thresholding": False,
                "interpolation_type": "linear", "timestep_type": None}


def diffusers_betas(config: dict) -> torch.Tensor:
    """The betas a diffusers scheduler builds from its config, in float32 exactly as diffusers computes them.

    ``linear``: ``linspace(beta_start, beta_end, T)``; ``scaled_linear``: ``linspace(sqrt(b0), sqrt(b1), T)^2``;
    ``squaredcos_cap_v2`` (improved DDPM): ``beta_i = min(1 - f((i+1)/T) / f(i/T), 0.999)`` with
    ``f(t) = cos^2((t + 0.008) / 1.008 * pi/2)``; ``sigmoid``: ``sigmoid(linspace(-6, 6, T)) (b1 - b0) + b0``;
    or the config's ``trained_betas``.  With ``rescale_betas_zero_snr`` the result is rescaled to zero terminal
    SNR (Lin et al. 2023): ``sqrt(alpha_bar)`` is shifted so its last entry is 0 and scaled so its first is
    unchanged, ``a' = (a - a_T) a_0 / (a_0 - a_T)``, and the betas are read back from ``alpha_bar' = a'^2``
    (``beta_t = 1 - alpha_bar'_t / alpha_bar'_{t-1}``; the last beta is 1).
    """
    T = int(config.get("num_train_timesteps", 1000))
    b0, b1 = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    kind = config.get("beta_schedule", "linear")
    if config.get("trained_betas") is not None:
        betas = torch.tensor(config["trained_betas"], dtype=torch.float32)
    elif kind == "linear":
        betas = torch.linspace(b0, b1, T, dtype=torch.float32)
    elif kind == "scaled_linear":
        betas = torch.linspace(b0**0.5, b1**0.5, T, dtype=torch.float32) ** 2
    elif kind == "squaredcos_cap_v2":
        def f(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float32)
    elif kind == "sigmoid":
        betas = torch.sigmoid(torch.linspace(-6, 6, T)) * (b1 - b0) + b0
    else:
        raise ValueError(f"unknown beta_schedule {kind!r}; unnoise reads {', '.join(BETA_SCHEDULES)} or trained_betas")
    if config.get("rescale_betas_zero_snr", False):
        a = torch.cumprod(1.0 - betas, 0).sqrt()
        a0, aT = a[0].clone(), a[-1].clone()
        a = (a - aT) * (a0 / (a0 - aT))
        ab = a**2
        betas = 1 - torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return betas


class DiffusersSchedule(DiscreteVP):
    """The noise process and sampling grids of a diffusers scheduler config (``scheduler_config.json``).

    ``sampling_sigmas(k)`` with the default spacing visits exactly the timesteps that scheduler's
    ``set_timesteps(k)`` visits (its ``timestep_spacing``, ``steps_offset``, ``use_karras_sigmas``, final sigma),
    so a grid sampler on it starting from ``x_T = z`` runs the scheduler's own loop.  ``spacing=`` picks another
    of ``leading``, ``trailing``, ``linspace``, ``karras`` with the same family's conventions.

    Args:
        config: the scheduler config dict (``_class_name`` one of :data:`FAMILIES`).
        terminal_alpha_bar: for ``rescale_betas_zero_snr`` configs of classes that keep ``alpha_bar_T = 0``
            (DDIM, DDPM, ...): the positive value to use instead (diffusers' Euler uses ``2**-24``, sigma 4096).
        source: the file the config came from, named in error messages.
    """

    name = "diffusers"

    def __init__(self, config: dict, terminal_alpha_bar: float | None = None, source: str = "scheduler config"):
        config = dict(config)
        cls = config.get("_class_name")
        if cls not in FAMILIES:
            raise ValueError(f"{source}: unknown scheduler {cls!r}; unnoise reads {', '.join(sorted(FAMILIES))}")
        for key, fine in _UNSUPPORTED.items():
            value = config.get(key, fine)
            if value != fine and not (key == "timestep_type" and value in ("discrete", "continuous")):
                raise ValueError(f"{source}: {key}={value!r} is not supported by unnoise "
                                 f"(supported: {key}={fine!r}; spacings {', '.join(SPACINGS)})")
        if config.get("lambda_min_clipped", -math.inf) not in (-math.inf, None, float("-inf")):
            raise ValueError(f"{source}: lambda_min_clipped is not supported by unnoise (leave it at -inf)")
        # the classes' own defaults when an (older) config does not name its spacing
        config.setdefault("timestep_spacing", "leading" if FAMILIES[cls] == "integer" else "linspace")
        if config["timestep_spacing"] not in ("leading", "trailing", "linspace"):
            raise ValueError(f"{source}: timestep_spacing {config['timestep_spacing']!r}; "
                             "supported: leading, trailing, linspace")
        try:
            betas = diffusers_betas(config)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
        self.scheduler_config, self.family, self.source = config, FAMILIES[cls], source
        self._kwargs = dict(config=config, terminal_alpha_bar=terminal_alpha_bar)
        ab = torch.cumprod(1.0 - betas, 0)  # float32, as diffusers
        if float(ab[-1]) <= 0:
            if terminal_alpha_bar is None and cls in _CLAMPS_ZERO_SNR:
                terminal_alpha_bar = 2.0**-24
            if terminal_alpha_bar is None:
                raise ValueError(
                    f"{source}: rescale_betas_zero_snr makes alpha_bar_T = 0, so sigma_max is infinite in unnoise's "
                    f"scale-free variable x = x_t / sqrt(alpha_bar); pass terminal_alpha_bar=2**-24 "
                    f"(diffusers' Euler does this; sigma_max = 4096) to start just below pure noise")
            if not 0 < terminal_alpha_bar < 1:
                raise ValueError(f"terminal_alpha_bar must be in (0, 1), got {terminal_alpha_bar}")
            ab[-1] = terminal_alpha_bar  # (as in diffusers, this may exceed alpha_bar_{T-1}: see timestep())
        self.betas = betas.to(torch.float64)
        self.alphas_cumprod = ab.to(torch.float64)
        # the sigma table in float32 exactly as diffusers computes it, kept in float64
        self.sigmas = (((1 - ab) / ab) ** 0.5).to(torch.float64)
        self.prediction_type = config.get("prediction_type", "epsilon")
        self.steps_offset = int(config.get("steps_offset", 0))
        self.karras = bool(config.get("use_karras_sigmas", False))
        self.spacing = "karras" if self.karras else config["timestep_spacing"]
        self.default_spacing = self.spacing

    # ------------------------------------------------------------------ grids
    @property
    def timestep_mode(self) -> str:
        """How this scheduler turns its sigmas into the model's timestep (see the module docstring)."""
        cfg = self.scheduler_config
        if self.family == "euler":
            if cfg.get("timestep_type") == "continuous" and self.prediction_type == "v_prediction":
                return "continuous"
            return "log" if self.karras else "linear"
        if self.family == "multistep" and self.karras and cfg.get("beta_schedule") == "squaredcos_cap_v2" \
                and cfg["_class_name"] == "DPMSolverMultistepScheduler":
            return "floor"
        return "nearest"

    def timesteps(self, steps: int, spacing: str | None = None) -> torch.Tensor:
        """The decreasing (possibly fractional, float64) timesteps ``set_timesteps(steps)`` visits."""
        spacing = spacing or self.spacing
        if spacing == "karras":
            return self.timestep(self._karras(steps))
        T = self.num_steps
        _check_steps(steps, T)
        extra = 1 if self.family == "multistep" else 0  # the multistep family lays k + 1 points, drops the last
        f64 = torch.float64
        if spacing == "linspace":
            ts = torch.linspace(0, T - 1, steps + extra, dtype=f64)
            ts = ts if self.family == "euler" else torch.round(ts)
            ts = ts.flip(0)[: steps]
        elif spacing == "leading":
            ratio = T // (steps + extra)
            ts = (torch.arange(steps + extra, dtype=f64) * ratio).flip(0)[: steps] + self.steps_offset
        elif spacing == "trailing":
            ts = torch.round(torch.arange(T, 0, -T / steps, dtype=f64)) - 1
        else:
            raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
        return ts

    def _karras(self, steps):
        cfg = self.scheduler_config
        if self.family == "euler":
            in_sig = self._interp(self.timesteps(steps, self.scheduler_config["timestep_spacing"]))
            lo, hi = float(in_sig[-1]), float(in_sig[0])
            lo = cfg["sigma_min"] if cfg.get("sigma_min") is not None else lo
            hi = cfg["sigma_max"] if cfg.get("sigma_max") is not None else hi
        else:
            lo, hi = float(self.sigmas[0]), float(self.sigmas[-1])
        return karras_sigmas(steps, lo, hi)[:-1].to(torch.float64)

    def _interp(self, ts):
        """The table linearly interpolated in t (integer t give the table entries)."""
        ts = ts.clamp(0, self.num_steps - 1)
        lo = ts.floor().long().clamp(max=self.num_steps - 2)
        w = ts - lo
        return self.sigmas[lo] * (1 - w) + self.sigmas[lo + 1] * w

    def final_sigma(self, spacing: str | None = None) -> float:
        """Where the scheduler's last step lands: 0, or ``sigma_0`` (``set_alpha_to_one=False``, ``final_sigmas_type``)."""
        cfg, cls = self.scheduler_config, self.scheduler_config["_class_name"]
        if cls in ("DDIMScheduler", "PNDMScheduler"):
            default = cls == "DDIMScheduler"
            return 0.0 if cfg.get("set_alpha_to_one", default) else float(self.sigmas[0])
        if cls == "DEISMultistepScheduler" or (cfg.get("final_sigmas_type", "zero") == "sigma_min"
                                               and cls != "DDPMScheduler"):
            if cls == "UniPCMultistepScheduler" and (spacing or self.spacing) == "karras":
                return float(self._karras(2)[-1])  # UniPC ends on the smallest Karras sigma
            return float(self.sigmas[0])
        return 0.0

    def sampling_sigmas(self, steps, spacing=None):
        """The scheduler's sigma grid for ``steps`` steps (``steps + 1`` entries, float32), ending in
        :meth:`final_sigma` (0 unless the scheduler's last step stops at ``sigma_0``)."""
        spacing = spacing or self.spacing
        if spacing not in SPACINGS:
            raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
        if spacing == "karras":
            _check_steps(steps)
            sig = self._karras(steps)
        else:
            sig = self._interp(self.timesteps(steps, spacing))
        sig = sig.to(torch.float32).to(torch.float64)  # diffusers rounds its grid to float32
        last = self.final_sigma(spacing)
        if last >= float(sig[-1]):
            # the last timestep is already t = 0 and the scheduler's step from it to alpha_bar_0 is the identity:
            # one evaluation fewer, the same result
            return sig.to(torch.float32)
        return torch.cat([sig, torch.tensor([last], dtype=torch.float64)]).to(torch.float32)

    # ------------------------------------------------------------------ sigma -> timestep
    def timestep(self, sigma, mode: str | None = None) -> torch.Tensor:
        """The model timestep for noise level(s) ``sigma`` (float64), by ``mode`` (default :attr:`timestep_mode`).

        With ``u = log sigma`` between table entries ``u_i <= u < u_{i+1}``: ``log`` gives
        ``i + (u - u_i) / (u_{i+1} - u_i)``; ``nearest`` rounds it (the nearer entry in log sigma), ``floor`` drops
        the fraction; ``linear`` gives ``i + (sigma - sigma_i) / (sigma_{i+1} - sigma_i)``; ``continuous`` is
        ``log(sigma) / 4``.  Sigmas outside the table are clamped to its ends.
        """
        mode = mode or self.timestep_mode
        if mode not in TIMESTEP_MODES:
            raise ValueError(f"unknown timestep mode {mode!r}; choose one of {', '.join(TIMESTEP_MODES)}")
        sig = torch.as_tensor(sigma, dtype=torch.float64).cpu()
        if mode == "continuous":
            return 0.25 * torch.log(sig.clamp_min(1e-10))
        sigmas = self.sigmas
        top = None
        if sigmas[-1] < sigmas[-2]:
            # a zero-terminal-SNR table whose last alpha_bar was replaced by 2**-24 is not monotone at its end:
            # search the rest, and give its own sigma the last timestep
            top, sigmas = float(sigmas[-1]), sigmas[:-1]
        table = sigmas if mode == "linear" else torch.log(sigmas)
        val = sig.clamp(float(sigmas[0]), float(sigmas[-1]))
        val = val if mode == "linear" else torch.log(val)
        idx = torch.searchsorted(table, val.contiguous(), right=True).clamp(1, len(table) - 1)
        lo, hi = table[idx - 1], table[idx]
        t = idx - 1 + ((val - lo) / (hi - lo)).clamp(0, 1)
        if mode == "nearest":
            t = torch.round(t)
        elif mode == "floor":
            t = torch.floor(t + 1e-6)
        if top is not None:
            t = torch.where((sig - top).abs() <= 1e-6 * top, torch.full_like(t, len(self.sigmas) - 1), t)
        return t
