"""Eval routes: head-to-head, criterion and code evaluations over a dataset's TEST split (OpenPipe runs
them in its web app; Refinery gives them a REST API).

eval owns evaluations, their rows, outputs and judgements; these routes check bodies and render
answers (`gateway.evals_wire`) and translate errors through the EVALS backend (404 an unknown eval,
dataset, model or criterion; 400 a field; 409 a conflict; 503 unavailable).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from refinery.rpc import evals_pb2

from gateway.auth import project_of
from gateway.error_mapping import EVALS, InvalidInput, api_error, call
from gateway.evals_wire import (
    AddModelsIn,
    CreateEvalIn,
    EvalDeletedOut,
    EvalListOut,
    EvalOut,
    EvalRowsOut,
    add_models_request,
    create_request,
    eval_json,
    row_out,
)
from gateway.rendering import json_response

router = APIRouter(prefix="/api/v1")

# Creating reads the whole TEST split and compiles a code grader; the rest are plain reads and writes.
CREATE_DEADLINE_S = 180


async def _rpc(request: Request, method: str, message: Any, deadline_s: float = 60) -> Any:
    return await call(request.app.state.deps.evals, method, message, EVALS, deadline_s)


def _ref(project_id: str, eval_id: str) -> evals_pb2.EvalRef:
    return evals_pb2.EvalRef(project_id=project_id, eval_id=eval_id)


@router.post("/evals", status_code=201, response_model=EvalOut,
             summary="Create an eval over a dataset's TEST split (head_to_head, criterion or code); it runs at once")
async def create_eval(body: CreateEvalIn, request: Request, project_id: str = Depends(project_of)) -> Response:
    try:
        message = create_request(project_id, body)
    except InvalidInput as exc:
        raise api_error(exc) from exc
    created = await _rpc(request, "CreateEval", message, deadline_s=CREATE_DEADLINE_S)
    return json_response(eval_json(created), status=201)


@router.get("/evals", response_model=EvalListOut, summary="List the project's evals, newest first")
async def list_evals(
    request: Request, project_id: str = Depends(project_of),
    dataset_id: str | None = Query(default=None, alias="datasetId", min_length=1, max_length=200,
                                   description="Only the evals of this dataset"),
) -> Response:
    resp = await _rpc(request, "ListEvals", evals_pb2.ListEvalsRequest(project_id=project_id,
                                                                       dataset_id=dataset_id or ""))
    return json_response({"object": "list", "data": [eval_json(e) for e in resp.evals]})


@router.get("/evals/{eval_id}", response_model=EvalOut,
            summary="Get an eval: status, progress, per-model results and, for head_to_head, the win-rate matrix")
async def get_eval(eval_id: str, request: Request, project_id: str = Depends(project_of)) -> Response:
    return json_response(eval_json(await _rpc(request, "GetEval", _ref(project_id, eval_id))))


@router.get("/evals/{eval_id}/rows", response_model=EvalRowsOut,
            summary="The eval's rows: each input, every model's output, and every judgement or grade")
async def list_eval_rows(
    eval_id: str, request: Request, project_id: str = Depends(project_of),
    limit: int = Query(default=100, ge=1, le=1000), offset: int = Query(default=0, ge=0, le=2**31 - 1),
) -> Response:
    resp = await _rpc(request, "ListEvalRows", evals_pb2.ListEvalRowsRequest(
        project_id=project_id, eval_id=eval_id, limit=limit, offset=offset))
    rows = EvalRowsOut(data=[row_out(r) for r in resp.rows], total=resp.total)
    return json_response(rows.model_dump(by_alias=True))


@router.delete("/evals/{eval_id}", response_model=EvalDeletedOut, summary="Delete an eval and its results")
async def delete_eval(eval_id: str, request: Request, project_id: str = Depends(project_of)) -> Response:
    resp = await _rpc(request, "DeleteEval", _ref(project_id, eval_id))
    return json_response(EvalDeletedOut(id=eval_id, deleted=resp.deleted).model_dump(by_alias=True))


@router.post("/evals/{eval_id}/models", response_model=EvalOut,
             summary="Add models to an eval; only their outputs and judgements run")
async def add_models(eval_id: str, body: AddModelsIn, request: Request,
                     project_id: str = Depends(project_of)) -> Response:
    try:
        message = add_models_request(project_id, eval_id, body)
    except InvalidInput as exc:
        raise api_error(exc) from exc
    return json_response(eval_json(await _rpc(request, "AddModels", message)))
