"""The bus down and the spool's disk full: proxy-router loses no log of a call it answered. The log is
held and offered again until it is kept, new calls are refused meanwhile (507 naming why), and once the
disk has room again calls are taken and every answered call has its log on the bus, once."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from proxy_router.pending import PendingLogs
from proxy_router.serving import ChatProxy
from refinery.bus.producer import NotKept
from refinery.config import REQUEST_LOGS_TOPIC
from refinery.runtime.memory_bus import MemoryBus

from tests.fakes.upstream import build_app
from tests.unit.test_proxy_chat import PROJECT, _LogReader, _NoCache


class _FullDisk:
    """A producer whose spool disk is full while `full` is set (and the bus unreachable): NotKept."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.max_event_bytes = inner.max_event_bytes
        self.full = False
        self.refused = 0

    async def publish(self, key: bytes, value: bytes) -> Any:
        if self.full:
            self.refused += 1
            raise NotKept(Path("/spool/proxy-router"), OSError(errno.ENOSPC, "No space left on device"))
        return await self._inner.publish(key, value)

    def set_aside(self, key: bytes, value: bytes, reason: str) -> None:
        self._inner.set_aside(key, value, reason)


class _OpenAI:
    def __init__(self, base_url: str) -> None:
        from proxy_router.providers import Upstream

        self._providers = {"openai": Upstream("openai", f"{base_url}/v1", "sk-fake")}

    async def get(self, project_id: str) -> dict[str, Any]:
        return self._providers


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[str, _FullDisk, _LogReader, PendingLogs]]:
    bus, pending = MemoryBus(), PendingLogs()
    reader = _LogReader(bus)
    producer = _FullDisk(bus.producer(REQUEST_LOGS_TOPIC))
    async with TestServer(build_app(delay_ms=0), host="127.0.0.1") as upstream:
        chat = ChatProxy(producer, _OpenAI(str(upstream.make_url("")).rstrip("/")), pending, 30.0,  # type: ignore[arg-type]
                         _NoCache())
        await chat.start()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat.handle)
        try:
            async with TestServer(app, host="127.0.0.1") as server:
                yield str(server.make_url("/v1/chat/completions")), producer, reader, pending
        finally:
            await chat.stop()


async def _call(http: aiohttp.ClientSession, url: str, text: str) -> tuple[int, dict[str, Any]]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    async with http.post(url, data=orjson.dumps(body), headers={"x-refinery-project-id": PROJECT}) as resp:
        return resp.status, orjson.loads(await resp.read())


async def test_an_answered_call_keeps_its_log_and_new_calls_wait_for_space(proxy) -> None:
    url, producer, reader, pending = proxy
    async with aiohttp.ClientSession() as http:
        assert (await _call(http, url, "before"))[0] == 200
        producer.full = True
        status, answered = await _call(http, url, "while full")
        assert status == 200 and answered["choices"][0]["message"]["content"] == "Echo: while full"
        for _ in range(100):  # the log is offered, refused, and held
            if producer.refused:
                break
            await asyncio.sleep(0.01)
        status, refused = await _call(http, url, "refused")
        assert status == 507, refused
        assert "cannot be kept" in refused["error"]["message"] and "no space left" in refused["error"]["message"]

        await asyncio.sleep(0.7)
        assert producer.refused >= 2  # offered again while the disk stays full
        producer.full = False
        for _ in range(300):
            status, _ = await _call(http, url, "after")
            if status == 200:
                break
            await asyncio.sleep(0.01)
        assert status == 200
        await pending.positions(PROJECT, lambda: True)
    texts = [e.data.req_payload["messages"][0]["content"] for e in reader.logs]
    assert sorted(texts) == ["after", "before", "while full"], texts  # the refused call was never answered
