"""Request-log routes: report, latest call, metadata updates, search and export."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from refinery.events.request_logs import request_log_recorded
from refinery.rpc import logs_pb2

from gateway.auth import project_of
from gateway.errors import ApiError
from gateway.reads import BusUnavailable
from gateway.reporting import ReportAnthropicRequest, ReportRequest, ReportResponse, build_log

router = APIRouter(prefix="/api/v1")

MAX_JSON_DEPTH = 254  # orjson's limit when writing the event

FilterValue = str | float | int | bool | None


class LogFilterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(
        min_length=1,
        description="model, completionId, statusCode, metadata.<key>, tags.<key>, text, from or to",
    )
    equals: FilterValue = None


class UpdateMetadataRequest(BaseModel):
    filters: list[LogFilterIn]
    metadata: dict[str, str | None]


class UpdateTagsRequest(BaseModel):
    filters: list[LogFilterIn]
    tags: dict[str, str | None]


class MatchedLogs(BaseModel):
    matchedLogs: int


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: list[LogFilterIn] = Field(default_factory=list)
    limit: int = Field(default=50, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=2**31 - 1)


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: list[LogFilterIn] = Field(default_factory=list)


def _to_filters(filters: list[LogFilterIn]) -> list[logs_pb2.Filter]:
    out = []
    for f in filters:
        value = f.equals
        if isinstance(value, bool):
            out.append(logs_pb2.Filter(field=f.field, value="true" if value else "false", value_type="bool"))
        elif isinstance(value, (int, float)):
            text = str(int(value)) if float(value).is_integer() else str(value)
            out.append(logs_pb2.Filter(field=f.field, value=text, value_type="number"))
        elif value is None:
            raise ApiError(400, "BAD_REQUEST", "Input validation failed", [f"filter {f.field!r} needs `equals`"])
        else:
            out.append(logs_pb2.Filter(field=f.field, value=value, value_type="string"))
    return out


def _grpc_to_api(exc: grpc.aio.AioRpcError) -> ApiError:
    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return ApiError(400, "BAD_REQUEST", exc.details() or "invalid request", [exc.details() or ""])
    return ApiError(503, "SERVICE_UNAVAILABLE",
                    f"The log store is not available ({exc.code().name}: {exc.details()}); retry shortly")


async def _publish(request: Request, project_id: str, body: ReportRequest, source) -> ReportResponse:
    deps = request.app.state.deps
    try:
        value = request_log_recorded(project_id, build_log(body, source)).to_bytes()
    except orjson.JSONEncodeError as exc:
        raise ApiError(400, "BAD_REQUEST", "Input validation failed", [
            f"reqPayload/respPayload cannot be stored: {exc} (at most {MAX_JSON_DEPTH} levels of nesting "
            "and integers within 64 bits)"]) from exc
    pos = await deps.producer.publish(project_id.encode(), value)
    deps.reads.acknowledged(project_id, pos)
    return ReportResponse(status="ok")


@router.post("/report", response_model=ReportResponse, summary="Record a request log")
async def report(body: ReportRequest, request: Request, project_id: str = Depends(project_of)) -> ReportResponse:
    return await _publish(request, project_id, body, "report")


@router.post("/report-anthropic", response_model=ReportResponse, summary="Record an Anthropic request log")
async def report_anthropic(
    body: ReportAnthropicRequest, request: Request, project_id: str = Depends(project_of)
) -> ReportResponse:
    return await _publish(request, project_id, body, "report-anthropic")


async def _bound_positions(request: Request, project_id: str) -> list[logs_pb2.Position]:
    deps = request.app.state.deps
    if deps.reads.has_spooled(project_id):
        if not await deps.producer.wait_spool_drained(deps.settings.read_wait_s):
            raise ApiError(503, "SERVICE_UNAVAILABLE", "Earlier logs are spooled until the bus is back; retry")
        deps.reads.spool_drained()
    try:
        return await deps.reads.positions(project_id)
    except BusUnavailable as exc:
        raise ApiError(503, "SERVICE_UNAVAILABLE", str(exc)) from exc


@router.get("/local-testing-only-get-latest-logged-call", summary="The project's most recent log")
async def latest_logged_call(request: Request, project_id: str = Depends(project_of)) -> Response:
    after = await _bound_positions(request, project_id)
    try:
        resp = await request.app.state.deps.logs.Latest(
            logs_pb2.LatestRequest(project_id=project_id, after=after), timeout=30
        )
    except grpc.aio.AioRpcError as exc:
        raise _grpc_to_api(exc) from exc
    return Response(resp.log_json or b"null", media_type="application/json")


async def _update(request: Request, project_id: str, filters: list[LogFilterIn], patch: dict) -> MatchedLogs:
    after = await _bound_positions(request, project_id)
    try:
        resp = await request.app.state.deps.logs.UpdateMetadata(
            logs_pb2.UpdateMetadataRequest(
                project_id=project_id, after=after, filters=_to_filters(filters), patch_json=orjson.dumps(patch)
            ),
            timeout=60,
        )
    except grpc.aio.AioRpcError as exc:
        raise _grpc_to_api(exc) from exc
    return MatchedLogs(matchedLogs=resp.matched_logs)


@router.post("/logs/update-metadata", response_model=MatchedLogs, summary="Update metadata of matching logs")
async def update_metadata(
    body: UpdateMetadataRequest, request: Request, project_id: str = Depends(project_of)
) -> MatchedLogs:
    return await _update(request, project_id, body.filters, body.metadata)


@router.post("/logs/update-tags", response_model=MatchedLogs, summary="Older name of update-metadata")
async def update_tags(body: UpdateTagsRequest, request: Request, project_id: str = Depends(project_of)) -> MatchedLogs:
    return await _update(request, project_id, body.filters, body.tags)


@router.post("/logs/search", summary="Search request logs (newest first)")
async def search_logs(body: SearchRequest, request: Request, project_id: str = Depends(project_of)) -> Response:
    after = await _bound_positions(request, project_id)
    try:
        resp = await request.app.state.deps.logs.Search(
            logs_pb2.SearchRequest(
                project_id=project_id, after=after, filters=_to_filters(body.filters),
                limit=body.limit, offset=body.offset,
            ),
            timeout=60,
        )
    except grpc.aio.AioRpcError as exc:
        raise _grpc_to_api(exc) from exc
    out: dict[str, Any] = {
        "object": "list",
        "data": orjson.Fragment(resp.logs_json),
        "total": resp.total,
        "limit": body.limit,
        "offset": body.offset,
    }
    return Response(orjson.dumps(out), media_type="application/json")


@router.post(
    "/logs/export",
    summary="Export matching logs as JSONL (input, output, tags)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def export_logs(body: ExportRequest, request: Request, project_id: str = Depends(project_of)):
    after = await _bound_positions(request, project_id)
    call = request.app.state.deps.logs.Export(
        logs_pb2.ExportRequest(project_id=project_id, after=after, filters=_to_filters(body.filters)), timeout=3600
    )
    # Read the first chunk before answering, so a bad filter is a 400 and not a broken stream.
    try:
        first = await call.read()
    except grpc.aio.AioRpcError as exc:
        raise _grpc_to_api(exc) from exc

    async def chunks():
        if first is grpc.aio.EOF:
            return
        yield first.jsonl
        while (chunk := await call.read()) is not grpc.aio.EOF:
            yield chunk.jsonl

    return StreamingResponse(chunks(), media_type="application/x-ndjson")


