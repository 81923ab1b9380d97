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
TEXT_FIELDS = "request, response, text, model, completionId and metadata.<key>"
# What `contains` / `not_contains` look in, as log-ingest's search does (logstore._TEXT_COLUMNS).
_TEXT_KEYS = {
    "request": ("req_payload",),
    "response": ("resp_payload", "resp_openai"),
    "text": ("req_payload", "resp_payload", "resp_openai"),
}


class FilterError(ValueError):
    """A filter names a field that cannot be searched, or a value of the wrong kind."""


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
            if field not in ("id", "model", "completionId"):
                raise FilterError(f"{field} filters cannot take anyOf: it works on id, model and completionId")
            try:
                values = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise FilterError("anyOf needs a JSON array of strings") from exc
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise FilterError("anyOf needs a JSON array of strings")
            continue
        if op not in ("", "equals"):
            if op not in ("contains", "not_contains"):
                raise FilterError(f"unknown filter operator {op!r}: use equals, contains or notContains")
            if field not in ("request", "response", "text", "model", "completionId") and not (
                    field.startswith(("metadata.", "tags.")) and field.split(".", 1)[1]):
                raise FilterError(f"{field} filters take equals only; contains and notContains work on {TEXT_FIELDS}")
            continue
        if field in ("request", "response"):
            raise FilterError(f"{field} filters take contains or notContains, not equals")
        if field in ("id", "model", "completionId", "text"):
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


def _text_match(field: str, needle: str, log: dict[str, Any]) -> bool:
    """Case-insensitive substring test on one text field of a recorded log."""
    if field in _TEXT_KEYS:
        return any(_contains(log.get(k), needle) for k in _TEXT_KEYS[field])
    if field == "model":
        return needle in (log.get("model") or "").lower()
    if field == "completionId":
        return needle in (log.get("completion_id") or "").lower()
    meta = log.get("metadata") or {}
    key = field.split(".", 1)[1]
    return needle in str(meta.get(key, "")).lower()


def matches(filters: list[dict[str, str]], log: dict[str, Any]) -> bool:
    """Does a recorded log (the event's `data`) satisfy every filter?"""
    for f in filters:
        field, value, value_type = f["field"], f["value"], f.get("value_type", "string")
        op = f.get("op", "")
        if op in ("contains", "not_contains"):
            ok = _text_match(field, value.lower(), log) == (op == "contains")
        elif op == "any_of":
            column = {"model": "model", "completionId": "completion_id"}.get(field)
            ok = column is not None and (log.get(column) or "") in orjson.loads(value)
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
