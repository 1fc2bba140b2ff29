"""The ``unnoise serve`` page: a Gradio layout whose buttons call :class:`~unnoise.commands.serve_handlers.Models`.

Every event shares one queue slot (``concurrency_id="device"``): one job at a time on the device, the others
wait in line.  Stop cancels the running job at its next network call.  A bad value or a failed job shows a
one-line message on the page (``gr.Error``); the server keeps serving.  Gradio is an optional dependency,
imported only when the page is built.
"""
from __future__ import annotations

import threading

import numpy as np

from ..inverse import available as available_methods
from ..samplers import DEFAULT_SAMPLER
from ..samplers import available as available_samplers
from .serve_handlers import AUDIO_PLAYERS, INPAINT_METHODS, OPERATORS, Cancelled, Models, capabilities, picture

POLL = 0.2  # seconds between looks at the running job's latest denoised estimate


def message(err: BaseException) -> str:
    """One line for the page: the message of a user error, the type and message of anything else."""
    if isinstance(err, (ValueError, FileNotFoundError)):
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, Cancelled):
        return "stopped"
    return f"internal error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")


def painted_region(editor) -> np.ndarray | None:
    """``(h, w)`` booleans, True where the visitor painted on the ImageEditor (any layer's opaque pixels)."""
    if not editor or not editor.get("layers"):
        return None
    out = None
    for layer in editor["layers"]:
        arr = np.asarray(layer)
        hit = arr[..., 3] > 0 if arr.ndim == 3 and arr.shape[2] == 4 else (arr.reshape(*arr.shape[:2], -1) > 0).any(-1)
        out = hit if out is None else out | hit
    return out


def editor_image(editor):
    """The picture under the paint (the uploaded or taken image) of an ImageEditor value."""
    if not editor:
        return None
    bg = editor.get("background")
    if bg is None:
        return None
    arr = np.asarray(bg)
    return arr[..., :3] if arr.ndim == 3 and arr.shape[2] == 4 else arr


def stream(models: Models, pipe_name: str, job):
    """Run ``job(on_step)`` in a worker thread; yield ``(step, total, preview)`` while it runs, then the result
    as ``(None, None, result)``; a failure raises ``gr.Error`` with one line; a stopped job yields nothing more."""
    import gradio as gr
    latest, done = {}, {}

    def on_step(i, total, den):
        latest["step"] = (i, total, den)

    def work():
        try:
            done["result"] = job(on_step)
        except BaseException as err:  # handed to the page as one line
            done["error"] = err
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    seen = None
    try:
        while worker.is_alive():
            worker.join(POLL)
            step = latest.get("step")
            if step is not None and step is not seen and worker.is_alive():
                seen = step
                yield step[0], step[1], models.preview(models.pipe, step[2])
    finally:
        if worker.is_alive():  # the page went away or Stop was pressed: free the device
            models.cancel()
    if isinstance(done.get("error"), Cancelled):  # Stop: the Stop button already said so
        return
    if "error" in done:
        raise gr.Error(message(done["error"]), print_exception=False)
    yield None, None, done["result"]


def guarded(fn):
    """``fn`` with every exception turned into a one-line ``gr.Error`` (never a traceback on the page)."""
    import gradio as gr

    def call(*args):
        try:
            return fn(*args)
        except gr.Error:
            raise
        except Exception as err:
            raise gr.Error(message(err), print_exception=False) from None
    return call


