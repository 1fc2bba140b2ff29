"""Protein backbones as internal angles, and back: dihedrals, bond angles and the NeRF rebuild.

A backbone of ``L`` residues is the chain of atoms ``N_0, CA_0, C_0, N_1, CA_1, C_1, ...`` (coordinates
``(..., L, 3, 3)``: residue, atom N/CA/C, xyz).  Its internal angles are invariant to rotation and translation.
Row ``i`` of the angles ``(..., L, 6)`` holds, in the order of :data:`ANGLES`:

=========== ======================================== ==============================================
name        atoms                                    what
=========== ======================================== ==============================================
``phi``     ``C_{i-1} N_i CA_i C_i``                 dihedral about N-CA
``psi``     ``N_i CA_i C_i N_{i+1}``                 dihedral about CA-C
``omega``   ``CA_i C_i N_{i+1} CA_{i+1}``            dihedral about the peptide bond (about pi: trans)
``n_ca_c``  ``N_i CA_i C_i``                         bond angle at CA
``ca_c_n``  ``CA_i C_i N_{i+1}``                     bond angle at C
``c_n_ca``  ``C_i N_{i+1} CA_{i+1}``                 bond angle at the next N
=========== ======================================== ==============================================

Dihedrals follow the IUPAC sign convention (the one of biotite's ``dihedral_backbone``), in ``[-pi, pi)``.
``phi`` of the first residue and the last row's four values that lead to the residue after it are undefined
(NaN) for a whole chain; a training window is cut from the inside of a chain, where every value is defined,
and :func:`rebuild` ignores exactly those values.

The rebuild places atom after atom from the three before it (the natural extension reference frame, NeRF):
the new atom sits at the given bond length from the last one, at the given bond angle, and at the given
dihedral about the last bond.  Bond lengths are the ideal ones of Engh & Huber (1991) unless given.
"""
from __future__ import annotations

import math

import torch

ANGLES = ("phi", "psi", "omega", "n_ca_c", "ca_c_n", "c_n_ca")
DIHEDRALS = ("phi", "psi", "omega")

# Engh & Huber (1991) ideal geometry: bond lengths in angstroms, bond angles in degrees
IDEAL_LENGTHS = {"n_ca": 1.458, "ca_c": 1.525, "c_n": 1.329}
IDEAL_ANGLES = {"omega": 180.0, "n_ca_c": 111.2, "ca_c_n": 116.2, "c_n_ca": 121.7}


def dihedral(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, p3: torch.Tensor) -> torch.Tensor:
    """The dihedral angle ``p0 p1 p2 p3`` (radians in ``[-pi, pi]``, IUPAC sign) over the last dimension (xyz)."""
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = torch.linalg.cross(b1, b2), torch.linalg.cross(b2, b3)
    y = torch.linalg.vector_norm(b2, dim=-1) * (b1 * n2).sum(-1)
    return torch.atan2(y, (n1 * n2).sum(-1))


