"""The two hot routes, `POST /api/v1/chat/completions` and `POST /api/v1/report`, served on bare ASGI.

Routing, dependency solving, the middleware stack and response classes of FastAPI cost about
three times the work of these routes themselves (profiled at 500 /report per second), and
the budget is 1 ms of CPU per proxied call. So a well-formed, authenticated request is
answered here; anything this layer is not sure about (a missing or unknown key, another
content type, a body over the limit or sent without a length, a body that fails validation)
is handed, with its body, to the FastAPI app, whose routes answer with the documented error.
The FastAPI routes stay the specification (and the OpenAPI document) of both.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import orjson
from pydantic import ValidationError
from refinery.events.request_logs import request_log_recorded
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.chat_api import FORWARDED_HEADERS, RETURNED_HEADERS
from gateway.errors import error_body
from gateway.reporting import ReportRequest, build_log

log = logging.getLogger("refinery.gateway")

REPORT = "/api/v1/report"
CHAT = "/api/v1/chat/completions"
_OK = orjson.dumps({"status": "ok"})
_JSON = b"application/json"


class HotPaths:
    def __init__(self, app: ASGIApp, deps: Any) -> None:
        self.app = app
        self.deps = deps
        self.max_bytes: int = deps.settings.max_body_bytes
        self._forwarded = {h.encode(): h for h in FORWARDED_HEADERS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == REPORT:
            handler = self._report
        elif path == CHAT and self.deps.proxy is not None:
            handler = self._chat
        else:
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope["headers"])
        project_id = self._project(headers)
        length = headers.get(b"content-length", b"")
        if (project_id is None or not headers.get(b"content-type", b"").startswith(_JSON)
                or not length.isdigit() or int(length) > self.max_bytes):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        if not await handler(project_id, headers, body, send):
            await self.app(scope, _replay(body, receive), send)

    def _project(self, headers: dict[bytes, bytes]) -> str | None:
        auth = headers.get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        token = token.strip()
        return self.deps.projects.authenticate(token.decode("latin-1")) if token else None

    async def _report(self, project_id: str, headers: dict[bytes, bytes], body: bytes, send: Send) -> bool:
        try:
            report = ReportRequest.model_validate_json(body)
            value = request_log_recorded(project_id, build_log(report, "report")).to_bytes()
        except (ValidationError, ValueError, orjson.JSONEncodeError):
            return False  # the FastAPI route says what is wrong
        pos = await self.deps.producer.publish(project_id.encode(), value)
        self.deps.reads.acknowledged(project_id, pos)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", _JSON), (b"content-length", b"%d" % len(_OK))]})
        await send({"type": "http.response.body", "body": _OK})
        return True

    async def _chat(self, project_id: str, headers: dict[bytes, bytes], body: bytes, send: Send) -> bool:
        forwarder = self.deps.proxy
        out = {name: v.decode("latin-1")
               for raw, name in self._forwarded.items() if (v := headers.get(raw)) is not None}
        out["x-refinery-project-id"] = project_id
        try:
            upstream = await forwarder.session.post(forwarder.url, data=body, headers=out)
        except aiohttp.ClientError:
            await _send_json(send, 503, error_body("SERVICE_UNAVAILABLE", "proxy-router unavailable; retry"))
            return True
        media_type = upstream.headers.get("content-type", "application/json")
        reply = [(b"content-type", media_type.encode())]
        reply += [(k.encode(), v.encode()) for k in RETURNED_HEADERS if (v := upstream.headers.get(k)) is not None]
        try:
            if not media_type.startswith("text/event-stream"):
                payload = await upstream.read()
                reply.append((b"content-length", b"%d" % len(payload)))
                await send({"type": "http.response.start", "status": upstream.status, "headers": reply})
                await send({"type": "http.response.body", "body": payload})
                return True
            await send({"type": "http.response.start", "status": upstream.status, "headers": reply})
            async for chunk in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return True
        finally:
            upstream.release()


async def _read_body(receive: Receive) -> bytes | None:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _send_json(send: Send, status: int, obj: dict) -> None:
    data = orjson.dumps(obj)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", _JSON), (b"content-length", b"%d" % len(data))]})
    await send({"type": "http.response.body", "body": data})
