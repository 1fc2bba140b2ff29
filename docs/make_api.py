"""Generate docs/api.md, the API reference, from the docstrings of unnoise's public modules.

A public module is every module of the ``unnoise`` package except the command-line front end
(``unnoise.cli``, ``unnoise.commands.*``, ``unnoise.__main__``).  A public name is a function or
class defined in that module whose name does not start with ``_`` (plus, for classes, their public
methods and properties).  The registered samplers get a table of their options and defaults.

    .venv/bin/python docs/make_api.py            # rewrite docs/api.md
    .venv/bin/python docs/make_api.py --check    # exit 1 if docs/api.md is out of date
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import os
import pkgutil
import re
import sys

import unnoise

HERE = os.path.dirname(os.path.abspath(__file__))
API_PATH = os.path.join(HERE, "api.md")
EXCLUDED = ("unnoise.cli", "unnoise.commands", "unnoise.__main__")
# the order of the reference: the core first, then everything else alphabetically
CORE_ORDER = ["unnoise", "unnoise.runs", "unnoise.pipeline", "unnoise.kinds", "unnoise.schedules", "unnoise.processes",
              "unnoise.denoiser", "unnoise.analytic", "unnoise.samplers", "unnoise.losses", "unnoise.train",
              "unnoise.checkpoint", "unnoise.likelihood",
              "unnoise.guidance", "unnoise.editing", "unnoise.latent", "unnoise.metrics", "unnoise.nets",
              "unnoise.data"]


LAYOUT = """## Layout

