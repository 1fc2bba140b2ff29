"""Protein backbones as internal angles: exact geometry of the angles and their NeRF rebuild (against biotite),
reading structure files with cuts at breaks, missing atoms and non-standard residues, one-line errors for bad
folders, and the kind end to end (train, sample PDB files that read back, Ramachandran plot).

The structure is PDB entry 3A4R chain A (79 residues numbered -4..0 and 339..412, helix and strands; wwPDB data,
CC0), as shipped in the test data of MDAnalysisTests 2.11.0 (``MDAnalysisTests/data/dssp/3a4rA.pdb.gz``)."""
import gzip
import math
import pathlib
import warnings

import numpy as np
import pytest
import torch

struc = pytest.importorskip("biotite.structure")
from biotite.structure.io import pdb as biotite_pdb, pdbx as biotite_pdbx  # noqa: E402

import unnoise  # noqa: E402
from unnoise import proteins  # noqa: E402
from unnoise.cli import main  # noqa: E402
from unnoise.nets import ResidueTransformer  # noqa: E402

PDB = pathlib.Path(__file__).parent / "data" / "3a4rA.pdb.gz"


@pytest.fixture(scope="module")
def chain():
    (segment,) = proteins.read_segments([str(PDB)])
    return torch.tensor(segment.coords, dtype=torch.float64)


def superposed_rmsd(a, b) -> float:
    a, b = a.reshape(-1, 3).numpy(), b.reshape(-1, 3).numpy()
    fitted, _ = struc.superimpose(a, b)
    return float(struc.rmsd(a, fitted))


def test_the_chain_reads_whole():
    (segment,) = proteins.read_segments([str(PDB)])
    assert len(segment) == 79 and segment.chain == "A" and segment.first == "GLY -4"
    atoms = proteins.load_atoms(str(PDB))
    ca = atoms[(atoms.atom_name == "CA") & struc.filter_amino_acids(atoms)]
    assert np.array_equal(segment.coords[:, 1], ca.coord.astype(np.float64))


def test_dihedrals_agree_with_biotite(chain):
    phi, psi, omega = struc.dihedral_backbone(proteins.load_atoms(str(PDB)))
    ours = proteins.internal_angles(chain)
    for j, ref in enumerate((phi, psi, omega)):
        ref = torch.tensor(ref, dtype=torch.float64)
        assert torch.equal(torch.isnan(ours[:, j]), torch.isnan(ref))
        ok = ~torch.isnan(ref)
        diff = torch.remainder(ours[ok, j] - ref[ok] + math.pi, 2 * math.pi) - math.pi
        assert diff.abs().max() < 1e-5  # biotite computes in float32
    angles = proteins.internal_angles(chain)
    n_ca_c = struc.angle(chain[:, 0].numpy(), chain[:, 1].numpy(), chain[:, 2].numpy())
    assert np.abs(angles[:, 3].numpy() - n_ca_c).max() < 1e-6  # biotite's angle in float32


def test_rebuild_gives_back_the_structure(chain):
    angles = proteins.internal_angles(chain)
    exact = proteins.rebuild(angles, proteins.bond_lengths(chain))
    assert superposed_rmsd(chain, exact) < 1e-4  # true bond lengths: the coordinates up to a rigid motion
    ideal = proteins.rebuild(angles)
    assert superposed_rmsd(chain, ideal) < 0.1  # ideal bond lengths: 0.054 A over 79 residues


