"""Speed of the frame-matrix construction (METHOD.md section 3) on the authors' astronaut clip.

    python3 benchmarks/bench_matrix.py                 # CPU, torch's default thread count
    python3 benchmarks/bench_matrix.py --threads 1     # one intra-op thread
    python3 benchmarks/bench_matrix.py --device cuda

Builds the 16-frame x 8-view 320x576 matrix from depth_refined (left2right, B = 0.08, focal 800,
far 10, 4 planes), as the authors' golden one, and prints the best wall time of a few runs after
a warm-up (plus the process CPU time of that run, which is what a loaded machine does not
inflate), then the agreement with the golden matrix. The authors' code takes 57 s here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "src"))

from framematrix.geometry import build_frame_matrix  # noqa: E402


def _load(astronaut: Path) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    frames = np.stack(
        [cv2.imread(str(p))[..., ::-1] for p in sorted((astronaut / "images").glob("*.jpg"))]
    )
    depth = np.stack([np.load(p) for p in sorted((astronaut / "depth_refined").glob("*.npy"))])
    return np.ascontiguousarray(frames), depth


def _golden_agreement(matrix, golden: Path) -> tuple[float, float, int]:
    import cv2

    images = (matrix.images * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    masks = matrix.masks.cpu().numpy()
    agreement, psnr, mismatches = [], [], 0
    for frame in range(matrix.num_frames):
        for view in range(matrix.num_views):
            stem = golden / f"{frame:05d}_baseline_0.08_{view:03d}"
            gold = cv2.imread(f"{stem}.jpg")[..., ::-1].astype(np.float64)
            gold_mask = cv2.imread(f"{stem}_mask.png", cv2.IMREAD_GRAYSCALE) > 127
            mask = masks[view, frame]
            both = mask & gold_mask
            mismatches += int((mask != gold_mask).sum())
            agreement.append(float(np.mean(mask == gold_mask)))
            mse = np.mean((images[view, frame][both] - gold[both]) ** 2)
            psnr.append(10 * np.log10(255.0**2 / mse))
    return min(agreement), min(psnr), mismatches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    astronaut = SHARED / "data" / "astronaut"
    if not astronaut.exists():
        sys.exit(f"shared data not found: {astronaut} (see ../shared/DATA.md)")
    frames, depth = _load(astronaut)
    device = torch.device(args.device)

    def build():
        matrix = build_frame_matrix(
            frames,
            depth,
            mode="left2right",
            views=8,
            baseline=0.08,
            focal=800.0,
            far=10.0,
            planes=4,
            device=device,
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        return matrix

    matrix = build()  # warm-up
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(args.runs):
        wall, cpu = time.perf_counter(), time.process_time()
        matrix = build()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if wall < best_wall:
            best_wall, best_cpu = wall, cpu
    print(
        f"frame matrix 16 frames x 8 views 320x576 on {device} ({torch.get_num_threads()} "
        f"threads): best of {args.runs} {best_wall:.3f} s wall ({best_cpu:.3f} s process CPU); "
        "reference implementation 57 s"
    )
    golden = astronaut / "golden" / "left2right_b0.08_v8"
    if golden.exists():
        agreement, psnr, mismatches = _golden_agreement(matrix, golden)
        print(
            f"golden agreement: min mask agreement {agreement:.7f} ({mismatches} pixels differ "
            f"in {matrix.num_frames * matrix.num_views} images), min PSNR {psnr:.2f} dB"
        )


if __name__ == "__main__":
    main()
