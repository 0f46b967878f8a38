"""Reading ahead: the items of an iterator produced in a background thread (e.g. video frames
decoded by OpenCV, which releases the GIL) while the caller works on the previous ones."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

_END = object()


class _Failure:
    """An exception raised by the source iterator, handed to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def read_ahead(items: Iterable, size: int = 8) -> Iterator:
    """Yields the items of `items` in order, produced by a daemon thread up to `size` ahead.

    Memory is bounded by `size` items. An exception of the source is raised in the caller at
    the place of the item it replaced. When the caller stops early (closes the generator),
    the thread stops after at most one more item.
    """
    if size < 1:
        raise ValueError(f"read_ahead size={size}; must be >= 1")
    buffer = queue.Queue(maxsize=size)
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                if not _put(buffer, item, stop):
                    return
        except BaseException as error:  # handed over: the consumer raises it
            _put(buffer, _Failure(error), stop)
            return
        _put(buffer, _END, stop)

    thread = threading.Thread(target=produce, name="read_ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


def _put(buffer: queue.Queue, item, stop: threading.Event) -> bool:
    """Puts `item` unless `stop` is set first; True when it was put."""
    while not stop.is_set():
        try:
            buffer.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
