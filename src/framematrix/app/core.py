"""The web app's work, without Gradio: inputs, depth uploads, models found, preview, settings.

Everything here reads only files the app itself wrote into its work folder (uploads are copied
there first, see :func:`adopt_upload`), and reports bad input as
:class:`framematrix.errors.InputError` with one line.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from framematrix.config import PRESETS, ConvertConfig, preset
from framematrix.errors import InputError
from framematrix.export.formats import FORMAT_NAMES, compose_stereo
from framematrix.io.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

#: Output formats offered in the page (``views`` writes a folder: not offered).
APP_FORMATS: tuple[str, ...] = (*FORMAT_NAMES, "grid")
FILL_CHOICES: tuple[str, ...] = ("fast", "none", "diffusion")
INPUT_EXTENSIONS: tuple[str, ...] = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS
DEPTH_FILE_EXTENSIONS: tuple[str, ...] = (".npy", ".npz", ".png", ".pfm")
DEPTH_UPLOAD_EXTENSIONS: tuple[str, ...] = DEPTH_FILE_EXTENSIONS + (".mkv", ".mp4", ".mov", ".avi")


# ----------------------------------------------------------------------------- work folders


@dataclass
class InputInfo:
    """An input the app holds: ``path`` inside its work folder, and what the probe said."""

    path: Path
    kind: str  # video, frames, image
    frames: int
    width: int
    height: int
    fps: float
    name: str  # what the user called it (the upload's file name, or "demo")

    def describe(self) -> str:
        seconds = self.frames / self.fps if self.fps > 0 else 0.0
        what = "image" if self.kind == "image" else f"{self.frames} frames, {seconds:.2f} s"
        rate = "" if self.kind == "image" else f" at {self.fps:g} fps"
        return f"**{self.name}**: {self.width}x{self.height}, {what}{rate}"


@dataclass
class BrowserSession:
    """The files and the job of one browser tab, in ``folder`` (deleted when the tab closes)."""

    key: str
    folder: Path
    input: InputInfo | None = None
    depth: Path | None = None
    depth_name: str = ""
    job_id: str | None = None
    jobs: int = 0
    last_used: float = field(default_factory=time.time)

    def touch(self) -> None:
        self.last_used = time.time()

    def job_folder(self) -> Path:
        self.jobs += 1
        folder = self.folder / f"job{self.jobs:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder


class WorkFolder:
    """The app's own folder: one subfolder per browser tab, removed on close or when idle.

    root: the folder (created). keep_s: a tab's files are removed after this many seconds
    without use even if the tab never said goodbye.
    """

    def __init__(self, root: Path, keep_s: float = 3600.0) -> None:
        self.root = Path(root).resolve()
        self.sessions_dir = self.root / "sessions"
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        self.keep_s = keep_s
        self._sessions: dict[str, BrowserSession] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> BrowserSession:
        safe = "".join(c for c in key if c.isalnum())[:64] or "anonymous"
        with self._lock:
            session = self._sessions.get(safe)
            if session is None:
                folder = self.sessions_dir / safe
                folder.mkdir(parents=True, exist_ok=True)
                session = BrowserSession(key=safe, folder=folder)
                self._sessions[safe] = session
        session.touch()
        return session

    def drop(self, key: str) -> BrowserSession | None:
        """Forget a tab and delete its files; returns it (to cancel its job) or None."""
        safe = "".join(c for c in key if c.isalnum())[:64] or "anonymous"
        with self._lock:
            session = self._sessions.pop(safe, None)
        if session is not None:
            shutil.rmtree(session.folder, ignore_errors=True)
        return session

    def expired(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        with self._lock:
            return [k for k, s in self._sessions.items() if now - s.last_used > self.keep_s]

    def contains(self, path: Path) -> bool:
        try:
            return Path(path).resolve().is_relative_to(self.root)
        except OSError:
            return False


def adopt_upload(upload: str | os.PathLike, allowed_roots: list[Path], folder: Path) -> Path:
    """Copy an uploaded file into ``folder`` and return the copy.

    Only files under ``allowed_roots`` (Gradio's upload folder, the app's work folder) are
    taken, so a path made up in the browser is never read.
    """
    source = Path(upload).resolve()
    if not any(source.is_relative_to(Path(root).resolve()) for root in allowed_roots):
        raise InputError(f"{Path(upload).name}: not an upload of this app")
    if not source.is_file():
        raise InputError(f"{Path(upload).name}: the upload is gone (reload the page)")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _safe_name(source.name)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def _safe_name(name: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem)[:80]
    return (stem.strip(".") or "upload") + Path(name).suffix.lower()


# ----------------------------------------------------------------------------- inputs


def probe_input(path: Path, name: str) -> InputInfo:
    """Size, length and fps of an input video or image; InputError (one line) if it is bad.

    A video is decoded up to its first frame as well, so a file with a valid header but a
    broken stream is caught here rather than at Convert.
    """
    from framematrix.io.video import iter_video_frames, probe_clip

    suffix = path.suffix.lower()
    if suffix not in INPUT_EXTENSIONS:
        raise InputError(f"{name}: not a video or image (expected {', '.join(INPUT_EXTENSIONS)})")
    try:
        info = probe_clip(path)
        if info.kind == "video":
            try:
                next(iter(iter_video_frames(path, max_frames=1)))
            except StopIteration:
                raise InputError(f"{name}: the video has no decodable frame") from None
    except InputError as exc:
        raise _rename_errors(exc, path, name) from None
    return InputInfo(
        path=path,
        kind=info.kind,
        frames=info.num_frames,
        width=info.width,
        height=info.height,
        fps=info.fps,
        name=name,
    )


def _rename_errors(exc: InputError, path: Path, name: str) -> InputError:
    """The error with the app's own path of the file replaced by the name the user gave it."""
    text = str(exc).replace(f"'{path}'", name).replace(str(path), name)
    return InputError(text)


