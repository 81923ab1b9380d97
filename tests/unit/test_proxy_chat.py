"""ChatProxy in process against a tiny Anthropic upstream: what the client gets and what is logged.

Logs go to the in-memory bus and come back through the typed decode path every consumer uses, so
what is checked is what log-ingest and the dataset service would receive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from proxy_router.pending import PendingLogs
from proxy_router.providers import Upstream
from proxy_router.serving import ChatProxy
from refinery.config import REQUEST_LOGS_TOPIC
from refinery.events.request_logs import RECORDED_V2, RequestLogRecordedV2
from refinery.runtime.memory_bus import MemoryBus
from refinery.runtime.subscriptions import Event, Subscriptions

from tests.unit.test_anthropic_wire import STOPS, _events, _message

PROJECT = "p1"


async def _anthropic(request: web.Request) -> web.StreamResponse:
    """Answers with the stop reason named by the model (`stop-<reason>`; `stop-none` for none)."""
    body = await request.json()
    stop = body["model"].removeprefix("stop-")
    stop = None if stop == "none" else stop
    if not body.get("stream"):
        return web.json_response(_message(stop))
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for event in _events(stop):
        await resp.write(b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n")
    await resp.write_eof()
    return resp


class _LogReader:
    """A consumer of the request-log topic on the in-memory bus, keeping the typed logs it got."""

    def __init__(self, bus: MemoryBus) -> None:
        self.logs: list[Event[RequestLogRecordedV2]] = []
        subs = Subscriptions("test")

        @subs.on(RECORDED_V2)
        async def recorded(event: Event[RequestLogRecordedV2]) -> None:
            self.logs.append(event)

        bus.subscribe(REQUEST_LOGS_TOPIC, subs)


class _Providers:
    def __init__(self, base_url: str) -> None:
        self._providers = {"anthropic": Upstream("anthropic", base_url, "ak")}

    async def get(self, project_id: str) -> dict[str, Upstream]:
        return self._providers


class _NoCache:
    async def get(self, key: str) -> bytes | None:
        return None

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        raise AssertionError("not asked to cache")


class _Proxy:
    def __init__(self, url: str, reader: _LogReader, pending: PendingLogs, http: aiohttp.ClientSession) -> None:
        self.url, self.reader, self.pending, self.http = url, reader, pending, http

    async def post(self, body: bytes) -> tuple[int, bytes]:
        async with self.http.post(self.url, data=body, headers={"x-refinery-project-id": PROJECT}) as resp:
            return resp.status, await resp.read()

    async def logged(self) -> list[dict[str, Any]]:
        await self.pending.positions(PROJECT, lambda: True)
        assert {e.project_id for e in self.reader.logs} <= {PROJECT}
        return [e.data.model_dump() for e in self.reader.logs]


@pytest.fixture
async def proxy() -> AsyncIterator[_Proxy]:
    upstream_app = web.Application()
    upstream_app.router.add_post("/v1/messages", _anthropic)
    bus, pending = MemoryBus(), PendingLogs()
    reader, producer = _LogReader(bus), bus.producer(REQUEST_LOGS_TOPIC)
    async with TestServer(upstream_app, host="127.0.0.1") as upstream:
        chat = ChatProxy(producer, _Providers(str(upstream.make_url("")).rstrip("/")), pending,  # type: ignore[arg-type]
                         30.0, _NoCache())  # type: ignore[arg-type]
        await chat.start()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat.handle)
        try:
            async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
                yield _Proxy(str(server.make_url("/v1/chat/completions")), reader, pending, http)
        finally:
            await chat.stop()


def _ask(stop: str | None, stream: bool) -> bytes:
    return orjson.dumps({"model": f"anthropic:stop-{stop or 'none'}", "stream": stream,
                         "messages": [{"role": "user", "content": "hi"}]})


def _finish_of_stream(raw: bytes) -> str | None:
    lines = [line for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
    assert lines[-1] == b"data: [DONE]"
    finishes = [c["choices"][0]["finish_reason"] for c in map(orjson.loads, (x[6:] for x in lines[:-1]))]
    return next(f for f in finishes if f)


@pytest.mark.parametrize(("stop", "finish"), STOPS)
async def test_plain_and_streamed_anthropic_calls_answer_and_log_one_finish_reason(proxy, stop, finish):
    status, plain = await proxy.post(_ask(stop, stream=False))
    assert status == 200 and orjson.loads(plain)["choices"][0]["finish_reason"] == finish
    status, streamed = await proxy.post(_ask(stop, stream=True))
    assert status == 200 and _finish_of_stream(streamed) == finish
    logs = await proxy.logged()
    assert [log["resp_payload"]["choices"][0]["finish_reason"] for log in logs] == [finish, finish]
    assert [log["provider"] for log in logs] == ["anthropic", "anthropic"]
    assert logs[1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}


@pytest.mark.parametrize("depth", [254, 255, 600])
async def test_a_body_nested_past_what_the_log_can_write_is_refused_before_forwarding(proxy, depth):
    # The top-level object is level 1; `extra` holds the rest of the depth.
    nested = b"[" * (depth - 1) + b"]" * (depth - 1)
    body = b'{"model":"anthropic:stop-end_turn","messages":[{"role":"user","content":"hi"}],"extra":' + nested + b"}"
    status, raw = await proxy.post(body)
    if depth <= 254:
        assert status == 200
        return
    assert status == 400
    assert orjson.loads(raw) == {
        "message": "body nests too deeply to be logged: Recursion limit reached", "code": "BAD_REQUEST",
        "issues": [], "error": {"message": "body nests too deeply to be logged: Recursion limit reached",
                                "type": "bad_request"},
    }
    assert await proxy.logged() == []
