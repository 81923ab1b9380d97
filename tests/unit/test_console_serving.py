"""The console's files as the gateway serves them: the page at `/`, assets under `/console/`, a strict
Content-Security-Policy, and the vendored libraries exactly as pinned."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest
from console.serving import STATIC_DIR, mount
from fastapi import FastAPI


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI()
    mount(app)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console")


async def test_the_page_and_its_assets_carry_a_strict_policy(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    # Every script and stylesheet the page names is served, with the same policy.
    for ref in re.findall(r'(?:src|href)="(/console/[^"]+)"', page.text):
        asset = await client.get(ref)
        assert asset.status_code == 200, ref
        assert asset.headers["content-security-policy"] == policy
    assert (await client.get("/console/pages/logs.js")).headers["content-type"].startswith(
        ("text/javascript", "application/javascript"))
    assert (await client.get("/console/../serving.py")).status_code == 404


def test_the_page_has_no_inline_script_or_style() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and "<style" not in html and " style=" not in html
    for js in STATIC_DIR.rglob("*.js"):
        if "vendor" in js.parts:
            continue
        source = js.read_text()
        # Data is rendered as text: nothing assigns HTML.
        assert "innerHTML" not in source and "insertAdjacentHTML" not in source, js
        assert "localStorage" not in source, f"{js}: the key belongs in session storage only"


def test_vendored_libraries_match_their_pinned_digests() -> None:
    table = (STATIC_DIR / "vendor" / "VERSIONS.md").read_text()
    rows = re.findall(r"\| (\S+) \| (\S+) \| (\S+)(?: \(MIT\))? \| ([0-9a-f]{64}) \|", table)
    assert len(rows) == 3
    for _package, version, path, digest in rows:
        assert version in path
        assert hashlib.sha256((STATIC_DIR / "vendor" / path).read_bytes()).hexdigest() == digest, path
