"""Turning `request_log.recorded` events into log-store rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson


def _json_text(value: Any) -> str:
    """Stored JSON text; '' stands for an absent payload (served as null)."""
    if value is None:
        return ""
    return orjson.dumps(value).decode()


def event_to_row(project_id: str, data: dict[str, Any], offset: int) -> list[Any]:
    """The same row from the event's decoded `data`, without building a pydantic model: this is
    ingest's hot path (every log passes here), and the writers already validated the event."""
    usage = data.get("usage") or {}
    model = data.get("model")
    completion_id = data.get("completion_id")
    return [
        project_id,
        data["log_id"],
        offset,
        offset,
        datetime.fromtimestamp(float(data["received_at"]) / 1000.0, tz=UTC),
        data.get("requested_at"),
        data.get("completed_at"),
        data["source"],
        data.get("provider") or "openai",
        model or "",
        data.get("status_code"),
        data.get("error_message"),
        completion_id or "",
        bool(data.get("cache_hit")),
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        data.get("cost_usd"),
        _json_text(data.get("req_payload")),
        _json_text(data.get("resp_payload")),
        _json_text(data.get("resp_openai")),
        {str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
    ]
