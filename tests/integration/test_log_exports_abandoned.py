"""log-ingest's gRPC API against the real log store (chdb) and broker (Tansu): exports whose client
hangs up give their worker back, heavy requests are admitted a few at a time per project, and one
project's whole-project metadata update does not stop another's logs from being stored and read."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import orjson
import pytest
from log_ingest.ingest import Ingestor
from log_ingest.servicer import Limits, LogStoreServicer
from refinery.bus.producer import DurableProducer, Position
from refinery.bus.topics import ensure_topics
from refinery.events.request_logs import RequestLogRecorded, request_log_recorded
from refinery.grpc_server import client_channel, start_grpc
from refinery.rpc import logs_pb2, logs_pb2_grpc
from refinery.stores.logstore import COLUMNS, LogStore

EXPORT_STREAMS = 2
BIG_LOGS = 2_000


@dataclass
class LogIngest:
    stub: logs_pb2_grpc.LogStoreStub
    store: LogStore
    producer: DurableProducer


def _rows(project: str, n: int, first_seq: int) -> list[list]:
    """Logs stored before any event on the test's topic (version 0: any later bus offset is newer)."""
    payload = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "y" * 1500}]}).decode()
    now = datetime.now(tz=UTC)
    rows = []
    for i in range(n):
        row = dict(
            project_id=project, log_id=f"{project}-{i}", seq=first_seq + i, version=0, received_at=now,
            requested_at=1.0, completed_at=2.0, source="report", provider="openai", model="m", status_code=200,
            error_message=None, completion_id="", cache_hit=False, prompt_tokens=1, completion_tokens=1,
            cost_usd=None, req_payload=payload, resp_payload='{"choices":[]}', resp_openai="", metadata={},
        )
        rows.append([row[c] for c in COLUMNS])
    return rows


@pytest.fixture(scope="module")
async def log_ingest(tansu, tmp_path_factory) -> AsyncIterator[LogIngest]:
    topic = f"logs-{uuid.uuid4().hex[:8]}"
    await ensure_topics(tansu.bootstrap, {topic: 1})
    store = LogStore(f"chdb://{tmp_path_factory.mktemp('chdb')}", read_connections=3)
    store.insert_rows(_rows("big", BIG_LOGS, first_seq=1_000_000))
    producer = DurableProducer(tansu.bootstrap, topic, tmp_path_factory.mktemp("spool"))
    await producer.start()
    ingestor = Ingestor(store, tansu.bootstrap, topic, fetch_wait_ms=20, flush_interval_ms=20)
    await ingestor.start()
    servicer = LogStoreServicer(store, ingestor, producer, read_wait_s=30, limits=Limits(
        read_connections=3, heavy_queries_per_project=2, export_streams=EXPORT_STREAMS,
        export_chunk_bytes=4096))  # ~1,000 chunks per export of "big": far more than any buffer holds
    service = await start_grpc("127.0.0.1", 0, [lambda s: logs_pb2_grpc.add_LogStoreServicer_to_server(servicer, s)])
    channel = client_channel(f"127.0.0.1:{service.port}")
    try:
        yield LogIngest(logs_pb2_grpc.LogStoreStub(channel), store, producer)
    finally:
        await channel.close()
        await service.stop(0)
        await ingestor.stop()
        await producer.stop()
        store.close()


def _after(pos: Position | None) -> list[logs_pb2.Position]:
    return [] if pos is None else [logs_pb2.Position(partition=pos.partition, offset=pos.offset)]


async def _report(li: LogIngest, project: str) -> tuple[str, Position | None]:
    """A log reported for `project`, as the gateway publishes it; its id and position."""
    log_id = uuid.uuid4().hex
    event = request_log_recorded(project, RequestLogRecorded(log_id=log_id, source="report", received_at=1.0,
                                                             model="canary"))
    return log_id, await li.producer.publish(project.encode(), event.to_bytes())


async def _search(li: LogIngest, project: str, after: Position | None = None,
                  filters: list[logs_pb2.Filter] | None = None) -> tuple[list[dict], int]:
    resp = await li.stub.Search(logs_pb2.SearchRequest(project_id=project, after=_after(after), filters=filters or [],
                                                       limit=10), timeout=60)
    return orjson.loads(resp.logs_json), resp.total


async def _retry_busy(call):
    """`call()`, again while it is refused as busy: a hang-up frees its slot a moment later."""
    for _ in range(200):
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
        await asyncio.sleep(0.05)
    raise AssertionError("still refused as busy after its earlier requests had hung up")


async def _export_first_chunk_then_hang_up(li: LogIngest) -> None:
    async def once() -> None:
        call = li.stub.Export(logs_pb2.ExportRequest(project_id="big"), timeout=600)
        try:
            first = await call.read()
            assert first is not grpc.aio.EOF and first.jsonl
        finally:
            call.cancel()

    await _retry_busy(once)


async def _export_all(li: LogIngest) -> list[dict]:
    async def once() -> list[dict]:
        body = b"".join([c.jsonl async for c in li.stub.Export(logs_pb2.ExportRequest(project_id="big"), timeout=600)])
        return [orjson.loads(line) for line in body.splitlines()]

    return await _retry_busy(once)


async def test_exports_abandoned_after_the_first_chunk_leave_ingest_and_reads_working(log_ingest) -> None:
    for _ in range(3 * EXPORT_STREAMS + 1):  # more hang-ups than export threads (and than the default pool)
        await _export_first_chunk_then_hang_up(log_ingest)
    log_id, pos = await _report(log_ingest, "canary-a")
    logs, total = await _search(log_ingest, "canary-a", after=pos)
    assert total == 1 and logs[0]["id"] == log_id
    # Every export thread is free again: an export read to its end gets every log.
    assert len(await _export_all(log_ingest)) == BIG_LOGS


async def test_a_project_over_its_heavy_query_limit_is_told_to_retry_and_others_are_served(log_ingest) -> None:
    held = [log_ingest.stub.Export(logs_pb2.ExportRequest(project_id="big"), timeout=600) for _ in range(2)]
    try:
        for call in held:  # both running, their clients not reading on
            assert (await call.read()).jsonl
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _search(log_ingest, "big")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 2" in refused.value.details() and "retry" in refused.value.details()
        log_id, pos = await _report(log_ingest, "canary-b")
        logs, _ = await _search(log_ingest, "canary-b", after=pos)
        assert [log["id"] for log in logs] == [log_id]
    finally:
        for call in held:
            call.cancel()
    _, total = await _retry_busy(lambda: _search(log_ingest, "big"))
    assert total == BIG_LOGS


async def test_a_whole_project_metadata_update_lets_another_projects_logs_be_stored_and_read(log_ingest) -> None:
    whole = 25_000  # three update events of up to 10,000 logs each
    await asyncio.to_thread(log_ingest.store.insert_rows, _rows("huge", whole, first_seq=2_000_000))
    tag = uuid.uuid4().hex
    update = log_ingest.stub.UpdateMetadata(logs_pb2.UpdateMetadataRequest(  # runs while the rest goes on
        project_id="huge", patch_json=orjson.dumps({"batch": tag})), timeout=120)
    try:
        log_id, pos = await _report(log_ingest, "canary-c")
        logs, _ = await _search(log_ingest, "canary-c", after=pos)
        assert [log["id"] for log in logs] == [log_id]
        assert (await update).matched_logs == whole
    finally:
        update.cancel()  # a no-op once it has answered
    _, total = await _search(log_ingest, "huge", filters=[logs_pb2.Filter(field="metadata.batch", value=tag)])
    assert total == whole
