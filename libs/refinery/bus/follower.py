"""Following one topic from stored offsets: every partition assigned to this process, no group.

Services that own their consumer state (the registry, the trainer) store the offsets they
reached in their own database after handling a batch, so a restart resumes exactly there
without a group rebalance. Handling must be idempotent: a crash between handling and saving
replays the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from refinery.bus.dead_letters import DeadLetterSink, store_answers
from refinery.runtime.subscriptions import Subscriptions

log = logging.getLogger("refinery.bus")


async def assign_all(consumer: AIOKafkaConsumer, topic: str, offsets: dict[int, int]) -> None:
    """Assign every partition of `topic` to this (started) consumer, at the stored offsets or the
    beginning: the consumers that own their positions need no group and no rebalance."""
    partitions: set[int] | None = None
    for _ in range(100):
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            break
        await asyncio.sleep(0.1)
    if not partitions:
        raise RuntimeError(f"topic {topic} has no partitions")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    for tp in tps:
        if tp.partition in offsets:
            consumer.seek(tp, offsets[tp.partition])
        else:
            await consumer.seek_to_beginning(tp)


async def fetch(consumer: AIOKafkaConsumer, max_records: int) -> dict[TopicPartition, list]:
    """One fetch of up to `max_records` (empty when nothing came within 200 ms). A broker error is
    logged and the fetch tried again after a pause: a follower outlives a broker restart."""
    while True:
        try:
            return await consumer.getmany(timeout_ms=200, max_records=max_records)
        except KafkaError as exc:
            log.warning("fetch failed, retrying: %s", exc)
            await asyncio.sleep(0.5)


def positions_after(batches: dict[TopicPartition, list]) -> dict[int, int]:
    """Per partition, the offset just past the last record fetched: where to resume once they are handled."""
    return {tp.partition: msgs[-1].offset + 1 for tp, msgs in batches.items()}


async def until_done(what: str, work: Callable[..., Awaitable[object]], *args: object) -> None:
    """Await `work(*args)` until it succeeds, logging each failure: a follower retries a batch, never skips it."""
    while True:
        try:
            await work(*args)
            return
        except Exception:
            log.exception("%s failed; retrying", what)
            await asyncio.sleep(1.0)


class OffsetStore(Protocol):
    """Where a self-positioned consumer keeps the offsets it reached (its own database)."""

    def load_offsets(self, topic: str) -> dict[int, int]: ...

    def save_offsets(self, topic: str, offsets: dict[int, int]) -> None: ...


class Follower:
    """Delivers one topic's events, typed, to `subscriptions`, saving offsets after each batch.

    A record that is not for a handler here (unknown or unsubscribed: see `Subscriptions.decode`)
    is skipped. A record that is broken (it does not decode) is set aside as a dead letter at once.
    A handler that raises is retried with a growing pause; after `attempts` failures, if the
    service's own store still answers (the failure is the record's), the record is set aside with
    the error and the stream goes on; while the store does not answer it is retried, so nothing is
    skipped for a transient failure."""

    def __init__(
        self, bootstrap: str, topic: str, subscriptions: Subscriptions, offsets: OffsetStore, *,
        dead_letters: DeadLetterSink | None = None, attempts: int = 5, fetch_wait_ms: int = 20,
        retry_pause_s: float = 0.5,
    ) -> None:
        self.topic = topic
        self.subscriptions = subscriptions
        self._offsets = offsets
        self._dead_letters = dead_letters
        self._attempts = attempts
        self._retry_pause_s = retry_pause_s
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_wait_ms,
        )
        self._task: asyncio.Task[None] | None = None
        self.positions: dict[int, int] = {}

    async def start(self) -> None:
        await self._consumer.start()
        try:
            self.positions = await asyncio.to_thread(self._offsets.load_offsets, self.topic)
            await assign_all(self._consumer, self.topic, self.positions)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            raise
        self._task = asyncio.create_task(self._run(), name=f"follow {self.topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._consumer.stop()

    async def _run(self) -> None:
        subs = self.subscriptions
        while True:
            batches = await fetch(self._consumer, 1000)
            if not batches:
                continue
            for msgs in batches.values():
                for msg in msgs:
                    event, broken = subs.decode_checked(msg.value, f"{self.topic}:{msg.partition}:{msg.offset}")
                    if event is not None:
                        await self._deliver(event, msg)
                    elif broken is not None:
                        await self._set_aside(msg, broken)
            reached = positions_after(batches)
            await until_done("saving offsets", asyncio.to_thread, self._offsets.save_offsets, self.topic, reached)
            self.positions.update(reached)

    async def _deliver(self, event: Any, msg: Any) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.subscriptions.deliver(event)
                return
            except Exception as exc:
                log.exception("%s: handling %s (attempt %d) failed", self.subscriptions.name, event.type, attempt)
                if attempt >= self._attempts and self._dead_letters is not None and await store_answers(
                        lambda: asyncio.to_thread(self._offsets.load_offsets, self.topic)):
                    await self._set_aside(
                        msg, f"{event.type} failed {attempt} times in {self.subscriptions.name}: "
                             f"{type(exc).__name__}: {exc}")
                    return
                await asyncio.sleep(min(self._retry_pause_s * 2 ** min(attempt - 1, 4), 5.0))

    async def _set_aside(self, msg: Any, reason: str) -> None:
        if self._dead_letters is None:
            log.error("%s: %s at %s:%s:%s skipped (no dead-letter sink)", self.subscriptions.name, reason,
                      self.topic, msg.partition, msg.offset)
            return
        sink = self._dead_letters
        await until_done("setting a record aside", lambda: sink.set_aside(
            topic=self.topic, reason=reason, value=msg.value, key=msg.key or b"", partition=msg.partition,
            offset=msg.offset))
