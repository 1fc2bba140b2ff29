"""DiGress itself on the MOSES benchmark of ``molecules_moses.py``: same training subset, same budgets of examples
seen, same number of samples scored by the same MOSES call, so the two graph diffusion models are compared at
equal training examples seen.

DiGress (Vignac et al. 2023) is run from its own source (``cvignac/DiGress``, read as a reference, never
copied): its data module turns the same SMILES into its graphs (aromatic bonds kept, as it does), its
``DiscreteDenoisingDiffusion`` module gives the training loss (cross-entropy of the clean graph, bonds weighted 5)
and the sampler (its 500 discrete steps, cosine schedule, marginal transitions, its structural and molecular
extra features), and its own validity rule turns samples into SMILES (a sanitisable graph counts, as its largest
fragment).  The training loop is this script's (the module's ``training_step`` and its AdamW/AMSGrad optimiser,
without Lightning's Trainer), since Lightning adds nothing to one CPU process.

``--config moses`` is the published MOSES experiment (12 layers, width 256, batch 256, learning rate 2e-4; 16 M
parameters); ``--config small`` is DiGress's network at the size of unnoise's default ``molecules`` model (4
layers, node width 64, edge width 32) with unnoise's batch 64 and learning rate 1e-3.

Install (once, with network): ``make install-digress``: DiGress's source at a pinned commit in
``build/DiGress`` and the packages its code imports (torch_geometric, pytorch_lightning, torchmetrics, omegaconf)
in ``build/digress-site``, kept out of the project's environment; and ``make install-bench`` for MOSES.

Run: ``python benchmarks/molecules_digress.py --config small --budgets 24000,48000,96000 --n 250``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import types

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SMALL = {"n_layers": 4, "hidden_dims": {"dx": 64, "de": 32, "dy": 64, "n_head": 4, "dim_ffX": 128, "dim_ffE": 64,
                                        "dim_ffy": 128},
         "hidden_mlp_dims": {"X": 64, "E": 32, "y": 64}}


def load_config(digress: str, which: str, datadir: str):
    """DiGress's MOSES experiment configuration, read from its YAML files as Hydra would compose them."""
    from omegaconf import OmegaConf

    def yaml(name):
        return OmegaConf.load(os.path.join(digress, "configs", name))

    cfg = OmegaConf.create({"general": yaml("general/general_default.yaml"), "train": yaml("train/train_default.yaml"),
                            "model": yaml("model/discrete.yaml"), "dataset": yaml("dataset/moses.yaml")})
    experiment = yaml("experiment/moses.yaml")
    cfg = OmegaConf.merge(cfg, {k: experiment[k] for k in ("general", "train", "model")})
    cfg.dataset.datadir, cfg.train.num_workers = datadir, 0
    if which == "small":
        cfg = OmegaConf.merge(cfg, {"model": SMALL, "train": {"batch_size": 64, "lr": 1e-3}})
    return cfg


