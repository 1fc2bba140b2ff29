"""The documentation stays true to the code: every public function and class has a docstring,
docs/api.md is what docs/make_api.py generates now, and every name the guides mention exists."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re

import pytest

import unnoise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_make_api():
    spec = importlib.util.spec_from_file_location("make_api", os.path.join(ROOT, "docs", "make_api.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_api = _load_make_api()


@pytest.fixture(scope="module")
def rendered():
    return make_api.render()


def test_public_modules_cover_the_core():
    mods = make_api.public_modules()
    for name in ("unnoise.schedules", "unnoise.denoiser", "unnoise.losses", "unnoise.samplers", "unnoise.analytic",
                 "unnoise.metrics", "unnoise.nets", "unnoise.train", "unnoise.checkpoint"):
        assert name in mods
    assert not any(m.startswith("unnoise.commands") for m in mods)


@pytest.mark.parametrize("module_name", make_api.public_modules())
def test_every_public_function_and_class_has_a_docstring(module_name):
    module = importlib.import_module(module_name)
    assert inspect.getdoc(module), f"module {module_name} has no docstring"
    missing = [name for name, obj in make_api.public_members(module) if not inspect.getdoc(obj)]
    assert not missing, f"{module_name}: public names without a docstring: {', '.join(missing)}"


def test_every_registered_sampler_is_documented(rendered):
    text = rendered
    for name in unnoise.samplers.available():
        fn = unnoise.samplers.core._get(name)
        if not fn.__module__.startswith("unnoise"):
            continue  # registered by other tests at run time
        assert inspect.getdoc(fn), f"sampler {name!r} has no docstring"
        assert f"| `{name}` |" in text


def test_api_md_is_up_to_date(rendered):
    with open(make_api.API_PATH, encoding="utf-8") as f:
        current = f.read()
    # no memory addresses or other run-dependent text in signatures, so the comparison is meaningful
    assert " at 0x" not in rendered
    assert current == rendered, "docs/api.md is stale: run .venv/bin/python docs/make_api.py"


def _resolve(dotted: str):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            break
        except ImportError:
            continue
    for part in parts[i:]:
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("doc", ["docs/concepts.md", "README.md"])
def test_every_name_in_the_guides_exists(doc):
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        text = f.read()
    names = set(re.findall(r"`(unnoise(?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text))
    assert names or doc == "README.md"
    missing = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (AttributeError, ImportError):
            missing.append(name)
    assert not missing, f"{doc} mentions names that do not exist: {missing}"
    samplers = set(re.findall(r'sampler="([a-z0-9_]+)"', text))
    assert samplers <= set(unnoise.samplers.available()), samplers - set(unnoise.samplers.available())
    for fig in re.findall(r"\]\(((?:docs/)?figures/[^)]+)\)", text):
        path = fig if fig.startswith("docs/") else os.path.join("docs", fig)
        assert os.path.exists(os.path.join(ROOT, path)), f"{doc} shows a missing figure {fig}"


def test_concepts_sampler_table_names_exist():
    with open(os.path.join(ROOT, "docs", "concepts.md"), encoding="utf-8") as f:
        text = f.read()
    # the first column of the sampler table of section 6
    section = text[text.index("## 6."):text.index("## 7.")]
    rows = re.findall(r"^\| ((?:`[a-z0-9_]+`(?:, )?)+)", section, re.M)
    named = {n for row in rows for n in re.findall(r"`([a-z0-9_]+)`", row)}
    assert named and named <= set(unnoise.samplers.available())


def test_readme_commands_exist():
    """Every ``unnoise COMMAND`` and every ``--flag`` of the README's feature table is a real one."""
    from unnoise.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    # command lines inside code blocks, and inline `unnoise COMMAND` mentions
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", text, re.S))
    commands = set(re.findall(r"^unnoise ([a-z][a-z0-9-]*)", blocks, re.M)) | set(re.findall(r"`unnoise ([a-z][a-z0-9-]*)", text))
    commands.discard("COMMAND")
    assert commands and commands <= set(sub.choices), commands - set(sub.choices)
    table = text[text.index("| feature | where |"):text.index("## Quick start")]
    flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", table))
    known = {o for p in sub.choices.values() for a in p._actions for o in a.option_strings}
    assert flags and flags <= known, flags - known
