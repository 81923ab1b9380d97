"""Turning `request_log.recorded` events into log-store rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from refinery.events.request_logs import RequestLogRecorded, RequestLogRecordedV2, clamp_tokens
from refinery.runtime.subscriptions import Event


def _json_text(value: Any) -> str:
    """Stored JSON text; '' stands for an absent payload (served as null)."""
    if value is None:
        return ""
    return orjson.dumps(value).decode()


def event_to_row(event: Event[RequestLogRecordedV2] | Event[RequestLogRecorded], offset: int) -> list[Any]:
    """The log-store row of one decoded `request_log.recorded(.v2)` event, in `LOG_COLUMNS` order."""
    data = event.data
    usage = data.usage
    return [
        event.project_id,
        data.log_id,
        offset,
        offset,
        datetime.fromtimestamp(data.received_at / 1000.0, tz=UTC),
        data.requested_at,
        data.completed_at,
        data.source,
        data.provider or "openai",
        data.model or "",
        data.status_code,
        data.error_message,
        data.completion_id or "",
        data.cache_hit,
        clamp_tokens(usage.prompt_tokens) if usage else 0,  # an event from any writer: never a row the store refuses
        clamp_tokens(usage.completion_tokens) if usage else 0,
        data.cost_usd,
        _json_text(data.req_payload),
        _json_text(data.resp_payload),
        _json_text(data.resp_openai),
        data.logged_metadata,
    ]
