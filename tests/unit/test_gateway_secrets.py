"""The gateway's secrets come from settings (a Kubernetes Secret) or a 0600 file: a gateway rescheduled onto an
empty disk with the same key still opens its provider keys; a bad key stops it at start-up naming the setting;
the admin token is compared in constant time; chat forwarded to proxy-router carries the internal token."""

from __future__ import annotations

import hmac
import stat
import types
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet
from gateway.app import Deps, build_app
from gateway.bootstrap import admin_token, secret_box
from gateway.forwarding import ProxyForwarder
from gateway.settings import GatewaySettings
from pydantic import ValidationError
from refinery import internal_auth

ADMIN = "admin-token-for-tests-0123456789"


def test_a_configured_encryption_key_opens_secrets_sealed_on_another_disk(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    sealed = secret_box(GatewaySettings(data_dir=tmp_path / "first-pod", encryption_key=key)).seal("sk-upstream")
    rescheduled = secret_box(GatewaySettings(data_dir=tmp_path / "second-pod", encryption_key=key))
    assert rescheduled.open(sealed) == "sk-upstream"
    assert not list(tmp_path.rglob("secret.key"))  # the setting is the key: nothing kept on disk


def test_without_a_setting_the_key_is_made_once_in_the_data_dir(tmp_path: Path) -> None:
    sealed = secret_box(GatewaySettings(data_dir=tmp_path)).seal("sk-upstream")
    path = tmp_path / "gateway" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_box(GatewaySettings(data_dir=tmp_path, encryption_key="")).open(sealed) == "sk-upstream"
    with pytest.raises(ValueError, match="cannot be decrypted"):
        secret_box(GatewaySettings(data_dir=tmp_path / "other", encryption_key=Fernet.generate_key().decode())
                   ).open(sealed)


def test_a_malformed_encryption_key_is_refused_at_start_up_naming_the_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFINERY_ENCRYPTION_KEY", "not-a-fernet-key-but-a-secret")
    with pytest.raises(ValidationError) as refused:
        GatewaySettings(data_dir=tmp_path)
    assert "REFINERY_ENCRYPTION_KEY is not valid" in str(refused.value)
    assert "Fernet key" in str(refused.value)
    assert "not-a-fernet-key-but-a-secret" not in str(refused.value)


def test_the_admin_token_comes_from_settings_else_from_a_0600_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFINERY_ADMIN_TOKEN", ADMIN)
    assert admin_token(GatewaySettings(data_dir=tmp_path)) == ADMIN
    assert ADMIN not in repr(GatewaySettings(data_dir=tmp_path))
    monkeypatch.setenv("REFINERY_ADMIN_TOKEN", "")
    made = admin_token(GatewaySettings(data_dir=tmp_path))
    path = tmp_path / "gateway" / "admin-token"
    assert made == path.read_text() and len(made) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert admin_token(GatewaySettings(data_dir=tmp_path)) == made
    monkeypatch.setenv("REFINERY_ADMIN_TOKEN", "short")
    with pytest.raises(ValidationError, match="REFINERY_ADMIN_TOKEN must be at least 16"):
        GatewaySettings(data_dir=tmp_path)


def _admin_client(tmp_path: Path) -> httpx.AsyncClient:
    projects = types.SimpleNamespace(all_projects=lambda: [types.SimpleNamespace(id="p1", name="default")])
    deps = Deps(settings=GatewaySettings(data_dir=tmp_path), projects=projects,  # type: ignore[arg-type]
                producer=None, reads=None, logs=None, admin_token=ADMIN, health=None)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(deps)), base_url="http://gateway")


async def test_the_admin_api_compares_its_token_in_constant_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(internal_auth.hmac, "compare_digest", spy)
    async with _admin_client(tmp_path) as client:
        for token in ("wrong", ADMIN[:-1], ADMIN + "x"):
            refused = await client.get("/admin/v1/projects", headers={"authorization": f"Bearer {token}"})
            assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHORIZED"
        assert (await client.get("/admin/v1/projects")).status_code == 401
        listed = await client.get("/admin/v1/projects", headers={"authorization": f"Bearer {ADMIN}"})
    assert listed.status_code == 200 and listed.json() == [{"id": "p1", "name": "default", "apiKey": None}]
    assert compared == [b"wrong", ADMIN[:-1].encode(), (ADMIN + "x").encode(), ADMIN.encode()]


@pytest.fixture
async def proxy_router() -> AsyncIterator[str]:
    """A stand-in proxy-router that answers with the internal token it was sent."""
    async def chat(request: web.Request) -> web.Response:
        return web.json_response({"token": request.headers.get(internal_auth.HEADER)})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/"))
    await server.close()


async def test_chat_forwarded_to_proxy_router_carries_the_internal_token(proxy_router: str) -> None:
    internal_auth.use_token("internal-token-for-tests-0123456789")
    forwarder = ProxyForwarder(proxy_router)
    await forwarder.start()
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    try:
        await forwarder.forward("p1", {}, b"{}", send)
    finally:
        await forwarder.stop()
        internal_auth.use_token(None)
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b'{"token": "internal-token-for-tests-0123456789"}'
