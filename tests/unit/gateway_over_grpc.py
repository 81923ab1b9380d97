"""The gateway's REST app in process over one backend's gRPC servicer (a fake of that service on a free
port), reached with httpx as a client holding the project key: what the route tests of each backend share."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import httpx
from gateway.app import Deps, build_app

from tests.unit.key_ring import KeyRing


@asynccontextmanager
async def gateway_over(servicer: Any, add_to_server: Callable[[Any, grpc.aio.Server], None],
                       stub: Callable[[grpc.aio.Channel], Any], dep: str, key: str
                       ) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `/api/v1` on a gateway whose `dep` backend (`criteria`, `evals`, ...) is `servicer`."""
    server = grpc.aio.server()
    add_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    async def health() -> dict[str, bool]:
        return {"gateway": True}

    deps = Deps(
        settings=types.SimpleNamespace(max_body_bytes=64 * 1024 * 1024, max_upload_bytes=64 * 1024 * 1024),  # type: ignore[arg-type]
        projects=KeyRing(key),  # type: ignore[arg-type]
        producer=None, reads=None, logs=None, admin_token="admin-token-for-unit-tests", health=health,  # type: ignore[arg-type]
        **{dep: stub(channel)})
    transport = httpx.ASGITransport(app=build_app(deps))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway/api/v1",
                                     headers={"authorization": f"Bearer {key}"}) as client:
            yield client
    finally:
        await channel.close()
        await server.stop(0)


def is_error_body(body: dict[str, Any]) -> bool:
    """The error body the rest of the API answers with."""
    return isinstance(body.get("message"), str) and isinstance(body.get("code"), str) and isinstance(
        body.get("issues"), list)
