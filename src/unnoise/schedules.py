"""Noise processes as (1) a distribution of training sigmas and (2) decreasing sampling grids.

Every forward process is a case of ``x_t = s(t) * (x_0 + sigma(t) * eps)``.  The samplers work in
the scale-free variable ``x = x_t / s`` and only ever see sigma, so a schedule is fully described
by which sigmas it trains on, which sigmas it samples on, and how the signal scale ``s`` follows
from sigma (its *process*):

* ``"vp"`` (DDPM family): ``alpha_bar = 1 / (1 + sigma^2)``, ``s = sqrt(alpha_bar)``;
* ``"ve"`` (NCSN / EDM): ``s = 1``;
* ``"flow"`` (rectified flow): ``x_t = (1 - t) x_0 + t eps`` so ``sigma = t / (1 - t)``, ``s = 1 - t``;
* ``"wrapped"`` (angles): ``x = wrap(x_0 + sigma eps)`` on the torus, ``s = 1`` (:class:`Wrapped`).

A schedule owns its forward process, ``schedule.forward`` (:mod:`unnoise.processes`): the noise draw, the
corruption, the prior, the loss and the projection of finished samples.
"""
from __future__ import annotations

import math

import torch

from .processes import ForwardProcess, for_schedule
from .processes import from_config as process_from_config
from .scales import PROCESSES, signal_scale  # noqa: F401  (the process algebra, re-exported)

SPACINGS = ("default", "leading", "trailing", "linspace", "karras")


# ----------------------------------------------------------------------------- process algebra
def sigma_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """VP: ``sigma = sqrt((1 - alpha_bar) / alpha_bar)``."""
    alpha_bar = torch.as_tensor(alpha_bar)
    return torch.sqrt((1.0 - alpha_bar) / alpha_bar)


def alpha_bar_from_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """VP: ``alpha_bar = 1 / (1 + sigma^2)``."""
    sigma = torch.as_tensor(sigma)
    return 1.0 / (1.0 + sigma**2)


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """EDM grid: ``(sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``, then 0.

    ``rho = inf`` is the limit of that warp, the geometric grid ``sigma_max (sigma_min / sigma_max)^(i/(n-1))``
    (``(a^(1/rho) + r (b^(1/rho) - a^(1/rho)))^rho -> a^(1-r) b^r`` since ``c^(1/rho) = 1 + log(c)/rho + O(rho^-2)``).
    """
    _check_steps(steps)
    check_range(sigma_min, sigma_max)
    if not (isinstance(rho, (int, float)) and not isinstance(rho, bool) and rho > 0 and not math.isnan(rho)):
        raise ValueError(f"rho must be a positive number or inf (7 = EDM, inf = geometric), got {rho!r}")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64) if steps > 1 else torch.zeros(1, dtype=torch.float64)
    if math.isinf(rho):
        sig = torch.exp(math.log(sigma_max) + ramp * (math.log(sigma_min) - math.log(sigma_max)))
    else:
        lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
        sig = (hi + ramp * (lo - hi)) ** rho
    return _append_zero(sig)


# The default grid of the VP (DDPM-family) schedules for a number of steps: either one of the timestep spacings
# ("trailing": uniform in the chain's time, ending at its last timestep), or ``(rho, sigma_lo)``: a Karras grid with
# exponent ``rho`` (inf = geometric) from sigma_max down to ``max(sigma_lo, sigma_min)``, then 0.  Chosen with the
# default sampler by ``benchmarks/samplers_vs_peers.py --tune`` on training mixtures (2-D and 16-D) at 5, 10 and
# 20 NFE; a step count uses the entry of the nearest measured one (<= 7: 5, 8-14: 10, 15-24: 20).  From 25 steps on
# (not measured here; DDPM and DDIM with many steps were tested on it) the default stays the ``trailing`` grid.
DEFAULT_VP_GRID = {5: "trailing", 10: (math.inf, 0.1), 20: (math.inf, 0.01)}
DEFAULT_GRID_MAX_STEPS = 24


