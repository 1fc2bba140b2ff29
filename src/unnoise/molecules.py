"""Molecules as graphs: SMILES <-> (atoms, bonds) through RDKit, and a streamed SMILES data set.

A molecule with ``n`` heavy atoms is two categorical tensors (hydrogens are implicit):

* ``atoms`` ``(n,)``: each atom's index in a vocabulary of atom tokens (an element symbol, with its formal
  charge appended when it has one: ``"C"``, ``"N"``, ``"N+"``, ``"O-"``);
* ``bonds`` ``(n, n)``: symmetric, zero diagonal, ``0`` no bond, ``1`` single, ``2`` double, ``3`` triple.
  Aromatic rings are kekulised on the way in (RDKit's ``Kekulize``) and aromaticity is perceived again by
  sanitisation on the way out, so a round trip gives the same canonical SMILES.

Molecules of different sizes share one padded shape ``(max_atoms,)`` / ``(max_atoms, max_atoms)`` with a
node mask (``cond["node_mask"]``, True on real atoms): padded positions hold atom ``0`` and no bonds.  The
number of atoms is drawn first from the training data's size histogram when sampling (as DiGress does); noise
and loss only touch real atoms, so no capacity goes into learning where the molecule ends.

RDKit is an optional dependency (``pip install 'unnoise[molecules]'``); without it these functions raise one
line naming the extra.

:class:`SmilesDataset` reads a ``.smi`` file (one SMILES per line, optionally followed by whitespace and a
name; a ``SMILES`` header line is skipped), or a CSV file with a ``SMILES`` column (MOSES's ``train.csv``): one
pass parses every line to build the vocabulary, the size histogram and the class marginals, and keeps only the
byte offsets of the usable lines, so the graphs are never all held in memory; items are parsed again when read.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch

INSTALL_HINT = "pip install 'unnoise[molecules]'  (or: pip install rdkit)"
BOND_NAMES = ("none", "single", "double", "triple")
NUM_BOND_TYPES = len(BOND_NAMES)


def rdkit():
    """RDKit's ``Chem`` module, or a one-line ImportError naming the extra that installs it."""
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        raise ImportError(f"molecules need RDKit, which is not installed; install it with: {INSTALL_HINT}") from None
    RDLogger.DisableLog("rdApp.*")  # parse failures are reported by unnoise, line by line
    return Chem


def atom_token(atom) -> str:
    """An RDKit atom's token: its element symbol, followed by its formal charge when it has one (``N+``, ``O-``,
    ``N+2``)."""
    charge = atom.GetFormalCharge()
    if charge == 0:
        return atom.GetSymbol()
    sign = "+" if charge > 0 else "-"
    return atom.GetSymbol() + sign + (str(abs(charge)) if abs(charge) > 1 else "")


def parse_token(token: str) -> tuple[str, int]:
    """``(element symbol, formal charge)`` of an atom token."""
    for i, ch in enumerate(token):
        if ch in "+-":
            sign = 1 if ch == "+" else -1
            return token[:i], sign * (int(token[i + 1:]) if token[i + 1:] else 1)
    return token, 0


def graph_from_smiles(smiles: str) -> tuple[list[str], np.ndarray]:
    """``(atom tokens, bonds (n, n) uint8)`` of a SMILES string, kekulised; ValueError if RDKit cannot read it."""
    Chem = rdkit()
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(f"RDKit cannot read the SMILES {smiles!r}")
    Chem.Kekulize(mol, clearAromaticFlags=True)
    n = mol.GetNumAtoms()
    bonds = np.zeros((n, n), np.uint8)
    order = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
    for b in mol.GetBonds():
        t = order.get(b.GetBondType())
        if t is None:
            raise ValueError(f"the SMILES {smiles!r} has a {b.GetBondType()} bond; molecules are graphs of single, "
                             "double and triple bonds (aromatic rings kekulised)")
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        bonds[i, j] = bonds[j, i] = t
    return [atom_token(a) for a in mol.GetAtoms()], bonds