def bond_angle(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """The angle at ``p1`` between the bonds to ``p0`` and ``p2`` (radians in ``[0, pi]``)."""
    u, v = p0 - p1, p2 - p1
    return torch.atan2(torch.linalg.vector_norm(torch.linalg.cross(u, v), dim=-1), (u * v).sum(-1))


def internal_angles(coords: torch.Tensor) -> torch.Tensor:
    """The angles ``(..., L, 6)`` (:data:`ANGLES`, radians) of backbones ``(..., L, 3, 3)``; undefined ones NaN."""
    coords = torch.as_tensor(coords)
    n, ca, c = coords[..., 0, :], coords[..., 1, :], coords[..., 2, :]
    out = torch.full((*coords.shape[:-2], 6), math.nan, dtype=coords.dtype, device=coords.device)
    out[..., 1:, 0] = dihedral(c[..., :-1, :], n[..., 1:, :], ca[..., 1:, :], c[..., 1:, :])
    out[..., :-1, 1] = dihedral(n[..., :-1, :], ca[..., :-1, :], c[..., :-1, :], n[..., 1:, :])
    out[..., :-1, 2] = dihedral(ca[..., :-1, :], c[..., :-1, :], n[..., 1:, :], ca[..., 1:, :])
    out[..., 3] = bond_angle(n, ca, c)
    out[..., :-1, 4] = bond_angle(ca[..., :-1, :], c[..., :-1, :], n[..., 1:, :])
    out[..., :-1, 5] = bond_angle(c[..., :-1, :], n[..., 1:, :], ca[..., 1:, :])
    return torch.where(out >= math.pi, out - 2 * math.pi, out)  # atan2 may give pi itself: the period is [-pi, pi)


def bond_lengths(coords: torch.Tensor) -> torch.Tensor:
    """``(..., L, 3)``: N_i-CA_i, CA_i-C_i and C_i-N_{i+1} (NaN for the last residue's C-N)."""
    coords = torch.as_tensor(coords)
    n, ca, c = coords[..., 0, :], coords[..., 1, :], coords[..., 2, :]
    out = torch.full((*coords.shape[:-2], 3), math.nan, dtype=coords.dtype, device=coords.device)
    out[..., 0] = torch.linalg.vector_norm(ca - n, dim=-1)
    out[..., 1] = torch.linalg.vector_norm(c - ca, dim=-1)
    out[..., :-1, 2] = torch.linalg.vector_norm(n[..., 1:, :] - c[..., :-1, :], dim=-1)
    return out


def complete(angles: torch.Tensor, names) -> torch.Tensor:
    """All six angles ``(..., L, 6)`` from a subset ``(..., L, len(names))`` in the order of ``names``: the absent
    ones take their ideal values (:data:`IDEAL_ANGLES`); ``phi`` and ``psi`` must be among ``names``."""
    names = tuple(names)
    missing = [a for a in ("phi", "psi") if a not in names]
    if missing:
        raise ValueError(f"the backbone angles must include phi and psi (missing: {', '.join(missing)})")
    full = torch.empty((*angles.shape[:-1], 6), dtype=angles.dtype, device=angles.device)
    for j, name in enumerate(ANGLES):
        if name in names:
            full[..., j] = angles[..., names.index(name)]
        else:
            ideal = math.radians(IDEAL_ANGLES[name])
            full[..., j] = ideal - 2 * math.pi if ideal >= math.pi else ideal
    return full


def place(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, length, angle, torsion) -> torch.Tensor:
    """The atom ``d`` with ``|d - c| = length``, bond angle ``b c d = angle`` and dihedral ``a b c d = torsion``."""
    bc = c - b
    bc = bc / torch.linalg.vector_norm(bc, dim=-1, keepdim=True)
    normal = torch.linalg.cross(b - a, bc)
    normal = normal / torch.linalg.vector_norm(normal, dim=-1, keepdim=True)
    across = torch.linalg.cross(normal, bc)  # in the plane a b c, perpendicular to bc, on the side of a
    length, angle, torsion = (torch.as_tensor(v, dtype=c.dtype, device=c.device)[..., None]
                              for v in (length, angle, torsion))
    return c + length * (-torch.cos(angle) * bc + torch.sin(angle) * (torch.cos(torsion) * across
                                                                       + torch.sin(torsion) * normal))


def rebuild(angles: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Backbones ``(..., L, 3, 3)`` from their angles ``(..., L, 6)`` (:data:`ANGLES`, radians).

    ``lengths`` ``(..., L, 3)`` (N-CA, CA-C, C-N to the next residue, as :func:`bond_lengths` gives them) default to
    the ideal ones.  The first residue is placed in a fixed frame (N at the origin, CA on the x axis, C in the xy
    plane); ``phi`` of the first residue and the last row's psi, omega, ca_c_n and c_n_ca are not used.
    """
    angles = torch.as_tensor(angles)
    if not angles.is_floating_point():
        angles = angles.double()
    if angles.shape[-1] != 6:
        raise ValueError(f"rebuild takes the six angles {ANGLES} per residue, got {angles.shape[-1]}; "
                         "unnoise.proteins.complete fills in absent ones")
    batch, L = angles.shape[:-2], angles.shape[-2]
    if lengths is None:
        lengths = torch.tensor([IDEAL_LENGTHS["n_ca"], IDEAL_LENGTHS["ca_c"], IDEAL_LENGTHS["c_n"]],
                               dtype=angles.dtype, device=angles.device).expand(*batch, L, 3)
    phi, psi, omega, n_ca_c, ca_c_n, c_n_ca = angles.unbind(-1)
    zero = torch.zeros(batch, dtype=angles.dtype, device=angles.device)
    n0 = torch.stack([zero, zero, zero], -1)
    ca0 = torch.stack([lengths[..., 0, 0], zero, zero], -1)
    t = math.pi - n_ca_c[..., 0]  # C_0 leaves CA_0 at the bond angle from the CA->N direction
    c0 = ca0 + lengths[..., 0, 1, None] * torch.stack([torch.cos(t), torch.sin(t), zero], -1)
    atoms = [n0, ca0, c0]
    for i in range(L - 1):
        atoms.append(place(atoms[-3], atoms[-2], atoms[-1], lengths[..., i, 2], ca_c_n[..., i], psi[..., i]))
        atoms.append(place(atoms[-3], atoms[-2], atoms[-1], lengths[..., i + 1, 0], c_n_ca[..., i], omega[..., i]))
        atoms.append(place(atoms[-3], atoms[-2], atoms[-1], lengths[..., i + 1, 1], n_ca_c[..., i + 1],
                           phi[..., i + 1]))
    return torch.stack(atoms, -2).reshape(*batch, L, 3, 3)


def ca_clashes(coords: torch.Tensor, threshold: float = 3.0, separation: int = 2) -> torch.Tensor:
    """Whether each backbone ``(..., L, 3, 3)`` has a steric clash: two CA atoms at least ``separation`` residues
    apart in sequence (not adjacent) closer than ``threshold`` angstroms.  ``(...)`` booleans."""
    ca = torch.as_tensor(coords)[..., 1, :]
    d = torch.cdist(ca, ca)
    L = ca.shape[-2]
    idx = torch.arange(L, device=ca.device)
    far = (idx[:, None] - idx[None, :]).abs() >= separation
    return ((d < threshold) & far).flatten(-2).any(-1)
