"""The conversion pipeline: inputs -> depth -> frame matrix -> fill -> export.

Each stage is a function a user can call on its own; :func:`convert` chains them and streams the
clip through in chunks of ``config.chunk_frames`` frames so that long videos stay in bounded
memory. Depth is normalised over the whole clip before chunking (METHOD.md section 3.1), so
chunks share one depth scale.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from framematrix.config import FILL_METHODS, ConvertConfig
from framematrix.errors import InputError
from framematrix.export.formats import FORMAT_NAMES, compose_stereo, views_grid
from framematrix.export.writers import IMAGE_OUTPUT_EXTENSIONS, VIDEO_OUTPUT_EXTENSIONS
from framematrix.geometry.build import build_frame_matrix
from framematrix.geometry.normalize import depth_to_z
from framematrix.io.depth_files import read_depth
from framematrix.io.video import Clip, read_clip
from framematrix.matrix import FrameMatrix

VIDEO_SUFFIXES = tuple(VIDEO_OUTPUT_EXTENSIONS)
IMAGE_SUFFIXES = IMAGE_OUTPUT_EXTENSIONS
#: Formats that need every view of the matrix rather than the two eyes.
MULTIVIEW_FORMATS = ("grid", "views")


@dataclass
class ConvertResult:
    """What :func:`convert` wrote and what it cost."""

    output: Path
    frames: int
    fps: float
    views: int
    hole_fraction: float
    seconds: float


def resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_depth(
    clip: Clip,
    depth: str | Path | np.ndarray | None,
    config: ConvertConfig,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Depth for every frame of ``clip``: ``[F, H, W]`` float32.

    ``depth`` is a file or folder (see :func:`framematrix.io.depth_files.read_depth`), an array,
    or None to estimate it with Depth Anything and stabilise it (``config.depth``), cached in
    ``cache_dir`` keyed by the input and the depth settings.
    """
    frames_shape = clip.frames.shape[:3]
    if depth is None:
        from framematrix.depth.cache import compute_depth

        return compute_depth(
            clip.frames,
            config.depth,
            cache_dir=cache_dir,
            input_id=str(clip.source),
            progress=progress,
        )
    if isinstance(depth, (str, Path)):
        return read_depth(Path(depth), frames_shape)
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape != tuple(frames_shape):
        raise InputError(f"depth array has shape {depth.shape}, expected {tuple(frames_shape)}")
    return depth


def depth_for_warp(
    depth: np.ndarray, config: ConvertConfig, *, source: str = "depth"
) -> tuple[torch.Tensor, str]:
    """Whole-clip normalisation: returns (per-frame values, depth kind for the chunked warp).

    Relative and metric depth become scene depth z (``metric``); pixel disparity is passed
    through unchanged since it needs no clip-level scale.
    """
    stereo = config.stereo
    values = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))
    if stereo.depth_kind == "disparity-px":
        return values, "disparity-px"
    try:
        z = depth_to_z(values, stereo.depth_kind, near=stereo.near, far=stereo.far)
    except InputError as exc:  # name the file the user gave (e.g. a constant depth map)
        raise InputError(f"{source}: {exc}") from None
    return z, "metric"


def eye_views_only(config: ConvertConfig) -> bool:
    """Whether only the two eyes need warping (cheaper than the full matrix)."""
    return config.fill != "diffusion" and config.format not in MULTIVIEW_FORMATS


def build_chunk(
    frames: np.ndarray,
    values: torch.Tensor,
    kind: str,
    config: ConvertConfig,
    *,
    eyes_only: bool,
    device: torch.device,
) -> FrameMatrix:
    """Frame matrix of one chunk. With ``eyes_only`` the rig keeps its end cameras (the eyes)
    and the source, which gives exactly the end views of the full V-view rig."""
    stereo = config.stereo
    views = stereo.views
    if eyes_only:
        views = 3 if stereo.mode == "middle2leftright" else 2
    return build_frame_matrix(
        frames,
        values,
        mode=stereo.mode,
        views=views,
        baseline=stereo.baseline,
        focal=stereo.focal,
        near=stereo.near,
        far=stereo.far,
        planes=stereo.planes,
        depth_kind=kind,
        device=device,
    )


