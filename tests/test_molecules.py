"""Molecules: the SMILES <-> graph codec, the streamed data set, the graph transformer, the graph process and the
``molecules`` kind (RDKit is a test dependency: none of these are skipped; only the MOSES metric check needs the
benchmark-only ``molsets``)."""
from __future__ import annotations

import math
import os
import sys
import warnings

import numpy as np
import pytest
import torch

from unnoise import molecules, nets

# real molecules: aromatic rings (benzene, pyridine, pyrrole NH, thiophene, fused rings), charges, triple bonds
MOLECULES = [
    "CC(=O)Oc1ccccc1C(=O)O",  # aspirin
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C",  # caffeine
    "CC(C)Cc1ccc(C(C)C(=O)O)cc1",  # ibuprofen
    "CC(=O)Nc1ccc(O)cc1",  # paracetamol
    "c1ccc2[nH]ccc2c1",  # indole
    "O=[N+]([O-])c1ccc(Cl)cc1",  # 4-chloronitrobenzene
    "c1ccsc1",
    "N#Cc1ccncc1",
    "CC1(C)SC2C(NC(=O)Cc3ccccc3)C(=O)N2C1C(=O)O",  # penicillin G core (no stereo)
    "COc1ccc2nc(S(=O)Cc3ncc(C)c(OC)c3C)[nH]c2c1",  # omeprazole
    "CN1CCC23c4c5ccc(O)c4OC2C(O)C=CC3C1C5",  # morphine skeleton
    "O=C(O)c1ccccc1O",
    "Brc1ccc(-c2nnc(o2)-c2ccccc2)cc1",
    "CCOC(=O)c1ncn2c1CN(C)C(=O)c1cc(F)ccc1-2",
]


