"""Streams produced by blocking code on a worker thread and consumed on the event loop, such as a
JSONL export read page by page from a store and sent as a gRPC stream.

The worker hands items over through a small bounded buffer, so a slow reader slows the worker
(backpressure) instead of filling memory. What matters most is the reader that goes away: a
client that hangs up mid-export cancels the handler that consumes the stream, and the worker,
which may be waiting for room in the buffer, must then stop and give its thread back. Waiting
on a future of `queue.put` scheduled onto the loop (what this replaces) never returns once
nobody reads, so each abandoned export kept a pool thread forever; a few of them used up the
pool that ingestion also ran on. Here closing the consumer (normally, by cancellation or by
garbage collection) wakes the worker, which stops, closes its source and returns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import orjson

from refinery.runtime.executors import Purpose

log = logging.getLogger("refinery.streaming")

T = TypeVar("T")


class StreamAbandoned(Exception):
    """The consumer of a stream went away; the worker producing it should stop."""


class _End:
    """The worker produced everything."""


class _Failed:
    """The worker failed with `error`; the consumer raises it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Handoff(Generic[T]):
    """A bounded buffer from one worker thread to the event loop; `close` wakes a blocked worker."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self._size = size
        self._items: deque[T | _End | _Failed] = deque()
        self._cond = threading.Condition()
        self._ready = asyncio.Event()
        self.closed = False

    def put(self, item: T | _End | _Failed) -> None:
        """From the worker: wait for room, or raise StreamAbandoned once the consumer has gone."""
        with self._cond:
            while len(self._items) >= self._size and not self.closed:
                self._cond.wait()
            if self.closed:
                raise StreamAbandoned
            self._items.append(item)
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError as exc:  # the loop is closed: nobody will read this
            raise StreamAbandoned from exc

    async def get(self) -> T | _End | _Failed:
        while True:
            with self._cond:
                if self._items:
                    item = self._items.popleft()
                    self._cond.notify()
                    return item
                self._ready.clear()  # under the lock: a put after this sets it again
            await self._ready.wait()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._items.clear()
            self._cond.notify_all()


def _close(source: object) -> None:
    close = getattr(source, "close", None)
    if callable(close):
        close()


async def stream_from_thread(
    purpose: Purpose, produce: Callable[[], Iterable[T]], *, buffer: int = 4
) -> AsyncGenerator[T, None]:
    """Iterate `produce()` on a thread of `purpose`'s pool and yield its items here.

    An exception from the worker is raised here, as it was raised there. Closing this iterator
    before the end (a cancelled handler, `aclose`, garbage collection) stops the worker at its
    next hand-off, closes the iterable `produce` returned (running its `finally` blocks) and
    frees the thread; a worker still queued for a thread then does not start at all.
    """
    loop = asyncio.get_running_loop()
    handoff: _Handoff[T] = _Handoff(loop, buffer)

    def work() -> None:
        if handoff.closed:
            return
        source = produce()
        try:
            for item in source:
                handoff.put(item)
            handoff.put(_End())
        except StreamAbandoned:
            return
        except BaseException as exc:
            try:
                handoff.put(_Failed(exc))
            except StreamAbandoned:
                log.warning("%s: a stream failed after its reader had gone", purpose.name, exc_info=exc)
        finally:
            _close(source)

    worker = loop.run_in_executor(purpose.executor(), work)
    try:
        while True:
            item = await handoff.get()
            if isinstance(item, _End):
                break
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        handoff.close()
    await worker


def jsonl_chunks(rows: Iterable[T], to_line: Callable[[T], Any], chunk_bytes: int) -> Iterator[bytes]:
    """`rows` as JSONL, one line per row, in chunks of at least `chunk_bytes` (the last may be
    shorter). Closing the chunks closes `rows`, so a store's cursor or session is released."""
    buf = bytearray()
    try:
        for row in rows:
            buf += orjson.dumps(to_line(row))
            buf += b"\n"
            if len(buf) >= chunk_bytes:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)
    finally:
        _close(rows)
