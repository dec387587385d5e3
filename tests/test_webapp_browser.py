"""The web app in a real browser: Debian's Chromium driven by Playwright, against a server
started here as a subprocess on a free local port.

Skips (with the reason) only where Gradio, Playwright or /usr/bin/chromium are missing;
``.ci/run`` installs Chromium when it is missing. Set FRAMEMATRIX_WEBAPP_SCREENSHOT=PATH to
save the page after the conversion (docs/webapp.png is made that way).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from test_jobs import decoded_shape, make_clip
from test_webapp import write_depth_video

pytest.importorskip("gradio", reason="gradio is not installed (pip install gradio)")

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAX_UPLOAD_MB = 1

# The server of `python -m framematrix.app` (the same argument parsing and serve()), with one
# change for the cancel test: inputs whose name starts with "slow" get every progress update
# slowed down, so that Cancel lands while the real conversion is running.
LAUNCHER = """
import sys, time
from framematrix.app.__main__ import main
from framematrix.jobs import Session, run_convert

def runner(input, output, *, progress, **kwargs):
    if input.name.startswith("slow"):
        inner = progress.callback
        def callback(event):
            inner(event)
            time.sleep(0.5)
        progress.callback = callback
    return run_convert(input, output, progress=progress, **kwargs)

sys.exit(main(sys.argv[1:], session=Session(runner=runner)))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    clip = make_clip(folder)
    depth = write_depth_video(folder / "clip_depth.mkv", np.load(folder / "clip_depth.npy"))
    slow = folder / "slow_clip.mp4"
    shutil.copyfile(clip, slow)
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    large = folder / "large.mp4"
    large.write_bytes(os.urandom(int((MAX_UPLOAD_MB + 0.5) * 1024 * 1024)))
    return {"clip": clip, "depth": depth, "slow": slow, "broken": broken, "large": large}