def write_smi(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


# ---------------------------------------------------------------- codec
@pytest.mark.parametrize("smiles", MOLECULES)
def test_smiles_graph_smiles_round_trip_gives_the_same_canonical_smiles(smiles):
    tokens, bonds = molecules.graph_from_smiles(smiles)
    assert np.array_equal(bonds, bonds.T) and not np.diag(bonds).any()
    assert set(np.unique(bonds)) <= {0, 1, 2, 3}  # kekulised: no aromatic bond class
    assert molecules.smiles_from_graph(tokens, bonds) == molecules.canonical(smiles)


def test_kekulised_benzene_has_alternating_single_and_double_bonds():
    tokens, bonds = molecules.graph_from_smiles("c1ccccc1")
    assert tokens == ["C"] * 6
    assert sorted(bonds.sum(1).tolist()) == [3] * 6  # every carbon: one single + one double ring bond
    assert (bonds == 2).sum() // 2 == 3 and (bonds == 1).sum() // 2 == 3


def test_charged_atoms_are_tokens_of_their_own():
    tokens, _ = molecules.graph_from_smiles("C[N+](C)(C)C.[O-]C")
    assert "N+" in tokens and "O-" in tokens
    assert molecules.parse_token("N+") == ("N", 1) and molecules.parse_token("O-") == ("O", -1)
    assert molecules.parse_token("Fe+2") == ("Fe", 2) and molecules.parse_token("Cl") == ("Cl", 0)


def test_an_impossible_graph_decodes_to_none():
    bonds = np.zeros((5, 5), np.uint8)
    bonds[0, 1:] = bonds[1:, 0] = 2  # a carbon with four double bonds: valence 8
    assert molecules.smiles_from_graph(["C"] * 5, bonds) is None


# ---------------------------------------------------------------- data set
def test_dataset_streams_padded_graphs_and_records_sizes_and_marginals(tmp_path):
    path = write_smi(tmp_path / "m.smi", ["SMILES", *MOLECULES[:6]])
    ds = molecules.SmilesDataset(path)
    assert len(ds) == 6 and ds.vocabulary.tokens[0] == "C"  # most frequent first
    n_max = max(len(molecules.graph_from_smiles(s)[0]) for s in MOLECULES[:6])
    assert ds.vocabulary.max_atoms == n_max
    assert int(ds.sizes.sum()) == 6 and int(ds.sizes[n_max]) >= 1
    assert abs(float(ds.atom_marginals.sum()) - 1) < 1e-9 and abs(float(ds.bond_marginals.sum()) - 1) < 1e-9
    x, cond = ds[1]
    n = int(cond["node_mask"].sum())
    assert x["atoms"].shape == (n_max,) and x["bonds"].shape == (n_max, n_max)
    assert not x["bonds"][n:].any() and not x["atoms"][n:].any()  # padding: atom 0, no bonds
    assert ds.vocabulary.decode(x["atoms"], x["bonds"], cond["node_mask"]) == molecules.canonical(MOLECULES[1])
    assert not hasattr(ds, "graphs")  # only line offsets are kept


def test_dataset_warns_naming_unreadable_lines_and_fails_when_none_is_left(tmp_path):
    path = write_smi(tmp_path / "m.smi", [MOLECULES[0], "C1CC(", MOLECULES[1], "not-a-smiles"])
    with pytest.warns(UserWarning, match=r"skipped 2 line\(s\) \(RDKit cannot read them\): 2, 4"):
        ds = molecules.SmilesDataset(path)
    assert len(ds) == 2 and ds.skipped == [2, 4]
    with pytest.raises(ValueError, match="no usable molecule"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        molecules.SmilesDataset(write_smi(tmp_path / "bad.smi", ["C1CC(", "xyz"]))
    with pytest.raises(ValueError, match="no usable molecule"):
        molecules.SmilesDataset(write_smi(tmp_path / "empty.smi", [""]))


def test_molecules_over_the_maximum_or_outside_the_vocabulary_are_named(tmp_path):
    path = write_smi(tmp_path / "m.smi", ["CCO", "c1ccccc1CCCCCC", "CCS"])
    with pytest.warns(UserWarning, match=r"more than 6 heavy atoms\): 2"):
        ds = molecules.SmilesDataset(path, max_atoms=6)
    assert len(ds) == 2
    vocab = molecules.Vocabulary(["C", "O"], 6)
    with pytest.warns(UserWarning) as record:
        molecules.SmilesDataset(path, max_atoms=6, vocabulary=vocab)
    assert any("atoms outside the vocabulary): 3" in str(w.message) for w in record)
    with pytest.raises(ValueError, match=r"has atoms S outside the run's atom vocabulary \(C O\)"):
        vocab.encode("CCS")
    with pytest.raises(ValueError, match="12 heavy atoms, more than the run's maximum of 6"):
        vocab.encode("c1ccccc1CCCCCC")


# ---------------------------------------------------------------- network
def test_graph_transformer_is_permutation_equivariant_and_symmetric():
    torch.manual_seed(0)
    net = nets.build("graph_transformer", atom_classes=5, in_atom_classes=6, bond_classes=4, in_bond_classes=5,
                     width=32, edge_width=16, global_width=16, heads=4, depth=2).double()
    g = torch.Generator().manual_seed(1)
    b, n = 3, 9
    atoms = torch.randint(0, 6, (b, n), generator=g)
    bonds = torch.triu(torch.randint(0, 5, (b, n, n), generator=g), 1)
    bonds = bonds + bonds.transpose(1, 2)
    mask = torch.arange(n)[None] < torch.tensor([9, 6, 4])[:, None]
    c = torch.rand(b, dtype=torch.float64, generator=g)
    out = net({"atoms": atoms, "bonds": bonds}, c, {"node_mask": mask})
    perm = torch.randperm(n, generator=g)
    pout = net({"atoms": atoms[:, perm], "bonds": bonds[:, perm][:, :, perm]}, c, {"node_mask": mask[:, perm]})
    torch.testing.assert_close(pout["atoms"], out["atoms"][:, perm], rtol=0, atol=1e-12)
    torch.testing.assert_close(pout["bonds"], out["bonds"][:, perm][:, :, perm], rtol=0, atol=1e-12)
    assert torch.equal(out["bonds"], out["bonds"].transpose(1, 2))
    # padded nodes and the diagonal are certain class 0; real positions are distributions
    assert torch.all(out["atoms"][1, 6:, 0] == 0) and torch.all(torch.diagonal(out["bonds"], 0, 1, 2)[:, 0] == 0)
    torch.testing.assert_close(out["atoms"].exp().sum(-1), torch.ones(b, n, dtype=torch.float64))
    # padded nodes send nothing: changing them changes no real node's output
    atoms2 = atoms.clone()
    atoms2[2, 4:] = (atoms2[2, 4:] + 1) % 6
    out2 = net({"atoms": atoms2, "bonds": bonds}, c, {"node_mask": mask})
    torch.testing.assert_close(out2["atoms"][2, :4], out["atoms"][2, :4], rtol=0, atol=1e-12)


def test_structure_features_count_valency_rings_and_fragments_as_rdkit_does():
    from rdkit import Chem
    from unnoise.nets.graph_transformer import structure_features
    smiles = ["CC(=O)Oc1ccccc1C(=O)O.[Na+].Cl", "C1CC1C#N", "CN1CCC23c4c5ccc(O)c4OC2C(O)C=CC3C1C5"]
    n = 24
    bonds = torch.zeros(len(smiles), n, n, dtype=torch.long)
    mask = torch.zeros(len(smiles), n, dtype=torch.bool)
    for i, s in enumerate(smiles):
        tokens, b = molecules.graph_from_smiles(s)
        bonds[i, :len(tokens), :len(tokens)] = torch.from_numpy(b.astype(np.int64))
        mask[i, :len(tokens)] = True
    bonds[0, 0, 1] = bonds[0, 1, 0] = 4  # an absorbing-mask class (bond_classes = 4) is no edge
    pair = mask[:, :, None] & mask[:, None, :] & ~torch.eye(n, dtype=torch.bool)
    node, graph = structure_features(bonds, pair, mask, 4, "molecular", torch.float64)
    assert node.shape == (3, n, 8) and graph.shape == (3, 5)
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        Chem.Kekulize(mol, clearAromaticFlags=True)
        k = mol.GetNumAtoms()
        valency = torch.tensor([sum(b.GetBondTypeAsDouble() for b in a.GetBonds()) for a in mol.GetAtoms()],
                               dtype=torch.float64)
        if i == 0:
            valency[:2] -= 1.0  # the masked C-C bond
        frags = Chem.GetMolFrags(mol) if i else ((0,), (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12), (13,), (14,))
        sizes = torch.zeros(k, dtype=torch.float64)
        for frag in frags:
            sizes[list(frag)] = len(frag)
        torch.testing.assert_close(node[i, :k, 3] * 4, valency, rtol=0, atol=1e-12)
        torch.testing.assert_close(node[i, :k, 6] * n, sizes, rtol=0, atol=1e-12)
        assert torch.equal(node[i, :k, 7], (sizes == sizes.max()).double()) and node[i, k:].abs().sum() == 0
        assert graph[i, 3] * 4 + 1 == len(frags) and graph[i, 4] == sizes.max() / k
    # closed walks of length 6 from an atom of an isolated six-membered ring: the +-1 step sequences whose sum is
    # 0 or +-6 (the two ways round the ring and the 20 that come back), 22
    ring = torch.zeros(1, 6, 6, dtype=torch.long)
    for a in range(6):
        ring[0, a, (a + 1) % 6] = ring[0, (a + 1) % 6, a] = 1
    node, _ = structure_features(ring, ~torch.eye(6, dtype=torch.bool)[None], torch.ones(1, 6, dtype=torch.bool), 4,
                                 "molecular", torch.float64)
    walks6 = sum(math.comb(6, j) for j in range(7) if (2 * j - 6) % 6 == 0)
    assert walks6 == 22
    assert torch.allclose(node[0, :, 5] * 256, torch.full((6,), walks6, dtype=torch.float64))
    assert torch.all(node[0, :, 4] == 0)  # no closed walk of odd length 5 in an even ring


# ---------------------------------------------------------------- MOSES's own metrics (benchmark-only install)
def _moses():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    try:
        import molecules_moses
        return molecules_moses.import_moses()
    except ImportError as err:
        pytest.skip(f"molsets is a benchmark-only install (make install-bench): {err}")
    finally:
        sys.path.pop(0)


def test_moses_validity_and_uniqueness_of_known_lists_match_rdkit():
    moses = _moses()
    from moses.metrics import fraction_unique, fraction_valid
    gen = ["CCO", "OCC", "c1ccccc1", "C1CC", "CC(C)(C)(C)(C)C", "c1ccccc1"]
    assert fraction_valid(gen, n_jobs=1) == pytest.approx(4 / 6)  # an open ring and a 5-valent carbon
    assert fraction_unique(["CCO", "OCC", "c1ccccc1", "C1=CC=CC=C1"], n_jobs=1) == pytest.approx(2 / 4)
    ours = [molecules.canonical(s) for s in gen]
    assert sum(s is not None for s in ours) / len(gen) == pytest.approx(fraction_valid(gen, n_jobs=1))


# ---------------------------------------------------------------- the graph process
def graph_process(atom_classes=4):
    from unnoise.processes import GraphProcess, Marginal
    return GraphProcess(Marginal(torch.arange(1.0, atom_classes + 1)), Marginal([0.7, 0.2, 0.08, 0.02]))


def random_graphs(b, n, g):
    atoms = torch.randint(0, 4, (b, n), generator=g)
    bonds = torch.triu(torch.randint(0, 4, (b, n, n), generator=g), 1)
    return {"atoms": atoms, "bonds": bonds + bonds.transpose(1, 2)}


def test_graph_process_keeps_bonds_symmetric_with_an_empty_diagonal():
    process = graph_process()
    g = torch.Generator().manual_seed(0)
    x0 = random_graphs(16, 7, g)
    shapes = {"atoms": (16, 7), "bonds": (16, 7, 7)}
    for sigma in (0.05, 0.7, 3.0, torch.linspace(0.01, 5.0, 16)):
        x_t = process.corrupt(x0, sigma, process.noise(shapes, g))
        assert torch.equal(x_t["bonds"], x_t["bonds"].transpose(1, 2))
        assert not torch.diagonal(x_t["bonds"], 0, 1, 2).any()
        assert x_t["atoms"].dtype == torch.long and int(x_t["bonds"].max()) <= 3
    prior = process.prior(process.noise(shapes, g))
    assert torch.equal(prior["bonds"], prior["bonds"].transpose(1, 2))
    assert not torch.diagonal(prior["bonds"], 0, 1, 2).any()
    # at a high noise level the off-diagonal bonds follow the marginals
    big = process.prior(process.noise({"atoms": (400, 7), "bonds": (400, 7, 7)}, g))["bonds"]
    i, j = torch.triu_indices(7, 7, 1)
    freq = torch.bincount(big[:, i, j].flatten(), minlength=4).double() / big[:, i, j].numel()
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.08, 0.02], dtype=torch.float64), atol=0.02, rtol=0)


