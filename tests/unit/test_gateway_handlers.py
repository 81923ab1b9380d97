"""What the gateway writes to the bus, read back through the in-memory bus by a typed consumer:
a report becomes one `request_log.recorded` on its project's key, with the fields the client sent,
and its acknowledged position binds the project's next read."""

from __future__ import annotations

import types

from gateway.hot_paths import HotPaths
from refinery.bus.producer import Position
from refinery.config import REQUEST_LOGS_TOPIC
from refinery.events.request_logs import RECORDED_V2, RequestLogRecordedV2
from refinery.runtime.memory_bus import MemoryBus
from refinery.runtime.subscriptions import Event, Subscriptions

from tests.unit.key_ring import KeyRing
from tests.unit.test_gateway_hot_paths import KEY, REPORT, _call, _Inner, _Reads


async def test_a_report_reaches_a_typed_consumer_once_on_its_project_key() -> None:
    bus = MemoryBus(partitions=4)
    received: list[Event[RequestLogRecordedV2]] = []
    subs = Subscriptions("reader")

    @subs.on(RECORDED_V2)
    async def recorded(event: Event[RequestLogRecordedV2]) -> None:
        received.append(event)

    bus.subscribe(REQUEST_LOGS_TOPIC, subs)
    deps = types.SimpleNamespace(
        settings=types.SimpleNamespace(max_body_bytes=10_000),
        projects=KeyRing(KEY),
        producer=bus.producer(REQUEST_LOGS_TOPIC), reads=_Reads(), proxy=None)
    status, _ = await _call(HotPaths(_Inner(), deps), REPORT)
    assert status == 200
    [event] = received
    assert (event.project_id, event.data.source, event.data.model) == ("p1", "report", "gpt-4o-mini")
    assert event.data.status_code == 200 and event.data.logged_metadata == {"k": "v"}
    assert event.data.metadata_overrides == {}  # the request's own metadata is not sent twice
    assert event.data.completion_id == "chatcmpl-1" and event.data.log_id == event.aggregate_id
    [record] = bus.records(REQUEST_LOGS_TOPIC)
    assert record.key == b"p1"
    assert deps.reads.acked == [("p1", Position(record.partition, record.offset + 1))]
