"""One typed configuration for a whole conversion, composed of each stage's own settings."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

from framematrix.depth.config import DepthConfig
from framematrix.fill.diffusion.config import DiffusionConfig
from framematrix.geometry.config import WATCH_CONVERGENCE, WATCH_DEPTH_BUDGET, StereoConfig

FillMethod = Literal["fast", "none", "diffusion"]
FILL_METHODS: tuple[str, ...] = ("fast", "none", "diffusion")


def watching_stereo() -> StereoConfig:
    """The stereo rig for watching: a depth budget of 3 % of the width per shot with the screen
    plane a third of the way from the nearest content (README, "How deep, and where the screen
    is"). ``StereoConfig()`` alone is the paper's rig (baseline x focal / z, parallel)."""
    return StereoConfig(depth_budget=WATCH_DEPTH_BUDGET, convergence=WATCH_CONVERGENCE)


@dataclass
class ConvertConfig:
    """Everything :func:`framematrix.convert` needs besides the input and output paths.

    stereo: camera rig and warp (METHOD.md section 3); default :func:`watching_stereo`
        (depth budget 3 %, convergence 1/3), the ``paper`` preset the paper's rig.
    depth: depth estimation and stabilisation, used when no depth is given (sections 1-2).
    fill: ``fast`` (geometric, background-side fill, CPU), ``none`` (holes left black) or
        ``diffusion`` (the paper's frame-matrix denoising, section 4).
    diffusion: settings of the generative fill.
    format: output layout, one of :data:`framematrix.export.formats.FORMATS`.
    crf, preset: H.264/H.265 quality (lower crf = better, 18 is visually lossless) and speed.
    codec: ``h264``, ``h265`` or ``ffv1`` (lossless, .mkv). pix_fmt: ``yuv420p``,
        ``yuv420p10le`` (10-bit, with H.265) or ``yuv444p``.
    chunk_frames: frames warped, filled and written at a time by the geometric fills (bounds
        memory; the diffusion fill works in the model's windows instead). 8: at 1080p the
        chunk's matrix is most of the peak memory (2.5 GB with 8, 3.7 GB with 16), and the
        per-op overhead is already amortised at 8 (the same frames/s).
    edge_band: the band entering the warped eye at the frame edges: ``crop`` (both eyes lose
        it alike and are scaled back), ``mirror`` (reflected content, blurred), ``none``, or
        ``auto`` (``crop`` with a depth budget and a geometric fill, else ``none``: the paper's
        rig stays exact and the diffusion fill outpaints the band).
    floating_window: mask the frame edges where content in front of the screen touches them
        (a still window per shot).
    max_width, max_height: scale the input down (aspect kept, even sizes) to fit; None = keep.
    shots: how cuts are found: ``auto`` (TransNetV2 when installed, else ``content``),
        ``transnet``, ``content``, ``none`` (one shot) or the path of a file of cut frames.
    segment_frames: most new frames in one resumable segment of a video output.
    device: torch device for geometry and models (None: CUDA when available, else CPU).
    """

    stereo: StereoConfig = field(default_factory=watching_stereo)
    depth: DepthConfig = field(default_factory=DepthConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    fill: FillMethod = "fast"
    format: str = "sbs"
    crf: int = 18
    preset: str = "medium"
    codec: str = "h264"
    pix_fmt: str = "yuv420p"
    chunk_frames: int = 8
    shots: str = "auto"
    name_tags: bool = False
    fov: float = 70.0
    edge_band: str = "auto"
    floating_window: bool = False
    max_width: int | None = None
    max_height: int | None = None
    segment_frames: int = 600
    device: str | None = None

    def validate(self) -> None:
        """Raise ValueError (one line) for settings that cannot work together."""
        from framematrix.export.formats import FORMAT_NAMES

        formats = FORMAT_NAMES + ("grid", "views", "quilt", "spatial", "vr180")
        if self.stereo.depth_budget is not None and not 0 <= self.stereo.depth_budget <= 50:
            raise ValueError(f"depth_budget must be in 0..50 %, got {self.stereo.depth_budget}")
        if not 0 <= self.stereo.convergence <= 1:
            raise ValueError(f"convergence must be in [0, 1], got {self.stereo.convergence}")
        if self.format not in formats:
            raise ValueError(f"unknown format {self.format!r}; choose one of {', '.join(formats)}")
        if self.fill not in FILL_METHODS:
            raise ValueError(f"fill must be one of {', '.join(FILL_METHODS)}, got {self.fill!r}")
        if self.chunk_frames < 1 or self.segment_frames < 1:
            raise ValueError("chunk_frames and segment_frames must be >= 1")
        if self.edge_band not in ("auto", "crop", "mirror", "none"):
            raise ValueError(
                f"edge_band must be auto, crop, mirror or none, got {self.edge_band!r}"
            )
        for name in ("max_width", "max_height"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ValueError(f"{name} must be >= 2 pixels, got {value}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")

    def copy(self) -> ConvertConfig:
        return copy.deepcopy(self)


def _preset_fast() -> ConvertConfig:
    """Geometric fill, light flow: the quickest route to a watchable stereo video."""
    cfg = ConvertConfig()
    cfg.depth.flow = "dis"
    return cfg


def _preset_paper() -> ConvertConfig:
    """The paper's full method: its rig (baseline 0.08, focal 800, parallel: no depth budget),
    8 views, diffusion fill with its default schedule."""
    cfg = ConvertConfig(fill="diffusion", stereo=StereoConfig(), edge_band="none")
    cfg.depth.flow = "raft-small"
    return cfg


PRESETS = {
    "default": ConvertConfig,
    "fast": _preset_fast,
    "paper": _preset_paper,
}


def preset(name: str) -> ConvertConfig:
    """A fresh :class:`ConvertConfig` of the named preset (``default``, ``fast``, ``paper``)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
