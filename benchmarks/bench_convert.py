"""Frames per second of a full ``convert`` (decode + warp + fill + encode) of a 1280x720 video.

Uses the real DAVIS dolphins clip (../shared/data/video) upscaled to 1280x720 with a synthetic
depth (a ground plane plus a near blob), or a synthetic textured clip when the data is absent.

    python3 benchmarks/bench_convert.py [--frames 48] [--fill fast] [--format sbs]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from framematrix.config import ConvertConfig
from framematrix.export.writers import write_video
from framematrix.pipeline import convert

ROOT = Path(__file__).resolve().parents[1]
DOLPHINS = ROOT.parent / "shared" / "data" / "video" / "davis_dolphins.mp4"


def make_source(folder: Path, frames: int, height: int, width: int) -> tuple[Path, np.ndarray]:
    """A 1280x720 H.264 clip and a synthetic relative depth [F, H, W] for it."""
    if DOLPHINS.exists():
        from framematrix.io.video import read_clip

        clip = read_clip(DOLPHINS)
        src = clip.frames[np.arange(frames) % clip.frames.shape[0]]
        src = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in src])
    else:
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
        base = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
        src = np.stack([np.roll(base, 4 * i, axis=1) for i in range(frames)])
    path = folder / "source_720p.mp4"
    write_video(path, src, fps=24, crf=18, preset="veryfast")
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ground = 20.0 + 200.0 * yy / height
    depth = np.empty((frames, height, width), np.float32)
    for i in range(frames):
        cx = width * (0.3 + 0.4 * i / max(1, frames - 1))
        blob = 150.0 * np.exp(-(((xx - cx) / 120.0) ** 2 + ((yy - height * 0.5) / 150.0) ** 2))
        depth[i] = ground + blob
    return path, depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--fill", default="fast", choices=("fast", "none"))
    parser.add_argument("--format", default="sbs")
    parser.add_argument("--preset", default="veryfast", help="x264 preset of the output")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source, depth = make_source(folder, args.frames, args.height, args.width)
        config = ConvertConfig(fill=args.fill, format=args.format, preset=args.preset)
        out = folder / "out.mp4"
        started = time.perf_counter()
        result = convert(source, out, depth=depth, config=config, progress=False)
        seconds = time.perf_counter() - started
    print(f"device: cpu ({torch.get_num_threads()} threads)")
    print(
        f"convert {args.frames} frames {args.width}x{args.height} -> {args.format}, "
        f"fill {args.fill}, x264 {args.preset}: {seconds:.2f} s = "
        f"{args.frames / seconds:.2f} frames/s (holes before fill {result.hole_fraction:.1%})"
    )


if __name__ == "__main__":
    main()
