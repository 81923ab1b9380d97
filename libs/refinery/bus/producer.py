"""A producer whose acknowledgement means durable: on the bus (acks=all) or in the spool.

Writers call `publish`; it returns the record's `Position` once the broker acknowledged it,
or `None` once it was fsynced to the local spool because the broker did not answer in time.
A background task replays the spool in order when the broker is back. While the spool is
not empty every new record goes to the spool too, so a project's records keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from refinery.bus.spool import Spool

log = logging.getLogger("refinery.bus")


@dataclass(frozen=True, slots=True)
class Position:
    """The offset just past a record: a reader bound to it waits until ingest stored it."""

    partition: int
    offset: int


class DurableProducer:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        spool_dir: Path,
        *,
        ack_timeout_s: float = 2.0,
        linger_ms: int = 2,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._spool = Spool(spool_dir)
        self._ack_timeout_s = ack_timeout_s
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self.spooled_total = 0

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
            max_request_size=16 * 1024 * 1024,
            request_timeout_ms=5000,
            retry_backoff_ms=100,
        )

    async def _reset_producer(self) -> None:
        old, self._producer = self._producer, None
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), timeout=2)

    async def publish(self, key: bytes, value: bytes) -> Position | None:
        """Durably record one message; see the module docstring for what the result means."""
        if self._producer is None or not self._spool.is_empty():
            return await self._to_spool(key, value)
        try:
            md = await asyncio.wait_for(
                self._producer.send_and_wait(self._topic, value, key=key), timeout=self._ack_timeout_s
            )
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
        await asyncio.to_thread(self._spool.append, key, value)
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
        batch: list[asyncio.Future] = []
        last_pos = 0
        for pos, key, value in await asyncio.to_thread(lambda: list(self._spool.pending())):
            batch.append(await self._producer.send(self._topic, value, key=key))
            last_pos = pos
            if len(batch) >= 500:
                await asyncio.wait_for(asyncio.gather(*batch), timeout=10)
                self._spool.mark_replayed(last_pos)
                batch.clear()
        if batch:
            await asyncio.wait_for(asyncio.gather(*batch), timeout=10)
            self._spool.mark_replayed(last_pos)
        self._spool.reset_if_drained()
        log.info("spool replayed")

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
