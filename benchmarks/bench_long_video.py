"""Peak memory and speed of long conversions (issue 7), printed as a table.

1. Fast-fill converts, with given depth (a lossless 16-bit depth video), of synthetic 1280x720
   videos of 30 s, 2 min and 5 min and 1920x1080 videos of 30 s and 2 min (24 fps): peak RSS and
   frames/s of each, each convert in its own process. Peak RSS must not grow with the length.
2. The same with estimated depth (a tiny random Depth Anything, DIS flow) at two lengths.
3. Speed against 9869ba3 (the last commit before streaming): a 150-frame 1280x720 fast-fill
   convert to half-SBS H.264 veryfast, both run here side by side (9869ba3 is checked out in a
   temporary git worktree).

    python3 benchmarks/bench_long_video.py              # everything (about an hour on 2 cores)
    python3 benchmarks/bench_long_video.py --quick      # 10 s / 30 s lengths, for a smoke run
    python3 benchmarks/bench_long_video.py --only speed
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "9869ba3"
FPS = 24


def synthetic_video(path: Path, seconds: float, width: int, height: int) -> int:
    """A textured scene with a moving near square and a cut every 10 s (new texture)."""
    frames = int(round(seconds * FPS))
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        texture = None
        for i in range(frames):
            if i % (10 * FPS) == 0:
                small = rng.integers(0, 255, (height // 8, width // 8 + 64, 3), dtype=np.uint8)
                texture = np.repeat(np.repeat(small, 8, 0), 8, 1)
            x = i % 64
            frame = np.ascontiguousarray(texture[:, x * 8 % 64 : x * 8 % 64 + width][:height])
            if frame.shape[1] < width:
                frame = np.pad(frame, ((0, 0), (0, width - frame.shape[1]), (0, 0)))
            s = height // 4
            cx = (i * 7) % (width - s)
            frame[height // 3 : height // 3 + s, cx : cx + s] = (230, 180, 40)
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return frames


def synthetic_depth_video(path: Path, frames: int, width: int, height: int) -> None:
    """Relative depth in step with :func:`synthetic_video`: a ramp, the square nearer."""
    sys.path.insert(0, str(ROOT / "src"))
    from framematrix.io.depth_video import DepthWriter

    ramp = np.broadcast_to(np.linspace(0, 100, width, dtype=np.float32), (height, width))
    with DepthWriter(path, width=width, height=height, fps=FPS, lo=0.0, hi=200.0) as writer:
        for a in range(0, frames, 32):
            n = min(32, frames - a)
            chunk = np.repeat(ramp[None], n, axis=0).copy()
            s = height // 4
            for k in range(n):
                cx = ((a + k) * 7) % (width - s)
                chunk[k, height // 3 : height // 3 + s, cx : cx + s] = 180.0
            writer.write(chunk)


RUNNER = textwrap.dedent(
    """
    import json, resource, sys, time
    sys.path.insert(0, sys.argv[1])
    # the heavy imports before the clock, for every tree alike: 9869ba3 imports torch with
    # `import framematrix`, later trees only inside convert; the timer measures the job itself
    import av, cv2, numpy, torch, torchvision  # noqa: F401
    import framematrix
    from framematrix.config import ConvertConfig
    args = json.loads(sys.argv[2])
    cfg = ConvertConfig(format=args["format"], preset="veryfast")
    for key, value in args.get("config", {}).items():
        section, _, name = key.rpartition(".")
        setattr(getattr(cfg, section) if section else cfg, name, value)
    started = time.perf_counter()
    cpu_started = time.process_time()
    kwargs = {"depth": args["depth"], "config": cfg, "progress": False}
    if args.get("profile"):
        import cProfile
        import framematrix.pipeline as pipeline
        if hasattr(pipeline, "compute_workers"):
            # cProfile sees one thread: the work of compute threads would be missing
            pipeline.compute_workers = lambda *_: 1
        profiler = cProfile.Profile()
        result = profiler.runcall(framematrix.convert, args["input"], args["output"], **kwargs)
        profiler.dump_stats(args["profile"])
    else:
        result = framematrix.convert(args["input"], args["output"], **kwargs)
    seconds = time.perf_counter() - started
    cores = (time.process_time() - cpu_started) / seconds  # CPU time of all threads / wall
    frames = getattr(result, "frames", None) or args["frames"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"seconds": seconds, "fps": frames / seconds, "peak_mb": peak, "cores": cores}
    print(json.dumps(out))
    """
)


def run_convert(src: Path, **args) -> dict:  # noqa: ANN003
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(src), json.dumps(args, default=str)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"convert failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory_table(tmp: Path, quick: bool, heights: tuple[int, ...] = (720, 1080)) -> None:
    cases = [(1280, 720, (30, 120, 300)), (1920, 1080, (30, 120))]
    if quick:
        cases = [(1280, 720, (10, 30)), (1920, 1080, (10, 30))]
    cases = [c for c in cases if c[1] in heights]
    print("\n## Fast fill, given depth (16-bit FFV1 depth video), half-sbs, x264 veryfast")
    print("| size | length | frames | frames/s | peak RSS (MB) |")
    print("|---|---|---|---|---|")
    for width, height, lengths in cases:
        peaks = []
        for seconds in lengths:
            video = tmp / f"v{width}_{seconds}.mp4"
            depth = tmp / f"d{width}_{seconds}.mkv"
            frames = synthetic_video(video, seconds, width, height)
            synthetic_depth_video(depth, frames, width, height)
            r = run_convert(
                ROOT / "src",
                input=video,
                output=tmp / f"o{width}_{seconds}.mp4",
                depth=depth,
                format="half-sbs",
                frames=frames,
            )
            peaks.append(r["peak_mb"])
            print(
                f"| {width}x{height} | {seconds} s | {frames} | {r['fps']:.2f} |"
                f" {r['peak_mb']:.0f} |",
                flush=True,
            )
            video.unlink()
            depth.unlink()
        print(
            f"| {width}x{height} | longest/shortest peak | | | {peaks[-1] / peaks[0]:.2f} |",
            flush=True,
        )


def estimated_table(tmp: Path, quick: bool) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from framematrix.depth.testing import make_tiny_depth_model

    model = make_tiny_depth_model(tmp / "tiny_depth")
    lengths = (10, 30) if quick else (30, 120)
    print("\n## Fast fill, estimated depth (tiny random Depth Anything, DIS), 640x360")
    print("| length | frames | frames/s | peak RSS (MB) |")
    print("|---|---|---|---|")
    for seconds in lengths:
        video = tmp / f"e{seconds}.mp4"
        frames = synthetic_video(video, seconds, 640, 360)
        r = run_convert(
            ROOT / "src",
            input=video,
            output=tmp / f"eo{seconds}.mp4",
            depth=None,
            format="half-sbs",
            frames=frames,
            config={"depth.model": str(model), "depth.flow": "dis"},
        )
        print(f"| {seconds} s | {frames} | {r['fps']:.2f} | {r['peak_mb']:.0f} |", flush=True)


def print_profile(path: Path, title: str, top: int = 14) -> None:
    """The functions with the most self time in a cProfile dump, in percent of all self time
    (additive, unlike cumulative time through generators). Main thread only: the work of the
    decode and encode threads is not in it; this tree is profiled with one compute thread (its
    work then in the main thread), so the profile is of the work, not of its threading."""
    import pstats

    rows = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in rows.values()) or 1.0
    ranked = sorted(rows.items(), key=lambda kv: kv[1][2], reverse=True)
    print(f"\n### cProfile of {title} (main thread, self time)")
    print("| function | share |")
    print("|---|---|")
    for (file, line, name), (_, _, tt, _, _) in ranked[:top]:
        where = file.split("framematrix/")[-1] if "framematrix/" in file else file.split("/")[-1]
        print(f"| {name} ({where}:{line}) | {100 * tt / total:.1f} % |")


def speed_table(tmp: Path, repeat: int = 2, profile: bool = False) -> None:
    base = tmp / "baseline"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), BASELINE],
        check=True,
        capture_output=True,
    )
    try:
        frames = 150
        video = tmp / "speed.mp4"
        synthetic_video(video, frames / FPS, 1280, 720)
        depth = tmp / "speed_depth.npy"
        ramp = np.broadcast_to(np.linspace(0, 100, 1280, dtype=np.float32), (720, 1280))
        np.save(depth, np.repeat(ramp[None], frames, axis=0))
        print(
            f"\n## Speed: 150 frames 1280x720, fast fill, half-sbs, x264 veryfast "
            f"(best of {repeat} interleaved rounds)"
        )
        print("| code | frames/s | cores busy | peak RSS (MB) |")
        print("|---|---|---|---|")
        runs = (
            (BASELINE, base / "src", {}),
            ("this tree, --shots none", ROOT / "src", {"config": {"shots": "none"}}),
            ("this tree, --shots auto (the default)", ROOT / "src", {}),
            (
                "this tree, --shots auto, the paper's rig (as 9869ba3)",
                ROOT / "src",
                {"config": {"stereo.depth_budget": None, "edge_band": "none"}},
            ),
        )
        # rounds of every run in turn, the best of each kept: this machine's speed drifts
        # (shared cores), and a drift then cannot favour one code over the other
        results: dict[str, dict] = {}
        runs_done = 0
        for _ in range(repeat):
            for name, src, extra in runs:
                # each run in a folder of its own: the cache beside the output (shots, depth)
                # must not let a later run skip the work that the first one did
                runs_done += 1
                out_dir = tmp / f"run{runs_done}"
                out_dir.mkdir()
                r = run_convert(
                    src,
                    input=video,
                    output=out_dir / "speed.mp4",
                    depth=depth,
                    format="half-sbs",
                    frames=frames,
                    **extra,
                )
                if name not in results or r["fps"] > results[name]["fps"]:
                    results[name] = r
        for name, r in results.items():
            print(
                f"| {name} | {r['fps']:.2f} | {r['cores']:.2f} | {r['peak_mb']:.0f} |", flush=True
            )
        if profile:
            for name, src, extra in runs[:3:2]:  # 9869ba3 and the default
                dump = tmp / f"profile_{len(name)}.pstats"
                out_dir = tmp / f"profile_{len(name)}"
                out_dir.mkdir()
                run_convert(
                    src,
                    input=video,
                    output=out_dir / "speed.mp4",
                    depth=depth,
                    format="half-sbs",
                    frames=frames,
                    profile=dump,
                    **extra,
                )
                print_profile(dump, name)
        base_fps = results[BASELINE]["fps"]
        for name in list(results)[1:]:
            print(f"| speed-up, {name} | {results[name]['fps'] / base_fps:.2f}x | | |")
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
            capture_output=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short lengths (smoke run)")
    parser.add_argument("--only", choices=("memory", "estimated", "speed"), default=None)
    parser.add_argument("--repeat", type=int, default=2, help="rounds of the speed runs")
    parser.add_argument(
        "--sizes", default="720,1080", help="frame heights of the memory table (720, 1080)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile 9869ba3 and this tree on the job"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fm-bench-") as tmp:
        tmp = Path(tmp)
        if args.only in (None, "speed"):
            speed_table(tmp, args.repeat, args.profile)
        if args.only in (None, "memory"):
            memory_table(tmp, args.quick, tuple(int(h) for h in args.sizes.split(",")))
        if args.only in (None, "estimated"):
            estimated_table(tmp, args.quick)


if __name__ == "__main__":
    main()
