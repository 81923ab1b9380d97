"""The official `openpipe` SDK against Refinery: reporting, metadata updates, latest call."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from openpipe import OpenAI as OpenPipeOpenAI
from openpipe.client import OpenPipe

from tests.e2e.conftest import search


@pytest.fixture(scope="module")
def op(stack, api_key) -> OpenPipe:
    return OpenPipe(api_key=api_key, base_url=stack.api_base)


@pytest.fixture(scope="module")
def wrapped(stack, api_key, fake_llm) -> OpenPipeOpenAI:
    return OpenPipeOpenAI(
        api_key="sk-fake", base_url=f"{fake_llm}/v1",
        openpipe={"api_key": api_key, "base_url": stack.api_base},
    )


def latest(api: httpx.Client) -> dict:
    resp = api.get("/local-testing-only-get-latest-logged-call")
    assert resp.status_code == 200
    return resp.json()


def test_wrapper_direct_path_reports_the_call(wrapped, api):
    tag = uuid.uuid4().hex
    completion = wrapped.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": f"count {tag}"}],
        metadata={"prompt_id": tag}, openpipe={"tags": {"any_key": "any_value"}},
    )
    last = latest(api)
    assert last["reqPayload"]["messages"][0]["content"] == f"count {tag}"
    assert last["respPayload"]["choices"][0]["message"]["content"] == completion.choices[0].message.content
    assert last["metadata"]["prompt_id"] == tag
    assert last["metadata"]["any_key"] == "any_value"
    assert last["metadata"]["$sdk"] == "python"
    assert last["cacheHit"] is False


def test_wrapper_proxy_path_with_cache_option(wrapped, api):
    tag = uuid.uuid4().hex
    completion = wrapped.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"proxied {tag}"}],
        openpipe={"cache": "readWrite", "tags": {"run": tag}},
    )
    assert completion.choices[0].message.content == f"Echo: proxied {tag}"
    logs = search(api, metadata__run=tag)
    assert len(logs) == 1 and logs[0]["metadata"]["$sdk"] == "python"


def test_report_keeps_payloads_verbatim_and_stringifies_tags(op, api):
    op.report(
        requested_at=int(time.time() * 1000), received_at=int(time.time() * 1000),
        req_payload={"x": "invalid", "metadata": {"k": "v"}}, resp_payload=None, status_code=200,
        tags={"n": 1, "b": True, "gone": None},
    )
    last = latest(api)
    assert last["reqPayload"] == {"x": "invalid", "metadata": {"k": "v"}}
    assert last["respPayload"] is None
    assert last["metadata"] == {"k": "v", "n": "1", "b": "true", "$sdk": "python", "$sdk.version": "5.0.0"}


def test_report_anthropic_shows_openai_view(op, api):
    op.report_anthropic(
        requested_at=int(time.time() * 1000), received_at=int(time.time() * 1000),
        req_payload={"model": "claude-3-opus-20240229", "max_tokens": 10,
                     "messages": [{"role": "user", "content": "hi"}]},
        resp_payload={"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-opus-20240229",
                      "content": [{"type": "text", "text": "Hello there"}], "stop_reason": "end_turn",
                      "usage": {"input_tokens": 3, "output_tokens": 2}},
        status_code=200, metadata={"prompt_id": "anthropic"},
    )
    last = latest(api)
    assert last["reqPayload"]["model"] == "claude-3-opus-20240229"
    assert last["respPayload"]["object"] == "chat.completion"
    assert last["respPayload"]["choices"][0]["message"]["content"] == "Hello there"
    assert last["metadata"]["prompt_id"] == "anthropic"


def test_update_metadata_counts_exactly_and_null_deletes(op, api):
    tag = uuid.uuid4().hex
    cid = f"chatcmpl-{tag}"
    for _ in range(2):
        op.report(
            requested_at=1, received_at=2, status_code=200,
            req_payload={"model": f"model-{tag}", "messages": [], "metadata": {"run": tag, "keep": "yes"}},
            resp_payload={"id": cid, "object": "chat.completion", "choices": []},
        )
    resp = op.update_log_metadata(filters=[{"field": "completionId", "equals": cid}], metadata={"stage": "one"})
    assert resp.matched_logs == 2
    resp = op.update_log_metadata(
        filters=[{"field": "model", "equals": f"model-{tag}"}, {"field": "metadata.run", "equals": tag}],
        metadata={"run": "renamed", "keep": None},
    )
    assert resp.matched_logs == 2
    gone = op.update_log_metadata(filters=[{"field": "metadata.run", "equals": tag}], metadata={"x": "y"})
    assert gone.matched_logs == 0
    last = latest(api)
    assert last["metadata"]["run"] == "renamed"
    assert last["metadata"]["stage"] == "one"
    assert "keep" not in last["metadata"]


def test_export_is_jsonl_in_the_documented_format(op, api):
    tag = uuid.uuid4().hex
    op.report(requested_at=1, received_at=2, status_code=200,
              req_payload={"model": "m", "messages": [{"role": "user", "content": tag}], "metadata": {"run": tag}},
              resp_payload={"id": "c", "choices": [{"message": {"role": "assistant", "content": "ok"}}]})
    resp = api.post("/logs/export", json={"filters": [{"field": "metadata.run", "equals": tag}]})
    assert resp.status_code == 200
    lines = [line for line in resp.text.splitlines() if line]
    assert len(lines) == 1
    import json

    row = json.loads(lines[0])
    assert set(row) == {"input", "output", "tags"}
    assert row["input"]["messages"][0]["content"] == tag
    assert row["tags"]["run"] == tag


def test_projects_are_isolated(admin, stack, op, api):
    created = admin.post("/admin/v1/projects", json={"name": f"other-{uuid.uuid4().hex[:6]}"}).json()
    tag = uuid.uuid4().hex
    op.report(requested_at=1, received_at=2, status_code=200, req_payload={"model": "m", "metadata": {"run": tag}},
              resp_payload=None)
    with httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {created['apiKey']}"}) as other:
        assert other.get("/local-testing-only-get-latest-logged-call").json() is None
        found = other.post("/logs/search", json={"filters": [{"field": "metadata.run", "equals": tag}]}).json()
        assert found["data"] == [] and found["total"] == 0
        assert other.post("/logs/update-metadata", json={
            "filters": [{"field": "metadata.run", "equals": tag}], "metadata": {"x": "1"}}).json() == {"matchedLogs": 0}
    assert len(search(api, metadata__run=tag)) == 1
