"""Protein backbones: internal angles and their NeRF rebuild (:mod:`.geometry`), structure files through biotite
(:mod:`.structures`), and training windows (:mod:`.windows`).  The ``backbones`` kind
(:mod:`unnoise.kinds.backbones`) trains on them."""
from .geometry import (ANGLES, IDEAL_ANGLES, IDEAL_LENGTHS, bond_angle, bond_lengths, ca_clashes, complete, dihedral,
                       internal_angles, place, rebuild)
from .structures import (BackboneWarning, Segment, chain_segments, load_atoms, read_segments, secondary_structure,
                         structure_files, write_pdb)
from .windows import BackboneWindows, load_chains, parse_angle_names, read_cache, write_cache

__all__ = ["ANGLES", "BackboneWarning", "BackboneWindows", "IDEAL_ANGLES", "IDEAL_LENGTHS", "Segment", "bond_angle",
           "bond_lengths", "ca_clashes", "chain_segments", "complete", "dihedral", "internal_angles", "load_atoms",
           "load_chains", "parse_angle_names", "place", "read_cache", "read_segments", "rebuild",
           "secondary_structure", "structure_files", "write_cache", "write_pdb"]
