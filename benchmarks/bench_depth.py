"""Speed of the depth stage: stabilisation (DIS / RAFT-small) and Depth Anything passes.

    python3 benchmarks/bench_depth.py                  # CPU: stabilisation + tiny-model pass
    python3 benchmarks/bench_depth.py --device cuda    # + Depth Anything v2-small / v1-large
    python3 benchmarks/bench_depth.py --device cpu --models v2-small   # full model on CPU

Depth Anything models are built from their published configuration with random weights (no
weights are downloaded): the speed is the real one, the depth is meaningless. Frames are the
astronaut clip from ../shared when present (320x576), else a synthetic panning texture.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "src"))

from framematrix.depth import (  # noqa: E402
    DepthConfig,
    DepthModel,
    DisFlow,
    estimate_depth,
    load_depth_model,
    load_raft,
    stabilize_depth,
)
from framematrix.depth.flow import RaftFlow  # noqa: E402
from framematrix.depth.testing import (  # noqa: E402
    depth_anything_config,
    make_tiny_depth_model,
)


def load_frames(count: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, str]:
    """[F, H, W, 3] uint8 frames and [F, H, W] float32 depth, and where they came from."""
    import cv2

    folder = SHARED / "data" / "astronaut"
    names = sorted((folder / "images").glob("*.jpg"))
    if len(names) >= count and (height, width) == (320, 576):
        frames = np.stack([cv2.imread(str(p))[:, :, ::-1] for p in names[:count]])
        depth = np.stack([np.load(folder / "depth" / f"{p.stem}.npy") for p in names[:count]])
        return np.ascontiguousarray(frames), depth.astype(np.float32), "astronaut clip"
    rng = np.random.default_rng(0)
    world = cv2.GaussianBlur(
        (rng.random((height, width + 4 * count, 3)) * 255).astype(np.uint8), (0, 0), 1.5
    )
    frames = np.stack([world[:, 4 * t : 4 * t + width] for t in range(count)])
    depth = rng.uniform(1, 100, (count, height, width)).astype(np.float32)
    return frames, depth, "synthetic panning texture"


def timed(fn, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` runs, in seconds (CUDA synchronised)."""
    best = float("inf")
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--frames", type=int, default=16, help="frames for DIS and depth")
    parser.add_argument("--raft-frames", type=int, default=4, help="frames for RAFT (slow)")
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=576)
    parser.add_argument("--flow-weights", default=str(SHARED / "weights/raft_small/raft-small.pth"))
    parser.add_argument(
        "--models",
        nargs="*",
        default=None,
        help="full-size Depth Anything variants to time (default: v2-small v1-large on CUDA, "
        "none on CPU)",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA), fp32, fp16, bf16")
    args = parser.parse_args()

    device = torch.device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    frames, depth, source = load_frames(args.frames, args.height, args.width)
    print(f"frames: {source}, {frames.shape[0]} x {frames.shape[1]}x{frames.shape[2]}")
    config = DepthConfig()

    # --- stabilisation, DIS flow
    dis_time = timed(lambda: stabilize_depth(frames, depth, DisFlow(), config, progress=False))
    print(
        f"stabilise, DIS flow:        {frames.shape[0] / dis_time:7.2f} frames/s "
        f"({dis_time:.2f} s for {frames.shape[0]} frames, window {config.window})"
    )

    # --- stabilisation, RAFT-small
    weights = Path(args.flow_weights)
    if weights.is_file():
        model, arch, _ = load_raft("raft-small", weights)
        raft = RaftFlow(model, arch, device=device, iters=config.raft_iters)
        n = min(args.raft_frames, frames.shape[0])
        raft_time = timed(
            lambda: stabilize_depth(frames[:n], depth[:n], raft, config, progress=False)
        )
        print(
            f"stabilise, RAFT-small ({config.raft_iters} it): {n / raft_time:7.3f} frames/s "
            f"({raft_time:.2f} s for {n} frames = {2 * (n - 1)} flow pairs)"
        )
    else:
        print(f"stabilise, RAFT-small: skipped, no weights at {weights}")

    # --- Depth Anything: tiny model (the loading path), then full-size random-weight models
    with tempfile.TemporaryDirectory() as tmp:
        tiny = load_depth_model(str(make_tiny_depth_model(Path(tmp) / "tiny")), device, args.dtype)
        estimate_depth(frames[:1], tiny, progress=False)  # warm-up
        tiny_time = timed(lambda: estimate_depth(frames, tiny, args.batch_size, progress=False))
        print(
            f"depth, tiny random model:   {frames.shape[0] / tiny_time:7.2f} frames/s "
            f"(518 px input, batch {args.batch_size}, {tiny.dtype})"
        )

    variants = args.models
    if variants is None:
        variants = ["v2-small", "v1-large"] if device.type == "cuda" else []
    from transformers import DepthAnythingForDepthEstimation

    for variant in variants:
        torch.manual_seed(0)
        net = DepthAnythingForDepthEstimation(depth_anything_config(variant)).eval().to(device)
        from framematrix.depth.config import resolve_dtype

        model = DepthModel(net, device, resolve_dtype(args.dtype, device), variant)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        estimate_depth(frames[: args.batch_size], model, args.batch_size, progress=False)
        seconds = timed(lambda m=model: estimate_depth(frames, m, args.batch_size, progress=False))
        print(
            f"depth, {variant} ({params:.0f} M params, random weights): "
            f"{frames.shape[0] / seconds:7.2f} frames/s (batch {args.batch_size}, {model.dtype})"
        )
        del net, model
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
