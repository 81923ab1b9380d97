"""log-ingest's gRPC API: search, latest, export and metadata updates, each position-bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import orjson
from refinery.bus.producer import DurableProducer, EventTooLarge, Position
from refinery.events.request_logs import RequestLogMetadataUpdated, request_log_metadata_updated
from refinery.rpc import logs_pb2, logs_pb2_grpc
from refinery.stores.logstore import FilterError, LogFilter, LogStore, row_to_api, row_to_export, row_to_import

from log_ingest.ingest import Ingestor, PositionTimeout

EXPORT_CHUNK_BYTES = 256 * 1024


def _positions(msg_positions) -> list[Position]:
    return [Position(p.partition, p.offset) for p in msg_positions]


def _filters(msg_filters) -> list[LogFilter]:
    return [LogFilter(f.field, f.value, f.value_type or "string") for f in msg_filters]


UPDATE_CHUNK = 10_000


class LogStoreServicer(logs_pb2_grpc.LogStoreServicer):
    def __init__(
        self, store: LogStore, ingestor: Ingestor, producer: DurableProducer, read_wait_s: float
    ) -> None:
        self._store = store
        self._ingestor = ingestor
        self._producer = producer
        self._read_wait_s = read_wait_s

    async def _bound(self, positions, context: grpc.aio.ServicerContext) -> None:
        try:
            await self._ingestor.wait_for(_positions(positions), self._read_wait_s)
        except PositionTimeout:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "log store is behind earlier writes")

    async def _in_store(self, context: grpc.aio.ServicerContext, fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        except FilterError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def Search(self, request, context):
        await self._bound(request.after, context)
        limit = request.limit if 0 < request.limit <= 1000 else 100
        rows, total = await self._in_store(
            context, self._store.search, request.project_id, _filters(request.filters), limit,
            max(0, request.offset),
        )
        return logs_pb2.SearchResponse(logs_json=orjson.dumps([row_to_api(r) for r in rows]), total=total)

    async def Latest(self, request, context):
        await self._bound(request.after, context)
        row = await self._in_store(context, self._store.latest, request.project_id)
        return logs_pb2.LatestResponse(log_json=orjson.dumps(row_to_api(row)) if row else b"")

    async def UpdateMetadata(self, request, context):
        await self._bound(request.after, context)
        try:
            patch = orjson.loads(request.patch_json or b"{}")
        except orjson.JSONDecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "patch_json is not JSON")
        ids = await self._in_store(
            context, self._store.matching_ids, request.project_id, _filters(request.filters)
        )
        # One event per UPDATE_CHUNK logs: an update of a whole project stays far below the bus's
        # event limit (ids are ~35 bytes each), and the chunks apply in order on the project's partition.
        last = None
        spooled = False
        for start in range(0, len(ids), UPDATE_CHUNK):
            env = request_log_metadata_updated(
                request.project_id, RequestLogMetadataUpdated(log_ids=ids[start:start + UPDATE_CHUNK], patch=patch)
            )
            try:
                pos = await self._producer.publish(request.project_id.encode(), env.to_bytes())
            except EventTooLarge as exc:  # the patch itself is too large: nothing was written for this chunk
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"metadata too large to record: {exc}")
            spooled = spooled or pos is None
            last = pos or last
        if spooled:
            if not await self._producer.wait_spool_drained(self._read_wait_s):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "update recorded but the bus is unreachable")
        elif last is not None:
            await self._bound([logs_pb2.Position(partition=last.partition, offset=last.offset)], context)
        return logs_pb2.UpdateMetadataResponse(matched_logs=len(ids))

    async def Export(self, request, context) -> AsyncIterator[logs_pb2.ExportChunk]:
        await self._bound(request.after, context)
        filters = _filters(request.filters)
        if request.view not in ("", "entries"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown export view {request.view!r}")
        to_line = row_to_import if request.view == "entries" else row_to_export
        queue: asyncio.Queue[bytes | Exception | None] = asyncio.Queue(maxsize=8)
        loop = asyncio.get_running_loop()

        def produce() -> None:
            try:
                buf = bytearray()
                for row in self._store.iter_export(request.project_id, filters):
                    buf += orjson.dumps(to_line(row)) + b"\n"
                    if len(buf) >= EXPORT_CHUNK_BYTES:
                        asyncio.run_coroutine_threadsafe(queue.put(bytes(buf)), loop).result()
                        buf.clear()
                if buf:
                    asyncio.run_coroutine_threadsafe(queue.put(bytes(buf)), loop).result()
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()
            except Exception as exc:
                asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()

        worker = loop.run_in_executor(None, produce)
        while True:
            item = await queue.get()
            if item is None:
                break
            if isinstance(item, FilterError):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(item))
            if isinstance(item, Exception):
                await context.abort(grpc.StatusCode.INTERNAL, "export failed")
                return
            yield logs_pb2.ExportChunk(jsonl=item)
        await worker
