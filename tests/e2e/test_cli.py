"""The `refinery` command manages the running platform."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx


def refinery(stack, *args: str) -> str:
    exe = shutil.which("refinery", path=str(Path(sys.executable).parent)) or "refinery"
    env = {**os.environ, "REFINERY_DATA_DIR": str(stack.data_dir)}
    proc = subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_project_create_prints_a_working_key_and_provider_set(stack, fake_llm):
    out = refinery(stack, "project", "create", "cli-app")
    key = re.search(r"api key: (opk-\w+)", out).group(1)
    project_id = re.search(r"\(([0-9a-f]{32})\)", out).group(1)
    assert project_id in refinery(stack, "project", "list")
    with httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {key}"}, timeout=30) as c:
        assert c.post("/report", json={"reqPayload": {"model": "m"}}).json() == {"status": "ok"}
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        assert c.post("/chat/completions", json=body).status_code == 400  # no provider yet
        refinery(stack, "provider", "set", project_id, "openai", "--base-url", f"{fake_llm}/v1", "--api-key", "sk-fake")
        import time

        deadline = time.monotonic() + 10  # proxy-router caches provider settings for 2 s
        while (resp := c.post("/chat/completions", json=body)).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert resp.json()["choices"][0]["message"]["content"] == "Echo: hi"
