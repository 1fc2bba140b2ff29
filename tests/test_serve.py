"""``unnoise serve``: the page's actions give what the library gives (the same pixels as ``Pipeline.sample`` for a
seed, inpainting keeps the unpainted pixels exactly), bad values are one-line messages, a run rewritten on disk is
not reloaded silently; and, in a real headless Chromium against the server on 127.0.0.1, the page shows those
pixels, paints and inpaints, and keeps serving after an error.

The browser tests (``-m browser``, ``make test-browser``) need Gradio, Playwright and Debian's Chromium; without
them they are skipped with the reason.  Screenshots go to ``$UNNOISE_SCREENSHOTS`` (default: pytest's tmp dir).
"""
import importlib.util
import io
import os
import re
import shutil
import socket
import time

import numpy as np
import pytest
import torch
from PIL import Image

import unnoise
from unnoise.cli import main
from unnoise.commands import serve
from unnoise.commands.serve_handlers import Cancelled, Limits, Models, capabilities, display_upscale, picture
from unnoise.data.audio import write_wav

COMMON = ["--steps", "3", "--batch-size", "8", "--checkpoint-every", "0", "--log-every", "1", "--device", "cpu"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HAS_GRADIO = importlib.util.find_spec("gradio") is not None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve_runs")
    made = {"images": str(base / "img"), "conditional": str(base / "cond"), "vectors": str(base / "vec")}
    assert main(["train", "--data", "digits", "--base-channels", "8", "--channel-mult", "1,2",
                 "--out", made["images"], *COMMON]) == 0
    assert main(["train", "--data", "digits", "--conditional", "--base-channels", "8", "--channel-mult", "1,2",
                 "--out", made["conditional"], *COMMON]) == 0
    assert main(["train", "--data", "ring", "--num-points", "64", "--width", "16", "--depth", "1",
                 "--out", made["vectors"], *COMMON]) == 0
    wavs = base / "wavs"
    wavs.mkdir()
    for i in range(3):
        t = torch.arange(400) / 2000
        write_wav(str(wavs / f"t{i}.wav"), 0.3 * torch.sin(2 * torch.pi * (100 + 50 * i) * t)[None], 2000)
    made["audio"] = str(base / "aud")
    assert main(["train", "--data", str(wavs), "--sample-rate", "2000", "--clip-length", "64", "--num-clips", "8",
                 "--base-channels", "8", "--out", made["audio"], *COMMON]) == 0
    return made


@pytest.fixture(scope="module")
def models(runs):
    return Models({"img": runs["images"], "cond": runs["conditional"], "vec": runs["vectors"], "aud": runs["audio"]})


def library(run, n, sampler, steps, seed):
    return unnoise.load(run).sample(n, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(seed))


def painted_box(shape, y0, y1, x0, x1):
    """A painted region (True = fill) on the page's enlarged picture of one image, covering model pixels
    rows y0..y1-1, columns x0..x1-1 (the picture 'Use last sample' gives: no border)."""
    u = display_upscale(shape)
    out = np.zeros((shape[-1] * u, shape[-1] * u), bool)
    out[y0 * u + 3: (y1 - 1) * u + 5, x0 * u + 3: (x1 - 1) * u + 5] = True
    return out


# ----------------------------------------------------------------------------- the handlers (no browser)
@pytest.mark.parametrize("sampler,steps,seed", [("ddim", 6, 3), ("ddpm", 4, 11), (None, 5, 0)])
def test_sample_gives_the_pixels_of_pipeline_sample(runs, models, sampler, steps, seed):
    out = models.sample("img", sampler, steps, seed, n=5)
    ref = library(runs["images"], 5, sampler, steps, seed)
    assert torch.equal(out["samples"], ref)
    assert np.array_equal(out["image"], picture(ref, (1, 8, 8)))
    assert out["image"].dtype == np.uint8 and out["image"].ndim == 2  # gray digits: one channel
    assert np.array_equal(np.load(out["npy"]), ref.numpy())
    if sampler == "ddim":
        assert f"{steps} network evaluations" in out["info"]  # DDIM: one network call a step


def test_class_and_guidance_reach_pipeline_sample(runs, models):
    out = models.sample("cond", "ddim", 4, 2, guidance_scale=2.0, class_label="3", n=3)
    ref = unnoise.load(runs["conditional"]).sample(3, sampler="ddim", steps=4, guidance_scale=2.0, class_label=3,
                                                   generator=torch.Generator().manual_seed(2))
    assert torch.equal(out["samples"], ref)
    assert not torch.equal(out["samples"], models.sample("cond", "ddim", 4, 2, class_label="5", n=3)["samples"])


def test_audio_runs_get_players_and_spectrograms(runs, models):
    out = models.sample("aud", "ddim", 4, 1, n=6)
    ref = library(runs["audio"], 6, "ddim", 4, 1)
    assert torch.equal(out["samples"], ref)
    assert len(out["audio"]) == 4  # players for the first clips; all six in the .npy
    rate, clip = out["audio"][0]
    assert rate == 2000 and clip.dtype == np.int16 and clip.shape == (64,)
    assert np.array_equal(clip, (ref[0].clamp(-1, 1).mean(0) * 32767).round().to(torch.int16).numpy())
    assert open(out["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n" and np.load(out["npy"]).shape == (6, 1, 64)
    caps = models.capabilities("aud")
    assert caps.audio and caps.sample and not (caps.inpaint or caps.image)


def test_sample_preview_sees_each_step_and_stop_cancels(models):
    seen = []
    models.sample("img", "ddim", 7, 0, n=2, on_step=lambda i, total, den: seen.append((i, total, den.shape)))
    assert [s[0] for s in seen] == list(range(7)) and {s[1] for s in seen} == {7}
    assert models.preview(models.pipe, torch.zeros(2, 1, 8, 8)).shape == picture(torch.zeros(2, 1, 8, 8),
                                                                                  (1, 8, 8)).shape

    def stop_at_third(i, total, den):
        if i == 2:
            models.cancel()
    with pytest.raises(Cancelled):
        models.sample("img", "ddim", 50, 0, n=2, on_step=stop_at_third)
    assert not models.lock.locked()
    assert models.sample("img", "ddim", 3, 0, n=1)["samples"].shape == (1, 1, 8, 8)  # the next job runs


@pytest.mark.parametrize("method", ["replace", "repaint", "smc", "mmps"])
def test_inpaint_keeps_unpainted_pixels_exactly(runs, models, method):
    ref = library(runs["images"], 1, "ddim", 5, 1)
    source = picture(ref, (1, 8, 8), pad=0)  # as 'Use last sample' gives it
    out = models.inpaint("img", source, painted_box((1, 8, 8), 2, 5, 3, 7), method, "ddpm", 6, 4, n=3)
    keep = out["keep"][0].bool()
    assert int((~keep).sum()) == 3 * 4 and bool((~keep[2:5, 3:7]).all())  # exactly the painted box
    fills = out["samples"]
    assert fills.shape == (3, 1, 8, 8)
    u = display_upscale((1, 8, 8))
    given = torch.from_numpy(source[::u, ::u].astype(np.float32))[None, None] / 127.5 - 1  # the page's 8-bit input
    assert torch.equal(fills[:, :, keep], given[:, :, keep].expand(3, -1, -1))  # bit for bit
    assert not torch.equal(fills[:, :, ~keep], given[:, :, ~keep].expand(3, -1, -1))  # the box was redrawn
    shown = out["image"]  # and the page's picture keeps those pixels too
    tile = shown[1:1 + 8 * u, 1:1 + 8 * u]
    assert np.array_equal(tile[::u, ::u][keep.numpy()], source[::u, ::u][keep.numpy()])


def test_restore_img2img_and_compare_call_the_pipeline(runs, models):
    ref = library(runs["images"], 1, "ddim", 5, 1)
    source = picture(ref, (1, 8, 8), pad=0)
    u = display_upscale((1, 8, 8))
    given = torch.from_numpy(source[::u, ::u].astype(np.float32))[None, None] / 127.5 - 1  # the page's 8-bit input
    pipe = unnoise.load(runs["images"])
    for operator, parameter in (("blur", 1.0), ("downsample", 2), ("mask", 0)):
        out = models.restore("img", source, operator, parameter, 0.0, "mmps", 5, 2, n=3,
                             painted=painted_box((1, 8, 8), 0, 4, 0, 4))
        assert out["samples"].shape == (3, 1, 8, 8) and out["measurement"].shape == picture(ref, (1, 8, 8)).shape
        y_op = unnoise.inverse.parse_operator("blur:sigma=1.0", (1, 8, 8)) if operator == "blur" else None
        if y_op is not None:  # the same restorations as the library's, from the same seed
            gen = torch.Generator().manual_seed(2)
            y = y_op(given) + 0.0 * torch.randn(given.shape, generator=gen)  # the page draws the noise first
            lib = pipe.restore(y, y_op, noise_std=0.0, method="mmps", n=3, steps=5, generator=gen)
            assert torch.equal(out["samples"], lib[0])
    assert torch.equal(models.img2img("img", source, 0.0, None, 5, 0, n=2)["samples"], given.expand(2, -1, -1, -1))
    a, b = models.compare("img", "ddim", 6, "ddim", 6, 9, n=3)
    assert torch.equal(a["samples"], b["samples"])  # the same noise, the same sampler: the same images
    a, b = models.compare("img", "ddim", 6, "euler", 3, 9, n=3)
    noise = pipe.noise(3, torch.Generator().manual_seed(9))
    assert torch.equal(b["samples"], pipe.sample(3, sampler="euler", steps=3, noise=noise))
    assert not torch.equal(a["samples"], b["samples"])


@pytest.mark.parametrize("call,words", [
    (lambda m: m.sample("img", "ddim", 5, 0, n=0), "n (number of samples) must be between 1 and 16"),
    (lambda m: m.sample("img", "ddim", 5, 0, n=10**6), "n (number of samples) must be between 1 and 16"),
    (lambda m: m.sample("img", "ddim", 10**9, 0, n=1), "steps must be between 1 and 200"),
    (lambda m: m.sample("img", "ddim", 2.5, 0, n=1), "steps must be a whole number"),
    (lambda m: m.sample("img", "ddim", 5, -1, n=1), "seed must be between"),
    (lambda m: m.sample("img", "nope", 5, 0, n=1), "unknown sampler 'nope'"),
    (lambda m: m.sample("img", "ddim", 5, 0, guidance_scale=float("nan")), "guidance scale must be a finite number"),
    (lambda m: m.sample("img", "ddim", 5, 0, guidance_scale=3.0), "needs a class or a prompt"),
    (lambda m: m.sample("img", "ddim", 5, 0, class_label="3"), "not class-conditional"),
    (lambda m: m.sample("cond", "ddim", 5, 0, class_label="12"), "class label 12 out of range"),
    (lambda m: m.sample("other", "ddim", 5, 0), "unknown model 'other'"),
    (lambda m: m.inpaint("img", np.zeros((16, 16), np.uint8), np.zeros((16, 16), bool)), "paint the region"),
    (lambda m: m.inpaint("img", None, None), "give an image first"),
    (lambda m: m.inpaint("img", np.zeros((4000, 10), np.uint8), None), "at most 2048 pixels"),
    (lambda m: m.inpaint("vec", np.zeros((16, 16), np.uint8), None), "cannot inpaint"),
    (lambda m: m.restore("img", np.zeros((16, 16), np.uint8), "gray"), "grayscale needs a colour"),
    (lambda m: m.restore("img", np.zeros((16, 16), np.uint8), "blur", 1.0, -1.0), "noise level must be"),
    (lambda m: m.img2img("img", np.zeros((16, 16), np.uint8), 1.5), "strength must be a finite number in [0, 1]"),
])
def test_bad_values_are_one_line_messages(models, call, words):
    with pytest.raises(ValueError) as err:
        call(models)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_capabilities_decide_the_tabs(models):
    img, cond, vec = (models.capabilities(name) for name in ("img", "cond", "vec"))
    assert img.sample and img.inpaint and img.restore and img.img2img and img.compare and img.image
    assert not img.classes and cond.classes and not cond.prompt
    assert vec.sample and vec.compare and vec.vectors and not (vec.inpaint or vec.restore or vec.img2img or vec.image)
    out = models.sample("vec", "ddim", 4, 0, n=16)
    assert out["image"] is None and open(out["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert capabilities(unnoise.load(models.runs["cond"])) == cond


def test_a_run_rewritten_on_disk_is_not_reloaded_silently(runs, tmp_path):
    run = str(tmp_path / "copy")
    shutil.copytree(runs["images"], run)
    m = Models({"copy": run})
    before = m.sample("copy", "ddim", 3, 0, n=1)["samples"]
    weights = os.path.join(run, "model.safetensors")
    os.utime(weights, ns=(time.time_ns(), os.stat(weights).st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match="changed on disk since it was loaded.*Reload run"):
        m.sample("copy", "ddim", 3, 0, n=1)
    m.pipeline("copy", reload=True)
    assert torch.equal(m.sample("copy", "ddim", 3, 0, n=1)["samples"], before)


def test_serve_without_gradio_says_how_to_install(runs, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["serve", "--checkpoint", runs["images"]]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "unnoise serve: error: the web page needs Gradio: pip install 'unnoise[serve]'"


def test_serve_binds_localhost_and_warns_for_another_host(runs, monkeypatch, capsys):
    monkeypatch.setattr(serve, "require_gradio", lambda: None)
    started = []
    monkeypatch.setattr(serve, "start", lambda models, host, port, queue_size: started.append((host, port)))
    assert main(["serve", "--checkpoint", runs["images"], "--device", "cpu"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["serve", "--checkpoint", runs["images"], "--checkpoint", runs["vectors"], "--host", "0.0.0.0",
                 "--port", "8123", "--device", "cpu"]) == 0
    assert "no authentication" in capsys.readouterr().err
    assert started == [("127.0.0.1", 7860), ("0.0.0.0", 8123)]
    assert main(["serve", "--checkpoint", runs["images"], "--max-n", "0"]) == 2
    assert "--max-n must be a positive integer" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_GRADIO, reason="Gradio is not installed (pip install 'unnoise[serve]')")
def test_page_turns_every_failure_into_a_message(models):
    import gradio as gr
    from unnoise.commands.serve_page import guarded, stream
    with pytest.raises(gr.Error, match="n \\(number of samples\\) must be between 1 and 16"):
        list(stream(models, "img", lambda on_step: models.sample("img", "ddim", 5, 0, n=0, on_step=on_step)))
    with pytest.raises(gr.Error, match="internal error: ZeroDivisionError: division by zero"):
        guarded(lambda: 1 / 0)()
    def stop_at_second(i, total, den):
        if i == 1:
            models.cancel()
    stopped = list(stream(models, "img", lambda on_step: models.sample(
        "img", "ddim", 50, 0, n=2, on_step=lambda i, t, d: (on_step(i, t, d), stop_at_second(i, t, d)))))
    assert all(step[0] is not None for step in stopped)  # previews only, no result, no error
    steps = list(stream(models, "img", lambda on_step: models.sample("img", "ddim", 4, 0, n=2, on_step=on_step)))
    assert torch.equal(steps[-1][2]["samples"], models.sample("img", "ddim", 4, 0, n=2)["samples"])


# ----------------------------------------------------------------------------- in a real browser
def _browser_missing() -> str | None:
    if not HAS_GRADIO:
        return "Gradio is not installed (make test-browser installs it)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (make test-browser installs it)"
    if CHROMIUM is None:
        return "no chromium on PATH (make test-browser: apt-get install chromium)"
    return None


browser = pytest.mark.skipif(_browser_missing() is not None, reason=_browser_missing() or "")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(runs):
    models = Models({"img": runs["images"], "vec": runs["vectors"], "aud": runs["audio"]},
                    limits=Limits(max_n=16, max_steps=200))
    port = free_port()
    page = serve.start(models, "127.0.0.1", port, block=False)
    yield models, f"http://127.0.0.1:{port}/"
    page.close()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    from playwright.sync_api import sync_playwright
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1000})
        yield context
        context.close()


@pytest.fixture
def shots(tmp_path):
    where = os.environ.get("UNNOISE_SCREENSHOTS") or str(tmp_path)
    os.makedirs(where, exist_ok=True)
    return where


def open_page(chromium, url):
    page = chromium.new_page()
    page.goto(url)
    page.wait_for_selector("#generate")
    return page


def set_number(page, label, value):
    box = page.get_by_label(label, exact=True).locator("visible=true").first  # the field of the tab shown
    box.fill(str(value))
    box.press("Tab")


def wait_info(page, selector, timeout=120_000):
    page.wait_for_function(f"document.querySelector('{selector}').innerText.includes('network evaluations')",
                           timeout=timeout)
    return page.inner_text(selector)


def shown_pixels(page, selector) -> np.ndarray:
    """The picture an image widget shows, as served to the browser (a PNG), in uint8."""
    src = page.locator(f"{selector} img").first.get_attribute("src")
    body = page.request.get(src).body()
    arr = np.asarray(Image.open(io.BytesIO(body)))
    if arr.ndim == 3:  # a gray picture sent as RGB: every channel equal
        assert (arr[..., :3] == arr[..., :1]).all()
        arr = arr[..., 0]
    return arr


def toast(page, screenshot=None, timeout=60_000) -> str:
    """The text of the message the page shows (then closed); ``screenshot``: a picture of the page with it."""
    page.wait_for_selector("[data-testid=toast-body]", timeout=timeout)
    text = page.locator("[data-testid=toast-body]").last.inner_text()
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)
    for close in page.locator("[data-testid=toast-close]").all():
        close.click()
    return text


@browser
@pytest.mark.browser
def test_browser_generates_the_library_pixels(server, chromium, runs, shots):
    models, url = server
    page = open_page(chromium, url)
    set_number(page, "Seed", 7)
    set_number(page, "Steps (1-200)", 10)
    set_number(page, "n (1-16)", 6)
    page.click("#generate")
    info = wait_info(page, "#sample-info")
    assert re.search(r"6 samples, ipndm, 10 steps, seed 7: \d+ network evaluations", info)
    ref = library(runs["images"], 6, None, 10, 7)
    assert np.array_equal(shown_pixels(page, "#samples"), picture(ref, (1, 8, 8)))
    page.screenshot(path=os.path.join(shots, "serve_sample.png"), full_page=True)
    page.close()


@browser
@pytest.mark.browser
def test_browser_paints_a_mask_and_inpaints_keeping_the_rest(server, chromium, runs, shots):
    models, url = server
    page = open_page(chromium, url)
    set_number(page, "Seed", 5)
    set_number(page, "n (1-16)", 1)
    page.click("#generate")
    wait_info(page, "#sample-info")
    source = shown_pixels(page, "#samples")
    page.get_by_role("tab", name="Inpaint").click()
    page.get_by_role("button", name="Use last sample").first.click()
    page.wait_for_timeout(1500)
    box = page.locator("#inpaint-editor canvas").last.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5  # the image sits in the middle
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(8):
        page.mouse.move(x0 + 3 * k, y0 + 2 * k, steps=3)
    page.mouse.up()
    page.wait_for_timeout(500)
    page.screenshot(path=os.path.join(shots, "serve_inpaint_painted.png"), full_page=True)
    page.click("#inpaint")
    info = wait_info(page, "#inpaint-info")
    filled = int(re.search(r"fills of (\d+) of 64 pixels", info).group(1))
    assert 0 < filled < 64
    fills = shown_pixels(page, "#fills")
    u = display_upscale((1, 8, 8))
    src = source[1::u, 1::u][:8, :8]  # one value per model pixel (the page enlarges by whole blocks)
    changed_any = False
    for r in range(2):
        for c in range(2):
            top, left = 1 + r * (8 * u + 1), 1 + c * (8 * u + 1)  # tiles of 8u pixels, 1-pixel gaps
            tile = fills[top: top + 8 * u, left: left + 8 * u]
            model = tile[::u, ::u]
            assert (tile == np.kron(model, np.ones((u, u), np.uint8))).all()
            differ = model != src
            assert differ.sum() <= filled  # only painted pixels change
            assert (model[0] == src[0]).all() and (model[-1] == src[-1]).all()  # far from the stroke: kept
            changed_any |= bool(differ.any())
    assert changed_any
    page.screenshot(path=os.path.join(shots, "serve_inpaint.png"), full_page=True)
    page.close()


@browser
@pytest.mark.browser
def test_browser_shows_bad_values_and_keeps_serving(server, chromium, shots):
    models, url = server
    page = open_page(chromium, url)
    set_number(page, "n (1-16)", 0)
    page.click("#generate")
    message = toast(page, screenshot=os.path.join(shots, "serve_error.png"))
    assert "n (number of samples) must be between 1 and 16 (the server's limit), got 0" in message
    set_number(page, "n (1-16)", 2)
    set_number(page, "Steps (1-200)", 100000)
    page.click("#generate")
    assert "steps must be between 1 and 200" in toast(page)
    set_number(page, "Steps (1-200)", 4)
    page.click("#generate")
    assert "2 samples, ipndm, 4 steps" in wait_info(page, "#sample-info")
    page.close()


@browser
@pytest.mark.browser
def test_browser_screenshots_of_every_tab(server, chromium, shots):
    models, url = server
    page = open_page(chromium, url)
    page.click("#generate")
    wait_info(page, "#sample-info")
    for tab, button in (("Restore", "Restore"), ("img2img", "Edit"), ("Compare", "Compare")):
        page.get_by_role("tab", name=tab).click()
        takes = page.get_by_role("button", name="Use last sample")
        if tab != "Compare":
            takes.locator("visible=true").first.click()
            page.wait_for_timeout(1000)
        page.get_by_role("button", name=button, exact=True).click()
        page.wait_for_function("[...document.querySelectorAll('.prose, .md')].some(e => e.offsetParent !== null && "
                               "e.innerText.includes('network evaluations') && !e.closest('#sample-info'))",
                               timeout=120_000)
        page.wait_for_timeout(500)
        page.screenshot(path=os.path.join(shots, f"serve_{tab.lower()}.png"), full_page=True)
    page.get_by_label("Model").click()
    page.get_by_role("option", name="vec").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('vectors run')", timeout=60_000)
    assert "Sample, Compare apply" in page.inner_text("#status")
    page.get_by_role("tab", name="Inpaint").click()
    page.click("#inpaint")
    assert "a vectors run cannot inpaint" in toast(page)
    page.get_by_role("tab", name="Sample").click()
    page.click("#generate")
    wait_info(page, "#sample-info")
    page.screenshot(path=os.path.join(shots, "serve_vectors.png"), full_page=True)
    page.get_by_label("Model").click()
    page.get_by_role("option", name="aud").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('audio run')", timeout=60_000)
    set_number(page, "Seed", 3)
    page.click("#generate")
    page.wait_for_function("document.querySelector('#sample-info').innerText.includes('seed 3:')", timeout=60_000)
    page.wait_for_selector("audio", state="attached", timeout=30_000)  # the players got their clips
    page.wait_for_timeout(500)
    page.screenshot(path=os.path.join(shots, "serve_audio.png"), full_page=True)
    page.close()
