"""The one table of options: every CLI flag, where it goes in the config, and its help.

Defaults are not written here: they are read from the configuration dataclasses
(:class:`framematrix.config.ConvertConfig` and the stage configs it holds), so each default is
stated once. The CLI (and the web app's controls) are built from this table; importing it does
not import torch.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# x264/x265 speed presets, fastest first (the writers check against the same tuple)
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)

_FROM_CONFIG = object()


def positive(kind: type, *, allow_zero: bool = False) -> Callable[[str], Any]:
    """An argparse type: a number > 0 (or >= 0)."""

    def parse(text: str):  # noqa: ANN202
        value = kind(text)
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"must be {'>= 0' if allow_zero else '> 0'}: {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}: {text}")
        return value

    parse.__name__ = "int"
    return parse


def in_range(lo: float, hi: float, kind: type = float) -> Callable[[str], Any]:
    def parse(text: str):  # noqa: ANN202
        value = kind(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo:g}..{hi:g}: {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def depth_budget_value(text: str) -> float | None:
    """``--depth-budget``: a percentage in 0..50, or ``paper`` for the paper's rig (None)."""
    if text.strip().lower() in ("paper", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a percentage in 0..50 or 'paper': {text}"
        ) from None
    if not 0 <= value <= 50:
        raise argparse.ArgumentTypeError(f"must be in 0..50 (percent of the width): {text}")
    return value


depth_budget_value.__name__ = "percent"


def odd_window(text: str) -> int:
    value = int(text)
    if value < 1 or value % 2 == 0:
        raise argparse.ArgumentTypeError(f"must be an odd integer >= 1: {text}")
    return value


@dataclass(frozen=True)
class Option:
    """One option: ``flag`` sets ``target`` (``stereo.baseline``, ``crf``, ``job.start``...).

    kind: ``value`` (takes an argument), ``flag`` (store_true) or ``bool`` (--x / --no-x).
    default: only for ``job.*`` targets; others take the config dataclass's default.
    preset_override: left out, the option is absent from the parsed namespace (argparse
        SUPPRESS) and the preset's value holds, so code can tell whether it was given.
    """

    flag: str
    target: str
    help: str
    group: str
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    kind: str = "value"
    default: Any = _FROM_CONFIG
    preset_override: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


G_STEREO = "stereo rig (how the views are warped from the source)"
G_DEPTH = "depth estimation (Depth Anything) and stabilisation (optical flow + guided filter)"
G_FILL = "hole filling"
G_DIFF = "diffusion fill (--fill diffusion: frame-matrix denoising with zeroscope)"
G_OUT = "output"
G_LONG = "long videos: range, shots, resume"
G_COMMON = "common"

_DIFF_PRESETS = ("paper", "fast", "draft")

