"""The :class:`Pipeline`: a trained model with everything needed to sample and edit in data units.

``unnoise.load(path)`` (:mod:`unnoise.runs`) returns one for any run or diffusers folder; each data kind's
entry in :mod:`unnoise.kinds` builds it (codec, shapes, classes, prompt encoder) and says what it can do.

===================== ================================ ============================================
kind                  model space                      data units (``pipe.sample`` returns)
===================== ================================ ============================================
``vectors``/``arrays`` standardised examples           the user's units (statistics undone)
``angles``            angles in [-pi, pi) (torus)      angles in [-pi, pi)
``backbones``         residues' angles (torus)         angles ``(n, window, A)`` in [-pi, pi)
``images``            pixels in [-1, 1]                images ``(n, C, H, W)`` clamped to [-1, 1]
``latent_images``     an autoencoder's scaled latents  decoded images ``(n, C, H, W)``
``text``              latents, conditioned on prompts  decoded images
``audio``             standardised clips               clips ``(n, channels, length)``
``upscale``           high-resolution pixels           images, given ``low`` images (``concat``)
``tokens``            token ids (categorical process)  strings (one per sample; see :meth:`Pipeline.complete`)
``molecules``         atom and bond types (graphs)     SMILES strings (None: not a valid molecule)
``classifier``        (no sampling: a noisy classifier, ``pipe.classifier``)
``autoencoder``       (no sampling: ``pipe.codec`` encodes and decodes)
===================== ================================ ============================================

Sampling starts from standard-normal ``noise`` ``(n, *model_shape)``, turned into the start of sampling by
the schedule's forward process (``schedule.forward.prior``): ``noise / s(sigma_max)`` for VP and flow
processes (so the process variable ``x_T = s x = noise``, diffusers' start), ``noise * sigma_max`` for VE
processes, uniform angles for the wrapped process, uniform draws ``[0, 1)`` per token for the categorical processes
(whose samples come from :func:`unnoise.categorical.sample`: ancestral steps from all-``[MASK]`` or the marginals).
"""
from __future__ import annotations

import copy
import warnings

import torch

from . import categorical, editing, guidance, inverse, kinds
from .denoiser import as_cond
from .gp import check_points
from .processes import CategoricalProcess
from .samplers import DEFAULT_SAMPLER
from .samplers import sample as run_sampler

DEFAULT_STEPS = 50


