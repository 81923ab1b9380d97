"""Upstream answers that break: every one is logged with what arrived and why, and the client is
told, never left with a 500 or an answer that silently stops.

ChatProxy runs in process against the fake upstream (its magic model names break the answer);
logs come back from the in-memory bus through the typed decode path consumers use, and the
client is the official OpenAI SDK, so what is checked is what a user sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from proxy_router.pending import PendingLogs
from proxy_router.providers import Upstream
from proxy_router.serving import ChatProxy
from refinery.config import REQUEST_LOGS_TOPIC
from refinery.runtime.memory_bus import MemoryBus

from tests.fakes.upstream import build_app
from tests.unit.test_proxy_chat import PROJECT, _LogReader, _NoCache

HELLO = [{"role": "user", "content": "hello there friend"}]


class _Providers:
    def __init__(self, base_url: str) -> None:
        self._providers = {"anthropic": Upstream("anthropic", base_url, "ak-fake"),
                           "openai": Upstream("openai", f"{base_url}/v1", "sk-fake")}

    async def get(self, project_id: str) -> dict[str, Upstream]:
        return self._providers


class _Proxy:
    def __init__(self, base_url: str, reader: _LogReader, pending: PendingLogs, http: aiohttp.ClientSession) -> None:
        self.url = f"{base_url}/v1/chat/completions"
        self.reader, self.pending, self.http = reader, pending, http
        self.sdk = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0,
                                      default_headers={"x-refinery-project-id": PROJECT})

    async def post(self, body: dict[str, Any]) -> tuple[int, bytes]:
        async with self.http.post(self.url, data=orjson.dumps(body),
                                  headers={"x-refinery-project-id": PROJECT}) as resp:
            return resp.status, await resp.read()

    async def logged(self) -> list[dict[str, Any]]:
        await self.pending.positions(PROJECT, lambda: True)
        return [e.data.model_dump() for e in self.reader.logs]


@pytest.fixture
async def proxy() -> AsyncIterator[_Proxy]:
    bus, pending = MemoryBus(), PendingLogs()
    reader, producer = _LogReader(bus), bus.producer(REQUEST_LOGS_TOPIC)
    async with TestServer(build_app(delay_ms=0), host="127.0.0.1") as upstream:
        chat = ChatProxy(producer, _Providers(str(upstream.make_url("")).rstrip("/")), pending,  # type: ignore[arg-type]
                         30.0, _NoCache())  # type: ignore[arg-type]
        await chat.start()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat.handle)
        try:
            async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
                p = _Proxy(str(server.make_url("")).rstrip("/"), reader, pending, http)
                yield p
                await p.sdk.close()
        finally:
            await chat.stop()


async def _stream_text(proxy: _Proxy, model: str) -> tuple[str, openai.APIError | None]:
    """What the SDK's stream yielded, and the error it raised, if it raised one."""
    text = ""
    try:
        stream = await proxy.sdk.chat.completions.create(model=model, messages=HELLO, stream=True)  # type: ignore[arg-type]
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
    except openai.APIError as exc:
        return text, exc
    return text, None


async def test_an_anthropic_stream_that_stops_before_message_stop_is_logged_as_an_error(proxy: _Proxy) -> None:
    text, error = await _stream_text(proxy, "anthropic:claude-stream-cut")
    assert text == "Echo: hello there friend"  # everything up to the cut reached the client
    assert error is not None and "ended before message_stop" in error.message
    (log,) = await proxy.logged()
    assert log["status_code"] == 502 and log["provider"] == "anthropic"
    assert log["error_message"] == "the anthropic stream ended before message_stop: the answer is incomplete"
    assert log["resp_payload"]["choices"][0]["message"]["content"] == "Echo: hello there friend"
    assert log["resp_payload"]["choices"][0]["finish_reason"] is None


@pytest.mark.parametrize("model", ["anthropic:claude-stream-hangup", "gpt-4o-stream-hangup"])
async def test_a_stream_whose_upstream_hangs_up_mid_body_is_logged_with_what_arrived(proxy: _Proxy, model) -> None:
    text, error = await _stream_text(proxy, model)
    assert text.startswith("Echo:") and text != "Echo: hello there friend"
    assert error is not None and "broke off before it ended" in error.message
    (log,) = await proxy.logged()
    provider = "anthropic" if model.startswith("anthropic:") else "openai"
    assert log["status_code"] == 502 and log["provider"] == provider
    assert log["error_message"].startswith(f"the {provider} stream broke off before it ended (ClientPayloadError")
    assert log["resp_payload"]["choices"][0]["message"]["content"] == text


async def test_an_anthropic_error_event_mid_stream_is_relayed_and_logged(proxy: _Proxy) -> None:
    _, error = await _stream_text(proxy, "anthropic:claude-stream-overloaded")
    message = "the anthropic stream failed: overloaded_error: Overloaded"
    assert error is not None and error.message == message
    (log,) = await proxy.logged()
    assert (log["status_code"], log["error_message"]) == (502, message)


async def test_an_anthropic_200_that_is_not_a_message_is_a_502_and_logged(proxy: _Proxy) -> None:
    status, raw = await proxy.post({"model": "anthropic:claude-array-200", "messages": HELLO})
    message = "Anthropic answered 200 with a JSON array instead of a message"
    assert status == 502
    assert orjson.loads(raw) == {"message": message, "code": "BAD_GATEWAY", "issues": [],
                                 "error": {"message": message, "type": "bad_gateway"}}
    (log,) = await proxy.logged()
    assert (log["status_code"], log["error_message"]) == (502, message)
    assert isinstance(log["resp_payload"], list) and log["resp_payload"][0]["type"] == "message"


async def test_whole_streams_are_still_logged_as_answers(proxy: _Proxy) -> None:
    for model in ("anthropic:claude", "gpt-4o"):
        text, error = await _stream_text(proxy, model)
        assert (text, error) == ("Echo: hello there friend", None)
    logs = await proxy.logged()
    assert [(log["status_code"], log["error_message"]) for log in logs] == [(200, None), (200, None)]
