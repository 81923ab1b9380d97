"""Typed subscriptions: handlers registered per event type receive the catalogue's model.

A consumer declares what it reacts to once:

    subs = Subscriptions("trainer")

    @subs.on(TRAINING_REQUESTED)
    async def enqueue(event: Event[TrainingRequested]) -> None: ...

The envelope is decoded once, its `data` validated into the model the catalogue
(`refinery.events.catalogue`) names for that type, and the handler gets an `Event` whose
`data` is that model. What cannot be handled never stops the stream: a type the catalogue
does not know is skipped and counted (a newer producer may write it), a known type nobody
here subscribed to is passed over, and a record that does not decode (bad JSON, a missing
envelope field, data that fails its model) is logged with its partition and offset, counted
and skipped. A handler that raises is the caller's to retry: see `Follower`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from refinery.events.catalogue import by_type

log = logging.getLogger("refinery.bus")

D = TypeVar("D", bound=BaseModel)


class Event(BaseModel, Generic[D]):
    """An envelope whose `data` is the catalogue's model for its `type` (see `Envelope`)."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    type: str
    aggregate_id: str
    version: int = 1
    project_id: str
    occurred_at: float
    data: D


Handler = Callable[[Event[Any]], Awaitable[None]]


@dataclass
class DeliveryStats:
    """What a subscriber did with the records it was given, for health pages and tests."""

    handled: int = 0
    ignored: int = 0  # a catalogued type with no handler here
    unknown: int = 0  # a type the catalogue does not know
    malformed: int = 0  # undecodable, or data that fails its model
    unknown_types: set[str] = field(default_factory=set)


class EventDecoder:
    """Decodes records of the accepted types into typed `Event`s (see the module docstring).

    Consumers that store in batches off the event loop (log-ingest) decode with this directly;
    consumers that react per event register handlers on `Subscriptions`."""

    def __init__(self, name: str, *accepted: str) -> None:
        self.name = name
        self._catalogue = by_type()
        self._models: dict[str, type[Event[Any]]] = {}
        self.stats = DeliveryStats()
        self.accept(*accepted)

    def accept(self, *event_types: str) -> None:
        for event_type in event_types:
            spec = self._catalogue.get(event_type)
            if spec is None:
                raise ValueError(f"{event_type!r} is not in the event catalogue")
            self._models[event_type] = Event[spec.data]  # type: ignore[name-defined]

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._models)

    def decode(self, raw: bytes, where: str = "?") -> Event[Any] | None:
        """The typed event in `raw`, or None (counted) when it is not for a handler here."""
        return self.decode_checked(raw, where)[0]

    def decode_checked(self, raw: bytes, where: str = "?") -> tuple[Event[Any] | None, str | None]:
        """`(event, None)`; `(None, None)` for a record that is not for this consumer (a read barrier,
        a type handled elsewhere or not known here); `(None, reason)` for a record that is broken and
        will never decode, which the caller sets aside as a dead letter."""
        try:
            envelope = orjson.loads(raw)
            event_type = envelope["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            self.stats.malformed += 1
            log.error("%s: undecodable record at %s skipped", self.name, where)
            return None, f"undecodable record ({type(exc).__name__}: {exc})"
        if not isinstance(event_type, str):
            self.stats.malformed += 1
            log.error("%s: record without a string type at %s skipped", self.name, where)
            return None, "the envelope's type is not a string"
        model = self._models.get(event_type)
        if model is None:
            if event_type in self._catalogue:
                self.stats.ignored += 1
            else:
                self.stats.unknown += 1
                if event_type not in self.stats.unknown_types:
                    self.stats.unknown_types.add(event_type)
                    log.warning("%s: unknown event type %r at %s skipped", self.name, event_type, where)
            return None, None
        try:
            return model.model_validate(envelope), None
        except ValidationError as exc:
            self.stats.malformed += 1
            log.error("%s: malformed %s at %s skipped: %s", self.name, event_type, where, exc)
            errors = exc.errors()
            field = ".".join(str(part) for part in errors[0]["loc"]) if errors else "?"
            why = errors[0]["msg"] if errors else "invalid"
            return None, f"malformed {event_type}: {exc.error_count()} invalid field(s), first {field!r}: {why}"


class Subscriptions(EventDecoder):
    """The handlers of one consumer, keyed by event type."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._handlers: dict[str, Handler] = {}

    def on(self, *event_types: str) -> Callable[[Handler], Handler]:
        """Register the decorated coroutine for each of `event_types` (which must be catalogued)."""
        for event_type in event_types:
            if event_type not in self._catalogue:
                raise ValueError(f"{event_type!r} is not in the event catalogue")
            if event_type in self._handlers:
                raise ValueError(f"{self.name} already handles {event_type!r}")

        def register(handler: Handler) -> Handler:
            for event_type in event_types:
                if event_type in self._handlers:
                    raise ValueError(f"{self.name} already handles {event_type!r}")
                self._handlers[event_type] = handler
            self.accept(*event_types)
            return handler

        return register

    async def deliver(self, event: Event[Any]) -> None:
        """Run the handler of a decoded event; its exceptions propagate (the caller retries)."""
        await self._handlers[event.type](event)
        self.stats.handled += 1
