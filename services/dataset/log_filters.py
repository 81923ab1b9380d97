"""Log-search filters evaluated on a `request_log.recorded` event, for standing import rules.

The same fields and meaning as log-ingest's search (model, completionId, statusCode,
metadata.<key> / tags.<key>, text, from, to), so a rule imports exactly the logs a search
with its filters would show.
"""

from __future__ import annotations

from typing import Any

import orjson
from refinery.stores.logstore import (
    FilterError,
    any_of_target,
    contains_target,
    metadata_key,
    scalar_text,
)

FIELDS = "model, completionId, statusCode, metadata.<key>, tags.<key>, text, from or to"
# Columns whose event value is the text itself; the payload columns are searched as their JSON text,
# as the log store holds them.
_SCALAR_COLUMNS = frozenset({"model", "completion_id"})


def _number(field: str, value: str) -> float:
    try:
        return float(value)
    except ValueError as exc:
        raise FilterError(f"{field} filter needs a number, got {value!r}") from exc


def check(filters: list[dict[str, str]], *, standing: bool = False) -> None:
    """Reject what search would reject, before an import runs or a rule is stored. A standing rule
    matches logs yet to come, so it cannot name log ids."""
    for f in filters:
        field, value, op = f.get("field", ""), f.get("value", ""), f.get("op", "")
        if field == "id" and standing:
            raise FilterError("a standing rule cannot name log ids: it imports logs that arrive later")
        if op == "any_of":
            any_of_target(field, value)
            continue
        if op not in ("", "equals"):
            contains_target(field, op)
            continue
        if field in ("request", "response"):
            raise FilterError(f"{field} filters take contains or notContains, not equals")
        if field in ("id", "model", "completionId", "text"):
            continue
        if field in ("statusCode", "from", "to"):
            _number(field, value)
        elif metadata_key(field) is None:
            raise FilterError(f"unknown filter field {field!r}: use {FIELDS}")


def _contains(payload: Any, needle: str) -> bool:
    if payload is None:
        return False
    return needle in orjson.dumps(payload).decode().lower()


def _text_match(field: str, op: str, needle: str, log: dict[str, Any]) -> bool:
    """Case-insensitive substring test on one text field of a recorded log (what `contains_target` says)."""
    columns, key = contains_target(field, op)
    if key is not None:
        return needle in str((log.get("metadata") or {}).get(key, "")).lower()
    return any(needle in str(log.get(c) or "").lower() if c in _SCALAR_COLUMNS else _contains(log.get(c), needle)
               for c in columns)


def matches(filters: list[dict[str, str]], log: dict[str, Any]) -> bool:
    """Does a recorded log (the event's `data`) satisfy every filter?"""
    for f in filters:
        field, value, value_type = f["field"], f["value"], f.get("value_type", "string")
        op = f.get("op", "")
        if op in ("contains", "not_contains"):
            ok = _text_match(field, op, value.lower(), log) == (op == "contains")
        elif op == "any_of":
            column, values = any_of_target(field, value)
            ok = (log.get(column) or "") in values
        elif field == "model":
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
