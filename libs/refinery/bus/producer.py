"""A producer whose acknowledgement means durable: on the bus (acks=all) or in the spool.

Writers call `publish`; it returns the record's `Position` once the broker acknowledged it,
or `None` once it was fsynced to the local spool because the broker did not answer in time.
A background task replays the spool in order when the broker is back. While the spool is
not empty every new record goes to the spool too, so a project's records keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from refinery.bus.spool import DeadLetters, Spool

DEFAULT_MAX_EVENT_BYTES = 15 * 1024 * 1024
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)

log = logging.getLogger("refinery.bus")


@dataclass(frozen=True, slots=True)
class Position:
    """The offset just past a record: a reader bound to it waits until ingest stored it."""

    partition: int
    offset: int


class EventTooLarge(ValueError):
    """The bus refuses a record this large, now and on every retry: a permanent error, never spooled."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the event is {size} bytes; the bus takes at most {limit}")
        self.size = size
        self.limit = limit


class NotKept(Exception):
    """The broker did not take a record and the spool could not keep it (a full or failing disk):
    nothing was written, so the caller must refuse the write rather than acknowledge it."""

    def __init__(self, path: Path, cause: OSError) -> None:
        self.no_space = cause.errno in (errno.ENOSPC, errno.EDQUOT)
        what = "has no space left" if self.no_space else f"cannot be written ({cause.strerror or cause})"
        super().__init__(f"the bus is unreachable and the local spool {path} {what}")
        self.path = path


def check_event_size(key: bytes, value: bytes, limit: int) -> None:
    """EventTooLarge when a record of this key and value is over `limit` bytes."""
    if len(key) + len(value) > limit:
        raise EventTooLarge(len(key) + len(value), limit)


