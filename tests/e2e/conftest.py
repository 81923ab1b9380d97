"""The whole stack (durable: Tansu on SeaweedFS, chdb, SQLite), driven by the official SDKs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from refinery.stack.platform import Stack

API_KEY = "opk-e2e-test-key-0001"


@pytest.fixture(scope="session")
def stack(fake_llm: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("refinery")
    s = Stack(data_dir, env={
        "REFINERY_INIT_API_KEY": API_KEY,
        "REFINERY_INIT_OPENAI_BASE_URL": f"{fake_llm}/v1",
        "REFINERY_INIT_OPENAI_API_KEY": "sk-fake",
        "REFINERY_INIT_ANTHROPIC_BASE_URL": fake_llm,
        "REFINERY_INIT_ANTHROPIC_API_KEY": "ak-fake",
        # Gemini's OpenAI-compatible endpoint, played by the same fake.
        "REFINERY_INIT_GEMINI_BASE_URL": f"{fake_llm}/v1",
        "REFINERY_INIT_GEMINI_API_KEY": "sk-fake",
    })
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def api_key(stack: Stack) -> str:
    return API_KEY


@pytest.fixture(scope="session")
def api(stack: Stack, api_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {api_key}"}, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def admin(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {stack.admin_token()}"},
                      timeout=30) as c:
        yield c


def search(api: httpx.Client, **filters: object) -> list[dict]:
    body = {"filters": [{"field": k.replace("__", "."), "equals": v} for k, v in filters.items()]}
    resp = api.post("/logs/search", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]
