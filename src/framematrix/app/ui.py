"""The Gradio page of ``framematrix serve``: input, depth, options, preview, Convert, Result.

Gradio is imported here only, when the app is built (it is an optional dependency).
No ``from __future__ import annotations``: Gradio injects ``gr.Request`` by the annotation.
"""

import html
import logging
import threading
import time
from pathlib import Path

from framematrix.app.core import (
    APP_FORMATS,
    DEPTH_UPLOAD_EXTENSIONS,
    FILL_CHOICES,
    INPUT_EXTENSIONS,
    Settings,
    WorkFolder,
    adopt_upload,
    depth_model_choices,
    diffusion_weights_found,
    output_name,
    prepare_depth,
    preview_frame,
    probe_input,
    read_input_frame,
    write_demo_input,
)
from framematrix.config import PRESETS, preset
from framematrix.errors import FramematrixError
from framematrix.jobs import Job, Session, one_line

logger = logging.getLogger(__name__)

POLL_S = 0.25
DEPTH_NONE = (
    "Depth: estimated with the depth model, or upload a depth video (8/16-bit grayscale,"
    " lossless; large = near) or a depth file (.npy [F, H, W], .npz, .png, .pfm)."
)

CSS = """
#fm-title h1 {margin-bottom: 0}
#fm-message {min-height: 1.6em}
#fm-message p {margin: 0; font-weight: 600}
.fm-progress {font-family: var(--font-mono); font-size: 0.9em}
.fm-bar {height: 14px; border-radius: 7px; background: var(--neutral-200); overflow: hidden}
.fm-fill {height: 100%; background: var(--color-accent); transition: width 0.2s}
.fm-done .fm-fill {background: #2e9d58}
.fm-failed .fm-fill, .fm-cancelled .fm-fill {background: #c0392b}
"""

INTRO = (
    "# framematrix\n"
    "Monocular video to stereoscopic 3D by the frame-matrix method (SVG, ICLR 2025). "
    "Upload a clip (or take the bundled demo), optionally its depth, look at one frame in 3D, "
    "then convert. Everything runs on this machine; files are deleted when you close the tab."
)


def _message(text: str) -> str:
    """A one-line message for the page (Markdown)."""
    return " ".join(str(text).split())


def _friendly(exc: BaseException) -> str:
    if isinstance(exc, FramematrixError):
        return f"⚠ {one_line(exc)}"
    logger.exception("unexpected error in the web app")
    return f"⚠ internal error: {type(exc).__name__}: {one_line(exc)}"


def progress_html(job: Job | None, session: Session | None = None) -> str:
    """The progress bar of a job: state, pass, frames done of total, rate and ETA."""
    if job is None:
        return "<div class='fm-progress' id='fm-progress' data-state='idle'></div>"
    fraction = 0.0
    text = job.state
    event = job.latest()
    if job.state == "queued":
        ahead = session.position(job) if session is not None else None
        text = "queued" + (f": {ahead} job(s) ahead" if ahead else ": starting")
    elif event is not None:
        total = event.total
        done = event.done
        unit = event.unit + ("s" if total != 1 else "")
        if total:
            fraction = min(1.0, done / total)
            text = f"{event.pass_name}: {done}/{total} {unit}"
        else:
            text = f"{event.pass_name}: {done} {unit}"
        if event.rate > 0 and not event.finished:
            text += f" · {event.rate:.1f} {event.unit}/s"
        if event.eta_s is not None and not event.finished:
            text += f" · ETA {event.eta_s:.0f} s"
        passes = list(job.events)
        if len(passes) > 1:
            text = f"pass {len(passes)} · " + text
    if job.state == "done":
        fraction = 1.0
        result = job.result
        frames = getattr(result, "frames", None)
        seconds = getattr(result, "seconds", None)
        text = "done" + (f": {frames} frames" if frames is not None else "")
        text += f" in {seconds:.1f} s" if seconds is not None else ""
    elif job.state == "cancelled":
        text = "cancelled: nothing was written"
    elif job.state == "failed":
        text = f"failed: {job.error}"
    width = f"{fraction * 100:.1f}%"
    return (
        f"<div class='fm-progress fm-{job.state}' id='fm-progress' data-state='{job.state}'>"
        f"<div class='fm-bar'><div class='fm-fill' style='width:{width}'></div></div>"
        f"<div class='fm-text'>{html.escape(text)}</div></div>"
    )


