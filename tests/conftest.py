"""Fixtures shared by every suite: one session fixture per real server, stopped after."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from refinery.stack.process import ManagedProcess, free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def fake_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake OpenAI/Anthropic upstream: returns its base URL (no /v1)."""
    port = free_port()
    proc = ManagedProcess(
        "fake-llm", [sys.executable, "-m", "tests.fakes.upstream", "--port", str(port), "--delay-ms", "20"],
        tmp_path_factory.mktemp("fake-llm"), cwd=REPO,
    )
    proc.start()

    def up() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return r.status == 200

    proc.wait_ready(up, 20)
    yield f"http://127.0.0.1:{port}"
    proc.stop()
