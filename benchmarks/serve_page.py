"""The ``unnoise serve`` page against calling ``Pipeline.sample`` directly, for the same work (CPU).

A digits run with the default image U-Net is trained for a few steps (its weights do not matter for timing) and
served on 127.0.0.1 from this process.  For each round, in turn:

* ``direct``: ``pipe.sample(n, steps=..., generator=seed)`` on the Pipeline the page serves (``unnoise.load(run)``);
* ``direct thread``: the same call on a worker thread (the page runs its job on one, to stream previews);
* ``handler``: the page's action without the page (``Models.sample``: limits, the NFE counter, the grid picture,
  the ``.npy`` download);
* ``page``: a headless Chromium (Debian's) clicks Generate and waits until the page shows the result line; the
  time to the first live preview (an image in the Samples box) is taken on the same click.

Page load time: a fresh tab opens the page until the Generate button is there.  The table reports medians over
rounds; the measures take turns going first, so load on a shared machine hits all alike.

Run: ``.venv/bin/python benchmarks/serve_page.py [--n 16] [--steps 50] [--rounds 5] [--threads 1]``
(needs ``pip install 'unnoise[serve]' playwright`` and ``apt-get install chromium``).
"""
from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import tempfile
import threading
import time

import torch
from playwright.sync_api import sync_playwright

from unnoise.cli import main
from unnoise.commands import serve
from unnoise.commands.serve_handlers import Limits, Models

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def page_round(context, url, n, steps, seed):
    """(load seconds, first preview seconds, click-to-result seconds) for one fresh tab."""
    page = context.new_page()
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("#generate")
    load = time.perf_counter() - start
    for label, value in (("Seed", seed), (f"Steps (1-{steps})", steps), ("n (1-16)", n)):
        box = page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Tab")
    page.evaluate("""() => { window.firstPreview = null; window.t0 = performance.now();
        new MutationObserver((m, obs) => { if (document.querySelector('#samples img') && window.firstPreview === null) {
            window.firstPreview = performance.now() - window.t0; obs.disconnect(); } })
        .observe(document.querySelector('#samples'), {subtree: true, childList: true, attributes: true}); }""")
    page.evaluate("() => { window.t0 = performance.now(); document.querySelector('#generate').click(); }")
    page.wait_for_function("document.querySelector('#sample-info').innerText.includes('network evaluations')",
                           timeout=600_000)
    total = page.evaluate("() => performance.now() - window.t0") / 1000
    first = page.evaluate("() => window.firstPreview")
    info = page.inner_text("#sample-info")
    assert info.startswith(f"{n} samples, ipndm, {steps} steps, seed {seed}:"), info  # the same work as direct
    page.close()
    return load, (first / 1000 if first is not None else float("nan")), total


def run(args):
    torch.set_num_threads(args.threads)
    work = tempfile.mkdtemp(prefix="serve-bench-")
    run_dir = f"{work}/digits"
    assert main(["train", "--data", "digits", "--steps", "2", "--batch-size", "8", "--checkpoint-every", "0",
                 "--out", run_dir, "--device", "cpu"]) == 0
    models = Models({"digits": run_dir}, limits=Limits(max_steps=args.steps))
    pipe = models.pipe  # the very Pipeline the page calls: unnoise.load(run_dir)
    port = free_port()
    page = serve.start(models, "127.0.0.1", port, block=False)
    url = f"http://127.0.0.1:{port}/"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    rows = {"direct": [], "direct thread": [], "handler": [], "page": [], "load": [], "preview": []}
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(f"{work}/profile", executable_path=chromium, headless=True,
                                                       args=FLAGS)
        page_round(context, url, args.n, args.steps, 0)  # warm-up: first load, first sampling
        for r in range(args.rounds):
            seed = r + 1

            def direct():
                rows["direct"].append(timed(lambda: pipe.sample(args.n, steps=args.steps,
                                                                generator=torch.Generator().manual_seed(seed))))

            def direct_thread():  # the same call on a worker thread, as the page's job runs
                worker = threading.Thread(target=direct)
                worker.start()
                worker.join()
                rows["direct thread"].append(rows["direct"].pop())

            def handler():
                rows["handler"].append(timed(lambda: models.sample("digits", None, args.steps, seed, n=args.n)))

            def in_page():
                load, first, total = page_round(context, url, args.n, args.steps, seed)
                rows["page"].append(total)
                rows["load"].append(load)
                rows["preview"].append(first)
            order = [direct, direct_thread, handler, in_page]
            for measure in order[r % 4:] + order[:r % 4]:  # each goes first, second, ... in turn
                time.sleep(1.0)  # let the browser's work of the previous measure settle
                measure()
        context.close()
    page.close()
    med = {k: statistics.median(v) for k, v in rows.items()}
    params = sum(p.numel() for p in pipe.denoiser.parameters())
    print(f"digits U-Net ({params:,} parameters), n={args.n}, {args.steps} steps of the default sampler, "
          f"{args.threads} thread(s), median of {args.rounds} rounds")
    print("| measure | seconds | vs direct |")
    print("|---|---:|---:|")
    print(f"| Pipeline.sample (direct) | {med['direct']:.3f} | |")
    print(f"| Pipeline.sample on a worker thread | {med['direct thread']:.3f} | "
          f"{100 * (med['direct thread'] / med['direct'] - 1):+.1f} % |")
    print(f"| the page's action, no page (Models.sample) | {med['handler']:.3f} | "
          f"{100 * (med['handler'] / med['direct'] - 1):+.1f} % |")
    print(f"| the page in Chromium: click to result shown | {med['page']:.3f} | "
          f"{100 * (med['page'] / med['direct'] - 1):+.1f} % |")
    print(f"| page load (fresh tab to Generate button) | {med['load']:.3f} | |")
    print(f"| time to the first live preview (after the click) | {med['preview']:.3f} | |")
    paired = [100 * (p / d - 1) for p, d in zip(rows["page"], rows["direct"])]
    print(f"page vs direct, paired by round: median {statistics.median(paired):+.1f} %, "
          f"range {min(paired):+.1f} % .. {max(paired):+.1f} %")
    print("rounds:", {k: [round(x, 3) for x in v] for k, v in rows.items()})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    run(parser.parse_args())
