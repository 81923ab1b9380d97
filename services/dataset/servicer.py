"""The dataset service's gRPC API (see proto/refinery/rpc/datasets.proto).

Store work runs on the servicer's own bounded pools, never the loop's default executor: short
store calls on one, snapshot freezing (a whole dataset hashed and uploaded) on another, and
streams (exports, snapshot reads) on a third, whose threads are given back as soon as the
client reading the stream goes away.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
from refinery.bus.progress import progress_message
from refinery.events.datasets import SnapshotCreated
from refinery.rpc import datasets_pb2, datasets_pb2_grpc, logs_pb2, logs_pb2_grpc
from refinery.runtime.executors import Purpose
from refinery.runtime.streaming import jsonl_chunks, stream_from_thread
from refinery.stores.objectstore import ObjectStore
from refinery.wire.entries import EntryError, apply_pruning_rules, parse_entry
from refinery.wire.json_depth import nests_deeper_than

from dataset import log_filters
from dataset.log_import import RuleConsumer, dicts_to_filters, filters_to_dicts, import_once
from dataset.relabel import RelabelRunner
from dataset.store import DatasetRow, DatasetStore, Invalid, NewEntry, NotFound, row_to_export
from dataset.upload_lines import MAX_LINE_DEPTH, TOO_DEEP
from dataset.uploads import UploadProcessor

CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class Limits:
    """Threads for each kind of work (the settings of the same names)."""

    store_workers: int = 4
    snapshot_workers: int = 1
    stream_workers: int = 8


def _dataset_msg(d: DatasetRow) -> datasets_pb2.Dataset:
    return datasets_pb2.Dataset(
        id=d.id, name=d.name, created_at=d.created_at, updated_at=d.updated_at, entry_count=d.entry_count,
        fine_tune_count=d.fine_tune_count, train_count=d.train_count, test_count=d.test_count,
    )


def _upload_msg(u: dict[str, Any]) -> datasets_pb2.Upload:
    return datasets_pb2.Upload(
        id=u["id"], dataset_id=u["dataset_id"], status=u["status"], filename=u["filename"],
        bytes_total=u["bytes_total"], bytes_processed=u["bytes_processed"], lines_processed=u["lines_processed"],
        entries_created=u["entries_created"], error_count=u["error_count"], errors_json=orjson.dumps(u["errors"]),
        error_message=u["error_message"] or "", created_at=u["created_at"], finished_at=u["finished_at"] or 0.0,
    )


def _job_msg(j: dict[str, Any]) -> datasets_pb2.RelabelJob:
    return datasets_pb2.RelabelJob(
        id=j["id"], dataset_id=j["dataset_id"], status=j["status"], model=j["model"], total=j["total"],
        done=j["done"], failed=j["failed"], errors_json=orjson.dumps(j["errors"]), created_at=j["created_at"],
        finished_at=j["finished_at"] or 0.0,
    )


def _snapshot_msg(s: dict[str, Any]) -> datasets_pb2.Snapshot:
    return datasets_pb2.Snapshot(
        id=s["id"], dataset_id=s["dataset_id"], object_key=s["object_key"], entry_count=s["entry_count"],
        train_count=s["train_count"], test_count=s["test_count"], size_bytes=s["size_bytes"],
        pruning_rules=list(s["pruning_rules"]), created_at=s["created_at"],
    )


class DatasetsServicer(datasets_pb2_grpc.DatasetsServicer):
    def __init__(
        self, store: DatasetStore, objects: ObjectStore, uploads: UploadProcessor, rules: RuleConsumer,
        logs: logs_pb2_grpc.LogStoreStub, relabel: RelabelRunner, limits: Limits | None = None,
    ) -> None:
        self._store = store
        self._objects = objects
        self._uploads = uploads
        self._rules = rules
        self._logs = logs
        self._relabel = relabel
        limits = limits or Limits()
        self._calls = Purpose("dataset.store", limits.store_workers)
        self._snapshots = Purpose("dataset.snapshots", limits.snapshot_workers)
        self._streams = Purpose("dataset.streams", limits.stream_workers)

    async def _call(self, context: grpc.aio.ServicerContext, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run store work off the loop; typed errors become status codes."""
        return await self._on(self._calls, context, fn, *args, **kw)

    async def _on(self, pool: Purpose, context: grpc.aio.ServicerContext, fn: Callable[..., Any], *args: Any,
                  **kw: Any) -> Any:
        try:
            return await pool.run(fn, *args, **kw)
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except (Invalid, EntryError, log_filters.FilterError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    # ---- datasets -----------------------------------------------------------------------

    async def CreateDataset(self, request, context):
        return _dataset_msg(await self._call(context, self._store.datasets.create, request.project_id, request.name))

    async def ListDatasets(self, request, context):
        rows = await self._call(context, self._store.datasets.in_project, request.project_id)
        return datasets_pb2.ListDatasetsResponse(datasets=[_dataset_msg(d) for d in rows])

    async def GetDataset(self, request, context):
        return _dataset_msg(await self._call(context, self._store.datasets.get, request.project_id, request.dataset_id))

    async def DeleteDataset(self, request, context):
        await self._call(context, self._store.datasets.delete, request.project_id, request.dataset_id)
        await self._rules.reload()
        return datasets_pb2.DeleteDatasetResponse()

    # ---- entries ------------------------------------------------------------------------

    async def AddEntries(self, request, context):
        try:
            items = orjson.loads(request.entries_json)
        except orjson.JSONDecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "entries_json is not JSON")
        if not isinstance(items, list):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "entries must be a list")
        good: list[NewEntry] = []
        errors: list[datasets_pb2.EntryError] = []
        deep_possible = request.entries_json.count(b"{") + request.entries_json.count(b"[") > MAX_LINE_DEPTH
        for i, item in enumerate(items):
            try:
                # An entry deeper than an uploaded line may be could not be written into its event.
                if deep_possible and nests_deeper_than(item, MAX_LINE_DEPTH):  # the body was counted once
                    raise EntryError(TOO_DEEP)
                good.append(NewEntry(parse_entry(item)))
            except EntryError as exc:
                errors.append(datasets_pb2.EntryError(index=i, message=str(exc)))
        result = await self._call(context, self._store.entries.add, request.project_id, request.dataset_id, good,
                                  "api")
        return datasets_pb2.AddEntriesResponse(entries_created=result.created, errors=errors)

    async def ListEntries(self, request, context):
        if request.split not in ("", "TRAIN", "TEST"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "split must be TRAIN or TEST")
        limit = request.limit if 0 < request.limit <= 1000 else 100
        rows, total = await self._call(
            context, self._store.entries.page, request.project_id, request.dataset_id, request.split,
            {m.key: m.value for m in request.metadata}, limit, max(0, request.offset),
        )
        return datasets_pb2.ListEntriesResponse(entries_json=orjson.dumps(rows), total=total)

    async def GetEntry(self, request, context):
        row = await self._call(context, self._store.entries.get, request.project_id, request.dataset_id,
                               request.entry_id)
        return datasets_pb2.EntryResponse(entry_json=orjson.dumps(row))

    async def UpdateEntry(self, request, context):
        try:
            patch = orjson.loads(request.patch_json or b"{}")
        except orjson.JSONDecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "patch_json is not JSON")
        if not isinstance(patch, dict):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the update must be a JSON object")
        row = await self._call(context, self._store.entries.update, request.project_id, request.dataset_id,
                               request.entry_id, patch)
        return datasets_pb2.EntryResponse(entry_json=orjson.dumps(row))

    async def DeleteEntry(self, request, context):
        await self._call(context, self._store.entries.delete, request.project_id, request.dataset_id, request.entry_id)
        return datasets_pb2.Empty()

    async def PreviewEntry(self, request, context):
        row = await self._call(context, self._store.entries.get, request.project_id, request.dataset_id,
                               request.entry_id)
        rules = await self._call(context, self._store.pruning_rules.for_dataset, request.project_id, request.dataset_id)
        texts = [r["text"] for r in rules]
        pruned = apply_pruning_rules(row["messages"][:-1], texts) + row["messages"][-1:]
        out = {**row, "messages": pruned, "pruning_rules_applied": [r["id"] for r in rules]}
        return datasets_pb2.EntryResponse(entry_json=orjson.dumps(out))

    # ---- uploads ------------------------------------------------------------------------

    async def UploadFile(self, request_iterator, context):
        first = await anext(aiter(request_iterator), None)
        if first is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty upload stream")
        await self._call(context, self._store.datasets.get, first.project_id, first.dataset_id)

        async def chunks() -> AsyncIterator[bytes]:
            yield first.data
            async for chunk in request_iterator:
                yield chunk.data

        upload = await self._uploads.receive(first.project_id, first.dataset_id, first.filename or "upload.jsonl",
                                             chunks())
        return _upload_msg(upload)

    async def GetUpload(self, request, context):
        return _upload_msg(await self._call(context, self._store.uploads.get, request.project_id, request.dataset_id,
                                            request.upload_id))

    # ---- import from logs ---------------------------------------------------------------

    async def ImportLogs(self, request, context):
        await self._call(context, self._store.datasets.get, request.project_id, request.dataset_id)
        filters = list(request.filters)
        as_dicts = filters_to_dicts(filters)
        await self._call(context, log_filters.check, as_dicts, standing=request.standing)
        after = {p.partition: p.offset for p in request.after}
        rule_id = ""
        if request.standing:
            rule_id = await self._call(context, self._store.import_rules.add, request.project_id, request.dataset_id,
                                       as_dicts)
            for p in await self._rules.fence():
                after[p.partition] = max(after.get(p.partition, 0), p.offset)
        bound = [logs_pb2.Position(partition=k, offset=v) for k, v in after.items()]
        try:
            counts = await import_once(self._store, self._logs, request.project_id, request.dataset_id, filters,
                                       bound)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), f"log store: {exc.details()}")
        return datasets_pb2.ImportLogsResponse(
            imported=counts.imported, skipped_errored=counts.skipped_errored,
            skipped_duplicates=counts.skipped_duplicates, skipped_invalid=counts.skipped_invalid, rule_id=rule_id,
        )

    async def RulesProgress(self, request, context):
        return progress_message("dataset import rules", self._rules.progress(), self._rules.set_aside)

    async def ListImportRules(self, request, context):
        rules = await self._call(context, self._store.import_rules.in_project, request.project_id, request.dataset_id)
        return datasets_pb2.ImportRulesResponse(rules=[datasets_pb2.ImportRule(
            id=r["id"], dataset_id=r["dataset_id"], filters=dicts_to_filters(r["filters"]),
            created_at=r["created_at"], imported=r["imported"]) for r in rules])

    async def DeleteImportRule(self, request, context):
        await self._call(context, self._store.import_rules.delete, request.project_id, request.dataset_id,
                         request.rule_id)
        await self._rules.reload()
        return datasets_pb2.Empty()

    # ---- export -------------------------------------------------------------------------

    async def ExportEntries(self, request, context):
        if request.split not in ("", "TRAIN", "TEST"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "split must be TRAIN or TEST")
        await self._call(context, self._store.datasets.get, request.project_id, request.dataset_id)
        async for chunk in self._stream_rows(request.project_id, request.dataset_id, request.split):
            yield datasets_pb2.JsonlChunk(jsonl=chunk)

    async def _stream_rows(self, project_id: str, dataset_id: str, split: str) -> AsyncIterator[bytes]:
        def chunks() -> Iterable[bytes]:
            return jsonl_chunks(self._store.entries.iter_rows(project_id, dataset_id, split), row_to_export,
                                CHUNK_BYTES)

        # A client that hangs up cancels the handler; closing the stream then frees its thread.
        async with contextlib.aclosing(stream_from_thread(self._streams, chunks)) as stream:
            async for chunk in stream:
                yield chunk

    # ---- pruning rules ------------------------------------------------------------------

    async def AddPruningRule(self, request, context):
        r = await self._call(context, self._store.pruning_rules.add, request.project_id, request.dataset_id,
                             request.text)
        return datasets_pb2.PruningRule(id=r["id"], text=r["text"], created_at=r["created_at"])

    async def ListPruningRules(self, request, context):
        rules = await self._call(context, self._store.pruning_rules.for_dataset, request.project_id, request.dataset_id)
        return datasets_pb2.PruningRulesResponse(rules=[
            datasets_pb2.PruningRule(id=r["id"], text=r["text"], created_at=r["created_at"]) for r in rules])

    async def DeletePruningRule(self, request, context):
        await self._call(context, self._store.pruning_rules.delete, request.project_id, request.dataset_id,
                         request.rule_id)
        return datasets_pb2.Empty()

    # ---- relabel ------------------------------------------------------------------------

    async def StartRelabel(self, request, context):
        if not self._relabel.available:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "relabeling needs proxy-router")
        if not request.model:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "model is required")
        if request.split not in ("", "TRAIN", "TEST"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "split must be TRAIN or TEST")
        concurrency = request.concurrency if 0 < request.concurrency <= 64 else 4
        job = await self._call(
            context, self._store.relabel_jobs.create, request.project_id, request.dataset_id, request.model,
            list(request.entry_ids), request.split, request.keep_original_as_rejected, concurrency,
        )
        self._relabel.launch(job)
        return _job_msg(job)

    async def GetRelabelJob(self, request, context):
        return _job_msg(await self._call(context, self._store.relabel_jobs.get, request.project_id,
                                         request.dataset_id, request.job_id))

    # ---- snapshots ----------------------------------------------------------------------

    async def CreateSnapshot(self, request, context):
        rules = await self._call(context, self._store.pruning_rules.for_dataset, request.project_id, request.dataset_id)
        snap = await self._on(self._snapshots, context, self._freeze, request.project_id, request.dataset_id,
                              [r["text"] for r in rules])
        row = await self._call(context, self._store.snapshots.record, request.project_id, request.dataset_id, snap)
        return _snapshot_msg(row)

    def _freeze(self, project_id: str, dataset_id: str, rules: list[str]) -> SnapshotCreated:
        """Write the dataset's JSONL to a temp file while hashing it, then store it by its hash."""
        digest = hashlib.sha256()
        count = train = test = size = 0
        with tempfile.TemporaryFile() as tmp:
            for row in self._store.entries.iter_rows(project_id, dataset_id):
                line = orjson.dumps(row_to_export(row)) + b"\n"
                digest.update(line)
                tmp.write(line)
                size += len(line)
                count += 1
                if row.split == "TEST":
                    test += 1
                else:
                    train += 1
            sha = digest.hexdigest()
            key = f"snapshots/{project_id}/{dataset_id}/{sha}.jsonl"
            if not self._objects.exists(key):
                tmp.seek(0)
                self._objects.put_stream(key, iter(lambda: tmp.read(1024 * 1024), b""),
                                         content_type="application/x-ndjson")
        return SnapshotCreated(snapshot_id=sha, object_key=key, entry_count=count, train_count=train,
                               test_count=test, size_bytes=size, pruning_rules=rules)

    async def ListSnapshots(self, request, context):
        rows = await self._call(context, self._store.snapshots.for_dataset, request.project_id, request.dataset_id)
        return datasets_pb2.SnapshotsResponse(snapshots=[_snapshot_msg(s) for s in rows])

    async def ReadSnapshot(self, request, context):
        snap = await self._call(context, self._store.snapshots.get, request.project_id, request.dataset_id,
                                request.snapshot_id)
        key = snap["object_key"]
        async with contextlib.aclosing(stream_from_thread(self._streams, lambda: self._objects.iter_chunks(key))
                                       ) as stream:
            async for chunk in stream:
                yield datasets_pb2.JsonlChunk(jsonl=chunk)
