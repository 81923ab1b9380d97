"""The one chat forwarder: what goes to proxy-router, what comes back (plain and SSE), the 503 when
it is unreachable, and the same forwarder behind both the hot path and the FastAPI route."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from gateway.app import Deps, build_app
from gateway.chat_api import ProxyForwarder
from gateway.forwarding import is_json
from gateway.hot_paths import HotPaths
from gateway.settings import GatewaySettings

from tests.unit.key_ring import KeyRing

KEY = "opk-good"
CHAT = "/api/v1/chat/completions"


async def _chat(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    seen = {k.lower(): v for k, v in request.headers.items() if k.lower().startswith(("op-", "x-", "content-type"))}
    if orjson.loads(raw).get("stream"):
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache",
                                           "x-refinery-overhead-ms": "1.5"})
        await resp.prepare(request)
        for i in range(3):
            await resp.write(b"data: %d\n\n" % i)
        await resp.write_eof()
        return resp
    return web.Response(status=201, body=orjson.dumps({"seen": seen, "body": raw.decode()}),
                        content_type="application/json", headers={"x-refinery-overhead-ms": "0.5", "x-secret": "no"})


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _chat)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/"))
    await server.close()


@pytest.fixture
async def forwarder(upstream: str) -> AsyncIterator[ProxyForwarder]:
    f = ProxyForwarder(upstream)
    await f.start()
    yield f
    await f.stop()


def _client(tmp_path: Path, forwarder: ProxyForwarder, *, hot: bool) -> httpx.AsyncClient:
    projects = KeyRing(KEY)
    deps = Deps(settings=GatewaySettings(data_dir=tmp_path, max_body_bytes=1000), projects=projects,  # type: ignore[arg-type]
                producer=None, reads=None, logs=None, admin_token="admin", health=None, proxy=forwarder)  # type: ignore[arg-type]
    app = build_app(deps)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=HotPaths(app, deps) if hot else app),
                             base_url="http://gateway")


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 4):
        yield data[i:i + 4]


@pytest.mark.parametrize("hot", [True, False], ids=["hot path", "fastapi route"])
@pytest.mark.parametrize("chunked", [False, True], ids=["with length", "chunked"])
async def test_plain_answers_come_back_with_their_status_and_the_returned_headers(
    tmp_path: Path, forwarder: ProxyForwarder, hot: bool, chunked: bool
) -> None:
    body = b'{"model": "gpt-4o-mini", "messages": []}'
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json", "op-tags": '{"a": "b"}',
               "op-cache": "readWrite", "x-other": "not forwarded"}
    async with _client(tmp_path, forwarder, hot=hot) as client:
        resp = await client.post(CHAT, content=_chunks(body) if chunked else body, headers=headers)
    assert resp.status_code == 201
    assert resp.headers["x-refinery-overhead-ms"] == "0.5" and "x-secret" not in resp.headers
    got = resp.json()
    assert got["body"] == body.decode()
    assert got["seen"] == {"content-type": "application/json", "op-tags": '{"a": "b"}', "op-cache": "readWrite",
                           "x-refinery-project-id": "p1"}


@pytest.mark.parametrize("hot", [True, False], ids=["hot path", "fastapi route"])
async def test_sse_is_relayed_chunk_by_chunk(tmp_path: Path, forwarder: ProxyForwarder, hot: bool) -> None:
    async with _client(tmp_path, forwarder, hot=hot) as client:
        resp = await client.post(CHAT, content=_chunks(b'{"stream": true}'),
                                 headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "text/event-stream"
    assert resp.headers["cache-control"] == "no-cache" and resp.headers["x-refinery-overhead-ms"] == "1.5"
    assert resp.content == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("hot", [True, False], ids=["hot path", "fastapi route"])
async def test_unreachable_proxy_router_is_a_503_with_the_error_body(tmp_path: Path, hot: bool) -> None:
    down = ProxyForwarder(f"http://127.0.0.1:{_closed_port()}")
    await down.start()
    try:
        async with _client(tmp_path, down, hot=hot) as client:
            resp = await client.post(CHAT, content=_chunks(b"{}"), headers={"authorization": f"Bearer {KEY}"})
    finally:
        await down.stop()
    assert resp.status_code == 503
    assert resp.json() == {"message": "proxy-router unavailable; retry", "code": "SERVICE_UNAVAILABLE", "issues": []}


@pytest.mark.parametrize("hot", [True, False], ids=["hot path", "fastapi route"])
async def test_errors_are_the_documented_ones(tmp_path: Path, forwarder: ProxyForwarder, hot: bool) -> None:
    async with _client(tmp_path, forwarder, hot=hot) as client:
        missing = await client.post(CHAT, content=b"{}", headers={"content-type": "application/json"})
        wrong = await client.post(CHAT, content=b"{}", headers={"authorization": "Bearer nope"})
        text = await client.post(CHAT, content=b"{}", headers={"authorization": f"Bearer {KEY}",
                                                              "content-type": "text/plain"})
        big = await client.post(CHAT, content=_chunks(b" " * 1001), headers={"authorization": f"Bearer {KEY}"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["message"].startswith("Missing API key") and wrong.json()["message"] == "Invalid API key"
    assert text.status_code == 400
    assert text.json()["message"] == "Content-Type must be application/json, got 'text/plain'"
    assert (big.status_code, big.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")


def test_what_counts_as_a_json_body() -> None:
    for ok in (None, b"application/json", b"application/json; charset=utf-8", b"Application/JSON",
               b"application/vnd.api+json", b"text/json", b"application/json-seq"):
        assert is_json(ok), ok
    for bad in (b"", b"text/plain", b"multipart/form-data", b"application/octet-stream"):
        assert not is_json(bad), bad
