"""Audio clips ``(channels, length)`` from a folder of WAV files, written back as WAV."""
from __future__ import annotations

from ..commands.train_audio import add_audio_args, is_audio_request, run_audio
from ..commands.train_images import NET_DEFAULTS
from . import Kind, SampleOutput, TrainEntry, register
from .common import standardised_loader
from .outputs import plot_audio, write_audio

load = standardised_loader("audio")


register(Kind(
    name="audio", what="audio (a folder of WAV files)", load=load, abilities=frozenset({"compare"}),
    train=TrainEntry(is_audio_request, run_audio,
                     {"net": "diffwave", "sample_rate": None, "clip_length": None, "channels": None,
                      "num_clips": None, "no_normalize": False, **NET_DEFAULTS}, "audio (a folder of WAV files)",
                     add_audio_args),
    sample=SampleOutput(8, "samples", ("", ".wav", ".npy", ".csv"), write_audio,
                        "WAV files (a folder, or NAME.wav) or the raw arrays (.npy/.csv)", plot_audio),
    recognise=lambda config: isinstance(config.get("audio"), dict)))
