"""The bundled demo: the method authors' astronaut clip with its refined depth (Apache-2.0).

Runs offline on a CPU with no model weights: the depth ships with the clip, and the holes are
filled with the fast geometric fill. See ``assets/astronaut/ATTRIBUTION.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from framematrix.config import ConvertConfig
from framematrix.io.video import Clip


@dataclass
class DemoClip:
    clip: Clip
    depth: np.ndarray  # [F, H, W] float32 relative inverse depth
    prompt: str


def load_demo_clip() -> DemoClip:
    """The 16-frame 320x576 astronaut clip and its refined depth, from the package data."""
    folder = resources.files("framematrix") / "assets" / "astronaut"
    meta = json.loads((folder / "meta.json").read_text())
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".jpg"))
    frames = np.stack(
        [
            cv2.cvtColor(
                cv2.imdecode(np.frombuffer((folder / n).read_bytes(), np.uint8), cv2.IMREAD_COLOR),
                cv2.COLOR_BGR2RGB,
            )
            for n in names
        ]
    )
    packed = cv2.imdecode(
        np.frombuffer((folder / "depth_refined.png").read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED
    )
    depth = packed.reshape(meta["frames"], meta["height"], meta["width"]).astype(np.float32)
    scale = (meta["depth_max"] - meta["depth_min"]) / (meta["levels"] - 1)
    depth = depth * np.float32(scale) + np.float32(meta["depth_min"])
    clip = Clip(
        frames=frames,
        fps=float(meta["fps"]),
        source=Path(str(folder)),
        kind="frames",
        names=[Path(n).stem for n in names],
        has_audio=False,
    )
    return DemoClip(clip=clip, depth=depth, prompt=meta["prompt"])


def run_demo(output_dir: str | Path = "demo_out", *, progress: bool = True) -> list[Path]:
    """Convert the demo clip to a full-SBS mp4, a Dubois anaglyph mp4 and a grid of all 8 views.

    The 8-view matrix is built and filled once and exported three times.
    """
    from framematrix.io.array_source import ArraySource
    from framematrix.pipeline import convert

    demo = load_demo_clip()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    source = ArraySource(
        demo.clip.frames, demo.clip.fps, names=demo.clip.names, name="astronaut (demo)"
    )
    written = []
    for fmt, name in (
        ("sbs", "astronaut_sbs.mp4"),
        ("anaglyph", "astronaut_anaglyph.mp4"),
        ("grid", "astronaut_views_grid.mp4"),
    ):
        config = ConvertConfig(format=fmt, shots="none")
        path = output_dir / name
        convert(source, path, depth=demo.depth, config=config, progress=progress)
        written.append(path)
    return written
