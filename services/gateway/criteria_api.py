"""Criteria routes: Refinery's own management of criteria, versions and alignment sets (OpenPipe
does this in its web app), and the public `POST /criteria/judge`.

criteria-judge owns criteria, their versions, alignment rows, labels and judgements; these routes
check bodies and render answers (`gateway.criteria_wire`) and translate errors through the CRITERIA
backend (404 unknown criterion or version, 400 a field, 409 a taken name, 503 unavailable, 504 a
judge that did not answer in time).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from refinery.rpc import criteria_pb2

from gateway.auth import project_of
from gateway.criteria_wire import (
    AlignmentRowOut,
    AlignmentRowsOut,
    CreateCriterionIn,
    CriteriaListOut,
    CriterionDeletedOut,
    CriterionOut,
    DatasetSampleIn,
    JudgeIn,
    JudgeOut,
    LabelIn,
    RowsAddedOut,
    StatsOut,
    UpdateCriterionIn,
    create_request,
    criterion_out,
    judge_out,
    judge_request,
    row_out,
    stats_out,
    update_request,
)
from gateway.error_mapping import CRITERIA, InvalidInput, api_error, call
from gateway.errors import ApiError
from gateway.rendering import json_response

router = APIRouter(prefix="/api/v1")

MAX_JSONL_BYTES = 10 * 1024 * 1024
JSONL_TYPES = ("application/jsonl", "application/x-ndjson", "text/plain")
# A judgement may wait on an LLM judge (the service bounds each one); the gateway waits a little longer.
JUDGE_DEADLINE_S = 180


async def _rpc(request: Request, method: str, message: Any, deadline_s: float = 60) -> Any:
    return await call(request.app.state.deps.criteria, method, message, CRITERIA, deadline_s)


def _answer(model: Any, status: int = 200) -> Response:
    return json_response(model.model_dump(by_alias=True), status=status)


def _ref(project_id: str, name: str) -> criteria_pb2.CriterionRef:
    return criteria_pb2.CriterionRef(project_id=project_id, name=name)


# ---- the judge API (declared first: `/criteria/judge` is no criterion's name) --------------


@router.post("/criteria/judge", response_model=JudgeOut,
             summary="Get a judgement of a completion against the specified criterion")
async def judge(body: JudgeIn, request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "Judge", judge_request(project_id, body), deadline_s=JUDGE_DEADLINE_S)
    return _answer(judge_out(resp))


# ---- criteria -----------------------------------------------------------------------------


@router.post("/criteria", status_code=201, response_model=CriterionOut,
             summary="Create a criterion (an LLM judge with a prompt, or a reward model); version 1")
async def create_criterion(body: CreateCriterionIn, request: Request, project_id: str = Depends(project_of)):
    try:
        message = create_request(project_id, body)
    except InvalidInput as exc:
        raise api_error(exc) from exc
    return _answer(criterion_out(await _rpc(request, "CreateCriterion", message)), status=201)


@router.get("/criteria", response_model=CriteriaListOut, summary="List the project's criteria")
async def list_criteria(request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "ListCriteria", criteria_pb2.ListCriteriaRequest(project_id=project_id))
    return _answer(CriteriaListOut(data=[criterion_out(c) for c in resp.criteria]))


@router.get("/criteria/{name}", response_model=CriterionOut, summary="Get a criterion with every version")
async def get_criterion(name: str, request: Request, project_id: str = Depends(project_of)):
    return _answer(criterion_out(await _rpc(request, "GetCriterion", _ref(project_id, name))))


@router.patch("/criteria/{name}", response_model=CriterionOut,
              summary="Publish the next version with the given fields changed; older versions stay callable")
async def update_criterion(name: str, body: UpdateCriterionIn, request: Request,
                           project_id: str = Depends(project_of)):
    try:
        message = update_request(project_id, name, body)
    except InvalidInput as exc:
        raise api_error(exc) from exc
    return _answer(criterion_out(await _rpc(request, "UpdateCriterion", message)))


@router.delete("/criteria/{name}", response_model=CriterionDeletedOut, summary="Delete a criterion")
async def delete_criterion(name: str, request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "DeleteCriterion", _ref(project_id, name))
    return _answer(CriterionDeletedOut(name=name, deleted=resp.deleted))


# ---- alignment sets -----------------------------------------------------------------------


_ROWS_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": DatasetSampleIn.model_json_schema(by_alias=True)},
        "application/x-ndjson": {"schema": {"type": "string", "format": "binary", "description": (
            "Fine-tuning JSONL (the last message the output), an optional `judgement` PASS/FAIL per line; "
            "at most 10 MB. Also taken as application/jsonl or text/plain.")}},
    },
}


async def _capped_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as more than `limit` bytes came (never read whole first)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    seen = 0
    async for part in request.stream():
        seen += len(part)
        if seen > limit:
            raise _too_large(limit)
        parts.append(part)
    return b"".join(parts)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "PAYLOAD_TOO_LARGE", f"An alignment set upload is at most {limit // (1024 * 1024)} MB "
                                              f"({limit} bytes)")


def _media_type(request: Request) -> str | None:
    value = request.headers.get("content-type")
    return value.split(";")[0].strip().lower() if value is not None else None


def _rows_source(media: str | None, body: bytes) -> dict[str, Any]:
    """The `source` of AddAlignmentRows for a body of `media` type: raw JSONL, or a dataset sample."""
    if media in JSONL_TYPES:
        return {"jsonl": body}
    if media is not None and not (media == "application/json" or media.endswith("+json")):
        raise ApiError(400, "BAD_REQUEST", f"Content-Type must be application/json (a dataset sample) or one of "
                                           f"{', '.join(JSONL_TYPES)} (JSONL rows), got {media!r}")
    try:
        sample = DatasetSampleIn.model_validate(orjson.loads(body))
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "BAD_REQUEST", "Input validation failed", [f"body is not valid JSON: {exc}"]) from exc
    except ValidationError as exc:
        issues = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
        raise ApiError(400, "BAD_REQUEST", "Input validation failed", issues[:20]) from exc
    return {"dataset": criteria_pb2.DatasetSample(dataset_id=sample.dataset_id, count=sample.count,
                                                  output_model=sample.output_model or "")}


@router.post("/criteria/{name}/alignment-set", response_model=RowsAddedOut, openapi_extra={"requestBody": _ROWS_BODY},
             summary="Add alignment rows: a JSONL body (bad lines reported by number, good ones kept) or a "
                     "random sample of a dataset")
async def add_alignment_rows(name: str, request: Request, project_id: str = Depends(project_of)):
    media = _media_type(request)
    source = _rows_source(media, await _capped_body(request, MAX_JSONL_BYTES))
    resp = await _rpc(request, "AddAlignmentRows", criteria_pb2.AddAlignmentRowsRequest(
        project_id=project_id, name=name, **source), deadline_s=600)
    return _answer(RowsAddedOut.model_validate({
        "added": resp.added, "errors": [{"line": e.line, "message": e.message} for e in resp.errors]}))


@router.get("/criteria/{name}/alignment-set", response_model=AlignmentRowsOut,
            summary="Alignment rows with their human labels and the judge's verdicts for a version")
async def list_alignment_rows(
    name: str, request: Request, project_id: str = Depends(project_of),
    version: int | None = Query(default=None, ge=1, le=2**31 - 1, description="Default: the latest"),
    limit: int = Query(default=100, ge=1, le=1000), offset: int = Query(default=0, ge=0, le=2**31 - 1),
):
    resp = await _rpc(request, "ListAlignmentRows", criteria_pb2.ListAlignmentRowsRequest(
        project_id=project_id, name=name, version=version or 0, limit=limit, offset=offset))
    return _answer(AlignmentRowsOut(version=resp.version, total=resp.total, data=[row_out(r) for r in resp.rows]))


@router.put("/criteria/{name}/alignment-set/{row_id}", response_model=AlignmentRowOut,
            summary="Set (or clear, with null) a row's human label")
async def label_row(name: str, row_id: str, body: LabelIn, request: Request, project_id: str = Depends(project_of)):
    row = await _rpc(request, "LabelRow", criteria_pb2.LabelRowRequest(
        project_id=project_id, name=name, row_id=row_id, human_judgement=body.human_judgement or ""))
    return _answer(row_out(row))


@router.get("/criteria/{name}/stats", response_model=StatsOut,
            summary="Precision, recall and F1 of a version's judge against the human labels (FAIL is positive)")
async def stats(
    name: str, request: Request, project_id: str = Depends(project_of),
    version: int | None = Query(default=None, ge=1, le=2**31 - 1, description="Default: the latest"),
):
    resp = await _rpc(request, "Stats", criteria_pb2.StatsRequest(project_id=project_id, name=name,
                                                                  version=version or 0))
    return _answer(stats_out(resp))
