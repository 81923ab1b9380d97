"""One hostile or careless request never stops the pipeline for anyone.

Each test sends what once stalled ingestion, checks the answer names the problem, then reports a
canary from *another* project, which must become searchable within seconds, checks that nothing was
left behind to retry forever (the gateway's spool is empty), and that every follower of the
request-log topic (log-ingest, the standing import rules) is caught up (`GET /admin/v1/pipeline`)."""

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


FOLLOWERS = ("logIngest", "datasetRules")


def pipeline_caught_up(admin: httpx.Client) -> dict:
    """Every follower of the request-log topic has handled every record on every partition (lag 0)."""

    def caught_up() -> dict | None:
        resp = admin.get("/admin/v1/pipeline")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        return body if all(body[f]["caughtUp"] for f in FOLLOWERS) else None

    body = wait_for(caught_up, timeout_s=30, every_s=0.25)
    assert set(body) == {*FOLLOWERS, "retention"}  # the session's stack is durable, so it runs retention
    return body


def test_the_pipeline_shows_retention_deleting_only_what_every_reader_stored(stack, api, admin) -> None:
    _canary(api)
    pipeline_caught_up(admin)

    def settled() -> dict | None:
        body = admin.get("/admin/v1/pipeline").json()["retention"]
        assert body["reachable"] is True and body["lastError"] is None, body
        parts = body["partitions"]
        # A pass after both readers committed what they stored before this test's canary was read back.
        ready = body["passes"] >= 1 and parts and all(not p["heldBackBy"] for p in parts)
        return body if ready else None

    retention = wait_for(settled, timeout_s=60, every_s=0.5)
    assert retention["topic"] == "refinery.request-logs" and retention["minAgeS"] == 10.0
    for p in retention["partitions"]:
        assert set(p["committed"]) == {"refinery-log-ingest", "refinery-dataset-rules"}
        assert p["safeOffset"] == min(p["committed"].values())
        # Only batches wholly below what every reader committed go, and the newest batch always stays.
        assert p["batches"] >= 1 and p["retainedFrom"] is not None and p["retainedFrom"] <= p["safeOffset"]
    assert retention["deleted"] == sum(p["deleted"] for p in retention["partitions"])


def test_a_report_with_large_metadata_is_logged_once_and_the_pipeline_flows(stack, api, other, admin) -> None:
    # 9 MB of metadata under the 10 MB body cap. The log event carries the request's metadata once (inside
    # reqPayload, with only the tags beside it), so it fits what the bus takes; it used to be copied twice,
    # 18 MB, spooled and replayed forever.
    tag = uuid.uuid4().hex
    big = {"model": "gpt-4o-mini", "messages": [], "metadata": {"blob": "x" * (9 * 1024 * 1024), "big": tag}}
    resp = api.post("/report", json={"statusCode": 200, "reqPayload": big, "respPayload": {"choices": []}})
    assert resp.status_code == 200, resp.text[:500]
    [log] = wait_for(lambda: search(api, metadata__big=tag), timeout_s=30)
    assert len(log["metadata"]["blob"]) == 9 * 1024 * 1024
    _canary(other)
    spool = stack.data_dir / "gateway" / "spool" / "spool.bin"
    assert not spool.exists() or spool.stat().st_size == 0
    pipeline_caught_up(admin)


def test_a_report_whose_event_the_bus_cannot_take_is_413_and_the_pipeline_flows(stack, api, other, admin) -> None:
    # An Anthropic report is logged with its OpenAI view beside it: 9 MB of answer is 18 MB of event, over
    # what the bus takes. Refused before anything is kept, naming the limit; nothing is spooled.
    answer = {"id": "msg_big", "type": "message", "role": "assistant", "model": "claude-3-5-haiku",
              "content": [{"type": "text", "text": "x" * (9 * 1024 * 1024)}], "stop_reason": "end_turn",
              "usage": {"input_tokens": 1, "output_tokens": 1}}
    resp = api.post("/report-anthropic", json={
        "requestedAt": 1, "receivedAt": 2, "statusCode": 200, "respPayload": answer,
        "reqPayload": {"model": "claude-3-5-haiku", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}})
    assert resp.status_code == 413, resp.text[:500]
    body = resp.json()
    assert body["code"] == "PAYLOAD_TOO_LARGE" and "at most" in body["message"]
    assert any("reqPayload" in issue["message"] for issue in body["issues"])
    _canary(other)
    _canary(api)
    spool = stack.data_dir / "gateway" / "spool" / "spool.bin"
    assert not spool.exists() or spool.stat().st_size == 0
    pipeline_caught_up(admin)


@pytest.mark.parametrize("tokens", [-1, 2**32, 2**63 - 1])
def test_token_counts_out_of_range_are_clamped_and_the_pipeline_flows(api, other, admin, tokens) -> None:
    tag = uuid.uuid4().hex
    resp = api.post("/report", json={"statusCode": 200, "reqPayload": {
        "model": "gpt-4o-mini", "messages": [], "metadata": {"hostile": tag}}, "respPayload": {
        "id": "h", "choices": [], "usage": {"prompt_tokens": tokens, "completion_tokens": tokens}}})
    assert resp.status_code == 200, resp.text
    [log] = wait_for(lambda: search(api, metadata__hostile=tag), timeout_s=10)
    assert log["usage"]["promptTokens"] == (0 if tokens < 0 else 2**32 - 1)
    _canary(other)
    pipeline_caught_up(admin)


