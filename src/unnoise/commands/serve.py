"""``unnoise serve``: a local web page to sample, inpaint, restore, edit and compare with trained runs.

Built on Gradio, an optional extra (``pip install 'unnoise[serve]'``).  The page binds to 127.0.0.1 unless
``--host`` says otherwise; it has no authentication, so another host is warned about.
"""
from __future__ import annotations

import importlib.util
import os
import sys

from .serve_handlers import Limits, Models
from .serve_page import build

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def register(sub):
    p = sub.add_parser("serve", help="a local web page to sample, inpaint, restore and compare with runs",
                       description="Serve a web page (Gradio) for one or more runs: Sample with a live preview, "
                                   "Inpaint a painted region, Restore a blurred / downsampled / gray / masked image, "
                                   "img2img and Compare two samplers on the same noise.  Needs the serve extra: "
                                   "pip install 'unnoise[serve]'.")
    p.add_argument("--checkpoint", action="append", required=True, metavar="RUN",
                   help="a run directory or diffusers folder (repeatable: the page gets a model picker)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; the page has no authentication)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--max-n", type=int, default=Limits.max_n,
                   help=f"most samples per request (default: {Limits.max_n})")
    p.add_argument("--max-steps", type=int, default=Limits.max_steps,
                   help=f"most sampling steps per request (default: {Limits.max_steps})")
    p.add_argument("--max-image-side", type=int, default=Limits.max_image_side,
                   help=f"largest uploaded picture side in pixels (default: {Limits.max_image_side})")
    p.add_argument("--queue-size", type=int, default=16, help="requests that may wait for the device (default: 16)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto = cuda when available)")
    p.set_defaults(func=run)


def require_gradio() -> None:
    """One line saying how to install the page's dependency when it is missing."""
    if importlib.util.find_spec("gradio") is None:
        raise ValueError("the web page needs Gradio: pip install 'unnoise[serve]'")


def run_names(paths: list[str]) -> dict[str, str]:
    """Model-picker names for run directories: the folder name, made unique with its parent when needed."""
    names = {}
    for path in paths:
        name = os.path.basename(os.path.normpath(path)) or path
        if name in names:
            name = os.path.normpath(path)
        if name in names:
            raise ValueError(f"--checkpoint {path!r} is given twice")
        names[name] = path
    return names


def start(models: Models, host: str = "127.0.0.1", port: int = 7860, queue_size: int = 16, block: bool = True):
    """Build the page for ``models`` and serve it; returns the Gradio app (with ``block=False``, for tests)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    page = build(models)
    page.queue(max_size=queue_size, default_concurrency_limit=1)
    page.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=True, show_error=True,
                inbrowser=False, share=False, footer_links=[], ssr_mode=False)
    return page


def run(args):
    require_gradio()
    for flag, value in (("--max-n", args.max_n), ("--max-steps", args.max_steps),
                        ("--max-image-side", args.max_image_side), ("--queue-size", args.queue_size)):
        if value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value}")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    models = Models(run_names(args.checkpoint), device=args.device,  # unnoise.load resolves "auto"
                    limits=Limits(args.max_n, args.max_steps, args.max_image_side))
    if args.host not in LOCAL_HOSTS:
        print(f"unnoise serve: warning: binding to {args.host}: the page has no authentication; anyone who can "
              "reach this address can use the device", file=sys.stderr)
    print(f"unnoise serve: http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/ "
          "(Ctrl-C stops)", flush=True)
    start(models, args.host, args.port, args.queue_size)
    return 0