OPTIONS: tuple[Option, ...] = (
    # -- stereo
    Option(
        "--depth-kind",
        "stereo.depth_kind",
        "meaning of the depth values: relative inverse depth (Depth Anything, large = near),"
        " metric depth in scene units, or the pixel disparity between the two eyes",
        G_STEREO,
        choices=("relative", "metric", "disparity-px"),
    ),
    Option(
        "--mode",
        "stereo.mode",
        "where the source camera sits: left eye, right eye, or between the eyes",
        G_STEREO,
        choices=("left2right", "right2left", "middle2leftright"),
    ),
    Option(
        "--views",
        "stereo.views",
        "cameras V on the baseline, source included",
        G_STEREO,
        type=at_least(2),
    ),
    Option(
        "--baseline",
        "stereo.baseline",
        "the paper's rig: distance between the two eye cameras, in scene units (depth"
        " normalised to z in [0.9, 10]; beyond ~0.08 disocclusions grow large); giving it (or"
        " --focal) without --depth-budget selects the paper's rig",
        G_STEREO,
        type=float,
        preset_override=True,
    ),
    Option(
        "--focal",
        "stereo.focal",
        "focal length, pixels; the eye shift is focal x baseline / depth pixels, so for the"
        " paper's effect on other widths scale it with the width (800 at 576 px, 1600 at 1152);"
        " implies the paper's rig like --baseline",
        G_STEREO,
        type=positive(float),
        preset_override=True,
    ),
    Option(
        "--near",
        "stereo.near",
        "divide normalised disparity by this (off by default)",
        G_STEREO,
        type=positive(float),
    ),
    Option(
        "--far",
        "stereo.far",
        "farthest depth after normalisation, scene units (adds 1/far to disparity; 0 = off)",
        G_STEREO,
        type=positive(float, allow_zero=True),
    ),
    Option(
        "--depth-budget",
        "stereo.depth_budget",
        "3D strength: parallax between the eyes from each shot's farthest to its nearest content"
        " (1st-99th percentile of depth), in percent of the output width, the same at any"
        " resolution; 'paper' = the paper's parallel rig from --baseline/--focal",
        G_STEREO,
        type=depth_budget_value,
        preset_override=True,
    ),
    Option(
        "--convergence",
        "stereo.convergence",
        "where the screen plane sits in the depth budget: 0 = at the nearest content"
        " (everything behind the screen), 1 = at the farthest (everything in front)",
        G_STEREO,
        type=in_range(0, 1),
        preset_override=True,
    ),
    Option(
        "--warp",
        "stereo.warp",
        "nearest: the paper's warp, each shift rounded to a pixel; subpixel: bilinear splat with"
        " a soft z-buffer, no crack combs at fractional disparities (slower)",
        G_STEREO,
        choices=("nearest", "subpixel"),
    ),
    Option(
        "--planes",
        "stereo.planes",
        "depth layers of the crack clean-up",
        G_STEREO,
        type=at_least(1),
    ),
    # -- depth
    Option(
        "--depth-model",
        "depth.model",
        "Depth Anything model: v1-small|v1-base|v1-large|v2-small|v2-base|v2-large,"
        " a Hugging Face id, or a local folder",
        G_DEPTH,
    ),
    Option(
        "--stabilize",
        "depth.stabilize",
        "steady the estimated depth over time with optical flow + guided filter",
        G_DEPTH,
        kind="bool",
    ),
    Option(
        "--batch-size", "depth.batch_size", "frames per depth-model call", G_DEPTH, type=at_least(1)
    ),
    Option(
        "--flow",
        "depth.flow",
        "optical flow for stabilisation: RAFT (torchvision; needs weights from --flow-weights"
        " or torchvision's cache), dis (OpenCV, no weights), auto (RAFT-small when its weights"
        " are found, else dis with a warning)",
        G_DEPTH,
        choices=("auto", "raft-small", "raft-large", "dis"),
    ),
    Option(
        "--flow-weights",
        "depth.flow_weights",
        "RAFT checkpoint (.pth): torchvision's or the original RAFT release's",
        G_DEPTH,
        type=Path,
    ),
    Option("--window", "depth.window", "temporal window, frames (odd)", G_DEPTH, type=odd_window),
    # -- fill
    Option(
        "--fill",
        "fill",
        "fast: geometric background-side fill on the CPU; none: holes stay black;"
        " diffusion: the paper's frame-matrix denoising with zeroscope (needs its weights)",
        G_FILL,
        choices=("fast", "none", "diffusion"),
    ),
    Option(
        "--diffusion-preset",
        "job.diffusion_preset",
        "schedule trade-off: paper (8 views, 50 steps, R=6), fast (4 views, 25 steps, R=2),"
        " draft (4 views, 15 steps); options left out take the preset's value",
        G_DIFF,
        choices=_DIFF_PRESETS,
        default="paper",
    ),
    Option("--prompt", "diffusion.prompt", "text describing the clip (may be empty)", G_DIFF),
    Option("--negative-prompt", "diffusion.negative_prompt", "what the model should avoid", G_DIFF),
    Option(
        "--model",
        "diffusion.model",
        "video diffusion model: Hugging Face id or local folder in zeroscope's layout",
        G_DIFF,
    ),
    Option(
        "--decoder",
        "diffusion.decoder",
        "VAE decoder: zeroscope's own, or Stable Video Diffusion's temporal decoder",
        G_DIFF,
        choices=("zeroscope", "svd"),
    ),
    Option(
        "--decoder-model",
        "diffusion.decoder_model",
        "id or local folder of the SVD model for --decoder svd"
        " (default: stabilityai/stable-video-diffusion-img2vid-xt)",
        G_DIFF,
    ),
    Option(
        "--steps",
        "diffusion.steps",
        "denoising steps, DDPM (paper: 50)",
        G_DIFF,
        type=at_least(1),
        preset_override=True,
    ),
    Option(
        "--resample",
        "diffusion.resample",
        "resampling passes per step R while t > 500 (paper: 6)",
        G_DIFF,
        type=at_least(0),
        preset_override=True,
    ),
    Option(
        "--guidance",
        "diffusion.guidance",
        "classifier-free guidance scale (paper: 7.5)",
        G_DIFF,
        type=float,
        preset_override=True,
    ),
    Option(
        "--diffusion-overlap",
        "diffusion.window_overlap",
        "frames shared by consecutive 16-frame diffusion windows of a shot; the shared frames"
        " keep the earlier window's result, so nothing jumps at a window boundary (costs"
        " 16/(16-K) times the work; 0 = independent windows)",
        G_DIFF,
        type=in_range(0, 15, int),
    ),
    Option("--seed", "diffusion.seed", "random seed (reproducible output)", G_DIFF, type=int),
    Option(
        "--multiview",
        "diffusion.multiview",
        "denoise and write every view (multi-view video), not only the two eyes",
        G_DIFF,
        kind="flag",
    ),
    Option(
        "--dtype",
        "diffusion.dtype",
        "precision of the diffusion model (auto: float16 on CUDA, float32 on CPU)",
        G_DIFF,
        choices=("auto", "float16", "bfloat16", "float32"),
    ),
    Option(
        "--offload",
        "diffusion.model_cpu_offload",
        "keep models on the CPU and move each to the GPU only while it runs (small GPUs)",
        G_DIFF,
        kind="flag",
    ),
    Option(
        "--vae-slicing",
        "diffusion.vae_slicing",
        "encode and decode one frame at a time (less GPU memory, slower)",
        G_DIFF,
        kind="flag",
    ),
    # -- output
    Option(
        "--format",
        "format",
        "output layout (see the table below; default: sbs; with --multiview, grid for a video"
        " or image output and views for a folder)",
        G_OUT,
        default=None,
        metavar="FORMAT",
    ),
    Option(
        "--crf", "crf", "video quality, 0-51 (lower = better)", G_OUT, type=in_range(0, 51, int)
    ),
    Option(
        "--preset",
        "preset",
        "encoder speed preset",
        G_OUT,
        choices=X264_PRESETS,
    ),
    Option(
        "--codec",
        "codec",
        "video codec: h264 plays everywhere; h265 smaller, 10-bit capable, tagged hvc1 for"
        " Apple; ffv1 lossless, .mkv only",
        G_OUT,
        choices=("h264", "h265", "ffv1"),
    ),
    Option(
        "--pix-fmt",
        "pix_fmt",
        "yuv420p plays everywhere; yuv420p10le 10-bit (with h265); yuv444p full colour",
        G_OUT,
        choices=("yuv420p", "yuv420p10le", "yuv444p"),
    ),
    Option(
        "--name-tags",
        "name_tags",
        "add the filename tag VR/3D players read (_LRF_Full_SBS, _TB, _180_LR, ...)",
        G_OUT,
        kind="flag",
    ),
    Option(
        "--fov",
        "fov",
        "horizontal field of view of the source camera in degrees, for --format vr180",
        G_OUT,
        type=in_range(1, 179),
    ),
    Option(
        "--edge-band",
        "edge_band",
        "the band that enters the warped eye at the left/right frame edges (content the source"
        " never showed): crop = both eyes lose it alike and are scaled back; mirror = filled"
        " with the eye's own content reflected and blurred; none; auto = crop with a depth"
        " budget and a geometric fill, else none",
        G_OUT,
        choices=("auto", "crop", "mirror", "none"),
    ),
    Option(
        "--floating-window",
        "floating_window",
        "mask the frame edges where content in front of the screen touches them, so the"
        " window stands in front of it (one still window per shot)",
        G_OUT,
        kind="bool",
    ),
    Option(
        "--max-width",
        "max_width",
        "scale the input down to at most this width (aspect kept; the output of sbs is twice"
        " as wide)",
        G_OUT,
        type=at_least(2),
        metavar="PX",
    ),
    Option(
        "--max-height",
        "max_height",
        "scale the input down to at most this height (aspect kept)",
        G_OUT,
        type=at_least(2),
        metavar="PX",
    ),
    Option(
        "--chunk-frames",
        "chunk_frames",
        "frames processed at a time (memory bound)",
        G_OUT,
        type=at_least(1),
    ),
    # -- long videos
    Option(
        "--start",
        "job.start",
        "first frame to convert: a frame index (120f), seconds (12.5) or [hh:]mm:ss(.ms)",
        G_LONG,
        default=None,
    ),
    Option(
        "--end",
        "job.end",
        "end of the part to convert (exclusive), as --start",
        G_LONG,
        default=None,
    ),
    Option(
        "--shots",
        "shots",
        "how cuts are found: auto (TransNetV2 when installed, else content), transnet,"
        " content (colour-histogram detector), none (one shot), or a file of cut frames (one"
        " index per line, or the JSON of `framematrix shots --json`)",
        G_LONG,
        metavar="auto|transnet|content|none|FILE",
    ),
    Option(
        "--segment-frames",
        "segment_frames",
        "most new frames in one resumable segment of a video output",
        G_LONG,
        type=at_least(1),
    ),
    Option(
        "--restart",
        "job.restart",
        "discard the work of an interrupted earlier run instead of resuming it",
        G_LONG,
        kind="flag",
        default=False,
    ),
    Option(
        "--keep-going",
        "job.keep_going",
        "batch (the input is a folder of videos): after a file that fails, go on with the others"
        " (else the batch stops there); outputs already complete are always skipped",
        G_LONG,
        kind="flag",
        default=False,
    ),
    Option(
        "--ray",
        "job.ray",
        "run the segments on a Ray cluster: an address (ray://host:10001, or auto for "
        "RAY_ADDRESS) or local (start one here)",
        G_LONG,
        default=None,
    ),
    # -- common
    Option(
        "--allow-download",
        "job.allow_download",
        "fetch missing model weights from the Hugging Face Hub (Depth Anything up to"
        " 1.3 GB, zeroscope about 3.7 GB); without it a missing model is an error",
        G_COMMON,
        kind="flag",
        default=False,
    ),
    Option(
        "--device",
        "job.device",
        "torch device (default: cuda if present, else cpu)",
        G_COMMON,
        default=None,
    ),
    Option(
        "--fps",
        "job.fps",
        "frame rate of a frame-folder or image input, frames/s (default: 24; videos keep"
        " their own)",
        G_COMMON,
        type=positive(float),
        default=None,
    ),
    Option(
        "--overwrite",
        "job.overwrite",
        "replace an output folder that is not empty (by default that is an error;"
        " output files are always replaced)",
        G_COMMON,
        kind="flag",
        default=False,
    ),
    Option("--quiet", "job.quiet", "no progress bars", G_COMMON, kind="flag", default=False),
)

