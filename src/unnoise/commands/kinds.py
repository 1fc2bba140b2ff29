"""The data kinds of the command line, each registered once: what ``unnoise sample`` writes for it,
its default sample count and output, and which options apply to it.

A kind's writer receives the loaded :class:`unnoise.Pipeline`, the samples in data units and the
parsed arguments, and returns the paths it wrote.  ``unnoise sample`` looks the run's kind up here
(``pipe.kind``), so adding a kind is one :func:`register` call.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .. import io
from ..data.audio import write_wav


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
    import io as _io
    buf = _io.StringIO()
    np.savetxt(buf, x.reshape(len(x), -1).numpy(), delimiter=",")
    return buf.getvalue()


def plot_vectors(pipe, x, args, path):
    from ..plotting import plot_points
    plot_points({f"{args.sampler or 'default sampler'}, {args.steps} steps": x.reshape(len(x), -1)}, path)


def write_images(pipe, x, args, out):
    if out.lower().endswith(".npy"):
        io.save_npy(out, x.numpy())
        return [out]
    from ..imaging import save_image_grid
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
    from ..plotting import plot_spectrograms
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
