"""Score distillation: optimise anything differentiable so that its renders look like samples of a
diffusion prior (DreamFusion's SDS, ProlificDreamer's VSD), in unnoise's sigma frame.

The frame.  A render ``x = g(theta, camera)`` is noised in the scale-free variable,
``y = x + sigma eps``, and the prior's denoiser gives ``D(y, sigma, cond) ~ E[x_0 | y]``.  Its noise
prediction is ``eps_hat = (y - D) / sigma``, so DreamFusion's gradient ``w (eps_hat - eps) dx/dtheta``
(the denoiser's own Jacobian dropped) reads, with ``eps_hat - eps = (x - D(y)) / sigma``,

    grad_x = w(sigma) * (x - D(x + sigma eps, sigma, cond)) / sigma                      (SDS)

The same gradient in DreamFusion's VP variables (``z_t = alpha x + sigma_t eps``, ``alpha^2 = 1 /
(1 + sigma^2)``, ``sigma_t = alpha sigma``) is ``w (eps_hat - eps)`` with the identical ``eps_hat``:
the two frames give the same number for the same ``(x, eps, t)``; only the noise-level label
differs.  For a Gaussian prior ``N(mu, s^2 I)`` the exact denoiser is ``D(y) = mu + s^2 (y - mu) /
(s^2 + sigma^2)`` and the expectation over ``eps`` is, with ``w = 1``,

    E[(x - D) / sigma] = sigma (x - mu) / (s^2 + sigma^2)  =  alpha sigma_t (x - mu) / (alpha^2 s^2 + sigma_t^2)

(the right-hand side is the VP form), so SDS is gradient descent on a quadratic around ``mu``: every
particle moves to the mode, and the spread of a set of particles collapses.

VSD replaces the particle's own noise ``eps`` by the noise prediction of a second denoiser ``D_phi``
fitted online to the current particles' renders:

    grad_x = w(sigma) * (D_phi(y, sigma, camera) - D(y, sigma, cond)) / sigma                (VSD)

(SDS is the case ``D_phi(y) = x``: a Dirac at the particle itself.)  ``particle_model="gaussian"``
fits a Gaussian (mean and per-coordinate variance over the batch of particles) each step, whose
denoiser is exact: for a Gaussian prior the fixed point is then the prior itself, mean ``mu`` and
variance ``s^2``.  ``particle_model="empirical"`` takes for ``D_phi`` the exact denoiser of the empirical
distribution of the ``n`` particles' renders at one camera (every particle rendered from the same cameras),

    D_phi(y) = sum_j softmax_j(-|y - r_j|^2 / (2 sigma^2)) r_j                         (empirical)

(:class:`unnoise.analytic.EmpiricalDenoiser` of the renders ``r_1 .. r_n``, no gradient): the score of the
particles' own distribution, with nothing learned and so no lag.  With one particle it is ``r_1``, and VSD is
SDS exactly; with several, a particle is pulled toward the prior by ``D`` and pushed off the others by the
weights it puts on them (at small ``sigma`` its own render takes all the weight and the step is SDS's; at
large ``sigma`` it is a step toward the prior from the particles' weighted mean).  ``particle_model="net"``
trains a small camera-conditioned network each step on the same noisy renders, as a residual on the prior
(its output layer starts at zero, so ``D_phi = D`` at the start, the role LoRA's zero initialisation plays in
ProlificDreamer).

Weightings ``w(sigma)`` (with ``alpha_bar = 1 / (1 + sigma^2)``): ``dreamfusion`` ``1 - alpha_bar``,
``uniform`` ``1``, ``fantasia3d`` ``sqrt(alpha_bar) (1 - alpha_bar)``.  Noise levels are drawn
log-uniformly in ``sigma_range``; ``anneal_to`` lowers the upper end geometrically over the run
(coarse shape first, detail later, as DreamTime and ProlificDreamer anneal ``t``).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from . import analytic, guidance, nets
from .denoiser import Denoiser, as_cond, expand_sigma

METHODS = ("sds", "vsd")
WEIGHTINGS = ("dreamfusion", "uniform", "fantasia3d")
PARTICLE_MODELS = ("gaussian", "empirical", "net")


def weight(sigma: torch.Tensor, weighting: str) -> torch.Tensor:
    """``w(sigma)`` of a weighting name (see the module notes); ``alpha_bar = 1 / (1 + sigma^2)``."""
    alpha_bar = 1 / (1 + sigma**2)
    if weighting == "dreamfusion":
        return 1 - alpha_bar
    if weighting == "uniform":
        return torch.ones_like(sigma)
    if weighting == "fantasia3d":
        return alpha_bar.sqrt() * (1 - alpha_bar)
    raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")


def sigma_bounds(step: int, steps: int, sigma_range, anneal_to: float | None = None) -> tuple[float, float]:
    """``(sigma_lo, sigma_hi)`` at ``step`` of ``steps``: ``sigma_range``, with the upper end moved
    geometrically to ``anneal_to`` over the run when given."""
    lo, hi = float(sigma_range[0]), float(sigma_range[1])
    if anneal_to is not None:
        frac = step / max(steps - 1, 1)
        hi = math.exp((1 - frac) * math.log(hi) + frac * math.log(max(float(anneal_to), lo)))
    return lo, hi


def draw_sigma(n: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` noise levels log-uniform in ``[lo, hi]``."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))).float()


def sds_gradient(denoiser, x: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor, cond=None,
                 weighting: str = "uniform") -> tuple[torch.Tensor, torch.Tensor]:
    """``(w (x - D(x + sigma eps)) / sigma, D(x + sigma eps))`` for renders ``x`` ``(B, ...)`` and
    ``sigma`` ``(B,)`` (no gradient flows through the denoiser)."""
    with torch.no_grad():
        s = expand_sigma(sigma, x)
        den = denoiser(x + s * eps, sigma, cond)
        return weight(s, weighting) * (x - den) / s, den


class GaussianParticles:
    """The exact denoiser of a Gaussian fitted to particles ``x`` ``(B, ...)``: mean and per-coordinate
    (population) variance over the batch, ``D(y) = m + v (y - m) / (v + sigma^2)``."""

    def __init__(self, x: torch.Tensor):
        if x.shape[0] < 2:
            raise ValueError("particle_model='gaussian' fits the batch of particles: render at least 2 of them "
                             "(params with 2 or more rows)")
        x = x.detach().double()
        self.mean, self.var = x.mean(0, keepdim=True), x.var(0, unbiased=False, keepdim=True)

    def __call__(self, y: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        s2 = expand_sigma(sigma, y).double() ** 2
        return (self.mean + self.var / (self.var + s2) * (y.double() - self.mean)).to(y.dtype)


class EmpiricalParticles:
    """The exact denoiser of the empirical distribution of ``n`` particles' renders, camera by camera.

    ``x`` ``(n * V, ...)`` is particle-major: row ``i * V + v`` is particle ``i`` seen from camera ``v``, and every
    particle is seen from the same ``V`` cameras.  A noisy render ``y`` of row ``i * V + v`` is denoised by
    :class:`unnoise.analytic.EmpiricalDenoiser` of the ``n`` renders at camera ``v``, ``sum_j softmax_j(-|y -
    r_j|^2 / (2 sigma^2)) r_j`` (computed in float64, no gradient)."""

    def __init__(self, x: torch.Tensor, particles: int | None = None):
        n = x.shape[0] if particles is None else int(particles)
        if n < 1 or x.shape[0] % n:
            raise ValueError(f"particle_model='empirical' needs the batch of {x.shape[0]} renders to be n particles x "
                             f"the same cameras, particle-major; {particles!r} particles do not divide it")
        self.n, self.views = n, x.shape[0] // n
        r = x.detach().reshape(n, self.views, *x.shape[1:])
        self.models = [analytic.EmpiricalDenoiser(r[:, v]) for v in range(self.views)]

    def __call__(self, y: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        sig = expand_sigma(sigma, y).reshape(-1).expand(y.shape[0])
        y_v = y.reshape(self.n, self.views, *y.shape[1:])
        s_v = sig.reshape(self.n, self.views)
        with torch.no_grad():
            out = torch.stack([m.denoise(y_v[:, v], s_v[:, v]) for v, m in enumerate(self.models)], 1)
        return out.reshape(y.shape)


class ParticleNet(nn.Module):
    """VSD's learned particle model as a residual on the prior: ``D_phi(y) = D(y) + c_out(sigma) F(c_in y,
    c_noise, camera)`` (EDM preconditioning, ``F``'s output layer zero at the start).  Images ``(C, H, W)``
    get a small U-Net taking the camera as the prior does, ``cond["concat"]`` extra channels or a
    ``cond["vector"]`` added to its noise embedding; vectors a small MLP."""

    def __init__(self, shape, concat_channels: int = 0, width: int = 16, sigma_data: float = 0.5,
                 vector_dim: int = 0):
        super().__init__()
        shape = tuple(int(s) for s in shape)
        if len(shape) == 3:
            mult = (1, 2) if min(shape[1:]) % 2 == 0 else (1,)
            net = nets.UNet(shape=shape, base_channels=width, channel_mult=mult, num_res_blocks=1,
                            attention_levels=(), cond_channels=concat_channels, vector_dim=vector_dim)
        elif len(shape) == 1:
            if concat_channels or vector_dim:
                raise ValueError("particle_model='net' on vectors takes no camera condition")
            net = nets.MLP(shape=shape, width=4 * width, depth=2)
            nn.init.zeros_(net.out.weight)  # D_phi = D at the start
            nn.init.zeros_(net.out.bias)
        else:
            raise ValueError(f"particle_model='net' needs images (C, H, W) or vectors (d,), got renders of shape "
                             f"{shape}")
        self.keys = [k for k, n in (("concat", concat_channels), ("vector", vector_dim)) if n]
        self.model = Denoiser(net, "edm", "ve", sigma_data=sigma_data)

    def residual(self, y: torch.Tensor, sigma, cond) -> torch.Tensor:
        """``c_out F(c_in y, c_noise, camera)``."""
        s = expand_sigma(sigma, y)
        _, c_out, c_in, c_noise = self.model.precondition(s)
        sub = {k: cond[k] for k in self.keys} or None
        return c_out * self.model.net(c_in * y, c_noise.reshape(-1), sub)

    def fit_step(self, optimizer, x, y, sigma, prior_den, cond) -> float:
        """One Adam step on ``|| (D(y) + residual - x) / c_out ||^2`` for detached renders ``x``."""
        s = expand_sigma(sigma, y)
        c_out = self.model.precondition(s)[1]
        with torch.enable_grad():
            err = (prior_den + self.residual(y, sigma, cond) - x.detach()) / c_out
            loss = err.pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return loss.item()


def _leaves(params):
    """``(structure rebuilder, list of leaf tensors)`` for a tensor, a list/tuple or a dict of tensors."""
    if isinstance(params, torch.Tensor):
        return (lambda ts: ts[0]), [params]
    if isinstance(params, dict):
        keys = list(params)
        return (lambda ts: dict(zip(keys, ts))), [params[k] for k in keys]
    if isinstance(params, (list, tuple)):
        kind = type(params)
        return (lambda ts: kind(ts)), list(params)
    raise ValueError("params must be a tensor, a list or a dict of tensors (the variables to optimise)")


def _particle_net(particles, particle_opt, x, cond, width, lr):
    """VSD's learned particle model and its optimizer, built at the first step for the renders' shape."""
    if particles is None:
        concat, vector = as_cond(cond).get("concat"), as_cond(cond).get("vector")
        particles = ParticleNet(x.shape[1:], 0 if concat is None else concat.shape[1], width,
                                vector_dim=0 if vector is None else vector.shape[1]).to(x.device)
        particle_opt = torch.optim.Adam(particles.parameters(), lr=lr)
    return particles, particle_opt


def optimize(denoiser, params, render, steps: int, method: str = "sds", *, lr: float = 1e-2,
             lr_end: float | None = None, optimizer: str = "adam", guidance_scale: float = 1.0,
             null_label: int | None = None, sigma_range=(0.02, 20.0), anneal_to: float | None = None,
             weighting: str = "dreamfusion", generator: torch.Generator | None = None, cond=None, cameras=None,
             particle_model: str = "gaussian", particle_lr: float = 1e-3,
             particle_width: int = 16, particles: int | None = None, regularize=None, history: list | None = None,
             callback=None, progress: bool = False):
    """Optimise ``params`` by score distillation from the prior ``denoiser``; returns the optimised params
    (new leaf tensors, same structure as ``params``).

    Args:
        denoiser: the prior ``D(x, sigma, cond)`` (any unnoise denoiser: a run's ``pipe.denoiser``, an
            analytic one, a diffusers folder's).
        params: a tensor, list or dict of tensors: the starting point (copied, not changed).
        render: ``render(params, camera) -> (B, ...)`` renders in the prior's model space; it must be
            differentiable in ``params`` (the identity for points, :func:`unnoise.render.render` for 3-D).
        steps: optimisation steps (one optimizer step each; every render of the batch contributes its own
            gradient, summed over the batch).
        method: ``sds`` or ``vsd`` (see the module notes).
        lr, lr_end: learning rate of ``params``, moved geometrically to ``lr_end`` over the run when given.
        optimizer: ``adam`` (default; scale-free, for renderers) or ``sgd`` (plain gradient descent on the
            distillation gradient: its dynamics are the closed forms of the module notes).
        guidance_scale: classifier-free guidance weight (via :func:`unnoise.guidance.cfg`; 1 = none).
        null_label: the null class for guiding a plain callable by labels.
        sigma_range, anneal_to: noise levels, log-uniform in ``sigma_range``; the upper end moves to
            ``anneal_to`` over the run.
        weighting: ``dreamfusion``, ``uniform`` or ``fantasia3d``.
        generator: the source of every random draw (cameras, sigmas, noise).
        cond: the prior's condition: a dict, or ``cond(camera) -> dict`` for view-conditioned priors.
        cameras: ``cameras(generator) -> camera`` drawn each step (None: ``render(params, None)``).
        particle_model: VSD's ``gaussian`` (exact fit over the batch), ``empirical`` (the exact denoiser of the
            particles' renders at each camera, :class:`EmpiricalParticles`) or ``net`` (learned, camera-conditioned).
        particles: for ``empirical``, how many particles the batch of renders holds (particle-major, all from the
            same cameras: ``cameras`` draws them once and ``render`` repeats them for each particle); None: each
            row of the batch is a particle.
        particle_lr, particle_width: Adam learning rate and width of the ``net`` particle model.
        regularize: optional ``regularize(params) -> scalar`` added to the loss (e.g. a smoothness term).
        history: a list that receives ``{"step", "loss", "sigma"}`` per step (``loss``: the mean square
            of the distillation gradient).
        callback: ``callback(step, params)`` after each step (previews).
        progress: show a progress bar with the loss.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if particle_model not in PARTICLE_MODELS:
        raise ValueError(f"unknown particle_model {particle_model!r}; choose one of {', '.join(PARTICLE_MODELS)}")
    weight(torch.ones(1), weighting)  # validates the name
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    lo, hi = float(sigma_range[0]), float(sigma_range[1])
    if not 0 < lo <= hi or not math.isfinite(hi):
        raise ValueError(f"sigma_range must be (lo, hi) with 0 < lo <= hi, got {tuple(sigma_range)}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"unknown optimizer {optimizer!r}; choose adam or sgd")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    rebuild, leaves = _leaves(params)
    leaves = [torch.as_tensor(t).detach().clone().float().requires_grad_(True) for t in leaves]
    current = rebuild(leaves)
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(leaves, lr=lr)
    decay = (float(lr_end) / lr) ** (1 / max(steps - 1, 1)) if lr_end is not None else 1.0
    scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, decay)
    prior = denoiser if float(guidance_scale) == 1.0 else guidance.cfg(denoiser, guidance_scale, null_label)
    particle_net, particle_opt = None, None
    bar = tqdm(range(steps), desc=method, disable=not progress, leave=False)
    for step in bar:
        camera = cameras(generator) if cameras is not None else None
        x = render(current, camera)
        if not isinstance(x, torch.Tensor) or not x.requires_grad:
            raise ValueError("render(params, camera) returned no gradient to params: it must be differentiable "
                             "(no .detach(), torch.no_grad() or numpy inside)")
        c = cond(camera) if callable(cond) else cond
        lo_t, hi_t = sigma_bounds(step, steps, (lo, hi), anneal_to)
        sigma = draw_sigma(x.shape[0], lo_t, hi_t, generator).to(x.device)
        eps = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        s = expand_sigma(sigma, x)
        if method == "sds":
            grad, _ = sds_gradient(prior, x.detach(), sigma, eps, c, weighting)
        else:  # VSD: the particle model's denoiser in place of the particle itself
            y = x.detach() + s * eps
            with torch.no_grad():
                den = prior(y, sigma, c)
            if particle_model == "gaussian":
                phi = GaussianParticles(x)(y, sigma)
            elif particle_model == "empirical":
                phi = EmpiricalParticles(x, particles)(y, sigma)
            else:
                particle_net, particle_opt = _particle_net(particle_net, particle_opt, x, c, particle_width,
                                                           particle_lr)
                with torch.no_grad():
                    phi = den + particle_net.residual(y, sigma, as_cond(c))
                particle_net.fit_step(particle_opt, x, y, sigma, den, as_cond(c))
            grad = weight(s, weighting) * (phi - den) / s
        opt.zero_grad(set_to_none=True)
        surrogate = (x * grad).sum()  # d/dx = grad: each render gets its own distillation gradient
        if regularize is not None:
            surrogate = surrogate + regularize(current)
        surrogate.backward()
        opt.step()
        scheduler.step()
        loss = float(grad.pow(2).mean())
        if history is not None:
            history.append({"step": step + 1, "loss": loss, "sigma": float(sigma.mean())})
        bar.set_postfix(loss=f"{loss:.4g}")
        if callback is not None:
            callback(step + 1, current)
    bar.close()
    return rebuild([t.detach() for t in leaves])


__all__ = ["EmpiricalParticles", "GaussianParticles", "METHODS", "PARTICLE_MODELS", "ParticleNet", "WEIGHTINGS",
           "draw_sigma", "optimize", "sds_gradient", "sigma_bounds", "weight"]