BY_FLAG = {opt.flag: opt for opt in OPTIONS}


def _config_default(target: str) -> Any:
    from framematrix.config import ConvertConfig

    obj: Any = ConvertConfig()
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def default_of(opt: Option) -> Any:
    """The option's default: the config dataclass's, or the table's for ``job.*``."""
    if opt.default is not _FROM_CONFIG:
        return opt.default
    return _config_default(opt.target)


def add_options(
    parser: argparse.ArgumentParser, groups: Iterable[str], *, skip: Iterable[str] = ()
) -> None:
    """Add every option of ``groups`` (in table order) to ``parser``, grouped."""
    skip = set(skip)
    made: dict[str, argparse._ArgumentGroup] = {}
    for group in groups:
        for opt in OPTIONS:
            if opt.group != group or opt.flag in skip:
                continue
            if group not in made:
                made[group] = parser.add_argument_group(group)
            g = made[group]
            flags = [opt.flag] + (["-q"] if opt.flag == "--quiet" else [])
            if opt.kind == "flag":
                g.add_argument(*flags, action="store_true", help=opt.help)
                continue
            default = argparse.SUPPRESS if opt.preset_override else default_of(opt)
            text = opt.help
            if opt.preset_override and not opt.target.startswith(("diffusion.", "job.")):
                shown = default_of(opt)  # left out, the config's value holds: say which
                shown = f"{shown:.3g}" if isinstance(shown, float) else shown
                text = f"{text} (default: {shown})"
            if opt.kind == "bool":
                g.add_argument(
                    *flags, action=argparse.BooleanOptionalAction, default=default, help=text
                )
                continue
            g.add_argument(
                *flags,
                type=opt.type,
                choices=opt.choices,
                default=default,
                help=text,
                metavar=opt.metavar,
            )


