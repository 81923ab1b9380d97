"""The running stack's internal ports answer only callers holding the service token.

Someone who can reach an internal port (a pod of the namespace, a process on the machine) asks the gateway for a
project's decrypted provider keys, or proxy-router to spend a project's keys on a chat: without the token both are
refused with one constant answer, health still answers, the ports listen on loopback only, and the real path (SDK →
gateway → proxy-router → upstream) keeps working because every service was given the token. Then a canary from
another project must still become searchable."""

from __future__ import annotations

import ipaddress
import stat
import uuid
from typing import Any

import grpc
import httpx
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from refinery import internal_auth
from refinery.grpc_server import client_channel
from refinery.rpc import projects_pb2, projects_pb2_grpc

from tests.e2e.conftest import search
from tests.e2e.test_poison import _canary

BASE_GRPC = ("log_ingest_grpc", "gateway_grpc", "proxy_grpc", "dataset_grpc", "registry_grpc", "criteria_grpc",
             "eval_grpc")
ML_GRPC = ("trainer_grpc", "inference_grpc")


def _grpc_ports(stack: Any) -> tuple[str, ...]:
    return BASE_GRPC + (ML_GRPC if "inference" in stack.services else ())


@pytest.fixture(scope="module")
def other(stack, admin) -> Any:
    key = admin.post("/admin/v1/projects", json={"name": f"canary-{uuid.uuid4().hex[:6]}"}).json()["apiKey"]
    with httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {key}"}, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def default_project(admin: httpx.Client) -> str:
    return next(p["id"] for p in admin.get("/admin/v1/projects").json() if p["name"] == "default")


async def _provider_settings(stack: Any, project_id: str, **channel: Any) -> projects_pb2.ProviderSettingsResponse:
    async with client_channel(f"127.0.0.1:{stack.ports['gateway_grpc']}", **channel) as ch:
        return await projects_pb2_grpc.ProjectsStub(ch).GetProviderSettings(
            projects_pb2.ProviderSettingsRequest(project_id=project_id), timeout=10)


async def test_provider_keys_are_refused_without_the_token_and_served_with_it(stack, default_project, other) -> None:
    for channel in ({}, {"token": "a-guessed-token-0123456789abcdef"}, {"token": stack.internal_token + "0"}):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _provider_settings(stack, default_project, **channel)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert refused.value.details() == internal_auth.REFUSED
        assert "sk-fake" not in str(refused.value)
    served = await _provider_settings(stack, default_project, token=stack.internal_token)
    assert {p.name: p.api_key for p in served.providers}["openai"] == "sk-fake"
    _canary(other)


async def test_grpc_health_answers_on_every_internal_port_without_the_token(stack) -> None:
    for port in _grpc_ports(stack):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports[port]}") as ch:
            resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, port


def test_proxy_router_refuses_a_chat_for_any_project_without_the_token(stack, api, default_project, other) -> None:
    tag = uuid.uuid4().hex
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"spend someone's key {tag}"}],
            "metadata": {"forged": tag}}
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.ports['proxy_http']}", timeout=30) as proxy:
        for headers in ({}, {internal_auth.HEADER: "a-guessed-token-0123456789abcdef"}):
            refused = proxy.post("/v1/chat/completions", json=body,
                                 headers={"x-refinery-project-id": default_project, **headers})
            assert refused.status_code == 401, refused.text
            assert refused.json()["message"] == internal_auth.REFUSED
        assert proxy.get("/health").status_code == 200
    _canary(other)
    assert search(api, metadata__forged=tag) == []  # nothing was called, so nothing was logged


def test_the_sdk_path_still_works_because_every_service_has_the_token(stack, api_key, api) -> None:
    tag = uuid.uuid4().hex
    client = openai.OpenAI(base_url=stack.api_base, api_key=api_key, max_retries=0)
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi {tag}"}],
                                          metadata={"trusted": tag}, store=True)
    assert resp.choices[0].message.content == f"Echo: hi {tag}"
    assert len(search(api, metadata__trusted=tag)) == 1


def test_the_token_is_kept_once_per_data_dir_readable_by_its_owner_only(stack) -> None:
    path = stack.data_dir / internal_auth.TOKEN_FILE
    assert path.read_text().strip() == stack.internal_token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _listening(port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The local addresses listening on `port`, from /proc/net/tcp and tcp6 (hex words in host byte order)."""
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, _, hexport = local.partition(":")
                if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    found.add(ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))))
    return found


def _loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


def test_the_embedded_stack_listens_on_loopback_only(stack) -> None:
    http = ("proxy_http", "inference_http") if "inference" in stack.services else ("proxy_http",)
    ports = {name: stack.ports[name] for name in (*_grpc_ports(stack), *http)} | {"gateway": stack.port}
    listening = {name: _listening(port) for name, port in ports.items()}
    assert all(listening.values()), listening
    assert {name: all(_loopback(a) for a in addresses) for name, addresses in listening.items()} == dict.fromkeys(
        ports, True), listening
