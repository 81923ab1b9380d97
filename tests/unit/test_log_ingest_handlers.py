"""log-ingest's storing step, fed from the in-memory bus: logs become rows once, metadata updates
apply in order between the logs around them, and what does not decode is skipped, not stored."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from log_ingest.ingest import Ingestor
from refinery.events.envelope import Envelope
from refinery.events.request_logs import (
    READ_BARRIER,
    RequestLogMetadataUpdated,
    RequestLogRecorded,
    request_log_metadata_updated,
    request_log_recorded,
)
from refinery.runtime.memory_bus import MemoryBus
from refinery.stores.logstore import COLUMNS

TOPIC = "refinery.request-logs"


class RecordingLogStore:
    """The parts of LogStore the storing step calls, kept in memory in call order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.ids: set[tuple[str, str]] = set()
        self.offsets: dict[int, int] = {}

    def existing_ids(self, wanted: dict[str, list[str]]) -> set[tuple[str, str]]:
        return {(p, i) for p, ids in wanted.items() for i in ids if (p, i) in self.ids}

    def insert_rows(self, rows: list[list[Any]]) -> None:
        for row in rows:
            self.ids.add((row[0], row[1]))
        self.calls.append(("insert", [dict(zip(COLUMNS, r, strict=True))["log_id"] for r in rows]))

    def apply_metadata_patch(self, project_id: str, log_ids: list[str], patch: dict, offset: int) -> None:
        self.calls.append(("patch", (project_id, log_ids, patch)))

    def save_offsets(self, topic: str, offsets: dict[int, int]) -> None:
        self.offsets.update(offsets)


def _log(log_id: str) -> RequestLogRecorded:
    return RequestLogRecorded(log_id=log_id, source="report", received_at=1.0, model="m")


async def test_logs_and_updates_are_stored_in_order_once_and_bad_records_skipped() -> None:
    bus = MemoryBus()
    await bus.publish(TOPIC, request_log_recorded("p1", _log("a")))
    await bus.publish(TOPIC, request_log_recorded("p1", _log("a")))  # redelivered
    await bus.publish(TOPIC, request_log_metadata_updated("p1", RequestLogMetadataUpdated(
        log_ids=["a"], patch={"k": "v"})))
    await bus.publish(TOPIC, Envelope(type=READ_BARRIER, aggregate_id="gateway", project_id="", data={}))
    await bus.publish(TOPIC, b"\x00not an event")
    await bus.publish(TOPIC, request_log_recorded("p2", _log("b")))
    store = RecordingLogStore()
    ingestor = Ingestor(store, "127.0.0.1:1", TOPIC)  # type: ignore[arg-type]  # never started: no broker
    records = bus.records(TOPIC)
    ingestor._store_batches({TopicPartition(TOPIC, 0): records}, {0: len(records)})
    assert store.calls == [("insert", ["a"]), ("patch", ("p1", ["a"], {"k": "v"})), ("insert", ["b"])]
    assert ingestor.skipped_duplicates == 1
    assert ingestor.stored_total == 2
    assert store.offsets == {0: 6}
