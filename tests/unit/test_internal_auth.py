"""Internal calls need the deployment's service token: gRPC (every call shape) and internal HTTP refuse a
missing or wrong one with one constant answer, health answers without it, and the check is constant-time."""

from __future__ import annotations

import asyncio
import hmac
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from refinery import internal_auth
from refinery.config import ServiceSettings
from refinery.grpc_server import GrpcService, client_channel, start_grpc
from refinery.rpc import datasets_pb2, datasets_pb2_grpc, logs_pb2, logs_pb2_grpc
from refinery.runtime.kernel import Kernel, StartupFailed

TOKEN = "internal-token-for-tests-0123456789"


class Logs(logs_pb2_grpc.LogStoreServicer):
    async def Export(self, request: logs_pb2.ExportRequest, context: Any) -> AsyncIterator[logs_pb2.ExportChunk]:
        yield logs_pb2.ExportChunk(jsonl=f"export of {request.project_id}".encode())


class Datasets(datasets_pb2_grpc.DatasetsServicer):
    async def UploadFile(self, request_iterator: Any, context: Any) -> datasets_pb2.Upload:
        size = 0
        async for chunk in request_iterator:
            size += len(chunk.data)
        return datasets_pb2.Upload(id="u1", bytes_total=size)


@pytest.fixture(autouse=True)
def _no_process_token() -> Any:
    """Each test starts with no token installed in the process, and leaves none behind."""
    internal_auth.use_token(None)
    yield
    internal_auth.use_token(None)


@pytest.fixture
async def server() -> AsyncIterator[GrpcService]:
    service = await start_grpc("127.0.0.1", 0, [
        lambda s: logs_pb2_grpc.add_LogStoreServicer_to_server(Logs(), s),
        lambda s: datasets_pb2_grpc.add_DatasetsServicer_to_server(Datasets(), s),
    ], token=TOKEN)
    yield service
    await service.stop(0)


async def _export(target: str, **channel: Any) -> bytes:
    async with client_channel(target, **channel) as ch:
        chunks = logs_pb2_grpc.LogStoreStub(ch).Export(logs_pb2.ExportRequest(project_id="p1"), timeout=5)
        return b"".join([c.jsonl async for c in chunks])


async def _upload(target: str, **channel: Any) -> int:
    async def chunks() -> AsyncIterator[datasets_pb2.UploadChunk]:
        for part in (b"ab", b"cde"):
            yield datasets_pb2.UploadChunk(data=part)

    async with client_channel(target, **channel) as ch:
        return (await datasets_pb2_grpc.DatasetsStub(ch).UploadFile(chunks(), timeout=5)).bytes_total


async def _raw_export(target: str, metadata: tuple[tuple[str, str], ...]) -> bytes:
    async with grpc.aio.insecure_channel(target) as ch:
        chunks = logs_pb2_grpc.LogStoreStub(ch).Export(logs_pb2.ExportRequest(project_id="p1"), metadata=metadata,
                                                      timeout=5)
        return b"".join([c.jsonl async for c in chunks])


@pytest.mark.parametrize("call", [_export, _upload], ids=["server-streaming", "client-streaming"])
async def test_grpc_calls_without_the_token_are_refused_with_one_constant_message(
        server: GrpcService, call: Callable[..., Awaitable[object]]) -> None:
    target = f"127.0.0.1:{server.port}"
    messages = set()
    for channel in ({}, {"token": "someone-elses-token-0123456789"}):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(target, **channel)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        messages.add(refused.value.details())
    assert messages == {internal_auth.REFUSED}


async def test_grpc_calls_with_the_token_are_served(server: GrpcService) -> None:
    target = f"127.0.0.1:{server.port}"
    assert await _export(target, token=TOKEN) == b"export of p1"
    assert await _upload(target, token=TOKEN) == 5


async def test_the_process_token_is_attached_to_every_client_channel(server: GrpcService) -> None:
    internal_auth.use_token(TOKEN)
    assert await _export(f"127.0.0.1:{server.port}") == b"export of p1"


