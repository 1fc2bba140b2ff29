"""The writers and plots of ``unnoise sample`` that several kinds share: ``write(pipe, x, args, out) -> paths``
and ``plot(pipe, x, args, path)`` (see :class:`unnoise.kinds.SampleOutput`)."""
from __future__ import annotations

import os
from io import StringIO

import numpy as np
import torch

from .. import io
from ..data.audio import write_wav
from ..imaging import save_image_grid
from ..plotting import plot_points, plot_spectrograms

ARRAYS = "a .npy or .csv file"
IMAGES = "a .png image grid or a .npy array"


def write_arrays(pipe, x, args, out):
    """Samples as a .npy array or a .csv table (one example per row)."""
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
    """A scatter plot of the first two coordinates of the samples."""
    plot_points({f"{args.sampler or 'default sampler'}, {args.steps} steps": x.reshape(len(x), -1)}, path)


def write_images(pipe, x, args, out):
    """Samples as a PNG grid (one row per class when every class was sampled in turn) or a .npy array."""
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
    """Clips as 16-bit WAV files at the run's sample rate (clipped to [-1, 1]), or the raw arrays."""
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
    """Spectrograms of the first eight clips."""
    rate = int(pipe.config["audio"]["sample_rate"])
    length = int(x.shape[-1])
    n_fft = min(256, 1 << (length.bit_length() - 1))  # a power of two no longer than a clip
    plot_spectrograms({f"{args.sampler or 'default sampler'}, {args.steps} steps": x[:8].clamp(-1, 1)}, rate, path,
                      n_fft=n_fft)
