"""Command-line interface: parses arguments and calls the library; no logic of its own.

Options and their help come from the one table in :mod:`framematrix.options` (defaults from the
config dataclasses). ``framematrix --help`` does not import torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from framematrix import __version__
from framematrix.errors import FramematrixError
from framematrix.options import (
    G_COMMON,
    G_DEPTH,
    G_DIFF,
    G_FILL,
    G_LONG,
    G_OUT,
    G_STEREO,
    add_options,
)
from framematrix.options import config_from_args as _config_from_table

METHOD_URL = "https://arxiv.org/abs/2407.00367"


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends each option's default, except where there is none to state (None, off, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default in (None, False, "", argparse.SUPPRESS) or "%(default)" in text:
            return text
        if not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``framematrix convert: error: ...``), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _formats_epilog() -> str:
    from framematrix.export.formats import FORMATS

    rows = [f"  {name:<15} {text}" for name, text in FORMATS]
    from framematrix.export.formats import EXTRA_FORMATS

    rows += [f"  {name:<15} {text}" for name, text in EXTRA_FORMATS]
    rows.append(
        f"  {'spatial':<15} Apple spatial video (MV-HEVC, .mov; playback on Apple"
        " devices not verified)"
    )
    rows.append(f"  {'grid':<15} all V views tiled in one video")
    rows.append(f"  {'views':<15} a folder per view (view00/, view01/, ...)")
    return "output formats (--format):\n" + "\n".join(rows)


def _format_names() -> list[str]:
    from framematrix.export.formats import EXTRA_FORMAT_NAMES, FORMAT_NAMES

    return [*FORMAT_NAMES, *EXTRA_FORMAT_NAMES, "spatial", "grid", "views"]


def _subparser(sub, name: str, help: str, description: str = "", epilog: str = ""):  # noqa: ANN001, ANN202, A002
    return sub.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=epilog,
        formatter_class=_HelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="framematrix",
        description="Monocular video -> stereoscopic 3D or multi-view video by denoising a frame"
        f" matrix (Dai et al., SVG, ICLR 2025, {METHOD_URL}).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"framematrix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub._parser_class = _Parser  # type: ignore[attr-defined]

    p = _subparser(
        sub,
        "convert",
        "convert a video, frame folder or image to stereo 3D",
        "Convert INPUT to a stereoscopic video or images. Without --depth, depth is estimated"
        " with Depth Anything per shot and stabilised (kept in .framematrix-cache beside the"
        " output). A video output is written in resumable segments: run the same command again"
        " after an interruption to continue.",
        _formats_epilog(),
    )
    p.add_argument(
        "input",
        type=Path,
        help="video (mp4 mov mkv avi webm), frame folder or image; a folder of videos converts"
        " each into the output folder (batch)",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help=".mp4/.mkv/.mov video, .png/.jpg for an image input, or a folder of PNG frames"
        " (for a batch: the output folder)",
    )
    p.add_argument(
        "--depth",
        type=Path,
        default=None,
        help="depth: a depth video (8/16-bit grey, e.g. FFV1 .mkv), a folder of .png/.npy/.pfm"
        " per frame, or one .npy/.npz (estimated if absent)",
    )
    add_options(p, [G_OUT, G_STEREO, G_FILL, G_DIFF, G_DEPTH, G_LONG, G_COMMON])

    p = _subparser(
        sub,
        "matrix",
        "build the frame matrix (all views, masks) and save it as PNGs",
        "Save DIR/view{j:02d}/{i:05d}.png and {i:05d}_mask.png (255 known, 0 hole).",
    )
    p.add_argument("input", type=Path, help="video, frame folder or image")
    p.add_argument("--depth", type=Path, default=None, help="depth (estimated if absent)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    add_options(p, [G_STEREO, G_DEPTH, G_COMMON])
    p.add_argument("--shots", default="auto", help="as for convert")

    p = _subparser(
        sub,
        "depth",
        "estimate (and stabilise) depth per shot; write a lossless 16-bit depth video or PNGs",
        "Write OUTPUT.mkv (FFV1 gray16le, lossless) or a folder of 16-bit PNG, streamed; either"
        " can be given back as --depth.",
    )
    p.add_argument("input", type=Path, help="video, frame folder or image")
    p.add_argument("-o", "--output", type=Path, required=True, help=".mkv depth video or folder")
    add_options(p, [G_DEPTH, G_COMMON])
    p.add_argument("--shots", default="auto", help="as for convert")

    p = _subparser(
        sub, "stabilize", "steady given per-frame depth over time (optical flow + guided filter)"
    )
    p.add_argument("input", type=Path, help="video, frame folder or image the depth belongs to")
    p.add_argument("--depth", type=Path, required=True, help="depth video, file or folder")
    p.add_argument("-o", "--output", type=Path, required=True, help=".mkv depth video or folder")
    add_options(p, [G_DEPTH, G_COMMON], skip=("--depth-model", "--stabilize", "--batch-size"))
    p.add_argument("--shots", default="auto", help="as for convert")

    p = _subparser(
        sub,
        "shots",
        "find the shots (cuts) of a video",
        'Print the shots of INPUT; with --json exactly a JSON list [{"start": 0, "end": 120},'
        " ...] (frame indices, end exclusive).",
    )
    p.add_argument("input", type=Path, help="video, frame folder or image")
    p.add_argument("--json", action="store_true", help="print the shots as JSON only")
    p.add_argument(
        "--method",
        default="auto",
        help="auto|transnet|content|none, or a file of cut frames",
    )
    p.add_argument("--device", default=None, help="torch device for TransNetV2")
    p.add_argument("--fps", type=float, default=None, help="frame rate of a frame folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    p = _subparser(
        sub,
        "report",
        "comfort report: parallax per shot with these settings, window violations, suggestions",
        "Write an HTML page with plots (parallax over time with the comfort band, a histogram"
        " per shot), or with --json print the figures.",
    )
    p.add_argument("input", type=Path, help="video, frame folder or image")
    p.add_argument("--depth", type=Path, default=None, help="depth (estimated if absent)")
    p.add_argument("-o", "--output", type=Path, default=None, help="report.html")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    add_options(p, [G_STEREO, G_DEPTH, G_COMMON])
    p.add_argument("--shots", default="auto", help="as for convert")

    p = _subparser(
        sub,
        "preview",
        "one frame at a grid of depth budgets x convergences, to pick settings",
    )
    p.add_argument("input", type=Path, help="video, frame folder or image")
    p.add_argument("--frame", type=int, default=0, help="frame index")
    p.add_argument("--depth", type=Path, default=None, help="depth (estimated if absent)")
    p.add_argument("-o", "--output", type=Path, required=True, help="sheet.png")
    p.add_argument("--budgets", default="2,3,5", help="depth budgets, percent of the width")
    p.add_argument("--convergences", default="0,0.33,0.67,1", help="convergences in [0, 1]")
    p.add_argument("--kind", choices=("anaglyph", "sbs"), default="anaglyph", help="thumbnails")
    p.add_argument("--thumb-width", type=int, default=384, help="pixels per thumbnail")
    add_options(p, [G_STEREO, G_DEPTH, G_COMMON])
    p.add_argument("--shots", default="auto", help="as for convert")

    p = _subparser(sub, "serve", "run the web app (Gradio) on this machine")
    from framematrix.app.__main__ import add_serve_options

    add_serve_options(p)

    p = _subparser(
        sub, "demo", "convert the bundled astronaut clip (offline, CPU, no weights needed)"
    )
    p.add_argument("-o", "--output", type=Path, default=Path("demo_out"), help="output folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def default_format(args: argparse.Namespace) -> str:
    """``sbs``; with ``--multiview`` every view is written: a grid, or a folder per view."""
    if not getattr(args, "multiview", False):
        return "sbs"
    from framematrix.export.sinks import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    suffix = Path(args.output).suffix.lower()
    return "grid" if suffix in VIDEO_SUFFIXES + IMAGE_SUFFIXES else "views"


def config_from_args(args: argparse.Namespace):  # noqa: ANN201 - ConvertConfig
    """The :class:`framematrix.config.ConvertConfig` of parsed options (format default included)."""
    if getattr(args, "format", "sbs") is None:
        args.format = default_format(args)
    return _config_from_table(args)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (not the stream of the first call)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _log_to_stderr() -> None:
    """Show framematrix's own warnings (e.g. a flow fallback) as one line each."""
    logger = logging.getLogger("framematrix")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("framematrix: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


def _quiet_model_libraries() -> None:
    """Silence the weight-loading progress bars of transformers and diffusers."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    for name in ("transformers.utils.logging", "diffusers.utils.logging"):
        module = sys.modules.get(name)
        if module is not None:
            module.disable_progress_bar()


def _check_device(name: str | None) -> None:
    """A clear error for a device that is not a torch device or not present here."""
    if name in (None, "auto"):
        return
    import torch

    from framematrix.errors import InputError

    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name}: not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA GPU is available here; use --device cpu")


def _config(parser: argparse.ArgumentParser, args: argparse.Namespace):  # noqa: ANN202
    if getattr(args, "format", "sbs") is None:
        args.format = default_format(args)
    if hasattr(args, "format") and args.format not in _format_names():
        parser.error(
            f"argument --format: invalid choice: {args.format!r} (choose from"
            f" {', '.join(_format_names())})"
        )
    try:
        return _config_from_table(args)
    except (ValueError, FramematrixError) as exc:
        parser.error(str(exc))


def _wrote_line(result, fill: str) -> str:  # noqa: ANN001 - a ConvertResult
    filled = "left as holes" if fill == "none" else f"filled ({fill})"
    resumed = (
        f", {result.segments_reused} of {result.segments} segments resumed"
        if result.segments_reused
        else ""
    )
    return (
        f"wrote {result.output} ({result.frames} frames, {len(result.shots)} shots, "
        f"{result.fps:g} fps, {result.hole_fraction:.1%} of the far eye {filled}"
        f"{resumed}, {result.seconds:.1f} s)"
    )


def _run_batch(parser: argparse.ArgumentParser, args: argparse.Namespace, progress) -> int:  # noqa: ANN001
    """``framematrix convert IN_DIR -o OUT_DIR``: every video of the folder, one line each and
    a summary; exit status 1 when a file failed."""
    from framematrix.batch import convert_folder

    cfg = _config(parser, args)

    def report(item) -> None:  # noqa: ANN001 - a BatchItem
        if item.status == "failed":
            print(f"failed: {item.message}", file=sys.stderr)
        elif item.status == "skipped":
            print(f"skipped {item.input.name}: {item.output} is complete")
        else:
            print(f"wrote {item.output} ({item.frames} frames, {item.seconds:.1f} s)")

    result = convert_folder(
        args.input,
        args.output,
        depth=args.depth,
        config=cfg,
        keep_going=args.keep_going,
        overwrite=args.overwrite,
        restart=args.restart,
        progress=progress,
        report=report,
        fps=args.fps,
        start=args.start,
        end=args.end,
        ray=args.ray,
    )
    print(result.summary())
    return 1 if result.failed else 0


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from framematrix.progress import Progress

    show = not getattr(args, "quiet", False)
    if not show:
        _quiet_model_libraries()
    _check_device(getattr(args, "device", None))
    progress = Progress(show=show, job=args.command)
    if args.command == "convert":
        from framematrix.batch import is_video_folder

        if is_video_folder(args.input):
            return _run_batch(parser, args, progress)
        from framematrix.pipeline import convert

        cfg = _config(parser, args)
        result = convert(
            args.input,
            args.output,
            depth=args.depth,
            config=cfg,
            fps=args.fps,
            start=args.start,
            end=args.end,
            overwrite=args.overwrite,
            restart=args.restart,
            ray=args.ray,
            progress=progress,
        )
        print(_wrote_line(result, cfg.fill))
        if show and result.summary:
            print(f"passes: {result.summary}", file=sys.stderr)
    elif args.command == "matrix":
        from framematrix.pipeline import make_matrix

        cfg = _config(parser, args)
        cfg.fill = "none"
        out = make_matrix(
            args.input,
            args.depth,
            args.output,
            config=cfg,
            fps=args.fps,
            overwrite=args.overwrite,
            progress=progress,
        )
        print(f"wrote {out}")
    elif args.command in ("depth", "stabilize"):
        from framematrix import pipeline

        cfg = _config(parser, args)
        if args.command == "depth":
            out = pipeline.estimate_depth_files(
                args.input,
                args.output,
                config=cfg,
                fps=args.fps,
                overwrite=args.overwrite,
                progress=progress,
            )
        else:
            out = pipeline.stabilize_depth_files(
                args.input,
                args.depth,
                args.output,
                config=cfg,
                fps=args.fps,
                overwrite=args.overwrite,
                progress=progress,
            )
        print(f"wrote {out}")
    elif args.command == "shots":
        from framematrix.config import ConvertConfig
        from framematrix.pipeline import find_shots, open_input
        from framematrix.shots import shots_to_json

        cfg = ConvertConfig(shots=args.method, device=args.device)
        with open_input(args.input, args.fps) as source:
            shots = find_shots(source, 0, source.info.num_frames, cfg, progress=progress)
            fps = source.info.fps
        if args.json:
            from framematrix.shots import Shot

            print(shots_to_json([Shot(a, b) for a, b in shots]))
        else:
            for i, (a, b) in enumerate(shots):
                print(
                    f"shot {i}: frames {a}-{b - 1} ({b - a} frames, {a / fps:.2f}-{b / fps:.2f} s)"
                )
    elif args.command == "report":
        import json

        from framematrix.pipeline import comfort_report_of

        cfg = _config(parser, args)
        if not args.json and args.output is None:
            parser.error("give -o report.html or --json")
        report = comfort_report_of(
            args.input, depth=args.depth, config=cfg, fps=args.fps, progress=progress
        )
        if args.json:
            from framematrix.report import report_for_json

            print(json.dumps(report_for_json(report)))
        if args.output is not None:
            from framematrix.report.html import write_report_html

            print(f"wrote {write_report_html(report, args.output)}", file=sys.stderr)
    elif args.command == "preview":
        from framematrix.export.writers import write_image
        from framematrix.pipeline import preview_of

        cfg = _config(parser, args)
        try:
            budgets = [float(x) for x in args.budgets.split(",")]
            convergences = [float(x) for x in args.convergences.split(",")]
        except ValueError:
            parser.error("--budgets/--convergences: comma-separated numbers")
        sheet = preview_of(
            args.input,
            args.frame,
            depth=args.depth,
            config=cfg,
            budgets=budgets,
            convergences=convergences,
            kind=args.kind,
            thumb_width=args.thumb_width,
            fps=args.fps,
            progress=progress,
        )
        print(f"wrote {write_image(args.output, sheet)}")
    elif args.command == "serve":
        from framematrix.app.__main__ import run

        return run(args)
    elif args.command == "demo":
        from framematrix.demo import run_demo

        for path in run_demo(args.output, progress=show):
            print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``framematrix`` command. Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _log_to_stderr()
    # SIGTERM unwinds like Ctrl-C, so temporary outputs are removed on the way out.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return _run(parser, args)
    except FramematrixError as exc:
        print(f"framematrix: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the system refused a read or write (permission, disk full, ...)
        name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"framematrix: error: {name}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("framematrix: interrupted (run the same command again to resume)", file=sys.stderr)
        return 130


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
