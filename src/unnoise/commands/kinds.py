"""The data kinds of the command line, each registered once: what ``unnoise sample`` writes for it,
its default sample count and output, and which options apply to it.

A kind's writer receives the loaded :class:`unnoise.Pipeline`, the samples in data units and the
parsed arguments, and returns the paths it wrote.  ``unnoise sample`` looks the run's kind up here
(``pipe.kind``), so adding a kind is one :func:`register` call.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from io import StringIO
from typing import Callable

import numpy as np
import torch

from .. import io
from ..data.audio import write_wav
from ..data.images import is_image_spec
from ..imaging import save_image_grid
from ..plotting import plot_points, plot_spectrograms
from .train_arrays import run_arrays_file
from .train_audio import is_audio_request, run_audio
from .train_images import run_images
from .train_latent import run_latent
from .train_vectors import run_vectors


@dataclass(frozen=True)
class SampleKind:
    """How samples of one kind of run are written."""

    name: str
    default_n: int
    default_out: str
    extensions: tuple[str, ...]  # accepted --out endings ("" = a folder)
    write: Callable  # write(pipe, x, args, out) -> list of paths
    writes: str  # what --out can be, in words
    plot: Callable | None = None  # plot(pipe, x, args, path): the --plot picture, when the kind has one
    images: bool = False  # class labels / classifier guidance / image grids apply


SAMPLE_KINDS: dict[str, SampleKind] = {}


def register(kind: SampleKind) -> None:
    """Add a kind to the registry used by ``unnoise sample``."""
    SAMPLE_KINDS[kind.name] = kind


def sample_kind(pipe) -> SampleKind:
    """The registered kind of a loaded run; a one-line error for runs that do not sample."""
    try:
        return SAMPLE_KINDS[pipe.kind]
    except KeyError:
        use = {"classifier": "use it with 'unnoise sample --checkpoint RUN --classifier DIR'",
               "autoencoder": "train a latent model on it with 'unnoise train --latent DIR'"}.get(pipe.kind, "")
        raise ValueError(f"{pipe.source!r} is a {pipe.kind} run, which does not sample; {use}".rstrip("; ")) from None


def check_out(kind: SampleKind, out: str) -> None:
    """Reject an --out this kind cannot write, before any sampling."""
    ext = os.path.splitext(out)[1].lower()
    if ext not in kind.extensions:
        raise ValueError(f"--out {out!r}: {kind.name} runs write {kind.writes}")


# ----------------------------------------------------------------------------- writers
def write_arrays(pipe, x, args, out):
    if out.lower().endswith(".csv"):
        io.save_text(out, _csv(x))
    else:
        io.save_npy(out, x.numpy())
    return [out]


def _csv(x: torch.Tensor) -> str:
    buf = StringIO()
    np.savetxt(buf, x.reshape(len(x), -1).numpy(), delimiter=",")
    return buf.getvalue()


def plot_vectors(pipe, x, args, path):
    plot_points({f"{args.sampler or 'default sampler'}, {args.steps} steps": x.reshape(len(x), -1)}, path)


def write_images(pipe, x, args, out):
    if out.lower().endswith(".npy"):
        io.save_npy(out, x.numpy())
        return [out]
    k = pipe.num_classes
    labels = getattr(args, "_labels", None)
    nrow = None
    if labels is not None and args.class_label is None and k and len(x) % k == 0:
        x = x[torch.argsort(torch.as_tensor(labels), stable=True)]  # row r holds class r
        nrow = len(x) // k
    save_image_grid(x, out, nrow=nrow)
    return [out]


def wav_paths(out: str, n: int) -> list[str]:
    """Where ``n`` clips go: ``out`` itself for one clip to a ``.wav`` name, ``stem_000.wav``, ... for
    several clips to a ``.wav`` name, and ``out/sample_000.wav``, ... for a folder."""
    stem, ext = os.path.splitext(out)
    if ext.lower() == ".wav":
        return [out] if n == 1 else [f"{stem}_{i:03d}.wav" for i in range(n)]
    return [os.path.join(out, f"sample_{i:03d}.wav") for i in range(n)]


def write_audio(pipe, x, args, out):
    if out.lower().endswith((".npy", ".csv")):
        return write_arrays(pipe, x, args, out)
    rate = int(pipe.config["audio"]["sample_rate"])
    paths = wav_paths(out, len(x))
    if os.path.splitext(out)[1] == "":
        os.makedirs(out, exist_ok=True)
    for path, clip in zip(paths, x.clamp(-1, 1)):  # WAV holds [-1, 1]; louder samples clip
        write_wav(path, clip, rate, format="pcm16")
    return paths


def plot_audio(pipe, x, args, path):
    rate = int(pipe.config["audio"]["sample_rate"])
    length = int(x.shape[-1])
    n_fft = min(256, 1 << (length.bit_length() - 1))  # a power of two no longer than a clip
    plot_spectrograms({f"{args.sampler or 'default sampler'}, {args.steps} steps": x[:8].clamp(-1, 1)}, rate, path,
                      n_fft=n_fft)


ARRAYS = "a .npy or .csv file"
IMAGES = "a .png image grid or a .npy array"
register(SampleKind("vectors", 1000, "samples.npy", (".npy", ".csv"), write_arrays, ARRAYS, plot_vectors))
register(SampleKind("arrays", 1000, "samples.npy", (".npy", ".csv"), write_arrays, ARRAYS))
register(SampleKind("images", 100, "samples.png", (".png", ".npy"), write_images, IMAGES, images=True))
register(SampleKind("latent_images", 64, "samples.png", (".png", ".npy"), write_images, IMAGES, images=True))
register(SampleKind("text", 64, "samples.png", (".png", ".npy"), write_images, IMAGES))
register(SampleKind("audio", 8, "samples", ("", ".wav", ".npy", ".csv"), write_audio,
                    "WAV files (a folder, or NAME.wav) or the raw arrays (.npy/.csv)", plot_audio))


# ----------------------------------------------------------------------------- training
# Options of ``unnoise train`` that only some kinds of data take.  Their argparse default is None
# ("not given"); each kind lists the ones it takes with its own defaults, and a given option the
# kind does not take is rejected.
NET_DEFAULTS = {"base_channels": 64, "channel_mult": "1,2,2", "attention_levels": "1", "dropout": 0.0}
KIND_OPTIONS = ("num_points", "width", "depth", "no_normalize", "net", "image_size", "image_mode", "conditional",
                "flip", "base_channels", "channel_mult", "attention_levels", "patch_size", "dropout", "sample_rate",
                "clip_length", "channels", "num_clips", "latent", "num_images", "text")


@dataclass(frozen=True)
class TrainKind:
    """One kind of training data: when ``--data``/``--latent`` select it, its options, how it trains."""

    name: str
    claims: Callable  # claims(args) -> bool (may raise a one-line ValueError for a broken request)
    train: Callable  # train(args) -> exit status
    defaults: dict  # the kind-specific options it takes, with their defaults (None: resolved by train)
    what: str  # the data, in words, for messages


TRAIN_KINDS: list[TrainKind] = []


def register_train(kind: TrainKind) -> None:
    """Add a kind to the ``unnoise train`` registry (tried in registration order)."""
    TRAIN_KINDS.append(kind)


def train_kind(args) -> TrainKind:
    """The first registered kind that claims the arguments; its options resolved, others rejected."""
    kind = next(k for k in TRAIN_KINDS if k.claims(args))
    given = [o for o in KIND_OPTIONS if getattr(args, o, None) is not None and o not in kind.defaults]
    if given:
        flags = ", ".join("--" + o.replace("_", "-") for o in given)
        raise ValueError(f"{flags} {'does' if len(given) == 1 else 'do'} not apply to {kind.what}; "
                         "remove the option or train the kind of data it is for")
    for option, default in kind.defaults.items():
        if getattr(args, option, None) is None:
            setattr(args, option, default)
    return kind


def _claims_latent(args) -> bool:
    return bool(getattr(args, "latent", None))


def _claims_images(args) -> bool:
    return is_image_spec(args.data) or _is_image_cache(args.data)


def _is_image_cache(spec) -> bool:
    """A folder written by ``unnoise prepare`` (its ``index.json``)."""
    return isinstance(spec, str) and os.path.isfile(os.path.join(spec, "index.json"))


def _claims_arrays(args) -> bool:
    return getattr(args, "net", None) not in (None, "mlp")


IMAGE_OPTIONS = {"net": "unet", "image_size": None, "image_mode": "RGB", "conditional": False, "flip": False,
                 "patch_size": 2, "width": 256, "depth": 4, **NET_DEFAULTS}
register_train(TrainKind("latent", _claims_latent, run_latent,
                         {**IMAGE_OPTIONS, "latent": None, "num_images": 5000, "text": False},
                         "latent diffusion (--latent)"))
register_train(TrainKind("audio", is_audio_request, run_audio,
                         {"net": "diffwave", "sample_rate": None, "clip_length": None, "channels": None,
                          "num_clips": None, "no_normalize": False, **NET_DEFAULTS}, "audio (a folder of WAV files)"))
register_train(TrainKind("images", _claims_images, run_images, IMAGE_OPTIONS,
                         "images (digits, an image folder or a prepared cache)"))
register_train(TrainKind("arrays", _claims_arrays, run_arrays_file, {"net": None, "no_normalize": False, **NET_DEFAULTS},
                         "arrays (N, channels, ...) with --net unet|diffwave"))
register_train(TrainKind("vectors", lambda args: True, run_vectors,
                         {"num_points": 20000, "width": 256, "depth": 4, "no_normalize": False, "net": "mlp"},
                         "vectors (a built-in 2-D set or a .npy/.csv of shape (N, d))"))
