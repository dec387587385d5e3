"""Frames per second of the per-frame compute of a fast-fill stereo convert at 1280x720:
depth to z, the eyes-only frame matrix (2 views), the fast fill of both eyes and float to uint8.

Decoding and encoding are left out (the pipeline overlaps them with this compute in threads).
Frames: the real DAVIS dolphins clip (../shared/data/video) resized to 1280x720, or a synthetic
textured clip when the data is absent; depth: the synthetic ground plane plus a moving blob of
``bench_convert.py`` (relative inverse depth, normalised per chunk).

    python3 benchmarks/bench_warp_fill.py [--frames 32] [--chunk 16] [--threads 2]
        [--warp nearest|subpixel] [--baseline-rev 9869ba3]

With ``--baseline-rev`` that revision is checked out into a temporary git worktree and timed in
its own process, alternating with the current tree (``--rounds`` times each, best and median
reported), so both see the same machine load; the hashes of the uint8 eyes tell whether the
outputs are bit for bit the same. Times are wall clock; "cpu" is the process CPU time per frame.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOLPHINS = ROOT.parent / "shared" / "data" / "video" / "davis_dolphins.mp4"


def make_data(path: Path, frames: int, height: int, width: int) -> None:
    """Write ``frames`` [F, H, W, 3] uint8 and ``depth`` [F, H, W] float32 to an .npz."""
    import cv2

    if DOLPHINS.exists():
        import av

        with av.open(str(DOLPHINS)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        src = [decoded[i % len(decoded)] for i in range(frames)]
        src = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in src])
    else:
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
        base = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
        src = np.stack([np.roll(base, 4 * i, axis=1) for i in range(frames)])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ground = 20.0 + 200.0 * yy / height
    depth = np.empty((frames, height, width), np.float32)
    for i in range(frames):
        cx = width * (0.3 + 0.4 * i / max(1, frames - 1))
        blob = 150.0 * np.exp(-(((xx - cx) / 120.0) ** 2 + ((yy - height * 0.5) / 150.0) ** 2))
        depth[i] = ground + blob
    np.savez(path, frames=src, depth=depth)


def worker(data: Path, chunk: int, threads: int, repeats: int, warp: str) -> None:
    """Time the compute with whatever ``framematrix`` is first on the path; print JSON."""
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    from framematrix.fill.fast import fill_matrix_fast
    from framematrix.geometry import build_frame_matrix, depth_to_z

    try:
        from framematrix.matrix import to_uint8_rounded
    except ImportError:  # older trees: the pipeline's conversion
        from framematrix.pipeline import to_uint8_numpy as to_uint8_rounded
    import inspect

    extra = {} if warp == "nearest" else {"warp": warp}
    # the pipeline discards the unfilled matrix: fill in place where the tree can
    fill_extra = (
        {"inplace": True} if "inplace" in inspect.signature(fill_matrix_fast).parameters else {}
    )

    loaded = np.load(data)
    frames, depth = loaded["frames"], loaded["depth"]
    count = frames.shape[0]

    def run() -> tuple[str, float]:
        digest = hashlib.sha256()
        holes = 0.0
        for start in range(0, count, chunk):
            stop = min(count, start + chunk)
            z = depth_to_z(torch.from_numpy(depth[start:stop]), "relative", near=None, far=10.0)
            matrix = build_frame_matrix(
                frames[start:stop], z, mode="left2right", views=2, depth_kind="metric", **extra
            )
            holes += float((~matrix.masks[matrix.right_view]).float().sum())
            eyes = [matrix.left_view, matrix.right_view]
            matrix = fill_matrix_fast(matrix, views=eyes, **fill_extra)
            left, right = matrix.eyes()
            digest.update(to_uint8_rounded(left).tobytes())
            digest.update(to_uint8_rounded(right).tobytes())
        return digest.hexdigest()[:16], holes / frames[..., 0].size

    run()  # warm-up: first-touch page faults, lazy imports
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        digest, holes = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    print(
        json.dumps(
            {
                "fps": count / min(walls),
                "cpu_ms_per_frame": 1e3 * min(cpus) / count,
                "hash": digest,
                "holes": holes,
            }
        )
    )


def time_tree(tree: Path, args: argparse.Namespace, data: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(data),
        "--chunk",
        str(args.chunk),
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
        "--warp",
        args.warp,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"timing {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=16, help="frames per chunk (as convert)")
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--threads", type=int, default=2, help="torch / OpenCV threads")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per process")
    parser.add_argument("--rounds", type=int, default=3, help="processes per tree, alternating")
    parser.add_argument("--warp", default="nearest", choices=("nearest", "subpixel"))
    parser.add_argument("--baseline-rev", default=None, help="git revision to compare with")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.chunk, args.threads, args.repeats, args.warp)
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        make_data(data, args.frames, args.height, args.width)
        trees = {"current": ROOT}
        baseline = Path(tmp) / "baseline"
        if args.baseline_rev:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(baseline)]
                + [args.baseline_rev],
                check=True,
            )
            trees = {f"baseline {args.baseline_rev}": baseline, "current": ROOT}
        try:
            results: dict[str, list[dict]] = {name: [] for name in trees}
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    results[name].append(time_tree(tree, args, data))
        finally:
            if args.baseline_rev:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                    check=False,
                )
    print(
        f"{args.frames} frames {args.width}x{args.height}, chunks of {args.chunk}, "
        f"{args.threads} threads, warp {args.warp}, load average {os.getloadavg()[0]:.1f}"
    )
    best = {}
    for name, runs in results.items():
        fps = [r["fps"] for r in runs]
        cpu = [r["cpu_ms_per_frame"] for r in runs]
        best[name] = max(fps)
        print(
            f"  {name:>20}: best {max(fps):6.2f} frames/s, median {statistics.median(fps):6.2f}; "
            f"cpu {min(cpu):6.1f} ms/frame; holes {runs[0]['holes']:.2%}; "
            f"output {runs[0]['hash']}"
        )
    if len(results) == 2:
        (base_name, base_runs), (_, cur_runs) = results.items()
        same = base_runs[0]["hash"] == cur_runs[0]["hash"]
        print(
            f"  speed-up (best / best): {best['current'] / best[base_name]:.2f}x; "
            f"outputs bit for bit identical: {'yes' if same else 'NO'}"
        )


if __name__ == "__main__":
    main()
