"""The data kinds: one registered entry per kind of data, read by the library and the command line alike.

An entry (:class:`Kind`) says everything that differs between kinds:

* how a run of that kind becomes a :class:`~unnoise.pipeline.Pipeline` (``load``: codec, shapes, classes,
  prompt encoder), and which forward process it trains and samples under (``process``, see
  :mod:`unnoise.processes`);
* what it can do (``abilities``: ``inpaint``, ``restore``, ``img2img``, ``upscale``, ``export``, ``compare``,
  ``class_guidance``, ``resolution``: sample on grids of any resolution); runs that are a plain network rather than a denoiser (``denoiser=False``: the noisy
  classifier, the autoencoder) do not sample;
* its ``unnoise train`` entry (:class:`TrainEntry`: which ``--data`` it claims, its own options with their
  defaults, the function that trains it, its command-line arguments);
* its ``unnoise sample`` output (:class:`SampleOutput`: default n and file, accepted extensions, writer, plot).

Adding a kind is one module under ``unnoise/kinds/`` that calls :func:`register`, plus its name in
:data:`BUILTIN` (which also fixes the order in which ``unnoise train`` asks the kinds to claim the data:
the first entry whose ``claims(args)`` is true trains).  The built-in kinds are imported on first use of the
registry, so importing :mod:`unnoise.kinds` costs nothing and the kind modules may import any part of unnoise.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

# The built-in kinds, one module each, in the order ``unnoise train`` asks them to claim the data.
BUILTIN = ("voxels", "angles", "backbones", "functions", "tokens", "video", "text", "latent_images", "upscale",
           "audio", "images", "molecules", "arrays", "vectors", "classifier", "autoencoder")

ABILITIES = frozenset({"inpaint", "restore", "img2img", "upscale", "export", "compare", "class_guidance",
                       "resolution"})


@dataclass(frozen=True)
class TrainEntry:
    """How ``unnoise train`` trains a kind.

    ``claims(args) -> bool`` says whether the parsed arguments ask for this kind (it may raise a one-line
    ValueError for a broken request); ``run(args) -> exit status`` trains; ``options`` are the kind-specific
    options it takes with their defaults (None: resolved by ``run``), every other kind-specific option given
    is rejected; ``add_args(parser)`` adds the kind's own arguments (shared by kinds that pass the same
    function); ``what`` names the data in messages."""

    claims: Callable
    run: Callable
    options: dict
    what: str
    add_args: Callable | None = None


@dataclass(frozen=True)
class SampleOutput:
    """How ``unnoise sample`` writes a kind: ``write(pipe, x, args, out) -> paths`` for an ``--out`` with one
    of ``extensions`` (``""`` = a folder), described in words by ``writes``; ``plot(pipe, x, args, path)``
    draws the ``--plot`` picture where the kind has one; ``add_args(parser)`` adds the kind's own ``unnoise sample``
    options, whose destinations are ``options`` (given for a run of another kind, they are rejected)."""

    default_n: int
    default_out: str
    extensions: tuple[str, ...]
    write: Callable
    writes: str
    plot: Callable | None = None
    add_args: Callable | None = None
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kind:
    """One kind of data and of run (see the module docstring)."""

    name: str
    what: str  # the data, in words
    load: Callable  # load(path, config, device, autoencoder=None) -> Pipeline
    process: str = "gaussian"  # the forward process family: gaussian (vp, ve, flow), wrapped, ...
    abilities: frozenset = field(default_factory=frozenset)
    train: TrainEntry | None = None
    sample: SampleOutput | None = None
    denoiser: bool = True  # False: a plain network (classifier, autoencoder) that other runs use
    recognise: Callable | None = None  # recognise(config) -> bool for configs written before format version 2
    use: str = ""  # for kinds that do not sample: how they are used, for messages
    data_range: float | None = None  # side of the box model-space data lie in (images in [-1, 1]: 2), if bounded

    def can(self, ability: str) -> bool:
        """Whether runs of this kind can do ``ability`` (one of :data:`ABILITIES`)."""
        if ability not in ABILITIES:
            raise ValueError(f"unknown ability {ability!r}; one of {', '.join(sorted(ABILITIES))}")
        return ability in self.abilities


_REGISTRY: dict[str, Kind] = {}
_loaded = False


def register(kind: Kind) -> Kind:
    """Add (or replace) a kind in the registry; returns it."""
    if not isinstance(kind, Kind):
        raise ValueError(f"register takes a unnoise.kinds.Kind, got {type(kind).__name__}")
    unknown = set(kind.abilities) - ABILITIES
    if unknown:
        raise ValueError(f"kind {kind.name!r}: unknown abilities {sorted(unknown)}; choose from {sorted(ABILITIES)}")
    _REGISTRY[kind.name] = kind
    return kind


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for name in BUILTIN:
            importlib.import_module(f".{name}", __name__)


def available() -> list[str]:
    """Every registered kind's name, in the order of :func:`all_kinds`."""
    return [k.name for k in all_kinds()]


def all_kinds() -> list[Kind]:
    """Every registered :class:`Kind` in the order ``unnoise train`` asks them to claim the data: kinds registered
    by other code first (in registration order), then the built-in ones in :data:`BUILTIN` order, whatever order
    their modules were imported in (``vectors``, which takes any file, comes last)."""
    _load_builtin()
    rank = {name: i for i, name in enumerate(BUILTIN)}
    added = [k for k in _REGISTRY.values() if k.name not in rank]
    return added + sorted((k for k in _REGISTRY.values() if k.name in rank), key=lambda k: rank[k.name])


def get(name: str) -> Kind:
    """The registered kind ``name``; a one-line ValueError naming the known ones otherwise."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown kind {name!r}; this version knows {', '.join(available())}") from None


def is_plain_network(name) -> bool:
    """True for the kinds whose runs are a plain network rather than a denoiser (the noisy classifier, the
    autoencoder); False for every other name, unknown ones included."""
    _load_builtin()
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    return entry is not None and not entry.denoiser


def with_ability(ability: str) -> list[str]:
    """The names of the kinds that can do ``ability``."""
    return [k.name for k in all_kinds() if k.can(ability)]


def able(ability: str) -> str:
    """The kinds that can do ``ability``, in words for messages: ``"images, latent images or ..."``."""
    words = [k.what for k in all_kinds() if k.can(ability)]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
