"""Video data: clips ``(C, T, H, W)`` in ``[-1, 1]``, from a ``.npy`` array, a folder of GIFs or of frame
folders, or the built-in moving digits; and the writers of clips (animated GIF, PNG strip).

Long videos are cut into consecutive, non-overlapping clips of ``frames`` frames (a remainder shorter
than ``frames`` is dropped).  Every source is a map-style dataset of ``(x0, cond)`` items like the image
datasets: a ``.npy`` file is memory-mapped, GIFs and frame folders are decoded one clip at a time, and
the moving digits are drawn from ``(seed, index)`` when an item is read, so no set is ever stored.

Moving digits (as Moving MNIST and Stochastic Moving MNIST are made, from the bundled 8x8 digits): each
digit starts at a random position with a random integer velocity and moves with that constant velocity;
at a wall it bounces (the velocity component across the wall flips, the position is reflected).  In the
stochastic variant a bounce also draws a new random speed along the wall, so the future is uncertain.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .. import io
from ..imaging import image_grid, to_uint8
from .arrays import npy_header
from .images import IMAGE_EXTENSIONS, MODES, _resize_center_crop, _to_mode, image_to_tensor, load_digits

GIF_EXTENSIONS = (".gif",)
FRAME_EXTENSIONS = tuple(e for e in IMAGE_EXTENSIONS if e != ".gif")
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError)


# ----------------------------------------------------------------------------- checks
def check_clip(clip: torch.Tensor, what: str = "clip") -> torch.Tensor:
    """A clip ``(C, T, H, W)`` or a batch ``(B, C, T, H, W)`` of finite values; ValueError otherwise."""
    clip = torch.as_tensor(clip)
    if clip.ndim not in (4, 5) or not torch.is_floating_point(clip):
        raise ValueError(f"{what} must be a float tensor (C, T, H, W) or (B, C, T, H, W), got shape "
                         f"{tuple(clip.shape)} of {clip.dtype}")
    if not torch.isfinite(clip).all():
        raise ValueError(f"{what} contains NaN or inf")
    return clip


def _cut(lengths: list[int], frames: int) -> list[tuple[int, int]]:
    """``(video, first frame)`` of every clip of ``frames`` frames cut from videos of these lengths."""
    return [(v, k * frames) for v, n in enumerate(lengths) for k in range(n // frames)]


def _check_frames(frames: int) -> int:
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be a positive integer (the clip length, --frames), got {frames!r}")
    return frames


# ----------------------------------------------------------------------------- .npy
class _Clips(torch.utils.data.Dataset):
    """Clips cut from longer videos: ``self.clips`` lists ``(video, first frame)``, ``self._shape`` one clip's shape."""

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def shape(self) -> tuple:
        """``(C, frames, H, W)``."""
        return self._shape


class VideoArray(_Clips):
    """Clips of ``frames`` frames from a ``.npy`` file of videos ``(N, C, T, H, W)``, memory-mapped.

    Values are float in ``[-1, 1]`` or uint8 (mapped to ``[-1, 1]``); each video of ``T`` frames gives
    ``T // frames`` clips (``frames`` None: ``T``, one clip per video).  An item holding NaN/inf or
    values outside ``[-1, 1]`` raises ValueError naming the file and the video.
    """

    def __init__(self, path: str, frames: int | None = None):
        if not os.path.exists(path):
            raise FileNotFoundError(f"video file {path!r} does not exist")
        if not path.lower().endswith(".npy"):
            raise ValueError(f"{path!r}: a video array must be a .npy file of shape (N, C, T, H, W)")
        shape, dtype, _ = npy_header(path)
        if not np.issubdtype(np.dtype(dtype), np.floating) and np.dtype(dtype) != np.uint8:
            raise ValueError(f"{path!r} holds {np.dtype(dtype)} values; store videos as float in [-1, 1] or uint8")
        if len(shape) != 5 or 0 in shape:
            raise ValueError(f"{path!r} holds an array of shape {shape}; videos must be (N, C, T, H, W) "
                             "(add a channel axis of 1 for grey clips)")
        self.path, self.dtype, self._arr = path, np.dtype(dtype), None
        n, c, t, h, w = shape
        self.frames = _check_frames(t if frames is None else frames)
        if t < self.frames:
            raise ValueError(f"{path!r} holds videos of {t} frames, shorter than a clip of {self.frames}; "
                             f"lower --frames to at most {t}")
        self.clips = _cut([t] * n, self.frames)
        self._shape = (c, self.frames, h, w)

    def _array(self):
        if self._arr is None:  # opened per process: a DataLoader worker maps the file itself
            self._arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return self._arr

    def __getstate__(self):
        return {**self.__dict__, "_arr": None}

    def __getitem__(self, i):
        v, t0 = self.clips[i]
        x = torch.from_numpy(np.array(self._array()[v, :, t0:t0 + self.frames], dtype=np.float32))
        if self.dtype == np.uint8:
            x = x / 127.5 - 1.0
        if not torch.isfinite(x).all():
            raise ValueError(f"{self.path}: video {v} contains NaN or inf; clean or drop it before training")
        if x.abs().max() > 1.0 + 1e-6:
            raise ValueError(f"{self.path}: video {v} has values outside [-1, 1] (max |x| = {float(x.abs().max()):.3g}); "
                             "scale the pixels to [-1, 1] (or store uint8 0..255)")
        return x, {}


