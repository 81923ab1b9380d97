"""Dead letters: records a reader or writer gave up on for good, kept with the reason.

A record that can never be handled (it does not decode, a store refuses it, a handler keeps
failing while the service's own store is healthy) must not stop the stream behind it, and must
not be lost either. The service that gives up publishes `dead_letter.recorded` with the record
itself on `refinery.dead-letters` and goes on; an operator lists them (`GET /admin/v1/dead-letters`,
`refinery dead-letters list`), fixes what needs fixing, and replays one onto its topic, which
records `dead_letter.replayed`. Consumers dedupe on event id and log id, so a replayed record is
stored once however often it is replayed.
"""

from __future__ import annotations

import base64
import hashlib

from pydantic import BaseModel, ConfigDict, Field

from refinery.events.envelope import Envelope

DEAD_LETTER_RECORDED = "dead_letter.recorded"
DEAD_LETTER_REPLAYED = "dead_letter.replayed"

PLATFORM_PROJECT = ""  # the project of a record whose project cannot be read from it


class DeadLetterRecorded(BaseModel):
    model_config = ConfigDict(frozen=True)

    letter_id: str = Field(description="Stable per record and reader: the same record set aside twice has one id")
    service: str = Field(description="The service that gave up on the record")
    topic: str = Field(description="Where the record came from (or was going)")
    partition: int | None = Field(default=None, description="Its partition, when it was read from the bus")
    offset: int | None = Field(default=None, description="Its offset, when it was read from the bus")
    key: str = Field(description="The record key, base64")
    reason: str = Field(description="Why it was set aside: the error, in words")
    value_b64: str = Field(description="The record itself, base64 (cut short when `truncated`)")
    value_bytes: int = Field(description="The record's full size in bytes")
    truncated: bool = Field(
        default=False, description="The record was too large to travel here whole; the setting-aside service "
                                   "keeps it whole in its dead-letter file")

    def value(self) -> bytes:
        return base64.b64decode(self.value_b64)

    def key_bytes(self) -> bytes:
        return base64.b64decode(self.key)


class DeadLetterReplayed(BaseModel):
    model_config = ConfigDict(frozen=True)

    letter_id: str
    topic: str
    partition: int | None = None
    offset: int | None = Field(default=None, description="Where the replayed record landed (None when spooled)")
    fixed: bool = Field(description="The record was replaced by an operator's corrected version")


def letter_id(service: str, topic: str, partition: int | None, offset: int | None, value: bytes) -> str:
    """One id per (reader, record): a crash that sets the same record aside again repeats the id."""
    if partition is not None and offset is not None:
        basis = f"{service}|{topic}|{partition}|{offset}".encode()
    else:
        basis = f"{service}|{topic}|".encode() + hashlib.sha256(value).digest()
    return "dl-" + hashlib.sha256(basis).hexdigest()[:24]


def dead_letter_event(project_id: str, data: BaseModel, letter: str, event_type: str) -> Envelope:
    return Envelope(type=event_type, aggregate_id=letter, project_id=project_id, data=data.model_dump())