def config_from_args(args: argparse.Namespace):  # noqa: ANN201 - ConvertConfig
    """A :class:`framematrix.config.ConvertConfig` from options parsed with this table."""
    from framematrix.config import ConvertConfig
    from framematrix.fill.diffusion.config import DiffusionConfig

    cfg = ConvertConfig()
    values = vars(args)
    diffusion: dict[str, Any] = {}
    for opt in OPTIONS:
        if opt.dest not in values or opt.target.startswith("job."):
            continue
        value = values[opt.dest]
        section, _, name = opt.target.rpartition(".")
        if section == "diffusion":
            diffusion[name] = value
        elif section:
            setattr(getattr(cfg, section), name, value)
        elif value is not None:
            setattr(cfg, name, value)
    paper_rig = "baseline" in values or "focal" in values
    if paper_rig and "depth_budget" not in values:
        cfg.stereo.depth_budget = None  # --baseline/--focal: the paper's parametrisation
    device = values.get("device")
    allow = bool(values.get("allow_download", False))
    cfg.device = device
    cfg.depth.device = device or "auto"
    cfg.depth.allow_download = allow
    if "diffusion_preset" in values:
        cfg.diffusion = DiffusionConfig.from_preset(
            values["diffusion_preset"],
            allow_download=allow,
            device=device or "auto",
            **diffusion,
        )
    elif diffusion or device or allow:
        cfg.diffusion = dataclasses.replace(
            cfg.diffusion, allow_download=allow, device=device or "auto", **diffusion
        )
    return cfg
