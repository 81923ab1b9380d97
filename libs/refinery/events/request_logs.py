"""Request-log events: one per logged LLM call, and metadata changes to logged calls.

Both are keyed by project id on the request-log topic, so a project's logs and the updates
to them stay in one partition, in order, and a read can be bound to one offset.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from refinery.events.envelope import Envelope, new_id

RECORDED = "request_log.recorded"
METADATA_UPDATED = "request_log.metadata_updated"
# Written by a starting gateway to every partition; consumers skip it (no data). Reads bound
# to its positions see everything acknowledged before that gateway started.
READ_BARRIER = "request_log.read_barrier"

LogSource = Literal["report", "report-anthropic", "proxy"]


TOKENS_MAX = 2**32 - 1  # what the log store's token columns hold (UInt32)


def clamp_tokens(value: int) -> int:
    """A token count the log store can hold: a client's -1 or 2**40 must not stall ingestion."""
    return min(max(value, 0), TOKENS_MAX)


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class RequestLogRecorded(BaseModel):
    """A logged call, exactly as the client sent and received it.

    `req_payload` and `resp_payload` are kept verbatim (any JSON, even invalid requests);
    `resp_openai` is the OpenAI-shaped view of the response used for search and datasets
    (equal to `resp_payload` for OpenAI calls, converted for Anthropic ones).
    """

    model_config = ConfigDict(frozen=True)

    log_id: str = Field(default_factory=new_id)
    source: LogSource
    received_at: float = Field(description="ms since epoch when Refinery accepted the log")
    requested_at: float | None = None
    completed_at: float | None = None
    provider: str = "openai"
    model: str | None = None
    status_code: int | None = None
    error_message: str | None = None
    req_payload: Any = None
    resp_payload: Any = None
    resp_openai: Any = None
    metadata: dict[str, str] = Field(default_factory=dict)
    cache_hit: bool = False
    usage: Usage | None = None
    cost_usd: float | None = None
    completion_id: str | None = None


class ReadBarrier(BaseModel):
    """The `data` of a read barrier: always empty. The record only marks a position."""

    model_config = ConfigDict(frozen=True)


class RequestLogMetadataUpdated(BaseModel):
    """Metadata merged into the logs that matched a filter when the update was accepted.

    `log_ids` is the exact match set (counted before applying), so replaying the event
    touches the same logs whatever arrived since. A null value deletes the key.
    """

    model_config = ConfigDict(frozen=True)

    log_ids: list[str]
    patch: dict[str, str | None]


def request_log_recorded(project_id: str, log: RequestLogRecorded) -> Envelope:
    return Envelope(
        type=RECORDED,
        aggregate_id=log.log_id,
        project_id=project_id,
        data=log.model_dump(),
    )


def request_log_metadata_updated(project_id: str, update: RequestLogMetadataUpdated) -> Envelope:
    return Envelope(
        type=METADATA_UPDATED,
        aggregate_id=project_id,
        project_id=project_id,
        data=update.model_dump(),
    )
