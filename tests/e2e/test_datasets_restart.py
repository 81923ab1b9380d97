"""Restarts lose nothing and duplicate nothing: the dataset service killed mid-upload and
mid-import, the broker killed under a standing import rule, and the dataset events on the bus
still describing every entry exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from refinery.config import DATASETS_TOPIC
from refinery.events.datasets import ENTRIES_ADDED

from tests.e2e.conftest import wait_for
from tests.e2e.test_datasets import entries_of

pytestmark = pytest.mark.slow


def _line(n: int) -> bytes:
    return orjson.dumps({"messages": [
        {"role": "user", "content": f"restart question {n}"},
        {"role": "assistant", "content": f"restart answer {n}"}]}) + b"\n"


def _entry_events(bootstrap: str, dataset_id: str, expect: int, timeout_s: float = 30.0) -> dict[str, list[dict]]:
    """The dataset's entries_added events on the bus, by event id (redeliveries collapse)."""

    async def read() -> dict[str, list[dict]]:
        consumer = AIOKafkaConsumer(DATASETS_TOPIC, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=100)
        await consumer.start()
        found: dict[str, list[dict]] = {}
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for msgs in batches.values():
                    for msg in msgs:
                        env = orjson.loads(msg.value)
                        if env["aggregate_id"] == dataset_id and env["type"] == ENTRIES_ADDED:
                            found[env["event_id"]] = env["data"]["entries"]
                if sum(len(v) for v in found.values()) >= expect and not batches:
                    break
        finally:
            await consumer.stop()
        return found

    return asyncio.run(read())


def test_dataset_service_killed_mid_upload_resumes_exactly(api: httpx.Client, stack) -> None:
    ds = api.post("/datasets", json={"name": "restart-upload"}).json()["id"]
    total = 120_000
    body = b"".join(_line(n) for n in range(total))
    resp = api.post(f"/datasets/{ds}/uploads", content=body, timeout=120)
    assert resp.status_code == 202, resp.text
    up = resp.json()

    def progress() -> int:
        state = api.get(f"/datasets/{ds}/uploads/{up['id']}").json()
        return state["lines_processed"] if state["status"] == "PROCESSING" else 0

    wait_for(lambda: progress() > 0, 60, 0.02)
    stack.restart("dataset", kill=True)
    stack.wait_healthy(60)

    def done() -> dict | None:
        r = api.get(f"/datasets/{ds}/uploads/{up['id']}")
        state = r.json() if r.status_code == 200 else {}
        return state if state.get("status") == "DONE" else None

    state = wait_for(done, 120, 0.3)
    assert (state["entries_created"], state["lines_processed"], state["error_count"]) == (total, total, 0)
    assert api.get(f"/datasets/{ds}").json()["dataset_entry_count"] == total
    questions = [orjson.loads(line)["messages"][0]["content"] for line in
                 api.get(f"/datasets/{ds}/export").content.splitlines()]
    assert len(questions) == total and len(set(questions)) == total

    events = _entry_events(stack.tansu.bootstrap, ds, total)
    ids = [e["id"] for entries in events.values() for e in entries]
    assert len(ids) == total and len(set(ids)) == total


def test_standing_rule_survives_broker_and_service_kills(api: httpx.Client, stack) -> None:
    ds = api.post("/datasets", json={"name": "restart-rule"}).json()["id"]
    tag = uuid.uuid4().hex[:8]
    rule = api.post(f"/datasets/{ds}/import-logs", json={
        "filters": [{"field": "metadata.batch", "equals": tag}], "standing": True})
    assert rule.status_code == 200, rule.text

    def report(i: int) -> None:
        now = int(time.time() * 1000)
        r = api.post("/report", json={
            "requestedAt": now, "receivedAt": now, "statusCode": 200,
            "reqPayload": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"rule {i}"}],
                           "metadata": {"batch": tag}},
            "respPayload": {"id": f"c{i}", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": f"ok {i}"}}]},
        })
        assert r.status_code == 200, r.text

    n = 300
    for i in range(n):
        if i == 100:
            stack.restart("tansu", kill=True)
        if i == 200:
            stack.restart("dataset", kill=True)
        report(i)
    stack.wait_healthy(60)
    wait_for(lambda: api.get(f"/datasets/{ds}").status_code == 200
             and api.get(f"/datasets/{ds}").json()["dataset_entry_count"] >= n, 60, 0.3)
    time.sleep(1.0)  # anything late would show up as a duplicate now
    entries = entries_of(api, ds)
    outputs = sorted(e["messages"][-1]["content"] for e in entries)
    assert outputs == sorted(f"ok {i}" for i in range(n))