class DurableProducer:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        spool_dir: Path,
        *,
        ack_timeout_s: float = 2.0,
        linger_ms: int = 2,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._spool_dir = spool_dir
        self._spool = Spool(spool_dir)
        if self._spool.quarantined is not None:
            log.error("the spool had a torn tail (a crash or a full disk mid-write); moved to %s",
                      self._spool.quarantined)
        self.dead_letters = DeadLetters(spool_dir)
        # Told of each record set aside (from any thread): the kernel announces it on the dead-letter topic.
        self.on_set_aside: Callable[[bytes, bytes, str], None] | None = None
        self.max_event_bytes = max_event_bytes
        self._ack_timeout_s = ack_timeout_s
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self.spooled_total = 0

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def spool_empty(self) -> bool:
        return self._spool.is_empty()

    async def start(self) -> None:
        self._producer = self._new_producer()
        try:
            await asyncio.wait_for(self._producer.start(), timeout=10)
        except (KafkaError, TimeoutError, OSError) as exc:
            # Start anyway: publishes spool until the broker answers.
            log.warning("bus unreachable at start, spooling: %s", exc)
            await self._reset_producer()
        self._replayer = asyncio.create_task(self._replay_loop())
        if not self._spool.is_empty():
            self._wake.set()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=False,  # Tansu has no idempotent producer; consumers dedupe.
            linger_ms=self._linger_ms,
            max_batch_size=256 * 1024,
            max_request_size=self.max_event_bytes + 64 * 1024,  # room for the batch's own framing
            request_timeout_ms=5000,
            retry_backoff_ms=100,
        )

    async def _reset_producer(self) -> None:
        old, self._producer = self._producer, None
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), timeout=2)

    def check_size(self, key: bytes, value: bytes) -> None:
        """EventTooLarge when the bus would refuse this record: check before acknowledging anything."""
        check_event_size(key, value, self.max_event_bytes)

    def set_aside(self, key: bytes, value: bytes, reason: str) -> None:
        """Keep a record the bus refuses for good in the dead-letter file, with why (see DeadLetters)."""
        self.dead_letters.add(key, value, reason)
        log.error("record set aside as a dead letter (%d bytes, key %r): %s", len(value), key[:64], reason)
        if self.on_set_aside is not None:
            self.on_set_aside(key, value, reason)

    async def publish(self, key: bytes, value: bytes) -> Position | None:
        """Durably record one message; see the module docstring for what the result means.
        EventTooLarge (nothing written) when the bus can never take it."""
        self.check_size(key, value)
        if self._producer is None or not self._spool.is_empty():
            return await self._to_spool(key, value)
        try:
            md = await asyncio.wait_for(
                self._producer.send_and_wait(self._topic, value, key=key), timeout=self._ack_timeout_s
            )
        except _TOO_LARGE as exc:  # the broker's own limit is lower than ours
            raise EventTooLarge(len(key) + len(value), self.max_event_bytes) from exc
        except (KafkaError, TimeoutError, OSError) as exc:
            # The record may still reach the broker later; consumers dedupe on event id.
            log.warning("bus publish failed, spooling: %s", exc)
            return await self._to_spool(key, value)
        return Position(md.partition, md.offset + 1)

    async def mark_every_partition(self, value: bytes) -> list[Position] | None:
        """Write `value` to each partition and return the positions just past it.

        A reader bound to these positions sees every record acknowledged before the call,
        by any writer: how a restarted writer recovers read-your-writes without trusting
        ListOffsets. None while the broker is unreachable (nothing is spooled).
        """
        if self._producer is None:
            return None
        try:
            partitions = await asyncio.wait_for(self._producer.partitions_for(self._topic), self._ack_timeout_s)
            acks = await asyncio.wait_for(
                asyncio.gather(*(self._producer.send_and_wait(self._topic, value, partition=p) for p in partitions)),
                timeout=self._ack_timeout_s * 2,
            )
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("could not mark partitions: %s", exc)
            return None
        return [Position(md.partition, md.offset + 1) for md in acks]

    async def _to_spool(self, key: bytes, value: bytes) -> Position | None:
        try:
            await asyncio.to_thread(self._spool.append, key, value)
        except OSError as exc:  # the spool cut the torn write back: nothing of it remains
            log.error("spool write failed, refusing the record: %s", exc)
            raise NotKept(self._spool_dir, exc) from exc
        self.spooled_total += 1
        self._wake.set()
        return None

    async def _replay_loop(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._spool.is_empty():
                continue
            try:
                await self._replay_once()
            except Exception as exc:
                log.warning("spool replay failed, will retry: %s", exc)
                await self._reset_producer()
                await asyncio.sleep(0.5)
                self._wake.set()

    async def _replay_once(self) -> None:
        if self._producer is None:
            producer = self._new_producer()
            await asyncio.wait_for(producer.start(), timeout=5)
            self._producer = producer
        batch: list[tuple[asyncio.Future, bytes, bytes]] = []
        last_pos = 0
        for pos, key, value in await asyncio.to_thread(lambda: list(self._spool.pending())):
            try:
                batch.append((await self._producer.send(self._topic, value, key=key), key, value))
            except _TOO_LARGE as exc:  # refused before sending: set aside, never retried
                await asyncio.to_thread(self.set_aside, key, value, f"too large for the bus: {exc}")
            last_pos = pos
            if len(batch) >= 500:
                await self._settle(batch)
                self._spool.mark_replayed(last_pos)
                batch.clear()
        await self._settle(batch)
        if last_pos:
            self._spool.mark_replayed(last_pos)
        self._spool.reset_if_drained()
        log.info("spool replayed")

    async def _settle(self, batch: list[tuple[asyncio.Future, bytes, bytes]]) -> None:
        """Wait for a replayed batch: a record the broker refuses for good is set aside; any other
        failure raises, and the whole batch is replayed again (consumers dedupe)."""
        if not batch:
            return
        results = await asyncio.wait_for(asyncio.gather(*(f for f, _, _ in batch), return_exceptions=True), 10)
        transient = [r for r in results if isinstance(r, BaseException) and not isinstance(r, _TOO_LARGE)]
        if transient:
            raise transient[0]
        for result, (_, key, value) in zip(results, batch, strict=True):
            if isinstance(result, _TOO_LARGE):
                await asyncio.to_thread(self.set_aside, key, value, f"refused by the broker: {result}")

    async def wait_spool_drained(self, timeout_s: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self._spool.is_empty():
            if asyncio.get_running_loop().time() > deadline:
                return False
            self._wake.set()
            await asyncio.sleep(0.05)
        return True

    async def stop(self) -> None:
        self._closing = True
        if self._replayer is not None:
            self._wake.set()
            self._replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._replayer
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), timeout=5)
        self._spool.close()
