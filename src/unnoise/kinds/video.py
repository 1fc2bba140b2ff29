"""Video clips ``(C, T, H, W)`` in [-1, 1]: one model that generates, predicts and interpolates
(``unnoise train --video``; ``unnoise predict`` and ``Pipeline.inpaint`` with a mask over frames)."""
from __future__ import annotations

from ..commands.train_video import VIDEO_OPTIONS, add_video_args, is_video_request, run_video
from ..video import DEFAULT_N, DEFAULT_OUT, EXTENSIONS, WRITES, load_video, write_video
from . import Kind, SampleOutput, TrainEntry, register


def load(path, config, device, ema=True, autoencoder=None):
    """A video run as a Pipeline of clips ``(n, C, T, H, W)`` in [-1, 1]."""
    return load_video(path, config, device, ema)


register(Kind(
    name="video", what="video clips", load=load, abilities=frozenset({"inpaint", "img2img"}),
    train=TrainEntry(is_video_request, run_video, VIDEO_OPTIONS,
                     "video clips (--video: a .npy, a folder of GIFs or frame folders, moving-digits)", add_video_args),
    sample=SampleOutput(DEFAULT_N, DEFAULT_OUT, EXTENSIONS, write_video, WRITES),
    recognise=lambda config: isinstance(config.get("video"), dict)))
