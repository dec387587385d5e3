"""Fast hole fill vs OpenCV Telea inpainting on real stereo pairs with ground-truth disparity.

For each pair the source eye is forward-warped to the other eye by its ground-truth disparity
(nearest surface wins; invalid disparity = unknown), the holes are filled with
``framematrix.fill.fast.fill_fast`` and with ``cv2.inpaint(..., cv2.INPAINT_TELEA)``, and both are
compared with the real image of the other eye: PSNR over the holes and over the whole image.
Both results are rounded to 8 bits first (Telea works on 8-bit images, the truth is 8-bit).

    python3 benchmarks/bench_stereo_fill.py [--both-directions] [--warp build|splat] [--hd]

The warp is ``framematrix.geometry.build.build_frame_matrix`` (``depth_kind="disparity-px"``,
two views, crack clean-up included) by default; ``--warp splat`` uses the small z-buffered splat
below instead, without clean-up, as an independent cross-check. Data: ../shared/data/stereo
(or $FRAMEMATRIX_SHARED/data/stereo). ``tests/test_stereo_fill_quality.py`` imports this file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from framematrix.fill.fast import fill_fast
from framematrix.geometry.build import build_frame_matrix
from framematrix.io.depth_files import read_pfm

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FRAMEMATRIX_SHARED", ROOT.parent / "shared"))
TELEA_RADII = (3, 5)


@dataclass
class StereoCase:
    """One warp: ``source`` seen from the other eye, compared with ``target``.

    ``direction`` is ``left2right`` (left eye warped to the right: x -> x - d) or
    ``right2left`` (right eye warped to the left: x -> x + d). Images ``[H, W, 3]`` float32 in
    [0, 1], disparity ``[H, W]`` float32 pixels of the source eye (inf/NaN = unknown).
    """

    name: str
    direction: str
    source: np.ndarray
    disparity: np.ndarray
    target: np.ndarray


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{path}: missing or unreadable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


@dataclass
class PairFiles:
    """Files of one stereo pair; a missing right-eye disparity disables right -> left."""

    name: str
    left: Path
    right: Path
    disparity_left: Path
    disparity_right: Path | None

    def directions(self) -> list[str]:
        return ["left2right"] + (["right2left"] if self.disparity_right is not None else [])


# the pairs of ../shared/data/stereo (DATA.md); others in the same layouts are found too
KNOWN_PAIRS = ("flyingthings_A-0032-0006", "middlebury2014_motorcycle_Q")


def _first_existing(*paths: Path) -> Path | None:
    return next((path for path in paths if path.is_file()), None)


def discover_pairs(shared: Path = SHARED) -> list[PairFiles]:
    """Stereo pairs under ``shared/data/stereo`` in the Middlebury 2014 layout (``im0.png``,
    ``im1.png``, ``disp0GT.pfm`` or ``disp0.pfm``, optional ``disp1GT.pfm`` / ``disp1.pfm``) or
    the FlyingThings3D layout (``RGB_cleanpass/{left,right}/X.png``, ``disparity/left/X.pfm``,
    optional ``disparity/right/X.pfm``; one pair per X)."""
    root = shared / "data" / "stereo"
    pairs: list[PairFiles] = []
    if not root.is_dir():
        return pairs
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        disp0 = _first_existing(folder / "disp0GT.pfm", folder / "disp0.pfm")
        if (folder / "im0.png").is_file() and (folder / "im1.png").is_file() and disp0:
            disp1 = _first_existing(folder / "disp1GT.pfm", folder / "disp1.pfm")
            pairs.append(
                PairFiles(folder.name, folder / "im0.png", folder / "im1.png", disp0, disp1)
            )
            continue
        for left in sorted((folder / "RGB_cleanpass" / "left").glob("*.png")):
            right = folder / "RGB_cleanpass" / "right" / left.name
            disp_left = folder / "disparity" / "left" / f"{left.stem}.pfm"
            if right.is_file() and disp_left.is_file():
                disp_right = _first_existing(folder / "disparity" / "right" / f"{left.stem}.pfm")
                name = (
                    folder.name if folder.name.endswith(left.stem) else f"{folder.name}/{left.stem}"
                )
                pairs.append(PairFiles(name, left, right, disp_left, disp_right))
    return pairs


def load_case(pair: PairFiles, direction: str = "left2right") -> StereoCase:
    if direction == "left2right":
        source, disparity, target = pair.left, pair.disparity_left, pair.right
    elif direction == "right2left" and pair.disparity_right is not None:
        source, disparity, target = pair.right, pair.disparity_right, pair.left
    else:
        raise ValueError(f"{pair.name}: no {direction!r} direction")
    return StereoCase(pair.name, direction, read_rgb(source), read_pfm(disparity), read_rgb(target))


def resize_case(case: StereoCase, width: int, height: int) -> StereoCase:
    """The same pair at another resolution (disparity scaled with the width)."""
    size = (width, height)
    scale = width / case.source.shape[1]
    return StereoCase(
        f"{case.name}@{width}x{height}",
        case.direction,
        cv2.resize(case.source, size, interpolation=cv2.INTER_AREA),
        cv2.resize(case.disparity, size, interpolation=cv2.INTER_NEAREST) * scale,
        cv2.resize(case.target, size, interpolation=cv2.INTER_AREA),
    )


def warp_build(
    case: StereoCase, warp: str = "nearest"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The other eye by the project's frame-matrix builder (``warp`` nearest or subpixel):
    image, known mask, target z."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "inf disparity becomes holes"
        matrix = build_frame_matrix(
            case.source[None],
            case.disparity[None],
            mode=case.direction,
            views=2,
            depth_kind="disparity-px",
            warp=warp,
        )
    other = 1 - matrix.source_view
    assert matrix.depth is not None
    return (
        matrix.images[other, 0].numpy(),
        matrix.masks[other, 0].numpy(),
        matrix.depth[other, 0].numpy(),
    )


def warp_splat(case: StereoCase) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A plain z-buffered forward splat (nearest integer pixel, larger disparity wins)."""
    height, width = case.disparity.shape
    valid = np.isfinite(case.disparity) & (case.disparity > 0)
    ys, xs = np.nonzero(valid)
    disparity = case.disparity[ys, xs]
    sign = -1.0 if case.direction == "left2right" else 1.0
    xt = np.rint(xs + sign * disparity).astype(np.int64)
    inside = (xt >= 0) & (xt < width)
    ys, xs, xt, disparity = ys[inside], xs[inside], xt[inside], disparity[inside]
    target = ys * width + xt
    order = np.lexsort((-disparity, target))  # per target pixel, the largest disparity first
    first = order[np.unique(target[order], return_index=True)[1]]
    image = np.zeros((height * width, 3), np.float32)
    z = np.full(height * width, np.inf, np.float32)
    known = np.zeros(height * width, bool)
    image[target[first]] = case.source[ys[first], xs[first]]
    z[target[first]] = 1.0 / disparity[first]
    known[target[first]] = True
    return image.reshape(height, width, 3), known.reshape(height, width), z.reshape(height, width)


