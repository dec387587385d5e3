"""``framematrix serve``: a local web app (Gradio) on the job API.

:func:`serve` binds 127.0.0.1 unless told otherwise, makes no public share link unless asked,
limits uploads, keeps every file in its own work folder and deletes a tab's files when the tab
closes (or after ``keep_s`` idle seconds). Needs the ``web`` extra: ``pip install gradio``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from framematrix.errors import FramematrixError
from framematrix.jobs import Session

__all__ = ["LOCAL_HOSTS", "host_warning", "serve"]

logger = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_warning(host: str, share: bool) -> str | None:
    """The warning to print for a host other than this machine or a public share link."""
    parts = []
    if host not in LOCAL_HOSTS:
        parts.append(
            f"serving on {host}: anyone who can reach this machine on the network can use the"
            " app (upload files, run jobs on its CPU/GPU)"
        )
    if share:
        parts.append("a public share link is made: anyone with the link can use the app")
    return "; ".join(parts) or None


def serve(
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    max_upload_mb: float = 500.0,
    work_dir: str | Path | None = None,
    *,
    depth_models: Sequence[str | Path] = (),
    keep_s: float = 3600.0,
    session: Session | None = None,
) -> None:
    """Run the web app until interrupted (Ctrl-C).

    host, port: where to listen (127.0.0.1: this machine only; any other host prints a
        warning). share: ask Gradio for a public share link (off by default; warns).
    max_upload_mb: largest upload accepted, in MB (Gradio's ``max_file_size``).
    work_dir: the app's folder for uploads, previews and results (default: a new temporary
        folder, removed on exit); a tab's files are deleted when it closes or after
        ``keep_s`` seconds without use.
    depth_models: local Depth Anything folders to offer besides the published ones found in
        the Hugging Face cache.
    session: the job Session (default: a new one; one job at a time per GPU, or on the CPU).
    """
    if max_upload_mb <= 0:
        raise ValueError(f"max_upload_mb must be > 0, got {max_upload_mb}")
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise FramematrixError("the web app needs Gradio: pip install 'framematrix[web]'")
    warning = host_warning(host, share)
    if warning:
        print(f"framematrix: warning: {warning}", file=sys.stderr)
    own_dir = work_dir is None
    root = Path(tempfile.mkdtemp(prefix="framematrix-serve-") if own_dir else work_dir)
    root = root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    uploads = root / "uploads"
    uploads.mkdir(exist_ok=True)
    # Gradio keeps uploads and served copies in GRADIO_TEMP_DIR: inside our folder. It is read
    # when gradio is imported, so set it first.
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from framematrix.app.core import WorkFolder
    from framematrix.app.ui import CSS, build_app, start_sweeper

    work = WorkFolder(root, keep_s=keep_s)
    session = session or Session()
    stop = start_sweeper(session, work)
    blocks = build_app(
        session,
        work,
        upload_roots=[uploads, work.root],
        depth_models=[str(m) for m in depth_models],
    )
    import gradio as gr

    try:
        blocks.queue(default_concurrency_limit=1).launch(
            server_name=host,
            server_port=port,
            share=share,
            max_file_size=f"{max_upload_mb:g}mb",
            allowed_paths=[str(work.sessions_dir)],
            show_error=False,
            ssr_mode=False,
            footer_links=[],
            theme=gr.themes.Soft(),
            css=CSS,
        )
    finally:
        stop.set()
        session.close()
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)
