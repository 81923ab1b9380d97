"""log-ingest turns typed `request_log.recorded` events into log-store rows, decoded through the
same path its consumer uses: the row must be exactly what the event (as its writers build it) says,
and a record that does not decode is skipped and counted, never stored half."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from log_ingest.rows import event_to_row
from refinery.events.request_logs import METADATA_UPDATED, RECORDED, RequestLogRecorded, Usage, request_log_recorded
from refinery.runtime.subscriptions import EventDecoder
from refinery.stores.logstore import COLUMNS


def _decoded(log: RequestLogRecorded):
    event = EventDecoder("test", RECORDED, METADATA_UPDATED).decode(request_log_recorded("p1", log).to_bytes())
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