class Server:
    """``python -m framematrix.app``'s main() in a subprocess (started at once, waited for
    by :meth:`ready`, so the browser starts meanwhile)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        paths = [str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
        self.log = open(work.parent / "serve.log", "w+")
        argv = ["--port", str(port), "--work-dir", str(work)]
        argv += ["--max-upload-mb", str(MAX_UPLOAD_MB)]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, *argv],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._ready = False

    def ready(self) -> Server:
        deadline = time.time() + 120
        while not self._ready:
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    self._ready = response.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if self._ready:
                break
            if self.proc.poll() is not None or time.time() > deadline:
                self.log.seek(0)
                self.proc.kill()
                pytest.fail(f"the server did not start: {self.log.read()[-2000:]}")
            time.sleep(0.3)
        return self

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def server_process(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("serve-work"))
    yield server
    server.stop()


@pytest.fixture
def server(server_process, media, browser):
    return server_process.ready()


@pytest.fixture(scope="module")
def browser(server_process):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server.url)
    page.get_by_role("button", name="Convert", exact=True).wait_for()
    yield page
    context.close()


def upload(page, label: str, path: Path) -> None:
    """Put a file into the upload labelled ``label`` (its hidden file input)."""
    block = page.locator(".block", has=page.get_by_text(label, exact=True)).last
    block.locator("input[type=file]").set_input_files(str(path))


def wait_text(page, selector: str, text: str, timeout: float = 30_000) -> None:
    page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)",
        arg=[selector, text],
        timeout=timeout,
    )


def progress_state(page) -> str:
    return page.locator("#fm-progress").get_attribute("data-state") or ""


def outputs_in(work: Path) -> list[Path]:
    return [p for p in (work / "sessions").glob("*/job*/*") if not p.name.startswith(".")]


def test_convert_in_the_browser_and_download_the_result(page, server, media, tmp_path):
    upload(page, "Input video", media["clip"])
    wait_text(page, "#fm-input-info", "128x96, 24 frames")
    upload(page, "Depth video", media["depth"])
    wait_text(page, "#fm-depth-info", "clip_depth.mkv")
    assert page.inner_text("#fm-message").strip() == ""

    page.get_by_role("button", name="Preview", exact=True).click()
    wait_text(page, "#fm-message", "Preview of frame 0")
    for label in ("Anaglyph (red-cyan)", "Side by side", "Wiggle (left/right)", "Depth"):
        block = page.locator(".block", has=page.get_by_text(label, exact=True)).last
        block.locator("img").first.wait_for()
    sbs = page.locator(".block", has=page.get_by_text("Side by side", exact=True)).last
    size = sbs.locator("img").first.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert size == [256, 96]

    page.get_by_role("button", name="Convert", exact=True).click()
    result = page.locator("#fm-result")
    link = result.locator("a[download], a[href*='file=']").first
    link.wait_for(timeout=60_000)
    wait_text(page, "#fm-progress", "done: 24 frames")
    assert progress_state(page) == "done"
    with page.expect_download() as download_info:
        link.click()
    target = tmp_path / "result.mp4"
    download_info.value.save_as(target)
    assert decoded_shape(target) == (24, 96, 256)  # full SBS: twice the width, every frame


def test_the_demo_clip_previews_and_converts(page, server):
    page.get_by_role("button", name="Use the demo clip", exact=True).click()
    wait_text(page, "#fm-input-info", "576x320, 16 frames")
    wait_text(page, "#fm-depth-info", "demo clip")
    page.locator("#fm-frame-index input[type=number]").fill("8")
    page.locator("#fm-frame-index input[type=number]").press("Enter")
    page.locator("#fm-format input").click()
    page.get_by_role("option", name="half-sbs", exact=True).click()
    page.get_by_role("button", name="Preview", exact=True).click()
    wait_text(page, "#fm-message", "Preview of frame 8")
    page.get_by_role("button", name="Convert", exact=True).click()
    link = page.locator("#fm-result a[download], #fm-result a[href*='file=']").first
    link.wait_for(timeout=60_000)
    wait_text(page, "#fm-progress", "done: 16 frames")
    shot = os.environ.get("FRAMEMATRIX_WEBAPP_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)
    shown = "".join(page.inner_text("#fm-result").split())  # Gradio breaks the name before .mp4
    assert "astronaut_bundled_demo_half-sbs.mp4" in shown


def test_cancel_a_running_conversion(page, server, media):
    before = set(outputs_in(server.work))
    upload(page, "Input video", media["slow"])
    wait_text(page, "#fm-input-info", "slow_clip.mp4")
    upload(page, "Depth video", media["depth"])
    wait_text(page, "#fm-depth-info", "clip_depth.mkv")
    page.get_by_role("button", name="Convert", exact=True).click()
    page.wait_for_function(
        "() => document.querySelector('#fm-progress')?.dataset.state === 'running'"
    )
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.wait_for_function(
        "() => document.querySelector('#fm-progress')?.dataset.state === 'cancelled'"
    )
    wait_text(page, "#fm-message", "Cancelled: nothing was written.")
    assert page.locator("#fm-result a").count() == 0
    assert set(outputs_in(server.work)) == before  # no output, no half-written file


def test_bad_uploads_show_one_line_and_the_server_keeps_running(page, server, media):
    upload(page, "Input video", media["broken"])
    wait_text(page, "#fm-message", "broken.mp4")
    message = page.inner_text("#fm-message").strip()
    assert "\n" not in message and message.startswith("⚠ broken.mp4: ")
    assert str(server.work) not in message  # the app's own paths are not shown
    assert "No input." in page.inner_text("#fm-input-info")

    upload(page, "Input video", media["large"])  # Gradio refuses it before it is sent
    page.get_by_text("exceed the maximum allowed size", exact=False).first.wait_for()
    assert "large.mp4" in page.get_by_text("exceed the maximum allowed size").first.inner_text()

    assert server.proc.poll() is None
    upload(page, "Input video", media["clip"])
    wait_text(page, "#fm-input-info", "128x96, 24 frames")


def test_the_server_serves_no_file_it_did_not_write(server_process):
    server = server_process.ready()
    for path in ("/etc/passwd", str(ROOT / "pyproject.toml"), str(server.work)):
        url = f"{server.url}gradio_api/file={path}"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url, timeout=5)
        assert info.value.code in (403, 404)
