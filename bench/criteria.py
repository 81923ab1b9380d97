"""`python -m bench.criteria`: what judging costs, against the fake upstream (no model delay).

Prints the latency of `POST /criteria/judge` (one LLM judgement through proxy-router) and the
overhead of best-of-N: a chat completion with `n=4` and two criteria (eight judgements, run
concurrently) against the same call without `op-criteria`. Cached judge answers are avoided by
making every judged output unique.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from refinery.stack.platform import Stack
from refinery.stack.process import ManagedProcess, free_port

from bench.columns import print_columns
from bench.load import pct
from bench.scenarios import progress

API_KEY = "opk-bench-criteria-0001"
REPO = Path(__file__).resolve().parent.parent


def _timed(call: Callable[[], httpx.Response]) -> float:
    t0 = time.perf_counter()
    resp = call()
    assert resp.status_code == 200, resp.text
    return (time.perf_counter() - t0) * 1000


def run(stack: Stack, samples: int) -> list[list[str]]:
    rows: list[list[str]] = []
    with httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {API_KEY}"}, timeout=120) as api:
        for name, keyword in (("bench-no-paris", "Paris"), ("bench-no-choice-1", "choice 1")):
            prompt = f'The output passed unless it fails if the output contains "{keyword}".'
            made = api.post("/criteria", json={"name": name, "judgeModel": "gpt-4o", "prompt": prompt})
            assert made.status_code in (200, 201), made.text
        progress(f"judge API: {samples} judgements")
        judge = [_timed(lambda: api.post("/criteria/judge", json={
            "criterion_id": "bench-no-paris", "input": {"messages": [{"role": "user", "content": "capital?"}]},
            "output": {"role": "assistant", "content": f"Lyon {uuid.uuid4().hex}"}})) for _ in range(samples)]
        rows.append(["POST /criteria/judge (1 LLM judgement)", str(samples), f"{pct(judge, 50):.1f}",
                     f"{pct(judge, 99):.1f}"])

        def chat(criteria: bool) -> httpx.Response:
            headers = {"op-criteria": '["bench-no-paris", "bench-no-choice-1"]'} if criteria else {}
            return api.post("/chat/completions", headers=headers, json={
                "model": "gpt-4o", "n": 4, "messages": [{"role": "user", "content": f"count {uuid.uuid4().hex}"}]})

        progress(f"best-of-N: {samples} calls each way")
        plain = [_timed(lambda: chat(False)) for _ in range(samples)]
        judged = [_timed(lambda: chat(True)) for _ in range(samples)]
        rows.append(["chat n=4, no criteria", str(samples), f"{pct(plain, 50):.1f}", f"{pct(plain, 99):.1f}"])
        rows.append(["chat n=4, 2 criteria (8 judgements)", str(samples), f"{pct(judged, 50):.1f}",
                     f"{pct(judged, 99):.1f}"])
        rows.append(["best-of-N overhead", "", f"{pct(judged, 50) - pct(plain, 50):+.1f}",
                     f"{pct(judged, 99) - pct(plain, 99):+.1f}"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="refinery-bench-criteria-"))
    fake_port = free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    fake = ManagedProcess("fake-llm", [sys.executable, "-m", "tests.fakes.upstream", "--port", str(fake_port),
                                       "--delay-ms", "0"], tmp / "logs", cwd=REPO)
    stack = Stack(tmp / "stack", env={"REFINERY_INIT_API_KEY": API_KEY,
                                      "REFINERY_INIT_OPENAI_BASE_URL": f"{fake_url}/v1",
                                      "REFINERY_INIT_OPENAI_API_KEY": "sk-fake"})
    try:
        progress(f"starting the fake upstream and a durable stack in {tmp}")
        fake.start()

        def fake_up() -> bool:
            with urllib.request.urlopen(f"{fake_url}/health", timeout=1) as r:
                return r.status == 200

        fake.wait_ready(fake_up, 30)
        stack.start()
        rows = run(stack, args.samples)
    finally:
        stack.stop()
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print_columns("Criteria latency (durable embedded stack, fake upstream without delay, 2 cores shared)",
                  ["criteria operation", "samples", "p50 ms", "p99 ms"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
