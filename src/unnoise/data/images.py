"""Image data: a folder of PNG/JPEG files (optionally one subfolder per class) or the bundled
scikit-learn digits, as float tensors ``(N, C, H, W)`` scaled to ``[-1, 1]``.

Everything is loaded into memory once (the Trainer samples batches from one tensor); a random
horizontal flip is available as a training-time augmentation (:func:`random_flip`).
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F

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
    from PIL import Image
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert(mode)


def _resize_center_crop(img, size: int):
    """Scale the shorter side to ``size`` (bicubic; antialiased when shrinking), then crop the centre."""
    from PIL import Image
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


def load_image_folder(root: str, image_size: int = 32, mode: str = "RGB", class_folders: bool | None = None):
    """Load every image under ``root`` (recursively).

    Each image is converted to ``mode`` (``"RGB"`` or ``"L"`` grayscale; RGBA/palette transparency is
    composited on white), its shorter side resized to ``image_size`` and centre-cropped to a square.
    Files that Pillow cannot decode are skipped with a warning naming them.

    Args:
        root: a directory.  With ``class_folders`` (default: auto = the root holds only subfolders),
            the first-level subfolder of each file is its class, in sorted name order.
        image_size: output side in pixels.
        mode: colour mode of the output.

    Returns:
        ``(images, labels, class_names)``: ``(N, C, image_size, image_size)`` float32 in ``[-1, 1]``;
        ``(N,)`` int64 labels or ``None``; the list of class names (empty without classes).
    """
    from PIL import Image, UnidentifiedImageError
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
    images, labels, skipped = [], [], []
    for path, parts in zip(files, rel_dirs):
        try:
            with Image.open(path) as img:
                img.load()
                img = _resize_center_crop(_to_mode(img, mode), image_size)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            skipped.append(f"{path} ({type(err).__name__}: {err})")
            continue
        images.append(image_to_tensor(img))
        if class_folders:
            labels.append(class_names.index(parts[0]))
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image file(s): " + "; ".join(skipped), stacklevel=2)
    if not images:
        raise ValueError(f"none of the {len(files)} image files under {root!r} could be read")
    x = torch.stack(images)
    return x, (torch.tensor(labels, dtype=torch.long) if class_folders else None), class_names


def load_digits(image_size: int = 8):
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, classes 0-9, offline).

    Pixel values 0..16 are scaled to ``[-1, 1]``; ``image_size`` other than 8 resizes by bilinear
    interpolation (e.g. 16 for a smoother model input).

    Returns:
        ``(images, labels, class_names)``: ``(1797, 1, image_size, image_size)`` float32,
        ``(1797,)`` int64, ``["0", ..., "9"]``.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        raise ValueError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    bunch = sk_load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(-1, 1)
    return x, torch.tensor(bunch.target, dtype=torch.long), [str(i) for i in range(10)]


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


__all__ = ["IMAGE_EXTENSIONS", "image_to_tensor", "is_image_spec", "load_digits", "load_image_folder",
           "load_images", "random_flip", "flip_rows"]


def flip_rows(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Flip image ``i`` of ``(B, C, H, W)`` left-right where ``u[i] < 1/2`` (the Trainer's augment hook)."""
    return torch.where((u < 0.5).reshape(-1, *([1] * (x.ndim - 1))).to(x.device), x.flip(-1), x)