def read_input_frame(info: InputInfo, index: int) -> np.ndarray:
    """Frame ``index`` of the input: ``[H, W, 3]`` uint8 RGB."""
    from framematrix.io.video import iter_video_frames, read_clip

    index = int(min(max(index, 0), info.frames - 1))
    if info.kind == "video":
        frame = None
        for i, frame in enumerate(iter_video_frames(info.path, max_frames=index + 1)):
            if i == index:
                return frame
        if frame is None:
            raise InputError(f"{info.name}: no frame {index}")
        return frame  # fewer frames than the container said: the last one
    return read_clip(info.path, max_frames=index + 1).frames[-1]


def prepare_depth(upload: Path, info: InputInfo, name: str) -> Path:
    """A depth upload as something ``convert(depth=)`` reads, checked against the input.

    Depth files (.npy .npz .png .pfm) are used as they are. A depth video (8- or 16-bit
    grayscale, lossless, e.g. FFV1 gray16le in .mkv) is decoded to ``depth.npy`` [F, H, W]
    float32 beside it, unless this framematrix reads depth videos itself.
    """
    from framematrix.io.depth_files import DEPTH_EXTENSIONS, read_depth

    suffix = upload.suffix.lower()
    if suffix not in DEPTH_UPLOAD_EXTENSIONS and suffix not in DEPTH_EXTENSIONS:
        raise InputError(
            f"{name}: not a depth video or depth file "
            f"(expected {', '.join(DEPTH_UPLOAD_EXTENSIONS)})"
        )
    path = upload
    if suffix not in DEPTH_EXTENSIONS:
        path = upload.with_name(upload.stem + "_depth.npy")
        np.save(path, decode_depth_video(upload, name))
    try:
        read_depth(path, (info.frames, info.height, info.width))
    except InputError as exc:
        raise _rename_errors(exc, path, name) from None
    return path


