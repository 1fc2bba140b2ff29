"""Protein backbones as internal angles (FoldingDiff's formulation, Wu et al. 2022).

``unnoise train --data FOLDER`` of PDB/mmCIF files (or a cache written by :func:`unnoise.proteins.write_cache`)
reads every chain's N, CA, C atoms through biotite, cuts them where the chain cannot be followed (a warning
names the file and residue), and trains on windows of ``--window`` residues of their angles
(:data:`unnoise.proteins.ANGLES`, or the subset ``--backbone-angles``) under the wrapped Gaussian process on the
torus, with a bidirectional transformer over residues (:class:`unnoise.nets.ResidueTransformer`).
``unnoise sample --out FOLDER`` rebuilds each sampled window atom by atom with ideal bond lengths (NeRF) and
writes it as a PDB file; ``--angles`` adds the raw angles, ``--plot`` a Ramachandran plot.
"""
from __future__ import annotations

import os

import torch

from .. import io, proteins
from ..commands.train_common import command_record, finish, train_config
from ..pipeline import Pipeline
from ..plotting import plot_ramachandran
from ..train import train_model
from . import Kind, SampleOutput, TrainEntry, register
from .angles import PARAMETERIZATION, SCHEDULE, check_wrapped
from .common import data_shape, read_denoiser_run

OPTIONS = {"window": 32, "min_chain_length": 40, "backbone_angles": "all", "width": 128, "depth": 4, "heads": 4,
           "schedule": SCHEDULE, "parameterization": PARAMETERIZATION}


def add_args(p) -> None:
    """The options of ``unnoise train`` for protein backbones."""
    g = p.add_argument_group("protein backbones (--data FOLDER of PDB/mmCIF files, or a backbone cache .npz)")
    g.add_argument("--window", type=int, default=None, help="residues per training window (default: 32)")
    g.add_argument("--min-chain-length", type=int, default=None,
                   help="chains (or stretches between cuts) shorter than this are left out (default: 40)")
    g.add_argument("--backbone-angles", default=None,
                   help=f"the angles to model: 'all' ({', '.join(proteins.ANGLES)}) or a comma list with phi and "
                        "psi; absent ones are rebuilt at their ideal values (default: all)")


def claims(args) -> bool:
    """A folder holding PDB/mmCIF files, or a backbone cache."""
    data = getattr(args, "data", None)
    if not isinstance(data, str) or getattr(args, "periodic", None):
        return False
    if os.path.isdir(data):
        return bool(proteins.structure_files(data))
    return proteins.windows.is_cache(data)


def run_backbones(args) -> int:
    """``unnoise train --data FOLDER_OF_PDB``: the residue transformer under wrapped noise; the exit status."""
    check_wrapped(args, "backbones train")
    if args.min_chain_length < 1:
        raise ValueError(f"--min-chain-length must be a positive integer, got {args.min_chain_length}")
    names = proteins.parse_angle_names(args.backbone_angles)
    proteins.structures.need_biotite()
    torch.manual_seed(args.seed)
    segments = proteins.load_chains(args.data, args.min_chain_length)
    windows = proteins.BackboneWindows(segments, args.window, names)
    print(f"{len(windows):,} windows of {args.window} residues from {len(windows.chains)} chain segments "
          f"({sum(len(s) for s in segments):,} residues) in {args.data}")
    net_config = {"width": args.width, "depth": args.depth, "heads": args.heads, "max_distance": args.window,
                  "periodic": True}
    info = {"kind": "backbones", "command": command_record(args),
            "backbones": {"angles": list(names), "window": args.window, "segments": len(windows.chains)}}
    trainer = train_model(windows, args.out, net="residue_transformer", net_config=net_config,
                          parameterization=PARAMETERIZATION, schedule=SCHEDULE, config=train_config(args),
                          normalize=False, info=info, progress=int(os.environ.get("RANK", "0")) == 0)
    return finish(trainer, args.out)


def angle_names(pipe) -> tuple[str, ...]:
    """The angles a backbones run models, in the order of its features."""
    return tuple(pipe.config.get("backbones", {}).get("angles", proteins.ANGLES))


def backbones_of(pipe, x: torch.Tensor) -> torch.Tensor:
    """Sampled angles ``(n, L, A)`` rebuilt as backbones ``(n, L, 3, 3)`` with ideal bond lengths."""
    return proteins.rebuild(proteins.complete(x.double(), angle_names(pipe)))


def write(pipe, x, args, out):
    """A folder of PDB files (``backbone_000.pdb``, ...; with ``--angles`` also ``angles.npy``), or the raw angles
    as one ``.npy``."""
    if out.lower().endswith(".npy"):
        io.save_npy(out, x.numpy())
        return [out]
    os.makedirs(out, exist_ok=True)
    paths = []
    for i, coords in enumerate(backbones_of(pipe, x)):
        paths.append(os.path.join(out, f"backbone_{i:03d}.pdb"))
        proteins.write_pdb(coords.numpy(), paths[-1])
    if getattr(args, "angles", False):
        io.save_npy(os.path.join(out, "angles.npy"), x.numpy())
    return paths


def plot(pipe, x, args, path):
    """The Ramachandran plot (phi, psi) of every sampled residue but the first of each window."""
    names = angle_names(pipe)
    phi, psi = x[:, 1:, names.index("phi")], x[:, 1:, names.index("psi")]
    plot_ramachandran({f"{len(x)} samples, {args.steps} steps": torch.stack([phi, psi], -1).reshape(-1, 2)}, path)


def add_sample_args(p) -> None:
    """The options of ``unnoise sample`` for backbones."""
    p.add_argument("--angles", action="store_true", default=None,
                   help="backbones: also write the sampled angles (radians) as angles.npy in the --out folder")


def load(path, config, device, ema=True, autoencoder=None):
    """A backbones run as a Pipeline whose samples are angles ``(n, window, A)`` in ``[-pi, pi)``."""
    denoiser, schedule, config, common = read_denoiser_run(path, device, ema)
    return Pipeline(denoiser, schedule, "backbones", data_shape(config), **common)


register(Kind(
    name="backbones", what="protein backbones (a folder of PDB/mmCIF files)", load=load, process="wrapped",
    train=TrainEntry(claims, run_backbones, OPTIONS,
                     "protein backbones (a folder of PDB/mmCIF files)", add_args),
    sample=SampleOutput(10, "backbones", ("", ".npy"), write, "a folder of PDB files or a .npy of angles", plot,
                        add_args=add_sample_args, options=("angles",)),
    recognise=lambda config: isinstance(config.get("backbones"), dict)))
