"""Request-log routes: report, latest call, metadata updates, search and export."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from refinery.events.request_logs import LogSource
from refinery.rpc import logs_pb2

from gateway import recording
from gateway.auth import project_of
from gateway.error_mapping import LOG_STORE, call
from gateway.log_reads import LogFilterIn, bound_positions, to_filters
from gateway.rendering import json_response, jsonl_stream, raw_json
from gateway.reporting import ReportAnthropicRequest, ReportRequest, ReportResponse

router = APIRouter(prefix="/api/v1")


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


async def _publish(request: Request, project_id: str, body: ReportRequest, source: LogSource) -> ReportResponse:
    await recording.publish(request.app.state.deps, project_id, recording.report_event(project_id, body, source))
    return ReportResponse(status="ok")


@router.post("/report", response_model=ReportResponse, summary="Record a request log")
async def report(body: ReportRequest, request: Request, project_id: str = Depends(project_of)) -> ReportResponse:
    return await _publish(request, project_id, body, "report")


@router.post("/report-anthropic", response_model=ReportResponse, summary="Record an Anthropic request log")
async def report_anthropic(
    body: ReportAnthropicRequest, request: Request, project_id: str = Depends(project_of)
) -> ReportResponse:
    return await _publish(request, project_id, body, "report-anthropic")


@router.get("/local-testing-only-get-latest-logged-call", summary="The project's most recent log")
async def latest_logged_call(request: Request, project_id: str = Depends(project_of)) -> Response:
    after = await bound_positions(request, project_id)
    resp = await call(request.app.state.deps.logs, "Latest",
                      logs_pb2.LatestRequest(project_id=project_id, after=after), LOG_STORE, deadline_s=30)
    return raw_json(resp.log_json or b"null")


async def _update(request: Request, project_id: str, filters: list[LogFilterIn], patch: dict) -> MatchedLogs:
    after = await bound_positions(request, project_id)
    resp = await call(request.app.state.deps.logs, "UpdateMetadata", logs_pb2.UpdateMetadataRequest(
        project_id=project_id, after=after, filters=to_filters(filters), patch_json=orjson.dumps(patch)), LOG_STORE)
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
    after = await bound_positions(request, project_id)
    resp = await call(request.app.state.deps.logs, "Search", logs_pb2.SearchRequest(
        project_id=project_id, after=after, filters=to_filters(body.filters), limit=body.limit, offset=body.offset,
    ), LOG_STORE)
    out: dict[str, Any] = {
        "object": "list",
        "data": orjson.Fragment(resp.logs_json),
        "total": resp.total,
        "limit": body.limit,
        "offset": body.offset,
    }
    return json_response(out)


@router.post(
    "/logs/export",
    summary="Export matching logs as JSONL (input, output, tags)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def export_logs(body: ExportRequest, request: Request, project_id: str = Depends(project_of)):
    after = await bound_positions(request, project_id)
    stream = request.app.state.deps.logs.Export(
        logs_pb2.ExportRequest(project_id=project_id, after=after, filters=to_filters(body.filters)), timeout=3600
    )
    return await jsonl_stream(stream, LOG_STORE)


class UsageRowOut(BaseModel):
    day: str = Field(description="UTC day, YYYY-MM-DD")
    model: str
    calls: int
    errors: int
    promptTokens: int
    completionTokens: int
    costUsd: float


class UsageTotalsOut(BaseModel):
    calls: int
    errors: int
    promptTokens: int
    completionTokens: int
    costUsd: float


class UsageOut(BaseModel):
    data: list[UsageRowOut]
    totals: UsageTotalsOut


@router.get("/usage", response_model=UsageOut,
            summary="Calls, tokens and cost per day and model, summed from the request logs")
async def usage(
    request: Request,
    project_id: str = Depends(project_of),
    from_ms: int | None = Query(default=None, alias="from", ge=0, description="Start, ms since epoch"),
    to_ms: int | None = Query(default=None, alias="to", ge=0, description="End (exclusive), ms since epoch"),
    model: str | None = Query(default=None, min_length=1, max_length=500),
) -> UsageOut:
    filters = [logs_pb2.Filter(field=name, value=str(value), value_type="number")
               for name, value in (("from", from_ms), ("to", to_ms)) if value is not None]
    if model is not None:
        filters.append(logs_pb2.Filter(field="model", value=model, value_type="string"))
    after = await bound_positions(request, project_id)
    resp = await call(request.app.state.deps.logs, "Usage",
                      logs_pb2.UsageRequest(project_id=project_id, after=after, filters=filters), LOG_STORE)
    rows = [UsageRowOut(day=r.day, model=r.model, calls=r.calls, errors=r.errors, promptTokens=r.prompt_tokens,
                        completionTokens=r.completion_tokens, costUsd=r.cost_usd) for r in resp.rows]
    return UsageOut(data=rows, totals=UsageTotalsOut(
        calls=sum(r.calls for r in rows), errors=sum(r.errors for r in rows),
        promptTokens=sum(r.promptTokens for r in rows), completionTokens=sum(r.completionTokens for r in rows),
        costUsd=sum(r.costUsd for r in rows)))