def graph_loss_case(seed):
    """Six random graphs of 5 nodes, their noise draws at six levels, and random symmetric logits."""
    process = graph_process()
    g = torch.Generator().manual_seed(seed)
    x0 = random_graphs(6, 5, g)
    noise = process.noise({"atoms": (6, 5), "bonds": (6, 5, 5)}, g)
    sigma = torch.tensor([0.1, 0.4, 0.9, 1.5, 2.5, 4.0])
    logits = {"atoms": torch.randn(6, 5, 4, generator=g), "bonds": torch.randn(6, 5, 5, 4, generator=g)}
    logits["bonds"] = logits["bonds"] + logits["bonds"].transpose(1, 2)
    return process, x0, noise, sigma, logits


def test_graph_loss_is_the_atom_nelbo_plus_the_bond_nelbo_over_pairs():
    process, x0, noise, sigma, logits = graph_loss_case(1)

    def denoiser(x, s, cond=None):
        return {k: torch.log_softmax(v, -1) for k, v in logits.items()}

    loss = process.loss(denoiser, x0, sigma, noise)
    x_t = process.corrupt(x0, sigma, noise)
    i, j = torch.triu_indices(5, 5, 1)
    lp = denoiser(x_t, sigma)
    atoms, bonds = process.parts["atoms"], process.parts["bonds"]
    expected = atoms.integrand(x0["atoms"], x_t["atoms"], lp["atoms"], sigma) + \
        bonds.integrand(x0["bonds"][:, i, j], x_t["bonds"][:, i, j], lp["bonds"][:, i, j], sigma)
    expected = expected * process.levels.rate(process.levels.time(sigma.double())).float()
    torch.testing.assert_close(loss, expected)
    assert (loss > 0).all()

    def exact(x, s, cond=None):  # certain of the clean graph: nothing to pay
        return {k: torch.where(torch.nn.functional.one_hot(x0[k], 4) > 0, 0.0, -1e4) for k in x0}

    assert float(process.loss(exact, x0, sigma, noise).abs().max()) < 1e-4


