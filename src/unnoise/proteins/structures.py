"""Reading and writing protein structures through biotite: the backbones of a folder of PDB/mmCIF files,
backbone PDB files, and biotite's secondary-structure assignment.

Reading keeps, per chain of the first model, the residues that carry all three backbone atoms N, CA and C,
and cuts the chain into segments wherever it cannot be followed: a residue without one of those atoms, a
residue that is not one of the twenty standard amino acids, or a chain break (a C-N peptide bond longer than
:data:`MAX_PEPTIDE_BOND`).  Each cut is a warning that names the file and the residue; segments are never
joined across a cut.  Water, ligands and nucleic acids are not protein chains and are left out silently.
"""
from __future__ import annotations

import gzip
import io
import os
import warnings
from dataclasses import dataclass

import numpy as np

STRUCTURE_EXTENSIONS = (".pdb", ".ent", ".cif", ".mmcif", ".bcif")
MAX_PEPTIDE_BOND = 2.0  # angstroms; a C-N peptide bond is 1.33
CANONICAL = frozenset("ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL".split())
BACKBONE_ATOMS = ("N", "CA", "C")


class BackboneWarning(UserWarning):
    """A structure file whose chain was cut or skipped (missing atoms, a chain break, a non-standard residue)."""


def need_biotite():
    """``(biotite.structure, its pdb module, its pdbx module)``, imported on first use (the optional 'proteins'
    extra: importing unnoise does not load it); a one-line error when biotite is not installed."""
    try:
        import biotite.structure as struc
        from biotite.structure.io import pdb, pdbx
    except ImportError:
        raise ValueError("protein backbones need biotite: pip install 'unnoise[proteins]'") from None
    return struc, pdb, pdbx


def is_structure_file(path: str) -> bool:
    """Whether ``path`` names a PDB or mmCIF file (optionally gzipped) by its extension."""
    name = path.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return name.endswith(STRUCTURE_EXTENSIONS)


