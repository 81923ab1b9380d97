"""Log-search filters evaluated on a `request_log.recorded` event, for standing import rules.

The same fields and meaning as log-ingest's search (model, completionId, statusCode,
metadata.<key> / tags.<key>, text, from, to), so a rule imports exactly the logs a search
with its filters would show.
"""

from __future__ import annotations

from typing import Any

import orjson
from refinery.stores.logstore import scalar_text

FIELDS = "model, completionId, statusCode, metadata.<key>, tags.<key>, text, from or to"


class FilterError(ValueError):
    """A filter names a field that cannot be searched, or a value of the wrong kind."""


def _number(field: str, value: str) -> float:
    try:
        return float(value)
    except ValueError as exc:
        raise FilterError(f"{field} filter needs a number, got {value!r}") from exc


def check(filters: list[dict[str, str]]) -> None:
    """Reject what search would reject, before a rule is stored."""
    for f in filters:
        field, value = f.get("field", ""), f.get("value", "")
        if field in ("model", "completionId", "text"):
            continue
        if field in ("statusCode", "from", "to"):
            _number(field, value)
        elif field.startswith(("metadata.", "tags.")):
            if not field.split(".", 1)[1]:
                raise FilterError(f"filter field {field!r} names no key")
        else:
            raise FilterError(f"unknown filter field {field!r}: use {FIELDS}")


def _contains(payload: Any, needle: str) -> bool:
    if payload is None:
        return False
    return needle in orjson.dumps(payload).decode().lower()


def matches(filters: list[dict[str, str]], log: dict[str, Any]) -> bool:
    """Does a recorded log (the event's `data`) satisfy every filter?"""
    for f in filters:
        field, value, value_type = f["field"], f["value"], f.get("value_type", "string")
        if field == "model":
            ok = (log.get("model") or "") == value
        elif field == "completionId":
            ok = (log.get("completion_id") or "") == value
        elif field == "statusCode":
            ok = log.get("status_code") is not None and int(log["status_code"]) == int(_number(field, value))
        elif field.startswith(("metadata.", "tags.")):
            meta = log.get("metadata") or {}
            key = field.split(".", 1)[1]
            ok = key in meta and meta[key] == scalar_text(value, value_type)
        elif field == "text":
            needle = value.lower()
            ok = any(_contains(log.get(k), needle) for k in ("req_payload", "resp_payload", "resp_openai"))
        elif field == "from":
            ok = float(log.get("received_at") or 0) >= _number(field, value)
        elif field == "to":
            ok = float(log.get("received_at") or 0) < _number(field, value)
        else:
            raise FilterError(f"unknown filter field {field!r}: use {FIELDS}")
        if not ok:
            return False
    return True


def log_view(data: dict[str, Any], log_id: str) -> dict[str, Any]:
    """The event's data in the shape `entry_from_log` reads (the export's `entries` view)."""
    return {
        "id": log_id,
        "source": data.get("source"),
        "statusCode": data.get("status_code"),
        "errorMessage": data.get("error_message"),
        "reqPayload": data.get("req_payload"),
        "respOpenai": data.get("resp_openai") if data.get("resp_openai") is not None else data.get("resp_payload"),
        "metadata": data.get("metadata") or {},
    }


def errored(log: dict[str, Any]) -> bool:
    """A failed call (never training data): a non-2xx status, an error message, or no response."""
    status = log.get("statusCode")
    if isinstance(status, int) and not 200 <= status < 300:
        return True
    return bool(log.get("errorMessage")) or log.get("respOpenai") is None