def test_graph_crossentropy_is_digress_loss_over_the_real_nodes_and_pairs():
    """Mean atom cross-entropy over the real nodes plus 5 x the mean bond cross-entropy over the pairs i < j of real
    nodes (DiGress's lambda); padding a graph with nodes the network is certain are empty changes nothing."""
    process, x0, noise, sigma, logits = graph_loss_case(3)
    lp = {k: torch.log_softmax(v, -1) for k, v in logits.items()}
    loss = process.loss(lambda x, s, c=None: lp, x0, sigma, noise, weighting="crossentropy")
    i, j = torch.triu_indices(5, 5, 1)
    atom_ce = -lp["atoms"].gather(-1, x0["atoms"][..., None])[..., 0].mean(1)
    bond_ce = -lp["bonds"][:, i, j].gather(-1, x0["bonds"][:, i, j][..., None])[..., 0].mean(1)
    torch.testing.assert_close(loss, atom_ce + 5 * bond_ce)

    pad = 3  # the same graphs inside 8 nodes, the last 3 padding (class 0, masked out, predicted with certainty)
    big = {"atoms": torch.nn.functional.pad(x0["atoms"], (0, pad)),
           "bonds": torch.nn.functional.pad(x0["bonds"], (0, pad, 0, pad))}
    big_noise = {"atoms": torch.nn.functional.pad(noise["atoms"], (0, pad), value=0.5),
                 "bonds": torch.nn.functional.pad(noise["bonds"], (0, pad, 0, pad), value=0.5)}
    certain = torch.tensor([0.0, -1e4, -1e4, -1e4])
    big_lp = {"atoms": certain.expand(6, 8, 4).clone(), "bonds": certain.expand(6, 8, 8, 4).clone()}
    big_lp["atoms"][:, :5] = lp["atoms"]
    big_lp["bonds"][:, :5, :5] = lp["bonds"]
    node_mask = torch.arange(8)[None].expand(6, 8) < 5
    padded = process.loss(lambda x, s, c=None: big_lp, big, sigma, big_noise, {"node_mask": node_mask},
                          weighting="crossentropy")
    torch.testing.assert_close(padded, loss)


