"""The logs a project's clients were answered for but whose publish is still in flight.

Registered before the client gets its answer (for a stream: before its final chunk), so a
read that follows the answer always finds them here or already on the bus.
"""

from __future__ import annotations

import asyncio

from refinery.bus.producer import Position


class PendingLogs:
    def __init__(self) -> None:
        self._inflight: dict[str, set[asyncio.Future[Position | None]]] = {}
        self._acked: dict[str, dict[int, int]] = {}
        self._spooled: dict[str, bool] = {}

    def track(self, project_id: str, publish: asyncio.Future[Position | None]) -> None:
        futures = self._inflight.setdefault(project_id, set())
        futures.add(publish)
        publish.add_done_callback(lambda f: self._done(project_id, f))

    def inflight(self, project_id: str) -> list[asyncio.Future[Position | None]]:
        """The project's publishes not acknowledged yet."""
        return list(self._inflight.get(project_id, ()))

    def _done(self, project_id: str, fut: asyncio.Future[Position | None]) -> None:
        self._inflight.get(project_id, set()).discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            self._spooled[project_id] = True
            return
        pos = fut.result()
        if pos is None:
            self._spooled[project_id] = True
            return
        per = self._acked.setdefault(project_id, {})
        if per.get(pos.partition, 0) < pos.offset:
            per[pos.partition] = pos.offset

    async def positions(self, project_id: str, spool_empty) -> tuple[list[Position], bool]:
        futures = list(self._inflight.get(project_id, ()))
        if futures:
            await asyncio.gather(*futures, return_exceptions=True)
        if self._spooled.get(project_id) and spool_empty():
            self._spooled.pop(project_id, None)
        positions = [Position(p, o) for p, o in self._acked.get(project_id, {}).items()]
        return positions, bool(self._spooled.get(project_id))
