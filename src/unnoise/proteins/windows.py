"""Training data of the ``backbones`` kind: windows of a fixed number of residues cut from chains, as angles.

:func:`load_chains` reads a folder of PDB/mmCIF files (through :mod:`unnoise.proteins.structures`) or a prepared
cache (:func:`write_cache`: one ``.npz`` holding the segments' coordinates, so a large folder is parsed once);
:class:`BackboneWindows` is the map-style dataset of every window (all start positions) of every segment, each
item an ``(L, A)`` tensor of the chosen angles in ``[-pi, pi)``.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from .geometry import ANGLES, internal_angles
from .structures import Segment, read_segments, structure_files

CACHE_KEY = "backbone_coords"


def parse_angle_names(spec) -> tuple[str, ...]:
    """``"all"`` or a comma list of :data:`~unnoise.proteins.geometry.ANGLES` (phi and psi required) -> names in
    the canonical order."""
    if spec in (None, "all"):
        return ANGLES
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    unknown = [n for n in names if n not in ANGLES]
    if unknown:
        raise ValueError(f"unknown backbone angle(s) {', '.join(unknown)}; choose from {', '.join(ANGLES)} or 'all'")
    if "phi" not in names or "psi" not in names:
        raise ValueError("the backbone angles must include phi and psi, e.g. phi,psi or phi,psi,omega")
    return tuple(a for a in ANGLES if a in names)


def is_cache(path: str) -> bool:
    """Whether ``path`` is a backbone cache written by :func:`write_cache`."""
    if not (isinstance(path, str) and path.lower().endswith(".npz") and os.path.isfile(path)):
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return CACHE_KEY in z.files
    except (OSError, ValueError):
        return False


def write_cache(segments, path: str) -> None:
    """Save segments (from :func:`unnoise.proteins.read_segments`) as one ``.npz`` that ``--data`` accepts."""
    segments = list(segments)
    if not segments:
        raise ValueError("no backbone segments to write")
    np.savez(path, **{CACHE_KEY: np.concatenate([s.coords for s in segments]).astype(np.float32),
                      "lengths": np.array([len(s) for s in segments]),
                      "names": np.array([str(s) for s in segments])})


def read_cache(path: str) -> list[Segment]:
    """The segments stored by :func:`write_cache`."""
    with np.load(path, allow_pickle=False) as z:
        coords, lengths, names = z[CACHE_KEY].astype(np.float64), z["lengths"], z["names"]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [Segment(path, "", str(name), "", coords[a:b]) for name, a, b in zip(names, bounds[:-1], bounds[1:])]


def load_chains(data: str, min_length: int) -> list[Segment]:
    """The segments of at least ``min_length`` residues of a folder of structure files or of a cache; one-line
    errors for a folder without structure files or without protein chains."""
    if is_cache(data):
        segments = [s for s in read_cache(data) if len(s) >= min_length]
        where = f"the cache {data}"
    else:
        files = structure_files(data)
        if not files:
            raise ValueError(f"{data}: no PDB or mmCIF files in the folder (looked for "
                             f"{', '.join('*' + e for e in ('.pdb', '.ent', '.cif', '.mmcif', '.bcif'))}, also .gz)")
        segments = read_segments(files, min_length)
        where = f"{data} ({len(files)} structure file{'s' * (len(files) != 1)})"
    if not segments:
        raise ValueError(f"{where}: no protein chain with at least {min_length} consecutive residues of complete "
                         "backbone (N, CA, C); lower --min-chain-length or add structures")
    return segments


class BackboneWindows(torch.utils.data.Dataset):
    """Every window of ``window`` consecutive residues inside the segments, as ``(window, len(names))`` angles.

    A window starts at the second residue of a segment at the earliest and ends before its last one, so every
    angle in it (phi of its first residue, the links to the residue after its last) is defined.  Items are
    ``(angles, {})``."""

    def __init__(self, segments, window: int, names=ANGLES):
        self.names = tuple(names)
        cols = [ANGLES.index(n) for n in self.names]
        self.window = int(window)
        if self.window < 2:
            raise ValueError(f"--window must be at least 2 residues, got {window}")
        self.chains = []
        for s in segments:
            if len(s) >= self.window + 2:
                a = internal_angles(torch.as_tensor(s.coords, dtype=torch.float64))[:, cols]
                self.chains.append(a.float())
        if not self.chains:
            longest = max(len(s) for s in segments)
            raise ValueError(f"--window {window} is longer than every chain: the longest has {longest} residues and "
                             f"a window needs {self.window + 2} (the window and one residue either side); lower "
                             "--window")
        counts = torch.tensor([len(a) - 1 - self.window for a in self.chains])
        self.starts = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])

    def __len__(self):
        return int(self.starts[-1])

    def __getitem__(self, k):
        k = int(k)
        if not 0 <= k < len(self):
            raise IndexError(k)
        c = int(torch.searchsorted(self.starts, torch.tensor(k), right=True)) - 1
        s = 1 + k - int(self.starts[c])
        return self.chains[c][s:s + self.window], {}

    def all_angles(self) -> torch.Tensor:
        """Every residue's angles inside the segments (rows with every angle defined), ``(N, len(names))``."""
        return torch.cat([a[1:-1] for a in self.chains])
