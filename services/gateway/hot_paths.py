"""The two hot routes, `POST /api/v1/chat/completions` and `POST /api/v1/report`, served on bare ASGI.

Routing, dependency solving, the middleware stack and response classes of FastAPI cost about
three times the work of these routes themselves (profiled at 500 /report per second), and
the budget is 1 ms of CPU per proxied call. So a well-formed, authenticated request is
answered here, its body read whether it comes with a length or chunked; anything this layer is
not sure about (a missing or unknown key, another content type, a body that fails validation) is
handed, with its body, to the FastAPI app, whose routes answer with the documented error. A body
past the limit is answered here with the same 413 the FastAPI app gives. The FastAPI routes stay
the specification (and the OpenAPI document) of both; what both do lives once, in
`gateway.forwarding` (chat) and `gateway.recording` (report).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import recording
from gateway.auth import bearer_token
from gateway.errors import ApiError, payload_too_large, send_error
from gateway.forwarding import is_json
from gateway.reporting import ReportRequest

log = logging.getLogger("refinery.gateway")

REPORT = "/api/v1/report"
CHAT = "/api/v1/chat/completions"
_OK = orjson.dumps({"status": "ok"})
_JSON = b"application/json"

# (project, request headers, body, send) -> whether it was answered (False: FastAPI answers).
Handler = Callable[[str, dict[bytes, bytes], bytes, Send], Awaitable[bool]]


class _TooLarge(Exception):
    pass


def _is_report_json(content_type: bytes | None) -> bool:
    """The reports taken here; other JSON types go to FastAPI, which reads them its own way."""
    return content_type is not None and content_type.startswith(_JSON)


class HotPaths:
    def __init__(self, app: ASGIApp, deps: Any) -> None:
        self.app = app
        self.deps = deps
        self.max_bytes: int = deps.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        handler: Handler
        if path == REPORT:
            handler, accepts = self._report, _is_report_json
        elif path == CHAT and self.deps.proxy is not None:
            handler, accepts = self._chat, is_json
        else:
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope["headers"])
        project_id = self._project(headers)
        length = headers.get(b"content-length")
        if (project_id is None or not accepts(headers.get(b"content-type"))
                or (length is not None and (not length.isdigit() or int(length) > self.max_bytes))):
            await self.app(scope, receive, send)  # FastAPI's 401, 400 or 413
            return
        try:
            body = await _read_body(receive, self.max_bytes)
        except _TooLarge:
            await send_error(send, payload_too_large(self.max_bytes))
            return
        if body is None:  # the client went away
            return
        if not await handler(project_id, headers, body, send):
            await self.app(scope, _replay(body, receive), send)

    def _project(self, headers: dict[bytes, bytes]) -> str | None:
        """The project of a key that may write (both hot routes write); None hands the request to FastAPI,
        which refuses a missing, unknown or read-only key with its documented error."""
        token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        return self.deps.projects.writer(token) if token is not None else None

    async def _report(self, project_id: str, headers: dict[bytes, bytes], body: bytes, send: Send) -> bool:
        try:
            event = recording.report_event(project_id, ReportRequest.model_validate_json(body), "report")
            self.deps.producer.check_size(project_id.encode(), event)
        except (ValidationError, ValueError, ApiError):  # EventTooLarge is a ValueError
            return False  # the FastAPI route says what is wrong
        try:
            await recording.publish(self.deps, project_id, event)
        except ApiError as exc:  # not kept (full disk, bus and spool both failing): refused, never acknowledged
            await send_error(send, exc)
            return True
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", _JSON), (b"content-length", b"%d" % len(_OK))]})
        await send({"type": "http.response.body", "body": _OK})
        return True

    async def _chat(self, project_id: str, headers: dict[bytes, bytes], body: bytes, send: Send) -> bool:
        await self.deps.proxy.forward(project_id, headers, body, send)
        return True


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, sent with a length or chunked; None when the client went away.
    Raises _TooLarge as soon as more than `limit` bytes came."""
    parts: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        part = message.get("body", b"")
        seen += len(part)
        if seen > limit:
            raise _TooLarge
        parts.append(part)
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