def _warp(case: StereoCase, warp: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if warp == "build":
        return warp_build(case)
    if warp == "subpixel":
        return warp_build(case, "subpixel")
    return warp_splat(case)


def to_8bit(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def telea(image: np.ndarray, known: np.ndarray, radius: int) -> np.ndarray:
    """OpenCV Telea inpainting of the holes, ``[H, W, 3]`` uint8."""
    holes = (~known).astype(np.uint8) * 255
    return cv2.inpaint(to_8bit(image), holes, radius, cv2.INPAINT_TELEA)


def psnr(estimate: np.ndarray, truth: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR in dB of 8-bit images (peak 255), over ``where`` if given."""
    error = (estimate.astype(np.float64) - truth.astype(np.float64)) ** 2
    if where is not None:
        error = error[where]
    return float(10.0 * np.log10(255.0**2 / max(float(error.mean()), 1e-12)))


def timed(function, repeats: int) -> tuple[object, float]:
    """Result of the last call and the median wall time in ms."""
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, 1e3 * float(np.median(times))


@dataclass
class CaseResult:
    name: str
    direction: str
    hole_percent: float
    psnr_holes_fast: float
    psnr_all_fast: float
    ms_fast: float
    psnr_holes_telea: dict[int, float]
    psnr_all_telea: dict[int, float]
    ms_telea: dict[int, float]

    def best_telea_radius(self) -> int:
        return max(self.psnr_holes_telea, key=self.psnr_holes_telea.get)


def evaluate(
    case: StereoCase,
    warp: str = "build",
    telea_radii: tuple[int, ...] = TELEA_RADII,
    repeats: int = 1,
) -> CaseResult:
    image, known, z = _warp(case, warp)
    truth = to_8bit(case.target)
    holes = ~known
    filled, ms_fast = timed(lambda: fill_fast(image[None], known[None], z[None])[0], repeats)
    fast = to_8bit(filled)
    result = CaseResult(
        case.name,
        case.direction,
        100.0 * float(holes.mean()),
        psnr(fast, truth, holes),
        psnr(fast, truth),
        ms_fast,
        {},
        {},
        {},
    )
    for radius in telea_radii:
        inpainted, ms = timed(lambda radius=radius: telea(image, known, radius), repeats)
        result.psnr_holes_telea[radius] = psnr(inpainted, truth, holes)
        result.psnr_all_telea[radius] = psnr(inpainted, truth)
        result.ms_telea[radius] = ms
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--warp",
        choices=("build", "subpixel", "splat"),
        default="build",
        help="build: frame-matrix builder, nearest warp; subpixel: the builder's subpixel warp",
    )
    parser.add_argument("--both-directions", action="store_true", help="also right -> left")
    parser.add_argument("--hd", action="store_true", help="also time at 1280x720 (Middlebury)")
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats (median)")
    parser.add_argument("--shared", type=Path, default=SHARED)
    args = parser.parse_args(argv)

    pairs = discover_pairs(args.shared)
    for name in KNOWN_PAIRS:
        if name not in {pair.name for pair in pairs}:
            print(f"missing {name} under {args.shared}/data/stereo", file=sys.stderr)
    cases = []
    for pair in pairs:
        directions = pair.directions() if args.both_directions else ["left2right"]
        cases += [load_case(pair, direction) for direction in directions]
    if args.hd and cases:
        middlebury = [c for c in cases if c.name.startswith("middlebury")] or cases
        cases.append(resize_case(middlebury[0], 1280, 720))
    if not cases:
        print("no stereo data found", file=sys.stderr)
        return 1

    radii = " ".join(f"Telea r{r}" for r in TELEA_RADII)
    print(f"warp: {args.warp}; PSNR in dB (fast | {radii}); times: median of {args.repeats}")
    header = (
        f"{'pair':42s} {'dir':10s} {'holes':>6s}  {'PSNR holes':>24s}  {'PSNR all':>24s}"
        f"  {'ms / image':>22s}  {'gain holes':>10s}"
    )
    print(header)
    print("-" * len(header))
    for case in cases:
        r = evaluate(case, args.warp, TELEA_RADII, args.repeats)
        best = r.best_telea_radius()

        def row(fast: float, telea_values: dict[int, float], fmt: str) -> str:
            return " | ".join([format(fast, fmt)] + [format(v, fmt) for v in telea_values.values()])

        print(
            f"{r.name:42s} {r.direction:10s} {r.hole_percent:5.1f}%"
            f"  {row(r.psnr_holes_fast, r.psnr_holes_telea, '6.2f'):>24s}"
            f"  {row(r.psnr_all_fast, r.psnr_all_telea, '6.2f'):>24s}"
            f"  {row(r.ms_fast, r.ms_telea, '6.1f'):>22s}"
            f"  {r.psnr_holes_fast - r.psnr_holes_telea[best]:+9.2f}"
        )
    print("gain holes: fast minus the best Telea radius.")
    if args.hd and cases:
        time_hd(cases[-1], args.warp, max(args.repeats, 10))
    return 0


def time_hd(case: StereoCase, warp: str, repeats: int) -> None:
    """Wall and CPU time (all threads) of one 1280x720 eye; the load says how shared the CPU is."""
    image, known, z = _warp(case, warp)
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        fill_fast(image[None], known[None], z[None])
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"fast fill of one {image.shape[1]}x{image.shape[0]} eye ({100 * (~known).mean():.1f}% "
        f"holes), {repeats} runs: wall median {1e3 * np.median(wall):.1f} ms "
        f"(min {1e3 * min(wall):.1f}), CPU median {1e3 * np.median(cpu):.1f} ms; "
        f"{os.cpu_count()} CPUs, load average {load:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
