"""The fake upstream as a process for a test: started on a free port, stopped after."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from refinery.stack.process import ManagedProcess, free_port

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def running_fake_llm(workdir: Path, delay_ms: float) -> Iterator[str]:
    """A fake OpenAI/Anthropic upstream that spends `delay_ms` before each answer; yields its base URL (no /v1)."""
    port = free_port()
    proc = ManagedProcess(
        "fake-llm", [sys.executable, "-m", "tests.fakes.upstream", "--port", str(port), "--delay-ms", str(delay_ms)],
        workdir, cwd=REPO,
    )
    proc.start()

    def up() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return r.status == 200

    try:
        proc.wait_ready(up, 20)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()
