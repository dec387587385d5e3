"""Progress and cancellation of long work, shared by the CLI, the web app and the cluster driver.

A :class:`Progress` is made once per job. Each pass of the job (``shots``, ``depth``,
``convert``, ...) opens a :meth:`Progress.task` with its total; the task shows a tqdm bar with
frames/s and an ETA on stderr (when ``show`` is on), sends :class:`ProgressEvent` objects to an
optional callback (the web app's progress bar), and raises :class:`Cancelled` at the next
update once the job's cancel event is set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from framematrix.errors import FramematrixError


def _stderr_is_terminal() -> bool:
    """Bars only on a terminal: piped or captured stderr gets the summary line, not bar frames."""
    import sys

    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Cancelled(FramematrixError):
    """The job was cancelled (Ctrl-C in the CLI, Cancel in the web app); finished work is kept."""


@dataclass(frozen=True)
class ProgressEvent:
    """One report of a pass: ``done`` of ``total`` units (``total`` None when unknown)."""

    job: str
    pass_name: str
    done: int
    total: int | None
    unit: str = "frame"
    rate: float = 0.0  # units per second since the pass started
    eta_s: float | None = None  # seconds left at that rate; None when unknown
    finished: bool = False
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class Task:
    """A pass in progress; see :meth:`Progress.task`."""

    progress: Progress
    name: str
    total: int | None
    unit: str = "frame"
    done: int = 0
    started: float = field(default_factory=time.perf_counter)
    _bar: object | None = None

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        if self.total is None or self.done <= 0:
            return None
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None

    def update(self, n: int = 1, message: str = "") -> None:
        """Count ``n`` more units done; raises :class:`Cancelled` if the job was cancelled."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)  # type: ignore[attr-defined]
        self.progress._emit(self, message=message)
        self.progress.check()

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total  # type: ignore[attr-defined]
            self._bar.refresh()  # type: ignore[attr-defined]


class Progress:
    """Progress reporting and cancellation for one job.

    show: draw tqdm bars on stderr. callback: receives every :class:`ProgressEvent`.
    cancel: an event that, once set, makes the next update (or :meth:`check`) raise
    :class:`Cancelled`. job: a name carried in the events.
    """

    def __init__(
        self,
        show: bool = True,
        callback: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        job: str = "",
    ) -> None:
        self.show = show
        self.callback = callback
        self.cancel_event = cancel if cancel is not None else threading.Event()
        self.job = job
        self.totals: dict[str, tuple[int, float]] = {}  # pass -> (units, seconds)

    @classmethod
    def of(cls, progress: bool | Progress | None) -> Progress:
        """A Progress from the ``progress=`` argument of public functions (bool or Progress)."""
        if isinstance(progress, Progress):
            return progress
        return cls(show=bool(progress))

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled(f"{self.job or 'job'}: cancelled")

    def _emit(self, task: Task, *, finished: bool = False, message: str = "") -> None:
        if self.callback is None:
            return
        self.callback(
            ProgressEvent(
                job=self.job,
                pass_name=task.name,
                done=task.done,
                total=task.total,
                unit=task.unit,
                rate=task.rate,
                eta_s=task.eta(),
                finished=finished,
                message=message,
            )
        )

    @contextmanager
    def task(self, name: str, total: int | None, unit: str = "frame") -> Iterator[Task]:
        """Open a pass: ``with progress.task("depth", n) as t: ... t.update(k)``."""
        self.check()
        task = Task(self, name, total, unit)
        if self.show and _stderr_is_terminal():
            from tqdm.auto import tqdm

            task._bar = tqdm(total=total, unit=unit, desc=name, leave=False, dynamic_ncols=True)
        self._emit(task)
        try:
            yield task
        finally:
            if task._bar is not None:
                task._bar.close()  # type: ignore[attr-defined]
            seconds = time.perf_counter() - task.started
            units, secs = self.totals.get(name, (0, 0.0))
            self.totals[name] = (units + task.done, secs + seconds)
            self._emit(task, finished=True)

    def summary(self) -> str:
        """One line with the totals of every pass: ``depth 120 frames in 3.1 s (38.7/s); ...``."""
        parts = []
        for name, (units, secs) in self.totals.items():
            rate = f" ({units / secs:.1f}/s)" if secs > 0 and units else ""
            parts.append(f"{name} {units} in {secs:.1f} s{rate}")
        return "; ".join(parts)
