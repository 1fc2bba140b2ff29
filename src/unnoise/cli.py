"""The ``unnoise`` command.  Each subcommand lives in ``unnoise/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to the function that runs it."""
from __future__ import annotations

import argparse
import importlib
import sys

# one line per subcommand module, in the order they appear in --help
COMMAND_MODULES = ["demo", "train", "prepare", "sample", "train_classifier", "train_autoencoder", "inpaint", "img2img", "upscale", "compare_samplers"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unnoise",
        description="Train diffusion models on your own data, sample with any sampler, compare samplers, "
                    "measure likelihoods.  Run 'unnoise COMMAND --help' for the options of a command.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"unnoise {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, PermissionError) as err:
        print(f"unnoise {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
