"""POST /api/v1/chat/completions: authenticated here, routed and logged by proxy-router.

The hot path (`gateway.hot_paths`) forwards every authenticated JSON request itself; this route is
the endpoint's specification (OpenAPI) and answers what the hot path hands on: a missing or bad
key (401) and a body that is not JSON (400). Whatever reaches it without the hot path in front (the
FastAPI app served alone) goes through the same forwarder.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.auth import project_of
from gateway.errors import ApiError
from gateway.forwarding import ProxyForwarder, is_json

__all__ = ["ProxyForwarder", "router"]  # ProxyForwarder is re-exported: gateway.main imports it from here

router = APIRouter(prefix="/api/v1")

_BODY_SCHEMA = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string"},
            "messages": {"type": "array", "items": {"type": "object"}},
            "stream": {"type": "boolean"},
            "n": {"type": "integer"},
            "tools": {"type": "array", "items": {"type": "object"}},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "store": {"type": "boolean"},
        },
    }}},
}


class _Forwarded(Response):
    """Answers with what proxy-router answers, relayed by the one forwarder."""

    def __init__(self, forwarder: ProxyForwarder, project_id: str, headers: dict[bytes, bytes], body: bytes) -> None:
        super().__init__()
        self._call = (forwarder, project_id, headers, body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        forwarder, project_id, headers, body = self._call
        await forwarder.forward(project_id, headers, body, send)


@router.post("/chat/completions", summary="OpenAI-compatible chat completions (plain and SSE)",
             openapi_extra={"requestBody": _BODY_SCHEMA})
async def chat_completions(request: Request, project_id: str = Depends(project_of)) -> Response:
    content_type = request.headers.get("content-type")
    if content_type is not None and not is_json(content_type.encode("latin-1")):
        raise ApiError(400, "BAD_REQUEST", f"Content-Type must be application/json, got {content_type!r}")
    body = await request.body()
    return _Forwarded(request.app.state.deps.proxy, project_id, dict(request.scope["headers"]), body)
