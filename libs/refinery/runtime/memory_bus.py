"""An in-memory bus for unit tests of event handlers, in the spirit of FastStream's TestKafkaBroker.

Publishing to a topic appends the record to that topic's log and hands it at once, through
the same decode-and-deliver path a `Follower` uses (`Subscriptions.decode`, then `deliver`),
to every subscription on that topic; handler exceptions reach the test. A `MemoryProducer`
stands in for `DurableProducer` wherever a part publishes (an outbox relay, a request path),
so a test can follow a chain: event in → handler → store → outbox → event out.

    bus = MemoryBus()
    bus.subscribe(MODELS_TOPIC, trainer_subscriptions(jobs))
    await bus.publish(MODELS_TOPIC, model_event(...))
    await bus.flush_outbox(MODELS_TOPIC, jobs)
    assert [e.type for e in bus.events(MODELS_TOPIC)] == [...]
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass

from refinery.bus.producer import DEFAULT_MAX_EVENT_BYTES, Position, check_event_size
from refinery.events.envelope import Envelope
from refinery.runtime.subscriptions import Subscriptions
from refinery.stores.eventstore import EventSourcedStore, OutboxRelay


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class MemoryBus:
    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions
        self._logs: dict[str, list[list[Record]]] = {}
        self._subscribers: dict[str, list[Subscriptions]] = defaultdict(list)

    def _topic(self, topic: str) -> list[list[Record]]:
        return self._logs.setdefault(topic, [[] for _ in range(self.partitions)])

    def subscribe(self, topic: str, subscriptions: Subscriptions) -> None:
        self._subscribers[topic].append(subscriptions)

    async def publish(self, topic: str, event: Envelope | bytes, key: bytes | None = None,
                      partition: int | None = None) -> Position:
        """Append one record (an envelope, or raw bytes to test malformed input) and deliver it."""
        if isinstance(event, Envelope):
            value, key = event.to_bytes(), key if key is not None else event.aggregate_id.encode()
        else:
            value = event
        partitions = self._topic(topic)
        if partition is None:
            partition = zlib.crc32(key) % self.partitions if key is not None else 0
        log = partitions[partition]
        record = Record(topic, partition, len(log), key, value)
        log.append(record)
        for subs in self._subscribers[topic]:
            decoded = subs.decode(value, f"{topic}:{partition}:{record.offset}")
            if decoded is not None:
                await subs.deliver(decoded)
        return Position(partition, record.offset + 1)

    def producer(self, topic: str) -> MemoryProducer:
        return MemoryProducer(self, topic)

    def records(self, topic: str) -> list[Record]:
        return [r for log in self._topic(topic) for r in log]

    def events(self, topic: str) -> list[Envelope]:
        return [Envelope.from_bytes(r.value) for r in self.records(topic)]

    async def flush_outbox(self, topic: str, store: EventSourcedStore) -> int:
        """Publish what `store` committed to its outbox (what the kernel's relay does in a service)."""
        relay = OutboxRelay(store.engine, self.producer(topic))  # type: ignore[arg-type]
        total = 0
        while n := await relay.flush():
            total += n
        return total


class MemoryProducer:
    """The `DurableProducer` surface parts use, publishing into a `MemoryBus`."""

    spool_empty = True

    def __init__(self, bus: MemoryBus, topic: str, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._bus = bus
        self._topic = topic
        self.max_event_bytes = max_event_bytes
        self.dead_letters: list[tuple[bytes, bytes, str]] = []

    def set_aside(self, key: bytes, value: bytes, reason: str) -> None:
        self.dead_letters.append((key, value, reason))

    def check_size(self, key: bytes, value: bytes) -> None:
        check_event_size(key, value, self.max_event_bytes)

    async def publish(self, key: bytes, value: bytes) -> Position:
        self.check_size(key, value)
        return await self._bus.publish(self._topic, value, key)

    async def mark_every_partition(self, value: bytes) -> list[Position]:
        return [await self._bus.publish(self._topic, value, None, p) for p in range(self._bus.partitions)]
