"""A client's chat request, parsed once: the checks its body must pass and what the call reads from it.

The body is parsed with orjson and never re-validated or re-serialised here: the checks read
the parsed value, and the received bytes are what is forwarded unless a field must change.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from refinery.events.request_logs import metadata_overrides
from refinery.wire.json_depth import nests_deeper_than
from refinery.wire.openai_shapes import merge_metadata

from proxy_router.caching import cache_key, cache_mode
from proxy_router.criteria import HEADER as CRITERIA_HEADER
from proxy_router.criteria import parse_criteria
from proxy_router.errors import ProxyError

# orjson parses 1024 levels but writes at most 254, and the log must be written: refuse the rest.
MAX_LOGGED_DEPTH = 254
TOO_DEEP = "body nests too deeply to be logged"
_RECURSION = "Recursion limit reached"  # orjson's words when writing it would fail





@dataclass(slots=True)
class ChatRequest:
    """One proxied call as the steps after parsing see it."""

    project_id: str
    raw: bytes
    body: dict[str, Any]
    model: str
    stream: bool
    log_enabled: bool
    metadata: dict[str, str]
    cache_read: bool
    cache_write: bool
    cache_key: str
    started: float  # perf_counter() when the call arrived
    requested_at: float  # ms since epoch
    criteria: tuple[str, ...] = ()  # op-criteria: judge the choices and rank them (see `criteria`)
    tags: dict[str, str | None] = field(default_factory=dict)  # op-tags: what the log sets on top of the metadata
    prices: tuple[float, float] | None = None  # the project's own price of the upstream model, $/Mtok in, out

    def log_fields(self) -> dict[str, Any]:
        """What every log of this call carries, whatever the answer."""
        return {"requested_at": self.requested_at, "model": self.model, "req_payload": self.body,
                "metadata_overrides": self.tags}

    def overhead_ms(self, upstream_s: float = 0.0) -> float:
        """Milliseconds spent on this call so far that were not the upstream's."""
        return (time.perf_counter() - self.started - upstream_s) * 1000

    def setup_ms(self, upstream_started: float) -> float:
        """Milliseconds before the upstream was called: the proxy's whole share of a stream."""
        return (upstream_started - self.started) * 1000


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProxyError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProxyError(400, "body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ProxyError(400, "`model` is required and must be a string")
    if not isinstance(body.get("messages"), list):
        raise ProxyError(400, "`messages` is required and must be an array")
    return body


def _metadata(body: dict[str, Any], raw: bytes, tags_header: str | None
              ) -> tuple[dict[str, str], dict[str, str | None]]:
    """(the call's metadata, what the `op-tags` header sets on top of the body's own)."""
    tags: Any = None
    if tags_header:
        try:
            tags = orjson.loads(tags_header)
        except orjson.JSONDecodeError:
            raise ProxyError(400, "`op-tags` header must be a JSON object") from None
    if nests_deeper_than(body, MAX_LOGGED_DEPTH, raw):
        raise ProxyError(400, f"{TOO_DEEP}: {_RECURSION}")
    try:
        return merge_metadata(body.get("metadata"), tags), metadata_overrides(tags)
    except orjson.JSONEncodeError as exc:  # a tag nested past what orjson writes
        raise ProxyError(400, f"{TOO_DEEP}: {exc}") from None


def parse_chat_request(
    project_id: str, raw: bytes, headers: Mapping[str, str], started: float, requested_at: float,
) -> ChatRequest:
    """The call, or the `ProxyError` (400) that names what is wrong with it."""
    body = _body(raw)
    metadata, tags = _metadata(body, raw, headers.get("op-tags"))
    stream = body.get("stream") is True
    read, write = cache_mode(headers.get("op-cache")) if not stream else (False, False)
    criteria_header = headers.get(CRITERIA_HEADER)
    criteria = parse_criteria(criteria_header) if criteria_header is not None else ()
    if criteria and stream:
        raise ProxyError(400, f"`{CRITERIA_HEADER}` cannot be combined with `stream: true`: judging needs each "
                              "choice whole; send the call without streaming")
    return ChatRequest(
        project_id=project_id, raw=raw, body=body, model=body["model"], stream=stream,
        log_enabled=headers.get("op-log-request", "true").lower() != "false" and body.get("store") is not False,
        metadata=metadata, cache_read=read, cache_write=write,
        cache_key=cache_key(project_id, body) if read or write else "",
        started=started, requested_at=requested_at, criteria=criteria, tags=tags,
    )
