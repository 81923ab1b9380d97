"""The gateway's bare-ASGI hot paths: what they answer themselves and what they hand to FastAPI."""

from __future__ import annotations

import types

import orjson
from gateway.hot_paths import HotPaths
from refinery.bus.producer import Position

from tests.unit.key_ring import KeyRing

KEY = "opk-good"


class _Producer:
    def __init__(self) -> None:
        self.published: list[tuple[bytes, bytes]] = []

    def check_size(self, key: bytes, value: bytes) -> None:
        pass  # every event fits

    async def publish(self, key: bytes, value: bytes) -> Position:
        self.published.append((key, value))
        return Position(0, len(self.published))


class _Reads:
    def __init__(self) -> None:
        self.acked: list[tuple[str, Position | None]] = []

    def acknowledged(self, project_id: str, pos: Position | None) -> None:
        self.acked.append((project_id, pos))


def _deps() -> types.SimpleNamespace:
    projects = KeyRing(KEY)
    return types.SimpleNamespace(settings=types.SimpleNamespace(max_body_bytes=1000), projects=projects,
                                 producer=_Producer(), reads=_Reads(), proxy=None)


class _Inner:
    """Stands for the FastAPI app: records what reached it, body included."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})


async def _call(app: HotPaths, body: bytes, *, key: str | None = KEY, path: str = "/api/v1/report",
                content_type: bytes = b"application/json", length: bool = True) -> tuple[int, bytes]:
    headers = [(b"content-type", content_type)]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    if length:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    chunks = [body[:5], body[5:]]  # the body arrives in two messages

    async def receive():
        part = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": part, "more_body": bool(chunks)}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


REPORT = orjson.dumps({"requestedAt": 1, "receivedAt": 2, "statusCode": 200,
                       "reqPayload": {"model": "gpt-4o-mini", "messages": [], "metadata": {"k": "v"}},
                       "respPayload": {"id": "chatcmpl-1", "choices": []}})


async def test_a_valid_report_is_published_and_acknowledged_without_fastapi():
    deps, inner = _deps(), _Inner()
    status, body = await _call(HotPaths(inner, deps), REPORT)
    assert (status, orjson.loads(body)) == (200, {"status": "ok"})
    assert inner.bodies == []
    [(key, value)] = deps.producer.published
    event = orjson.loads(value)
    assert key == b"p1" and event["type"] == "request_log.recorded.v2" and event["project_id"] == "p1"
    assert event["data"]["model"] == "gpt-4o-mini" and event["data"]["req_payload"]["metadata"] == {"k": "v"}
    assert "metadata" not in event["data"] and event["data"]["metadata_overrides"] == {}
    assert event["data"]["completion_id"] == "chatcmpl-1"
    assert deps.reads.acked == [("p1", Position(0, 1))]


async def test_what_the_fast_path_is_unsure_of_goes_to_fastapi_with_its_body():
    cases = [
        dict(body=b'{"statusCode": "not a number"}'),  # fails validation: FastAPI names the field
        dict(body=b"[1, 2"),  # not JSON
        dict(body=REPORT, key=None),  # no key: FastAPI's 401
        dict(body=REPORT, key="opk-wrong"),
        dict(body=REPORT, content_type=b"text/plain"),
        dict(body=b" " * 1001),  # over the limit with a length: FastAPI's 413
    ]
    for case in cases:
        deps, inner = _deps(), _Inner()
        status, body = await _call(HotPaths(inner, deps), **case)
        assert (status, body) == (299, b"inner"), case
        assert inner.bodies == [case["body"]], case
        assert deps.producer.published == [], case


async def test_a_chunked_report_is_read_here_and_one_past_the_limit_is_413():
    deps, inner = _deps(), _Inner()
    status, body = await _call(HotPaths(inner, deps), REPORT, length=False)
    assert (status, orjson.loads(body)) == (200, {"status": "ok"})
    assert inner.bodies == [] and len(deps.producer.published) == 1

    deps, inner = _deps(), _Inner()
    status, body = await _call(HotPaths(inner, deps), b" " * 1001, length=False)
    assert status == 413 and inner.bodies == [] and deps.producer.published == []
    assert orjson.loads(body) == {"message": "Request body exceeds 1000 bytes", "code": "PAYLOAD_TOO_LARGE",
                                  "issues": []}


async def test_a_report_that_cannot_be_stored_goes_to_fastapi():
    deep = b'{"reqPayload": ' + b"[" * 300 + b"]" * 300 + b"}"
    deps, inner = _deps(), _Inner()
    assert await _call(HotPaths(inner, deps), deep) == (299, b"inner")
    assert inner.bodies == [deep] and deps.producer.published == []


class _Forwarder:
    """Stands for ProxyForwarder: records what it was asked to forward."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    async def forward(self, project_id, headers, body, send) -> None:
        self.calls.append((project_id, body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"forwarded"})


async def test_chat_is_forwarded_here_with_or_without_a_length():
    for case in [dict(length=True), dict(length=False), dict(content_type=b"application/vnd.x+json"),
                 dict(content_type=b"application/json; charset=utf-8")]:
        deps, inner = _deps(), _Inner()
        deps.proxy = _Forwarder()
        status, body = await _call(HotPaths(inner, deps), b'{"model": "m"}', path="/api/v1/chat/completions", **case)
        assert (status, body) == (200, b"forwarded"), case
        assert deps.proxy.calls == [("p1", b'{"model": "m"}')] and inner.bodies == [], case


async def test_chat_errors_are_fastapis():
    for case in [dict(key=None), dict(key="opk-wrong"), dict(content_type=b"text/plain")]:
        deps, inner = _deps(), _Inner()
        deps.proxy = _Forwarder()
        assert await _call(HotPaths(inner, deps), b"{}", path="/api/v1/chat/completions", **case) == (299, b"inner")
        assert deps.proxy.calls == [], case


async def test_other_routes_and_methods_are_not_touched():
    deps, inner = _deps(), _Inner()
    assert await _call(HotPaths(inner, deps), REPORT, path="/api/v1/logs/search") == (299, b"inner")
    # Without a proxy configured, chat completions are FastAPI's (which answers 404).
    assert await _call(HotPaths(inner, deps), b"{}", path="/api/v1/chat/completions") == (299, b"inner")
    assert deps.producer.published == []