# ----------------------------------------------------------------------------- GIFs and frame folders
def _frame_paths(folder: str) -> list[str]:
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder))
            if f.lower().endswith(FRAME_EXTENSIONS) and not f.startswith(".")]


def _gif_length(path: str) -> int:
    with Image.open(path) as img:
        return int(getattr(img, "n_frames", 1))


def _image_size(path: str) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def _convert(img, mode: str, size: int | None):
    img = _to_mode(img, mode)
    return _resize_center_crop(img, size) if size is not None and img.size != (size, size) else img


def read_gif(path: str, mode: str = "L", image_size: int | None = None, start: int = 0,
             frames: int | None = None) -> torch.Tensor:
    """Frames ``[start, start + frames)`` of an animated GIF as ``(C, T, H, W)`` in ``[-1, 1]``."""
    out = []
    with Image.open(path) as img:
        n = int(getattr(img, "n_frames", 1))
        stop = n if frames is None else start + frames
        if stop > n:
            raise ValueError(f"{path!r} has {n} frames; frames {start}..{stop - 1} were asked for")
        for k in range(start, stop):
            img.seek(k)
            out.append(image_to_tensor(_convert(img.copy(), mode, image_size)))
    return torch.stack(out, dim=1)


def read_frames(paths: list[str], mode: str = "L", image_size: int | None = None) -> torch.Tensor:
    """Image files (one per frame) as a clip ``(C, T, H, W)``; frames of mixed sizes are a one-line
    ValueError unless ``image_size`` resizes them all."""
    out = []
    for p in paths:
        with Image.open(p) as img:
            out.append(image_to_tensor(_convert(img, mode, image_size)))
    sizes = sorted({tuple(f.shape[1:]) for f in out})
    if len(sizes) > 1:
        raise ValueError(f"the frames of {os.path.dirname(paths[0]) or '.'!r} have mixed sizes {sizes}; give every "
                         "frame the same size (or pass --image-size to resize them)")
    return torch.stack(out, dim=1)