def test_rebuild_of_random_angles_has_the_ideal_geometry_exactly():
    g = torch.Generator().manual_seed(0)
    angles = (torch.rand(4, 30, 6, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    angles[..., 3:] = angles[..., 3:].abs().clamp(0.5, 3.0)  # bond angles in (0, pi)
    coords = proteins.rebuild(angles)
    lengths = proteins.bond_lengths(coords)
    ideal = torch.tensor([proteins.IDEAL_LENGTHS[k] for k in ("n_ca", "ca_c", "c_n")], dtype=torch.float64)
    assert (lengths[:, :, :2] - ideal[:2]).abs().max() < 1e-12
    assert (lengths[:, :-1, 2] - ideal[2]).abs().max() < 1e-12
    back = proteins.internal_angles(coords)
    used = torch.ones(30, 6, dtype=torch.bool)
    used[0, 0] = used[-1, [1, 2, 4, 5]] = False  # the values rebuild does not use
    diff = torch.remainder(back - angles + math.pi, 2 * math.pi) - math.pi
    assert diff[:, used].abs().max() < 1e-10


def test_subsets_of_angles_are_completed_with_ideal_values():
    x = torch.zeros(2, 5, 2)
    full = proteins.complete(x, ("phi", "psi"))
    assert torch.allclose(full[..., 2], torch.tensor(-math.pi))  # omega trans
    assert torch.allclose(full[..., 3], torch.tensor(math.radians(111.2)))
    with pytest.raises(ValueError, match="phi and psi"):
        proteins.parse_angle_names("phi,omega")
    assert proteins.parse_angle_names("psi, phi") == ("phi", "psi")


def edited(tmp_path, name, edit):
    """A copy of the structure with ``edit(lines) -> lines`` applied to its ATOM records."""
    lines = gzip.open(PDB, "rt").read().splitlines()
    path = tmp_path / name
    path.write_text("\n".join(edit(lines)) + "\n")
    return str(path)


def residue(line):
    return int(line[22:26])


def test_missing_atom_cuts_the_chain_with_a_warning(tmp_path):
    path = edited(tmp_path, "missing.pdb",
                  lambda ls: [l for l in ls if not (l.startswith("ATOM") and residue(l) == 360 and l[12:16] == " CA ")])
    with pytest.warns(proteins.BackboneWarning, match=r"missing\.pdb: chain A residue \w+ 360 lacks backbone atom"):
        segments = proteins.read_segments([path])
    assert [len(s) for s in segments] == [26, 52] and segments[0].last.endswith(" 359")
    assert segments[1].first.endswith(" 361")


def test_chain_break_is_split_not_joined(tmp_path):
    def move(lines):  # residues from 370 on shifted 8 A away: the peptide bond 369-370 is broken
        out = []
        for l in lines:
            if l.startswith("ATOM") and residue(l) >= 370:
                l = l[:30] + f"{float(l[30:38]) + 8.0:8.3f}" + l[38:]
            out.append(l)
        return out
    path = edited(tmp_path, "broken.pdb", move)
    with pytest.warns(proteins.BackboneWarning, match=r"broken\.pdb: chain A breaks between residues \w+ 369 and "
                                                       r"\w+ 370"):
        segments = proteins.read_segments([path])
    assert [len(s) for s in segments] == [36, 43]
    for s in segments:  # no peptide bond across the cut inside a segment
        c = torch.tensor(s.coords)
        assert proteins.bond_lengths(c)[:-1, 2].max() < 1.5


def test_non_standard_residue_cuts_the_chain(tmp_path):
    def rename(lines):
        return [("HETATM" + l[6:17] + "MSE" + l[20:]) if l.startswith("ATOM") and residue(l) == 390 else l
                for l in lines]
    path = edited(tmp_path, "mse.pdb", rename)
    with pytest.warns(proteins.BackboneWarning, match=r"mse\.pdb: chain A residue MSE 390 is not a standard"):
        segments = proteins.read_segments([path])
    assert [len(s) for s in segments] == [56, 22]


def test_mmcif_and_cache_read_the_same_backbone(tmp_path, chain):
    f = biotite_pdbx.CIFFile()
    biotite_pdbx.set_structure(f, proteins.load_atoms(str(PDB)))
    f.write(str(tmp_path / "s.cif"))
    (segment,) = proteins.read_segments([str(tmp_path / "s.cif")])
    assert np.abs(segment.coords - chain.numpy()).max() < 1e-3
    proteins.write_cache([segment], str(tmp_path / "c.npz"))
    (cached,) = proteins.load_chains(str(tmp_path / "c.npz"), 40)
    assert np.abs(cached.coords - segment.coords).max() < 1e-5


def test_windows_are_the_chains_angles(chain):
    (segment,) = proteins.read_segments([str(PDB)])
    windows = proteins.BackboneWindows([segment], 16, ("phi", "psi"))
    assert len(windows) == 79 - 1 - 16
    x, cond = windows[5]
    assert cond == {} and x.shape == (16, 2) and torch.isfinite(x).all()
    assert torch.equal(x, proteins.internal_angles(chain)[6:22, :2].float())
    last, _ = windows[len(windows) - 1]
    assert torch.isfinite(last).all()


def test_residue_transformer_is_periodic_in_the_angles():
    torch.manual_seed(0)
    net = ResidueTransformer((10, 6), width=32, depth=2, heads=4)
    for p in net.parameters():  # leave the zero initialisation, so attention and biases matter
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(3, 10, 6)
    out = net(x, torch.zeros(3))
    assert torch.allclose(net(x + 2 * math.pi, torch.zeros(3)), out, atol=1e-5)
    y = x.clone()
    y[:, 7] += 1.0  # every residue sees every other one (bidirectional)
    assert (net(y, torch.zeros(3)) - out)[:, :7].abs().amax() > 1e-3


def errors(capsys, *argv) -> str:
    assert main(["train", *argv, "--steps", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_folders_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "protein structures" in errors(capsys, "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r1"))
    (tmp_path / "water").mkdir()
    (tmp_path / "water" / "w.pdb").write_text("HETATM    1  O   HOH A   1       0.000   0.000   0.000  1.00  0.00"
                                              "           O\nEND\n")
    assert "no protein chain" in errors(capsys, "--data", str(tmp_path / "water"), "--out", str(tmp_path / "r2"))
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.pdb.gz").write_bytes(PDB.read_bytes())
    err = errors(capsys, "--data", str(tmp_path / "one"), "--window", "100", "--out", str(tmp_path / "r3"))
    assert "--window 100 is longer than every chain" in err and "79 residues" in err


def test_train_and_sample_write_backbones_that_read_back(tmp_path, capsys):
    data = tmp_path / "pdbs"
    data.mkdir()
    (data / "a.pdb.gz").write_bytes(PDB.read_bytes())
    run = str(tmp_path / "run")
    assert main(["train", "--data", str(data), "--window", "12", "--backbone-angles", "phi,psi,omega",
                 "--width", "16", "--depth", "1", "--heads", "2", "--steps", "3", "--batch-size", "8",
                 "--checkpoint-every", "0", "--device", "cpu", "--out", run]) == 0
    out = tmp_path / "bb"
    assert main(["sample", "--checkpoint", run, "--n", "3", "--steps", "4", "--out", str(out), "--angles",
                 "--plot", str(tmp_path / "rama.png"), "--device", "cpu"]) == 0
    angles = torch.tensor(np.load(out / "angles.npy"), dtype=torch.float64)
    assert angles.shape == (3, 12, 3) and angles.min() >= -math.pi and angles.max() < math.pi
    expected = proteins.rebuild(proteins.complete(angles, ("phi", "psi", "omega")))
    ideal = torch.tensor([proteins.IDEAL_LENGTHS[k] for k in ("n_ca", "ca_c", "c_n")], dtype=torch.float64)
    lengths = proteins.bond_lengths(expected)  # the rebuild of sampled angles has the ideal bond lengths exactly
    assert (lengths[:, :, :2] - ideal[:2]).abs().max() < 1e-12 and (lengths[:, :-1, 2] - ideal[2]).abs().max() < 1e-12
    for i in range(3):
        atoms = biotite_pdb.PDBFile.read(str(out / f"backbone_{i:03d}.pdb")).get_structure(model=1)
        assert list(atoms.atom_name[:3]) == ["N", "CA", "C"] and atoms.array_length() == 36
        assert np.abs(atoms.coord.reshape(12, 3, 3) - expected[i].numpy()).max() < 1e-3  # PDB's 3 decimals
    assert (tmp_path / "rama.png").stat().st_size > 0


def test_a_cache_trains_like_its_folder(tmp_path):
    proteins.write_cache(proteins.read_segments([str(PDB)]), str(tmp_path / "chains.npz"))
    run = str(tmp_path / "run")
    assert main(["train", "--data", str(tmp_path / "chains.npz"), "--window", "8", "--width", "8", "--depth", "1",
                 "--heads", "2", "--steps", "1", "--batch-size", "4", "--checkpoint-every", "0", "--device", "cpu",
                 "--out", run]) == 0
    pipe = unnoise.load(run)
    assert pipe.kind == "backbones" and pipe.shape == (8, 6)
    assert pipe.config["data"]["num_examples"] == 79 - 1 - 8
