"""The consumer that stores request-log events, and the positions readers wait on.

One task fetches, another stores. Fetched records are buffered and written together when
the oldest has waited `flush_interval_ms`, when `max_batch` are buffered, or at once when a
reader is waiting on a position (DESIGN: "log-ingest flushes its batch at once when a reader
is waiting"). Writing every fetch at once cost a ClickHouse insert per log at low rates, and
that CPU, spent beside the broker on the same cores, was what made each report's ack slow.
The offsets reached are stored in the log store right after the rows, and `stored` then
advances so readers bound to those offsets proceed.
log-ingest owns its store alone (one process per data dir), so it assigns itself every
partition instead of joining a consumer group: a restart resumes at once from the stored
offsets, with no group rebalance to wait for. Duplicates (redelivery after a crash, a record
both spooled and late-acknowledged) are skipped by log id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from refinery.bus.dead_letters import DeadLetterSink
from refinery.bus.follower import assign_all, fetch, positions_after, until_done
from refinery.bus.producer import Position
from refinery.bus.progress import PartitionProgress, follower_progress
from refinery.bus.retention import LOG_INGEST_GROUP, PositionCommitter
from refinery.events.request_logs import METADATA_UPDATED, RECORDED_TYPES
from refinery.runtime.subscriptions import EventDecoder
from refinery.stores.logstore import LogStore

from log_ingest.executors import INGEST
from log_ingest.rows import event_to_row

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
        max_batch: int = 20000,
        fetch_wait_ms: int = 20,
        flush_interval_ms: int = 200,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        self._store = store
        self._dead_letters = dead_letters
        self._loop: asyncio.AbstractEventLoop | None = None
        self._topic = topic
        self._max_batch = max_batch
        self._flush_interval_s = flush_interval_ms / 1000
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=LOG_INGEST_GROUP,  # partitions are assigned, not balanced: the group only holds commits
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_wait_ms,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        self._stored: dict[int, int] = {}
        self.set_aside = 0  # records set aside as dead letters since start
        self._decoder = EventDecoder("log-ingest", *RECORDED_TYPES, METADATA_UPDATED)
        self._committer = PositionCommitter(self._consumer, topic)
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._buffer: dict[TopicPartition, list] = {}
        self._buffered = 0
        self._buffered_since = 0.0
        self._wake = asyncio.Event()  # records buffered or a reader started waiting
        self._room = asyncio.Event()  # the buffer has room again
        self._room.set()
        self._readers = 0
        self._storing = False
        self._ready = asyncio.Event()
        self.stored_total = 0
        self.skipped_duplicates = 0

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._consumer.start()
        offsets = await INGEST.run(self._store.load_offsets, self._topic)
        await assign_all(self._consumer, self._topic, offsets)
        self._stored = dict(offsets)
        self._ready.set()
        self._tasks = [asyncio.create_task(self._fetch_loop()), asyncio.create_task(self._flush_loop())]

    async def stop(self) -> None:
        """Stop fetching, store what is buffered, then stop storing."""
        fetch, flush = self._tasks or (None, None)
        if fetch is not None:
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetch
        if flush is not None:
            self._readers += 1  # a last flush, as if a reader waited
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), timeout=10)
            flush.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flush
        await self._committer.close()
        with contextlib.suppress(Exception):
            await self._consumer.stop()

    async def _drained(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._buffered and not self._storing)

    async def wait_for(self, positions: Iterable[Position], timeout_s: float) -> None:
        """Return once every record below each position is stored; else PositionTimeout."""
        wanted = [p for p in positions if p.offset > 0]

        def reached() -> bool:
            return all(self._stored.get(p.partition, 0) >= p.offset for p in wanted)

        if reached():
            return
        self._readers += 1
        self._wake.set()
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(reached), timeout=timeout_s)
        except TimeoutError as exc:
            log.warning("bound read timed out: wanted %s, stored %s", wanted, self._stored)
            raise PositionTimeout("the log store has not caught up with earlier writes") from exc
        finally:
            self._readers -= 1

    async def _fetch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._room.wait()
            batches = await fetch(self._consumer, self._max_batch)
            if not batches:
                continue
            if not self._buffered:
                self._buffered_since = loop.time()
            for tp, msgs in batches.items():
                self._buffer.setdefault(tp, []).extend(msgs)
                self._buffered += len(msgs)
            if self._buffered >= 2 * self._max_batch:
                self._room.clear()  # storing is behind: stop fetching until it catches up
            self._wake.set()

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._buffered:
                continue
            while not self._readers and self._buffered < self._max_batch:
                left = self._buffered_since + self._flush_interval_s - loop.time()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=left)
                self._wake.clear()
            batches, self._buffer, self._buffered = self._buffer, {}, 0
            self._storing = True
            self._room.set()
            reached = positions_after(batches)
            await until_done("storing a batch", loop.run_in_executor, INGEST.executor(), self._store_batches, batches,
                             reached)
            async with self._changed:
                for partition, offset in reached.items():
                    self._stored[partition] = max(self._stored.get(partition, 0), offset)
                self._storing = False
                self._changed.notify_all()
            await self._committer.stored(self._stored)

    def _store_batches(self, batches: dict[TopicPartition, list], reached: dict[int, int]) -> None:
        """Store a fetched batch (in a worker thread). A record that is broken, or that the store
        refuses while it answers other reads, is set aside as a dead letter and the rest is stored;
        a store that does not answer raises, and the whole batch is tried again (rows already
        stored are skipped by log id)."""
        pending: list[tuple[str, str, list, object]] = []
        decode = self._decoder.decode_checked
        for tp, msgs in batches.items():
            for msg in msgs:
                event, broken = decode(msg.value, f"{tp.topic}:{tp.partition}:{msg.offset}")
                if broken is not None:
                    self._set_aside(msg, broken)
                if event is None:
                    continue  # not a log (a read barrier), or broken and set aside
                if event.type in RECORDED_TYPES:
                    pending.append((event.project_id, event.data.log_id, event_to_row(event, msg.offset), msg))
                else:  # METADATA_UPDATED: apply in order with the logs around it
                    self._insert_logs(pending)
                    pending = []
                    self._apply_patch(event, msg)
            self._insert_logs(pending)
            pending = []
        self._store.save_offsets(self._topic, reached)

    def _apply_patch(self, event, msg) -> None:
        try:
            self._store.apply_metadata_patch(event.project_id, event.data.log_ids, event.data.patch, msg.offset)
        except Exception as exc:
            self._refused([msg], exc)

    def _insert_logs(self, pending: list[tuple[str, str, list, object]]) -> None:
        if not pending:
            return
        by_project: dict[str, list[str]] = {}
        for project_id, log_id, _, _ in pending:
            by_project.setdefault(project_id, []).append(log_id)
        existing = self._store.existing_ids(by_project)
        rows: list[tuple[list, object]] = []
        seen: set[tuple[str, str]] = set()
        for project_id, log_id, row, msg in pending:
            key = (project_id, log_id)
            if key in existing or key in seen:
                self.skipped_duplicates += 1
                continue
            seen.add(key)
            rows.append((row, msg))
        self._insert_bisecting(rows)

    def _insert_bisecting(self, rows: list[tuple[list, object]]) -> None:
        """Insert `rows`; when the store refuses the batch, insert each half on its own, down to the
        one row it refuses (log2(n) extra inserts per bad row), which `_refused` sets aside."""
        if not rows:
            return
        try:
            self._store.insert_rows([row for row, _ in rows])
        except Exception as exc:
            if len(rows) == 1:
                self._refused([rows[0][1]], exc)
                return
            log.warning("the log store refused a batch of %d rows (%s); bisecting", len(rows), exc)
            mid = len(rows) // 2
            self._insert_bisecting(rows[:mid])
            self._insert_bisecting(rows[mid:])
            return
        self.stored_total += len(rows)

    def _refused(self, msgs: list, exc: Exception) -> None:
        """The store refused one record: set it aside if the store answers a trivial read (the record
        is at fault); otherwise re-raise, so the batch is retried once the store is back."""
        try:
            self._store.load_offsets(self._topic)
        except Exception:
            raise exc from None
        for msg in msgs:
            self._set_aside(msg, f"the log store refused it: {type(exc).__name__}: {str(exc)[:2000]}")

    def progress(self) -> list[PartitionProgress]:
        """Per partition: every record below `done` is handled; the end as the last fetch saw it."""
        return follower_progress(self._consumer, self._topic, dict(self._stored))

    def _set_aside(self, msg, reason: str) -> None:
        self.set_aside += 1
        if self._dead_letters is None or self._loop is None:
            log.error("record at %s:%s skipped (no dead-letter sink): %s", msg.partition, msg.offset, reason)
            return
        self._dead_letters.set_aside_from_thread(
            self._loop, topic=self._topic, reason=reason, value=msg.value, key=msg.key or b"",
            partition=msg.partition, offset=msg.offset)
