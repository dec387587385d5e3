"""Segments of a video output on a Ray cluster (optional extra ``framematrix[cluster]``).

The driver (:func:`framematrix.pipeline.convert` with ``ray=``) finds the shots, prepares the
depth and writes the manifest; depth is computed by the driver first and stored on disk in the
cache dir (a path the workers share), so every worker reads the same store. Each task re-opens
the input and the depth itself from a :class:`TaskSpec`, encodes one segment into the work
folder (also shared) and returns ``(index, path)``; only the driver records it
(``work.finish``), so the manifest stays the driver's and a restarted driver resumes from it.
Workers are actors (one GPU each where CUDA is present, else one CPU) that keep a
``ModelSession`` between segments; a worker that dies is restarted and its segment retried.
With the diffusion fill the segments of one shot run in order (each needs the previous one's
tail); different shots run in parallel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from framematrix.errors import InputError

CRASH_ENV = "FRAMEMATRIX_TEST_CRASH_FILE"  # tests: a worker exits mid-segment once


def _ray():  # noqa: ANN202
    try:
        import ray
    except ImportError:
        raise InputError("the cluster mode needs Ray: pip install 'framematrix[cluster]'") from None
    return ray


@dataclass
class TaskSpec:
    """What a worker needs to re-open a job: input path, depth (path, array or None for the
    store in ``cache_dir``), config, fps, shots and the cache dir."""

    input: object
    depth: object
    config: object
    fps: float | None
    shots: list
    cache_dir: Path


class _Worker:
    def __init__(self) -> None:
        from framematrix.models import ModelSession

        self.session = ModelSession()

    def encode(self, spec: TaskSpec, work, seg) -> tuple[int, str]:  # noqa: ANN001
        from framematrix.pipeline import _Job, encode_segment, open_input, prepare_depth
        from framematrix.progress import Progress

        prog = Progress.of(False)
        with open_input(spec.input, spec.fps) as source:
            depth = prepare_depth(
                source,
                spec.shots,
                spec.depth,
                spec.config,
                session=self.session,
                cache_dir=spec.cache_dir,
                progress=prog,
            )
            job = _Job(source, depth, spec.config, self.session, prog)
            flag = os.environ.get(CRASH_ENV)
            if flag and os.path.exists(flag):
                try:
                    os.remove(flag)
                except FileNotFoundError:
                    pass
                else:
                    os._exit(1)
            with prog.task("segment", seg.num_frames) as task:
                written = encode_segment(job, work, seg, task)
        return seg.index, str(written)


def _default_workers(ray) -> tuple[int, bool]:  # noqa: ANN001
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus:
        return gpus, True
    return max(1, int(res.get("CPU", 1))), False


def run_segments(job, work, pending, address: str, spec: TaskSpec, task, *, workers=None) -> None:  # noqa: ANN001
    """Encode ``pending`` segments on Ray actors and record each with ``work.finish``."""
    ray = _ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, include_dashboard=False)
        started = True
    try:
        count, gpu = _default_workers(ray)
        count = workers or count
        res = {"num_gpus": 1} if gpu else {"num_cpus": 1}
        actor = ray.remote(**res)(_Worker).options(max_restarts=-1, max_task_retries=3)
        actors = [actor.remote() for _ in range(count)]
        chains: dict[int, list] = {}
        for seg in pending:
            key = seg.shot if job.config.fill == "diffusion" else seg.index
            chains.setdefault(key, []).append(seg)
        queue = list(chains.values())
        idle = list(actors)
        running = {}
        by_index = {s.index: s for s in pending}
        while queue or running:
            while idle and queue:
                chain = queue.pop(0)
                a = idle.pop(0)
                ref = a.encode.remote(spec, work, chain[0])
                running[ref] = (a, chain)
            done, _ = ray.wait(list(running), num_returns=1)
            a, chain = running.pop(done[0])
            index, path = ray.get(done[0])
            seg = by_index[index]
            work.finish(seg, Path(path))
            task.update(seg.num_frames)
            idle.append(a)
            if len(chain) > 1:
                queue.insert(0, chain[1:])
    finally:
        if started:
            ray.shutdown()
