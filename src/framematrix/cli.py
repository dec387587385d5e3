"""Command-line interface: parses arguments and calls the library; no logic of its own."""

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
from framematrix.export.writers import X264_PRESETS
from framematrix.fill.diffusion.config import PRESETS as DIFFUSION_PRESETS


def _positive(kind: type, *, allow_zero: bool = False):
    """An argparse type: a number > 0 (or >= 0)."""

    def parse(text: str):
        value = kind(text)
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"must be {'>= 0' if allow_zero else '> 0'}: {text}")
        return value

    return parse


def _at_least(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}: {text}")
        return value

    return parse


def _odd_window(text: str) -> int:
    value = int(text)
    if value < 1 or value % 2 == 0:
        raise argparse.ArgumentTypeError(f"must be an odd integer >= 1: {text}")
    return value


def _crf(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 51:
        raise argparse.ArgumentTypeError(f"must be in 0..51: {text}")
    return value


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


def _add_stereo_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("stereo rig (METHOD.md section 3)")
    g.add_argument(
        "--depth-kind",
        choices=("relative", "metric", "disparity-px"),
        default="relative",
        help="meaning of the depth values: relative inverse depth (Depth Anything, large = near),"
        " metric depth in scene units, or the pixel disparity between the two eyes",
    )
    g.add_argument(
        "--mode",
        choices=("left2right", "right2left", "middle2leftright"),
        default="left2right",
        help="where the source camera sits: left eye, right eye, or between the eyes",
    )
    g.add_argument(
        "--views", type=_at_least(2), default=8, help="cameras V on the baseline, source included"
    )
    g.add_argument(
        "--baseline",
        type=float,
        default=0.08,
        help="distance between the two eye cameras, in scene units (depth normalised to z in"
        " [0.9, 10] with the defaults; beyond ~0.08 disocclusions grow large)",
    )
    g.add_argument(
        "--focal",
        type=_positive(float),
        default=800.0,
        help="focal length, pixels; the eye shift is focal x baseline / depth pixels, so for the"
        " paper's effect on other widths scale it with the width (800 at 576 px, 1600 at 1152)",
    )
    g.add_argument(
        "--near",
        type=_positive(float),
        default=None,
        help="divide normalised disparity by this (off by default)",
    )
    g.add_argument(
        "--far",
        type=_positive(float, allow_zero=True),
        default=10.0,
        help="farthest depth after normalisation, scene units (adds 1/far to disparity; 0 = off)",
    )
    g.add_argument(
        "--planes", type=_at_least(1), default=4, help="depth layers of the crack clean-up"
    )


def _add_depth_options(p: argparse.ArgumentParser, *, estimate: bool = True) -> None:
    g = p.add_argument_group("depth estimation and stabilisation (METHOD.md sections 1-2)")
    if estimate:
        g.add_argument(
            "--depth-model",
            default="v1-large",
            help="Depth Anything model: v1-small|v1-base|v1-large|v2-small|v2-base|v2-large,"
            " a Hugging Face id, or a local folder",
        )
        g.add_argument(
            "--stabilize",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="steady the estimated depth over time with optical flow + guided filter",
        )
        g.add_argument(
            "--batch-size", type=_at_least(1), default=4, help="frames per depth-model call"
        )
    g.add_argument(
        "--flow",
        choices=("auto", "raft-small", "raft-large", "dis"),
        default="auto",
        help="optical flow for stabilisation: RAFT (torchvision; needs weights from --flow-weights"
        " or torchvision's cache), dis (OpenCV, no weights), auto (RAFT-small when its weights"
        " are found, else dis with a warning)",
    )
    g.add_argument(
        "--flow-weights",
        type=Path,
        default=None,
        help="RAFT checkpoint (.pth): torchvision's or the original RAFT release's",
    )
    g.add_argument("--window", type=_odd_window, default=3, help="temporal window, frames (odd)")


def _add_fill_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hole filling")
    g.add_argument(
        "--fill",
        choices=("fast", "none", "diffusion"),
        default="fast",
        help="fast: geometric background-side fill on the CPU; none: holes stay black;"
        " diffusion: the paper's frame-matrix denoising with zeroscope (needs its weights)",
    )
    d = p.add_argument_group(
        "diffusion fill (--fill diffusion; METHOD.md section 4)",
        "Options left out take the value of --diffusion-preset (default: paper).",
    )
    d.add_argument(
        "--diffusion-preset",
        choices=sorted(DIFFUSION_PRESETS),
        default="paper",
        help="schedule trade-off: paper (8 views, 50 steps, R=6), fast (4 views, 25 steps, R=2),"
        " draft (4 views, 15 steps)",
    )
    d.add_argument("--prompt", default="", help="text describing the clip (may be empty)")
    d.add_argument(
        "--negative-prompt",
        default="low-quality, blurry, flickering, ghost",
        help="what the model should avoid",
    )
    d.add_argument(
        "--model",
        default="cerspense/zeroscope_v2_576w",
        help="video diffusion model: Hugging Face id or local folder in zeroscope's layout",
    )
    d.add_argument(
        "--decoder",
        choices=("zeroscope", "svd"),
        default="zeroscope",
        help="VAE decoder: zeroscope's own, or Stable Video Diffusion's temporal decoder",
    )
    d.add_argument(
        "--decoder-model",
        default=None,
        help="id or local folder of the SVD model for --decoder svd"
        " (default: stabilityai/stable-video-diffusion-img2vid-xt)",
    )
    unset = argparse.SUPPRESS
    d.add_argument(
        "--steps", type=_at_least(1), default=unset, help="denoising steps, DDPM (paper: 50)"
    )
    d.add_argument(
        "--resample",
        type=int,
        default=unset,
        help="resampling passes per step R while t > 500 (paper: 6)",
    )
    d.add_argument(
        "--guidance", type=float, default=unset, help="classifier-free guidance scale (paper: 7.5)"
    )
    d.add_argument("--seed", type=int, default=0, help="random seed (reproducible output)")
    d.add_argument(
        "--multiview",
        action="store_true",
        help="denoise and write every view (multi-view video), not only the two eyes",
    )
    d.add_argument(
        "--dtype",
        choices=("auto", "float16", "bfloat16", "float32"),
        default="auto",
        help="precision of the diffusion model (auto: float16 on CUDA, float32 on CPU)",
    )
    d.add_argument(
        "--offload",
        action="store_true",
        help="keep models on the CPU and move each to the GPU only while it runs (small GPUs)",
    )
    d.add_argument(
        "--vae-slicing",
        action="store_true",
        help="encode and decode one frame at a time (less GPU memory, slower)",
    )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-download",
        action="store_true",
        help="fetch missing model weights from the Hugging Face Hub (Depth Anything up to"
        " 1.3 GB, zeroscope about 3.7 GB); without it a missing model is an error",
    )
    p.add_argument(
        "--device", default=None, help="torch device (default: cuda if present, else cpu)"
    )
    p.add_argument(
        "--fps",
        type=_positive(float),
        default=None,
        help="frame rate of a frame-folder or image input, frames/s (default: 24; videos keep"
        " their own)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output folder that is not empty (by default that is an error;"
        " output files are always replaced)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    from framematrix.export.formats import FORMATS

    formats = [name for name, _ in FORMATS] + ["grid", "views"]
    format_help = "; ".join(f"{name}: {text}" for name, text in FORMATS)
    parser = argparse.ArgumentParser(
        prog="framematrix",
        description="Monocular video -> stereoscopic 3D or multi-view video by denoising a frame"
        " matrix (SVG, ICLR 2025).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"framematrix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "convert",
        help="convert a video, frame folder or image to stereo 3D",
        description="Convert INPUT to a stereoscopic video or images. Without --depth, depth is"
        " estimated with Depth Anything and stabilised (cached beside the output).",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("input", type=Path, help="video (mp4 mov mkv avi webm), frame folder or image")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help=".mp4/.mkv/.mov video, .png/.jpg for an image input, or a folder of PNG frames",
    )
    p.add_argument(
        "--depth", type=Path, default=None, help="depth file or folder (.npy .npz .png .pfm)"
    )
    p.add_argument(
        "--format",
        choices=formats,
        default=None,
        help=format_help + "; grid: all views tiled in one video; views: a folder per view"
        " (default: sbs; with --multiview, grid for a video or image output and views for a"
        " folder)",
    )
    p.add_argument("--crf", type=_crf, default=18, help="H.264 quality, 0-51 (lower = better)")
    p.add_argument("--preset", choices=X264_PRESETS, default="medium", help="x264 speed preset")
    p.add_argument(
        "--chunk-frames",
        type=_at_least(1),
        default=16,
        help="frames processed at a time (memory bound)",
    )
    _add_stereo_options(p)
    _add_fill_options(p)
    _add_depth_options(p)
    _add_common(p)

    p = sub.add_parser(
        "matrix",
        help="build the frame matrix (all views, masks) and save it as PNGs",
        description="Save DIR/view{j:02d}/{i:05d}.png and {i:05d}_mask.png (255 known, 0 hole).",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("input", type=Path, help="video, frame folder or image")
    p.add_argument(
        "--depth", type=Path, default=None, help="depth file or folder (estimated if absent)"
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    _add_stereo_options(p)
    _add_depth_options(p)
    _add_common(p)

    p = sub.add_parser(
        "depth",
        help="estimate (and stabilise) depth; one .npy per frame plus a 16-bit PNG preview",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("input", type=Path, help="video, frame folder or image")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    _add_depth_options(p)
    _add_common(p)

    p = sub.add_parser(
        "stabilize",
        help="steady given per-frame depth over time (optical flow + guided filter)",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("input", type=Path, help="video, frame folder or image the depth belongs to")
    p.add_argument("--depth", type=Path, required=True, help="depth file or folder")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    _add_depth_options(p, estimate=False)
    _add_common(p)

    p = sub.add_parser(
        "demo",
        help="convert the bundled astronaut clip (offline, CPU, no weights needed)",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("-o", "--output", type=Path, default=Path("demo_out"), help="output folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def default_format(args: argparse.Namespace) -> str:
    """``sbs``; with ``--multiview`` every view is written: a grid, or a folder per view."""
    if not getattr(args, "multiview", False):
        return "sbs"
    from framematrix.pipeline import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    suffix = Path(args.output).suffix.lower()
    return "grid" if suffix in VIDEO_SUFFIXES + IMAGE_SUFFIXES else "views"


def config_from_args(args: argparse.Namespace):
    """A :class:`framematrix.config.ConvertConfig` from parsed options."""
    from framematrix.config import ConvertConfig

    cfg = ConvertConfig()
    s = cfg.stereo
    for name in ("depth_kind", "mode", "views", "baseline", "focal", "near", "far", "planes"):
        if hasattr(args, name):
            setattr(s, name, getattr(args, name))
    d = cfg.depth
    if hasattr(args, "depth_model"):
        d.model = args.depth_model
        d.stabilize = args.stabilize
        d.batch_size = args.batch_size
    if hasattr(args, "flow"):
        d.flow = args.flow
        d.flow_weights = args.flow_weights
        d.window = args.window
    d.device = args.device or "auto"
    d.allow_download = args.allow_download
    if hasattr(args, "fill"):
        from framematrix.fill.diffusion.config import DiffusionConfig

        overrides = {
            name: getattr(args, name)
            for name in ("steps", "resample", "guidance")
            if hasattr(args, name)
        }
        cfg.diffusion = DiffusionConfig.from_preset(
            args.diffusion_preset,
            prompt=args.prompt,
            negative_prompt=args.negative_prompt,
            model=args.model,
            decoder=args.decoder,
            decoder_model=args.decoder_model,
            allow_download=args.allow_download,
            seed=args.seed,
            multiview=args.multiview,
            dtype=args.dtype,
            device=args.device or "auto",
            model_cpu_offload=args.offload,
            vae_slicing=args.vae_slicing,
            **overrides,
        )
        cfg.fill = args.fill
    for name in ("crf", "preset", "chunk_frames"):
        if hasattr(args, name):
            setattr(cfg, name, getattr(args, name))
    if hasattr(args, "format"):
        cfg.format = args.format or default_format(args)
    cfg.device = args.device
    return cfg


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
    """Silence the weight-loading progress bars of transformers and diffusers.

    Both read ``HF_HUB_DISABLE_PROGRESS_BARS`` when first imported; those already imported
    (e.g. in a Python session) are told directly. Neither is imported here for nothing.
    """
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


def _run(args: argparse.Namespace) -> int:
    from framematrix import pipeline

    progress = not args.quiet
    if not progress:
        _quiet_model_libraries()
    _check_device(getattr(args, "device", None))
    if args.command == "convert":
        cfg = config_from_args(args)
        result = pipeline.convert(
            args.input,
            args.output,
            depth=args.depth,
            config=cfg,
            fps=args.fps,
            overwrite=args.overwrite,
            progress=progress,
        )
        filled = "left as holes" if cfg.fill == "none" else f"filled ({cfg.fill})"
        print(
            f"wrote {result.output} ({result.frames} frames, {result.fps:g} fps, "
            f"{result.hole_fraction:.1%} of the far eye {filled}, {result.seconds:.1f} s)"
        )
    elif args.command == "matrix":
        cfg = config_from_args(args)
        cfg.fill = "none"
        out = pipeline.make_matrix(
            args.input,
            args.depth,
            args.output,
            config=cfg,
            fps=args.fps,
            overwrite=args.overwrite,
            progress=progress,
        )
        print(f"wrote {out}")
    elif args.command == "depth":
        cfg = config_from_args(args)
        out = pipeline.estimate_depth_files(
            args.input,
            args.output,
            config=cfg,
            fps=args.fps,
            overwrite=args.overwrite,
            progress=progress,
        )
        print(f"wrote {out}")
    elif args.command == "stabilize":
        cfg = config_from_args(args)
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
    elif args.command == "demo":
        from framematrix.demo import run_demo

        for path in run_demo(args.output, progress=progress):
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
        return _run(args)
    except FramematrixError as exc:
        print(f"framematrix: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the system refused a read or write (permission, disk full, ...)
        print(f"framematrix: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("framematrix: interrupted", file=sys.stderr)
        return 130


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
