"""The internal HTTP clients carry the service token: proxy-router's calls to inference (a fine-tuned model)
and the dataset service's relabel calls to proxy-router. Without it the receiving service answers 401."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from dataset.relabel import RelabelRunner
from proxy_router.providers import ModelResolver
from refinery import internal_auth
from refinery.rpc import models_pb2

TOKEN = "internal-token-for-tests-0123456789"


@pytest.fixture
def process_token() -> Iterator[str]:
    internal_auth.use_token(TOKEN)
    yield TOKEN
    internal_auth.use_token(None)


class Registry:
    async def Resolve(self, ref: models_pb2.ModelRef, **options: float) -> models_pb2.Resolution:
        return models_pb2.Resolution(found=True, status="DEPLOYED", model_id="m1")


async def test_a_fine_tuned_model_upstream_carries_the_token_to_inference(process_token: str) -> None:
    resolver = ModelResolver(None, "http://inference:8201", 2.0)
    resolver._stub = Registry()  # type: ignore[assignment]
    upstream, why = await resolver.resolve("p1", "my-model")
    assert why is None and upstream is not None
    assert dict(upstream.headers) == {"x-refinery-adapter": "m1", internal_auth.HEADER: process_token}


async def test_the_base_model_is_found_through_inference_with_the_token(process_token: str) -> None:
    """`openpipe:<base id>`: the list comes from inference's /v1/models (behind the guard), then is cached."""
    asked: list[str] = []

    async def models(_: web.Request) -> web.Response:
        asked.append("models")
        return web.json_response({"object": "list", "data": [{"id": "Org/Base-1", "object": "model"}]})

    app = web.Application(middlewares=[internal_auth.http_guard(TOKEN)])
    app.router.add_get("/v1/models", models)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        resolver = ModelResolver(None, str(server.make_url("")).rstrip("/"), 30.0)
        async with aiohttp.ClientSession() as session:
            upstream = await resolver.base(session, "Org/Base-1")
            assert upstream is not None and upstream.base_url.endswith("/v1")
            assert dict(upstream.headers) == {internal_auth.HEADER: process_token}  # no adapter: the base itself
            assert await resolver.base(session, "Org/Other") is None
        assert asked == ["models"]  # asked once, then cached
    finally:
        await server.close()


@pytest.fixture
async def proxy_router() -> AsyncIterator[str]:
    """A stand-in proxy-router behind the internal guard, answering a chat completion."""
    async def chat(_: web.Request) -> web.Response:
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": "relabeled"}}]})

    app = web.Application(middlewares=[internal_auth.http_guard(TOKEN)])
    app.router.add_post("/v1/chat/completions", chat)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


def _runner(proxy_url: str) -> RelabelRunner:
    entry = types.SimpleNamespace(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}],
                                  tools=None, tool_choice=None, response_format=None)
    store: Any = types.SimpleNamespace(
        relabel_jobs=types.SimpleNamespace(running=lambda: []),
        entries=types.SimpleNamespace(entry=lambda project, dataset, entry_id: entry))
    return RelabelRunner(store, proxy_url)


async def test_relabel_calls_to_proxy_router_carry_the_token(process_token: str, proxy_router: str) -> None:
    runner = _runner(proxy_router)
    await runner.start()
    try:
        output = await runner._generate({"project_id": "p1", "dataset_id": "d1", "model": "gpt-4o-mini"}, "e1")
    finally:
        await runner.stop()
    assert output == {"role": "assistant", "content": "relabeled"}


async def test_without_the_token_proxy_router_refuses_the_relabel_call(proxy_router: str) -> None:
    internal_auth.use_token(None)
    runner = _runner(proxy_router)
    await runner.start()
    try:
        with pytest.raises(RuntimeError, match="answered 401"):
            await runner._generate({"project_id": "p1", "dataset_id": "d1", "model": "gpt-4o-mini"}, "e1")
    finally:
        await runner.stop()
