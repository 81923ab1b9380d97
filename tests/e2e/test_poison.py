"""One hostile or careless request never stops the pipeline for anyone.

Each test sends what once stalled ingestion, checks the answer names the problem, then reports a
canary from *another* project, which must become searchable within seconds, and checks that
nothing was left behind to retry forever (the gateway's spool is empty)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.conftest import search, wait_for


@pytest.fixture(scope="module")
def other(stack, admin) -> httpx.Client:
    key = admin.post("/admin/v1/projects", json={"name": f"canary-{uuid.uuid4().hex[:6]}"}).json()["apiKey"]
    with httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {key}"}, timeout=30) as client:
        yield client


def _canary(client: httpx.Client) -> None:
    tag = uuid.uuid4().hex
    resp = client.post("/report", json={"requestedAt": 1, "receivedAt": 2, "statusCode": 200, "reqPayload": {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "canary"}], "metadata": {"canary": tag}},
        "respPayload": {"id": "c", "choices": []}})
    assert resp.status_code == 200, resp.text
    wait_for(lambda: search(client, metadata__canary=tag), timeout_s=10)


def test_a_report_whose_event_the_bus_cannot_take_is_413_and_the_pipeline_flows(stack, api, other) -> None:
    # 9 MB of metadata under the 10 MB body cap: the event carries it twice (in reqPayload and as the
    # log's metadata), 18 MB, over what the bus takes. It used to be spooled and replayed forever.
    big = {"model": "gpt-4o-mini", "messages": [], "metadata": {"blob": "x" * (9 * 1024 * 1024)}}
    resp = api.post("/report", json={"statusCode": 200, "reqPayload": big, "respPayload": {"choices": []}})
    assert resp.status_code == 413, resp.text[:500]
    body = resp.json()
    assert body["code"] == "PAYLOAD_TOO_LARGE" and "at most" in body["message"]
    assert any("reqPayload" in issue["message"] for issue in body["issues"])
    _canary(other)
    _canary(api)
    spool = stack.data_dir / "gateway" / "spool" / "spool.bin"
    assert not spool.exists() or spool.stat().st_size == 0


@pytest.mark.parametrize("tokens", [-1, 2**32, 2**63 - 1])
def test_token_counts_out_of_range_are_clamped_and_the_pipeline_flows(api, other, tokens) -> None:
    tag = uuid.uuid4().hex
    resp = api.post("/report", json={"statusCode": 200, "reqPayload": {
        "model": "gpt-4o-mini", "messages": [], "metadata": {"hostile": tag}}, "respPayload": {
        "id": "h", "choices": [], "usage": {"prompt_tokens": tokens, "completion_tokens": tokens}}})
    assert resp.status_code == 200, resp.text
    [log] = wait_for(lambda: search(api, metadata__hostile=tag), timeout_s=10)
    assert log["usage"]["promptTokens"] == (0 if tokens < 0 else 2**32 - 1)
    _canary(other)