def main_(args) -> None:
    torch.set_num_threads(1)
    sys.path[:0] = [args.site, args.digress, os.path.join(args.digress, "src"), HERE]
    sys.modules.setdefault("wandb", types.SimpleNamespace(run=None, log=lambda *a, **k: None))  # logging only
    import pandas as pd
    from molecules_moses import import_moses, report, score, split

    moses = import_moses()
    from moses.dataset import get_dataset
    subset, _ = split(list(get_dataset("train")), args.subset, args.n)
    raw = os.path.join(args.work, "raw")
    shutil.rmtree(os.path.join(args.work, "processed"), ignore_errors=True)  # DiGress caches the last subset there
    os.makedirs(raw, exist_ok=True)
    held_out = list(get_dataset("test"))[:64]  # DiGress's data module wants val and test sets; they are not used
    for name, rows in (("train_moses.csv", subset), ("val_moses.csv", held_out), ("test_moses.csv", held_out)):
        pd.DataFrame({"SMILES": rows}).to_csv(os.path.join(raw, name), index=False)
    cfg = load_config(args.digress, args.config, args.work)
    if args.lr is not None:
        cfg.train.lr = args.lr
    torch.manual_seed(args.seed)
    load = torch.load  # DiGress's processed data sets are torch_geometric pickles it has just written itself
    torch.load = lambda *a, **k: load(*a, **{"weights_only": False, **k})

    from analysis.rdkit_functions import BasicMolecularMetrics, build_molecule, mol2smiles
    from datasets import moses_dataset
    from diffusion.extra_features import ExtraFeatures
    from diffusion.extra_features_molecular import ExtraMolecularFeatures
    from diffusion_model_discrete import DiscreteDenoisingDiffusion
    from metrics.molecular_metrics_discrete import TrainMolecularMetricsDiscrete

    t0 = time.perf_counter()
    data = moses_dataset.MosesDataModule(cfg)
    infos = moses_dataset.MOSESinfos(data, cfg)
    extra = ExtraFeatures(cfg.model.extra_features, dataset_info=infos)
    domain = ExtraMolecularFeatures(dataset_infos=infos)
    infos.compute_input_output_dims(datamodule=data, extra_features=extra, domain_features=domain)
    model = DiscreteDenoisingDiffusion(cfg, dataset_infos=infos, train_metrics=TrainMolecularMetricsDiscrete(infos),
                                       sampling_metrics=None, visualization_tools=None, extra_features=extra,
                                       domain_features=domain)
    print(f"DiGress ({args.config}): {sum(p.numel() for p in model.parameters()):,} parameters, batch "
          f"{cfg.train.batch_size}, lr {cfg.train.lr}; data ready in {time.perf_counter() - t0:.0f} s", flush=True)
    optimiser = model.configure_optimizers()
    validity = BasicMolecularMetrics(infos)
    seen = step = 0
    train_s, curve, batches = 0.0, [], iter(())
    for budget in [int(b) for b in args.budgets.split(",")]:
        t = time.perf_counter()
        model.train()
        while seen + cfg.train.batch_size <= budget:
            batch = next(batches, None)
            if batch is None:  # a new epoch, reshuffled
                batches = iter(data.train_dataloader())
                batch = next(batches)
            loss = model.training_step(batch, step)["loss"]
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            seen, step = seen + batch.num_graphs, step + 1
            if step % 100 == 0:
                print(f"step {step}, {seen} examples, loss {float(loss):.4f}, {time.perf_counter() - t:.0f} s",
                      flush=True)
        train_s += time.perf_counter() - t
        t = time.perf_counter()
        model.eval()
        torch.manual_seed(args.seed)
        graphs = []
        with torch.no_grad():
            for start in range(0, args.n, args.sample_batch):
                graphs += model.sample_batch(start, min(args.sample_batch, args.n - start), keep_chain=0,
                                             number_chain_steps=10, save_final=0)
        sample_s = time.perf_counter() - t
        smiles = validity.compute_validity(graphs)[3]  # DiGress's rule: largest fragment of a sanitisable graph
        whole = [mol2smiles(build_molecule(a, e, infos.atom_decoder)) for a, e in graphs]
        r = score(moses, smiles)
        r["connected"] = sum(1 for s in whole if s and "." not in s) / len(whole)
        r.update(seen=seen, train_minutes=train_s / 60, sample_seconds=sample_s)
        curve.append(r)
        print(json.dumps({k: r[k] for k in ("seen", "train_minutes", "sample_seconds", "valid", "connected",
                                            "FCD/Test", "FCD/TestSF") if k in r}), flush=True)
    report(curve, args.json)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=("small", "moses"), default="small",
                   help="small: unnoise's network size, batch and learning rate; moses: DiGress's published setting")
    p.add_argument("--budgets", default="24000,48000,96000", help="training examples seen, comma-separated")
    p.add_argument("--n", type=int, default=250, help="molecules sampled and scored per budget")
    p.add_argument("--subset", type=int, default=50000, help="MOSES training SMILES trained on (as molecules_moses.py)")
    p.add_argument("--lr", type=float, default=None, help="the learning rate (default: the config's)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the curve (one dict of metrics per budget) here, for molecules_plot.py")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-batch", type=int, default=125)
    p.add_argument("--digress", default=os.path.join(ROOT, "build", "DiGress"), help="a DiGress checkout")
    p.add_argument("--site", default=os.path.join(ROOT, "build", "digress-site"),
                   help="where make install-digress put the packages DiGress imports")
    p.add_argument("--work", default=os.path.join(ROOT, "build", "digress-moses"), help="DiGress's data folder")
    main_(p.parse_args())
