"""The typed envelope every event travels in.

Events are immutable facts named in the past tense. The envelope carries what every
consumer needs to dedupe (`event_id`), order (`aggregate_id`, `version`) and scope
(`project_id`) an event without understanding its `data`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field


def new_id() -> str:
    return uuid.uuid4().hex


def now_ms() -> float:
    return time.time() * 1000.0


class Envelope(BaseModel):
    """One event on the bus. `type` is stable and versioned by suffix when `data` changes shape."""

    model_config = ConfigDict(frozen=True)

    event_id: str = Field(default_factory=new_id)
    type: str
    aggregate_id: str
    version: int = 1
    project_id: str
    occurred_at: float = Field(default_factory=now_ms, description="ms since the Unix epoch")
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump())

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)
