"""``unnoise sample`` of audio runs (a config with ``audio.sample_rate``): one 16-bit WAV file per
sample at the stored rate, plus an optional spectrogram picture (``--plot FILE.png``)."""
from __future__ import annotations

import os

import torch

DEFAULT_OUT = "samples"  # a folder: samples/sample_000.wav, ...


def audio_info(checkpoint_dir: str) -> dict | None:
    """The ``audio`` entry of a run's config (``{"sample_rate": ..., ...}``), or None for other runs."""
    from ..checkpoint import read_config
    info = read_config(checkpoint_dir).get("audio")
    return info if isinstance(info, dict) and "sample_rate" in info else None


def wav_paths(out: str, n: int) -> list[str]:
    """Where the ``n`` clips go: ``out`` itself for one clip to a ``.wav`` name, ``stem_000.wav``, ...
    for several clips to a ``.wav`` name, and ``out/sample_000.wav``, ... for a folder."""
    stem, ext = os.path.splitext(out)
    if ext.lower() == ".wav":
        return [out] if n == 1 else [f"{stem}_{i:03d}.wav" for i in range(n)]
    if ext:
        raise ValueError(f"--out {out!r}: audio runs write WAV files; give a .wav file name or a folder "
                         "(or .npy/.csv for the raw arrays)")
    return [os.path.join(out, f"sample_{i:03d}.wav") for i in range(n)]


def run_sample_audio(args, options: dict, info: dict) -> int:
    """Sample ``args.n`` clips ``(channels, length)`` and write them as 16-bit PCM WAV files."""
    from ..checkpoint import load
    from ..data.audio import write_wav
    from ..pipeline import sample_model
    from ..train import resolve_device
    if args.n < 1:
        raise ValueError(f"--n must be positive, got {args.n}")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise ValueError(f"--plot {args.plot!r}: the spectrogram picture of an audio run is a PNG; "
                         "give a file name ending in .png")
    paths = wav_paths(args.out, args.n)  # checks --out before the (slow) sampling
    rate = int(info["sample_rate"])
    denoiser, schedule, config = load(args.checkpoint, ema=not args.raw_weights, device=resolve_device(args.device))
    shape = config["data"]["shape"]
    g = torch.Generator().manual_seed(args.seed)
    x = sample_model(denoiser, schedule, args.n, shape, sampler=args.sampler, steps=args.steps,
                     spacing=args.spacing, generator=g, stats=config["data"].get("normalization"),
                     progress=True, **options)
    clips = x.reshape(args.n, *shape).clamp(-1, 1)  # WAV holds [-1, 1]; louder samples clip
    for path, clip in zip(paths, clips):
        write_wav(path, clip, rate, format="pcm16")
    where = paths[0] if len(paths) == 1 else f"{os.path.dirname(paths[0]) or '.'}/ ({os.path.basename(paths[0])}, ...)"
    print(f"wrote {args.n} clip{'s' if args.n > 1 else ''} of {shape[-1]} samples "
          f"({shape[-1] / rate * 1000:.0f} ms, {shape[0]} channel{'s' if shape[0] > 1 else ''}, {rate} Hz, "
          f"16-bit) to {where}")
    if args.plot:
        from ..plotting import plot_spectrograms
        n_fft = min(256, 1 << (int(shape[-1]).bit_length() - 1))  # a power of two no longer than a clip
        plot_spectrograms({f"{args.sampler}, {args.steps} steps": clips[:8]}, rate, args.plot, n_fft=n_fft)
        print(f"wrote {args.plot}")
    return 0