# ---------------------------------------------------------------- the kind, end to end
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from unnoise.cli import main
    base = tmp_path_factory.mktemp("mol")
    data = write_smi(base / "train.smi", MOLECULES)
    out = str(base / "run")
    assert main(["train", "--data", data, "--out", out, "--steps", "4", "--batch-size", "8", "--width", "16",
                 "--depth", "1", "--checkpoint-every", "0", "--log-every", "2", "--num-workers", "0",
                 "--device", "cpu"]) == 0
    return out


def test_a_molecules_run_samples_smiles_and_the_command_reports_invalid_ones(run, tmp_path, capsys):
    import unnoise
    from unnoise.cli import main
    pipe = unnoise.load(run)
    assert pipe.kind == "molecules" and pipe.vocabulary.tokens[0] == "C"
    smiles = pipe.sample(5, steps=3, generator=torch.Generator().manual_seed(0))
    assert len(smiles) == 5 and all(s is None or molecules.canonical(s) == s for s in smiles)
    again = unnoise.load(run).sample(5, steps=3, generator=torch.Generator().manual_seed(0))
    assert again == smiles  # reproducible from the generator
    graphs = pipe.sample_graphs(6, steps=2, generator=torch.Generator().manual_seed(1))
    sizes = graphs["node_mask"].sum(1)
    seen = {len(molecules.graph_from_smiles(s)[0]) for s in MOLECULES}
    assert set(sizes.tolist()) <= seen  # atom counts come from the data's size histogram
    b = graphs["bonds"]
    assert torch.equal(b, b.transpose(1, 2)) and not torch.diagonal(b, 0, 1, 2).any()
    pad = ~graphs["node_mask"]
    assert not graphs["atoms"][pad].any() and not b[pad].any()
    out = tmp_path / "mols.smi"
    capsys.readouterr()
    assert main(["sample", "--checkpoint", run, "--n", "4", "--steps", "2", "--out", str(out), "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert f"{4 - len(lines)} of 4 sampled molecules were invalid" in said
    assert all(molecules.canonical(s) is not None for s in lines)
    with pytest.raises(ValueError, match="sampler does not apply"):
        pipe.sample(2, sampler="ddim")


def test_runs_written_before_the_molecular_features_build_as_they_were(run):
    from unnoise.checkpoint.model import build_from_config, read_config
    config = read_config(run)
    assert config["net"]["config"]["features"] == "molecular"  # new runs record the setting
    denoiser, _ = build_from_config(config)
    assert denoiser.net.node_feats.in_features == 8
    del config["net"]["config"]["features"]  # a run written before it existed had the walk features
    denoiser, _ = build_from_config(config)
    assert denoiser.net.config["features"] == "walks" and denoiser.net.node_feats.in_features == 3
    with pytest.raises(ValueError, match="unknown graph features"):
        nets.build("graph_transformer", atom_classes=3, features="spectral")


def test_scaffold_atoms_and_bonds_come_back_unchanged(run):
    import unnoise
    pipe = unnoise.load(run)
    scaffold = "c1ccc2[nH]ccc2c1"
    atoms, bonds, mask = pipe.vocabulary.encode(scaffold)
    k = int(mask.sum())
    graphs = pipe.sample_graphs(5, steps=3, generator=torch.Generator().manual_seed(2), scaffold=scaffold)
    assert (graphs["node_mask"].sum(1) >= k).all()
    assert torch.equal(graphs["atoms"][:, :k], atoms[:k].expand(5, k))
    assert torch.equal(graphs["bonds"][:, :k, :k], bonds[:k, :k].expand(5, k, k))
    with pytest.raises(ValueError, match="outside the run's atom vocabulary"):
        pipe.sample(2, scaffold="c1ccccc1[Si](C)(C)C")
    with pytest.raises(ValueError, match="more than the run's maximum"):
        pipe.sample(2, scaffold="C" * (pipe.vocabulary.max_atoms + 1))


def test_bad_molecule_files_are_one_line(tmp_path, capsys):
    from unnoise.cli import main
    empty = write_smi(tmp_path / "empty.smi", [""])
    capsys.readouterr()
    assert main(["train", "--data", empty, "--out", str(tmp_path / "r"), "--steps", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no usable molecule" in err and len(err.splitlines()) == 1
    bad = write_smi(tmp_path / "bad.smi", ["C1CC(", "xyz"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["train", "--data", bad, "--out", str(tmp_path / "r"), "--steps", "1", "--device", "cpu"]) == 2
    assert "no usable molecule" in capsys.readouterr().err
    good = write_smi(tmp_path / "good.smi", MOLECULES[:2])
    assert main(["train", "--data", good, "--out", str(tmp_path / "r"), "--parameterization", "eps", "--steps", "1",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "omit --parameterization eps" in err and len(err.splitlines()) == 1
    assert main(["train", "--data", good, "--out", str(tmp_path / "r"), "--weighting", "min_snr", "--steps", "1",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--weighting crossentropy, not min_snr" in err and len(err.splitlines()) == 1


def test_a_missing_rdkit_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdkit", None)
    with pytest.raises(ImportError, match=r"unnoise\[molecules\]"):
        molecules.rdkit()


def test_a_csv_with_a_smiles_column_is_read_like_moses_train_csv(tmp_path):
    from types import SimpleNamespace

    from unnoise.kinds import molecules as kind
    path = write_smi(tmp_path / "train.csv", ["SMILES,SPLIT", *(f"{s},train" for s in MOLECULES[:4])])
    ds = molecules.SmilesDataset(path)
    assert len(ds) == 4 and ds.smiles(2) == MOLECULES[2]
    assert kind.claims(SimpleNamespace(data=path))
    numbers = write_smi(tmp_path / "numbers.csv", ["1.0,2.0", "3.0,4.0"])
    assert not kind.claims(SimpleNamespace(data=numbers))  # a table of numbers stays vectors