def mol_from_graph(tokens, bonds):
    """An RDKit molecule from atom tokens and a bond matrix (the upper triangle is read), or None when RDKit
    cannot sanitise it (a valence is exceeded, a ring cannot be aromatic, ...)."""
    Chem = rdkit()
    mol = Chem.RWMol()
    for token in tokens:
        symbol, charge = parse_token(token)
        atom = Chem.Atom(symbol)
        atom.SetFormalCharge(charge)
        mol.AddAtom(atom)
    kinds = (None, Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE)
    b = np.asarray(bonds)
    for i, j in zip(*np.nonzero(np.triu(b, 1))):
        mol.AddBond(int(i), int(j), kinds[int(b[i, j])])
    try:
        m = mol.GetMol()
        Chem.SanitizeMol(m)
    except Exception:  # RDKit raises several exception types for an impossible molecule
        return None
    return m


def smiles_from_graph(tokens, bonds) -> str | None:
    """The canonical SMILES of a graph (see :func:`mol_from_graph`), None when the graph is not a valid
    molecule."""
    m = mol_from_graph(tokens, bonds)
    return None if m is None else rdkit().MolToSmiles(m)


def canonical(smiles: str, isomeric: bool = False) -> str | None:
    """RDKit's canonical SMILES (without stereochemistry unless ``isomeric``), None when RDKit cannot read it."""
    Chem = rdkit()
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol, isomericSmiles=isomeric)


