"""Conversion jobs: queued, observable, cancellable, sharing loaded models (CLI, web app).

A :class:`Session` holds a :class:`framematrix.models.ModelSession` and a queue of
:class:`Job` objects run by worker threads: one job at a time per CUDA GPU, or one at a time on
a machine without one. Each job reports :class:`framematrix.progress.ProgressEvent` objects (the
last one of every pass is kept in :attr:`Job.events`), can be cancelled while queued or running
(the runner raises :class:`framematrix.progress.Cancelled` at its next progress update and leaves
nothing at the output), and finds the models of the previous job already loaded::

    with Session() as session:
        job = session.submit("clip.mp4", "clip_sbs.mp4", depth="depth.npy")
        job.wait()
        print(job.state, job.result, job.error)

The work itself is done by a *runner* with the signature of :func:`framematrix.convert`
(``runner(input, output, *, depth=, config=, fps=, overwrite=, progress=, session=, ...)``);
:func:`run_convert` calls the library's ``convert`` with the arguments it accepts.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from framematrix.config import ConvertConfig
from framematrix.errors import FramematrixError
from framematrix.models import ModelSession
from framematrix.progress import Cancelled, Progress, ProgressEvent

logger = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINAL_STATES: tuple[str, ...] = ("done", "failed", "cancelled")

Runner = Callable[..., Any]
EventCallback = Callable[["Job", ProgressEvent], None]

_ids = itertools.count(1)


def one_line(exc: BaseException) -> str:
    """An exception as one line of text (whitespace folded), at most 300 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


@dataclass
class JobRequest:
    """What a job converts: the arguments of :func:`framematrix.convert`."""

    input: Path
    output: Path
    depth: Path | np.ndarray | None = None
    config: ConvertConfig | None = None
    fps: float | None = None
    overwrite: bool = False
    start: int | float | str | None = None
    end: int | float | str | None = None
    cache_dir: Path | None = None


