"""Heavy log work of one project never stops the pipeline for anyone: exports whose client hangs up
after the first chunk, and whole-project metadata updates sent several at once.

Each test does the hostile thing in a project of its own, then reports a canary from another
project, which must become searchable (the pattern of test_poison.py)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.test_poison import _canary, pipeline_caught_up

BUSY_WAIT_S = 30


@pytest.fixture(scope="module")
def other(stack, admin) -> httpx.Client:
    """The canary's project: one that sent nothing heavy."""
    with _project(admin, stack) as client:
        yield client


def _project(admin: httpx.Client, stack) -> httpx.Client:
    made = admin.post("/admin/v1/projects", json={"name": f"heavy-{uuid.uuid4().hex[:6]}"}).json()
    return httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {made['apiKey']}"}, timeout=60)


def _report(client: httpx.Client, content: str, **metadata: str) -> None:
    resp = client.post("/report", json={"statusCode": 200, "reqPayload": {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], "metadata": metadata},
        "respPayload": {"id": "r", "choices": []}})
    assert resp.status_code == 200, resp.text[:500]


def _total(client: httpx.Client, **filters: str) -> int:
    body = {"filters": [{"field": k.replace("__", "."), "equals": v} for k, v in filters.items()], "limit": 1}
    resp = client.post("/logs/search", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()["total"]


def _until_admitted(send):
    """`send()` again while it is answered 429 (a hang-up frees its place a moment later)."""
    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        resp = send()
        if resp.status_code != 429:
            return resp
        assert "retry" in resp.json()["message"], resp.text
        assert time.monotonic() < deadline, f"still 429 {BUSY_WAIT_S} s after the earlier exports hung up"
        time.sleep(0.2)


def _hang_up_after_first_chunk(client: httpx.Client, filters: list[dict]) -> None:
    # A connection of its own, closed with the response unread: the client has gone away.
    with httpx.Client(base_url=client.base_url, headers=client.headers, timeout=60) as own:
        def send() -> httpx.Response:
            resp = own.send(own.build_request("POST", "/logs/export", json={"filters": filters}), stream=True)
            if resp.status_code != 200:
                resp.read()
                resp.close()
            return resp

        resp = _until_admitted(send)
        assert resp.status_code == 200, resp.read()[:500]
        assert next(resp.iter_raw())
        resp.close()


def test_exports_whose_client_hangs_up_after_the_first_chunk_leave_the_pipeline_flowing(stack, admin, other):
    tag = uuid.uuid4().hex
    logs = 32
    with _project(admin, stack) as hostile:
        # 32 MB to export: far more than the buffers between the log store and the client hold, so
        # each export's worker is still waiting to hand over its next chunk when the client leaves.
        for i in range(logs):
            _report(hostile, f"{i} " + "x" * (1024 * 1024), bulk=tag)
        filters = [{"field": "metadata.bulk", "equals": tag}]
        for _ in range(10):  # more than the log store's export threads and the loop's default pool
            _hang_up_after_first_chunk(hostile, filters)
        _canary(other)
        # Every worker was given back: the same export, read to its end, has every log.
        resp = _until_admitted(lambda: hostile.post("/logs/export", json={"filters": filters}))
        assert resp.status_code == 200, resp.text[:500]
        assert len(resp.content.splitlines()) == logs
    spool = stack.data_dir / "gateway" / "spool" / "spool.bin"
    assert not spool.exists() or spool.stat().st_size == 0
    pipeline_caught_up(admin)


def test_whole_project_metadata_updates_sent_at_once_are_applied_or_told_to_retry_and_others_flow(
        stack, admin, other):
    logs = 3000
    with _project(admin, stack) as hostile:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: _report(hostile, f"log {i}"), range(logs)))
        tags = [uuid.uuid4().hex for _ in range(6)]

        def update(i: int) -> httpx.Response:  # every log of the project, no filter
            return hostile.post("/logs/update-metadata", json={"filters": [], "metadata": {f"k{i}": tags[i]}})

        with ThreadPoolExecutor(len(tags)) as pool:
            updates = pool.map(update, range(len(tags)))
            _canary(other)  # while the updates run
            answers = list(updates)
        applied = [i for i, resp in enumerate(answers) if resp.status_code == 200]
        assert applied, [r.text for r in answers]
        for resp in answers:
            if resp.status_code == 200:
                assert resp.json() == {"matchedLogs": logs}
            else:  # refused at once, saying so, never a 5xx or a queue without end
                assert resp.status_code == 429, resp.text
                assert resp.json()["code"] == "TOO_MANY_REQUESTS" and "at most" in resp.json()["message"]
        for i in applied:
            assert _total(hostile, **{f"metadata__k{i}": tags[i]}) == logs
    _canary(other)
    pipeline_caught_up(admin)
