"""The `op-cache` modes and the cache key of a chat completion.

The key covers every field of the body that can change the answer (so `n`, `stop`, `seed`,
`temperature`, `max_completion_tokens` and any field added later are in it: a cached
one-choice answer must never be served to an `n=3` request), hashed with sorted keys; only
fields that change nothing in the answer are left out (`NOT_IN_KEY`). It is scoped to the
project, so one project never sees another's answers, and then to the upstream that serves
the call (`scoped_to`): another base URL, API key or adapter is another answer.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

NOT_IN_KEY = frozenset({"stream", "stream_options", "metadata", "store", "user"})
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
    material = orjson.dumps({k: v for k, v in body.items() if k not in NOT_IN_KEY}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(project_id.encode() + b"\x00" + material).hexdigest()


def scoped_to(key: str, base_url: str, api_key: str, headers: tuple[tuple[str, str], ...] = ()) -> str:
    """`key` for one upstream: its base URL, a hash of its API key (never the key) and its headers."""
    upstream = orjson.dumps([base_url, hashlib.sha256(api_key.encode()).hexdigest(), sorted(headers)])
    return hashlib.sha256(key.encode() + b"\x00" + upstream).hexdigest()