def build_app(
    session: Session,
    work: WorkFolder,
    *,
    upload_roots: list[Path],
    depth_models: list[str] = (),
):
    """The Gradio Blocks of the page. ``session`` runs the jobs; ``work`` holds the files."""
    import gradio as gr

    models = depth_model_choices(list(depth_models))
    found = [m for m in models if m.found]
    missing = [m for m in models if not m.found]
    default_model = next((m.name for m in found if m.name == "v1-large"), None)
    if default_model is None and found:
        default_model = found[0].name
    have_zeroscope = diffusion_weights_found()
    fill_labels = [
        ("fast (geometric, CPU)", "fast"),
        ("none (holes stay black)", "none"),
        (
            "diffusion (zeroscope)" + ("" if have_zeroscope else " — weights not found"),
            "diffusion",
        ),
    ]
    assert [v for _, v in fill_labels] == list(FILL_CHOICES)

    def tab(request: gr.Request):
        return work.get(request.session_hash or "anonymous")

    def settings_of(preset_name, fmt, budget, convergence, fill, model) -> Settings:
        return Settings(
            preset=preset_name,
            format=fmt,
            depth_budget=budget,
            convergence=convergence,
            fill=fill,
            depth_model=model,
        )

    # -- handlers ------------------------------------------------------------------------

    def on_input(upload, request: gr.Request):
        browser = tab(request)
        if upload is None:
            return on_input_clear(request)
        name = Path(upload).name
        try:
            path = adopt_upload(upload, upload_roots, browser.folder / "input")
            info = probe_input(path, name)
            first = read_input_frame(info, 0)
        except Exception as exc:
            browser.input = None
            # the bad file leaves the upload box, so another one can be dropped there
            return None, "No input.", _friendly(exc), gr.update(maximum=1, value=0), None
        browser.input = info
        message = ""
        if browser.depth is not None:
            message = "New input: upload its depth again (or clear the depth)."
            browser.depth = None
        frames = gr.update(maximum=max(1, info.frames - 1), value=0)
        return gr.update(), info.describe(), message, frames, first

    def on_input_clear(request: gr.Request):
        browser = tab(request)
        browser.input = None
        return None, "No input.", "", gr.update(maximum=1, value=0), None

    def on_demo(request: gr.Request):
        browser = tab(request)
        try:
            info, depth = write_demo_input(browser.folder / "input")
            first = read_input_frame(info, 0)
        except Exception as exc:
            return (gr.update(),) * 4 + (_friendly(exc), gr.update(), gr.update())
        browser.input = info
        browser.depth = depth
        browser.depth_name = "depth of the demo clip (bundled)"
        return (
            None,
            None,
            info.describe(),
            f"Depth: {browser.depth_name}",
            "",
            gr.update(maximum=max(1, info.frames - 1), value=0),
            first,
        )

    def on_depth(upload, request: gr.Request):
        browser = tab(request)
        if upload is None:
            return on_depth_clear(request)
        name = Path(upload).name
        if browser.input is None:
            return None, DEPTH_NONE, "⚠ upload the input video first, then its depth"
        try:
            path = adopt_upload(upload, upload_roots, browser.folder / "depth")
            browser.depth = prepare_depth(path, browser.input, name)
            browser.depth_name = name
        except Exception as exc:
            browser.depth = None
            return None, DEPTH_NONE, _friendly(exc)
        return gr.update(), f"Depth: **{name}** (used as given, relative inverse depth)", ""

    def on_depth_clear(request: gr.Request):
        tab(request).depth = None
        return None, DEPTH_NONE, ""

    def on_preset(name):
        try:
            chosen = preset(name)
        except ValueError:
            return gr.update(), gr.update(), gr.update()
        budget = chosen.stereo.depth_budget or 0.0  # 0: the preset's own rig (paper)
        return chosen.fill, budget, chosen.stereo.convergence

    def on_preview(index, preset_name, fmt, budget, conv, fill, model, request: gr.Request):
        browser = tab(request)
        blank = (None, None, None, None)
        if browser.input is None:
            return (*blank, "⚠ upload an input video or image first (or use the demo clip)")
        if browser.depth is None and model is None:
            return (*blank, "⚠ no depth model found here: upload a depth video")
        try:
            preview = preview_frame(
                browser.input,
                int(index or 0),
                settings_of(preset_name, fmt, budget, conv, fill, model),
                browser.folder / "preview",
                depth_path=browser.depth,
                models=session.models,
            )
        except Exception as exc:
            return (*blank, _friendly(exc))
        note = f"Preview of frame {int(index or 0)}"
        if preview.note:
            note += f" ({preview.note})"
        return (
            str(preview.anaglyph),
            str(preview.sbs),
            str(preview.wiggle),
            str(preview.depth),
            _message(note),
        )

    def on_convert(preset_name, fmt, budget, conv, fill, model, request: gr.Request):
        browser = tab(request)
        if browser.input is None:
            yield progress_html(None), None, "⚠ upload an input video or image first"
            return
        previous = session.jobs.get(browser.job_id or "")
        if previous is not None and not previous.done:
            yield gr.update(), gr.update(), "⚠ a conversion of this tab is still running"
            return
        if browser.depth is None and model is None:
            yield progress_html(None), None, "⚠ no depth model found here: upload a depth video"
            return
        try:
            config = settings_of(preset_name, fmt, budget, conv, fill, model).config()
        except Exception as exc:
            yield progress_html(None), None, _friendly(exc)
            return
        info = browser.input
        folder = browser.job_folder()
        job = session.submit(
            info.path,
            folder / output_name(info, fmt),
            depth=browser.depth,
            config=config,
            fps=None if info.kind == "video" else info.fps,
            cache_dir=browser.folder / "cache",
            job_id=f"{browser.key[:8]}-{folder.name}",
        )
        browser.job_id = job.id
        while not job.done:
            browser.touch()
            yield progress_html(job, session), None, ""
            time.sleep(POLL_S)
        if job.state == "done":
            yield progress_html(job, session), str(job.output), ""
        elif job.state == "failed":
            yield progress_html(job, session), None, f"⚠ {job.error}"
        else:
            yield progress_html(job, session), None, "Cancelled: nothing was written."

    def on_cancel(request: gr.Request):
        browser = tab(request)
        job = session.jobs.get(browser.job_id or "")
        if job is None or job.done:
            return "Nothing to cancel."
        job.cancel()
        return "Cancelling…"

    def on_unload(request: gr.Request):
        _forget(session, work, request.session_hash or "anonymous")

    # -- layout --------------------------------------------------------------------------

    with gr.Blocks(
        title="framematrix",
        analytics_enabled=False,
        delete_cache=(600, int(work.keep_s)),
    ) as blocks:
        gr.Markdown(INTRO, elem_id="fm-title")
        message = gr.Markdown("", elem_id="fm-message")
        with gr.Row():
            with gr.Column(scale=1):
                input_file = gr.File(
                    label="Input video",
                    file_types=list(INPUT_EXTENSIONS),
                    elem_id="fm-input",
                    height=110,
                )
                demo_button = gr.Button("Use the demo clip", size="sm", elem_id="fm-demo")
                input_info = gr.Markdown("No input.", elem_id="fm-input-info")
                depth_file = gr.File(
                    label="Depth video",
                    file_types=list(DEPTH_UPLOAD_EXTENSIONS),
                    elem_id="fm-depth",
                    height=110,
                )
                depth_info = gr.Markdown(DEPTH_NONE, elem_id="fm-depth-info")
            with gr.Column(scale=1):
                preset_box = gr.Dropdown(
                    list(PRESETS), value="default", label="Preset", elem_id="fm-preset"
                )
                format_box = gr.Dropdown(
                    list(APP_FORMATS), value="sbs", label="Output format", elem_id="fm-format"
                )
                budget_box = gr.Slider(
                    0.0,
                    10.0,
                    value=Settings.depth_budget,
                    step=0.1,
                    label="Depth budget (% of width; 0 = the preset's rig)",
                    elem_id="fm-depth-budget",
                )
                convergence_box = gr.Slider(
                    0.0,
                    1.0,
                    value=Settings.convergence,
                    step=0.05,
                    label="Convergence (0 = all behind the screen, 1 = all in front)",
                    elem_id="fm-convergence",
                )
                fill_box = gr.Dropdown(
                    fill_labels, value="fast", label="Fill method", elem_id="fm-fill"
                )
                model_box = gr.Dropdown(
                    [m.name for m in found],
                    value=default_model,
                    label="Depth model",
                    info="only models whose weights are on this machine",
                    elem_id="fm-model",
                    allow_custom_value=False,
                )
                if not found:
                    gr.Markdown(
                        "No depth model found here: upload a depth video, or get one (see"
                        " below) and restart.",
                        elem_id="fm-no-model",
                    )
                if missing:
                    rows = "\n".join(f"| `{m.name}` | {m.hint} |" for m in missing)
                    with gr.Accordion(f"Depth models not found here ({len(missing)})", open=False):
                        gr.Markdown(
                            "| model | how to get it |\n|---|---|\n" + rows,
                            elem_id="fm-missing-models",
                        )
            with gr.Column(scale=1):
                first_frame = gr.Image(
                    label="Input frame", interactive=False, height=200, elem_id="fm-frame"
                )
                frame_box = gr.Slider(
                    0, 1, value=0, step=1, label="Frame to preview", elem_id="fm-frame-index"
                )
                preview_button = gr.Button("Preview", elem_id="fm-preview")
        with gr.Row():
            anaglyph = gr.Image(label="Anaglyph (red-cyan)", interactive=False, height=220)
            sbs = gr.Image(label="Side by side", interactive=False, height=220)
            wiggle = gr.Image(label="Wiggle (left/right)", interactive=False, height=220)
            depth_view = gr.Image(label="Depth", interactive=False, height=220)
        with gr.Row():
            convert_button = gr.Button("Convert", variant="primary", elem_id="fm-convert")
            cancel_button = gr.Button("Cancel", variant="stop", elem_id="fm-cancel")
        progress = gr.HTML(progress_html(None), elem_id="fm-progress-box")
        result = gr.File(label="Result", interactive=False, elem_id="fm-result")

        options = [preset_box, format_box, budget_box, convergence_box, fill_box, model_box]
        input_outputs = [input_file, input_info, message, frame_box, first_frame]
        input_file.upload(on_input, [input_file], input_outputs)
        input_file.clear(on_input_clear, None, input_outputs)
        demo_button.click(
            on_demo,
            None,
            [input_file, depth_file, input_info, depth_info, message, frame_box, first_frame],
        )
        depth_file.upload(on_depth, [depth_file], [depth_file, depth_info, message])
        depth_file.clear(on_depth_clear, None, [depth_file, depth_info, message])
        preset_box.change(on_preset, [preset_box], [fill_box, budget_box, convergence_box])
        preview_button.click(
            on_preview,
            [frame_box, *options],
            [anaglyph, sbs, wiggle, depth_view, message],
            concurrency_limit=2,
        )
        # The handler only submits to the Session and polls: the Session runs one job at a
        # time, so tabs are not held in Gradio's queue and see their place in ours.
        convert_button.click(
            on_convert, options, [progress, result, message], concurrency_limit=None
        )
        cancel_button.click(on_cancel, None, [message], concurrency_limit=None)
        blocks.unload(on_unload)
    return blocks


def _forget(session: Session, work: WorkFolder, key: str) -> None:
    browser = work.drop(key)
    if browser is not None and browser.job_id:
        job = session.jobs.get(browser.job_id)
        if job is not None:
            job.cancel()


def start_sweeper(session: Session, work: WorkFolder, every_s: float = 60.0) -> threading.Event:
    """Delete the files of tabs idle longer than ``work.keep_s`` (a daemon thread)."""
    stop = threading.Event()

    def sweep() -> None:
        while not stop.wait(every_s):
            for key in work.expired():
                browser = work._sessions.get(key)
                job = session.jobs.get(browser.job_id or "") if browser else None
                if job is not None and not job.done:
                    continue  # a running conversion keeps its tab alive
                _forget(session, work, key)

    threading.Thread(target=sweep, name="framematrix-sweeper", daemon=True).start()
    return stop
