"""POST /api/v1/chat/completions: authenticated here, routed and logged by proxy-router.

The body goes on as the received bytes over a pooled connection (one internal hop); the
answer comes back as proxy-router sent it, streamed chunk by chunk for SSE.
"""

from __future__ import annotations

import aiohttp
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from gateway.auth import project_of
from gateway.errors import ApiError

router = APIRouter(prefix="/api/v1")

FORWARDED_HEADERS = ("content-type", "op-log-request", "op-cache", "op-criteria", "op-tags")
RETURNED_HEADERS = ("x-refinery-overhead-ms", "cache-control")

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


class ProxyForwarder:
    def __init__(self, base_url: str) -> None:
        self.url = base_url.rstrip("/") + "/v1/chat/completions"
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()


@router.post("/chat/completions", summary="OpenAI-compatible chat completions (plain and SSE)",
             openapi_extra={"requestBody": _BODY_SCHEMA})
async def chat_completions(request: Request, project_id: str = Depends(project_of)) -> Response:
    forwarder: ProxyForwarder = request.app.state.deps.proxy
    content_type = request.headers.get("content-type", "application/json")
    if not content_type.split(";")[0].strip().lower().endswith("json"):
        raise ApiError(400, "BAD_REQUEST", f"Content-Type must be application/json, got {content_type!r}")
    body = await request.body()
    headers = {k: v for k in FORWARDED_HEADERS if (v := request.headers.get(k)) is not None}
    headers["x-refinery-project-id"] = project_id
    assert forwarder.session is not None
    try:
        upstream = await forwarder.session.post(forwarder.url, data=body, headers=headers)
    except aiohttp.ClientError as exc:
        raise ApiError(503, "SERVICE_UNAVAILABLE", "proxy-router unavailable; retry") from exc
    out_headers = {k: v for k in RETURNED_HEADERS
                   if (v := upstream.headers.get(k)) is not None}
    media_type = upstream.headers.get("content-type", "application/json")
    if not media_type.startswith("text/event-stream"):
        try:
            payload = await upstream.read()
        finally:
            upstream.release()
        return Response(payload, status_code=upstream.status, media_type=media_type, headers=out_headers)

    async def relay():
        try:
            async for chunk in upstream.content.iter_any():
                yield chunk
        finally:
            upstream.release()

    return StreamingResponse(relay(), status_code=upstream.status, media_type=media_type, headers=out_headers)
