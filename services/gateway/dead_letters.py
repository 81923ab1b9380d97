"""The dead letters of the whole platform, as the admin routes and `refinery dead-letters` show them.

Every service sets the records it gave up on aside on `refinery.dead-letters` (see
`refinery.bus.dead_letters`). The gateway follows that topic from its beginning into memory (it
is small: a healthy platform writes nothing there), and replays a letter, as it was or as an
operator fixed it, onto the topic it came from, with its original key, so it lands where its
aggregate's other records are. Consumers dedupe, so a replayed record is stored once.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from refinery.bus.dead_letters import DeadLetterSink
from refinery.bus.producer import DurableProducer, EventTooLarge, Position
from refinery.events.dead_letters import (
    DEAD_LETTER_RECORDED,
    DEAD_LETTER_REPLAYED,
    DeadLetterRecorded,
    DeadLetterReplayed,
)
from refinery.runtime.subscriptions import Event, Subscriptions


@dataclass
class Letter:
    recorded: DeadLetterRecorded
    project_id: str
    recorded_at: float
    replays: list[dict[str, Any]] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        r = self.recorded
        raw = r.value()
        try:
            value: Any = orjson.loads(raw) if not r.truncated else None
        except orjson.JSONDecodeError:
            value = None
        key = r.key_bytes()
        return {
            "id": r.letter_id, "service": r.service, "topic": r.topic, "partition": r.partition, "offset": r.offset,
            "projectId": self.project_id or None, "key": key.decode(errors="replace"), "reason": r.reason,
            "recordedAt": self.recorded_at, "size": r.value_bytes, "truncated": r.truncated,
            "value": value, "valueBase64": r.value_b64, "replays": list(self.replays),
        }


class NoOffsets:
    """The book is rebuilt from the topic's beginning on each start: nothing to keep."""

    def load_offsets(self, topic: str) -> dict[int, int]:
        return {}

    def save_offsets(self, topic: str, offsets: dict[int, int]) -> None:
        return None


class DeadLetterBook:
    """Dead letters by id, newest last, with their replays."""

    def __init__(self) -> None:
        self.letters: dict[str, Letter] = {}
        self.subscriptions = Subscriptions("gateway dead letters")
        self.subscriptions.on(DEAD_LETTER_RECORDED)(self._recorded)
        self.subscriptions.on(DEAD_LETTER_REPLAYED)(self._replayed)

    async def _recorded(self, event: Event[DeadLetterRecorded]) -> None:
        letter = event.data.letter_id
        if letter not in self.letters:  # the same record set aside again after a crash: one letter
            self.letters[letter] = Letter(event.data, event.project_id, event.occurred_at)

    async def _replayed(self, event: Event[DeadLetterReplayed]) -> None:
        letter = self.letters.get(event.data.letter_id)
        if letter is not None and all(r["eventId"] != event.event_id for r in letter.replays):
            letter.replays.append({"eventId": event.event_id, "at": event.occurred_at, "fixed": event.data.fixed,
                                   "partition": event.data.partition, "offset": event.data.offset})

    def find(self, *, topic: str | None = None, service: str | None = None, project_id: str | None = None,
             replayed: bool | None = None) -> list[Letter]:
        return [
            letter for letter in self.letters.values()
            if (topic is None or letter.recorded.topic == topic)
            and (service is None or letter.recorded.service == service)
            and (project_id is None or letter.project_id == project_id)
            and (replayed is None or bool(letter.replays) == replayed)
        ]


class ReplayRefused(Exception):
    """A letter that cannot be replayed as asked (cut short, too large, unknown topic)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Replayer:
    """Puts a letter's record back on its topic through a durable producer per topic (the gateway's
    own ones where it has them), then records the replay."""

    def __init__(self, sink: DeadLetterSink, producers: dict[str, DurableProducer], bootstrap: str,
                 spool_root: Path, topics: set[str], max_event_bytes: int) -> None:
        self._sink = sink
        self._shared = dict(producers)
        self._own: dict[str, DurableProducer] = {}
        self._bootstrap = bootstrap
        self._spool_root = spool_root
        self._topics = topics
        self._max_event_bytes = max_event_bytes

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for producer in self._own.values():
            await producer.stop()

    async def _producer(self, topic: str) -> DurableProducer:
        producer = self._shared.get(topic) or self._own.get(topic)
        if producer is None:
            if topic not in self._topics:
                raise ReplayRefused(409, f"the letter's topic {topic!r} is not one of the platform's topics")
            producer = DurableProducer(self._bootstrap, topic, self._spool_root / f"replay-{topic}",
                                       max_event_bytes=self._max_event_bytes)
            await producer.start()
            self._own[topic] = producer
        return producer

    async def replay(self, letter: Letter, fixed_value: bytes | None) -> Position | None:
        recorded = letter.recorded
        if fixed_value is None and recorded.truncated:
            raise ReplayRefused(409, f"the record was {recorded.value_bytes} bytes, too large to keep whole on the "
                                     f"dead-letter topic (the {recorded.service} service's dead-letter file has "
                                     "it); replay it with a fixed value")
        value = fixed_value if fixed_value is not None else recorded.value()
        producer = await self._producer(recorded.topic)
        try:
            position = await producer.publish(recorded.key_bytes(), value)
        except EventTooLarge as exc:
            raise ReplayRefused(413, str(exc)) from exc
        await self._sink.record_replay(recorded, letter.project_id, position.partition if position else None,
                                       position.offset - 1 if position else None, fixed_value is not None)
        return position


def fixed_value(body: dict[str, Any] | None) -> bytes | None:
    """The operator's corrected record from a replay body: `value` (JSON) or `valueBase64` (bytes)."""
    if not body:
        return None
    if "valueBase64" in body:
        try:
            return base64.b64decode(str(body["valueBase64"]), validate=True)
        except ValueError as exc:
            raise ReplayRefused(400, "valueBase64 is not valid base64") from exc
    if "value" in body:
        return orjson.dumps(body["value"])
    return None
