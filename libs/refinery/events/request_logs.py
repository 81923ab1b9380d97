"""Request-log events: one per logged LLM call, and metadata changes to logged calls.

Both are keyed by project id on the request-log topic, so a project's logs and the updates
to them stay in one partition, in order, and a read can be bound to one offset.

A logged call is written as `request_log.recorded.v2`: its metadata is the request's own
`metadata` (inside `req_payload`) with `metadata_overrides` (tags from headers or the report,
`null` deleting a key) merged on top, so a large metadata object travels once. The first
version, `request_log.recorded`, carried the merged `metadata` beside the request that already
held it; consumers still read it. `logged_metadata` is the one reading of both.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from refinery.events.envelope import Envelope, new_id

RECORDED = "request_log.recorded"  # v1: still read, no longer written
RECORDED_V2 = "request_log.recorded.v2"
RECORDED_TYPES = (RECORDED, RECORDED_V2)
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


def metadata_text(value: Any) -> str | None:
    """Metadata values are strings on the wire: 1 → "1", True → "true", None → dropped."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float, str)):
        return str(value)
    import orjson

    return orjson.dumps(value).decode()


def merge_metadata(*sources: Any) -> dict[str, str]:
    """Later sources win; a null value deletes the key; values become strings (`metadata_text`)."""
    merged: dict[str, str] = {}
    for source in sources:
        if not isinstance(source, dict):
            continue
        for key, value in source.items():
            text = metadata_text(value)
            if text is None:
                merged.pop(str(key), None)
            else:
                merged[str(key)] = text
    return merged


def metadata_overrides(*sources: Any) -> dict[str, str | None]:
    """What `sources` (tags) change on top of a request's own metadata: later sources win, and a null
    stays null (it deletes the key when merged)."""
    out: dict[str, str | None] = {}
    for source in sources:
        if isinstance(source, dict):
            for key, value in source.items():
                out[str(key)] = metadata_text(value)
    return out


class _LoggedCall(BaseModel):
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
    cache_hit: bool = False
    usage: Usage | None = None
    cost_usd: float | None = None
    completion_id: str | None = None


class RequestLogRecorded(_LoggedCall):
    """A logged call, exactly as the client sent and received it (v1: `metadata` merged in full).

    `req_payload` and `resp_payload` are kept verbatim (any JSON, even invalid requests);
    `resp_openai` is the OpenAI-shaped view of the response used for search and datasets
    (equal to `resp_payload` for OpenAI calls, converted for Anthropic ones).
    """

    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def logged_metadata(self) -> dict[str, str]:
        return dict(self.metadata)


class RequestLogRecordedV2(_LoggedCall):
    """A logged call, exactly as the client sent and received it; its metadata is `req_payload`'s
    own `metadata` with `metadata_overrides` merged on top (see the module docstring)."""

    metadata_overrides: dict[str, str | None] = Field(
        default_factory=dict, description="Tags set on top of the request's metadata; null deletes a key")

    @property
    def logged_metadata(self) -> dict[str, str]:
        return logged_metadata(self.req_payload, self.metadata_overrides)


def logged_metadata(req_payload: Any, overrides: dict[str, str | None] | None) -> dict[str, str]:
    """A v2 log's metadata: the request's own, with the overrides merged on top."""
    own = req_payload.get("metadata") if isinstance(req_payload, dict) else None
    return merge_metadata(own, overrides or {})


def data_metadata(event_type: str, data: dict[str, Any]) -> dict[str, str]:
    """The metadata of a decoded event's `data` (a plain dict), whichever version wrote it."""
    if event_type == RECORDED_V2:
        overrides = data.get("metadata_overrides")
        return logged_metadata(data.get("req_payload"), overrides if isinstance(overrides, dict) else None)
    meta = data.get("metadata")
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


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


def request_log_recorded(project_id: str, log: RequestLogRecordedV2 | RequestLogRecorded) -> Envelope:
    return Envelope(
        type=RECORDED_V2 if isinstance(log, RequestLogRecordedV2) else RECORDED,
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
