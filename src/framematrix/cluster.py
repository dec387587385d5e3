"""Segments of a video output on a Ray cluster (optional extra ``framematrix[cluster]``).

The driver (:func:`framematrix.pipeline.convert` with ``ray=``) finds the shots and writes the
manifest. Workers are Ray actors, one GPU each where the cluster has GPUs, else one CPU each;
they keep their models (a :class:`framematrix.models.ModelSession`) and the opened job between
tasks. Two kinds of task run on them:

- **depth**: with estimated depth, each shot whose depth is not yet stored is one task; the
  worker estimates and stabilises it into the on-disk depth store in the cache dir. The store
  is a folder of ``.npy`` shards, one writer per shard, so the workers need no locking; it must
  be on a path every worker and the driver can read (a shared file system), because a shot's
  depth (200 MB a minute at 720p in float32) is too large for Ray's object store to be a good
  place and is read again by the segment tasks and by a later convert with other stereo
  settings. Given depth (a file) is read by each worker from its own path.
- **segment**: one task per unfinished segment; the worker encodes it into the work folder
  (also shared) and returns its file; only the driver records it in the manifest
  (``work.finish``), so a half-written segment of a killed worker is never recorded, and a
  restarted driver resumes from the manifest.

The driver computes each shot's statistics once and sends them with the task, so no worker
reads a whole shot's depth again. A worker that dies is restarted by Ray and its task retried
(``max_restarts=-1``, ``max_task_retries``); its temporary file is left for the next writer to
replace. With the diffusion fill the segments of one shot run in order (each needs the
previous one's tail); different shots run in parallel. A shot longer than a segment is split
at window boundaries with the windows' overlap, so its parts still run one after the other.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from framematrix.errors import FramematrixError, InputError

TASK_RETRIES = 3  # a task whose worker dies runs again, at most this many times


def _ray():  # noqa: ANN202
    try:
        import ray
    except ImportError:
        raise InputError("the cluster mode needs Ray: pip install 'framematrix[cluster]'") from None
    return ray


@dataclass
class TaskSpec:
    """What a worker needs to re-open a job: input path, depth (path, array or None for the
    store in ``cache_dir``), config, fps, shots, the cache dir and, once the driver has them,
    the shots' depth statistics. ``token`` names the job, so a worker knows when a task
    belongs to the job it already has open."""

    input: object
    depth: object
    config: object
    fps: float | None
    shots: list
    cache_dir: Path
    stats: list | None = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


class _Worker:
    def __init__(self) -> None:
        from framematrix.models import ModelSession

        self.session = ModelSession()
        self.token: str | None = None
        self.source = None
        self.job = None

    def _source(self, spec: TaskSpec):  # noqa: ANN202 - FrameSource
        from framematrix.pipeline import open_input

        if self.token != spec.token or self.source is None:
            self.close()
            self.source = open_input(spec.input, spec.fps, spec.config)
            self.token = spec.token
        return self.source

    def _open(self, spec: TaskSpec):  # noqa: ANN202 - pipeline._Job
        """The job of ``spec``, built as :func:`framematrix.pipeline.convert` builds it (the
        input scaled by the config's max size, the same depth), and kept for later tasks."""
        from framematrix.pipeline import _Job, prepare_depth
        from framematrix.progress import Progress

        source = self._source(spec)
        if self.job is not None:
            return self.job
        prog = Progress.of(False)
        depth = prepare_depth(
            source,
            spec.shots,
            spec.depth,
            spec.config,
            session=self.session,
            cache_dir=spec.cache_dir,
            progress=prog,
            stats=spec.stats,
        )
        self.job = _Job(source, depth, spec.config, self.session, prog)
        return self.job

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
        self.source = self.job = self.token = None

    def depth(self, spec: TaskSpec, shot: int) -> int:
        """Estimate the depth of shot ``shot`` into the store; returns its frame count."""
        from framematrix.pipeline import estimate_shot_depth

        estimate_shot_depth(
            self._source(spec),
            spec.shots,
            [shot],
            spec.config,
            session=self.session,
            cache_dir=spec.cache_dir,
        )
        a, b = spec.shots[shot]
        return b - a

    def encode(self, spec: TaskSpec, work, seg) -> tuple:  # noqa: ANN001
        """Encode ``seg`` into the work folder; returns its index, the written file and the
        segment's share of the job's counters (frames, hole fraction x frames, views)."""
        from framematrix.pipeline import encode_segment

        job = self._open(spec)
        frames, holes = job.frames_done, job.holes
        with job.progress.task("segment", seg.num_frames) as task:
            written = encode_segment(job, work, seg, task)
        return seg.index, str(written), job.frames_done - frames, job.holes - holes, job.views


def _default_workers(ray) -> tuple[int, bool]:  # noqa: ANN001
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus:
        return gpus, True
    return max(1, int(res.get("CPU", 1))), False


def connect(address: str) -> bool:
    """Connect to Ray at ``address`` unless Ray is already initialised; returns whether this
    call did it (and so should shut it down). ``local`` starts a Ray instance on this machine;
    ``auto`` finds a running one (``ray start`` here, or ``RAY_ADDRESS``); ``ray://host:10001``
    is a Ray Client address (a KubeRay head service, for example)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--ray {address}: cannot connect to Ray: {first}") from None
    return True


@contextlib.contextmanager
def connected(address: str):  # noqa: ANN201
    """Ray connected for the ``with`` block (see :func:`connect`), shut down after it only if
    this call started it."""
    started = connect(address)
    try:
        yield
    finally:
        if started:
            _ray().shutdown()


class RayCluster:
    """Worker actors on Ray for one convert: ``with RayCluster("local") as cluster: ...``.

    address: see :func:`connect`; an already initialised Ray is used as it is.
    workers: how many actors (default: one per GPU of the cluster, else one per CPU).
    """

    def __init__(self, address: str, workers: int | None = None) -> None:
        self.address = address
        self.workers = workers
        self.actors: list = []
        self._started = False

    def __enter__(self) -> RayCluster:
        ray = _ray()
        self._started = connect(self.address)
        try:
            count, gpu = _default_workers(ray)
            count = max(1, int(self.workers or count))
            res = {"num_gpus": 1} if gpu else {"num_cpus": 1}
            actor = ray.remote(**res)(_Worker).options(
                max_restarts=-1, max_task_retries=TASK_RETRIES
            )
            self.actors = [actor.remote() for _ in range(count)]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        ray = _ray()
        for a in self.actors:  # a finished, cancelled or failed run stops its workers now
            ray.kill(a)
        self.actors = []
        if self._started:
            ray.shutdown()
            self._started = False

    def _get(self, ref):  # noqa: ANN001, ANN202
        """``ray.get`` that raises our own errors (a bad input, a full disk) as themselves,
        in one line, rather than wrapped in Ray's traceback."""
        ray = _ray()
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, (FramematrixError, OSError)):
                raise cause from None
            raise

    def _run(self, chains: list[list], submit, on_done, progress) -> None:  # noqa: ANN001
        """Run chains of tasks on the actors: the tasks of a chain one after the other, on
        whichever actor is free; ``on_done(item, result)`` on the driver as each finishes."""
        ray = _ray()
        queue = [c for c in chains if c]
        idle = list(self.actors)
        running: dict = {}
        while queue or running:
            progress.check()
            while idle and queue:
                chain = queue.pop(0)
                a = idle.pop(0)
                running[submit(a, chain[0])] = (a, chain)
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            if not done:
                continue  # let a cancel through
            a, chain = running.pop(done[0])
            on_done(chain[0], self._get(done[0]))
            idle.append(a)
            if len(chain) > 1:
                queue.insert(0, chain[1:])

    def estimate_depth(self, spec: TaskSpec, which: list[int], task, progress) -> None:  # noqa: ANN001
        """Estimated depth of the shots ``which`` on the workers, one task per shot."""
        ray = _ray()
        spec_ref = ray.put(spec)
        self._run(
            [[i] for i in which],
            lambda a, shot: a.depth.remote(spec_ref, shot),
            lambda shot, frames: task.update(frames),
            progress,
        )

    def encode_segments(self, job, work, pending, spec: TaskSpec, task) -> None:  # noqa: ANN001
        """Encode ``pending`` segments on the workers and record each with ``work.finish``."""
        ray = _ray()
        spec_ref = ray.put(spec)  # once, not with every task (a depth array can be large)
        chains: dict[int, list] = {}
        for seg in pending:
            key = seg.shot if job.config.fill == "diffusion" else seg.index
            chains.setdefault(key, []).append(seg)

        def done(seg, result) -> None:  # noqa: ANN001
            index, path, frames, holes, views = result
            work.finish(seg, Path(path))
            job.frames_done += frames
            job.holes += holes
            job.views = views
            task.update(seg.num_frames)

        self._run(
            list(chains.values()),
            lambda a, seg: a.encode.remote(spec_ref, work, seg),
            done,
            job.progress,
        )