def structure_files(folder: str) -> list[str]:
    """The PDB/mmCIF files under ``folder`` (recursively), sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files) if is_structure_file(f)]
    return found


@dataclass
class Segment:
    """A stretch of one chain whose backbone can be followed: ``coords`` ``(L, 3, 3)`` (N, CA, C) in angstroms."""

    source: str  # the file
    chain: str
    first: str  # the first and last residue, as 'GLY 12'
    last: str
    coords: np.ndarray

    def __len__(self):
        return len(self.coords)

    def __str__(self):
        return f"{self.source} chain {self.chain} {self.first}-{self.last}"


def load_atoms(path: str):
    """The first model of a PDB/mmCIF/BinaryCIF file (optionally gzipped) as a biotite AtomArray."""
    _, biotite_pdb, biotite_pdbx = need_biotite()
    gz = path.lower().endswith(".gz")
    name = path.lower()[:-3] if gz else path.lower()
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        raw = f.read()
    if name.endswith(".bcif"):
        return biotite_pdbx.get_structure(biotite_pdbx.BinaryCIFFile.read(io.BytesIO(raw)), model=1)
    text = io.StringIO(raw.decode("utf-8", errors="replace"))
    if name.endswith((".cif", ".mmcif")):
        return biotite_pdbx.get_structure(biotite_pdbx.CIFFile.read(text), model=1)
    with warnings.catch_warnings():  # files without an element column: biotite guesses it (only N, CA, C are used)
        warnings.filterwarnings("ignore", message=".*elements were guessed", category=UserWarning)
        return biotite_pdb.PDBFile.read(text).get_structure(model=1)


def _residue_name(atoms, start: int) -> str:
    ins = str(atoms.ins_code[start]).strip()
    return f"{atoms.res_name[start]} {atoms.res_id[start]}{ins}"


def chain_segments(atoms, source: str) -> list[Segment]:
    """The followable stretches of every protein chain of ``atoms`` (see the module docstring); warns at each cut."""
    struc = need_biotite()[0]
    atoms = atoms[struc.filter_amino_acids(atoms)]
    segments = []
    for chain in struc.chain_iter(atoms):
        cid = str(chain.chain_id[0])
        starts = struc.get_residue_starts(chain, add_exclusive_stop=True)
        run, names = [], []

        def close():
            if run:
                segments.append(Segment(source, cid, names[0], names[-1], np.stack(run)))
            run.clear()
            names.clear()

        for s, e in zip(starts[:-1], starts[1:]):
            res = chain[s:e]
            name = _residue_name(chain, s)
            if str(res.res_name[0]) not in CANONICAL:
                warnings.warn(f"{source}: chain {cid} residue {name} is not a standard amino acid; the chain is "
                              "cut there", BackboneWarning, stacklevel=2)
                close()
                continue
            xyz = []
            for atom in BACKBONE_ATOMS:
                hit = np.flatnonzero(res.atom_name == atom)
                if len(hit):
                    xyz.append(res.coord[hit[0]])
            if len(xyz) < 3:
                lacking = [a for a in BACKBONE_ATOMS if not np.any(res.atom_name == a)]
                warnings.warn(f"{source}: chain {cid} residue {name} lacks backbone atom(s) {', '.join(lacking)}; "
                              "the chain is cut there", BackboneWarning, stacklevel=2)
                close()
                continue
            xyz = np.asarray(xyz, dtype=np.float64)
            if run:
                gap = float(np.linalg.norm(xyz[0] - run[-1][2]))
                if gap > MAX_PEPTIDE_BOND:
                    warnings.warn(f"{source}: chain {cid} breaks between residues {names[-1]} and {name} (C-N "
                                  f"{gap:.2f} A); the chain is cut there", BackboneWarning, stacklevel=2)
                    close()
            run.append(xyz)
            names.append(name)
        close()
    return segments


def read_segments(paths, min_length: int = 1) -> list[Segment]:
    """The segments of at least ``min_length`` residues of every file in ``paths``; a file biotite cannot read is
    skipped with a warning that names it."""
    need_biotite()
    out = []
    for path in paths:
        try:
            atoms = load_atoms(path)
        except Exception as err:  # a broken file among many: say which, keep the rest
            warnings.warn(f"{path}: skipped, not a readable structure file ({type(err).__name__}: {err})",
                          BackboneWarning, stacklevel=2)
            continue
        out += [s for s in chain_segments(atoms, path) if len(s) >= min_length]
    return out


def backbone_atoms(coords, chain: str = "A", res_name: str = "GLY"):
    """A biotite AtomArray of one backbone ``(L, 3, 3)`` (atoms N, CA, C; residues named ``res_name``)."""
    struc = need_biotite()[0]
    coords = np.asarray(coords, dtype=np.float32)
    L = len(coords)
    atoms = struc.AtomArray(3 * L)
    atoms.coord = coords.reshape(-1, 3)
    atoms.chain_id[:] = chain
    atoms.res_id[:] = np.repeat(np.arange(1, L + 1), 3)
    atoms.res_name[:] = res_name
    atoms.atom_name[:] = np.tile(np.array(BACKBONE_ATOMS), L)
    atoms.element[:] = np.tile(np.array(["N", "C", "C"]), L)
    atoms.hetero[:] = False
    return atoms


def write_pdb(coords, path: str) -> None:
    """One backbone ``(L, 3, 3)`` as a PDB file of glycine residues (N, CA, C atoms) that molecular viewers open."""
    f = need_biotite()[1].PDBFile()
    f.set_structure(backbone_atoms(coords))
    f.write(path)


def secondary_structure(coords) -> np.ndarray:
    """biotite's P-SEA assignment (``annotate_sse``) of one backbone ``(L, 3, 3)``: ``'a'`` helix, ``'b'`` strand,
    ``'c'`` coil, one letter per residue."""
    return np.asarray(need_biotite()[0].annotate_sse(backbone_atoms(coords)))