async def test_a_token_in_other_metadata_or_with_a_prefix_is_refused(server: GrpcService) -> None:
    target = f"127.0.0.1:{server.port}"
    for metadata in ((("authorization", f"Bearer {TOKEN}"),), ((internal_auth.HEADER, TOKEN[:-1]),),
                     ((internal_auth.HEADER, TOKEN + "x"),)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _raw_export(target, metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await _raw_export(target, ((internal_auth.HEADER, TOKEN),)) == b"export of p1"


async def test_grpc_health_answers_without_the_token(server: GrpcService) -> None:
    await server.set_serving(True)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(internal_auth.hmac, "compare_digest", spy)
    assert internal_auth.matches(TOKEN, TOKEN)
    assert not internal_auth.matches("wrong", TOKEN)
    assert not internal_auth.matches("tökén", TOKEN)  # not ASCII: refused, not a TypeError
    assert not internal_auth.matches(None, TOKEN)
    assert [a for a, _ in compared] == [TOKEN.encode(), b"wrong", "tökén".encode()]


async def _serve_internal_http(tmp_path: Path, settings: ServiceSettings | None = None
                               ) -> tuple[Kernel[ServiceSettings], asyncio.Task[None], int, int]:
    """A kernel serving an internal aiohttp app (a chat route and /health) and a gRPC log store."""
    k = Kernel("test-service", settings or ServiceSettings(data_dir=tmp_path))
    ports: list[int] = []

    async def chat(_: web.Request) -> web.Response:
        return web.json_response({"answer": "served"})

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def build(k: Kernel[ServiceSettings]) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_get("/health", health)
        ports.append(await k.http(app, "127.0.0.1", 0))
        ports.append((await k.grpc("127.0.0.1", 0, (Logs(), logs_pb2_grpc.add_LogStoreServicer_to_server))).port)

    serving = asyncio.create_task(k.serve(build, signals=False))
    await asyncio.wait_for(k.ready.wait(), 10)
    return k, serving, ports[0], ports[1]


async def test_internal_http_refuses_calls_without_the_token_and_health_answers(tmp_path: Path) -> None:
    k, serving, http_port, _ = await _serve_internal_http(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as client:
            for headers in ({}, {internal_auth.HEADER: "someone-elses-token-0123456789"},
                            {"x-refinery-project-id": "any-project"}):
                refused = await client.post("/v1/chat/completions", json={}, headers=headers)
                assert refused.status_code == 401
                assert refused.json()["code"] == "UNAUTHORIZED"
                assert refused.json()["message"] == internal_auth.REFUSED
            served = await client.post("/v1/chat/completions", json={},
                                       headers={internal_auth.HEADER: k.internal_token})
            assert served.status_code == 200 and served.json() == {"answer": "served"}
            assert (await client.get("/health")).text == "ok"
    finally:
        k.stop()
        await asyncio.wait_for(serving, 10)


async def test_a_kernel_without_a_configured_token_makes_one_in_its_data_dir(tmp_path: Path) -> None:
    k, serving, _, grpc_port = await _serve_internal_http(tmp_path)
    try:
        path = tmp_path / "internal-token"
        assert k.internal_token == path.read_text().strip() and len(k.internal_token) >= 32
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # The same token for every process of this data dir, so services started by hand find each other.
        assert ServiceSettings(data_dir=tmp_path).service_token() == k.internal_token
        assert internal_auth.headers() == {internal_auth.HEADER: k.internal_token}
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _raw_export(f"127.0.0.1:{grpc_port}", ())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert await _export(f"127.0.0.1:{grpc_port}") == b"export of p1"  # the kernel installed its token
    finally:
        k.stop()
        await asyncio.wait_for(serving, 10)


async def test_a_configured_token_is_the_one_the_kernel_uses(tmp_path: Path) -> None:
    k, serving, http_port, _ = await _serve_internal_http(tmp_path, ServiceSettings(data_dir=tmp_path,
                                                                                    internal_token=TOKEN))
    try:
        assert k.internal_token == TOKEN
        assert not (tmp_path / "internal-token").exists()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as client:
            ok = await client.post("/v1/chat/completions", json={}, headers={internal_auth.HEADER: TOKEN})
        assert ok.status_code == 200
    finally:
        k.stop()
        await asyncio.wait_for(serving, 10)


async def test_a_deployment_that_requires_the_token_refuses_to_start_without_it(tmp_path: Path) -> None:
    k = Kernel("test-service", ServiceSettings(data_dir=tmp_path, internal_token_required=True))
    built: list[str] = []

    async def build(k: Kernel[ServiceSettings]) -> None:
        built.append("built")

    with pytest.raises(StartupFailed, match="REFINERY_INTERNAL_TOKEN is not set"):
        await k.serve(build, signals=False)
    assert built == [] and not (tmp_path / "internal-token").exists()


@pytest.mark.parametrize("value", ["", "   "])
def test_a_blank_token_setting_means_unset(tmp_path: Path, value: str) -> None:
    assert ServiceSettings(data_dir=tmp_path, internal_token=value).internal_token is None


def test_a_short_token_is_refused_naming_the_setting_without_echoing_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFINERY_INTERNAL_TOKEN", "short-secret")
    with pytest.raises(ValueError, match="REFINERY_INTERNAL_TOKEN must be at least 16") as refused:
        ServiceSettings(data_dir=tmp_path)
    assert "short-secret" not in str(refused.value)