One object, the denoiser `D(x, sigma, cond)`, and one mechanism per job.  The import graph has no cycle, every
import sits at the top of its module (only the optional dependencies -- diffusers, transformers, the text
encoder's weights package, tensorboard -- are imported where they are used), and importing unnoise never touches
pyplot or the user's matplotlib backend; `tests/test_runs.py` checks all three.

| layer | modules | job |
|---|---|---|
| algebra | `schedules`, `processes`, `scales`, `denoiser`, `analytic`, `ode`, `torus` | noise schedules and grids; forward processes (`schedule.forward`: noise, corruption, prior, loss, projection; Gaussian and wrapped on the torus); network -> denoiser (parameterisations, per-key null conditions); exact denoisers (Gaussian and von Mises mixtures); the torus (wrapping, the wrapped normal and its score) |
| sampling | `samplers` (`core`: every sampler and `sample`; `grids`: tuned grids), `guidance`, `editing`, `inverse`, `likelihood` | short pieces over `D`: samplers, guidance combinators, inpainting/SDEdit, posterior sampling, likelihoods |
| models | `nets` (MLP, U-Net, DiT, DiffWave, autoencoder), `losses`, `text`, `latent` | backbones, training objectives, the text encoder, the latent codec |
| data | `data` (`memory.TensorDataset`, `datasets`: streaming folders/arrays/WAV crops and statistics, `cache`) | datasets of `(x0, cond)` items |
| training | `train` (`trainer`: one `Trainer` for denoisers, noisy classifiers, autoencoders; `config`, `order`: the data order, `objective`, `state`: checkpoints and resume, `signals`, `log`, `previews`, `build`: `train_model`), `checkpoint` (`files`, `model`, `legacy`: format version 1, `steps`: step directories and crash recovery, `disk`, `grids`), `io`, `distributed`, `devices` | the loop, crash-safe files, torchrun |
| runs | `kinds` (the registry of data kinds: one module per kind, `outputs`: the writers of `unnoise sample`), `runs` (`unnoise.load` -> `Pipeline`), `pipeline` (`Pipeline`), `codecs`, `interop` (diffusers folders in and out) | every kind of run read back one way, through its registry entry; sampling and editing in data units |
| pictures | `plotting`, `imaging`, `spectral` | figures built as `matplotlib.figure.Figure` (no pyplot) and written atomically |
| command line | `cli`, `commands/*` (`train` and `sample` dispatch through `unnoise.kinds`; `export`: runs as diffusers folders) | one module per subcommand |

"""


def public_modules() -> list[str]:
    """Names of the public modules of the installed ``unnoise`` package, in reference order."""
    found = ["unnoise"] + [m.name for m in pkgutil.walk_packages(unnoise.__path__, "unnoise.")]
    found = [m for m in found if not any(m == e or m.startswith(e + ".") for e in EXCLUDED)]
    head = [m for m in CORE_ORDER if m in found]
    return head + sorted(m for m in found if m not in head)


def _line(obj) -> int:
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return 10**9


def public_members(module) -> list[tuple[str, object]]:
    """Public functions and classes defined in ``module``, in source order."""
    out = []
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", None) == module.__name__:
            out.append((name, obj))
    return sorted(out, key=lambda item: (_line(item[1]), item[0]))


def public_methods(cls) -> list[tuple[str, object]]:
    """Public methods and properties defined on ``cls`` itself (not inherited), in source order."""
    out = []
    for name, obj in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if inspect.isfunction(obj) or isinstance(obj, property):
            out.append((name, obj))
    return sorted(out, key=lambda item: (_line(item[1].fget if isinstance(item[1], property) else item[1]), item[0]))


def _constants(module) -> list[tuple[str, object]]:
    """Module-level UPPERCASE tuples of strings (the accepted names of an option)."""
    out = []
    for name, obj in vars(module).items():
        if name.isupper() and isinstance(obj, tuple) and obj and all(isinstance(v, str) for v in obj):
            out.append((name, obj))
    return sorted(out)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# postponed annotations arrive as strings: show them as code, without their quotes
_QUOTED_ANNOTATION = re.compile(r"(: |-> )'([^']*)'")


def signature(obj) -> str:
    """``(a, b=1, *, c=None)`` with memory addresses removed so the output is reproducible."""
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    return _QUOTED_ANNOTATION.sub(r"\1\2", _ADDRESS.sub("", sig))


def _doc(obj) -> str:
    doc = inspect.getdoc(obj)
    return doc.strip() if doc else "*(no docstring)*"


def sampler_table() -> list[str]:
    """A Markdown table of every registered sampler with its options and defaults."""
    from unnoise import samplers
    lines = ["### Registered samplers", "",
             "Every name below is accepted by `unnoise.sample(..., sampler=NAME, **options)` and by "
             "`unnoise sample --sampler NAME --option KEY=VALUE`.", "",
             "| name | function | options (defaults) | summary |", "|---|---|---|---|"]
    for name in samplers.available():
        fn = samplers.core._get(name)
        if not fn.__module__.startswith("unnoise"):  # registered at run time by user code or a test
            continue
        opts = samplers.sampler_options(name)
        shown = ", ".join(f"`{k}={v!r}`" for k, v in opts.items()) or "none"
        first = (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " ").replace("|", "\\|")
        lines.append(f"| `{name}` | `{fn.__module__}.{fn.__name__}` | {shown} | {first} |")
    return lines + [""]


def render() -> str:
    """The whole of docs/api.md as a string."""
    mods = public_modules()
    out = ["# unnoise API reference", "",
           "Generated from the docstrings by `docs/make_api.py`; do not edit by hand "
           "(run `.venv/bin/python docs/make_api.py` after changing a docstring).  "
           "For the ideas behind these functions read [concepts.md](concepts.md).", "",
           "Shapes: `(batch, ...)` is a batch of examples of any shape; `sigma` is a float or a "
           "`(batch,)` tensor of noise levels in the scale-free units of `x = x_0 + sigma * eps`; "
           "log-likelihoods are in nats unless a name says bits.", "", LAYOUT, "## Modules", ""]
    for m in mods:
        out.append(f"- [`{m}`](#{m.replace('.', '')})")
    out.append("")
    for m in mods:
        module = importlib.import_module(m)
        out += [f"## {m}", "", _doc(module), ""]
        if m == "unnoise":
            out += ["Top-level names: " + ", ".join(
                f"`unnoise.{n}`" for n in sorted(getattr(module, "__all__", [])) if not n.startswith("_")), ""]
            continue
        for name, value in _constants(module):
            out += [f"`{name}` = `{value!r}`", ""]
        if m == "unnoise.samplers":
            out += sampler_table()
        for name, obj in public_members(module):
            kind = "class" if inspect.isclass(obj) else "function"
            out += [f"### `{m}.{name}{signature(obj)}`", "", f"*{kind}*", "", _doc(obj), ""]
            if inspect.isclass(obj):
                for mname, meth in public_methods(obj):
                    if isinstance(meth, property):
                        out += [f"#### `{name}.{mname}` *(property)*", ""]
                        if meth.fget is not None and inspect.getdoc(meth.fget):
                            out += [inspect.getdoc(meth.fget), ""]
                    else:
                        out += [f"#### `{name}.{mname}{signature(meth)}`", ""]
                        # an override without its own docstring inherits the base class's
                        doc = inspect.getdoc(getattr(obj, mname))
                        if doc:
                            out += [doc, ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Generate docs/api.md from unnoise's docstrings.")
    parser.add_argument("--out", default=API_PATH, help="where to write (default: docs/api.md)")
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        try:
            with open(args.out, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            print(f"{args.out} is out of date: run .venv/bin/python docs/make_api.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
