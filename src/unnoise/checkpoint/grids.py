"""Tuned sampling grids stored beside a run (``tuned_grids.json``, written by ``unnoise tune-grid``)."""
from __future__ import annotations

import json
import os

from .files import _write_json

# ----------------------------------------------------------------------------- tuned sampling grids
TUNED_GRIDS_NAME = "tuned_grids.json"  # written by 'unnoise tune-grid'; config.json and weights stay untouched
TUNED_GRIDS_FORMAT = "unnoise-tuned-grids"


def _check_tuned_entry(entry, path: str) -> dict:
    try:
        steps, sampler, sigmas = int(entry["steps"]), str(entry["sampler"]), [float(v) for v in entry["sigmas"]]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path!r}: each tuned grid needs steps, sampler and sigmas; delete the file and rerun "
                         "'unnoise tune-grid'") from None
    ok = steps >= 1 and len(sigmas) == steps + 1 and sigmas[-1] == 0.0 \
        and all(a > b for a, b in zip(sigmas, sigmas[1:]))
    if not ok:
        raise ValueError(f"{path!r}: the {steps}-step grid for {sampler} is not {steps + 1} decreasing sigmas ending "
                         "at 0; delete the file and rerun 'unnoise tune-grid'")
    return dict(entry, steps=steps, sampler=sampler, sigmas=sigmas)


def read_tuned_grids(run_dir: str) -> list[dict]:
    """The tuned grids stored in ``run_dir`` (``[]`` when it has none): each ``{"steps", "sampler",
    "sigmas", "nfe_cost", ...}`` as :func:`unnoise.samplers.tune_grid` returns it; a malformed file
    raises ``ValueError`` naming it."""
    path = os.path.join(run_dir, TUNED_GRIDS_NAME)
    if not os.path.exists(path):
        return []
    try:
        with open(path) as f:
            obj = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path!r} is not valid JSON ({err.msg}); delete it and rerun 'unnoise tune-grid'") from None
    if not isinstance(obj, dict) or obj.get("format") != TUNED_GRIDS_FORMAT or not isinstance(obj.get("grids"), list):
        raise ValueError(f"{path!r} is not a tuned-grids file; delete it and rerun 'unnoise tune-grid'")
    return [_check_tuned_entry(e, path) for e in obj["grids"]]


def write_tuned_grids(run_dir: str, grids: list[dict]) -> str:
    """Merge ``grids`` into ``run_dir``'s tuned grids (an entry replaces a stored one with the same
    sampler and step count) and write the file atomically; returns its path."""
    path = os.path.join(run_dir, TUNED_GRIDS_NAME)
    new = [_check_tuned_entry(e, path) for e in grids]
    keys = {(e["sampler"], e["steps"]) for e in new}
    kept = [e for e in read_tuned_grids(run_dir) if (e["sampler"], e["steps"]) not in keys]
    merged = sorted(kept + new, key=lambda e: (e["sampler"], e["steps"]))
    _write_json(path, {"format": TUNED_GRIDS_FORMAT, "version": 1, "grids": merged})
    return path
