"""Turning `request_log.recorded` events into log-store rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from refinery.events.request_logs import RequestLogRecorded


def _json_text(value: Any) -> str:
    """Stored JSON text; '' stands for an absent payload (served as null)."""
    if value is None:
        return ""
    return orjson.dumps(value).decode()


def to_row(project_id: str, log: RequestLogRecorded, offset: int) -> list[Any]:
    usage = log.usage
    return [
        project_id,
        log.log_id,
        offset,
        offset,
        datetime.fromtimestamp(log.received_at / 1000.0, tz=UTC),
        log.requested_at,
        log.completed_at,
        log.source,
        log.provider,
        log.model or "",
        log.status_code,
        log.error_message,
        log.completion_id or "",
        log.cache_hit,
        usage.prompt_tokens if usage else 0,
        usage.completion_tokens if usage else 0,
        log.cost_usd,
        _json_text(log.req_payload),
        _json_text(log.resp_payload),
        _json_text(log.resp_openai),
        log.metadata,
    ]
