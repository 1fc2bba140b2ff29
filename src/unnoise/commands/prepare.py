"""``unnoise prepare``: decode a folder of images (or a .npy array) once into a memory-mapped cache.

The cache (see :mod:`unnoise.data.cache`) holds uint8 shards for images (the exact 8-bit pixels,
already resized and cropped) or float shards for arrays, plus ``index.json`` with the shape, count,
class names and normalisation statistics; :class:`unnoise.data.cache.CachedDataset` reads it back.
"""
from __future__ import annotations

import errno
import os

from .. import checkpoint
from ..data.cache import prepare
from ..data.datasets import ArrayDataset, ImageFolder


def register(sub):
    p = sub.add_parser("prepare", help="decode a folder of images (or a .npy array) once into a training cache",
                       description="Decode, resize and centre-crop every image under --data once (in --workers "
                                   "processes) and write uint8 shards plus index.json to --out; a .npy array is "
                                   "written as float shards with per-channel (or per-feature) statistics.  An "
                                   "interrupted run continues where it stopped when started again.")
    p.add_argument("--data", required=True,
                   help="a folder of PNG/JPEG images (class subfolders give labels) or a .npy file")
    p.add_argument("--out", required=True, help="cache directory to write")
    p.add_argument("--image-size", type=int, default=32, help="side in pixels after resize + centre crop (default: 32)")
    p.add_argument("--image-mode", default="RGB", choices=("RGB", "L"), help="colour mode of the images (default: RGB)")
    p.add_argument("--dtype", default=None, choices=("uint8", "float16", "float32"),
                   help="storage type (default: uint8 for images, float32 for arrays)")
    p.add_argument("--shard-size", type=int, default=4096, help="examples per shard file (default: 4096)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes that decode (default: 2)")
    p.add_argument("--batch-size", type=int, default=256, help="examples per loader batch (default: 256)")
    p.add_argument("--overwrite", action="store_true", help="replace a cache made with other settings")
    p.set_defaults(func=run)


def check_cache_out(out: str, data: str) -> None:
    """The cache goes into a new or empty folder, or one holding a cache (continued or replaced); never into the
    --data folder, a training run or a folder of other files."""
    checkpoint.check_not_inside(out, data)
    if checkpoint.is_run_dir(out):
        raise FileExistsError(errno.EEXIST, f"--out {out} holds a training run; write the cache to another folder")
    names = checkpoint.foreign_entries(out)
    if names and not checkpoint.is_cache_dir(out):
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise FileExistsError(errno.EEXIST, f"--out {out} is a non-empty folder that is not a cache (it holds "
                                            f"{shown}); choose a new or empty folder for the cache")


def run(args) -> int:
    for name in ("image_size", "shard_size", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.workers < 0:
        raise ValueError(f"--workers must be 0 or more, got {args.workers}")
    if os.path.isfile(args.out):
        raise ValueError(f"--out {args.out!r} is a file; give a directory for the cache")
    check_cache_out(args.out, args.data)
    if os.path.isdir(args.data):
        dataset = ImageFolder(args.data, args.image_size, args.image_mode)
        info = {"kind": "images", "source": os.path.abspath(args.data), "image_size": args.image_size,
                "image_mode": args.image_mode}
        dtype, stats = args.dtype or "uint8", None
        what = f"{len(dataset):,} images" + (f" in {dataset.num_classes} classes" if dataset.num_classes else "")
    elif os.path.splitext(args.data)[1].lower() == ".npy":
        dataset = ArrayDataset(args.data)
        info = {"kind": "arrays", "source": os.path.abspath(args.data)}
        dtype, stats = args.dtype or "float32", ("channel" if len(dataset.shape) >= 2 else "feature")
        what = f"{len(dataset):,} examples of shape {dataset.shape}"
    elif not os.path.exists(args.data):
        raise FileNotFoundError(f"--data {args.data!r} does not exist")
    else:
        raise ValueError(f"--data {args.data!r}: give a folder of images or a .npy file")
    print(f"{what} -> {args.out}/ ({dtype})")
    prepare(dataset, args.out, dtype=dtype, shard_size=args.shard_size, stats=stats, info=info,
            batch_size=args.batch_size, num_workers=args.workers, overwrite=args.overwrite)
    return 0
