"""Named, bounded thread pools, one per kind of blocking work.

asyncio's default executor is one small pool (cores + 4 threads) shared by everything in the
process that calls `run_in_executor(None, ...)` or `asyncio.to_thread`. Work that can hold a
thread for long (a streaming export waiting on a slow client, a heavy query) would starve
everything else there, ingestion included. So each purpose gets its own pool, sized for what it
does, and blocking work names the pool it belongs to:

    INGEST = Purpose("log-ingest.ingest", workers=1)
    await INGEST.run(store.insert_rows, rows)
    # or, where the loop's own call is wanted:
    await loop.run_in_executor(INGEST.executor(), store.insert_rows, rows)

A pool starts on first use, so a `Purpose` can be a module constant that any module imports.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


class Purpose:
    """One bounded pool of `workers` threads for one kind of blocking work, named after it (the
    threads are called `<name>_<n>`, so a stack dump says which work holds them)."""

    def __init__(self, name: str, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"executor {name!r} needs at least one worker, got {workers}")
        self.name = name
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def executor(self) -> ThreadPoolExecutor:
        """The pool, started on first use (and again after `shutdown`)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self.name)
            return self._pool

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on this pool, awaited from the running loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor(), partial(fn, *args, **kwargs))

    def shutdown(self, wait: bool = True) -> None:
        """Stop the pool once the work it was given is done (pending work still runs)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait)

    def __repr__(self) -> str:
        return f"Purpose({self.name!r}, workers={self.workers})"
