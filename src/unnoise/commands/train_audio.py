"""``unnoise train --data FOLDER_OF_WAVS``: audio clips through the array-training path.

A folder holding ``.wav`` files (and no images) is read with :class:`unnoise.data.audio.AudioFolder`
(resampled to ``--sample-rate``, converted to ``--channels``), cut into ``--num-clips`` random crops of
``--clip-length`` samples, and trained as sequences ``(N, channels, length)`` by
:func:`unnoise.commands.train_arrays.run_arrays`.  The run's config records ``audio.sample_rate`` so
``unnoise sample`` writes WAV files at that rate.
"""
from __future__ import annotations

import os

import torch

from ..data import AudioClips
from ..data.images import IMAGE_EXTENSIONS
from .train_arrays import run_arrays

DEFAULT_SAMPLE_RATE = 8000
DEFAULT_CLIP_LENGTH = 2048
DEFAULT_NUM_CLIPS = 2000
AUDIO_NETS = ("diffwave", "unet")


def add_audio_args(p) -> None:
    """Options of ``unnoise train`` that apply to a folder of WAV files."""
    g = p.add_argument_group("audio data (--data FOLDER of .wav files)")
    g.add_argument("--sample-rate", type=int, default=None,
                   help=f"rate in Hz the clips are resampled to (default: {DEFAULT_SAMPLE_RATE})")
    g.add_argument("--clip-length", type=int, default=None,
                   help=f"length of the random training crops in samples (default: {DEFAULT_CLIP_LENGTH}); "
                        "shorter files are zero-padded")
    g.add_argument("--channels", type=int, default=None, choices=(1, 2),
                   help="1 = mono (stereo files are averaged), 2 = stereo (mono files are duplicated) (default: 1)")
    g.add_argument("--num-clips", type=int, default=None,
                   help=f"random crops drawn once for training (default: {DEFAULT_NUM_CLIPS})")


def _audio_options_given(args) -> list[str]:
    names = ("sample_rate", "clip_length", "channels", "num_clips")
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) is not None]


def folder_contents(root: str) -> tuple[int, int]:
    """``(number of .wav files, number of image files)`` under ``root``, recursively."""
    wavs = images = 0
    for _, _, files in os.walk(root):
        for f in files:
            ext = os.path.splitext(f)[1].lower()
            wavs += ext == ".wav"
            images += ext in IMAGE_EXTENSIONS
    return wavs, images


def is_audio_request(args) -> bool:
    """True when ``--data`` is a folder of WAV files without images (train it as audio).

    Raises ``ValueError`` when audio options (``--sample-rate`` etc.) are given but ``--data`` is not
    a folder holding ``.wav`` files, or the folder mixes WAV files and images.
    """
    data, given = getattr(args, "data", None), _audio_options_given(args)
    if not isinstance(data, str) or not os.path.isdir(data):
        if given:
            raise ValueError(f"{', '.join(given)} apply to audio, but --data {data!r} is not a folder; "
                             "pass a folder of .wav files")
        return False
    wavs, images = folder_contents(data)
    if wavs and images:
        raise ValueError(f"{data!r} holds both .wav files ({wavs}) and images ({images}); put the audio "
                         "and the images in separate folders")
    if given and not wavs:
        raise ValueError(f"{', '.join(given)} apply to audio, but {data!r} holds no .wav files; add WAV files "
                         "(other formats such as .mp3/.flac must be converted to .wav first)")
    if not wavs and not images:
        raise ValueError(f"{data!r} holds neither .wav files nor images ({', '.join(IMAGE_EXTENSIONS)}) nor "
                         "protein structures (.pdb, .cif); point --data at a folder of WAV files, images or "
                         "PDB/mmCIF files")
    return wavs > 0


def run_audio(args) -> int:
    """Train on random crops ``(num_clips, channels, clip_length)`` of the WAV files in ``args.data``."""
    rate = args.sample_rate if args.sample_rate is not None else DEFAULT_SAMPLE_RATE
    length = args.clip_length if args.clip_length is not None else DEFAULT_CLIP_LENGTH
    channels = args.channels if args.channels is not None else 1
    count = args.num_clips if args.num_clips is not None else DEFAULT_NUM_CLIPS
    for name, value in (("--sample-rate", rate), ("--clip-length", length), ("--num-clips", count)):
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    args.net = args.net or "diffwave"
    if args.net not in AUDIO_NETS:
        raise ValueError(f"--net {args.net} does not train on audio; use one of {', '.join(AUDIO_NETS)}")
    # the recorded command then rebuilds the same run on --resume
    args.sample_rate, args.clip_length, args.channels, args.num_clips = rate, length, channels, count
    g = torch.Generator().manual_seed(args.seed)
    clips = AudioClips(args.data, count, clip_length=length, sample_rate=rate, channels=channels, generator=g)
    print(f"{len(clips.paths)} WAV files -> {count} random crops of {length} samples "
          f"({length / rate * 1000:.0f} ms at {rate} Hz, {channels} channel{'s' if channels > 1 else ''}), "
          "read from the files as training goes")
    torch.manual_seed(args.seed)
    audio_info = {"sample_rate": rate, "channels": channels, "clip_length": length,
                  "num_files": len(clips.paths), "source": args.data}
    return run_arrays(args, clips, extra_info={"audio": audio_info}, kind="audio")
