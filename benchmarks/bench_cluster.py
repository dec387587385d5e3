"""Wall time of a multi-shot fast-fill convert: one process, and Ray with 1 and 2 workers.

A synthetic video of several shots (a new texture and a moving near square each), with given
depth (a ``.npy``, a ramp with a near box), converted to half-SBS H.264 veryfast with
``--shots`` from a cut file, segments of ``--segment-frames``. Each Ray run starts a local
Ray instance with as many CPUs as workers first; its start-up is timed apart from the convert.
Every output is checked equal, frame for frame, to the single-process output.

    python3 benchmarks/bench_cluster.py                 # 6 shots x 48 frames at 640x360
    python3 benchmarks/bench_cluster.py --shots 4 --frames 24 --width 320 --height 192
    python3 benchmarks/bench_cluster.py --address auto  # an existing cluster (ray start)

Needs ``pip install 'framematrix[cluster]'``. This measures one machine (its cores as Ray
workers); it says nothing about several machines or GPUs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np


def make_video(folder: Path, shots: int, frames: int, width: int, height: int) -> tuple:
    rng = np.random.default_rng(0)
    video = folder / "in.mp4"
    depth = []
    with av.open(str(video), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        pts = 0
        for shot in range(shots):
            small = rng.integers(0, 255, (height // 8, width // 8 + frames, 3), dtype=np.uint8)
            texture = np.repeat(np.repeat(small, 8, 0), 8, 1)
            ramp = np.linspace(1.0 + shot, 10.0 + 3 * shot, width, dtype=np.float32)
            for i in range(frames):
                frame = np.ascontiguousarray(texture[:, i * 4 : i * 4 + width][:height])
                s = height // 4
                x = (i * 5) % (width - s)
                frame[height // 3 : height // 3 + s, x : x + s] = (230, 180, 40)
                d = np.broadcast_to(ramp, (height, width)).copy()
                d[height // 3 : height // 3 + s, x : x + s] = 30.0 + 3 * shot
                depth.append(d)
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                vf.pts = pts
                pts += 1
                for packet in stream.encode(vf):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    np.save(folder / "depth.npy", np.stack(depth))
    (folder / "cuts.txt").write_text("".join(f"{k * frames}\n" for k in range(1, shots)))
    return video, folder / "depth.npy", folder / "cuts.txt"


def decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=6)
    parser.add_argument("--frames", type=int, default=48, help="frames per shot")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--segment-frames", type=int, default=48)
    parser.add_argument("--workers", default="1,2", help="Ray worker counts to time")
    parser.add_argument("--address", default=None, help="an existing Ray cluster (else local)")
    args = parser.parse_args()

    import ray

    from framematrix.config import ConvertConfig
    from framematrix.pipeline import convert

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        folder = Path(tmp)
        video, depth, cuts = make_video(folder, args.shots, args.frames, args.width, args.height)
        total = args.shots * args.frames
        cfg = ConvertConfig(
            format="half-sbs",
            shots=str(cuts),
            preset="veryfast",
            segment_frames=args.segment_frames,
        )
        print(
            f"{args.shots} shots x {args.frames} frames = {total} frames at "
            f"{args.width}x{args.height}, segments of {args.segment_frames}, "
            f"{os.cpu_count()} CPUs here"
        )
        print(f"{'run':<24} {'start-up s':>10} {'convert s':>10} {'frames/s':>9}  same output")
        t0 = time.perf_counter()
        single = convert(video, folder / "single.mp4", depth=depth, config=cfg, progress=False)
        wall = time.perf_counter() - t0
        print(f"{'one process':<24} {'':>10} {wall:>10.1f} {total / wall:>9.2f}  (reference)")
        reference = decoded(single.output)
        for count in [int(w) for w in args.workers.split(",")]:
            t0 = time.perf_counter()
            if args.address:
                ray.init(address=args.address, include_dashboard=False, configure_logging=False)
            else:
                ray.init(num_cpus=count, include_dashboard=False, configure_logging=False)
            startup = time.perf_counter() - t0
            out = folder / f"ray{count}.mp4"
            t0 = time.perf_counter()
            result = convert(
                video, out, depth=depth, config=cfg, progress=False, ray="auto", ray_workers=count
            )
            wall = time.perf_counter() - t0
            ray.shutdown()
            same = np.array_equal(decoded(result.output), reference)
            name = f"Ray, {count} worker{'s' if count > 1 else ''}"
            print(f"{name:<24} {startup:>10.1f} {wall:>10.1f} {total / wall:>9.2f}  {same}")


if __name__ == "__main__":
    main()