class VideoFolder(_Clips):
    """Clips from a folder of animated GIFs and/or subfolders of frame images (frames in name order).

    Only headers are read at construction (frame counts and sizes); each item decodes its clip.  All
    frames must share one size unless ``image_size`` resizes them (shorter side, then a centre crop).

    Args:
        root: the folder.  frames: clip length (None: the shortest video's length).
        mode: ``"L"`` (grey) or ``"RGB"``.  image_size: square side to resize to (None: keep the size).
    """

    def __init__(self, root: str, frames: int | None = None, mode: str = "L", image_size: int | None = None):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"video folder {root!r} does not exist")
        if mode not in MODES:
            raise ValueError(f"unknown colour mode {mode!r}; use L or RGB")
        self.root, self.mode, self.image_size = root, mode, image_size
        self.videos: list[tuple[str, list[str] | None]] = []  # (GIF path, None) or (folder, frame paths)
        lengths, sizes = [], {}
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if name.startswith("."):
                continue
            try:
                if os.path.isdir(path) and _frame_paths(path):
                    frame_paths = _frame_paths(path)
                    found = {_image_size(p) for p in frame_paths}
                    if len(found) > 1 and image_size is None:
                        raise ValueError(f"the frames of {path!r} have mixed sizes {sorted(found)}; give every frame "
                                         "the same size (or pass --image-size to resize them)")
                    self.videos.append((path, frame_paths))
                    lengths.append(len(frame_paths))
                    sizes[path] = found.pop()
                elif name.lower().endswith(GIF_EXTENSIONS):
                    self.videos.append((path, None))
                    lengths.append(_gif_length(path))
                    sizes[path] = _image_size(path)
            except DECODE_ERRORS as err:
                if isinstance(err, ValueError) and "mixed sizes" in str(err):
                    raise
                raise ValueError(f"cannot read {path!r} ({type(err).__name__}: {err}); remove or repair it") from None
        if not self.videos:
            raise ValueError(f"{root!r} holds no videos: put animated .gif files or one folder of frame images "
                             "per video in it")
        if image_size is None and len(set(sizes.values())) > 1:
            raise ValueError(f"the videos in {root!r} have mixed frame sizes {sorted(set(sizes.values()))}; pass "
                             "--image-size to resize them to one square size")
        self.frames = _check_frames(min(lengths) if frames is None else frames)
        if max(lengths) < self.frames:
            raise ValueError(f"every video in {root!r} is shorter than a clip of {self.frames} frames (the longest "
                             f"has {max(lengths)}); lower --frames")
        self.clips = _cut(lengths, self.frames)
        w, h = (image_size, image_size) if image_size is not None else next(iter(sizes.values()))
        self._shape = (MODES[mode], self.frames, h, w)

    def __getitem__(self, i):
        v, t0 = self.clips[i]
        path, frame_paths = self.videos[v]
        if frame_paths is None:
            x = read_gif(path, self.mode, self.image_size, t0, self.frames)
        else:
            x = read_frames(frame_paths[t0:t0 + self.frames], self.mode, self.image_size)
        return x, {}


# ----------------------------------------------------------------------------- moving digits
class MovingDigits(torch.utils.data.Dataset):
    """Moving digits: ``num_digits`` of the bundled 8x8 digits bouncing in a ``size`` x ``size`` canvas.

    Item ``i`` is a pure function of ``(seed, i)``: its digits, start positions and velocities are drawn
    from a generator seeded by both, so the set is reproducible and never stored; different seeds give
    disjoint-in-randomness sets (hold out with another seed).  ``split`` picks which bundled digit images
    are used: ``"train"`` the first 1500, ``"test"`` the other 297, so held-out clips show unseen digits.

    Args:
        n: number of clips.  frames: clip length.  size: canvas side in pixels.
        num_digits: digits per clip (pixels add, clamped).  digit_size: side of a digit (default 8).
        max_speed: largest speed in pixels per frame along each axis (velocities are integers, never 0).
        stochastic: at each bounce draw a new speed along the wall (Stochastic Moving MNIST-like).
        seed: the seed of the set.  split: ``"train"`` or ``"test"``.
    Items: ``(x0 (1, frames, size, size) in [-1, 1], {})``.
    """

    TRAIN_DIGITS = 1500

    def __init__(self, n: int = 10000, frames: int = 16, size: int = 32, num_digits: int = 1, digit_size: int = 8,
                 max_speed: int = 2, stochastic: bool = False, seed: int = 0, split: str = "train"):
        if n < 1 or size < 1 or num_digits < 1 or max_speed < 1:
            raise ValueError("n, size, num_digits and max_speed must be positive integers")
        if not 1 <= digit_size <= size:
            raise ValueError(f"digit_size must be in [1, size={size}], got {digit_size}")
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.n, self.frames, self.size, self.num_digits = int(n), _check_frames(frames), int(size), int(num_digits)
        self.digit_size, self.max_speed, self.stochastic = int(digit_size), int(max_speed), bool(stochastic)
        self.seed, self.split = int(seed), split
        images, labels, _ = load_digits(self.digit_size)
        part = slice(0, self.TRAIN_DIGITS) if split == "train" else slice(self.TRAIN_DIGITS, None)
        self.digits, self.labels = (images[part, 0] + 1) / 2, labels[part]  # intensities in [0, 1]

    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> tuple:
        return (1, self.frames, self.size, self.size)

    def config(self) -> dict:
        """JSON description (stored in a run's config)."""
        return dict(name="moving-digits", n=self.n, frames=self.frames, size=self.size, num_digits=self.num_digits,
                    digit_size=self.digit_size, max_speed=self.max_speed, stochastic=self.stochastic,
                    seed=self.seed, split=self.split)

    def _generator(self, i: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + 7919 * int(i) + 17) % (2**63))

    def _speed(self, g) -> int:
        s = int(torch.randint(1, self.max_speed + 1, (1,), generator=g))
        return s if torch.rand(1, generator=g) < 0.5 else -s

    def trajectory(self, i: int):
        """``(digit indices (num_digits,), positions (frames, num_digits, 2) as (row, col) of the top-left
        corner, velocities (frames, num_digits, 2))`` of clip ``i``; velocity ``k`` moves frame ``k`` to ``k + 1``."""
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} clips")
        g = self._generator(i % self.n)
        room = self.size - self.digit_size  # positions lie in [0, room]
        which = torch.randint(0, len(self.digits), (self.num_digits,), generator=g)
        pos = torch.randint(0, room + 1, (self.num_digits, 2), generator=g)
        vel = torch.tensor([[self._speed(g), self._speed(g)] for _ in range(self.num_digits)])
        positions, velocities = [], []
        for _ in range(self.frames):
            positions.append(pos.clone())
            velocities.append(vel.clone())
            nxt = pos + vel
            for d in range(self.num_digits):
                for a in range(2):
                    p = int(nxt[d, a])
                    if room == 0:
                        p = 0
                    elif p < 0 or p > room:
                        p = -p if p < 0 else 2 * room - p  # reflect off the wall
                        p = min(max(p, 0), room)
                        vel[d, a] = -vel[d, a]
                        if self.stochastic:  # a new random speed along the wall after a bounce
                            vel[d, 1 - a] = self._speed(g)
                    nxt[d, a] = p
            pos = nxt
        return which, torch.stack(positions), torch.stack(velocities)

    def digit_labels(self, i: int) -> torch.Tensor:
        """The classes (0-9) of the digits drawn in clip ``i``, ``(num_digits,)``."""
        return self.labels[self.trajectory(i)[0]]

    def __getitem__(self, i):
        which, positions, _ = self.trajectory(i)
        canvas = torch.zeros(self.frames, self.size, self.size)
        k = self.digit_size
        for t in range(self.frames):
            for d in range(self.num_digits):
                r, c = int(positions[t, d, 0]), int(positions[t, d, 1])
                canvas[t, r:r + k, c:c + k] += self.digits[which[d]]
        return (canvas.clamp(0, 1) * 2 - 1)[None], {}

    def clips(self, start: int = 0, count: int | None = None) -> torch.Tensor:
        """Clips ``[start, start + count)`` stacked: ``(count, 1, frames, size, size)``."""
        count = self.n - start if count is None else count
        return torch.stack([self[i][0] for i in range(start, start + count)])


