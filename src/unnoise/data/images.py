"""Image data: a folder of PNG/JPEG files (optionally one subfolder per class) or the bundled
8x8 handwritten digits, as float tensors ``(N, C, H, W)`` scaled to ``[-1, 1]``.

:func:`load_image_folder` decodes a folder into memory; :class:`unnoise.data.datasets.ImageFolder`
streams the same pixels one file at a time (both use :func:`scan_image_folder` and :func:`decode_image`).
A random horizontal flip is available as a training-time augmentation (:func:`random_flip`).
"""
from __future__ import annotations

import os
import struct
import warnings
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

DIGITS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.npz")  # see load_digits
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MODES = {"RGB": 3, "L": 1}


def _find_images(root: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in sorted(filenames)
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    return found


def _to_mode(img, mode: str):
    """Convert a Pillow image to ``mode``; transparent pixels are composited onto white."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert(mode)


def _resize_center_crop(img, size: int):
    """Scale the shorter side to ``size`` (bicubic; antialiased when shrinking), then crop the centre."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def image_to_tensor(img) -> torch.Tensor:
    """Pillow image (uint8) -> ``(C, H, W)`` float tensor in ``[-1, 1]``."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0


# Pillow modes holding one channel of more than 8 bits, and the value that is full white in each:
# 16-bit PNG/TIFF grayscale opens as I;16 (or as 32-bit I), floating-point TIFF as F (taken as [0, 1])
DEEP_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}
DECODE_ERRORS = (OSError, ValueError, SyntaxError, struct.error, zlib.error)  # what broken files raise in Pillow


def _deep_to_tensor(img, size: int, mode: str) -> torch.Tensor:
    """A >8-bit grayscale image -> ``(C, size, size)`` in [-1, 1]: scaled by its full-white value (not clipped
    to 255), resized in 32-bit float with the same bicubic resize + centre crop as 8-bit images."""
    white = DEEP_MODES[img.mode]
    arr = np.clip(np.asarray(img, dtype=np.float64) / white, 0.0, 1.0) * 255.0
    out = np.asarray(_resize_center_crop(Image.fromarray(arr.astype(np.float32), mode="F"), size), dtype=np.float32)
    x = torch.from_numpy(np.clip(out, 0.0, 255.0))[None] / 127.5 - 1.0
    return x.expand(MODES[mode], -1, -1).clone()


def decode_image(path: str, image_size: int, mode: str = "RGB") -> torch.Tensor:
    """Decode one image file to ``(C, image_size, image_size)`` float32 in [-1, 1].

    The image is converted to ``mode`` (transparency composited on white), its shorter side resized to
    ``image_size`` (bicubic) and the centre cropped.  8-bit images map ``k -> k / 127.5 - 1``; 16-bit and
    32-bit integer grayscale map ``k -> 2 k / 65535 - 1`` and float images ``v -> 2 v - 1`` (see
    :data:`DEEP_MODES`), so a 16-bit PNG keeps its full range instead of being clipped to white.
    Raises one of :data:`DECODE_ERRORS` when the file cannot be decoded.
    """
    with Image.open(path) as img:
        img.load()
        if img.mode in DEEP_MODES:
            return _deep_to_tensor(img, image_size, mode)
        return image_to_tensor(_resize_center_crop(_to_mode(img, mode), image_size))


def _skipped_warning(skipped: list[str], what: str = "image") -> None:
    warnings.warn(f"skipped {len(skipped)} unreadable {what} file(s): " + "; ".join(skipped[:10])
                  + (f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""), stacklevel=3)


def scan_image_folder(root: str, image_size: int = 32, mode: str = "RGB", class_folders: bool | None = None):
    """The readable image files under ``root`` with their class labels, decoding none of them.

    Each file's header is read (``PIL.Image.open`` is lazy: format, mode and size only); files whose header
    cannot be read are skipped with one warning naming them.  Class folders: see :func:`load_image_folder`.

    Returns:
        ``(paths, labels, class_names)``: sorted paths, a list of ints per path or ``None``, class names.

    Raises:
        ``FileNotFoundError`` for a missing folder; ``ValueError`` for bad arguments, a folder without
        images, or one where no image can be read.
    """
    if mode not in MODES:
        raise ValueError(f"unknown image mode {mode!r}; use one of {', '.join(MODES)}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root!r} does not exist or is not a directory")
    files = _find_images(root)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root!r}")
    rel_dirs = [os.path.relpath(f, root).split(os.sep) for f in files]
    if class_folders is None:
        class_folders = all(len(parts) > 1 for parts in rel_dirs)
    class_names = sorted({parts[0] for parts in rel_dirs if len(parts) > 1}) if class_folders else []
    if class_folders and any(len(parts) == 1 for parts in rel_dirs):
        loose = [f for f, parts in zip(files, rel_dirs) if len(parts) == 1][:3]
        raise ValueError(f"class folders requested but {root!r} also holds images outside any subfolder "
                         f"(e.g. {loose}); move them into a class folder")
    index = {name: k for k, name in enumerate(class_names)}
    paths, labels, skipped = [], [], []
    for path, parts in zip(files, rel_dirs):
        try:
            with Image.open(path):
                pass
        except DECODE_ERRORS as err:
            skipped.append(f"{path} ({type(err).__name__}: {err})")
            continue
        paths.append(path)
        if class_folders:
            labels.append(index[parts[0]])
    if skipped:
        _skipped_warning(skipped)
    if not paths:
        raise ValueError(f"none of the {len(files)} image files under {root!r} could be read (first: {skipped[0]}); "
                         "point --data at a folder of PNG/JPEG images")
    return paths, (labels if class_folders else None), class_names


def load_image_folder(root: str, image_size: int = 32, mode: str = "RGB", class_folders: bool | None = None):
    """Load every image under ``root`` (recursively) into memory.

    Each image is converted to ``mode`` (``"RGB"`` or ``"L"`` grayscale; RGBA/palette transparency is
    composited on white), its shorter side resized to ``image_size`` and centre-cropped to a square
    (:func:`decode_image`).  Files that Pillow cannot decode are skipped with a warning naming them.
    To stream a folder instead, use :class:`unnoise.data.datasets.ImageFolder` (the same pixels).

    Args:
        root: a directory.  With ``class_folders`` (default: auto = the root holds only subfolders),
            the first-level subfolder of each file is its class, in sorted name order.
        image_size: output side in pixels.
        mode: colour mode of the output.

    Returns:
        ``(images, labels, class_names)``: ``(N, C, image_size, image_size)`` float32 in ``[-1, 1]``;
        ``(N,)`` int64 labels or ``None``; the list of class names (empty without classes).
    """
    paths, labels, class_names = scan_image_folder(root, image_size, mode, class_folders)
    images, kept, skipped = [], [], []
    for k, path in enumerate(paths):
        try:
            images.append(decode_image(path, image_size, mode))
        except DECODE_ERRORS as err:
            skipped.append(f"{path} ({type(err).__name__}: {err})")
            continue
        kept.append(k)
    if skipped:
        _skipped_warning(skipped)
    if not images:
        raise ValueError(f"none of the {len(paths)} image files under {root!r} could be read")
    x = torch.stack(images)
    return x, (torch.tensor([labels[k] for k in kept], dtype=torch.long) if labels is not None else None), class_names


def no_classes_reason(root: str) -> str:
    """Why an image folder gives no class labels, for messages: it has no subfolders with images, or it has some
    but also images directly in it (then the subfolders are not taken as classes)."""
    if not isinstance(root, str) or not os.path.isdir(root):
        return f"{root!r} has no class subfolders"
    rel = [os.path.relpath(f, root).split(os.sep) for f in _find_images(root)]
    folders = sorted({parts[0] for parts in rel if len(parts) > 1})
    loose = [parts[0] for parts in rel if len(parts) == 1]
    if folders and loose:
        return (f"{root!r} has class subfolders ({', '.join(folders[:3])}{', ...' if len(folders) > 3 else ''}) but "
                f"also {len(loose)} image(s) directly in it (e.g. {loose[0]}), so the subfolders are not read as "
                "classes; move the stray images into a class folder or remove them")
    return f"{root!r} has no class subfolders"


def load_digits(image_size: int = 8):
    """The bundled 8x8 handwritten digits (1797 images, classes 0-9, offline).

    The data: E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine Learning
    Repository (1998), CC BY 4.0 -- the test set of 8x8 block counts of NIST bitmaps, the same array scikit-learn
    ships as ``load_digits`` (``tests/test_images.py`` checks they are equal), stored in ``digits.npz`` beside this
    module.  Pixel values 0..16 are scaled to ``[-1, 1]``; ``image_size`` other than 8 resizes by bilinear
    interpolation (e.g. 16 for a smoother model input).

    Returns:
        ``(images, labels, class_names)``: ``(1797, 1, image_size, image_size)`` float32,
        ``(1797,)`` int64, ``["0", ..., "9"]``.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    with np.load(DIGITS_PATH) as stored:
        images, labels = stored["images"], stored["labels"]
    x = torch.from_numpy(images.astype(np.float32))[:, None] / 8.0 - 1.0
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(-1, 1)
    return x, torch.from_numpy(labels.astype(np.int64)), [str(i) for i in range(10)]


def load_images(spec: str, image_size: int | None = None, mode: str = "RGB", class_folders: bool | None = None):
    """``"digits"`` (default size 8) or a folder path (default size 32): ``(images, labels, class_names)``."""
    if spec == "digits":
        return load_digits(image_size or 8)
    return load_image_folder(spec, image_size or 32, mode, class_folders)


def is_image_spec(spec: str) -> bool:
    """True for ``"digits"`` or an existing directory (the image data sources)."""
    return spec == "digits" or (isinstance(spec, str) and os.path.isdir(spec))


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image of ``(B, C, H, W)`` left-right with probability 1/2 (training augmentation)."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip.reshape(-1, *([1] * (x.ndim - 1))), x.flip(-1), x)


def flip_rows(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Flip image ``i`` of ``(B, C, H, W)`` left-right where ``u[i] < 1/2`` (the Trainer's augment hook)."""
    return torch.where((u < 0.5).reshape(-1, *([1] * (x.ndim - 1))).to(x.device), x.flip(-1), x)


__all__ = ["DEEP_MODES", "IMAGE_EXTENSIONS", "decode_image", "flip_rows", "image_to_tensor", "is_image_spec",
           "load_digits", "load_image_folder", "load_images", "random_flip", "scan_image_folder"]
