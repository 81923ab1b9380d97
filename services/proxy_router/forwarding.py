"""What is sent to an upstream: its URL, auth headers and body, for OpenAI-compatible APIs and Anthropic.

An OpenAI-compatible upstream gets the received bytes unless a field must change (the
model's name, metadata, a missing user turn); Anthropic gets the translated request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from refinery.wire.anthropic import SYNTHETIC_USER_TURN, to_messages_request

from proxy_router.chat_request import ChatRequest
from proxy_router.errors import JSON
from proxy_router.providers import Upstream
from proxy_router.routing import Route

ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    body: bytes
    headers: dict[str, str]


def _needs_user_turn(route: Route, messages: list[Any]) -> bool:
    """Gemini, like Anthropic, rejects a conversation with no user turn."""
    return route.provider == "gemini" and not any(
        isinstance(m, dict) and m.get("role") not in ("system", "developer") for m in messages)


def openai_body(call: ChatRequest, route: Route) -> bytes:
    body = call.body
    needs_user_turn = _needs_user_turn(route, body["messages"])
    if route.upstream_model == call.model and not needs_user_turn and (
            "metadata" not in body or body.get("store") is True):
        return call.raw
    fwd = dict(body)
    fwd["model"] = route.upstream_model
    if fwd.get("store") is not True:
        # OpenAI rejects metadata unless the call is stored there too.
        fwd.pop("metadata", None)
    if needs_user_turn:
        fwd["messages"] = [*body["messages"], {"role": "user", "content": SYNTHETIC_USER_TURN}]
    return orjson.dumps(fwd)


def openai_request(call: ChatRequest, route: Route, upstream: Upstream) -> UpstreamRequest:
    headers = {"content-type": JSON, "authorization": f"Bearer {upstream.api_key}", **dict(upstream.headers)}
    return UpstreamRequest(f"{upstream.base_url}/chat/completions", openai_body(call, route), headers)


def anthropic_request(call: ChatRequest, route: Route, upstream: Upstream) -> UpstreamRequest:
    headers = {"content-type": JSON, "x-api-key": upstream.api_key, "anthropic-version": ANTHROPIC_VERSION}
    body = orjson.dumps(to_messages_request(call.body, route.upstream_model))
    return UpstreamRequest(f"{upstream.base_url}/v1/messages", body, headers)


def upstream_json(raw: bytes) -> Any:
    """An upstream body as JSON; a non-JSON body (a proxy's HTML error page) as an error object."""
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return {"error": {"message": raw[:2000].decode(errors="replace")}}
