"""log-ingest's gRPC API: search, latest, export and metadata updates, each position-bound.

Store calls run on the servicer's own bounded pools (reads, exports), never the loop's default
executor, which stays free for what else runs in the process. Heavy requests (search, export,
metadata update) are admitted a few at a time per project and refused with RESOURCE_EXHAUSTED
beyond that, so one tenant cannot take every read client or export thread.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import orjson
from refinery.bus.producer import DurableProducer, EventTooLarge, Position
from refinery.bus.progress import progress_message
from refinery.events.request_logs import RequestLogMetadataUpdated, request_log_metadata_updated
from refinery.rpc import logs_pb2, logs_pb2_grpc
from refinery.runtime.admission import Admission, Busy
from refinery.runtime.executors import Purpose
from refinery.runtime.streaming import jsonl_chunks, stream_from_thread
from refinery.stores.logstore import FilterError, LogFilter, LogStore, row_to_api, row_to_export, row_to_import

from log_ingest.ingest import Ingestor, PositionTimeout

log = logging.getLogger("refinery.log_ingest")

T = TypeVar("T")

EXPORT_CHUNK_BYTES = 256 * 1024


def _positions(msg_positions: Iterable[Any]) -> list[Position]:
    return [Position(p.partition, p.offset) for p in msg_positions]


def _filters(msg_filters: Iterable[Any]) -> list[LogFilter]:
    return [LogFilter(f.field, f.value, f.value_type or "string", f.op) for f in msg_filters]


UPDATE_CHUNK = 10_000


@dataclass(frozen=True)
class Limits:
    """How much store work runs at once (the settings of the same names)."""

    read_connections: int = 4
    heavy_queries_per_project: int = 2
    export_streams: int = 8
    export_chunk_bytes: int = EXPORT_CHUNK_BYTES


class LogStoreServicer(logs_pb2_grpc.LogStoreServicer):
    def __init__(
        self, store: LogStore, ingestor: Ingestor, producer: DurableProducer, read_wait_s: float,
        limits: Limits | None = None,
    ) -> None:
        self._store = store
        self._ingestor = ingestor
        self._producer = producer
        self._read_wait_s = read_wait_s
        self._limits = limits or Limits()
        # A read thread beyond the store's read clients would only wait for one.
        self._reads = Purpose("log-ingest.reads", self._limits.read_connections)
        self._exports = Purpose("log-ingest.exports", self._limits.export_streams)
        self._heavy = Admission("heavy log queries (search, export, metadata update)",
                                per_key=self._limits.heavy_queries_per_project)
        self._streams = Admission("log exports", per_key=self._limits.export_streams,
                                  total=self._limits.export_streams)

    async def _bound(self, positions: Iterable[Any], context: grpc.aio.ServicerContext) -> None:
        try:
            await self._ingestor.wait_for(_positions(positions), self._read_wait_s)
        except PositionTimeout:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "log store is behind earlier writes")

    async def _admit(self, held: contextlib.ExitStack, admission: Admission, key: str,
                     context: grpc.aio.ServicerContext) -> None:
        """Hold one of `key`'s slots until `held` closes, or refuse: RESOURCE_EXHAUSTED (429)."""
        try:
            held.enter_context(admission.slot(key))
        except Busy as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))

    async def _in_store(self, context: grpc.aio.ServicerContext, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._reads.run(fn, *args)
        except FilterError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # abort raises; this line is for the type checker

    async def Search(self, request, context):
        with contextlib.ExitStack() as held:
            await self._admit(held, self._heavy, request.project_id, context)
            await self._bound(request.after, context)
            limit = request.limit if 0 < request.limit <= 1000 else 100
            rows, total = await self._in_store(
                context, self._store.search, request.project_id, _filters(request.filters), limit,
                max(0, request.offset),
            )
        return logs_pb2.SearchResponse(logs_json=orjson.dumps([row_to_api(r) for r in rows]), total=total)

    async def Usage(self, request, context):
        with contextlib.ExitStack() as held:
            await self._admit(held, self._heavy, request.project_id, context)
            await self._bound(request.after, context)
            rows = await self._in_store(context, self._store.usage, request.project_id, _filters(request.filters))
        return logs_pb2.UsageResponse(rows=[logs_pb2.UsageRow(
            day=r.day, model=r.model, calls=r.calls, errors=r.errors, prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens, cost_usd=r.cost_usd) for r in rows])

    async def Progress(self, request, context):
        return progress_message("log-ingest", self._ingestor.progress(), self._ingestor.set_aside)

    async def Latest(self, request, context):
        await self._bound(request.after, context)
        row = await self._in_store(context, self._store.latest, request.project_id)
        return logs_pb2.LatestResponse(log_json=orjson.dumps(row_to_api(row)) if row else b"")

    async def UpdateMetadata(self, request, context):
        try:
            patch = orjson.loads(request.patch_json or b"{}")
        except orjson.JSONDecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "patch_json is not JSON")
        with contextlib.ExitStack() as held:
            # Held until ingest has applied the update: the patch is the heavy part of it.
            await self._admit(held, self._heavy, request.project_id, context)
            await self._bound(request.after, context)
            ids = await self._in_store(
                context, self._store.matching_ids, request.project_id, _filters(request.filters)
            )
            await self._record_update(request.project_id, ids, patch, context)
        return logs_pb2.UpdateMetadataResponse(matched_logs=len(ids))

    async def _record_update(self, project_id: str, ids: list[str], patch: Any,
                             context: grpc.aio.ServicerContext) -> None:
        # One event per UPDATE_CHUNK logs: an update of a whole project stays far below the bus's
        # event limit (ids are ~35 bytes each), and the chunks apply in order on the project's partition.
        last = None
        spooled = False
        for start in range(0, len(ids), UPDATE_CHUNK):
            env = request_log_metadata_updated(
                project_id, RequestLogMetadataUpdated(log_ids=ids[start:start + UPDATE_CHUNK], patch=patch)
            )
            try:
                pos = await self._producer.publish(project_id.encode(), env.to_bytes())
            except EventTooLarge as exc:  # the patch itself is too large: nothing was written for this chunk
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"metadata too large to record: {exc}")
            spooled = spooled or pos is None
            last = pos or last
        if spooled:
            if not await self._producer.wait_spool_drained(self._read_wait_s):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "update recorded but the bus is unreachable")
        elif last is not None:
            await self._bound([logs_pb2.Position(partition=last.partition, offset=last.offset)], context)

    async def Export(self, request, context) -> AsyncIterator[logs_pb2.ExportChunk]:
        if request.view not in ("", "entries"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown export view {request.view!r}")
        to_line = row_to_import if request.view == "entries" else row_to_export
        project_id, filters = request.project_id, _filters(request.filters)
        with contextlib.ExitStack() as held:
            await self._admit(held, self._heavy, project_id, context)
            await self._admit(held, self._streams, "", context)
            await self._bound(request.after, context)

            def chunks() -> Iterable[bytes]:
                return jsonl_chunks(self._store.iter_export(project_id, filters), to_line,
                                    self._limits.export_chunk_bytes)

            # A client that hangs up cancels this handler; closing the stream then frees its thread.
            async with contextlib.aclosing(stream_from_thread(self._exports, chunks)) as stream:
                try:
                    async for chunk in stream:
                        yield logs_pb2.ExportChunk(jsonl=chunk)
                except FilterError as exc:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                except Exception:
                    log.exception("export of project %s failed", project_id)
                    await context.abort(grpc.StatusCode.INTERNAL, "export failed")
