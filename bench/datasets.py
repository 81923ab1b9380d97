"""`python -m bench.datasets`: dataset throughput on a fresh durable stack.

Prints entries per second for a JSONL upload (from the first byte sent until every line is
validated and stored), for importing request logs into a dataset, and for exporting a dataset
as JSONL, plus how soon a standing import rule turns a new log into an entry.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
from refinery.stack.platform import Stack

from bench.columns import print_columns
from bench.load import pct
from bench.reports import report_logs
from bench.scenarios import progress

API_KEY = "opk-bench-datasets-0001"


def _jsonl(n: int) -> bytes:
    return b"".join(orjson.dumps({"messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"Summarise ticket {i}: the printer on floor {i % 9} jams on A3 paper."},
        {"role": "assistant", "content": f"Ticket {i}: A3 paper jams the floor-{i % 9} printer."}],
        "metadata": {"ticket": str(i)}}) + b"\n" for i in range(n))


def _report(i: int, tag: str) -> dict:
    now = int(time.time() * 1000)
    return {"requestedAt": now, "receivedAt": now, "statusCode": 200,
            "reqPayload": {"model": "gpt-4o-mini", "metadata": {"bench": tag},
                           "messages": [{"role": "user", "content": f"question {i}"}]},
            "respPayload": {"id": f"c{i}", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": f"answer {i}"}}]}}


def _wait_upload(api: httpx.Client, ds: str, upload_id: str) -> dict:
    while True:
        state = api.get(f"/datasets/{ds}/uploads/{upload_id}").json()
        if state["status"] in ("DONE", "FAILED"):
            return state
        time.sleep(0.05)


def run(stack: Stack, upload_n: int, import_n: int, rule_samples: int) -> list[list[str]]:
    rows: list[list[str]] = []
    with httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {API_KEY}"}, timeout=600) as api:
        ds = api.post("/datasets", json={"name": "bench-upload"}).json()["id"]
        body = _jsonl(upload_n)
        progress(f"upload: {upload_n:,} lines, {len(body) / 1e6:.0f} MB")
        t0 = time.perf_counter()
        up = api.post(f"/datasets/{ds}/uploads", content=body).json()
        received = time.perf_counter() - t0
        state = _wait_upload(api, ds, up["id"])
        total = time.perf_counter() - t0
        assert state["status"] == "DONE" and state["entries_created"] == upload_n, state
        rows.append(["upload (send + validate + store)", f"{upload_n:,}", f"{total:.1f}", f"{upload_n / total:,.0f}",
                     f"received {len(body) / 1e6 / received:.0f} MB/s"])

        progress("export")
        t0 = time.perf_counter()
        lines = 0
        with api.stream("GET", f"/datasets/{ds}/export") as resp:
            for chunk in resp.iter_bytes():
                lines += chunk.count(b"\n")
        total = time.perf_counter() - t0
        assert lines == upload_n, lines
        rows.append(["export (JSONL stream)", f"{lines:,}", f"{total:.1f}", f"{lines / total:,.0f}", ""])

        tag = uuid.uuid4().hex[:8]
        progress(f"import: reporting {import_n:,} logs")

        asyncio.run(report_logs(stack.api_base, API_KEY, import_n, lambda i: _report(i, tag)))
        target = api.post("/datasets", json={"name": "bench-import"}).json()["id"]
        t0 = time.perf_counter()
        result = api.post(f"/datasets/{target}/import-logs",
                          json={"filters": [{"field": "metadata.bench", "equals": tag}]}).json()
        total = time.perf_counter() - t0
        assert result["imported"] == import_n, result
        rows.append(["import from request logs", f"{import_n:,}", f"{total:.1f}", f"{import_n / total:,.0f}",
                     "position-bound export from log-ingest + insert"])

        progress("standing rule latency")
        rule_ds = api.post("/datasets", json={"name": "bench-rule"}).json()["id"]
        rule_tag = uuid.uuid4().hex[:8]
        api.post(f"/datasets/{rule_ds}/import-logs",
                 json={"filters": [{"field": "metadata.bench", "equals": rule_tag}], "standing": True})
        lags: list[float] = []
        for i in range(rule_samples):
            api.post("/report", json=_report(i, rule_tag)).raise_for_status()
            t0 = time.perf_counter()
            while api.get(f"/datasets/{rule_ds}").json()["dataset_entry_count"] < i + 1:
                time.sleep(0.005)
            lags.append((time.perf_counter() - t0) * 1000)
        rows.append(["standing rule: report ack → entry", f"{rule_samples}", "-", "-",
                     f"p50 {pct(lags, 50):.0f} ms, p99 {pct(lags, 99):.0f} ms"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upload-n", type=int, default=100_000)
    parser.add_argument("--import-n", type=int, default=20_000)
    parser.add_argument("--rule-samples", type=int, default=30)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="refinery-bench-ds-"))
    stack = Stack(tmp / "stack", env={"REFINERY_INIT_API_KEY": API_KEY})
    try:
        progress(f"starting a durable stack in {tmp}")
        stack.start()
        rows = run(stack, args.upload_n, args.import_n, args.rule_samples)
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print_columns("Dataset throughput (durable embedded stack, 2 cores shared by client and services)",
                  ["dataset operation", "entries", "seconds", "entries/s", "note"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
