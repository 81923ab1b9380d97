"""No loss: kill -9 log-ingest, the broker and the gateway during a stream of 10,000 reports;
after restart every acknowledged report is stored exactly once."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from refinery.stack.platform import Stack

KEY = "opk-no-loss-test-0001"
TOTAL = 10_000
CONCURRENCY = 32


@pytest.fixture(scope="module")
def chaos_stack(fake_llm: str, tmp_path_factory: pytest.TempPathFactory):
    data_dir: Path = tmp_path_factory.mktemp("refinery-chaos")
    s = Stack(data_dir, env={"REFINERY_INIT_API_KEY": KEY}, ml=False)  # it only logs
    s.start()
    yield s
    s.stop()


async def _send_all(stack: Stack, batch: str, progress: list[int]) -> tuple[set[int], int]:
    acked: set[int] = set()
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(TOTAL):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=stack.api_base, headers={"authorization": f"Bearer {KEY}"},
                                 timeout=30, limits=limits) as client:

        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                i = queue.get_nowait()
                body = {"requestedAt": 1, "receivedAt": 2, "statusCode": 200,
                        "reqPayload": {"model": "gpt-4o", "messages": [{"role": "user", "content": f"n{i}"}],
                                       "metadata": {"batch": batch, "seq": str(i)}},
                        "respPayload": {"id": f"c{i}", "choices": []}}
                deadline = time.monotonic() + 30
                while True:
                    try:
                        resp = await client.post("/report", json=body)
                    except httpx.ConnectError:
                        # Nothing was sent (the gateway is restarting): safe to send again.
                        if time.monotonic() < deadline:
                            await asyncio.sleep(0.05)
                            continue
                        failures += 1
                    except httpx.HTTPError:
                        failures += 1  # may or may not be stored; never retried, so counts stay exact
                    else:
                        if resp.status_code == 200 and resp.json() == {"status": "ok"}:
                            acked.add(i)
                        else:
                            failures += 1
                    break
                progress[0] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return acked, failures


def _chaos(stack: Stack, progress: list[int], done: threading.Event, events: list[str]) -> None:
    plan = [(0.2, "log-ingest"), (0.45, "tansu"), (0.7, "gateway")]
    for fraction, name in plan:
        while progress[0] < TOTAL * fraction and not done.is_set():
            time.sleep(0.01)
        if done.is_set():
            return
        stack.restart(name, kill=True)
        events.append(f"{name} killed at {progress[0]}")


def _stored(stack: Stack, batch: str) -> Counter:
    with httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {KEY}"}, timeout=120) as c:
        resp = c.post("/logs/export", json={"filters": [{"field": "metadata.batch", "equals": batch}]})
        assert resp.status_code == 200, resp.text
        return Counter(int(json.loads(line)["tags"]["seq"]) for line in resp.text.splitlines() if line)


# 10,000 reports through three kills: about 2 minutes alone, past 5 when the suite's own stack runs beside it on
# 2 cores. The test is about loss, not speed (the report budget is measured in bench/).
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_acknowledged_reports_survive_kills_exactly_once(chaos_stack: Stack):
    batch = uuid.uuid4().hex
    progress = [0]
    done = threading.Event()
    events: list[str] = []
    chaos = threading.Thread(target=_chaos, args=(chaos_stack, progress, done, events))
    chaos.start()
    try:
        acked, failures = asyncio.run(_send_all(chaos_stack, batch, progress))
    finally:
        done.set()
        chaos.join()
    assert len(events) == 3, events
    chaos_stack.wait_healthy(60)
    assert len(acked) > TOTAL * 0.95, f"only {len(acked)} acknowledged ({failures} failures): {events}"
    deadline = time.monotonic() + 90
    while True:
        stored = _stored(chaos_stack, batch)
        if acked <= set(stored) or time.monotonic() > deadline:
            break
        time.sleep(1)
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged reports lost, e.g. {sorted(missing)[:10]}; {events}"
    duplicated = {seq: n for seq, n in stored.items() if n > 1}
    assert not duplicated, f"stored more than once: {list(duplicated.items())[:10]}"
    print(f"\n{len(acked)} acknowledged, {failures} refused during kills, all stored once; {events}")


def test_reads_after_a_gateway_crash_see_earlier_writes(chaos_stack: Stack):
    """A restarted gateway knows nothing of what its predecessor acknowledged; its first read
    must still see those writes (bound to a marker it writes to every partition at start)."""
    tag = uuid.uuid4().hex
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=chaos_stack.api_base, headers=headers, timeout=30) as c:
        for i in range(50):
            body = {"reqPayload": {"model": "m", "metadata": {"crash": tag, "i": str(i)}}, "statusCode": 200}
            assert c.post("/report", json=body).json() == {"status": "ok"}
    chaos_stack.restart("gateway", kill=True)
    chaos_stack.wait_healthy(30)
    with httpx.Client(base_url=chaos_stack.api_base, headers=headers, timeout=30) as c:
        latest = c.get("/local-testing-only-get-latest-logged-call").json()
        assert latest["metadata"] == {"crash": tag, "i": "49"}
        found = c.post("/logs/search", json={"filters": [{"field": "metadata.crash", "equals": tag}]}).json()
        assert found["total"] == 50


def _batch_objects(stack: Stack) -> int:
    """Record batches Tansu keeps for the request-log topic, every partition."""
    from minio import Minio

    assert stack.seaweed is not None
    c = stack.seaweed.credentials
    s3 = Minio(c.endpoint, access_key=c.access_key, secret_key=c.secret_key, secure=False, region=c.region)
    prefix = "clusters/tansu_cluster/topics/refinery.request-logs/partitions/"
    return sum(1 for o in s3.list_objects("tansu", prefix=prefix, recursive=True)
               if o.object_name.endswith(".batch"))


def test_retention_removes_stored_batches_and_keeps_every_log(chaos_stack: Stack):
    """The embedded bus's retention runs in the stack: batches that log-ingest and the dataset
    service have both stored go, one record at a time writes keep working, and nothing is lost."""
    tag = uuid.uuid4().hex
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=chaos_stack.api_base, headers=headers, timeout=30) as c:
        for i in range(40):  # one at a time: one batch object each
            body = {"reqPayload": {"model": "m", "metadata": {"retention": tag, "i": str(i)}}, "statusCode": 200}
            assert c.post("/report", json=body).json() == {"status": "ok"}
        before = _batch_objects(chaos_stack)
        assert before >= 40
        deadline = time.monotonic() + 60  # 10 s minimum age, a pass every 5 s, commits every second
        while (after := _batch_objects(chaos_stack)) > before - 40 and time.monotonic() < deadline:
            time.sleep(1)
        assert after <= before - 40, f"retention deleted nothing: {before} batch objects, then {after}"
        found = c.post("/logs/search", json={"filters": [{"field": "metadata.retention", "equals": tag}]}).json()
        assert found["total"] == 40
        body = {"reqPayload": {"model": "m", "metadata": {"retention": tag, "i": "after"}}, "statusCode": 200}
        assert c.post("/report", json=body).json() == {"status": "ok"}
        found = c.post("/logs/search", json={"filters": [{"field": "metadata.retention", "equals": tag}]}).json()
        assert found["total"] == 41
