"""Molecules: graphs of atoms and bonds, trained from SMILES and sampled as SMILES.

``unnoise train --data molecules.smi`` (one SMILES per line, or a CSV file with a ``SMILES`` column such as the
MOSES training set's ``train.csv``; read by RDKit, aromatic rings kekulised, hydrogens
implicit) trains :class:`unnoise.nets.GraphTransformer` under :class:`unnoise.processes.GraphProcess`: DiGress's
marginal categorical process on the atom types and on the bond types (none, single, double, triple), with the
training data's marginals.  Molecules up to the run's maximum atom count (``--max-atoms``, default the largest
in the file) are padded with a node mask; sampling first draws each molecule's atom count from the training
data's size histogram (as DiGress does), so no capacity goes into learning where a molecule ends.

``unnoise sample --checkpoint RUN --n 1000 --out mols.smi`` writes the valid molecules' canonical SMILES and says
how many were invalid; ``unnoise.load(run).sample(n)`` returns a list of ``n`` SMILES strings (None where the
sampled graph is not a valid molecule), and ``scaffold=SMILES`` (``--option scaffold=SMILES`` on the command line)
completes a given substructure, whose atoms and bonds come back unchanged.
"""
from __future__ import annotations

import os

import torch

from .. import io, losses, molecules, nets, schedules
from ..commands.train_common import command_record, finish, train_config
from ..graphs import GraphDenoiser
from ..graphs import sample as sample_graphs
from ..pipeline import DEFAULT_STEPS, Pipeline
from ..processes import GraphProcess, Marginal
from ..train import Trainer
from . import Kind, SampleOutput, TrainEntry, register
from .common import read_denoiser_run

SCHEDULE = "categorical"
SMILES_FILES = (".smi", ".smiles")
BATCH = 64  # molecules sampled at once (larger batches are slower per molecule on a CPU)


def add_args(p) -> None:
    """The options of ``unnoise train`` for molecules."""
    g = p.add_argument_group("molecules (--data FILE.smi: one SMILES per line; needs RDKit)")
    g.add_argument("--max-atoms", type=int, default=None,
                   help="the largest molecule (heavy atoms) the run holds; larger ones are skipped with a warning "
                        "(default: the largest in the file)")
    g.add_argument("--graph-features", choices=("molecular", "walks"), default=None,
                   help="structure features of the noisy graph given to the network: 'molecular' (valency, rings, "
                        "connected components; default) or 'walks' (degree and short closed walks only)")


def claims(args) -> bool:
    """Whether ``unnoise train`` was given a SMILES file: ``--data FILE.smi``, or a CSV file with a ``SMILES`` column
    (the MOSES training set's ``train.csv``)."""
    if not isinstance(args.data, str):
        return False
    name = args.data.lower()
    return name.endswith(SMILES_FILES) or (name.endswith(".csv") and os.path.isfile(args.data)
                                           and molecules.smiles_column(args.data) is not None)


def graph_process(dataset: molecules.SmilesDataset) -> GraphProcess:
    """DiGress's process for a data set: marginal transitions towards its atom and bond marginals (a class never
    seen gets a tiny weight, so every class stays reachable)."""
    def smooth(m):
        m = m.double() + 1e-4
        return m / m.sum()
    return GraphProcess(Marginal(smooth(dataset.atom_marginals)), Marginal(smooth(dataset.bond_marginals)))


def run_molecules(args) -> int:
    """``unnoise train --data FILE.smi``: a graph transformer on the molecules of the file; the exit status."""
    if args.schedule != SCHEDULE:
        raise ValueError(f"molecules train under a categorical process: use --schedule {SCHEDULE} (or omit it), "
                         f"not {args.schedule}")
    if args.parameterization != "logits":
        raise ValueError(f"molecule runs predict the clean atoms' and bonds' log-probabilities: omit "
                         f"--parameterization {args.parameterization}")
    if args.weighting not in losses.CATEGORICAL_WEIGHTINGS:
        raise ValueError(f"molecule runs train on their NELBO (--weighting uniform, the default) or on DiGress's "
                         f"--weighting crossentropy, not {args.weighting}")
    if args.max_atoms is not None and args.max_atoms < 1:
        raise ValueError(f"--max-atoms must be a positive integer, got {args.max_atoms}")
    torch.manual_seed(args.seed)
    data = molecules.SmilesDataset(args.data, max_atoms=args.max_atoms)
    process = graph_process(data)
    schedule = schedules.get(SCHEDULE, process=process.config())
    vocab = data.vocabulary
    net = nets.build("graph_transformer", atom_classes=len(vocab), bond_classes=molecules.NUM_BOND_TYPES,
                     width=args.width, depth=args.depth, features=args.graph_features or "molecular")
    denoiser = GraphDenoiser(net, process)
    info = {"kind": "molecules", "command": command_record(args), "molecules": data.describe(),
            "data": {"shape": [vocab.max_atoms], "num_examples": len(data)}}
    trainer = Trainer(denoiser, schedule, data, train_config(args), run_dir=args.out, info=info)
    print(f"training graph_transformer with {nets.count_parameters(net):,} parameters on {len(data):,} molecules "
          f"of up to {vocab.max_atoms} heavy atoms ({len(vocab)} atom types: {' '.join(vocab.tokens)}; "
          f"device {trainer.device})")
    trainer.fit()
    return finish(trainer, args.out)