def build(models: Models):
    """The page (a ``gr.Blocks``) for the runs of ``models``."""
    import gradio as gr
    caps = models.capabilities()
    tabs = models.tabs()
    pipe = models.pipe
    samplers = available_samplers()
    limits = models.limits
    device = {"concurrency_id": "device", "concurrency_limit": 1}

    def classes_of(p):
        return ["none"] + (list(p.class_names) or [str(i) for i in range(p.num_classes)])

    with gr.Blocks(title="unnoise") as page:
        gr.Markdown("## unnoise")
        with gr.Row():
            model = gr.Dropdown(list(models.runs), value=models.name, label="Model", interactive=len(models.runs) > 1)
            reload = gr.Button("Reload run", scale=0)
            stop = gr.Button("Stop", variant="stop", scale=0)
        status = gr.Markdown(models.describe(), elem_id="status")
        last = gr.State(None)  # the first image of the last samples, for Inpaint / Restore / img2img

        with gr.Tab("Sample", visible=tabs["sample"], id="sample"):
            with gr.Row():
                sampler = gr.Dropdown(samplers, value=DEFAULT_SAMPLER, label="Sampler")
                steps = gr.Number(20, label=f"Steps (1-{limits.max_steps})", precision=0)
                seed = gr.Number(0, label="Seed", precision=0)
                n = gr.Number(4, label=f"n (1-{limits.max_n})", precision=0)
            with gr.Row():
                label = gr.Dropdown(classes_of(pipe), value="none", label="Class", visible=caps.classes)
                prompt = gr.Textbox(label="Prompt", visible=caps.prompt)
                scale = gr.Number(1.0, label="Guidance scale", visible=caps.classes or caps.prompt)
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            info = gr.Markdown(elem_id="sample-info")
            with gr.Row():
                shown = gr.Image(label="Samples (live: the denoised estimate)", type="numpy", format="png",
                                 interactive=False, elem_id="samples", visible=caps.image)
                plot = gr.Image(label="Plot", type="filepath", interactive=False, visible=not caps.image)
            players = [gr.Audio(label=f"Clip {i + 1}", interactive=False, visible=caps.audio)
                       for i in range(AUDIO_PLAYERS)]
            download = gr.File(label="Samples (.npy)", interactive=False)

        def run_sample(name, smp, k, sd, gs, lab, pr, count):
            job = (lambda on_step: models.sample(name, smp, k, sd, gs, lab, pr, count, on_step=on_step))
            for i, total, out in stream(models, name, job):
                if i is not None:
                    yield {info: f"step {i + 1} / {total}", **({shown: out} if out is not None else {})}
                else:
                    clips = out["audio"] + [None] * (AUDIO_PLAYERS - len(out["audio"]))
                    first = None if out["image"] is None else picture(out["samples"][:1], models.pipe.shape, pad=0)
                    yield {shown: out["image"], plot: out["plot"], download: out["npy"], info: out["info"],
                           last: first, **dict(zip(players, clips))}

        sample_event = generate.click(run_sample, [model, sampler, steps, seed, scale, label, prompt, n],
                                      [shown, plot, download, info, last, *players], api_name="sample", **device)

        with gr.Tab("Inpaint", visible=tabs["inpaint"], id="inpaint"):
            with gr.Row():
                editor = gr.ImageEditor(label="Image: paint the region to fill", type="numpy", image_mode="RGB",
                                        brush=gr.Brush(colors=["#ff00ff"], default_size=24, color_mode="fixed"),
                                        layers=False, elem_id="inpaint-editor", format="png")
                filled = gr.Image(label="Fills", type="numpy", format="png", interactive=False, elem_id="fills")
            with gr.Row():
                take = gr.Button("Use last sample")
                method = gr.Dropdown(list(INPAINT_METHODS), value="replace", label="Method")
                i_steps = gr.Number(50, label="Steps", precision=0)
                i_seed = gr.Number(0, label="Seed", precision=0)
                i_n = gr.Number(4, label="n", precision=0)
            inpaint = gr.Button("Inpaint", variant="primary", elem_id="inpaint")
            i_info = gr.Markdown(elem_id="inpaint-info")

        def run_inpaint(name, ed, meth, k, sd, count):
            out = models.inpaint(name, editor_image(ed), painted_region(ed), meth, "ddpm", k, sd, count)
            return out["image"], out["info"]

        def editor_value(img):
            if img is None:
                raise ValueError("generate samples first (Sample tab)")
            return {"background": img, "layers": [], "composite": img}
        take.click(guarded(editor_value), [last], [editor])
        inpaint_event = inpaint.click(guarded(run_inpaint), [model, editor, method, i_steps, i_seed, i_n],
                                      [filled, i_info], api_name="inpaint", **device)

        with gr.Tab("Restore", visible=tabs["restore"], id="restore"):
            with gr.Row():
                r_editor = gr.ImageEditor(label="Clean image (for 'mask': paint the unknown region)", type="numpy",
                                          image_mode="RGB", layers=False, format="png",
                                          brush=gr.Brush(colors=["#ff00ff"], default_size=24, color_mode="fixed"))
                measured = gr.Image(label="Measurement", type="numpy", format="png", interactive=False)
                restored = gr.Image(label="Restorations", type="numpy", format="png", interactive=False)
            with gr.Row():
                r_take = gr.Button("Use last sample")
                operator = gr.Dropdown(list(OPERATORS), value="blur", label="Operator")
                parameter = gr.Number(1.0, label="Blur sigma / downsampling factor")
                noise = gr.Number(0.05, label="Noise level")
                r_method = gr.Dropdown(available_methods(), value="mmps", label="Method")
                r_steps = gr.Number(30, label="Steps", precision=0)
                r_seed = gr.Number(0, label="Seed", precision=0)
                r_n = gr.Number(4, label="n", precision=0)
            restore = gr.Button("Restore", variant="primary")
            r_info = gr.Markdown()

        def run_restore(name, ed, op, par, noi, meth, k, sd, count):
            out = models.restore(name, editor_image(ed), op, par, noi, meth, k, sd, count, painted=painted_region(ed))
            return out["measurement"], out["image"], out["info"]
        r_take.click(guarded(editor_value), [last], [r_editor])
        restore_event = restore.click(guarded(run_restore), [model, r_editor, operator, parameter, noise, r_method,
                                                             r_steps, r_seed, r_n],
                                      [measured, restored, r_info], api_name="restore", **device)

        with gr.Tab("img2img", visible=tabs["img2img"], id="img2img"):
            with gr.Row():
                source = gr.Image(label="Image", type="numpy", format="png", image_mode="RGB")
                edited = gr.Image(label="Edits", type="numpy", format="png", interactive=False)
            with gr.Row():
                e_take = gr.Button("Use last sample")
                strength = gr.Slider(0.0, 1.0, 0.5, label="Strength")
                e_sampler = gr.Dropdown(samplers, value="ddim", label="Sampler")
                e_steps = gr.Number(50, label="Steps", precision=0)
                e_seed = gr.Number(0, label="Seed", precision=0)
                e_n = gr.Number(4, label="n", precision=0)
            edit = gr.Button("Edit", variant="primary")
            e_info = gr.Markdown()

        def run_img2img(name, img, st, smp, k, sd, count):
            out = models.img2img(name, img, st, smp, k, sd, count)
            return out["image"], out["info"]
        e_take.click(lambda img: img, [last], [source])
        edit_event = edit.click(guarded(run_img2img), [model, source, strength, e_sampler, e_steps, e_seed, e_n],
                                [edited, e_info], api_name="img2img", **device)

        with gr.Tab("Compare", visible=tabs["compare"], id="compare"):
            with gr.Row():
                with gr.Column():
                    c_sampler_a = gr.Dropdown(samplers, value=DEFAULT_SAMPLER, label="Sampler A")
                    c_steps_a = gr.Number(10, label="Steps A", precision=0)
                    c_a = gr.Image(label="A", type="numpy", format="png", interactive=False, visible=caps.image)
                    c_plot_a = gr.Image(label="A", type="filepath", interactive=False, visible=not caps.image)
                with gr.Column():
                    c_sampler_b = gr.Dropdown(samplers, value="ddim", label="Sampler B")
                    c_steps_b = gr.Number(10, label="Steps B", precision=0)
                    c_b = gr.Image(label="B", type="numpy", format="png", interactive=False, visible=caps.image)
                    c_plot_b = gr.Image(label="B", type="filepath", interactive=False, visible=not caps.image)
            with gr.Row():
                c_seed = gr.Number(0, label="Seed (the same noise for both)", precision=0)
                c_n = gr.Number(4, label="n", precision=0)
            compare = gr.Button("Compare", variant="primary")
            c_info = gr.Markdown()

        def run_compare(name, sa, ka, sb, kb, sd, count):
            a, b = models.compare(name, sa, ka, sb, kb, sd, count)
            return a["image"], b["image"], a["plot"], b["plot"], f"A: {a['info']}  \nB: {b['info']}"
        compare_event = compare.click(guarded(run_compare), [model, c_sampler_a, c_steps_a, c_sampler_b, c_steps_b,
                                                             c_seed, c_n],
                                      [c_a, c_b, c_plot_a, c_plot_b, c_info], api_name="compare", **device)

        def switch(name, again=False):
            p = models.pipeline(name, reload=again)
            c = capabilities(p)
            return [gr.update(choices=classes_of(p), value="none", visible=c.classes), gr.update(visible=c.prompt),
                    gr.update(visible=c.classes or c.prompt), gr.update(visible=c.image),
                    gr.update(visible=not c.image), gr.update(visible=c.image), gr.update(visible=c.image),
                    gr.update(visible=not c.image), gr.update(visible=not c.image),
                    *[gr.update(visible=c.audio)] * AUDIO_PLAYERS, ("reloaded: " if again else "") + models.describe()]
        switched = [label, prompt, scale, shown, plot, c_a, c_b, c_plot_a, c_plot_b, *players, status]
        model.change(guarded(switch), [model], switched, **device)
        reload.click(guarded(lambda name: switch(name, True)), [model], switched, **device)
        def stop_job():
            running = models.lock.locked()
            models.cancel()
            return "stopped" if running else "nothing was running"
        stop.click(stop_job, None, [info], queue=False,
                   cancels=[sample_event, inpaint_event, restore_event, edit_event, compare_event])
    return page