class Pipeline:
    """A trained model with everything needed to sample and edit in data units.

    Args:
        denoiser: ``D(x, sigma, cond)`` in model space (scale-free ``x``); None for classifier and
            autoencoder runs, which do not sample.
        schedule: the noise process; its ``sampling_sigmas(steps, spacing)`` gives the grids.
        kind: a registered kind's name (:func:`unnoise.kinds.available`; diffusers folders: ``images`` or
            ``text``); :attr:`kind_entry` is its entry, which says what the pipeline can do.
        shape: one example in data units; ``model_shape``: what the denoiser sees (default ``shape``).
        codec: ``encode(x_data) -> x_model`` / ``decode(x_model) -> x_data`` (None: identity).
        prompt_encoder: ``prompts (list of str) -> cond dict`` for text-conditioned models.
        num_classes, class_names: the classes of a class-conditional model.
        config: the run's configuration; source: where it was loaded from.
        classifier: the noisy-input classifier of a ``classifier`` run.
        tuned_grids: grids stored by ``unnoise tune-grid`` (see :meth:`grid`).
    """

    def __init__(self, denoiser, schedule, kind: str, shape, *, model_shape=None, codec=None, prompt_encoder=None,
                 num_classes: int = 0, class_names=None, config: dict | None = None, source: str | None = None,
                 classifier=None, tuned_grids=None):
        self.denoiser, self.schedule, self.kind = denoiser, schedule, kind
        self.tuned_grids = list(tuned_grids or [])  # from 'unnoise tune-grid' (RUN/tuned_grids.json)
        self._warned_steps = set()
        self.shape = tuple(shape)
        self.model_shape = tuple(model_shape) if model_shape is not None else self.shape
        self.codec = codec
        self.prompt_encoder = prompt_encoder
        self.num_classes = int(num_classes)
        self.class_names = list(class_names or [])
        self.config = config or {}
        self.source = source
        self.classifier = classifier
        self.points = None  # (P, dims) coordinates when sampling at given points (at_points)

    def __repr__(self):
        return (f"Pipeline(kind={self.kind!r}, shape={self.shape}, model_shape={self.model_shape}, "
                f"source={self.source!r})")

    @property
    def device(self) -> torch.device:
        for module in (self.denoiser, self.classifier, getattr(self.codec, "autoencoder", None)):
            if isinstance(module, torch.nn.Module):
                for p in module.parameters():
                    return p.device
        return torch.device("cpu")

    @property
    def conditional(self) -> bool:
        """True when the model takes a class label or a prompt (and so can be guided)."""
        return bool(self.num_classes) or self.prompt_encoder is not None

    @property
    def data_range(self) -> float | None:
        """Side of the box the model-space data lie in (images in [-1, 1]: 2), None when unbounded."""
        return self.kind_entry.data_range

    @property
    def kind_entry(self) -> kinds.Kind:
        """This run's entry in :mod:`unnoise.kinds`."""
        return kinds.get(self.kind)

    def _require_sampling(self, what: str):
        if self.denoiser is None:
            raise ValueError(f"a {self.kind} run cannot {what}; {self.kind_entry.use}")

    def _require(self, ability: str, what: str):
        if not self.kind_entry.can(ability):
            raise ValueError(f"{what} needs a run of {kinds.able(ability)}, not a {self.kind} run")

    # -------------------------------------------------------------- conditions
    def class_index(self, label) -> int:
        """A class index from an index or a class name, checked against the model's classes."""
        if not self.num_classes:
            raise ValueError("a class label was given but the model is not class-conditional "
                             "(train it with --conditional)")
        if isinstance(label, str) and label in self.class_names:
            return self.class_names.index(label)
        try:
            idx = int(label)
        except (TypeError, ValueError):
            raise ValueError(f"unknown class {label!r}; use an index in [0, {self.num_classes}) or one of "
                             f"{self.class_names}") from None
        if not 0 <= idx < self.num_classes:
            raise ValueError(f"class label {idx} out of range: the model has {self.num_classes} classes "
                             f"(0..{self.num_classes - 1})")
        return idx

    def make_cond(self, n: int, class_label=None, prompt=None, cond: dict | None = None) -> dict | None:
        """The condition dict for ``n`` samples: a class label (index, name, or one per sample), a
        prompt (one string, or one per sample), and/or an explicit ``cond`` dict.  Without any, a
        text model gets its null (empty) prompt and other models no condition."""
        out = dict(as_cond(cond)) if cond is not None else {}
        if class_label is not None:
            labels = [class_label] * n if isinstance(class_label, (int, str)) else list(class_label)
            if len(labels) != n:
                raise ValueError(f"{len(labels)} class labels for {n} samples")
            out["label"] = torch.tensor([self.class_index(c) for c in labels], dtype=torch.long)
        if prompt is not None:
            if self.prompt_encoder is None:
                raise ValueError("a prompt was given but the model is not text-conditioned")
            prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
            if len(prompts) != n or not all(isinstance(p, str) for p in prompts):
                raise ValueError(f"give one prompt or {n} prompts (strings)")
            out.update(self.prompt_encoder(prompts))
        elif self.prompt_encoder is not None and "context" not in out:
            out.update(self._null_context(n))
        if self.points is not None:
            out["points"] = self.points[None].expand(n, -1, -1)
        out = {k: v.to(self.device) for k, v in out.items()}
        return out or None

    def _null_context(self, n: int) -> dict:
        nulls = getattr(self.denoiser, "nulls", {})
        if "context" in nulls:
            return {k: v.expand(n, *v.shape) for k, v in nulls.items() if k in ("context", "context_mask")}
        return self.prompt_encoder([""] * n)

    def guided(self, guidance_scale: float = 1.0, classifier=None):
        """The denoiser to sample with: classifier-free guided (``guidance_scale != 1``) or guided by a
        noisy-input ``classifier`` (a classifier Pipeline or module) with weight ``guidance_scale``."""
        scale = float(guidance_scale)
        if classifier is not None:
            clf = getattr(classifier, "classifier", classifier)
            return guidance.ClassifierGuidance(self.denoiser, clf, scale, data_range=self.data_range)
        if scale == 1.0:
            return self.denoiser
        if not self.conditional:
            raise ValueError("guidance needs a class-conditional or text-conditioned model (or a noisy classifier)")
        return guidance.cfg(self.denoiser, scale)

    # -------------------------------------------------------------- sampling
    def start(self, noise: torch.Tensor, sigma_max: float) -> torch.Tensor:
        """The scale-free start at ``sigma_max`` for standard-normal ``noise``: the forward process's prior."""
        return self.forward.prior(noise, sigma_max)

    def grid(self, steps: int | None = None, spacing: str | None = None, sampler: str | None = None) -> torch.Tensor:
        """The sampling grid for ``steps`` (default 50) and ``sampler`` (default: unnoise's default sampler).

        A named ``spacing`` always wins: ``schedule.sampling_sigmas(steps, spacing)``.  Without one, a grid
        stored by ``unnoise tune-grid`` for this sampler and step count is used; a grid is tuned for one
        sampler, so another sampler gets the schedule's default grid (silently: nothing was tuned for it).
        When grids are stored for this sampler but none for ``steps``, a warning (once per step count)
        names the stored step counts, and the schedule's default grid is used.
        """
        steps = DEFAULT_STEPS if steps is None else steps
        if spacing is None and self.tuned_grids:
            sampler = sampler or DEFAULT_SAMPLER
            mine = {e["steps"]: e for e in self.tuned_grids if e["sampler"] == sampler}
            if steps in mine:
                return torch.tensor(mine[steps]["sigmas"], dtype=torch.float32)
            if mine and steps not in self._warned_steps:
                self._warned_steps.add(steps)
                warnings.warn(f"the run has tuned {sampler} grids for {sorted(mine)} steps, not {steps}: using the "
                              f"default grid (run 'unnoise tune-grid --steps {steps}' to tune one)", stacklevel=2)
        return self.schedule.sampling_sigmas(steps, spacing)

    def at_resolution(self, resolution) -> "Pipeline":
        """This run sampling on another regular grid: ``resolution`` points per axis (an int, ``"256"``, or
        ``"HxW"`` / ``(h, w)`` for 2-D), for runs whose kind can ``resolution`` (functions, whose network is a neural
        operator and whose noise a Gaussian process defined on every grid).  A one-line ValueError for a grid
        the network cannot hold (fewer points than twice its Fourier modes)."""
        self._require("resolution", "sampling at another resolution")
        dims = len(self.model_shape) - 1
        grid = parse_resolution(resolution, dims)
        check = getattr(getattr(self.denoiser, "net", None), "check_resolution", None)
        if check is not None:
            check(grid)
        out = copy.copy(self)
        out.shape = (*self.shape[:len(self.shape) - dims], *grid)
        out.model_shape = (*self.model_shape[:1], *grid)
        out.points = None
        out._warned_steps = set()
        return out

    @property
    def forward(self):
        """The forward process sampling runs under: the schedule's, restricted to :attr:`points` when set."""
        process = self.schedule.forward
        return process if self.points is None else process.at_points(self.points)

    def at_points(self, points) -> "Pipeline":
        """This run sampling at given coordinates: ``points`` ``(P, dims)`` in ``[0, 1)`` (``(P,)`` in 1-D), any
        number, irregular or not, for runs whose kind can ``resolution`` (functions).  Samples are ``(n, P)``, the
        values at the points in their order: the start and every injected noise are the Gaussian process at
        exactly those points (:meth:`unnoise.gp.Kernel.colour_at`) and the network is the neural operator
        evaluated there (its non-uniform Fourier route, :class:`unnoise.nets.FNO`).  A one-line ValueError for
        points outside ``[0, 1)``, NaN, or of the wrong dimension."""
        self._require("resolution", "sampling at given points")
        dims = len(self.model_shape) - 1
        pts = check_points(points, dims, "points")
        if pts.ndim != 2:
            raise ValueError(f"points: give one set of coordinates (P, {dims}) for all samples, got shape "
                             f"{tuple(pts.shape)}")
        check = getattr(getattr(self.denoiser, "net", None), "check_point_count", None)
        if check is not None:
            check(pts.shape[0])
        out = copy.copy(self)
        out.points = pts
        out.shape = (*self.shape[:len(self.shape) - dims], pts.shape[0])
        out.model_shape = (*self.model_shape[:1], pts.shape[0])
        out._warned_steps = set()
        return out
    @property
    def is_categorical(self) -> bool:
        """True for runs of a categorical process (tokens): samples are class indices, decoded by the codec."""
        return isinstance(getattr(self.schedule, "forward", None), CategoricalProcess)

    def _sample_tokens(self, n, steps, guidance_scale, class_label, cond, generator, noise=None, prompt=None,
                       known=None, known_mask=None, classifier=None, sampler=None):
        """:meth:`sample` for a categorical run: ancestral sampling (:func:`unnoise.categorical.sample`), with the
        codec's known tokens of a ``prompt`` (prefix) kept."""
        if classifier is not None:
            raise ValueError("classifier guidance applies to Gaussian runs; a token run is guided by its labels "
                             "(--guidance-scale with --class-label)")
        if sampler not in (None, "ancestral"):
            raise ValueError(f"token runs sample with ancestral steps (sampler 'ancestral'), not {sampler!r}")
        process = self.schedule.forward
        shape = (n, *self.model_shape)
        if prompt is not None:
            if not hasattr(self.codec, "prefix"):
                raise ValueError(f"a {self.kind} run cannot complete a prompt")
            known, known_mask = self.codec.prefix([prompt] * n if isinstance(prompt, str) else list(prompt), n)
        cond = self.make_cond(n, class_label, None, cond)
        scale = float(guidance_scale)
        if scale != 1.0 and cond is None:
            raise ValueError("guidance needs a condition to guide towards (a class label)")
        start = None
        if noise is not None:
            if tuple(noise.shape) != shape:
                raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
            start = process.prior(noise.to(self.device))
        return categorical.sample(self.denoiser, process, shape, DEFAULT_STEPS if steps is None else steps,
                                  generator=generator, cond=cond, known=known, known_mask=known_mask,
                                  guidance_scale=scale, null_cond=self.denoiser.null_cond(cond) if scale != 1.0 else None,
                                  device=self.device, start=start)

    @torch.no_grad()
    def complete(self, prompt, n: int = 1, steps: int | None = None, generator: torch.Generator | None = None,
                 **kwargs) -> list:
        """``n`` samples of a token run that begin with ``prompt`` (a string, or one per sample): the prompt's
        tokens are kept and the rest of the window is sampled (the same as ``sample(n, prompt=prompt)``)."""
        return self.sample(n, steps=steps, prompt=prompt, generator=generator, **kwargs)

    @torch.no_grad()
    def infill(self, template: str, n: int = 1, placeholder: str = "_", steps: int | None = None,
               generator: torch.Generator | None = None, **kwargs) -> list:
        """``n`` fillings of ``template``: every ``placeholder`` character is one token to sample, everything else
        is kept; returns the filled templates (the window beyond the template is sampled too, then cut off)."""
        if not hasattr(self.codec, "template"):
            raise ValueError(f"a {self.kind} run cannot fill a template")
        self._require_sampling("sample")
        known, known_mask, length = self.codec.template(template, placeholder, n)
        x = self._sample_tokens(n, steps, kwargs.pop("guidance_scale", 1.0), kwargs.pop("class_label", None),
                                kwargs.pop("cond", None), generator, known=known, known_mask=known_mask, **kwargs)
        return self.codec.decode(x[:, :length])

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard-normal starting noise ``(n, *model_shape)`` (drawn on the CPU, from ``generator``)."""
        return self.forward.noise((n, *self.model_shape), generator)

    @torch.no_grad()
    def sample(self, n: int, sampler: str | None = None, steps: int | None = None, spacing: str | None = None,
               guidance_scale: float = 1.0, class_label=None, prompt=None, cond: dict | None = None,
               noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
               progress: bool = False, classifier=None, return_model_space: bool = False, **options):
        """``n`` samples in data units (see the module table).

        Args:
            sampler: a name from :func:`unnoise.samplers.available` (default: unnoise's default sampler).
            steps, spacing: the grid (``schedule.sampling_sigmas(steps, spacing)``; 50 steps by default).
            guidance_scale: classifier-free guidance weight (or the classifier guidance weight).
            class_label, prompt, cond: the condition (see :meth:`make_cond`).
            noise: standard-normal start ``(n, *model_shape)``; drawn from ``generator`` when None.
            classifier: a noisy-input classifier for classifier guidance towards ``class_label``.
            return_model_space: also return the samples before decoding.
            **options: sampler options.
        """
        self._require_sampling("sample")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"the number of samples must be a positive integer, got {n!r}")
        if self.is_categorical:
            if options or spacing is not None:
                raise ValueError("token runs sample with ancestral steps, which take no sampler options or spacing")
            out = self._sample_tokens(n, steps, guidance_scale, class_label, cond, generator, noise, prompt,
                                      classifier=classifier, sampler=sampler)
            data = self.decode(out)
            return (data, out.cpu()) if return_model_space else data
        if classifier is not None and class_label is None:
            raise ValueError("classifier guidance needs class_label")
        if classifier is not None:
            clf = getattr(classifier, "classifier", classifier)
            labels = [class_label] * n if isinstance(class_label, (int, str)) else list(class_label)
            cond = {**(cond or {}), "label": torch.tensor([int(c) for c in labels], dtype=torch.long)}
            cond = {k: v.to(self.device) for k, v in cond.items()}
            if not 0 <= int(cond["label"].min()) <= int(cond["label"].max()) < clf.num_classes:
                raise ValueError(f"class label out of range: the classifier has {clf.num_classes} classes")
        else:
            cond = self.make_cond(n, class_label, prompt, cond)
        if guidance_scale != 1.0 and classifier is None and cond is None:
            raise ValueError("guidance needs a condition to guide towards (a class label or a prompt)")
        den = self.guided(guidance_scale, classifier)
        sigmas = self.grid(steps, spacing, sampler)
        if noise is None:
            noise = self.noise(n, generator)
        elif tuple(noise.shape) != (n, *self.model_shape):
            raise ValueError(f"noise must have shape {(n, *self.model_shape)}, got {tuple(noise.shape)}")
        x = self.start(noise.to(self.device, torch.float32), float(sigmas[0]))
        kwargs = dict(options)
        if sampler is not None:
            kwargs["sampler"] = sampler
        out = run_sampler(den, x, sigmas, generator=generator, cond=cond, progress=progress,
                          process=self.forward, **kwargs)
        data = self.decode(out)
        return (data, out.cpu()) if return_model_space else data

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> data units (on the CPU)."""
        out = self.codec.decode(x) if self.codec is not None else x
        return out.cpu() if isinstance(out, torch.Tensor) else out  # token runs decode to strings

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Data units -> model space (on the pipeline's device)."""
        x = x.to(self.device, torch.float32)
        return self.codec.encode(x) if self.codec is not None else x

    # -------------------------------------------------------------- editing
    def _check_images(self, images: torch.Tensor):
        if images.ndim != len(self.shape) + 1 or tuple(images.shape[1:]) != self.shape:
            raise ValueError(f"inputs must have shape (B, {', '.join(map(str, self.shape))}), got {tuple(images.shape)}")
        if not torch.isfinite(images).all():
            raise ValueError("inputs contain NaN or inf")

    @torch.no_grad()
    def img2img(self, images: torch.Tensor, strength: float, sampler: str | None = None, steps: int | None = None,
                spacing=None, guidance_scale: float = 1.0, class_label=None, prompt=None, cond=None,
                generator=None, **options) -> torch.Tensor:
        """SDEdit: noise ``images`` (data units) to a fraction ``strength`` of the grid and denoise;
        ``strength = 0`` returns the inputs unchanged."""
        self._require_sampling("edit")
        self._check_images(images)
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be a number in [0, 1], got {strength!r}")
        if float(strength) == 0.0:  # exactly the input, not its reconstruction
            return images.clone()
        cond = self.make_cond(len(images), class_label, prompt, cond)
        den = self.guided(guidance_scale)
        kwargs = dict(options, **({"sampler": sampler} if sampler else {}))
        sigmas = self.grid(steps, spacing, sampler or "ddim")  # editing.img2img's default sampler
        out = editing.img2img(den, self.encode(images), sigmas, strength, cond=cond,
                              generator=generator, **kwargs)
        return self.decode(out)

    @torch.no_grad()
    def inpaint(self, images: torch.Tensor, mask, sampler: str | None = "ddpm", steps: int | None = None,
                spacing=None, method: str = "replace", guidance_scale: float = 1.0, class_label=None, prompt=None,
                cond=None, generator=None, jump_length: int = 10, jump_n_sample: int = 1, particles: int = 16,
                **options) -> torch.Tensor:
        """Fill the ``mask == 0`` part of ``images`` (data units); ``mask == 1`` entries come back exactly.

        ``method``: ``replace`` (:func:`unnoise.editing.inpaint`, RePaint when ``jump_n_sample > 1``) or
        ``smc`` (sequential Monte Carlo: :func:`unnoise.inverse.smc` with a noiseless
        :class:`~unnoise.inverse.Mask`).  ``mask`` broadcasts against the images (for images: ``(H, W)``,
        ``(1 or C, H, W)`` or ``(B, 1 or C, H, W)``; a pixel is known when known in every channel).
        For latent models the mask becomes a latent mask (a latent cell is known only if all of its
        pixels are) and the known pixels are pasted back after decoding.
        """
        self._require_sampling("edit")
        self._check_images(images)
        if method not in ("replace", "smc"):
            raise ValueError(f"unknown inpainting method {method!r}; choose replace or smc")
        keep = torch.as_tensor(mask, dtype=images.dtype)
        try:
            keep = torch.broadcast_to(keep, images.shape)
        except RuntimeError:
            raise ValueError(f"mask of shape {tuple(keep.shape)} does not fit inputs of shape {tuple(images.shape)}"
                             ) from None
        if not torch.all((keep == 0) | (keep == 1)):
            raise ValueError("mask must hold only 0 (generate) and 1 (keep)")
        if torch.all(keep == 1):
            return images.clone()
        cond = self.make_cond(len(images), class_label, prompt, cond)
        den = self.guided(guidance_scale)
        known = self.encode(images)
        if hasattr(self.codec, "latent_mask"):  # latent model: a latent cell is known if all its pixels are
            pix = keep.amin(1, keepdim=True)
            model_keep = self.codec.latent_mask(pix).to(known.device).expand_as(known).contiguous()
        else:
            model_keep = keep.to(known.device)
        sigmas = self.grid(steps, spacing, "smc" if method == "smc" else sampler or "ddpm")
        if method == "smc":
            x = self.start(self.noise(len(known), generator).to(known.device), float(sigmas[0]))
            mask = inverse.Mask(model_keep, x_shape=known.shape[1:])
            out = inverse.sample(den, x, sigmas, y=known, operator=mask, method="smc", particles=particles,
                                 cond=cond, generator=generator)
        else:
            out = editing.inpaint(den, known, model_keep, sigmas, sampler=sampler or "ddpm", cond=cond,
                                  generator=generator, jump_length=jump_length, jump_n_sample=jump_n_sample,
                                  **options)
        return torch.where(keep.bool(), images, self.decode(out))

    def restore(self, measurement: torch.Tensor, operator, noise_std=0.0, method: str = "mmps", n: int = 1,
                sampler: str | None = None, steps: int | None = None, spacing=None, guidance_scale: float = 1.0,
                class_label=None, prompt=None, cond=None, generator=None, **options) -> torch.Tensor:
        """Posterior samples ``(B, n, *shape)`` (data units) of images ``x`` given ``y = A(x) + noise``.

        Args:
            measurement: ``y`` ``(B, *y_shape)`` in data units (a Mask takes full images; entries it
                does not observe are ignored, NaN allowed there).
            operator: an :class:`unnoise.inverse.Operator` on data-unit images, or a spec for
                :func:`unnoise.inverse.parse_operator` (``mask:FILE``, ``box:x0,y0,x1,y1``, ``blur:sigma=S``,
                ``downsample:F``, ``gray``).
            noise_std: the observation noise std in data units (a float, or one value per measurement).
            method: a name from :func:`unnoise.inverse.available`; ``n``: samples per measurement.
            sampler: the sampler of the guided methods (``pgdm``, ``mmps``, ``ddnm``; default ``ddpm``).
            **options: the method's options (see :func:`unnoise.inverse.sample`).

        Pixel runs (``images``): ``A`` acts on the model's pixels directly, every method applies.  With a
        noiseless Mask the observed pixels come back exactly (pasted: the posterior fixes them).
        Latent runs: a noiseless :class:`~unnoise.inverse.Mask` becomes the latent mask (a latent cell is
        observed when all its pixels are, as :meth:`inpaint`), every method applies and the observed
        pixels are pasted back; any other measurement is seen through the decoder, ``y = A(decode(z))``,
        a nonlinear operator, so only ``dps`` applies.
        """
        self._require_sampling("restore")
        self._require("restore", "restore")
        if isinstance(operator, str):
            operator = inverse.parse_operator(operator, self.shape)
        if not isinstance(operator, inverse.Operator):
            raise ValueError("operator must be an unnoise.inverse.Operator or a spec such as 'blur:sigma=2'")
        if method not in inverse.available():
            raise ValueError(f"unknown method {method!r}; available: {', '.join(inverse.available())}")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"the number of samples must be a positive integer, got {n!r}")
        y = torch.as_tensor(measurement, dtype=torch.float32)
        B = y.shape[0] if y.ndim > 0 else 0
        if B < 1:
            raise ValueError("measurement must be a batch (B, *y_shape) with B >= 1")
        std = torch.as_tensor(noise_std, dtype=torch.float32)
        if std.ndim == y.ndim and std.shape[0] == B:
            std = std.repeat_interleave(n, 0)
        if not torch.all(torch.isfinite(std)) or torch.any(std < 0):
            raise ValueError(f"noise_std must be finite and >= 0, got {noise_std!r}")
        rows = y.repeat_interleave(n, 0)
        cond = self.make_cond(B * n, class_label, prompt, cond)
        den = self.guided(guidance_scale)
        sigmas = self.grid(steps, spacing, sampler or method)  # a grid tuned for a plain sampler is not used here
        x = self.start(self.noise(B * n, generator).to(self.device), float(sigmas[0]))
        kwargs = dict(options, **({"sampler": sampler} if sampler is not None else {}))
        paste = None
        if isinstance(operator, inverse.Mask) and bool(torch.all(std == 0)):  # observed pixels are exact
            keep = torch.broadcast_to(operator.mask.to(torch.float32).cpu(), (1, *self.shape))
            paste = keep.bool()
        if hasattr(self.codec, "latent_mask"):
            if paste is not None:
                model_keep = self.codec.latent_mask(keep.amin(1, keepdim=True)).to(self.device)
                operator = inverse.Mask(model_keep.expand(1, *self.model_shape)[0].contiguous(),
                                        x_shape=self.model_shape)
                rows = self.encode(torch.where(paste & torch.isfinite(rows), rows, torch.zeros_like(rows)))
            elif method != "dps":
                raise ValueError(f"method {method!r} needs a linear operator, but a latent run sees the measurement "
                                 "through its decoder (nonlinear): use method 'dps' (or a noiseless mask)")
            else:
                ae, codec, A = self.codec.autoencoder, self.codec, operator
                operator = inverse.Operator.from_callable(
                    lambda z: A(ae.decode(z / codec.scale + codec.shift)), self.model_shape, linear=False)
        out = inverse.sample(den, x, sigmas, y=rows.to(self.device), operator=operator, noise_std=std.to(self.device),
                             method=method, generator=generator, cond=cond, **kwargs)
        data = self.decode(out.detach())
        if paste is not None:
            data = torch.where(paste, y.repeat_interleave(n, 0), data)
        return data.reshape(B, n, *self.shape)

    def upscale(self, low: torch.Tensor, sampler: str | None = None, steps: int | None = None, spacing=None,
                noise=None, generator=None, **options) -> torch.Tensor:
        """Super-resolution: high-resolution images for low-resolution ``low`` ``(B, C, h, w)`` in [-1, 1]."""
        self._require("upscale", "upscaling")
        low_shape = tuple(self.config["upscale"]["low_shape"])
        if low.ndim != 4 or tuple(low.shape[1:]) != low_shape:
            raise ValueError(f"low-resolution images must have shape (B, {', '.join(map(str, low_shape))}), "
                             f"got {tuple(low.shape)}")
        return self.sample(len(low), sampler=sampler, steps=steps, spacing=spacing, cond={"concat": low},
                           noise=noise, generator=generator, **options)


def parse_resolution(resolution, dims: int) -> tuple:
    """Points per axis of a regular grid with ``dims`` axes from ``256``, ``"256"``, ``"64x32"`` or ``(64, 32)``
    (one number means the same on every axis); a one-line ValueError otherwise."""
    parts = resolution if isinstance(resolution, (tuple, list)) else str(resolution).lower().split("x")
    try:
        grid = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"a resolution is a number of points per axis (256, or 64x32 for 2-D), not {resolution!r}") \
            from None
    if len(grid) == 1:
        grid = grid * dims
    if len(grid) != dims or min(grid) < 1:
        raise ValueError(f"a resolution for {dims}-D functions is {dims} positive number(s) of points, "
                         f"not {resolution!r}")
    return grid