def _project(admin: httpx.Client, stack) -> tuple[str, httpx.Client]:
    made = admin.post("/admin/v1/projects", json={"name": f"p-{uuid.uuid4().hex[:6]}"}).json()
    return made["id"], httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {made['apiKey']}"},
                                    timeout=30)


def _standing_rule(client: httpx.Client, tag: str) -> str:
    dataset = client.post("/datasets", json={"name": f"rule-{tag[:6]}"}).json()["id"]
    made = client.post(f"/datasets/{dataset}/import-logs",
                       json={"filters": [{"field": "metadata.rule", "equals": tag}], "standing": True})
    assert made.status_code == 200 and made.json()["rule_id"], made.text
    return dataset


def _entries(client: httpx.Client, dataset: str) -> list[dict]:
    return client.get(f"/datasets/{dataset}/entries", params={"limit": 100}).json()["data"]


def _report(client: httpx.Client, messages: object, **metadata: str) -> None:
    resp = client.post("/report", json={"statusCode": 200, "reqPayload": {
        "model": "gpt-4o-mini", "messages": messages, "metadata": metadata},
        "respPayload": {"id": "r", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}})
    assert resp.status_code == 200, resp.text


def test_a_log_whose_messages_are_not_a_list_does_not_stop_standing_import_rules(stack, admin) -> None:
    _, hostile = _project(admin, stack)
    _, canary = _project(admin, stack)
    with hostile, canary:
        tag_a, tag_b = uuid.uuid4().hex, uuid.uuid4().hex
        dataset_a, dataset_b = _standing_rule(hostile, tag_a), _standing_rule(canary, tag_b)
        _report(hostile, 5, rule=tag_a)  # what once stalled the rule follower for every project
        _report(hostile, {"role": "user"}, rule=tag_a)
        _report(hostile, [{"role": "user", "content": "after"}], rule=tag_a)
        _report(canary, [{"role": "user", "content": "canary"}], rule=tag_b)
        [entry] = wait_for(lambda: _entries(canary, dataset_b), timeout_s=10)
        assert entry["messages"][0]["content"] == "canary"
        [entry] = wait_for(lambda: _entries(hostile, dataset_a), timeout_s=10)
        assert entry["messages"][0]["content"] == "after"  # the two that cannot train are skipped
        assert len(search(hostile, metadata__rule=tag_a)) == 3  # and all three are logged
    rules = pipeline_caught_up(admin)["datasetRules"]
    assert all(p["highWater"] is not None for p in rules["partitions"])


def test_a_broken_record_on_the_bus_is_a_dead_letter_that_replays_once_fixed(stack, admin) -> None:
    import asyncio

    import orjson
    from aiokafka import AIOKafkaProducer

    project_id, client = _project(admin, stack)
    tag = uuid.uuid4().hex
    good = {"source": "report", "received_at": 1.0, "status_code": 200, "metadata": {"replayed": tag},
            "req_payload": {"model": "m", "messages": []}, "log_id": uuid.uuid4().hex}
    broken = {**good, "received_at": "yesterday"}  # a writer that is not ours: the field cannot be stored
    envelope = {"event_id": uuid.uuid4().hex, "type": "request_log.recorded", "aggregate_id": good["log_id"],
                "version": 1, "project_id": project_id, "occurred_at": 1.0, "data": broken}

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.tansu.bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait("refinery.request-logs", orjson.dumps(envelope), key=project_id.encode())
        finally:
            await producer.stop()

    asyncio.run(produce())
    with client:
        _canary(client)  # stored after the broken record: log-ingest went past it

        def letter() -> dict | None:
            page = admin.get("/admin/v1/dead-letters", params={"projectId": project_id}).json()["data"]
            return next((d for d in page if d["value"] and d["value"]["event_id"] == envelope["event_id"]), None)

        found = wait_for(letter, timeout_s=10)
        assert found["service"] == "log-ingest" and found["topic"] == "refinery.request-logs"
        assert "malformed request_log.recorded" in found["reason"] and "received_at" in found["reason"]
        assert found["replays"] == [] and found["key"] == project_id
        assert admin.get(f"/admin/v1/dead-letters/{found['id']}").json()["id"] == found["id"]
        assert admin.get("/admin/v1/dead-letters/dl-nope").status_code == 404
        assert httpx.get(f"{stack.url}/admin/v1/dead-letters").status_code == 401

        fixed = {**envelope, "data": good}
        for _ in range(2):  # replayed twice: stored once
            resp = admin.post(f"/admin/v1/dead-letters/{found['id']}/replay", json={"value": fixed})
            assert resp.status_code == 200 and resp.json()["fixed"] is True, resp.text
        [log] = wait_for(lambda: search(client, metadata__replayed=tag), timeout_s=10)
        assert log["id"] == good["log_id"]
        replays = wait_for(lambda: len(r := admin.get(f"/admin/v1/dead-letters/{found['id']}").json()["replays"]) == 2
                           and r, timeout_s=10)
        assert all(r["fixed"] for r in replays)
        import time

        time.sleep(1.0)
        assert len(search(client, metadata__replayed=tag)) == 1
    ingest = pipeline_caught_up(admin)["logIngest"]
    assert ingest["setAside"] >= 1  # the broken record, set aside: log-ingest went on past it

    from tests.e2e.test_cli import refinery

    out = refinery(stack, "dead-letters", "list")
    assert found["id"] in out and "replayed x2" in out and "malformed request_log.recorded" in out