class WithStills(torch.utils.data.Dataset):
    """A video dataset plus still images, ``frames`` stills at a time, as clips of independent frames
    (joint image-video training, Ho et al. 2022).

    Still clips carry ``cond["stills"] = True``: the video objective gives them no known frames and the
    network's temporal attention lets each of their frames see only itself, so the stills teach the
    spatial layers without pretending to be motion.  Video items get ``cond["stills"] = False``.

    Args:
        videos: a dataset of ``(clip (C, T, H, W), cond)`` items.
        images: ``(N, C, H, W)`` stills in ``[-1, 1]`` of the clips' frame size; ``N // T`` clips are made.
    """

    def __init__(self, videos, images: torch.Tensor):
        self.videos = videos
        c, t, h, w = videos[0][0].shape
        images = torch.as_tensor(images, dtype=torch.float32)
        if images.ndim != 4 or tuple(images.shape[1:]) != (c, h, w):
            raise ValueError(f"stills must be (N, {c}, {h}, {w}) to match the clips' frames, got {tuple(images.shape)}")
        if len(images) < t:
            raise ValueError(f"{len(images)} stills cannot fill one clip of {t} frames; give at least {t}")
        n = len(images) // t
        self.stills = images[:n * t].reshape(n, t, c, h, w).transpose(1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.videos) + len(self.stills)

    def __getitem__(self, i):
        if i < len(self.videos):
            x, cond = self.videos[i]
            return x, {**cond, "stills": torch.tensor(False)}
        return self.stills[i - len(self.videos)], {"stills": torch.tensor(True)}


MOVING_DIGITS = ("moving-digits", "moving-digits-stochastic")


def is_video_spec(spec) -> bool:
    """True for the built-in moving digits, a ``.npy`` file, or a folder holding GIFs or frame folders."""
    if not isinstance(spec, str):
        return False
    return spec in MOVING_DIGITS or spec.lower().endswith(".npy") or os.path.isdir(spec)


