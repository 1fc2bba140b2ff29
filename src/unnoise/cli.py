"""The ``unnoise`` command.  Each subcommand lives in ``unnoise/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to the function that runs it."""
from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
import tempfile
import traceback
import warnings

import torch

from . import __version__
from .io import describe

# one line per subcommand module, in the order they appear in --help
COMMAND_MODULES = ["demo", "train", "prepare", "sample", "predict", "train_classifier", "train_autoencoder", "inpaint",
                   "restore", "img2img", "upscale", "distill3d", "compare_samplers", "tune_grid", "export", "serve"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unnoise",
        description="Train diffusion models on your own data, sample with any sampler, compare samplers, "
                    "measure likelihoods.  Run 'unnoise COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"unnoise {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


# exit statuses: 2 = the user's input (bad option, missing or unfit file, existing output),
# 1 = the environment (disk full, read-only file system, I/O error) or an internal error, 130 = Ctrl-C
_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError,
                IsADirectoryError)


def log_dir() -> str:
    """Where internal errors are logged: ``$UNNOISE_LOG_DIR``, else ``$XDG_STATE_HOME/unnoise/logs``,
    else ``~/.local/state/unnoise/logs`` (the XDG place for logs: kept across reboots, not a cache)."""
    if os.environ.get("UNNOISE_LOG_DIR"):
        return os.environ["UNNOISE_LOG_DIR"]
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "unnoise", "logs")


def write_error_log(argv, err: BaseException) -> str | None:
    """Write the full traceback of ``err`` with the command line and versions to a new log file;
    returns its path (None when no log could be written anywhere)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (f"unnoise {__version__}, Python {platform.python_version()}, {platform.platform()}\n"
            f"command: unnoise {' '.join(map(str, argv))}\n\n"
            + "".join(traceback.format_exception(type(err), err, err.__traceback__)))
    for directory in (log_dir(), tempfile.gettempdir()):
        try:
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, f"unnoise-{stamp}-{os.getpid()}.log")
            with open(path, "w") as f:
                f.write(text)
            return path
        except OSError:
            continue
    return None


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    return f"unnoise: warning: {message}\n"


def main(argv=None) -> int:
    """Run the ``unnoise`` command; returns the exit status and never shows a traceback.

    User errors print ``unnoise CMD: error: ...`` (status 2); faults of the environment (disk
    full, read-only file system, I/O) one line (status 1); Ctrl-C ``interrupted`` (130); any other
    exception (a bug) one line plus the path of a log file holding the traceback (status 1).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    name = "unnoise"
    show_warning = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        name = f"unnoise {args.command}" if getattr(args, "command", None) else name
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS as err:
        print(f"{name}: error: {describe(err)}", file=sys.stderr)
        return 2
    except (OSError, MemoryError, FloatingPointError) as err:
        what = "out of memory" if isinstance(err, MemoryError) and not str(err) else describe(err)
        print(f"{name}: error: {what}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug: one line here, the traceback in a log file
        if isinstance(err, torch.OutOfMemoryError):
            print(f"{name}: error: out of device memory ({describe(err)}); lower --batch-size or use a smaller "
                  "model", file=sys.stderr)
            return 1
        log = write_error_log(argv, err)
        where = f"; the traceback is in {log}" if log else ""
        print(f"{name}: internal error: {type(err).__name__}: {describe(err)}{where}. Please report it.",
              file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = show_warning


if __name__ == "__main__":
    sys.exit(main())