class MoleculePipeline(Pipeline):
    """A molecules run: :meth:`sample` returns SMILES strings (see the module docstring)."""

    def __init__(self, denoiser, schedule, config, **common):
        info = config["molecules"]
        self.vocabulary = molecules.Vocabulary(info["atoms"], info["max_atoms"])
        self.sizes = torch.tensor(info["sizes"], dtype=torch.float64)
        super().__init__(denoiser, schedule, "molecules", (self.vocabulary.max_atoms,), config=config, **common)

    def sample_graphs(self, n: int, steps: int | None = None, generator: torch.Generator | None = None,
                      scaffold: str | None = None) -> dict:
        """``n`` padded graphs ``{"atoms", "bonds", "node_mask"}``; with ``scaffold`` (a SMILES) its atoms are the
        first ones of every graph and their bonds among themselves are kept as given."""
        self._require_sampling("sample")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        steps = DEFAULT_STEPS if steps is None else steps
        N = self.vocabulary.max_atoms
        sizes = self.sizes.clone()
        known = known_mask = None
        if scaffold is not None:
            atoms, bonds, mask = self.vocabulary.encode(scaffold, "scaffold")
            k = int(mask.sum())
            sizes[:k] = 0
            if float(sizes.sum()) == 0:
                sizes[k] = 1.0  # no training molecule is larger: complete to the scaffold's own size
            block = mask[:, None] & mask[None, :]
            known = {"atoms": atoms.expand(n, N), "bonds": bonds.expand(n, N, N)}
            known_mask = {"atoms": mask.expand(n, N), "bonds": block.expand(n, N, N)}
        counts = torch.multinomial(sizes, n, replacement=True, generator=generator)
        node_mask = torch.arange(N)[None] < counts[:, None]
        device = self.device
        out = {"atoms": [], "bonds": []}
        for start in range(0, n, BATCH):
            rows = slice(start, min(n, start + BATCH))
            part = sample_graphs(self.denoiser, self.schedule.forward, N, rows.stop - rows.start, steps, generator,
                                 cond={"node_mask": node_mask[rows].to(device)},
                                 known=None if known is None else {k: v[rows] for k, v in known.items()},
                                 known_mask=None if known is None else {k: v[rows] for k, v in known_mask.items()},
                                 device=device)
            for key in out:
                out[key].append(part[key].cpu())
        return {"atoms": torch.cat(out["atoms"]), "bonds": torch.cat(out["bonds"]), "node_mask": node_mask}

    def decode(self, graphs: dict) -> list:
        """Canonical SMILES of padded graphs (None for an invalid one)."""
        return [self.vocabulary.decode(a, b, m) for a, b, m in zip(graphs["atoms"], graphs["bonds"],
                                                                   graphs["node_mask"])]

    def sample(self, n: int, sampler: str | None = None, steps: int | None = None, spacing: str | None = None,
               guidance_scale: float = 1.0, class_label=None, prompt=None, cond=None, noise=None,
               generator: torch.Generator | None = None, progress: bool = False, classifier=None,
               scaffold: str | None = None, **options) -> list:
        """``n`` molecules as canonical SMILES strings, None where the sampled graph is not a valid molecule.
        Sampling is ancestral (``steps`` steps, 50 by default); ``scaffold`` (a SMILES) is completed."""
        given = {"sampler": sampler, "spacing": spacing, "class_label": class_label, "prompt": prompt,
                 "cond": cond, "noise": noise, "classifier": classifier}
        wrong = [k for k, v in given.items() if v is not None] + list(options) + \
            (["guidance_scale"] if guidance_scale != 1.0 else [])
        if wrong:
            raise ValueError(f"molecules are sampled ancestrally from an unconditional graph model; "
                             f"{', '.join(wrong)} does not apply (options: steps, generator, scaffold)")
        return self.decode(self.sample_graphs(n, steps, generator, scaffold))


def load(path, config, device, ema=True, autoencoder=None):
    """A molecules run as a :class:`MoleculePipeline` whose samples are SMILES strings."""
    molecules.rdkit()
    denoiser, schedule, config, common = read_denoiser_run(path, device, ema)
    common.pop("config")
    return MoleculePipeline(denoiser, schedule, config, **common)


def write_smiles(pipe, x, args, out):
    """The valid molecules' SMILES, one per line; says how many were invalid."""
    valid = [s for s in x if s]
    io.save_text(out, "".join(s + "\n" for s in valid))
    print(f"{len(x) - len(valid)} of {len(x)} sampled molecules were invalid (not written); "
          f"{len(valid)} valid, {len(set(valid))} unique")
    return [out]


register(Kind(
    name="molecules", what="molecules (--data FILE.smi)", load=load, process="graph",
    train=TrainEntry(claims, run_molecules, {"max_atoms": None, "graph_features": None, "width": 64, "depth": 4, "schedule": SCHEDULE,
                                               "parameterization": "logits"},
                     "molecules (--data FILE.smi)", add_args),
    sample=SampleOutput(1000, "samples.smi", (".smi", ".txt"), write_smiles, "a .smi file of SMILES, one per line")))
