"""Forwarding a chat completion to proxy-router: the one copy, on bare ASGI.

The body goes on as the received bytes over a pooled connection (one internal hop); the answer
comes back as proxy-router sent it, streamed chunk by chunk for SSE. The hot path calls
`ProxyForwarder.forward` for every authenticated JSON request; the FastAPI route (which documents
the endpoint and answers its errors) hands the same call whatever reaches it without the hot path.
"""

from __future__ import annotations

import aiohttp
from refinery import internal_auth
from starlette.types import Send

from gateway.errors import ApiError, send_error

FORWARDED_HEADERS = ("content-type", "op-log-request", "op-cache", "op-criteria", "op-tags")
RETURNED_HEADERS = ("x-refinery-overhead-ms", "cache-control")

_FORWARDED = tuple((name.encode(), name) for name in FORWARDED_HEADERS)
_UNREACHABLE = ApiError(503, "SERVICE_UNAVAILABLE", "proxy-router unavailable; retry")


def is_json(content_type: bytes | None) -> bool:
    """Whether a chat body may be forwarded: no Content-Type at all (read as JSON), a type ending in
    `json` (`application/json`, `application/vnd.x+json`, any parameters), or a header starting with
    `application/json`, as the hot path has always taken it."""
    if content_type is None or content_type.startswith(b"application/json"):
        return True
    return content_type.decode("latin-1").split(";")[0].strip().lower().endswith("json")


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

    async def forward(self, project_id: str, headers: dict[bytes, bytes], body: bytes, send: Send) -> None:
        """Send `body` on for `project_id` and relay the answer to `send`; a 503 with the error body
        when proxy-router cannot be reached. `headers` are the request's, as ASGI gives them."""
        out = {name: v.decode("latin-1") for raw, name in _FORWARDED if (v := headers.get(raw)) is not None}
        out["x-refinery-project-id"] = project_id
        out.update(internal_auth.headers())
        assert self.session is not None, "ProxyForwarder.start() was not awaited"
        try:
            upstream = await self.session.post(self.url, data=body, headers=out)
        except aiohttp.ClientError:
            await send_error(send, _UNREACHABLE)
            return
        media_type = upstream.headers.get("content-type", "application/json")
        reply = [(b"content-type", media_type.encode())]
        reply += [(k.encode(), r.encode()) for k in RETURNED_HEADERS if (r := upstream.headers.get(k)) is not None]
        try:
            if not media_type.startswith("text/event-stream"):
                payload = await upstream.read()
                reply.append((b"content-length", b"%d" % len(payload)))
                await send({"type": "http.response.start", "status": upstream.status, "headers": reply})
                await send({"type": "http.response.body", "body": payload})
                return
            await send({"type": "http.response.start", "status": upstream.status, "headers": reply})
            async for chunk in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            upstream.release()
