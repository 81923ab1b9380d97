"""Hostile inputs to uploads, entry lists and the proxy fail themselves, never the file, the
service or the record.

Each test sends what once failed a whole upload, answered a 503, or lost a proxied call's log,
checks what the client sees, then reports a canary from another project, which must become
searchable (the pattern of `test_poison.py`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from tests.e2e.conftest import search, wait_for
from tests.e2e.test_poison import _canary, other  # noqa: F401  (`other` is a fixture)

MAX_LINE_BYTES = 4 * 1024 * 1024  # the dataset service's default `upload_max_line_bytes`


def _line(i: int, **extra: object) -> bytes:
    return orjson.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
                         **extra})


def _deep(levels: int) -> bytes:
    """A valid entry whose tool schema nests so that the whole line is `levels` deep."""
    inner = b"[" * (levels - 5) + b"]" * (levels - 5)
    return (b'{"messages":[{"role":"user","content":"deep"},{"role":"assistant","content":"a"}],"tools":[{"type":'
            b'"function","function":{"name":"f","parameters":{"type":"object","x":' + inner + b"}}}]}")


@pytest.fixture
def dataset(api: httpx.Client) -> Iterator[str]:
    made = api.post("/datasets", json={"name": f"poison-{uuid.uuid4().hex[:6]}"})
    assert made.status_code == 200, made.text
    yield made.json()["id"]
    api.delete(f"/datasets/{made.json()['id']}")


def _upload(api: httpx.Client, dataset_id: str, body: bytes) -> dict:
    """The upload once processed; it must finish (DONE), whatever its lines held."""
    resp = api.post(f"/datasets/{dataset_id}/uploads", content=body, params={"filename": "poison.jsonl"},
                    headers={"content-type": "application/x-ndjson"}, timeout=120)
    assert resp.status_code == 202, resp.text

    def done() -> dict | None:
        state = api.get(f"/datasets/{dataset_id}/uploads/{resp.json()['id']}").json()
        assert state["status"] != "FAILED", state
        return state if state["status"] == "DONE" else None

    return wait_for(done, timeout_s=60, every_s=0.2)


def _questions(api: httpx.Client, dataset_id: str) -> list[str]:
    rows = api.get(f"/datasets/{dataset_id}/entries", params={"limit": 100}).json()["data"]
    return [r["messages"][0]["content"] for r in rows]


def test_lines_nested_too_deep_fail_alone_and_the_pipeline_flows(api, other, dataset) -> None:  # noqa: F811
    # 300 levels parse but cannot be written back; 2,000 are past what the JSON reader takes at all.
    body = b"\n".join([_line(0), _deep(300), _line(1), _deep(2000), _line(2), _deep(40)]) + b"\n"
    state = _upload(api, dataset, body)
    assert (state["lines_processed"], state["entries_created"], state["error_count"]) == (6, 4, 2)
    assert [e["line"] for e in state["errors"]] == [2, 4]
    assert all("more than 250 levels deep" in e["message"] for e in state["errors"])
    assert _questions(api, dataset) == ["q0", "q1", "q2", "deep"]
    _canary(other)


def test_entries_nested_too_deep_fail_alone_when_posted(api, other, dataset) -> None:  # noqa: F811
    """Posted entries get the uploads' depth limit: a 252-level entry (within what the request may
    carry, past what its event may hold) is refused by index and the others are stored."""
    deep = orjson.loads(_deep(252))
    body = b'{"entries":[' + _line(0) + b"," + orjson.dumps(deep) + b"," + _line(1) + b"]}"
    resp = api.post(f"/datasets/{dataset}/entries", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["entries_created"] == 2, resp.json()
    errors = resp.json()["errors"]["data"]
    assert [e["entry_index"] for e in errors] == [1] and "more than 250 levels deep" in errors[0]["message"], errors
    assert sorted(_questions(api, dataset)) == ["q0", "q1"]
    _canary(other)


def test_over_long_lines_fail_alone_even_without_a_newline(api, other, dataset) -> None:  # noqa: F811
    long_line = b'{"messages":"' + b"x" * MAX_LINE_BYTES + b'"}'
    body = b"\n".join([_line(0), long_line, _line(1), b"x" * (MAX_LINE_BYTES + 1), _line(2), b"y" * (8 << 20)])
    state = _upload(api, dataset, body)  # the last line never ends: no newline after 8 MiB
    assert (state["lines_processed"], state["entries_created"]) == (6, 3)
    assert state["bytes_processed"] == state["bytes_total"] == len(body)
    assert state["errors"] == [
        {"line": n, "message": f"line is {size} bytes, longer than the {MAX_LINE_BYTES} bytes a line may hold; "
                               "it was skipped and the rest of the file read"}
        for n, size in [(2, len(long_line)), (4, MAX_LINE_BYTES + 1), (6, 8 << 20)]]
    assert _questions(api, dataset) == ["q0", "q1", "q2"]
    _canary(other)


@pytest.mark.parametrize("key", ['a"b', '"', "back\\slash", "x.y", "$.x[0]", "ünï ✓", "k" * 2000])
def test_any_metadata_key_lists_its_entries_not_a_5xx(api, other, dataset, key) -> None:  # noqa: F811
    added = api.post(f"/datasets/{dataset}/entries", json={"entries": [
        orjson.loads(_line(0, metadata={key: "v"})), orjson.loads(_line(1, metadata={key: "w", "a": "v"}))]})
    assert added.status_code == 200 and added.json()["entries_created"] == 2, added.text
    resp = api.get(f"/datasets/{dataset}/entries", params={f"metadata.{key}": "v"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["total"] == 1 and resp.json()["data"][0]["metadata"] == {key: "v"}
    _canary(other)


def test_an_anthropic_stream_cut_before_message_stop_is_logged(stack, api_key, api, other) -> None:  # noqa: F811
    tag = uuid.uuid4().hex
    client = openai.OpenAI(base_url=stack.api_base, api_key=api_key, max_retries=0)
    text = ""
    with pytest.raises(openai.APIError, match="ended before message_stop"):
        for chunk in client.chat.completions.create(
            model="anthropic:claude-stream-cut", messages=[{"role": "user", "content": f"cut {tag}"}],
            stream=True, metadata={"run": tag},
        ):
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert text == f"Echo: cut {tag}"
    [log] = search(api, metadata__run=tag)
    assert log["statusCode"] == 502 and "ended before message_stop" in log["errorMessage"]
    assert log["respPayload"]["choices"][0]["message"]["content"] == text
    _canary(other)
