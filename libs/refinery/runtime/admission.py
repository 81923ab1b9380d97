"""Admission for heavy work: a few at a time per tenant, refused at once beyond that.

Heavy requests (a search over a whole project, an export, a whole-project metadata update) take
a store connection or a pool thread for seconds. Queueing them without bound lets one tenant who
sends many fill every connection and thread, and everyone else waits behind them. So each
tenant may run only `per_key` at once, and the service as a whole `total`; a request beyond
either is refused with `Busy` (the API answers "too many requests, retry"), never queued.

Used from the event loop only (one thread), so the counts need no lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class Busy(Exception):
    """The request was refused because too many like it are running; the message says which limit."""


class Admission:
    """Counts heavy work in flight per key (a project) and in all; `slot` admits or refuses."""

    def __init__(self, what: str, per_key: int, total: int | None = None) -> None:
        if per_key < 1 or (total is not None and total < 1):
            raise ValueError(f"{what}: limits must be at least 1 (per_key={per_key}, total={total})")
        self.what = what
        self.per_key = per_key
        self.total = total
        self._running: dict[str, int] = {}
        self._all = 0

    def running(self, key: str | None = None) -> int:
        """How many are running for `key`, or in all."""
        return self._all if key is None else self._running.get(key, 0)

    @contextlib.contextmanager
    def slot(self, key: str) -> Iterator[None]:
        """Hold one of `key`'s slots for the block; Busy (nothing held) when none is free."""
        if self._running.get(key, 0) >= self.per_key:
            raise Busy(f"too many {self.what} running for this project at once (at most {self.per_key}); "
                       "retry when one has finished")
        if self.total is not None and self._all >= self.total:
            raise Busy(f"the service is running as many {self.what} as it can (at most {self.total}); "
                       "retry shortly")
        self._running[key] = self._running.get(key, 0) + 1
        self._all += 1
        try:
            yield
        finally:
            self._all -= 1
            left = self._running[key] - 1
            if left:
                self._running[key] = left
            else:
                del self._running[key]