def default_grid_entry(steps: int):
    """The :data:`DEFAULT_VP_GRID` entry a step count uses: a spacing name or ``(rho, sigma_lo)``."""
    _check_steps(steps)
    if steps > DEFAULT_GRID_MAX_STEPS:
        return "trailing"
    return DEFAULT_VP_GRID[5 if steps <= 7 else 10 if steps <= 14 else 20]


def check_range(sigma_min, sigma_max) -> None:
    """Raise ``ValueError`` unless ``0 < sigma_min < sigma_max``, both finite (the range of a sampling grid)."""
    try:
        lo, hi = float(sigma_min), float(sigma_max)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if isinstance(sigma_min, bool) or isinstance(sigma_max, bool) or not (math.isfinite(lo) and math.isfinite(hi)) \
            or not 0 < lo < hi:
        raise ValueError(f"a sampling grid needs finite 0 < sigma_min < sigma_max, got sigma_min={sigma_min!r}, "
                         f"sigma_max={sigma_max!r} (swap them if they are reversed)")


def _append_zero(sig: torch.Tensor) -> torch.Tensor:
    return torch.cat([sig.to(torch.float64), sig.new_zeros(1, dtype=torch.float64)]).to(torch.float32)


def _check_steps(steps, upper=None):
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"number of sampling steps must be a positive integer, got {steps!r}")
    if upper is not None and steps > upper:
        raise ValueError(f"cannot take {steps} sampling steps on a schedule with {upper} training steps")


