"""log-ingest turns typed `request_log.recorded` events into log-store rows, decoded through the
same path its consumer uses: the row must be exactly what the event (as its writers build it) says,
and a record that does not decode is skipped and counted, never stored half."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from log_ingest.rows import event_to_row
from refinery.events.request_logs import (
    METADATA_UPDATED,
    RECORDED,
    RECORDED_V2,
    RequestLogRecorded,
    RequestLogRecordedV2,
    Usage,
    data_metadata,
    request_log_recorded,
)
from refinery.runtime.subscriptions import EventDecoder
from refinery.stores.logstore import COLUMNS


def _decoded(log: RequestLogRecorded | RequestLogRecordedV2):
    event = EventDecoder("test", RECORDED, RECORDED_V2, METADATA_UPDATED).decode(
        request_log_recorded("p1", log).to_bytes())
    assert event is not None
    return event


def test_full_event() -> None:
    log = RequestLogRecorded(
        source="proxy", received_at=1_700_000_000_123.0, requested_at=1.0, completed_at=2.0, provider="anthropic",
        model="claude", status_code=200, req_payload={"messages": [{"role": "user", "content": "hi"}]},
        resp_payload={"type": "message"}, resp_openai={"choices": []}, metadata={"k": "v"}, cache_hit=True,
        usage=Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7), cost_usd=0.5, completion_id="c1")
    row = dict(zip(COLUMNS, event_to_row(_decoded(log), 42), strict=True))
    assert row["project_id"] == "p1" and row["log_id"] == log.log_id
    assert row["seq"] == row["version"] == 42
    assert row["received_at"] == datetime.fromtimestamp(1_700_000_000.123, tz=UTC)
    assert (row["source"], row["provider"], row["model"], row["status_code"]) == ("proxy", "anthropic", "claude", 200)
    assert (row["prompt_tokens"], row["completion_tokens"], row["cost_usd"]) == (3, 4, 0.5)
    assert row["cache_hit"] is True and row["completion_id"] == "c1"
    assert orjson.loads(row["req_payload"]) == log.req_payload
    assert orjson.loads(row["resp_openai"]) == {"choices": []}
    assert row["metadata"] == {"k": "v"}


def test_minimal_event_defaults() -> None:
    log = RequestLogRecorded(source="report", received_at=5.0)
    row = dict(zip(COLUMNS, event_to_row(_decoded(log), 0), strict=True))
    assert (row["model"], row["completion_id"], row["req_payload"], row["resp_payload"]) == ("", "", "", "")
    assert (row["prompt_tokens"], row["cache_hit"], row["provider"], row["metadata"]) == (0, False, "openai", {})


def test_an_event_missing_a_required_field_is_skipped_and_counted() -> None:
    decoder = EventDecoder("test", RECORDED)
    body = orjson.loads(request_log_recorded("p1", RequestLogRecorded(source="report", received_at=1.0)).to_bytes())
    del body["data"]["received_at"]
    assert decoder.decode(orjson.dumps(body), "t:0:7") is None
    assert decoder.stats.malformed == 1


def test_token_counts_the_store_cannot_hold_are_clamped_not_fatal() -> None:
    for sent, stored in ((-1, 0), (2**40, 2**32 - 1), (7, 7)):
        usage = Usage(prompt_tokens=sent, completion_tokens=sent)
        log = RequestLogRecorded(source="report", received_at=5.0, usage=usage)
        row = dict(zip(COLUMNS, event_to_row(_decoded(log), 0), strict=True))
        assert (row["prompt_tokens"], row["completion_tokens"]) == (stored, stored)


def test_a_v2_log_keeps_metadata_once_and_reads_it_merged_with_its_tags() -> None:
    big = "x" * 100_000
    log = RequestLogRecordedV2(
        source="report", received_at=1.0,
        req_payload={"model": "m", "messages": [], "metadata": {"big": big, "n": 3, "gone": "soon", "flag": True}},
        metadata_overrides={"tag": "t", "gone": None, "n": "4"})
    raw = request_log_recorded("p1", log).to_bytes()
    assert orjson.loads(raw)["type"] == RECORDED_V2
    assert raw.count(big.encode()) == 1  # the request's metadata travels once
    row = dict(zip(COLUMNS, event_to_row(_decoded(log), 1), strict=True))
    assert row["metadata"] == {"big": big, "n": "4", "flag": "true", "tag": "t"}
    data = orjson.loads(raw)["data"]
    assert data_metadata(RECORDED_V2, data) == row["metadata"]  # the dataset service's reading agrees


def test_a_v1_log_on_the_topic_is_still_read() -> None:
    log = RequestLogRecorded(source="report", received_at=1.0, req_payload={"metadata": {"a": "1"}},
                             metadata={"a": "1", "tag": "t"})
    raw = request_log_recorded("p1", log).to_bytes()
    assert orjson.loads(raw)["type"] == RECORDED
    row = dict(zip(COLUMNS, event_to_row(_decoded(log), 1), strict=True))
    assert row["metadata"] == {"a": "1", "tag": "t"}
    assert data_metadata(RECORDED, orjson.loads(raw)["data"]) == {"a": "1", "tag": "t"}
