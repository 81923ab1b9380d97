"""A client that leaves stops its generation: inference does not spend the engine (and hold its lock) on
tokens nobody will read, plain or streamed. The engine here is a slow stand-in that counts the tokens it
was asked for; the serving code and the completion loop are the real ones."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from inference.engine import Engine, GenerationParams, StreamPiece
from inference.serving import InferenceServer
from refinery.stack.process import free_port

TOKENS = 200  # 200 tokens at 10 ms: a whole answer takes 2 s
TOKEN_S = 0.01


class _SlowEngine:
    """Yields one token every TOKEN_S; `produced` counts them, `closed` says the iterator was closed early."""

    generate = Engine.generate  # the real completion loop over stream_pieces

    def __init__(self) -> None:
        self.produced = 0
        self.finished = threading.Event()  # the generator is done, whether completed or closed
        self.closed_early = False

    def count_tokens(self, messages: list[dict], tools: list[dict] | None) -> int:
        return 3

    def adapters(self) -> list[str]:
        return []

    def stream_pieces(self, adapter: str | None, messages: list[dict], tools: list[dict] | None,
                      params: GenerationParams) -> Iterator[StreamPiece]:
        completed = False
        try:
            for _ in range(TOKENS):
                time.sleep(TOKEN_S)
                self.produced += 1
                yield StreamPiece(0, "a")
            completed = True
            yield StreamPiece(0, "", "length", TOKENS, "a" * TOKENS)
        finally:
            self.closed_early = not completed
            self.finished.set()


@pytest.fixture(params=[False, True], ids=["handler-runs-on", "handler-cancelled"])
async def served(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[_SlowEngine, str]]:
    """Served as the kernel serves it (aiohttp keeps running a handler whose client left), and with aiohttp's
    handler cancellation on (the handler is cancelled when its client leaves): both must stop the engine."""
    engine = _SlowEngine()
    server = InferenceServer(engine, None, tmp_path / "adapters", "base")  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.chat)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=request.param)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield engine, f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        await asyncio.to_thread(engine.finished.wait, 5)
        await runner.cleanup()


BODY = {"model": "openpipe:m", "messages": [{"role": "user", "content": "go on"}], "max_tokens": TOKENS}


async def _finished(engine: _SlowEngine) -> None:
    assert await asyncio.to_thread(engine.finished.wait, 5), "the generation never stopped"


async def test_a_plain_call_whose_client_left_stops_generating(served) -> None:
    engine, url = served
    async with aiohttp.ClientSession() as session:
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(url, json=BODY, timeout=aiohttp.ClientTimeout(total=0.3)):
                pass
    await _finished(engine)
    assert engine.closed_early
    assert engine.produced < TOKENS // 2, f"{engine.produced} of {TOKENS} tokens generated for nobody"


async def test_a_stream_whose_client_left_stops_generating(served) -> None:
    engine, url = served
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={**BODY, "stream": True}) as resp:
            assert resp.status == 200
            await resp.content.readline()  # the first frame arrived: the client hangs up now
    await _finished(engine)
    assert engine.closed_early
    assert engine.produced < TOKENS // 2, f"{engine.produced} of {TOKENS} tokens generated for nobody"


async def test_a_client_that_stays_gets_the_whole_answer(served) -> None:
    engine, url = served
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=BODY) as resp:
            body = await resp.json()
    assert resp.status == 200, body
    assert body["choices"][0]["message"]["content"] == "a" * TOKENS
    assert engine.produced == TOKENS and not engine.closed_early
