"""Argument helpers shared by subcommands."""
from __future__ import annotations

import argparse

from .. import samplers, schedules


def parse_value(text: str):
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, anything else stays a string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_options(pairs: list[str] | None) -> dict:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--option expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = parse_value(value.strip())
    return out


def add_sampling_args(p: argparse.ArgumentParser, default_steps: int = 50) -> None:
    p.add_argument("--sampler", default=None,
                   help=f"sampler name (default: unnoise's default sampler, the one unnoise.sample uses); one of: "
                        f"{', '.join(samplers.available())}")
    p.add_argument("--steps", type=int, default=default_steps,
                   help=f"number of sampling steps (default: {default_steps})")
    p.add_argument("--spacing", default=None, choices=schedules.SPACINGS,
                   help="how the sampling sigmas are spread over a discrete schedule (default: the schedule's own)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="sampler option, repeatable, e.g. --option eta=0.5 or --option variance=large")


GUIDANCE_RANGE = (0.0, 100.0)  # beyond 100 the guided denoiser leaves the data far behind (garbage, not sharper)


def check_guidance_scale(scale: float) -> None:
    """``--guidance-scale`` must be a finite number in :data:`GUIDANCE_RANGE` (one-line ``ValueError``)."""
    lo, hi = GUIDANCE_RANGE
    if not lo <= scale <= hi:  # NaN fails too
        raise ValueError(f"--guidance-scale must be a finite number in [{lo:g}, {hi:g}] (0 = unconditional, "
                         f"1 = conditional, larger = stronger; 1-10 is the useful range), got {scale:g}")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto = cuda when available)")
