"""Dataset routes: the SDK's `/datasets` API, the deprecated `unstable/dataset*` routes, and
Refinery's own (entries, uploads, import from logs, export, pruning rules, relabel, snapshots).

Every route is a thin translation to the dataset service's gRPC API; the dataset service
owns the data and the rules.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from refinery.rpc import datasets_pb2

from gateway.auth import project_of
from gateway.error_mapping import DATASETS, call
from gateway.errors import ApiError
from gateway.log_reads import LogFilterIn, bound_positions, filter_out, to_filters
from gateway.rendering import input_json, iso, json_response, jsonl_stream, raw_json

router = APIRouter(prefix="/api/v1")

UPLOAD_CHUNK = 1024 * 1024


async def _rpc(request: Request, method: str, message: Any, deadline_s: float = 60) -> Any:
    return await call(request.app.state.deps.datasets, method, message, DATASETS, deadline_s)


def _dataset(d: datasets_pb2.Dataset) -> dict[str, Any]:
    return {
        "object": "dataset", "id": d.id, "name": d.name, "created": iso(d.created_at), "updated": iso(d.updated_at),
        "dataset_entry_count": d.entry_count, "fine_tune_count": d.fine_tune_count,
        "train_entry_count": d.train_count, "test_entry_count": d.test_count,
    }


def _check_entries(entries: list[Any]) -> None:
    """The request schema: metadata is a string-to-string map (the SDK expects a 400 here)."""
    issues = []
    for i, entry in enumerate(entries):
        meta = entry.get("metadata") if isinstance(entry, dict) else None
        if isinstance(meta, dict):
            issues += [f"entries.{i}.metadata.{k}: expected a string" for k, v in meta.items()
                       if not isinstance(v, str)]
    if issues:
        raise ApiError(400, "BAD_REQUEST", "Input validation failed", issues[:20])


# ---- the SDK's /datasets API --------------------------------------------------------------


class CreateDatasetIn(BaseModel):
    name: str = Field(min_length=1, max_length=500)


class EntriesIn(BaseModel):
    entries: list[dict[str, Any]] = Field(min_length=1, max_length=100)


@router.post("/datasets", summary="Create a dataset")
async def create_dataset(body: CreateDatasetIn, request: Request, project_id: str = Depends(project_of)):
    d = await _rpc(request, "CreateDataset", datasets_pb2.CreateDatasetRequest(project_id=project_id, name=body.name))
    return json_response(_dataset(d))


@router.get("/datasets", summary="List datasets")
async def list_datasets(request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "ListDatasets", datasets_pb2.ListDatasetsRequest(project_id=project_id))
    return json_response({"object": "list", "data": [_dataset(d) for d in resp.datasets]})


@router.get("/datasets/{dataset_id}", summary="Get a dataset")
async def get_dataset(dataset_id: str, request: Request, project_id: str = Depends(project_of)):
    d = await _rpc(request, "GetDataset", datasets_pb2.DatasetRef(project_id=project_id, dataset_id=dataset_id))
    return json_response(_dataset(d))


@router.delete("/datasets/{dataset_id}", summary="Delete a dataset")
async def delete_dataset(dataset_id: str, request: Request, project_id: str = Depends(project_of)):
    await _rpc(request, "DeleteDataset", datasets_pb2.DatasetRef(project_id=project_id, dataset_id=dataset_id))
    return json_response({"id": dataset_id, "object": "dataset", "deleted": True})


async def _add_entries(request: Request, project_id: str, dataset_id: str, entries: list[Any]):
    _check_entries(entries)
    return await _rpc(request, "AddEntries", datasets_pb2.AddEntriesRequest(
        project_id=project_id, dataset_id=dataset_id, entries_json=input_json(entries, "entries")))


@router.post("/datasets/{dataset_id}/entries", summary="Add entries (invalid ones are reported by index)")
async def create_entries(dataset_id: str, body: EntriesIn, request: Request, project_id: str = Depends(project_of)):
    resp = await _add_entries(request, project_id, dataset_id, body.entries)
    return json_response({
        "object": "dataset.entries.creation",
        "entries_created": resp.entries_created,
        "errors": {"object": "list", "data": [
            {"object": "dataset.entries.creation.error", "entry_index": e.index, "message": e.message}
            for e in resp.errors]},
    })


@router.get("/datasets/{dataset_id}/entries",
            summary="List entries; filter with `split` and `metadata.<key>=<value>` query parameters")
async def list_entries(
    dataset_id: str, request: Request, project_id: str = Depends(project_of),
    split: Literal["TRAIN", "TEST"] | None = None,
    limit: int = Query(default=100, ge=1, le=1000), offset: int = Query(default=0, ge=0, le=2**31 - 1),
):
    meta = [datasets_pb2.MetadataFilter(key=k.split(".", 1)[1], value=v)
            for k, v in request.query_params.multi_items() if k.startswith("metadata.") and len(k) > 9]
    resp = await _rpc(request, "ListEntries", datasets_pb2.ListEntriesRequest(
        project_id=project_id, dataset_id=dataset_id, split=split or "", metadata=meta, limit=limit, offset=offset))
    return json_response({"object": "list", "data": orjson.Fragment(resp.entries_json), "total": resp.total,
                          "limit": limit, "offset": offset})


@router.get("/datasets/{dataset_id}/entries/{entry_id}", summary="Get an entry")
async def get_entry(dataset_id: str, entry_id: str, request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "GetEntry", datasets_pb2.EntryRef(
        project_id=project_id, dataset_id=dataset_id, entry_id=entry_id))
    return raw_json(resp.entry_json)


class EntryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    rejected_message: dict[str, Any] | None = None
    split: Literal["TRAIN", "TEST"] | None = None
    metadata: dict[str, str] | None = None


@router.patch("/datasets/{dataset_id}/entries/{entry_id}",
              summary="Update an entry (the given fields are replaced, then the entry is revalidated)")
async def update_entry(
    dataset_id: str, entry_id: str, body: EntryPatch, request: Request, project_id: str = Depends(project_of)
):
    patch = body.model_dump(exclude_unset=True)
    resp = await _rpc(request, "UpdateEntry", datasets_pb2.UpdateEntryRequest(
        project_id=project_id, dataset_id=dataset_id, entry_id=entry_id, patch_json=input_json(patch, "the update")))
    return raw_json(resp.entry_json)


@router.delete("/datasets/{dataset_id}/entries/{entry_id}", summary="Delete an entry")
async def delete_entry(dataset_id: str, entry_id: str, request: Request, project_id: str = Depends(project_of)):
    await _rpc(request, "DeleteEntry", datasets_pb2.EntryRef(
        project_id=project_id, dataset_id=dataset_id, entry_id=entry_id))
    return json_response({"id": entry_id, "object": "dataset.entry", "deleted": True})


@router.get("/datasets/{dataset_id}/entries/{entry_id}/pruned",
            summary="The entry with the dataset's pruning rules applied to its input")
async def preview_entry(dataset_id: str, entry_id: str, request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "PreviewEntry", datasets_pb2.EntryRef(
        project_id=project_id, dataset_id=dataset_id, entry_id=entry_id))
    return raw_json(resp.entry_json)


# ---- uploads ------------------------------------------------------------------------------


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _upload(u: datasets_pb2.Upload) -> dict[str, Any]:
    return {
        "object": "dataset.upload", "id": u.id, "dataset_id": u.dataset_id, "status": u.status,
        "filename": u.filename, "bytes_total": u.bytes_total, "bytes_processed": u.bytes_processed,
        "lines_processed": u.lines_processed, "entries_created": u.entries_created, "error_count": u.error_count,
        "errors": orjson.Fragment(u.errors_json or b"[]"), "error_message": u.error_message or None,
        "created": iso(u.created_at), "finished": iso(u.finished_at) if u.finished_at else None,
    }


@router.post(
    "/datasets/{dataset_id}/uploads", status_code=202,
    summary="Upload a JSONL file (OpenAI chat fine-tuning format); validated and imported in the background",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def upload_file(
    dataset_id: str, request: Request, project_id: str = Depends(project_of),
    filename: str = Query(default="upload.jsonl", max_length=500),
):
    # Strings protobuf cannot encode (lone surrogates) are the caller's input, not a 500.
    if not _is_utf8(dataset_id):
        raise ApiError(404, "NOT_FOUND", f"dataset {dataset_id.encode('utf-8', 'replace').decode()} not found")
    if not _is_utf8(filename):
        raise ApiError(400, "BAD_REQUEST", "Input validation failed", ["filename: not valid UTF-8"])
    # An unknown dataset is answered before the body streams: a service that refuses a stream while the
    # gateway still writes it can surface as the transport's INTERNAL error instead of its NOT_FOUND.
    await _rpc(request, "GetDataset", datasets_pb2.DatasetRef(project_id=project_id, dataset_id=dataset_id))
    first = datasets_pb2.UploadChunk(project_id=project_id, dataset_id=dataset_id, filename=filename)

    async def chunks():
        yield first
        buf = bytearray()
        async for part in request.stream():
            buf += part
            if len(buf) >= UPLOAD_CHUNK:
                yield datasets_pb2.UploadChunk(data=bytes(buf))
                buf.clear()
        if buf:
            yield datasets_pb2.UploadChunk(data=bytes(buf))

    u = await _rpc(request, "UploadFile", chunks(), deadline_s=24 * 3600)
    return json_response(_upload(u), status=202)


@router.get("/datasets/{dataset_id}/uploads/{upload_id}", summary="An upload's progress and per-line errors")
async def get_upload(dataset_id: str, upload_id: str, request: Request, project_id: str = Depends(project_of)):
    u = await _rpc(request, "GetUpload", datasets_pb2.UploadRef(
        project_id=project_id, dataset_id=dataset_id, upload_id=upload_id))
    return json_response(_upload(u))


# ---- import from request logs -------------------------------------------------------------


class ImportLogsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: list[LogFilterIn] = Field(default_factory=list)
    standing: bool = Field(default=False, description="Also import matching logs as they arrive")


def _rule(r: datasets_pb2.ImportRule) -> dict[str, Any]:
    return {"object": "dataset.import_rule", "id": r.id, "dataset_id": r.dataset_id,
            "filters": [filter_out(f) for f in r.filters],
            "created": iso(r.created_at), "imported": r.imported}


@router.post("/datasets/{dataset_id}/import-logs",
             summary="Import matching request logs (errored calls and duplicates skipped)")
async def import_logs(dataset_id: str, body: ImportLogsIn, request: Request, project_id: str = Depends(project_of)):
    after = await bound_positions(request, project_id)
    resp = await _rpc(request, "ImportLogs", datasets_pb2.ImportLogsRequest(
        project_id=project_id, dataset_id=dataset_id, filters=to_filters(body.filters), after=after,
        standing=body.standing), deadline_s=3600)
    return json_response({
        "object": "dataset.import", "imported": resp.imported, "skipped_errored": resp.skipped_errored,
        "skipped_duplicates": resp.skipped_duplicates, "skipped_invalid": resp.skipped_invalid,
        "rule_id": resp.rule_id or None})


@router.get("/datasets/{dataset_id}/import-rules", summary="Standing import rules")
async def list_import_rules(dataset_id: str, request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "ListImportRules", datasets_pb2.DatasetRef(project_id=project_id,
                                                                          dataset_id=dataset_id))
    return json_response({"object": "list", "data": [_rule(r) for r in resp.rules]})


@router.delete("/datasets/{dataset_id}/import-rules/{rule_id}", summary="Stop a standing import rule")
async def delete_import_rule(dataset_id: str, rule_id: str, request: Request, project_id: str = Depends(project_of)):
    await _rpc(request, "DeleteImportRule", datasets_pb2.RuleRef(
        project_id=project_id, dataset_id=dataset_id, rule_id=rule_id))
    return json_response({"id": rule_id, "object": "dataset.import_rule", "deleted": True})


# ---- export -------------------------------------------------------------------------------


async def _stream(request: Request, method: str, message: Any) -> StreamingResponse:
    return await jsonl_stream(getattr(request.app.state.deps.datasets, method)(message, timeout=3600), DATASETS)


@router.get("/datasets/{dataset_id}/export", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}},
            summary="Export entries as JSONL (messages, tools, tool_choice, split, rejected_message, metadata)")
async def export_entries(
    dataset_id: str, request: Request, project_id: str = Depends(project_of),
    split: Literal["TRAIN", "TEST"] | None = None,
):
    return await _stream(request, "ExportEntries", datasets_pb2.ExportEntriesRequest(
        project_id=project_id, dataset_id=dataset_id, split=split or ""))


# ---- pruning rules ------------------------------------------------------------------------


class PruningRuleIn(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)


def _pruning(r: datasets_pb2.PruningRule) -> dict[str, Any]:
    return {"object": "dataset.pruning_rule", "id": r.id, "text": r.text, "created": iso(r.created_at)}


@router.post("/datasets/{dataset_id}/pruning-rules", summary="Add a pruning rule (static text removed from inputs)")
async def add_pruning_rule(
    dataset_id: str, body: PruningRuleIn, request: Request, project_id: str = Depends(project_of)
):
    r = await _rpc(request, "AddPruningRule", datasets_pb2.AddPruningRuleRequest(
        project_id=project_id, dataset_id=dataset_id, text=body.text))
    return json_response(_pruning(r))


@router.get("/datasets/{dataset_id}/pruning-rules", summary="The dataset's pruning rules, in order")
async def list_pruning_rules(dataset_id: str, request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "ListPruningRules", datasets_pb2.DatasetRef(project_id=project_id,
                                                                           dataset_id=dataset_id))
    return json_response({"object": "list", "data": [_pruning(r) for r in resp.rules]})


@router.delete("/datasets/{dataset_id}/pruning-rules/{rule_id}", summary="Delete a pruning rule")
async def delete_pruning_rule(dataset_id: str, rule_id: str, request: Request, project_id: str = Depends(project_of)):
    await _rpc(request, "DeletePruningRule", datasets_pb2.RuleRef(
        project_id=project_id, dataset_id=dataset_id, rule_id=rule_id))
    return json_response({"id": rule_id, "object": "dataset.pruning_rule", "deleted": True})


# ---- relabel ------------------------------------------------------------------------------


class RelabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=300)
    entry_ids: list[str] = Field(default_factory=list, max_length=100_000)
    split: Literal["TRAIN", "TEST"] | None = None
    keep_original_as_rejected: bool = Field(default=False, description="Keep the old output as rejected_message")
    concurrency: int = Field(default=4, ge=1, le=64)


def _job(j: datasets_pb2.RelabelJob) -> dict[str, Any]:
    return {"object": "dataset.relabel_job", "id": j.id, "dataset_id": j.dataset_id, "status": j.status,
            "model": j.model, "total": j.total, "done": j.done, "failed": j.failed,
            "errors": orjson.Fragment(j.errors_json or b"[]"), "created": iso(j.created_at),
            "finished": iso(j.finished_at) if j.finished_at else None}


@router.post("/datasets/{dataset_id}/relabel", status_code=202,
             summary="Regenerate entries' outputs with a model (runs in the background)")
async def relabel(dataset_id: str, body: RelabelIn, request: Request, project_id: str = Depends(project_of)):
    j = await _rpc(request, "StartRelabel", datasets_pb2.RelabelRequest(
        project_id=project_id, dataset_id=dataset_id, model=body.model, entry_ids=body.entry_ids,
        split=body.split or "", keep_original_as_rejected=body.keep_original_as_rejected,
        concurrency=body.concurrency))
    return json_response(_job(j), status=202)


@router.get("/datasets/{dataset_id}/relabel-jobs/{job_id}", summary="A relabel job's progress")
async def get_relabel_job(dataset_id: str, job_id: str, request: Request, project_id: str = Depends(project_of)):
    j = await _rpc(request, "GetRelabelJob", datasets_pb2.RelabelJobRef(
        project_id=project_id, dataset_id=dataset_id, job_id=job_id))
    return json_response(_job(j))


# ---- snapshots ----------------------------------------------------------------------------


def _snapshot(s: datasets_pb2.Snapshot) -> dict[str, Any]:
    return {"object": "dataset.snapshot", "id": s.id, "dataset_id": s.dataset_id, "entry_count": s.entry_count,
            "train_entry_count": s.train_count, "test_entry_count": s.test_count, "size_bytes": s.size_bytes,
            "pruning_rules": list(s.pruning_rules), "created": iso(s.created_at)}


@router.post("/datasets/{dataset_id}/snapshots",
             summary="Freeze the dataset into an immutable JSONL snapshot named by its SHA-256")
async def create_snapshot(dataset_id: str, request: Request, project_id: str = Depends(project_of)):
    s = await _rpc(request, "CreateSnapshot", datasets_pb2.DatasetRef(project_id=project_id, dataset_id=dataset_id),
                   deadline_s=3600)
    return json_response(_snapshot(s))


@router.get("/datasets/{dataset_id}/snapshots", summary="The dataset's snapshots")
async def list_snapshots(dataset_id: str, request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "ListSnapshots", datasets_pb2.DatasetRef(project_id=project_id,
                                                                        dataset_id=dataset_id))
    return json_response({"object": "list", "data": [_snapshot(s) for s in resp.snapshots]})


@router.get("/datasets/{dataset_id}/snapshots/{snapshot_id}/content", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}}, summary="A snapshot's JSONL")
async def read_snapshot(dataset_id: str, snapshot_id: str, request: Request, project_id: str = Depends(project_of)):
    return await _stream(request, "ReadSnapshot", datasets_pb2.SnapshotRef(
        project_id=project_id, dataset_id=dataset_id, snapshot_id=snapshot_id))


# ---- deprecated unstable routes -----------------------------------------------------------


class UnstableDatasetRef(BaseModel):
    datasetId: str = Field(min_length=1)


class UnstableEntriesIn(BaseModel):
    datasetId: str = Field(min_length=1)
    entries: list[dict[str, Any]] = Field(min_length=1, max_length=100)


@router.post("/unstable/dataset/create", summary="Deprecated: use POST /datasets")
async def unstable_dataset_create(body: CreateDatasetIn, request: Request, project_id: str = Depends(project_of)):
    d = await _rpc(request, "CreateDataset", datasets_pb2.CreateDatasetRequest(project_id=project_id, name=body.name))
    return json_response({"datasetId": d.id})


@router.post("/unstable/dataset/delete", summary="Deprecated: use DELETE /datasets/{id}")
async def unstable_dataset_delete(body: UnstableDatasetRef, request: Request, project_id: str = Depends(project_of)):
    await _rpc(request, "DeleteDataset", datasets_pb2.DatasetRef(project_id=project_id, dataset_id=body.datasetId))
    return json_response({"datasetId": body.datasetId})


@router.get("/unstable/dataset/list", summary="Deprecated: use GET /datasets")
async def unstable_dataset_list(request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "ListDatasets", datasets_pb2.ListDatasetsRequest(project_id=project_id))
    return json_response([{"id": d.id, "name": d.name, "createdAt": iso(d.created_at), "updatedAt": iso(d.updated_at),
                           "datasetEntryCount": d.entry_count, "fineTuneCount": d.fine_tune_count}
                          for d in resp.datasets])


@router.post("/unstable/dataset-entry/create", summary="Deprecated: use POST /datasets/{id}/entries")
async def unstable_entry_create(body: UnstableEntriesIn, request: Request, project_id: str = Depends(project_of)):
    resp = await _add_entries(request, project_id, body.datasetId, body.entries)
    return json_response({"createdEntries": resp.entries_created,
                          "errors": [{"index": e.index, "message": e.message} for e in resp.errors]})