# ----------------------------------------------------------------------------- base class
class Schedule:
    """A noise process: training sigma distribution and sampling grids."""

    name = "schedule"
    process = "ve"
    noise_kernel = None  # a kernel spec ("rbf:0.1"): the noise is that Gaussian process (functions; see unnoise.gp)

    def scale(self, sigma):
        """Signal scale ``s(sigma)`` of this schedule's process."""
        return signal_scale(self.process, sigma)

    @property
    def forward(self) -> ForwardProcess:
        """The forward process (:mod:`unnoise.processes`) this schedule trains and samples under (Gaussian-process
        noise when the schedule has a ``noise_kernel``)."""
        return for_schedule(self.process, self.noise_kernel)

    @property
    def sigma_min(self) -> float:  # pragma: no cover - overridden
        """Smallest positive noise level the schedule trains and samples on."""
        raise NotImplementedError

    @property
    def sigma_max(self) -> float:  # pragma: no cover - overridden
        """Largest noise level: where sampling starts, ``x = sigma_max * randn``."""
        raise NotImplementedError

    def sample_training_sigmas(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` noise levels drawn from the schedule's training distribution, ``(n,)`` float32."""
        raise NotImplementedError

    def add_noise(self, x0: torch.Tensor, sigma, noise: torch.Tensor) -> torch.Tensor:
        """Closed-form forward process in the process's own coordinates: ``x_t = s (x_0 + sigma eps)``."""
        sig = torch.as_tensor(sigma, dtype=x0.dtype, device=x0.device)
        sig = sig.reshape(-1, *([1] * (x0.ndim - 1))) if sig.ndim else sig
        return self.scale(sig) * (x0 + sig * noise)

    def sampling_sigmas(self, steps: int, spacing: str | None = None) -> torch.Tensor:
        """Decreasing grid of ``steps + 1`` noise levels for sampling, ending in 0, ``(steps + 1,)`` float32.

        ``spacing`` (discrete schedules: ``default``, ``leading``, ``trailing``, ``linspace``, ``karras``) picks the
        levels; without one, the measured default grid (:data:`DEFAULT_VP_GRID`) for VP schedules.
        """
        raise NotImplementedError

    def config(self) -> dict:
        """JSON-serialisable description; ``get(**config)`` rebuilds the schedule."""
        extra = {"noise_kernel": self.noise_kernel} if self.noise_kernel is not None else {}
        return {"name": self.name, **self._kwargs, **extra}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())
        return f"{type(self).__name__}({args})"


# ----------------------------------------------------------------------------- discrete VP family
class DiscreteVP(Schedule):
    """A discrete-time VP process given by its betas (DDPM's Markov chain).

    Training draws ``t`` uniformly from ``{0..T-1}`` and uses ``sigma_t``; sampling picks a subset
    of timesteps with the usual spacings (as in diffusers: ``leading``, ``trailing``, ``linspace``),
    a Karras grid between the table's smallest and largest sigma, or (``default``, the default) the
    measured grid of :data:`DEFAULT_VP_GRID`, which need not lie on the table's timesteps.
    """

    process = "vp"
    default_spacing = "default"  # the measured DEFAULT_VP_GRID; "trailing" before issue 16

    def __init__(self, betas: torch.Tensor, spacing: str | None = None):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) < 2 or not torch.all((betas > 0) & (betas < 1)):
            raise ValueError("betas must be a 1-D sequence of at least 2 values in (0, 1)")
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.sigmas = sigma_from_alpha_bar(self.alphas_cumprod)  # float64, increasing in t
        if spacing is not None and spacing not in SPACINGS:
            raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
        self.spacing = spacing or self.default_spacing

    @property
    def num_steps(self) -> int:
        """``T``, the number of steps of the discrete chain."""
        return len(self.betas)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sample_training_sigmas(self, n, generator=None):
        t = torch.randint(0, self.num_steps, (n,), generator=generator)
        return self.sigmas[t].to(torch.float32)

    def timesteps(self, steps: int, spacing: str | None = None) -> torch.Tensor:
        """Decreasing integer timesteps for ``steps`` sampling steps (diffusers' conventions)."""
        spacing = spacing or self.spacing
        T = self.num_steps
        _check_steps(steps, T)
        if spacing == "leading":
            ratio = T // steps
            ts = torch.arange(steps, dtype=torch.int64) * ratio
        elif spacing == "trailing":
            ratio = T / steps
            ts = torch.round(torch.arange(T, 0, -ratio, dtype=torch.float64)).to(torch.int64) - 1
            return ts
        elif spacing == "linspace":
            ts = torch.round(torch.linspace(0, T - 1, steps, dtype=torch.float64)).to(torch.int64)
        else:
            raise ValueError(f"spacing {spacing!r} has no integer timesteps; choose leading, trailing or linspace")
        return ts.flip(0)

    def sampling_sigmas(self, steps, spacing=None):
        spacing = spacing or self.spacing
        if spacing == "default":
            entry = default_grid_entry(steps)
            if not isinstance(entry, str):
                rho, lo = entry
                lo = max(lo, self.sigma_min) if lo < self.sigma_max else self.sigma_min  # a tiny-range chain
                return karras_sigmas(steps, lo, self.sigma_max, rho)
            spacing = entry
        if spacing == "karras":
            _check_steps(steps)
            return karras_sigmas(steps, self.sigma_min, self.sigma_max)
        if spacing not in SPACINGS:
            raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
        return _append_zero(self.sigmas[self.timesteps(steps, spacing)])

    def markov_step(self, x_prev: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        """One step of the forward chain: ``x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z``."""
        beta = float(self.betas[t])
        return math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * noise

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: int):
        """DDPM posterior ``q(x_{t-1} | x_t, x_0) = N(mean, var)`` in VP coordinates (t >= 1).

        ``mean = sqrt(ab_{t-1}) beta_t / (1 - ab_t) x_0 + sqrt(alpha_t) (1 - ab_{t-1}) / (1 - ab_t) x_t``,
        ``var = (1 - ab_{t-1}) / (1 - ab_t) beta_t``.
        """
        if not 1 <= t < self.num_steps:
            raise ValueError(f"t must be in [1, {self.num_steps - 1}], got {t}")
        ab, ab_prev, beta = (float(v) for v in (self.alphas_cumprod[t], self.alphas_cumprod[t - 1], self.betas[t]))
        mean = (math.sqrt(ab_prev) * beta / (1 - ab)) * x0 + (math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)) * x_t
        return mean, (1 - ab_prev) / (1 - ab) * beta

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep of a sigma, by linear interpolation in log-sigma (as k-diffusion)."""
        log_sig = torch.log(self.sigmas)
        s = torch.log(torch.as_tensor(sigma, dtype=torch.float64).clamp_min(self.sigma_min))
        idx = torch.searchsorted(log_sig, s).clamp(1, len(log_sig) - 1)
        lo, hi = log_sig[idx - 1], log_sig[idx]
        w = ((s - lo) / (hi - lo)).clamp(0, 1)
        return (idx - 1 + w).to(torch.float32)


class DDPM(DiscreteVP):
    """DDPM's linear betas: ``beta_t = linspace(beta_start, beta_end, T)``."""

    name = "ddpm"

    def __init__(self, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, spacing=None):
        self._kwargs = dict(num_steps=num_steps, beta_start=beta_start, beta_end=beta_end, spacing=spacing)
        super().__init__(torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64), spacing)


class ScaledLinear(DiscreteVP):
    """Latent diffusion's betas: ``linspace(sqrt(beta_start), sqrt(beta_end), T)^2``."""

    name = "scaled_linear"

    def __init__(self, num_steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012, spacing=None):
        self._kwargs = dict(num_steps=num_steps, beta_start=beta_start, beta_end=beta_end, spacing=spacing)
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2
        super().__init__(betas, spacing)


class Cosine(DiscreteVP):
    """Improved DDPM: ``alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) pi/2)``, betas clipped at max_beta."""

    name = "cosine"

    def __init__(self, num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999, spacing=None):
        self._kwargs = dict(num_steps=num_steps, s=s, max_beta=max_beta, spacing=spacing)

        def f(t):
            return math.cos((t + s) / (1 + s) * math.pi / 2) ** 2

        betas = [min(1 - f((i + 1) / num_steps) / f(i / num_steps), max_beta) for i in range(num_steps)]
        super().__init__(torch.tensor(betas, dtype=torch.float64), spacing)


class Sigmoid(DiscreteVP):
    """Sigmoid betas (GeoDiff): ``sigmoid(linspace(-6, 6, T)) (beta_end - beta_start) + beta_start``."""

    name = "sigmoid"

    def __init__(self, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, spacing=None):
        self._kwargs = dict(num_steps=num_steps, beta_start=beta_start, beta_end=beta_end, spacing=spacing)
        ramp = torch.sigmoid(torch.linspace(-6, 6, num_steps, dtype=torch.float64))
        super().__init__(ramp * (beta_end - beta_start) + beta_start, spacing)


# ----------------------------------------------------------------------------- continuous families
class LogLinear(Schedule):
    """VE / NCSN: sigmas geometric between sigma_min and sigma_max; log-uniform for training."""

    name = "loglinear"
    process = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self._kwargs = dict(sigma_min=sigma_min, sigma_max=sigma_max)
        self._min, self._max = float(sigma_min), float(sigma_max)

    sigma_min = property(lambda self: self._min)
    sigma_max = property(lambda self: self._max)

    def sample_training_sigmas(self, n, generator=None):
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.exp(math.log(self._min) + u * (math.log(self._max) - math.log(self._min))).float()

    def sampling_sigmas(self, steps, spacing=None):
        _check_steps(steps)
        if spacing == "karras":
            return karras_sigmas(steps, self._min, self._max)
        sig = torch.exp(torch.linspace(math.log(self._max), math.log(self._min), steps, dtype=torch.float64))
        return _append_zero(sig)


class Wrapped(LogLinear):
    """Angles on the torus ``[-pi, pi)^d`` under wrapped Gaussian noise (:class:`unnoise.processes.WrappedGaussian`):
    sigmas log-uniform between ``sigma_min`` and ``sigma_max`` for training (as Torsional Diffusion), a geometric
    grid for sampling.  At the default ``sigma_max = 4`` the wrapped normal is uniform to ``2 e^{-8} = 7e-4``
    (its first Fourier coefficient), so sampling starts from uniform angles."""

    name = "wrapped"
    process = "wrapped"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 4.0):
        super().__init__(sigma_min, sigma_max)


class Karras(Schedule):
    """EDM (Karras et al. 2022): log-normal training sigmas, rho-warped sampling grid."""

    name = "karras"
    process = "ve"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                 p_mean: float = -1.2, p_std: float = 1.2):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self._kwargs = dict(sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, p_mean=p_mean, p_std=p_std)
        self._min, self._max, self.rho, self.p_mean, self.p_std = sigma_min, sigma_max, rho, p_mean, p_std

    sigma_min = property(lambda self: self._min)
    sigma_max = property(lambda self: self._max)

    def sample_training_sigmas(self, n, generator=None):
        z = torch.randn(n, generator=generator, dtype=torch.float64)
        return torch.exp(self.p_mean + self.p_std * z).float()

    def sampling_sigmas(self, steps, spacing=None):
        return karras_sigmas(steps, self._min, self._max, self.rho)


class Flow(Schedule):
    """Rectified flow / flow matching: ``x_t = (1 - t) x_0 + t eps``, ``sigma = t / (1 - t)``.

    Training draws ``t`` uniformly or logit-normally (SD3); sampling is uniform in ``t`` with an
    optional resolution ``shift`` (``t' = shift t / (1 + (shift - 1) t)``).  Pure noise (t = 1) is
    sigma = inf, which the scale-free variable cannot hold, so ``t`` stops at ``t_max``.
    """

    name = "flow"
    process = "flow"

    def __init__(self, t_min: float = 1e-4, t_max: float = 0.999, time_dist: str = "uniform", shift: float = 1.0):
        if time_dist not in ("uniform", "logit_normal"):
            raise ValueError(f"unknown time_dist {time_dist!r}; choose uniform or logit_normal")
        if not 0 < t_min < t_max < 1:
            raise ValueError(f"need 0 < t_min < t_max < 1, got {t_min}, {t_max}")
        self._kwargs = dict(t_min=t_min, t_max=t_max, time_dist=time_dist, shift=shift)
        self.t_min, self.t_max, self.time_dist, self.shift = t_min, t_max, time_dist, shift

    @staticmethod
    def t_to_sigma(t):
        """Flow time ``t`` in ``[0, 1)`` -> noise level ``sigma = t / (1 - t)``."""
        return t / (1 - t)

    @staticmethod
    def sigma_to_t(sigma):
        """Noise level ``sigma`` -> flow time ``t = sigma / (1 + sigma)``."""
        return sigma / (1 + sigma)

    sigma_min = property(lambda self: self.t_to_sigma(self.t_min))
    sigma_max = property(lambda self: self.t_to_sigma(self.t_max))

    def sample_training_sigmas(self, n, generator=None):
        if self.time_dist == "uniform":
            t = torch.rand(n, generator=generator, dtype=torch.float64)
        else:
            t = torch.sigmoid(torch.randn(n, generator=generator, dtype=torch.float64))
        t = t.clamp(self.t_min, self.t_max)
        return self.t_to_sigma(t).float()

    def sampling_sigmas(self, steps, spacing=None):
        _check_steps(steps)
        t = torch.linspace(self.t_max, 0, steps + 1, dtype=torch.float64)[:-1]
        t = self.shift * t / (1 + (self.shift - 1) * t)
        return _append_zero(self.t_to_sigma(t))


class Categorical(Schedule):
    """The schedule of a categorical run (tokens, atom and bond types): it owns its forward process,
    :class:`~unnoise.processes.Masked` or :class:`~unnoise.processes.Marginal`, with the process's parameters
    (classes, marginals, :class:`~unnoise.processes.NoiseLevels`) stored in its config.  Training levels are
    ``sigma_t`` at ``t ~ U[0, 1]``; sampling levels start at ``sigma = inf`` (:func:`unnoise.categorical.sampling_sigmas`).
    """

    name = "categorical"
    process = "categorical"

    def __init__(self, process: dict | None = None, stratified: bool = True, t_min: float = 1e-3):
        if isinstance(process, ForwardProcess):
            process = process.config()
        if not isinstance(process, dict) or process.get("name") not in ("masked", "marginal", "graph"):
            raise ValueError("a categorical schedule needs its process: {'name': 'masked' | 'marginal' | 'graph', ...}")
        self._process = process_from_config(process)
        if not 0.0 <= float(t_min) < 1.0:
            raise ValueError(f"t_min must be in [0, 1), got {t_min}")
        self.stratified, self.t_min = bool(stratified), float(t_min)
        self._kwargs = dict(process=self._process.config(), stratified=self.stratified, t_min=self.t_min)

    @property
    def forward(self):
        return self._process

    sigma_min = property(lambda self: 0.0)
    sigma_max = property(lambda self: math.inf)

    def sample_training_sigmas(self, n, generator=None):
        """``sigma_t`` at ``t ~ U[t_min, 1]``.

        Why ``t_min`` (``1e-3``, as MDLM's training): the loss of one example is ``d sigma / d t ~ 1 / t`` times the
        cross-entropy of its ``~ t L`` corrupted tokens, an estimator whose variance grows like ``log(1 / t_min)``
        and is infinite for ``t_min = 0``: a rare tiny ``t`` gives one token a weight of ``1 / t`` and its gradient
        swamps the batch's.  The part of the NELBO left out, ``t < t_min``, is about ``t_min L`` times the
        cross-entropy with all but one token visible (``unnoise.categorical.nelbo`` integrates all of it).
        ``stratified`` (the default): one uniform ``u`` per batch and ``t_i = t_min + (1 - t_min) ((u + i / n) mod 1)``,
        each still uniform, the batch spread evenly over the interval."""
        if self.stratified:
            u = torch.rand(1, generator=generator, dtype=torch.float64)
            t = torch.remainder(u + torch.arange(n, dtype=torch.float64) / n, 1.0)
        else:
            t = torch.rand(n, generator=generator, dtype=torch.float64)
        t = self.t_min + (1 - self.t_min) * t
        return self._process.levels.sigma(t.clamp_min(1e-7)).float()

    def sampling_sigmas(self, steps, spacing=None):
        return self._process.levels.sampling_sigmas(steps).float()


_SCHEDULES = {
    "ddpm": DDPM, "linear": DDPM,
    "cosine": Cosine,
    "scaled_linear": ScaledLinear,
    "sigmoid": Sigmoid,
    "loglinear": LogLinear, "ve": LogLinear,
    "wrapped": Wrapped,
    "karras": Karras, "edm": Karras,
    "flow": Flow,
    "categorical": Categorical,
}


def available() -> list[str]:
    """Names accepted by :func:`get`."""
    return sorted(_SCHEDULES)


def get(name: str, **kwargs) -> Schedule:
    """Build a schedule by name, e.g. ``get("cosine", num_steps=1000)``; ``noise_kernel="rbf:0.1"`` (any schedule
    of the vp, ve or flow process) makes its noise that Gaussian process (:class:`unnoise.processes.GaussianProcessNoise`)."""
    if isinstance(name, Schedule):
        return name
    kernel = kwargs.pop("noise_kernel", None)
    try:
        cls = _SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(available())}") from None
    try:
        schedule = cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad options for schedule {name!r}: {err}") from None
    if kernel is not None:
        schedule.noise_kernel = for_schedule(schedule.process, kernel).kernel.spec  # checked, in its canonical spelling
    return schedule
