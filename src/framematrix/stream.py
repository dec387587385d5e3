"""Bounded queues between pipeline stages, so that decode, compute and encode overlap.

PyAV releases the GIL while it decodes and encodes, and torch and OpenCV while they compute,
so a decode thread, the compute thread and an encode thread keep two cores busy. The queues
are bounded (a few chunks), so memory does not grow with the video.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(items: Iterable[T], size: int = 2, name: str = "prefetch") -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``size`` items ahead.

    An exception raised while producing is re-raised in the consumer. Closing the returned
    generator (or an exception in the consumer) stops the producer at its next item.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=max(1, size))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
                del item  # the queue holds it; not kept while the next one is made
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Failure(exc))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
            del item  # not kept while waiting for the next one
    finally:
        stop.set()
        thread.join(timeout=5)


class BackgroundConsumer:
    """Runs ``consume(iterator)`` in a thread, fed item by item with :meth:`put`.

    :meth:`close` ends the iterator, waits for ``consume`` and returns its result, re-raising
    its exception; :meth:`abort` ends it early (``consume`` sees ``GeneratorExit``-free end of
    input and the caller discards the result).
    """

    def __init__(self, consume: Callable[[Iterator[Any]], Any], size: int = 2, name: str = "sink"):
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max(1, size))
        self._result: Any = None
        self._error: BaseException | None = None
        self._aborted = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(consume,), name=name, daemon=True)
        self._thread.start()

    def _items(self) -> Iterator[Any]:
        while True:
            item = self._q.get()
            if item is _END:
                return
            if self._aborted.is_set():
                raise _Aborted
            yield item

    def _run(self, consume: Callable[[Iterator[Any]], Any]) -> None:
        try:
            self._result = consume(self._items())
        except _Aborted:
            pass
        except BaseException as exc:  # noqa: BLE001 - re-raised in close()
            self._error = exc
            while True:  # unblock a producer waiting on a full queue
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    break

    def put(self, item: Any) -> None:
        while True:
            if self._error is not None:
                raise self._error
            if not self._thread.is_alive():
                raise RuntimeError("the consumer thread has stopped")
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> Any:
        if self._thread.is_alive():
            while True:
                try:
                    self._q.put(_END, timeout=0.1)
                    break
                except queue.Full:
                    if self._error is not None or not self._thread.is_alive():
                        break
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result

    def abort(self) -> None:
        self._aborted.set()
        try:
            self._q.put_nowait(_END)
        except queue.Full:
            pass
        self._thread.join(timeout=30)


class _Aborted(Exception):
    pass
