"""``python -m framematrix.app``: the same as ``framematrix serve``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="framematrix serve", description="Run the framematrix web app (Gradio)."
    )
    add_serve_options(parser)
    return parser


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``framematrix serve`` (the CLI adds these to its subcommand)."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 127.0.0.1 = this machine only (others print a warning)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument(
        "--share", action="store_true", help="make a public Gradio share link (off by default)"
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=500.0, help="largest upload accepted, MB"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="folder for uploads and results (default: a temporary folder removed on exit)",
    )
    parser.add_argument(
        "--depth-model",
        action="append",
        default=[],
        metavar="PATH",
        help="a local Depth Anything folder to offer (repeatable); published models are"
        " offered when found in the Hugging Face cache",
    )
    parser.add_argument(
        "--keep-minutes",
        type=float,
        default=60.0,
        help="delete a tab's files after this many idle minutes",
    )


def run(args: argparse.Namespace, session=None) -> int:
    """Start the app from parsed options (``framematrix serve`` calls this)."""
    from framematrix.app import serve

    serve(
        host=args.host,
        port=args.port,
        share=args.share,
        max_upload_mb=args.max_upload_mb,
        work_dir=args.work_dir,
        depth_models=args.depth_model,
        keep_s=args.keep_minutes * 60.0,
        session=session,
    )
    return 0


def main(argv: Sequence[str] | None = None, session=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args, session=session)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