class Filler:
    """Fills the holes of a chunk's frame matrix with the configured method."""

    def __init__(self, config: ConvertConfig, *, progress: bool = True) -> None:
        if config.fill not in FILL_METHODS:
            raise ValueError(f"fill must be one of {FILL_METHODS}, got {config.fill!r}")
        self.config = config
        self.progress = progress
        self._backbone = None
        self._diffusion = config.diffusion
        if config.fill == "diffusion" and config.format in MULTIVIEW_FORMATS:
            # Every view is an output: denoise them all (the paper's multi-view schedule).
            self._diffusion = dataclasses.replace(config.diffusion, multiview=True)

    def __call__(self, matrix: FrameMatrix, views: list[int]) -> FrameMatrix:
        method = self.config.fill
        if method == "none":
            return matrix
        if method == "fast":
            from framematrix.fill.fast import fill_matrix_fast

            return fill_matrix_fast(matrix, views=views)
        from framematrix.fill.diffusion.run import diffusion_fill, load_backbone

        if self._backbone is None:
            self._backbone = load_backbone(self._diffusion)
        return diffusion_fill(
            matrix, self._diffusion, backbone=self._backbone, progress=self.progress
        )


def iter_filled_matrices(
    clip: Clip,
    depth: np.ndarray,
    config: ConvertConfig,
    *,
    eyes_only: bool,
    progress: bool = True,
    depth_source: str = "depth",
) -> Iterator[FrameMatrix]:
    """Frame matrices of consecutive chunks of the clip, holes filled, on the CPU.

    The depth is normalised over the whole clip here, before the first chunk is asked for, so
    a bad depth fails before any output is started; ``depth_source`` names it in the error.
    """
    device = resolve_device(config.device)
    values, kind = depth_for_warp(depth, config, source=depth_source)
    fill = Filler(config, progress=progress)

    def chunks() -> Iterator[FrameMatrix]:
        total = clip.frames.shape[0]
        step = max(1, int(config.chunk_frames))
        with tqdm(
            total=total, unit="frame", desc="convert", disable=not progress, leave=False
        ) as bar:
            for start in range(0, total, step):
                stop = min(total, start + step)
                matrix = build_chunk(
                    clip.frames[start:stop],
                    values[start:stop],
                    kind,
                    config,
                    eyes_only=eyes_only,
                    device=device,
                )
                views = (
                    [matrix.left_view, matrix.right_view]
                    if eyes_only or not config.diffusion.multiview
                    else list(range(matrix.num_views))
                )
                if config.format in MULTIVIEW_FORMATS:
                    views = list(range(matrix.num_views))
                yield fill(matrix, views).to("cpu")
                bar.update(stop - start)

    return chunks()


def matrix_to_output_frames(matrix: FrameMatrix, fmt: str) -> np.ndarray:
    """Compose one chunk's matrix into output frames ``[F, H', W', 3]`` uint8 for ``fmt``."""
    if fmt == "grid":
        return views_grid(to_uint8_numpy(matrix.images))
    left, right = matrix.eyes()
    return compose_stereo(to_uint8_numpy(left), to_uint8_numpy(right), fmt)