def video_dataset(spec: str, frames: int | None = None, image_size: int | None = None, mode: str = "L",
                  num_clips: int = 10000, seed: int = 0):
    """The dataset named by ``--data``: ``moving-digits`` / ``moving-digits-stochastic`` (``image_size``
    the canvas, default 32; ``num_clips`` clips of ``frames`` frames, default 16), a ``.npy`` of videos or
    a folder of GIFs / frame folders."""
    if spec in MOVING_DIGITS:
        return MovingDigits(num_clips, frames or 16, image_size or 32, stochastic=spec.endswith("stochastic"),
                            seed=seed)
    if spec.lower().endswith(".npy"):
        if image_size is not None:
            raise ValueError("--image-size does not apply to a .npy of videos (its frames are used as stored); "
                             "resize the array or leave the option out")
        return VideoArray(spec, frames)
    return VideoFolder(spec, frames, mode, image_size)


# ----------------------------------------------------------------------------- one clip in, clips out
def read_clip(path: str, mode: str = "L") -> torch.Tensor:
    """One clip ``(C, T, H, W)`` in ``[-1, 1]`` from a ``.gif``, a ``.npy`` (``(C, T, H, W)`` or
    ``(1, C, T, H, W)``) or a folder of frame images."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"input clip {path!r} does not exist")
    if os.path.isdir(path):
        frames = _frame_paths(path)
        if not frames:
            raise ValueError(f"{path!r} holds no frame images ({', '.join(FRAME_EXTENSIONS)})")
        return read_frames(frames, mode)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gif":
        try:
            return read_gif(path, mode)
        except DECODE_ERRORS as err:
            raise ValueError(f"cannot read {path!r} as a GIF ({type(err).__name__}: {err})") from None
    if ext == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read {path!r} as a .npy array ({err})") from None
        x = torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0 if arr.dtype == np.uint8 else arr.astype(np.float32))
        if x.ndim == 5 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 4:
            raise ValueError(f"{path!r} holds an array of shape {tuple(arr.shape)}; a clip is (C, T, H, W)")
        check_clip(x, path)
        if x.abs().max() > 1.0 + 1e-6:
            raise ValueError(f"{path!r} has values outside [-1, 1]; scale the pixels to [-1, 1] (or store uint8)")
        return x
    raise ValueError(f"{path!r}: an input clip is a .gif, a .npy (C, T, H, W) or a folder of frame images")


def _frames_uint8(clip: torch.Tensor, upscale: int) -> list[Image.Image]:
    """``(C, T, H, W)`` -> one Pillow image per frame."""
    frames = to_uint8(clip.transpose(0, 1))  # (T, H, W, C)
    if upscale > 1:
        frames = frames.repeat(upscale, axis=1).repeat(upscale, axis=2)
    return [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]


def write_gif(path: str, clip: torch.Tensor, fps: float = 8.0, upscale: int = 1) -> str:
    """Write one clip ``(C, T, H, W)`` in ``[-1, 1]`` (C = 1 or 3) as an animated, looping GIF, atomically.

    Grey clips come back exactly from :func:`read_gif` (to the 8-bit quantisation); colour clips are
    reduced to GIF's 256-colour palette.  ``upscale`` enlarges each pixel (nearest)."""
    clip = check_clip(clip)
    if clip.ndim != 4 or clip.shape[0] not in (1, 3):
        raise ValueError(f"a GIF holds one clip (1 or 3, T, H, W), got shape {tuple(clip.shape)}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frames = _frames_uint8(clip, upscale)
    duration = max(10, int(round(1000 / fps)))

    def write(p):
        frames[0].save(p, format="GIF", save_all=True, append_images=frames[1:], duration=duration, loop=0,
                       optimize=False, disposal=1)
    return io.atomic_write(path, write)


def write_strip(path: str, clips: torch.Tensor, pad: int = 1, upscale: int | None = None) -> str:
    """Write clips ``(N, C, T, H, W)`` as one PNG: a row per clip, its frames left to right."""
    clips = check_clip(clips)
    if clips.ndim == 4:
        clips = clips[None]
    n, c, t, h, w = clips.shape
    if upscale is None:
        upscale = max(1, 96 // h)  # small frames enlarged (nearest) to about 96 pixels, so a person can see them
    frames = clips.transpose(1, 2).reshape(n * t, c, h, w)
    return io.save_png(path, image_grid(frames, nrow=t, pad=pad, upscale=upscale))


def gif_paths(out: str, n: int) -> list[str]:
    """Where ``n`` GIFs go: ``out`` for one clip, ``stem_000.gif``, ``stem_001.gif``, ... for several."""
    stem, ext = os.path.splitext(out)
    return [out] if n == 1 else [f"{stem}_{i:03d}{ext}" for i in range(n)]


def resize_clip(clip: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, T, H, W)`` frames resized to ``size`` x ``size`` (bilinear)."""
    b, c, t, h, w = clip.shape
    frames = clip.transpose(1, 2).reshape(b * t, c, h, w)
    frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
    return frames.reshape(b, t, c, size, size).transpose(1, 2)


def center_on_ink(frames: torch.Tensor, side: int) -> torch.Tensor:
    """Each frame ``(..., H, W)`` in ``[-1, 1]`` cut to a ``side`` x ``side`` window centred on its ink.

    Ink is the brightness above black, ``(x + 1) / 2`` clamped to ``[0, 1]``; the window's pixel
    ``(side // 2, side // 2)`` is the frame's pixel nearest the centre of ink (halves round up), and the
    window is filled with black (-1) where it leaves the frame.  A blank frame is centred on its middle.
    A rounded centre moves with whole-pixel translations, so one digit drawn anywhere in a frame gives the
    same window as the digit alone (e.g. on a canvas of its own size), and a window of twice the digit's
    side always holds the whole digit: a crop for judging which digit a frame shows, wherever it moved.
    Returns ``(..., side, side)``."""
    if isinstance(side, bool) or not isinstance(side, int) or side < 1:
        raise ValueError(f"side must be a positive integer, got {side!r}")
    frames = torch.as_tensor(frames)
    if frames.ndim < 2:
        raise ValueError(f"frames must be (..., H, W), got shape {tuple(frames.shape)}")
    lead, (h, w) = frames.shape[:-2], frames.shape[-2:]
    x = frames.reshape(-1, h, w)
    ink = ((x.double() + 1) / 2).clamp(0, 1)
    mass = ink.sum((1, 2))
    some = mass > 0
    rows = torch.where(some, (ink.sum(2) * torch.arange(h, dtype=ink.dtype)).sum(1) / mass.clamp_min(1e-300),
                       torch.full_like(mass, (h - 1) / 2))
    cols = torch.where(some, (ink.sum(1) * torch.arange(w, dtype=ink.dtype)).sum(1) / mass.clamp_min(1e-300),
                       torch.full_like(mass, (w - 1) / 2))
    rows, cols = (torch.round(v * 2**20) / 2**20 for v in (rows, cols))  # a translated copy rounds alike
    # the padded frame has `side` black pixels on every edge: its pixel (r + side, c + side) is the frame's (r, c)
    top = torch.floor(rows + 0.5).long() - side // 2 + side
    left = torch.floor(cols + 0.5).long() - side // 2 + side
    padded = F.pad(x, (side, side, side, side), value=-1.0)
    k = torch.arange(side)
    out = padded[torch.arange(len(x))[:, None, None], (top[:, None] + k)[:, :, None], (left[:, None] + k)[:, None, :]]
    return out.reshape(*lead, side, side)


def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images in ``[-1, 1]`` (peak-to-peak 2), per leading example."""
    mse = ((x.double() - ref.double()) ** 2).reshape(x.shape[0], -1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


def ssim(x: torch.Tensor, ref: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004) per leading example of ``(B, C, [T,] H, W)`` frames in
    ``[-1, 1]``, with a uniform ``window`` x ``window`` window (shrunk to the frame) and the usual constants."""
    a, b = (x.double() + 1) / 2, (ref.double() + 1) / 2
    lead = a.shape[0]
    a, b = a.reshape(-1, 1, *a.shape[-2:]), b.reshape(-1, 1, *b.shape[-2:])
    k = min(window, a.shape[-1], a.shape[-2])
    mu_a, mu_b = F.avg_pool2d(a, k, 1), F.avg_pool2d(b, k, 1)
    var_a = F.avg_pool2d(a * a, k, 1) - mu_a**2
    var_b = F.avg_pool2d(b * b, k, 1) - mu_b**2
    cov = F.avg_pool2d(a * b, k, 1) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.reshape(lead, -1).mean(1)


__all__ = ["MOVING_DIGITS", "MovingDigits", "VideoArray", "VideoFolder", "WithStills", "center_on_ink", "check_clip",
           "gif_paths", "is_video_spec",
           "psnr", "read_clip", "read_frames", "read_gif", "resize_clip", "ssim", "video_dataset", "write_gif",
           "write_strip"]