def decode_depth_video(path: Path, name: str) -> np.ndarray:
    """A grayscale depth video as ``[F, H, W]`` float32 (the stored 8- or 16-bit values)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{name}: no video stream")
            stream = container.streams.video[0]
            deep = any(bits > 8 for bits in _component_bits(stream))
            fmt = "gray16le" if deep else "gray"
            maps = [
                frame.to_ndarray(format=fmt).astype(np.float32)
                for frame in container.decode(stream)
            ]
    except av.error.FFmpegError as exc:
        raise InputError(
            f"{name}: not a readable depth video ({' '.join(str(exc).split())})"
        ) from None
    if not maps:
        raise InputError(f"{name}: the depth video has no frames")
    return np.stack(maps)


def _component_bits(stream) -> list[int]:
    try:
        return [c.bits for c in stream.codec_context.format.components]
    except AttributeError:  # pragma: no cover - format unknown before decoding
        return [8]


# ----------------------------------------------------------------------------- models


@dataclass(frozen=True)
class DepthModelChoice:
    name: str  # what the dropdown shows and DepthConfig.model takes
    found: bool
    hint: str  # where it was found, or how to get it


def depth_model_choices(extra: list[str | Path] = ()) -> list[DepthModelChoice]:
    """Depth Anything models: the published ones (found in the Hugging Face cache or not) and
    local folders given to ``serve`` (found when they hold a config.json)."""
    from framematrix.depth.config import DEPTH_MODEL_ALIASES

    choices = []
    for folder in extra:
        folder = Path(folder).expanduser().resolve()
        found = (folder / "config.json").is_file()
        hint = str(folder) if found else f"{folder}: no config.json (not a transformers folder)"
        choices.append(DepthModelChoice(str(folder), found, hint))
    cache = _hub_cache()
    for alias, repo in DEPTH_MODEL_ALIASES.items():
        found = _in_hub_cache(repo)
        hint = (
            f"{repo} (Hugging Face cache)" if found else f"`hf download {repo}` (cache: `{cache}`)"
        )
        choices.append(DepthModelChoice(alias, found, hint))
    return choices


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _in_hub_cache(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo, "config.json")
    if not isinstance(config, str):
        return False
    weights = ("model.safetensors", "pytorch_model.bin")
    return any(isinstance(try_to_load_from_cache(repo, w), str) for w in weights)


def diffusion_weights_found(model: str = "cerspense/zeroscope_v2_576w") -> bool:
    if Path(model).is_dir():
        return True
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model, "model_index.json"), str)


# ----------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """The options of the page.

    depth_budget: total parallax of a shot in percent of the width (``--depth-budget``); 0 or
    None keeps the preset's rig (the ``paper`` preset: the paper's baseline and focal, parallel
    cameras). convergence: where the screen plane sits in that range, 0 = nearest content,
    1 = farthest (``--convergence``).
    """

    preset: str = "default"
    format: str = "sbs"
    depth_budget: float | None = 3.0
    convergence: float = 1 / 3
    fill: str = "fast"
    depth_model: str | None = None

    def config(self) -> ConvertConfig:
        if self.preset not in PRESETS:
            raise InputError(f"unknown preset {self.preset!r}")
        if self.format not in APP_FORMATS:
            raise InputError(f"unknown output format {self.format!r}")
        if self.fill not in FILL_CHOICES:
            raise InputError(f"unknown fill method {self.fill!r}")
        budget = float(self.depth_budget or 0.0)
        if not 0 <= budget <= 20:
            raise InputError(f"depth budget must be in [0, 20] % of the width, got {budget}")
        if not 0 <= float(self.convergence) <= 1:
            raise InputError(f"convergence must be in [0, 1], got {self.convergence}")
        cfg = preset(self.preset)
        cfg.format = self.format
        if budget > 0:
            cfg.stereo.depth_budget = budget
            cfg.stereo.convergence = float(self.convergence)
        cfg.fill = self.fill  # type: ignore[assignment]
        if self.depth_model:
            cfg.depth.model = self.depth_model
        return cfg


def output_name(info: InputInfo, fmt: str) -> str:
    stem = Path(info.name).stem or "input"
    stem = re.sub(r"[^A-Za-z0-9-]+", "_", stem).strip("_")[:60] or "input"
    suffix = ".png" if info.kind == "image" else ".mp4"
    return f"{stem}_{fmt}{suffix}"


# ----------------------------------------------------------------------------- preview


@dataclass
class Preview:
    """One frame converted with the page's settings, as files in the tab's folder."""

    anaglyph: Path
    sbs: Path
    wiggle: Path
    depth: Path
    note: str


def preview_frame(
    info: InputInfo,
    index: int,
    settings: Settings,
    folder: Path,
    *,
    depth_path: Path | None,
    models=None,  # noqa: ANN001
) -> Preview:
    """Convert frame ``index`` with ``settings``: anaglyph, SBS, a left/right wiggle GIF and the
    depth map, written into ``folder`` (PNG/GIF).

    With ``depth_path`` the eyes are exactly those ``convert`` writes for that frame
    (:func:`framematrix.pipeline.eye_pair_of`: the shot's statistics, edge band, floating
    window). Without, depth is estimated for this one frame with the chosen model (``models``:
    a ModelSession), normalised over the frame alone and not steadied (said in ``note``).
    Holes are filled with the fast fill, also for ``diffusion`` (said in ``note``)."""
    import cv2
    from PIL import Image

    from framematrix.io.array_source import ArraySource
    from framematrix.models import ModelSession
    from framematrix.pipeline import eye_pair_of

    config = settings.config()
    index = int(min(max(index, 0), info.frames - 1))
    models = models or ModelSession()
    cache = folder.parent / "cache"
    notes = []
    if depth_path is not None:
        from framematrix.io.depth_files import read_depth

        raw = read_depth(depth_path, (info.frames, info.height, info.width))[index]
        left, right = eye_pair_of(
            info.path,
            index,
            depth=depth_path,
            config=config,
            fps=info.fps if info.kind == "frames" else None,
            cache_dir=cache,
            session=models,
        )
    else:
        from framematrix.depth.estimate import estimate_depth

        frame = read_input_frame(info, index)
        model = models.depth_model(config.depth)
        raw = estimate_depth(
            frame[None], model, 1, False, config.depth.input_size, config.depth.multiple
        )[0]
        one = config.copy()
        one.shots = "none"
        left, right = eye_pair_of(
            ArraySource(frame[None], name=f"{info.name}#{index}"),
            0,
            depth=raw[None].astype(np.float32),
            config=one,
            cache_dir=cache,
            session=models,
        )
        notes.append(f"depth estimated for this frame with {config.depth.model}, not steadied")
    if config.fill == "diffusion":
        notes.append("preview holes filled with the fast fill (diffusion runs at Convert)")
    folder.mkdir(parents=True, exist_ok=True)
    stamp = f"{int(time.time() * 1000) % 10**9:09d}"  # new names: the browser does not cache
    paths = Preview(
        anaglyph=folder / f"preview_{stamp}_anaglyph.png",
        sbs=folder / f"preview_{stamp}_sbs.png",
        wiggle=folder / f"preview_{stamp}_wiggle.gif",
        depth=folder / f"preview_{stamp}_depth.png",
        note="; ".join(notes),
    )
    left, right = left[None], right[None]
    Image.fromarray(compose_stereo(left, right, "anaglyph")[0]).save(paths.anaglyph)
    Image.fromarray(compose_stereo(left, right, "sbs")[0]).save(paths.sbs)
    eyes = [Image.fromarray(left[0]), Image.fromarray(right[0])]
    eyes[0].save(paths.wiggle, save_all=True, append_images=eyes[1:], duration=180, loop=0)
    Image.fromarray(colour_depth(raw, cv2)).save(paths.depth)
    return paths


def colour_depth(depth: np.ndarray, cv2=None) -> np.ndarray:
    """``[H, W]`` depth as ``[H, W, 3]`` uint8 RGB (inferno; bright = large values = near for
    relative depth), scaled between its 1st and 99th percentile."""
    if cv2 is None:
        import cv2
    d = np.asarray(depth, dtype=np.float32)
    finite = d[np.isfinite(d)]
    lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    scaled = np.clip((np.nan_to_num(d, nan=lo) - lo) / max(hi - lo, 1e-6), 0, 1)
    grey = (scaled * 255 + 0.5).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------- demo clip


def write_demo_input(folder: Path) -> tuple[InputInfo, Path]:
    """The bundled astronaut clip as a frame folder and its depth as .npy, in ``folder``."""
    import cv2

    from framematrix.demo import load_demo_clip

    demo = load_demo_clip()
    frames_dir = folder / "demo_astronaut"
    if not frames_dir.is_dir():
        tmp = folder / ".demo_tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, frame in zip(demo.clip.names, demo.clip.frames, strict=True):
            cv2.imwrite(str(tmp / f"{name}.png"), frame[..., ::-1])
        tmp.rename(frames_dir)
    depth = folder / "demo_astronaut_depth.npy"
    np.save(depth, demo.depth)
    clip = demo.clip
    info = InputInfo(
        path=frames_dir,
        kind="frames",
        frames=clip.num_frames,
        width=clip.width,
        height=clip.height,
        fps=clip.fps,
        name="astronaut (bundled demo)",
    )
    return info, depth