class Vocabulary:
    """The atom tokens of a run (index = class) and its maximum atom count."""

    def __init__(self, tokens, max_atoms: int):
        self.tokens, self.max_atoms = list(tokens), int(max_atoms)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self):
        return len(self.tokens)

    def encode(self, smiles: str, where: str = "") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(atoms (max_atoms,), bonds (max_atoms, max_atoms), node_mask (max_atoms,))`` of one SMILES, padded;
        a one-line ValueError for an unreadable SMILES, a molecule over ``max_atoms`` or an atom outside the
        vocabulary."""
        tokens, bonds = graph_from_smiles(smiles)
        n = len(tokens)
        where = f"{where}: " if where else ""
        if n > self.max_atoms:
            raise ValueError(f"{where}{smiles} has {n} heavy atoms, more than the run's maximum of {self.max_atoms}")
        unknown = sorted(set(tokens) - set(self.index))
        if unknown:
            raise ValueError(f"{where}{smiles} has atoms {', '.join(unknown)} outside the run's atom vocabulary "
                             f"({' '.join(self.tokens)})")
        atoms = torch.zeros(self.max_atoms, dtype=torch.long)
        atoms[:n] = torch.tensor([self.index[t] for t in tokens], dtype=torch.long)
        b = torch.zeros(self.max_atoms, self.max_atoms, dtype=torch.long)
        b[:n, :n] = torch.from_numpy(bonds.astype(np.int64))
        mask = torch.arange(self.max_atoms) < n
        return atoms, b, mask

    def decode(self, atoms: torch.Tensor, bonds: torch.Tensor, node_mask: torch.Tensor) -> str | None:
        """The canonical SMILES of one padded graph (None when invalid)."""
        keep = node_mask.bool().cpu()
        tokens = [self.tokens[int(a)] for a in atoms.cpu()[keep]]
        b = bonds.cpu()[keep][:, keep].numpy()
        return smiles_from_graph(tokens, b)

    def config(self) -> dict:
        return {"atoms": self.tokens, "max_atoms": self.max_atoms}


def _split_line(line: bytes, column: int | None = None) -> str:
    """The SMILES of one line: its first whitespace-separated field, or field ``column`` of a comma-separated line."""
    text = line.decode("utf-8", "replace").strip()
    if column is not None:
        fields = text.split(",")
        return fields[column].strip() if len(fields) > column else ""
    return text.split()[0] if text else ""


def smiles_column(path: str) -> int | None:
    """The SMILES column of a CSV file whose header names one (MOSES's ``SMILES,SPLIT``), else None."""
    with open(path, "rb") as f:
        header = f.readline().decode("utf-8", "replace").strip().lower().split(",")
    return header.index("smiles") if len(header) > 1 and "smiles" in header else None


class SmilesDataset(torch.utils.data.Dataset):
    """A ``.smi`` file of one SMILES per line as a data set of padded graphs (see the module docstring), or a CSV
    file with a ``SMILES`` column (the MOSES data sets' ``SMILES,SPLIT``).

    Items are ``({"atoms": (N,), "bonds": (N, N)}, {"node_mask": (N,)})`` with ``N = vocabulary.max_atoms``.

    Args:
        path: the file.
        max_atoms: molecules with more heavy atoms are skipped (with a warning naming the lines); default: the
            largest molecule in the file.
        vocabulary: a fixed :class:`Vocabulary` (molecules with other atoms are skipped); default: every atom
            token in the file, most frequent first.

    Unreadable lines are skipped with one warning naming them (their line numbers); a file with no usable
    molecule is a ValueError.  Attributes: ``vocabulary``, ``sizes`` (count of molecules per atom count,
    ``(max_atoms + 1,)``), ``atom_marginals`` and ``bond_marginals`` (class frequencies over real atoms and over
    pairs of distinct real atoms), ``skipped`` (line numbers).
    """

    def __init__(self, path: str, max_atoms: int | None = None, vocabulary: Vocabulary | None = None):
        rdkit()
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such file (give a .smi file of one SMILES per line)")
        self.path = path
        self.column = smiles_column(path)
        offsets, graphs, bad, big, foreign = [], [], [], [], []
        with open(path, "rb") as f:
            number, pos = 0, f.tell()
            for line in iter(f.readline, b""):
                number += 1
                smiles = _split_line(line, self.column)
                start, pos = pos, pos + len(line)
                if not smiles or (number == 1 and smiles.lower() == "smiles"):
                    continue
                try:
                    tokens, bonds = graph_from_smiles(smiles)
                except ValueError:
                    bad.append(number)
                    continue
                if max_atoms is not None and len(tokens) > max_atoms:
                    big.append(number)
                    continue
                if vocabulary is not None and not set(tokens) <= set(vocabulary.index):
                    foreign.append(number)
                    continue
                offsets.append(start)
                graphs.append((tokens, int((bonds > 0).sum()) // 2, np.bincount(bonds[np.triu_indices(len(tokens), 1)],
                                                                                    minlength=NUM_BOND_TYPES)))
        for lines, why in ((bad, "RDKit cannot read them"), (big, f"more than {max_atoms} heavy atoms"),
                           (foreign, "atoms outside the vocabulary")):
            if lines:
                warnings.warn(f"{path}: skipped {len(lines)} line(s) ({why}): {_line_list(lines)}", stacklevel=2)
        if not offsets:
            raise ValueError(f"{path}: no usable molecule (one SMILES per line); {len(bad)} unreadable, "
                             f"{len(big)} too large, {len(foreign)} with atoms outside the vocabulary")
        self.skipped = sorted(bad + big + foreign)
        counts: dict[str, int] = {}
        for tokens, _, _ in graphs:
            for t in tokens:
                counts[t] = counts.get(t, 0) + 1
        if vocabulary is None:
            order = sorted(counts, key=lambda t: (-counts[t], t))
            vocabulary = Vocabulary(order, max(len(g[0]) for g in graphs))
        self.vocabulary = vocabulary
        self.offsets = np.asarray(offsets, dtype=np.int64)
        sizes = np.bincount([len(g[0]) for g in graphs], minlength=vocabulary.max_atoms + 1)
        self.sizes = torch.from_numpy(sizes.astype(np.int64))
        atom_counts = torch.tensor([counts.get(t, 0) for t in vocabulary.tokens], dtype=torch.float64)
        self.atom_marginals = atom_counts / atom_counts.sum()
        bond_counts = torch.from_numpy(np.sum([g[2] for g in graphs], axis=0).astype(np.float64))
        self.bond_marginals = bond_counts / bond_counts.sum()
        self._file = None

    def __len__(self):
        return len(self.offsets)

    def smiles(self, i: int) -> str:
        """The SMILES of item ``i`` as written in the file."""
        if self._file is None:  # opened lazily: each DataLoader worker opens its own
            self._file = open(self.path, "rb")
        self._file.seek(int(self.offsets[i]))
        return _split_line(self._file.readline(), self.column)

    def __getitem__(self, i):
        atoms, bonds, mask = self.vocabulary.encode(self.smiles(i))
        return {"atoms": atoms, "bonds": bonds}, {"node_mask": mask}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None
        return state

    def describe(self) -> dict:
        """What a run records about its data: vocabulary, size histogram, marginals."""
        return {**self.vocabulary.config(), "sizes": self.sizes.tolist(),
                "atom_marginals": self.atom_marginals.tolist(), "bond_marginals": self.bond_marginals.tolist()}


def _line_list(lines, limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in lines[:limit])
    return shown + (f" and {len(lines) - limit} more" if len(lines) > limit else "")
