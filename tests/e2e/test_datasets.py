"""Datasets end to end: the openpipe SDK's dataset calls, entries, uploads, import from logs,
export, pruning rules, relabeling and snapshots, through the gateway of a running stack."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
from openai import OpenAI
from openpipe.client import OpenPipe

from tests.e2e.conftest import wait_for

GOOD = {
    "messages": [{"role": "user", "content": "Count to 3"}, {"role": "assistant", "content": "1, 2, 3"}],
    "split": "TRAIN",
    "metadata": {"prompt_id": "count"},
}


@pytest.fixture(scope="module")
def op(stack, api_key: str) -> OpenPipe:
    return OpenPipe(api_key=api_key, base_url=stack.api_base)


@pytest.fixture
def dataset(api: httpx.Client) -> Any:
    resp = api.post("/datasets", json={"name": f"ds-{uuid.uuid4().hex[:6]}"})
    assert resp.status_code == 200, resp.text
    d = resp.json()
    yield d
    api.delete(f"/datasets/{d['id']}")


def entries_of(api: httpx.Client, dataset_id: str, **params: Any) -> list[dict]:
    out: list[dict] = []
    while True:
        resp = api.get(f"/datasets/{dataset_id}/entries", params={**params, "limit": 1000, "offset": len(out)})
        assert resp.status_code == 200, resp.text
        page = resp.json()["data"]
        out += page
        if len(page) < 1000:
            return out


def export_lines(api: httpx.Client, dataset_id: str) -> list[dict]:
    resp = api.get(f"/datasets/{dataset_id}/export")
    assert resp.status_code == 200, resp.text
    return [orjson.loads(line) for line in resp.content.splitlines() if line]


def upload(api: httpx.Client, dataset_id: str, body: bytes, timeout_s: float = 120) -> dict:
    resp = api.post(f"/datasets/{dataset_id}/uploads", content=body, params={"filename": "data.jsonl"},
                    headers={"content-type": "application/x-ndjson"}, timeout=timeout_s)
    assert resp.status_code == 202, resp.text
    up = resp.json()

    def done() -> dict | None:
        r = api.get(f"/datasets/{dataset_id}/uploads/{up['id']}")
        assert r.status_code == 200, r.text
        state = r.json()
        assert state["status"] != "FAILED", state
        return state if state["status"] == "DONE" else None

    return wait_for(done, timeout_s, 0.2)


# ---- the SDK's dataset calls ----------------------------------------------------------------


def test_sdk_dataset_lifecycle(op: OpenPipe, api: httpx.Client) -> None:
    created = op.create_dataset(name="SDK lifecycle")
    assert created.dataset_entry_count == 0 and created.fine_tune_count == 0
    assert isinstance(created.created, str) and created.created.endswith("Z")
    listed = {d.id: d for d in op.list_datasets().data}
    assert listed[created.id].name == "SDK lifecycle"

    bad_last = {"messages": [{"role": "user", "content": "no answer"}]}
    bad_args = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}
    bad_split = {**GOOD, "split": "VALIDATION"}
    result = op.create_dataset_entries(created.id, entries=[GOOD, bad_last, GOOD, bad_args, bad_split, GOOD])
    assert result.entries_created == 3
    errors = {e.entry_index: e.message for e in result.errors.data}
    assert sorted(errors) == [1, 3, 4]
    assert "end with an assistant message" in errors[1]
    assert "arguments" in errors[3] and "JSON" in errors[3]
    assert "split" in errors[4]
    assert {d.id: d for d in op.list_datasets().data}[created.id].dataset_entry_count == 3

    deleted = op.delete_dataset(dataset_id=created.id)
    assert deleted.deleted is True and deleted.id == created.id
    assert created.id not in {d.id for d in op.list_datasets().data}
    assert api.get(f"/datasets/{created.id}").status_code == 404
    resp = api.post(f"/datasets/{created.id}/entries", json={"entries": [GOOD]})
    assert resp.status_code == 404 and resp.json()["code"] == "NOT_FOUND"


def test_entries_schema_violations_are_400(api: httpx.Client, dataset: dict) -> None:
    resp = api.post(f"/datasets/{dataset['id']}/entries", json={"entries": [{**GOOD, "metadata": {"n": 1}}]})
    assert resp.status_code == 400 and "Input validation failed" in resp.json()["message"]
    assert "entries.0.metadata.n" in resp.json()["issues"][0]["message"]
    assert api.post(f"/datasets/{dataset['id']}/entries", json={"entries": []}).status_code == 400
    assert api.post(f"/datasets/{dataset['id']}/entries", json={"entries": [GOOD] * 101}).status_code == 400
    assert api.post("/datasets", json={"name": ""}).status_code == 400
    assert api.get(f"/datasets/{dataset['id']}/entries", params={"split": "VALID"}).status_code == 400


def test_unstable_routes(api: httpx.Client) -> None:
    ds = api.post("/unstable/dataset/create", json={"name": "unstable"}).json()["datasetId"]
    listed = api.get("/unstable/dataset/list").json()
    assert {"id": ds, "name": "unstable", "datasetEntryCount": 0, "fineTuneCount": 0}.items() <= next(
        d for d in listed if d["id"] == ds).items()
    resp = api.post("/unstable/dataset-entry/create", json={"datasetId": ds, "entries": [
        GOOD, {"messages": [{"role": "user", "content": "x"}]},
        {"messages": [{"role": "user", "content": "w"}, {"role": "assistant", "function_call": {
            "name": "f", "arguments": "{}"}}], "functions": [{"name": "f", "parameters": {"type": "object"}}]},
    ]})
    assert resp.json()["createdEntries"] == 2 and [e["index"] for e in resp.json()["errors"]] == [1]
    assert api.post("/unstable/dataset/delete", json={"datasetId": ds}).json() == {"datasetId": ds}
    assert all(d["id"] != ds for d in api.get("/unstable/dataset/list").json())


def test_project_isolation(api: httpx.Client, admin: httpx.Client, stack, dataset: dict) -> None:
    other_key = admin.post("/admin/v1/projects", json={"name": f"iso-{uuid.uuid4().hex[:6]}"}).json()["apiKey"]
    with httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {other_key}"}) as other:
        assert dataset["id"] not in {d["id"] for d in other.get("/datasets").json()["data"]}
        assert other.get(f"/datasets/{dataset['id']}").status_code == 404
        assert other.get(f"/datasets/{dataset['id']}/export").status_code == 404
        assert other.delete(f"/datasets/{dataset['id']}").status_code == 404
    assert api.get(f"/datasets/{dataset['id']}").status_code == 200


# ---- entries: split, filters, update, delete ------------------------------------------------


def test_entries_split_filters_update_delete(api: httpx.Client, dataset: dict) -> None:
    ds = dataset["id"]
    entries = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
                "metadata": {"group": "even" if i % 2 == 0 else "odd"}} for i in range(100)]
    assert api.post(f"/datasets/{ds}/entries", json={"entries": entries}).json()["entries_created"] == 100
    listed = entries_of(api, ds)
    assert [e["messages"][0]["content"] for e in listed] == [f"q{i}" for i in range(100)]
    splits = {e["id"]: e["split"] for e in listed}
    test_n = sum(1 for s in splits.values() if s == "TEST")
    assert 1 <= test_n <= 25  # 90:10 target, assigned per entry
    # Stable: reading again gives the same split per entry.
    assert {e["id"]: e["split"] for e in entries_of(api, ds)} == splits
    assert len(entries_of(api, ds, split="TEST")) == test_n
    assert len(entries_of(api, ds, **{"metadata.group": "odd"})) == 50
    d = api.get(f"/datasets/{ds}").json()
    assert (d["dataset_entry_count"], d["test_entry_count"]) == (100, test_n)

    first = listed[0]
    resp = api.patch(f"/datasets/{ds}/entries/{first['id']}", json={
        "messages": [{"role": "user", "content": "q0"}, {"role": "assistant", "content": "fixed"}], "split": "TEST"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["messages"][-1]["content"] == "fixed" and resp.json()["split"] == "TEST"
    bad = api.patch(f"/datasets/{ds}/entries/{first['id']}", json={"messages": [{"role": "user", "content": "x"}]})
    assert bad.status_code == 400 and "assistant" in bad.json()["message"]
    assert api.get(f"/datasets/{ds}/entries/{first['id']}").json()["messages"][-1]["content"] == "fixed"

    assert api.delete(f"/datasets/{ds}/entries/{first['id']}").status_code == 200
    assert api.get(f"/datasets/{ds}/entries/{first['id']}").status_code == 404
    assert api.get(f"/datasets/{ds}").json()["dataset_entry_count"] == 99


def test_pruning_rules_preview(api: httpx.Client, dataset: dict) -> None:
    ds = dataset["id"]
    preamble = "You are a meticulous assistant. Follow the policy below.\n"
    api.post(f"/datasets/{ds}/entries", json={"entries": [{"messages": [
        {"role": "system", "content": preamble + "Answer briefly."},
        {"role": "user", "content": "capital of Sweden?"},
        {"role": "assistant", "content": preamble + "Stockholm"}]}]})
    entry = entries_of(api, ds)[0]
    rule = api.post(f"/datasets/{ds}/pruning-rules", json={"text": preamble}).json()
    assert [r["id"] for r in api.get(f"/datasets/{ds}/pruning-rules").json()["data"]] == [rule["id"]]
    pruned = api.get(f"/datasets/{ds}/entries/{entry['id']}/pruned").json()
    assert pruned["messages"][0]["content"] == "Answer briefly."
    assert pruned["messages"][-1]["content"] == preamble + "Stockholm"  # outputs are never pruned
    assert api.get(f"/datasets/{ds}/entries/{entry['id']}").json()["messages"][0]["content"].startswith(preamble)
    assert api.delete(f"/datasets/{ds}/pruning-rules/{rule['id']}").status_code == 200
    assert api.get(f"/datasets/{ds}/entries/{entry['id']}/pruned").json()["messages"][0]["content"].startswith(
        preamble)


# ---- upload, export, re-import --------------------------------------------------------------


def _line(i: int) -> dict:
    line: dict[str, Any] = {"messages": [
        {"role": "system", "content": "You are a helpful assistant"},
        {"role": "user", "content": f"What is {i} + {i}?"},
        {"role": "assistant", "content": str(2 * i)}]}
    if i % 7 == 0:
        line["rejected_message"] = {"role": "assistant", "content": str(2 * i + 1)}
    if i % 5 == 0:
        line["split"] = "TEST"
    if i % 3 == 0:
        line["metadata"] = {"prompt_id": "sums", "i": str(i)}
    if i % 11 == 0:
        line["tools"] = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
        line["messages"][-1] = {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function", "function": {"name": "add", "arguments": f'{{"a": {i}}}'}}]}
    return line


def test_upload_reports_bad_lines_then_export_reimports_identically(api: httpx.Client, dataset: dict) -> None:
    ds = dataset["id"]
    lines = [orjson.dumps(_line(i)) for i in range(1, 3001)]
    lines[9] = b'{"messages": [{"role": "user", "content": "no answer"}]}'  # line 10
    lines[99] = b"{not json"  # line 100
    lines[2999] = b'{"messages": [], "split": "TRAIN"}'  # line 3000
    lines.insert(500, b"   ")  # blank lines are skipped, but still counted
    state = upload(api, ds, b"\n".join(lines) + b"\n")
    assert [e["line"] for e in state["errors"]] == [10, 100, 3001]
    assert "invalid JSON" in state["errors"][1]["message"]
    assert state["entries_created"] == 2997 and state["lines_processed"] == 3001
    assert state["bytes_processed"] == state["bytes_total"]

    exported = export_lines(api, ds)
    assert len(exported) == 2997
    by_q = {e["messages"][1]["content"]: e for e in exported}
    assert by_q["What is 7 + 7?"]["rejected_message"] == {"role": "assistant", "content": "15"}
    assert by_q["What is 5 + 5?"]["split"] == "TEST"
    assert by_q["What is 3 + 3?"]["metadata"] == {"prompt_id": "sums", "i": "3"}
    assert by_q["What is 11 + 11?"]["messages"][-1]["tool_calls"][0]["function"]["arguments"] == '{"a": 11}'

    again = api.post("/datasets", json={"name": "reimport"}).json()["id"]
    try:
        body = api.get(f"/datasets/{ds}/export").content
        assert upload(api, again, body)["error_count"] == 0
        assert export_lines(api, again) == exported
    finally:
        api.delete(f"/datasets/{again}")


def test_upload_of_200k_lines_streams_in_bounded_memory(api: httpx.Client, stack, dataset: dict) -> None:
    ds = dataset["id"]
    broken = {1234: b'{"messages": [{"role": "user", "content": "x"}]}', 99_999: b"][",
              199_998: b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": '
                       b'[{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}]}'}

    def body():
        buf = bytearray()
        for n in range(1, 200_001):
            buf += broken.get(n) or orjson.dumps({"messages": [
                {"role": "user", "content": f"Translate item {n} to French, please."},
                {"role": "assistant", "content": f"Article {n}, s'il vous plait."}], "metadata": {"n": str(n)}})
            buf += b"\n"
            if len(buf) > 1 << 20:
                yield bytes(buf)
                buf.clear()
        yield bytes(buf)

    resp = api.post(f"/datasets/{ds}/uploads", content=body(), timeout=300)
    assert resp.status_code == 202, resp.text
    up = resp.json()
    seen_progress: set[int] = set()

    def done() -> dict | None:
        state = api.get(f"/datasets/{ds}/uploads/{up['id']}").json()
        assert state["status"] != "FAILED", state
        seen_progress.add(state["lines_processed"])
        return state if state["status"] == "DONE" else None

    state = wait_for(done, 300, 0.5)
    assert [e["line"] for e in state["errors"]] == sorted(broken)
    assert state["entries_created"] == 199_997
    assert len(seen_progress) > 2  # progress was visible while it ran
    assert api.get(f"/datasets/{ds}").json()["dataset_entry_count"] == 199_997
    pid = stack.services["dataset"].proc.pid
    peak_kb = int(next(line.split()[1] for line in open(f"/proc/{pid}/status") if line.startswith("VmHWM")))
    assert peak_kb < 500 * 1024, f"dataset service peaked at {peak_kb // 1024} MB"


# ---- import from request logs ---------------------------------------------------------------


def test_import_from_logs_once_and_standing_rule(api: httpx.Client, stack, api_key: str, dataset: dict) -> None:
    ds = dataset["id"]
    tag = uuid.uuid4().hex[:8]
    client = OpenAI(api_key=api_key, base_url=stack.api_base, max_retries=0)
    for i in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"log {i}"}],
                                       metadata={"run": tag}, store=True)
    with pytest.raises(Exception):  # noqa: B017 - an errored call is logged, never imported
        client.chat.completions.create(model="gpt-4o-error", messages=[{"role": "user", "content": "boom"}],
                                       metadata={"run": tag}, store=True)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "other"}],
                                   metadata={"run": "someone-else"}, store=True)
    anthropic_report = {
        "requestedAt": int(time.time() * 1000), "receivedAt": int(time.time() * 1000), "statusCode": 200,
        "metadata": {"run": tag},
        "reqPayload": {"model": "claude-3-opus-20240229", "max_tokens": 50, "system": "Be terse.",
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "weather?"}]}]},
        "respPayload": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-opus-20240229",
                        "content": [{"type": "text", "text": "Sunny."}], "stop_reason": "end_turn",
                        "usage": {"input_tokens": 5, "output_tokens": 2}},
    }
    assert api.post("/report-anthropic", json=anthropic_report).status_code == 200

    filters = [{"field": "metadata.run", "equals": tag}]
    first = api.post(f"/datasets/{ds}/import-logs", json={"filters": filters})
    assert first.status_code == 200, first.text
    assert (first.json()["imported"], first.json()["skipped_errored"]) == (4, 1)
    entries = entries_of(api, ds)
    assert sorted(e["messages"][-1]["content"] for e in entries) == sorted(
        ["Echo: log 0", "Echo: log 1", "Echo: log 2", "Sunny."])
    claude = next(e for e in entries if e["messages"][-1]["content"] == "Sunny.")
    assert claude["messages"][:2] == [{"role": "system", "content": "Be terse."},
                                      {"role": "user", "content": "weather?"}]
    assert all(e["metadata"]["run"] == tag for e in entries)

    # Importing again duplicates nothing; a standing rule then picks up new logs as they arrive.
    again = api.post(f"/datasets/{ds}/import-logs", json={"filters": filters, "standing": True}).json()
    assert (again["imported"], again["skipped_duplicates"]) == (0, 4) and again["rule_id"]
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "arrives later"}],
                                   metadata={"run": tag}, store=True)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "not matching"}],
                                   metadata={"run": "nope"}, store=True)
    wait_for(lambda: len(entries_of(api, ds)) == 5, 10)
    assert entries_of(api, ds)[-1]["messages"][-1]["content"] == "Echo: arrives later"
    rules = api.get(f"/datasets/{ds}/import-rules").json()["data"]
    assert [r["id"] for r in rules] == [again["rule_id"]]
    assert api.delete(f"/datasets/{ds}/import-rules/{again['rule_id']}").status_code == 200
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "after rule"}],
                                   metadata={"run": tag}, store=True)
    time.sleep(1.5)
    assert len(entries_of(api, ds)) == 5

    bad = api.post(f"/datasets/{ds}/import-logs", json={"filters": [{"field": "color", "equals": "red"}]})
    assert bad.status_code == 400 and "color" in bad.json()["message"]


# ---- relabel, snapshots ---------------------------------------------------------------------


def test_relabel_keeps_original_as_rejected(api: httpx.Client, dataset: dict) -> None:
    ds = dataset["id"]
    api.post(f"/datasets/{ds}/entries", json={"entries": [
        {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"old {i}"}]}
        for i in range(6)]})
    entries = entries_of(api, ds)
    chosen = [e["id"] for e in entries[:4]]
    resp = api.post(f"/datasets/{ds}/relabel", json={
        "model": "gpt-4o-mini", "entry_ids": chosen, "keep_original_as_rejected": True, "concurrency": 2})
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert job["total"] == 4

    def finished() -> dict | None:
        state = api.get(f"/datasets/{ds}/relabel-jobs/{job['id']}").json()
        return state if state["status"] == "DONE" else None

    state = wait_for(finished, 30)
    assert (state["done"], state["failed"]) == (4, 0)
    after = {e["id"]: e for e in entries_of(api, ds)}
    for i, e in enumerate(entries):
        if e["id"] in chosen:
            assert after[e["id"]]["messages"][-1]["content"] == f"Echo: question {i}"
            assert after[e["id"]]["rejected_message"] == {"role": "assistant", "content": f"old {i}"}
        else:
            assert after[e["id"]]["messages"][-1]["content"] == f"old {i}"
            assert "rejected_message" not in after[e["id"]]

    failing = api.post(f"/datasets/{ds}/relabel", json={"model": "gpt-4o-error", "entry_ids": chosen[:1]}).json()
    state = wait_for(lambda: (s := api.get(f"/datasets/{ds}/relabel-jobs/{failing['id']}").json())["status"] == "DONE"
                     and s, 30)
    assert state["failed"] == 1 and "404" in state["errors"][0]["message"]
    assert api.post(f"/datasets/{ds}/relabel", json={"model": "gpt-4o-mini", "entry_ids": ["nope"]}).status_code == 404


def test_snapshot_is_immutable_and_content_addressed(api: httpx.Client, dataset: dict) -> None:
    ds = dataset["id"]
    api.post(f"/datasets/{ds}/entries", json={"entries": [GOOD, {**GOOD, "split": "TEST"}]})
    api.post(f"/datasets/{ds}/pruning-rules", json={"text": "Count"})
    snap = api.post(f"/datasets/{ds}/snapshots").json()
    content = api.get(f"/datasets/{ds}/snapshots/{snap['id']}/content").content
    assert snap["id"] == hashlib.sha256(content).hexdigest()
    assert content == api.get(f"/datasets/{ds}/export").content
    assert (snap["entry_count"], snap["train_entry_count"], snap["test_entry_count"]) == (2, 1, 1)
    assert snap["pruning_rules"] == ["Count"]
    assert api.post(f"/datasets/{ds}/snapshots").json()["id"] == snap["id"]  # same content, same snapshot

    api.post(f"/datasets/{ds}/entries", json={"entries": [GOOD]})
    newer = api.post(f"/datasets/{ds}/snapshots").json()
    assert newer["id"] != snap["id"] and newer["entry_count"] == 3
    # The first snapshot still reads back exactly as frozen.
    assert api.get(f"/datasets/{ds}/snapshots/{snap['id']}/content").content == content
    assert [s["id"] for s in api.get(f"/datasets/{ds}/snapshots").json()["data"]] == [snap["id"], newer["id"]]
