"""Setting a record aside for good: onto `refinery.dead-letters`, with the reason, durably.

Readers and writers call `DeadLetterSink.set_aside` when a record can never be handled, then go on
past it: the stream behind a bad record is never held up by it, and the record is not lost (it is
on the dead-letter topic, or in the producer's spool until the bus takes it). See
`refinery.events.dead_letters` for the events and how they are listed and replayed.

When to give up is the caller's decision, made the same way everywhere: a record that does not
decode is given up at once; a record that fails while the service's own store answers a trivial
read (so the failure is the record's, not the store's) is given up after a bounded number of
attempts; a failure while the store does not answer is transient and retried.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable

import orjson

from refinery.bus.producer import DurableProducer, EventTooLarge
from refinery.events.dead_letters import (
    DEAD_LETTER_RECORDED,
    DEAD_LETTER_REPLAYED,
    PLATFORM_PROJECT,
    DeadLetterRecorded,
    DeadLetterReplayed,
    dead_letter_event,
    letter_id,
)

log = logging.getLogger("refinery.bus")

ENVELOPE_ROOM = 16 * 1024  # the event around the record: ids, reason, field names


def project_of(value: bytes, key: bytes) -> str:
    """The project a record belongs to: its envelope's `project_id`, else the platform's."""
    try:
        envelope = orjson.loads(value)
    except orjson.JSONDecodeError:
        return PLATFORM_PROJECT
    project = envelope.get("project_id") if isinstance(envelope, dict) else None
    return project if isinstance(project, str) else PLATFORM_PROJECT


class DeadLetterSink:
    """Publishes `dead_letter.recorded` events for one service through a durable producer."""

    def __init__(self, producer: DurableProducer, service: str) -> None:
        self._producer = producer
        self.service = service
        self.recorded = 0
        # What of a record fits: base64 grows it by 4/3, and the event needs room around it.
        self._max_value = max(1024, (producer.max_event_bytes - ENVELOPE_ROOM) * 3 // 4)

    async def set_aside(
        self, *, topic: str, reason: str, value: bytes, key: bytes = b"", partition: int | None = None,
        offset: int | None = None, project_id: str | None = None,
    ) -> str:
        """Durably record `value` as a dead letter (the producer's ack or its fsynced spool); its id."""
        letter = letter_id(self.service, topic, partition, offset, value)
        kept = value[:self._max_value]
        data = DeadLetterRecorded(
            letter_id=letter, service=self.service, topic=topic, partition=partition, offset=offset,
            key=base64.b64encode(key).decode(), reason=reason[:4000], value_b64=base64.b64encode(kept).decode(),
            value_bytes=len(value), truncated=len(kept) < len(value),
        )
        project = project_id if project_id is not None else project_of(value, key)
        event = dead_letter_event(project, data, letter, DEAD_LETTER_RECORDED)
        try:
            await self._producer.publish(letter.encode(), event.to_bytes())
        except EventTooLarge as exc:  # cannot happen with the cut above; never lose the record over it
            self._producer.set_aside(key, value, f"{reason} (and too large for the dead-letter topic: {exc})")
        self.recorded += 1
        log.error("%s set aside %s from %s (partition %s, offset %s, %d bytes): %s", self.service, letter, topic,
                  partition, offset, len(value), reason)
        return letter

    async def record_replay(self, letter: DeadLetterRecorded, project_id: str, partition: int | None,
                            offset: int | None, fixed: bool) -> None:
        """Record that `letter` was replayed onto its topic (landing at `partition`/`offset`)."""
        data = DeadLetterReplayed(letter_id=letter.letter_id, topic=letter.topic, partition=partition,
                                  offset=offset, fixed=fixed)
        event = dead_letter_event(project_id, data, letter.letter_id, DEAD_LETTER_REPLAYED)
        await self._producer.publish(letter.letter_id.encode(), event.to_bytes())

    def set_aside_from_thread(self, loop: asyncio.AbstractEventLoop, **fields: object) -> str:
        """`set_aside` from a worker thread (batch writers run off the loop); blocks until durable."""
        future = asyncio.run_coroutine_threadsafe(self.set_aside(**fields), loop)  # type: ignore[arg-type]
        return future.result()


async def store_answers(probe: Callable[[], Awaitable[object]]) -> bool:
    """Whether a trivial read of the service's own store succeeds: if so, a record that keeps failing
    fails for itself, and is set aside; if not, the failure is the store's, and is retried."""
    try:
        await probe()
    except Exception as exc:
        log.warning("the store does not answer (%s: %s); treating the failure as transient", type(exc).__name__, exc)
        return False
    return True
