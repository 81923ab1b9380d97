"""The consumer that stores request-log events, and the positions readers wait on.

Every fetch is written at once (the broker is the buffer: under load a fetch returns
thousands of records, idle it returns one), offsets are committed only after the write, and
`stored` then advances so readers bound to those offsets proceed. Duplicates (redelivery
after a crash, a record both spooled and late-acknowledged) are skipped by log id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from refinery.bus.producer import Position
from refinery.events.envelope import Envelope
from refinery.events.request_logs import (
    METADATA_UPDATED,
    RECORDED,
    RequestLogMetadataUpdated,
    RequestLogRecorded,
)
from refinery.stores.logstore import LogStore

from log_ingest.rows import to_row

log = logging.getLogger("refinery.log_ingest")


class PositionTimeout(Exception):
    """Ingest did not reach the positions a read was bound to in time."""


class Ingestor:
    def __init__(
        self,
        store: LogStore,
        bootstrap: str,
        topic: str,
        *,
        group_id: str = "log-ingest",
        max_batch: int = 20000,
        fetch_wait_ms: int = 20,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 500,
    ) -> None:
        self._store = store
        self._topic = topic
        self._max_batch = max_batch
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_wait_ms,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
        )
        self._stored: dict[int, int] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.stored_total = 0
        self.skipped_duplicates = 0

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._consumer.stop()

    async def wait_for(self, positions: Iterable[Position], timeout_s: float) -> None:
        """Return once every record below each position is stored; else PositionTimeout."""
        wanted = [p for p in positions if p.offset > 0]

        def reached() -> bool:
            return all(self._stored.get(p.partition, 0) >= p.offset for p in wanted)

        if reached():
            return
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(reached), timeout=timeout_s)
        except TimeoutError as exc:
            raise PositionTimeout("the log store has not caught up with earlier writes") from exc

    async def _run(self) -> None:
        executor_loop = asyncio.get_running_loop()
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=self._max_batch)
            except KafkaError as exc:
                log.warning("fetch failed, retrying: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if not self._ready.is_set() and self._consumer.assignment():
                await self._note_assignment()
            if not batches:
                continue
            while True:
                try:
                    await executor_loop.run_in_executor(None, self._store_batches, batches)
                    break
                except Exception:
                    log.exception("storing a batch failed; retrying")
                    await asyncio.sleep(1.0)
            commit = {tp: msgs[-1].offset + 1 for tp, msgs in batches.items()}
            try:
                await self._consumer.commit(commit)
            except KafkaError as exc:
                # Stored already; a redelivery is skipped as a duplicate.
                log.warning("offset commit failed: %s", exc)
            async with self._changed:
                for tp, offset in commit.items():
                    self._stored[tp.partition] = max(self._stored.get(tp.partition, 0), offset)
                self._changed.notify_all()

    async def _note_assignment(self) -> None:
        """At start, what is already committed counts as stored."""
        async with self._changed:
            for tp in self._consumer.assignment():
                committed = await self._consumer.committed(tp)
                if committed is not None:
                    self._stored[tp.partition] = max(self._stored.get(tp.partition, 0), committed)
            self._changed.notify_all()
        self._ready.set()

    def _store_batches(self, batches: dict[TopicPartition, list]) -> None:
        pending: list[tuple[str, RequestLogRecorded, int]] = []
        for msgs in batches.values():
            for msg in msgs:
                try:
                    env = Envelope.from_bytes(msg.value)
                except (ValidationError, ValueError) as exc:
                    log.error("undecodable event at offset %s skipped: %s", msg.offset, exc)
                    continue
                if env.type == RECORDED:
                    try:
                        pending.append((env.project_id, RequestLogRecorded.model_validate(env.data), msg.offset))
                    except ValidationError as exc:
                        log.error("bad %s event %s skipped: %s", RECORDED, env.event_id, exc)
                elif env.type == METADATA_UPDATED:
                    self._insert_logs(pending)
                    pending = []
                    update = RequestLogMetadataUpdated.model_validate(env.data)
                    self._store.apply_metadata_patch(env.project_id, update.log_ids, update.patch, msg.offset)
            self._insert_logs(pending)
            pending = []

    def _insert_logs(self, pending: list[tuple[str, RequestLogRecorded, int]]) -> None:
        if not pending:
            return
        by_project: dict[str, list[str]] = {}
        for project_id, rec, _ in pending:
            by_project.setdefault(project_id, []).append(rec.log_id)
        existing = self._store.existing_ids(by_project)
        rows = []
        seen: set[tuple[str, str]] = set()
        for project_id, rec, offset in pending:
            key = (project_id, rec.log_id)
            if key in existing or key in seen:
                self.skipped_duplicates += 1
                continue
            seen.add(key)
            rows.append(to_row(project_id, rec, offset))
        self._store.insert_rows(rows)
        self.stored_total += len(rows)