def to_uint8_numpy(images: torch.Tensor) -> np.ndarray:
    """float in [0, 1] (any shape) -> uint8 numpy, rounded."""
    return (images.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def write_views_folder(
    output: Path, matrices: Iterator[FrameMatrix], *, names: list[str], overwrite: bool = False
) -> Path:
    """Every view as its own frame folder: ``output/view{j:02d}/{name}.png``, atomically."""
    import cv2

    from framematrix.io.atomic import atomic_dir

    with atomic_dir(output, overwrite=overwrite) as tmp:
        index = 0
        for matrix in matrices:
            images = to_uint8_numpy(matrix.images)
            for j in range(matrix.num_views):
                view_dir = Path(tmp) / f"view{j:02d}"
                view_dir.mkdir(exist_ok=True)
                for i in range(matrix.num_frames):
                    cv2.imwrite(str(view_dir / f"{names[index + i]}.png"), images[j, i][..., ::-1])
            index += matrix.num_frames
    return output


def check_output(output: Path, kind: str, *, inputs: list[Path], overwrite: bool = False) -> None:
    """Fail before any work if writing ``output`` would destroy an input or a user's folder."""
    from framematrix.io.atomic import check_folder_output

    if not output.resolve().name:
        raise InputError(f"{output}: give an output file or folder name")
    target = output.resolve()
    for path in inputs:
        source = path.resolve()
        if target == source or source.is_relative_to(target):
            raise InputError(f"{output}: the output would overwrite the input {path}")
    if kind == "folder":
        check_folder_output(output, overwrite)


def output_kind(output: Path, fmt: str) -> str:
    """``video``, ``image`` or ``folder``, from the output path's suffix."""
    suffix = output.suffix.lower()
    if fmt == "views":
        if suffix in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
            raise InputError(f"{output}: format 'views' writes a folder; give a folder path")
        return "folder"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix:
        raise InputError(
            f"{output}: unsupported output type {suffix!r} "
            f"(use {', '.join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)} or a folder)"
        )
    return "folder"


def export(
    matrices: Iterator[FrameMatrix],
    output: Path,
    *,
    fmt: str,
    fps: float,
    names: list[str],
    crf: int = 18,
    preset: str = "medium",
    audio_from: Path | None = None,
    overwrite: bool = False,
) -> tuple[int, float, int]:
    """Write chunks of filled matrices to ``output`` in ``fmt``.

    Returns (frames written, mean hole fraction of the written eye/views before filling, V).
    """
    from framematrix.export.writers import write_frames, write_image, write_video

    stats = {"frames": 0, "holes": 0.0, "views": 0}

    def chunks() -> Iterator[FrameMatrix]:
        for matrix in matrices:
            stats["frames"] += matrix.num_frames
            stats["views"] = matrix.num_views
            stats["holes"] += float(matrix.hole_fraction().max()) * matrix.num_frames
            yield matrix

    def frames_iter() -> Iterator[np.ndarray]:
        for matrix in chunks():
            yield from matrix_to_output_frames(matrix, fmt)

    kind = output_kind(output, fmt)
    if fmt == "views":
        write_views_folder(output, chunks(), names=names, overwrite=overwrite)
    elif kind == "video":
        write_video(output, frames_iter(), fps=fps, crf=crf, preset=preset, audio_from=audio_from)
    elif kind == "image":
        frames = list(frames_iter())
        if len(frames) != 1:
            raise InputError(f"{output}: an image output needs a single-image input")
        write_image(output, frames[0])
    else:
        write_frames(output, frames_iter(), names=names, overwrite=overwrite)
    frames = max(1, stats["frames"])
    return stats["frames"], stats["holes"] / frames, stats["views"]


def convert(
    input: str | Path,
    output: str | Path,
    *,
    depth: str | Path | np.ndarray | None = None,
    config: ConvertConfig | None = None,
    fps: float | None = None,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ConvertResult:
    """Convert a monocular video, frame folder or image into a stereoscopic output.

    input: video file (mp4, mov, mkv, avi, webm), folder of frames, or single image.
    output: ``.mp4``/``.mkv``/``.mov`` (H.264 video, source fps and audio), ``.png``/``.jpg``
        (single-image input), or a folder (PNG frames).
    depth: per-frame depth (file, folder or ``[F, H, W]`` array, kind ``config.stereo.depth_kind``),
        or None to estimate it (Depth Anything, then temporal stabilisation).
    fps: frame rate for frame-folder inputs (videos keep theirs).
    cache_dir: where estimated depth is cached (default: ``.framematrix-cache`` beside the output).
    overwrite: replace an existing output folder that is not empty (files are always replaced,
        never the input itself).
    """
    started = time.perf_counter()
    config = config or ConvertConfig()
    if config.format not in FORMAT_NAMES + MULTIVIEW_FORMATS:
        raise ValueError(f"unknown format {config.format!r}")
    output = Path(output)
    kind = output_kind(output, config.format)  # reject a bad output path before any work
    check_output(
        output,
        kind,
        inputs=[Path(input)] + ([Path(depth)] if isinstance(depth, (str, Path)) else []),
        overwrite=overwrite,
    )
    clip = read_clip(Path(input), fps=fps)
    if cache_dir is None:
        cache_dir = output.parent / ".framematrix-cache"
    depth_map = load_depth(clip, depth, config, cache_dir=Path(cache_dir), progress=progress)
    source = str(depth) if isinstance(depth, (str, Path)) else f"depth of {clip.source}"
    matrices = iter_filled_matrices(
        clip,
        depth_map,
        config,
        eyes_only=eye_views_only(config),
        progress=progress,
        depth_source=source,
    )
    frames, holes, views = export(
        matrices,
        output,
        fmt=config.format,
        fps=clip.fps,
        names=clip.names,
        crf=config.crf,
        preset=config.preset,
        audio_from=clip.source if clip.has_audio else None,
        overwrite=overwrite,
    )
    return ConvertResult(
        output=output,
        frames=frames,
        fps=clip.fps,
        views=views,
        hole_fraction=holes,
        seconds=time.perf_counter() - started,
    )


def save_matrix(matrix: FrameMatrix, folder: Path, *, start: int = 0) -> None:
    """Write ``folder/view{j:02d}/{i:05d}.png`` and ``{i:05d}_mask.png`` (255 known, 0 hole)."""
    import cv2

    images = to_uint8_numpy(matrix.images)
    masks = matrix.masks.cpu().numpy()
    for j in range(matrix.num_views):
        view_dir = folder / f"view{j:02d}"
        view_dir.mkdir(parents=True, exist_ok=True)
        for i in range(matrix.num_frames):
            name = f"{start + i:05d}"
            cv2.imwrite(str(view_dir / f"{name}.png"), images[j, i][..., ::-1])
            cv2.imwrite(str(view_dir / f"{name}_mask.png"), masks[j, i].astype(np.uint8) * 255)


def make_matrix(
    input: str | Path,
    depth: str | Path | np.ndarray,
    output_dir: str | Path,
    *,
    config: ConvertConfig | None = None,
    fps: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Build the full frame matrix of a clip (no fill) and save it under ``output_dir``."""
    from framematrix.io.atomic import atomic_dir

    config = config or ConvertConfig(fill="none")
    inputs = [Path(input)] + ([Path(depth)] if isinstance(depth, (str, Path)) else [])
    check_output(Path(output_dir), "folder", inputs=inputs, overwrite=overwrite)
    clip = read_clip(Path(input), fps=fps)
    depth_map = load_depth(clip, depth, config, progress=progress)
    device = resolve_device(config.device)
    source = str(depth) if isinstance(depth, (str, Path)) else f"depth of {clip.source}"
    values, kind = depth_for_warp(depth_map, config, source=source)
    total = clip.frames.shape[0]
    step = max(1, int(config.chunk_frames))
    output_dir = Path(output_dir)
    with atomic_dir(output_dir, overwrite=overwrite) as tmp:
        for start in tqdm(range(0, total, step), desc="matrix", disable=not progress, leave=False):
            stop = min(total, start + step)
            matrix = build_chunk(
                clip.frames[start:stop],
                values[start:stop],
                kind,
                config,
                eyes_only=False,
                device=device,
            )
            save_matrix(matrix, Path(tmp), start=start)
    return output_dir


def write_depth_folder(
    depth: np.ndarray, folder: str | Path, names: list[str], *, overwrite: bool = False
) -> Path:
    """Write ``{name}.npy`` (float32) per frame, and a 16-bit ``preview/{name}.png``.

    The folder can be given back as ``--depth``: the previews sit in a subfolder so that it
    holds one depth format. They share one scale over the clip (0 = the clip's minimum,
    65535 = its maximum), so their brightness is comparable across frames.
    """
    import cv2

    from framematrix.io.atomic import atomic_dir

    folder = Path(folder)
    finite = depth[np.isfinite(depth)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scale = 65535.0 / (hi - lo) if hi > lo else 0.0
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        (Path(tmp) / "preview").mkdir()
        for name, d in zip(names, depth, strict=True):
            np.save(Path(tmp) / f"{name}.npy", d.astype(np.float32))
            preview = np.nan_to_num((d - lo) * scale, nan=0.0, posinf=65535.0, neginf=0.0)
            cv2.imwrite(
                str(Path(tmp) / "preview" / f"{name}.png"),
                np.clip(preview, 0, 65535).astype(np.uint16),
            )
    return folder


def estimate_depth_files(
    input: str | Path,
    output_dir: str | Path,
    *,
    config: ConvertConfig | None = None,
    fps: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Estimate (and, per ``config.depth.stabilize``, stabilise) depth; write it per frame."""
    config = config or ConvertConfig()
    output_dir = Path(output_dir)
    check_output(output_dir, "folder", inputs=[Path(input)], overwrite=overwrite)
    clip = read_clip(Path(input), fps=fps)
    depth = load_depth(
        clip, None, config, cache_dir=output_dir.parent / ".framematrix-cache", progress=progress
    )
    return write_depth_folder(depth, output_dir, clip.names, overwrite=overwrite)


def stabilize_depth_files(
    input: str | Path,
    depth: str | Path,
    output_dir: str | Path,
    *,
    config: ConvertConfig | None = None,
    fps: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Steady the given per-frame depth of ``input`` over time; write it per frame."""
    from framematrix.depth.cache import stabilize_only

    config = config or ConvertConfig()
    check_output(Path(output_dir), "folder", inputs=[Path(input), Path(depth)], overwrite=overwrite)
    clip = read_clip(Path(input), fps=fps)
    raw = read_depth(Path(depth), clip.frames.shape[:3])
    steady = stabilize_only(clip.frames, raw, config.depth, progress=progress)
    return write_depth_folder(steady, output_dir, clip.names, overwrite=overwrite)