class Job:
    """One conversion in a :class:`Session`.

    Attributes: ``id``, ``request`` (:class:`JobRequest`; also ``input``, ``output``, ``depth``,
    ``config``), ``state`` (queued, running, done, failed, cancelled), ``events`` (last
    :class:`ProgressEvent` per pass, in the order the passes started), ``result`` (the runner's
    return value, a :class:`framematrix.ConvertResult`, when done), ``error`` (one line, when
    failed), ``created`` / ``started`` / ``finished`` (``time.time()`` stamps).
    """

    def __init__(
        self,
        request: JobRequest,
        *,
        runner: Runner | None = None,
        job_id: str | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        self.id = job_id or f"job{next(_ids)}"
        self.request = request
        self.runner = runner or run_convert
        self.on_event = on_event
        self.state: JobState = "queued"
        self.events: dict[str, ProgressEvent] = {}
        self.result: Any = None
        self.error: str | None = None
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.progress = Progress(
            show=False, callback=self._record, cancel=self._cancel, job=self.id
        )

    # -- the request's fields, for convenience
    @property
    def input(self) -> Path:
        return self.request.input

    @property
    def output(self) -> Path:
        return self.request.output

    @property
    def depth(self) -> Path | np.ndarray | None:
        return self.request.depth

    @property
    def config(self) -> ConvertConfig | None:
        return self.request.config

    @property
    def done(self) -> bool:
        """The job has ended (done, failed or cancelled)."""
        return self._done.is_set()

    def cancel(self) -> None:
        """Ask the job to stop: a queued job never starts, a running one stops at its next
        progress update. Returns at once; :meth:`wait` for the end."""
        self._cancel.set()
        with self._lock:
            if self.state == "queued":
                self._finish("cancelled")

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the job has ended (or ``timeout`` seconds passed); returns the state."""
        self._done.wait(timeout)
        return self.state

    def latest(self) -> ProgressEvent | None:
        """The most recent event of the most recently started pass (None before any)."""
        with self._lock:
            if not self.events:
                return None
            return next(reversed(self.events.values()))

    def _record(self, event: ProgressEvent) -> None:
        with self._lock:
            self.events.pop(event.pass_name, None)  # re-insert: the dict keeps start order
            self.events[event.pass_name] = event
        if self.on_event is not None:
            try:
                self.on_event(self, event)
            except Exception:  # an observer must never break the job
                logger.exception("progress observer of %s failed", self.id)

    def _finish(self, state: JobState, error: str | None = None) -> None:
        self.state = state
        self.error = error
        self.finished = time.time()
        self._done.set()

    def run(self, models: ModelSession) -> None:
        """Run the job in this thread (the Session's workers call this)."""
        with self._lock:
            if self.state != "queued":  # cancelled while queued
                return
            self.state = "running"
            self.started = time.time()
        try:
            self.progress.check()
            result = self.runner(
                self.request.input,
                self.request.output,
                depth=self.request.depth,
                config=self.request.config,
                fps=self.request.fps,
                overwrite=self.request.overwrite,
                progress=self.progress,
                session=models,
                start=self.request.start,
                end=self.request.end,
                cache_dir=self.request.cache_dir,
            )
        except Cancelled:
            self._finish("cancelled")
        except FramematrixError as exc:
            self._finish("failed", one_line(exc))
        except Exception as exc:  # keep the worker alive; report one line, log the trace
            logger.exception("job %s failed", self.id)
            self._finish("failed", f"{type(exc).__name__}: {one_line(exc)}")
        else:
            self.result = result
            self._finish("done")

    def __repr__(self) -> str:
        return f"Job({self.id!r}, {self.state}, {self.request.input} -> {self.request.output})"


class Session:
    """A model session and a job queue served by worker threads.

    models: the :class:`ModelSession` to share (a new one by default).
    workers: threads running jobs; default one per CUDA GPU, else one (a CPU job already uses
        every core). With several GPUs, worker ``i`` runs its jobs on ``cuda:i`` unless a job's
        config names a device.
    runner: the default runner of submitted jobs (:func:`run_convert`).
    """

    def __init__(
        self,
        models: ModelSession | None = None,
        *,
        workers: int | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.models = models or ModelSession()
        self.runner = runner or run_convert
        self.jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._pending: list[Job] = []  # queued jobs in order, for queue positions
        self._lock = threading.Lock()
        self._closed = False
        devices = _worker_devices(workers)
        self._threads = [
            threading.Thread(
                target=self._work, args=(device,), name=f"framematrix-worker-{i}", daemon=True
            )
            for i, device in enumerate(devices)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def workers(self) -> int:
        return len(self._threads)

    def submit(
        self,
        input: str | Path,
        output: str | Path,
        *,
        depth: str | Path | np.ndarray | None = None,
        config: ConvertConfig | None = None,
        fps: float | None = None,
        overwrite: bool = False,
        start: int | float | str | None = None,
        end: int | float | str | None = None,
        cache_dir: str | Path | None = None,
        runner: Runner | None = None,
        job_id: str | None = None,
        on_event: EventCallback | None = None,
    ) -> Job:
        """Queue a conversion of ``input`` to ``output`` (arguments of :func:`framematrix.convert`)
        and return its :class:`Job` at once. ``on_event(job, event)`` sees every progress event,
        in the worker thread."""
        if self._closed:
            raise RuntimeError("session is closed")
        request = JobRequest(
            input=Path(input),
            output=Path(output),
            depth=Path(depth) if isinstance(depth, (str, Path)) else depth,
            config=config.copy() if config is not None else None,
            fps=fps,
            overwrite=overwrite,
            start=start,
            end=end,
            cache_dir=Path(cache_dir) if cache_dir is not None else None,
        )
        job = Job(request, runner=runner or self.runner, job_id=job_id, on_event=on_event)
        with self._lock:
            if job.id in self.jobs:
                raise ValueError(f"a job with id {job.id!r} already exists")
            self.jobs[job.id] = job
            self._pending.append(job)
        self._queue.put(job)
        return job

    def position(self, job: Job) -> int | None:
        """0-based place of a queued job in the queue (None once it started or ended)."""
        with self._lock:
            pending = [j for j in self._pending if j.state == "queued"]
        return pending.index(job) if job in pending else None

    def cancel_all(self) -> None:
        for job in list(self.jobs.values()):
            job.cancel()

    def close(self, *, cancel: bool = True, timeout: float | None = None) -> None:
        """Stop the workers: cancel the jobs (unless ``cancel`` is False: finish them first)."""
        self._closed = True
        if cancel:
            self.cancel_all()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _work(self, device: str | None) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job in self._pending:
                    self._pending.remove(job)
            if device is not None and job.request.config is not None:
                _pin_device(job.request.config, device)
            elif device is not None:
                cfg = ConvertConfig()
                _pin_device(cfg, device)
                job.request.config = cfg
            job.run(self.models)


def _worker_devices(workers: int | None) -> list[str | None]:
    """Devices of the worker threads: ``cuda:i`` per GPU when several, else None (as config)."""
    gpus = 0
    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - torch is a dependency; be safe anyway
        gpus = 0
    if workers is None:
        workers = max(1, gpus)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if gpus > 1:
        return [f"cuda:{i % gpus}" for i in range(workers)]
    return [None] * workers


def _pin_device(config: ConvertConfig, device: str) -> None:
    """Run a job on ``device`` unless its config already names one."""
    if config.device is None:
        config.device = device
    if config.depth.device == "auto":
        config.depth.device = device
    if config.diffusion.device == "auto":
        config.diffusion.device = device


# ---------------------------------------------------------------------------- running convert


def _accepts(function: Callable, name: str) -> bool:
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _takes_progress_object(function: Callable) -> bool:
    """Whether ``function``'s ``progress`` parameter takes a :class:`Progress` (not a bool)."""
    try:
        param = inspect.signature(function).parameters.get("progress")
    except (TypeError, ValueError):
        return False
    return param is not None and "Progress" in str(param.annotation)


def run_convert(
    input: Path,
    output: Path,
    *,
    depth: Path | np.ndarray | None = None,
    config: ConvertConfig | None = None,
    fps: float | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    session: ModelSession | None = None,
    start: int | float | str | None = None,
    end: int | float | str | None = None,
    cache_dir: Path | None = None,
) -> Any:
    """The default runner: :func:`framematrix.pipeline.convert` with the arguments it takes.

    When ``convert`` takes a :class:`Progress` and a ``session`` (the streaming pipeline), it is
    called with them. An older ``convert`` without them is replaced by :func:`_convert_stages`,
    which chains the same pipeline stages with progress, cancellation and shared models.
    """
    from framematrix import pipeline

    convert = pipeline.convert
    progress = progress or Progress(show=False)
    if _takes_progress_object(convert) and _accepts(convert, "session"):
        kwargs: dict[str, Any] = {
            "depth": depth,
            "config": config,
            "fps": fps,
            "overwrite": overwrite,
            "progress": progress,
            "session": session,
        }
        for name, value in (("start", start), ("end", end), ("cache_dir", cache_dir)):
            if value is not None:
                if not _accepts(convert, name):
                    raise TypeError(f"framematrix.convert does not take {name}=")
                kwargs[name] = value
        return convert(input, output, **kwargs)
    if start is not None or end is not None:
        raise TypeError("this framematrix.convert does not take start= / end=")
    return _convert_stages(
        input,
        output,
        depth=depth,
        config=config,
        fps=fps,
        overwrite=overwrite,
        progress=progress,
        session=session or ModelSession(),
        cache_dir=cache_dir,
    )


def _convert_stages(
    input: Path,
    output: Path,
    *,
    depth: Path | np.ndarray | None,
    config: ConvertConfig | None,
    fps: float | None,
    overwrite: bool,
    progress: Progress,
    session: ModelSession,
    cache_dir: Path | None,
) -> Any:
    """``convert`` of the whole-clip pipeline, reporting passes ``read``, ``depth``, ``convert``.

    Interim: used only while ``pipeline.convert`` takes no Progress/session (see run_convert).
    """
    from framematrix import pipeline
    from framematrix.io.video import read_clip

    started = time.perf_counter()
    config = config or ConvertConfig()
    output = Path(output)
    kind = pipeline.output_kind(output, config.format)
    inputs = [Path(input)] + ([Path(depth)] if isinstance(depth, (str, Path)) else [])
    pipeline.check_output(output, kind, inputs=inputs, overwrite=overwrite)
    with progress.task("read", None) as task:
        clip = read_clip(Path(input), fps=fps)
        task.update(clip.num_frames)
    total = clip.num_frames
    if cache_dir is None:
        cache_dir = output.parent / ".framematrix-cache"
    if depth is None:
        from framematrix.depth.cache import compute_depth

        with progress.task("depth", total) as task:
            depth_map = compute_depth(
                clip.frames,
                config.depth,
                cache_dir=cache_dir,
                input_id=str(clip.source),
                progress=False,
                model=session.depth_model(config.depth),
                flow=session.flow(config.depth) if config.depth.stabilize else None,
            )
            task.update(total)
    else:
        depth_map = pipeline.load_depth(clip, depth, config, progress=False)
    source = str(depth) if isinstance(depth, (str, Path)) else f"depth of {clip.source}"
    matrices = pipeline.iter_filled_matrices(
        clip,
        depth_map,
        config,
        eyes_only=pipeline.eye_views_only(config),
        progress=False,
        depth_source=source,
    )

    def counted() -> Iterator[Any]:
        with progress.task("convert", total) as task:
            for matrix in matrices:
                yield matrix
                task.update(matrix.num_frames)

    frames, holes, views = pipeline.export(
        counted(),
        output,
        fmt=config.format,
        fps=clip.fps,
        names=clip.names,
        crf=config.crf,
        preset=config.preset,
        audio_from=clip.source if clip.has_audio else None,
        overwrite=overwrite,
    )
    return pipeline.ConvertResult(
        output=output,
        frames=frames,
        fps=clip.fps,
        views=views,
        hole_fraction=holes,
        seconds=time.perf_counter() - started,
    )
