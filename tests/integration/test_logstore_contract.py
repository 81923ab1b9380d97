"""The log-store contract, run against each backend: embedded chdb; a ClickHouse server where one
is configured with REFINERY_TEST_CLICKHOUSE_DSN; the production image with --production-images."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from refinery.stores.logstore import COLUMNS, FilterError, LogFilter, LogStore, row_to_api, row_to_export

BACKENDS = ["chdb", "container"] + (["server"] if os.environ.get("REFINERY_TEST_CLICKHOUSE_DSN") else [])


@pytest.fixture(scope="module", params=BACKENDS)
def store(request, tmp_path_factory) -> LogStore:
    if request.param == "chdb":
        s = LogStore(f"chdb://{tmp_path_factory.mktemp('chdb')}")
    elif request.param == "container":
        s = LogStore(request.getfixturevalue("clickhouse_container_dsn"), database=f"contract_{os.getpid()}")
    else:
        s = LogStore(os.environ["REFINERY_TEST_CLICKHOUSE_DSN"], database=f"contract_{os.getpid()}")
    yield s
    s.close()


def row(project: str, log_id: str, seq: int, **over) -> list:
    base = dict(
        project_id=project, log_id=log_id, seq=seq, version=seq, received_at=datetime.now(tz=UTC),
        requested_at=1.0, completed_at=2.0, source="report", provider="openai", model="gpt-4o", status_code=200,
        error_message=None, completion_id=f"c-{log_id}", cache_hit=False, prompt_tokens=1, completion_tokens=2,
        cost_usd=None, req_payload='{"model":"gpt-4o","messages":[{"role":"user","content":"Find the needle"}]}',
        resp_payload='{"id":"x"}', resp_openai="", metadata={"run": "a"},
    )
    base.update(over)
    return [base[c] for c in COLUMNS]


def test_search_filters_and_latest(store: LogStore):
    store.insert_rows([row("p1", "l1", 1), row("p1", "l2", 2, model="other", metadata={"run": "b"}),
                       row("p2", "l3", 3)])
    assert store.latest("p1")["log_id"] == "l2"
    rows, total = store.search("p1", [LogFilter("model", "gpt-4o")], 10, 0)
    assert total == 1 and rows[0]["log_id"] == "l1"
    assert store.matching_ids("p1", [LogFilter("metadata.run", "b")]) == ["l2"]
    assert store.matching_ids("p1", [LogFilter("text", "NEEDLE")]) and not store.matching_ids(
        "p1", [LogFilter("text", "haystack")])
    assert sorted(store.matching_ids("p1", [LogFilter("statusCode", "200", "number")])) == ["l1", "l2"]
    with pytest.raises(FilterError):
        store.matching_ids("p1", [LogFilter("bogus", "x")])


def test_metadata_patch_is_versioned_and_idempotent(store: LogStore):
    store.insert_rows([row("pm", "m1", 10, metadata={"a": "1", "b": "2"})])
    assert store.apply_metadata_patch("pm", ["m1"], {"a": None, "c": "3"}, 11) == 1
    assert store.apply_metadata_patch("pm", ["m1"], {"a": None, "c": "3"}, 11) == 0  # replayed event
    assert dict(store.latest("pm")["metadata"]) == {"b": "2", "c": "3"}
    assert store.count("pm") == 1


def test_duplicates_are_detected_and_rows_render(store: LogStore):
    store.insert_rows([row("pd", "d1", 20, resp_payload="")])
    assert store.existing_ids({"pd": ["d1", "d2"]}) == {("pd", "d1")}
    api = row_to_api(store.latest("pd"))
    assert api["respPayload"] is None and api["metadata"] == {"run": "a"}
    exported = list(store.iter_export("pd", [], page=1))
    assert len(exported) == 1 and set(row_to_export(exported[0])) == {"input", "output", "tags"}


def test_contains_and_not_contains_on_request_response_and_metadata(store: LogStore):
    store.insert_rows([
        row("pc", "c1", 30, resp_payload='{"choices":[{"message":{"content":"Blue Whale"}}]}'),
        row("pc", "c2", 31, req_payload='{"messages":[{"role":"user","content":"hay"}]}', metadata={"run": "zeta-9"}),
    ])
    assert store.matching_ids("pc", [LogFilter("request", "NEEDLE", op="contains")]) == ["c1"]
    assert store.matching_ids("pc", [LogFilter("request", "needle", op="not_contains")]) == ["c2"]
    assert store.matching_ids("pc", [LogFilter("response", "whale", op="contains")]) == ["c1"]
    assert store.matching_ids("pc", [LogFilter("metadata.run", "ZETA", op="contains")]) == ["c2"]
    with pytest.raises(FilterError, match="equals only"):
        store.matching_ids("pc", [LogFilter("statusCode", "2", op="contains")])
    with pytest.raises(FilterError, match="contains or notContains"):
        store.matching_ids("pc", [LogFilter("request", "x")])


def test_usage_sums_calls_tokens_cost_and_errors_per_day_and_model(store: LogStore):
    day1 = datetime(2026, 3, 1, 10, tzinfo=UTC)
    day2 = datetime(2026, 3, 2, 23, 59, tzinfo=UTC)
    store.insert_rows([
        row("pu", "u1", 40, received_at=day1, prompt_tokens=10, completion_tokens=5, cost_usd=0.25),
        row("pu", "u2", 41, received_at=day1, prompt_tokens=20, completion_tokens=1, cost_usd=0.5, status_code=500),
        row("pu", "u3", 42, received_at=day2, model="small", prompt_tokens=3, completion_tokens=4),
        row("other", "u4", 43, received_at=day1, prompt_tokens=1000),
    ])
    rows = store.usage("pu", [])
    assert [(r.day, r.model, r.calls, r.errors, r.prompt_tokens, r.completion_tokens, r.cost_usd) for r in rows] == [
        ("2026-03-01", "gpt-4o", 2, 1, 30, 6, 0.75),
        ("2026-03-02", "small", 1, 0, 3, 4, 0.0),
    ]
    since = str(int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000))
    assert [r.model for r in store.usage("pu", [LogFilter("from", since, "number")])] == ["small"]
