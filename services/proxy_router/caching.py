"""The `op-cache` modes and the cache key of a chat completion.

The key covers what decides the answer (model, messages, tools, functions, choices of tool
and format, max_tokens) with sorted keys, and not sampling knobs such as temperature or n;
it is scoped to the project so one project never sees another's answers.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

KEY_FIELDS = ("model", "messages", "function_call", "functions", "tool_choice", "tools", "max_tokens",
              "response_format")
TTL_S = 7 * 24 * 3600


def cache_mode(header: str | None) -> tuple[bool, bool]:
    """(read, write) for an `op-cache` header value; anything unknown means off."""
    if header == "readWrite":
        return True, True
    if header == "readOnly":
        return True, False
    if header == "writeOnly":
        return False, True
    return False, False


def cache_key(project_id: str, body: dict[str, Any]) -> str:
    material = orjson.dumps({k: body.get(k) for k in KEY_FIELDS}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(project_id.encode() + b"\x00" + material).hexdigest()
