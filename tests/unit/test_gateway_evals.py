"""The eval routes of the gateway's FastAPI app against an in-process Evals gRPC service.

The stand-in keeps evals in memory with the refusals the proto documents (NOT_FOUND naming what,
INVALID_ARGUMENT naming the field, UNAVAILABLE), so what is checked is the REST shape a user sees:
camelCase objects, the head-to-head matrix, rows with outputs and judgements, status codes and the
error body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import orjson
import pytest
from refinery.rpc import evals_pb2, evals_pb2_grpc

from tests.unit.gateway_over_grpc import gateway_over, is_error_body

KEY = "opk-evals-unit"
T0 = 1_700_000_000_000.0
ISO0 = "2023-11-14T22:13:20.000Z"
INPUT = {"messages": [{"role": "user", "content": "What is 2 plus 2?"}]}
DATASET_OUTPUT = {"role": "assistant", "content": "PINEAPPLE 4"}


class _Evals(evals_pb2_grpc.EvalsServicer):
    def __init__(self) -> None:
        self.evals: dict[tuple[str, str], evals_pb2.Eval] = {}
        self.created: list[evals_pb2.CreateEvalRequest] = []
        self.added: list[evals_pb2.AddModelsRequest] = []
        self.row_requests: list[evals_pb2.ListEvalRowsRequest] = []
        self.fail_with: tuple[grpc.StatusCode, str] | None = None

    async def _fail(self, context) -> None:
        if self.fail_with is not None:
            await context.abort(*self.fail_with)

    async def _get(self, context, project_id: str, eval_id: str) -> evals_pb2.Eval:
        e = self.evals.get((project_id, eval_id))
        if e is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Eval {eval_id} not found")
        return e  # type: ignore[return-value]

    async def CreateEval(self, request, context):
        await self._fail(context)
        if request.dataset_id == "ds-missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "Dataset ds-missing not found")
        if request.dataset_id == "ds-empty":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "datasetId: dataset ds-empty has no entries in its TEST split")
        if "openpipe:nope" in request.models:
            await context.abort(grpc.StatusCode.NOT_FOUND, "Model nope not found")
        self.created.append(request)
        eval_id = f"eval-{len(self.evals) + 1}"
        e = evals_pb2.Eval(
            id=eval_id, name=request.name, dataset_id=request.dataset_id, type=request.type, models=request.models,
            status="QUEUED", done=0, total=4 * len(request.models), judge_model=request.judge_model or "gpt-4o"
            if request.type == "head_to_head" else "", instructions=request.instructions,
            criterion=request.criterion, grader=request.grader, auto_add_models=request.auto_add_models, rows=4,
            results=[evals_pb2.ModelResult(model=m) for m in request.models], created_at=T0, updated_at=T0)
        self.evals[(request.project_id, eval_id)] = e
        return e

    async def GetEval(self, request, context):
        return await self._get(context, request.project_id, request.eval_id)

    async def ListEvals(self, request, context):
        await self._fail(context)
        return evals_pb2.ListEvalsResponse(evals=[
            e for (p, _), e in self.evals.items()
            if p == request.project_id and (not request.dataset_id or e.dataset_id == request.dataset_id)])

    async def ListEvalRows(self, request, context):
        await self._get(context, request.project_id, request.eval_id)
        self.row_requests.append(request)
        done = evals_pb2.EvalRow(
            id="entry-1", input_json=orjson.dumps(INPUT), dataset_output_json=orjson.dumps(DATASET_OUTPUT),
            outputs=[
                evals_pb2.ModelOutput(model="openpipe:pineapple",
                                      output_json=orjson.dumps({"role": "assistant", "content": "PINEAPPLE 4"}),
                                      latency_ms=812.5, cost_usd=0.0001, done=True),
                evals_pb2.ModelOutput(model="gpt-4o-error", error="404: The model `gpt-4o-error` does not exist",
                                      latency_ms=12.0, done=True),
                evals_pb2.ModelOutput(model="dataset", output_json=orjson.dumps(DATASET_OUTPUT), done=True),
            ],
            judgements=[
                evals_pb2.RowJudgement(model="openpipe:pineapple", opponent="dataset", score=0.5,
                                       reasoning="A/B order: tie\nB/A order: tie", done=True),
                evals_pb2.RowJudgement(model="openpipe:pineapple", opponent="gpt-4o-error",
                                       error="gpt-4o-error has no output", done=True),
            ])
        pending = evals_pb2.EvalRow(
            id="entry-2", input_json=orjson.dumps(INPUT), dataset_output_json=orjson.dumps(DATASET_OUTPUT),
            outputs=[evals_pb2.ModelOutput(model="openpipe:pineapple")],
            judgements=[evals_pb2.RowJudgement(model="openpipe:pineapple", opponent="dataset")])
        rows = [done, pending][request.offset:request.offset + (request.limit or 100)]
        return evals_pb2.ListEvalRowsResponse(rows=rows, total=2)

    async def DeleteEval(self, request, context):
        await self._get(context, request.project_id, request.eval_id)
        del self.evals[(request.project_id, request.eval_id)]
        return evals_pb2.DeleteEvalResponse(deleted=True)

    async def AddModels(self, request, context):
        e = await self._get(context, request.project_id, request.eval_id)
        for m in request.models:
            if m in e.models:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"models: {m} is already in the eval")
        self.added.append(request)
        e.models.extend(request.models)
        e.results.extend(evals_pb2.ModelResult(model=m) for m in request.models)
        e.total += 4 * len(request.models)
        e.status = "RUNNING"
        return e


class _Api:
    def __init__(self, client: httpx.AsyncClient, service: _Evals) -> None:
        self.client, self.service = client, service

    async def create(self, **body: Any) -> httpx.Response:
        return await self.client.post("/evals", json=body)


@pytest.fixture
async def api() -> AsyncIterator[_Api]:
    service = _Evals()
    async with gateway_over(service, evals_pb2_grpc.add_EvalsServicer_to_server, evals_pb2_grpc.EvalsStub, "evals",
                            KEY) as client:
        yield _Api(client, service)


def _text(resp: httpx.Response) -> str:
    body = resp.json()
    return body["message"] + " " + " ".join(i["message"] for i in body["issues"])


HEAD_TO_HEAD = {"name": "pineapple vs echo", "datasetId": "ds-1", "type": "head_to_head",
                "models": ["openpipe:pineapple", "gpt-4o-mini", "dataset"],
                "instructions": 'prefer the output that contains "PINEAPPLE"'}


async def test_a_head_to_head_eval_is_created_and_rendered_with_its_matrix(api: _Api) -> None:
    created = await api.create(**HEAD_TO_HEAD)
    assert created.status_code == 201, created.text
    assert created.json() == {
        "id": "eval-1", "object": "eval", "name": "pineapple vs echo", "datasetId": "ds-1", "type": "head_to_head",
        "models": ["openpipe:pineapple", "gpt-4o-mini", "dataset"], "status": "QUEUED",
        "progress": {"done": 0, "total": 12}, "rows": 4,
        "results": [{"model": m, "score": None, "errors": 0, "costUsd": 0.0, "latencyMsP50": None, "comparisons": 0}
                    for m in ("openpipe:pineapple", "gpt-4o-mini", "dataset")],
        "comparisons": 0,
        "matrix": {"openpipe:pineapple": {"gpt-4o-mini": None, "dataset": None},
                   "gpt-4o-mini": {"openpipe:pineapple": None, "dataset": None},
                   "dataset": {"openpipe:pineapple": None, "gpt-4o-mini": None}},
        "judgeModel": "gpt-4o", "instructions": 'prefer the output that contains "PINEAPPLE"', "criterion": None,
        "grader": None, "autoAddModels": False, "error": None, "createdAt": ISO0, "updatedAt": ISO0}
    [sent] = api.service.created
    assert (sent.project_id, sent.dataset_id, list(sent.models), sent.type, sent.instructions, sent.judge_model) == (
        "p1", "ds-1", HEAD_TO_HEAD["models"], "head_to_head", HEAD_TO_HEAD["instructions"], "")

    # The service scores as it goes: one direction of a pair is enough, the other is its complement.
    e = api.service.evals[("p1", "eval-1")]
    e.status, e.done, e.comparisons = "COMPLETED", 12, 12
    del e.results[:]
    e.results.extend([
        evals_pb2.ModelResult(model="openpipe:pineapple", score=0.75, cost_usd=0.0004, latency_ms_p50=800.0,
                              comparisons=8, scored=8),
        evals_pb2.ModelResult(model="gpt-4o-mini", score=0.0, cost_usd=0.0002, latency_ms_p50=20.0, comparisons=8,
                              scored=8),
        evals_pb2.ModelResult(model="dataset", score=0.75, comparisons=8, scored=8)])
    e.matrix.extend([
        evals_pb2.MatrixCell(model="openpipe:pineapple", opponent="gpt-4o-mini", win_rate=1.0, comparisons=4),
        evals_pb2.MatrixCell(model="openpipe:pineapple", opponent="dataset", win_rate=0.5, comparisons=4),
        evals_pb2.MatrixCell(model="dataset", opponent="gpt-4o-mini", win_rate=1.0, comparisons=4),
        evals_pb2.MatrixCell(model="gpt-4o-mini", opponent="dataset", comparisons=0)])
    got = (await api.client.get("/evals/eval-1")).json()
    assert (got["status"], got["progress"], got["comparisons"]) == ("COMPLETED", {"done": 12, "total": 12}, 12)
    assert got["results"][0] == {"model": "openpipe:pineapple", "score": 0.75, "errors": 0, "costUsd": 0.0004,
                                 "latencyMsP50": 800.0, "comparisons": 8}
    assert got["results"][2]["latencyMsP50"] is None
    assert got["matrix"] == {
        "openpipe:pineapple": {"gpt-4o-mini": 1.0, "dataset": 0.5},
        "gpt-4o-mini": {"openpipe:pineapple": 0.0, "dataset": 0.0},
        "dataset": {"openpipe:pineapple": 0.5, "gpt-4o-mini": 1.0}}


@pytest.mark.parametrize(("body", "sent"), [
    ({"type": "criterion", "criterion": "no-echo@v2"}, ("no-echo@v2", "")),
    ({"type": "code", "grader": "function grader() { return 1; }"}, ("", "function grader() { return 1; }")),
])
async def test_criterion_and_code_evals_have_no_matrix_and_send_what_they_need(api: _Api, body, sent) -> None:
    created = await api.create(name="one", datasetId="ds-1", models=["gpt-4o-mini"], autoAddModels=True, **body)
    assert created.status_code == 201, created.text
    e = created.json()
    assert "matrix" not in e and "comparisons" not in e and "comparisons" not in e["results"][0]
    assert (e["type"], e["criterion"], e["grader"], e["judgeModel"], e["autoAddModels"]) == (
        body["type"], body.get("criterion"), body.get("grader"), None, True)
    [request] = api.service.created
    assert (request.criterion, request.grader, request.auto_add_models) == (*sent, True)


@pytest.mark.parametrize(("body", "field"), [
    ({**HEAD_TO_HEAD, "models": ["gpt-4o-mini"]}, "at least 2 models"),
    ({**HEAD_TO_HEAD, "models": ["gpt-4o-mini", "dataset", "gpt-4o-mini"]}, "gpt-4o-mini is listed twice"),
    ({**HEAD_TO_HEAD, "models": []}, "models"),
    ({**HEAD_TO_HEAD, "models": ["gpt-4o-mini", ""]}, "models.1"),
    ({**HEAD_TO_HEAD, "type": "vibes"}, "type"),
    ({**HEAD_TO_HEAD, "criterion": "c"}, "criterion cannot be given for a head_to_head eval"),
    ({**HEAD_TO_HEAD, "colour": "red"}, "colour"),
    ({k: v for k, v in HEAD_TO_HEAD.items() if k != "datasetId"}, "datasetId"),
    ({"name": "c", "datasetId": "ds-1", "type": "criterion", "models": ["dataset"]}, "criterion is required"),
    ({"name": "c", "datasetId": "ds-1", "type": "code", "models": ["dataset"]}, "grader is required"),
    ({"name": "c", "datasetId": "ds-1", "type": "code", "models": ["dataset"], "grader": "g",
      "judgeModel": "gpt-4o"}, "judgeModel cannot be given for a code eval"),
    ({**HEAD_TO_HEAD, "autoAddModels": "sometimes"}, "autoAddModels"),
])
async def test_a_bad_create_is_a_400_naming_the_problem_and_nothing_is_created(api: _Api, body, field) -> None:
    resp = await api.create(**body)
    assert resp.status_code == 400, resp.text
    assert is_error_body(resp.json()) and field in _text(resp), _text(resp)
    assert api.service.created == []


async def test_the_services_refusals_keep_their_words_and_map_to_their_statuses(api: _Api) -> None:
    missing_ds = await api.create(**{**HEAD_TO_HEAD, "datasetId": "ds-missing"})
    assert (missing_ds.status_code, missing_ds.json()["message"]) == (404, "Dataset ds-missing not found")
    empty = await api.create(**{**HEAD_TO_HEAD, "datasetId": "ds-empty"})
    assert empty.status_code == 400 and "TEST split" in empty.json()["message"]
    assert is_error_body(empty.json()) and empty.json()["issues"] == [{"message": empty.json()["message"]}]
    model = await api.create(**{**HEAD_TO_HEAD, "models": ["openpipe:nope", "dataset"]})
    assert (model.status_code, model.json()["message"]) == (404, "Model nope not found")
    unknown = await api.client.get("/evals/eval-9")
    assert (unknown.status_code, unknown.json()["message"]) == (404, "Eval eval-9 not found")
    assert (await api.client.get("/evals/eval-9/rows")).status_code == 404
    assert (await api.client.delete("/evals/eval-9")).status_code == 404
    api.service.fail_with = (grpc.StatusCode.UNAVAILABLE, "the store is restarting")
    down = await api.client.get("/evals")
    assert down.status_code == 503
    assert down.json()["message"] == "The eval service is not available (UNAVAILABLE: the store is restarting); retry"


async def test_list_filters_by_dataset_and_delete_removes(api: _Api) -> None:
    assert (await api.create(**HEAD_TO_HEAD)).status_code == 201
    assert (await api.create(**{**HEAD_TO_HEAD, "name": "other", "datasetId": "ds-2"})).status_code == 201
    listed = await api.client.get("/evals")
    assert listed.status_code == 200 and listed.json()["object"] == "list"
    assert [e["id"] for e in listed.json()["data"]] == ["eval-1", "eval-2"]
    only = await api.client.get("/evals", params={"datasetId": "ds-2"})
    assert [e["name"] for e in only.json()["data"]] == ["other"]
    deleted = await api.client.delete("/evals/eval-1")
    assert deleted.json() == {"id": "eval-1", "object": "eval", "deleted": True}
    assert [e["id"] for e in (await api.client.get("/evals")).json()["data"]] == ["eval-2"]


async def test_rows_render_inputs_outputs_and_judgements(api: _Api) -> None:
    assert (await api.create(**HEAD_TO_HEAD)).status_code == 201
    rows = await api.client.get("/evals/eval-1/rows", params={"limit": 10, "offset": 0})
    assert rows.status_code == 200, rows.text
    assert rows.json() == {"object": "list", "total": 2, "data": [
        {"id": "entry-1", "input": INPUT, "datasetOutput": DATASET_OUTPUT,
         "outputs": {
             "openpipe:pineapple": {"output": {"role": "assistant", "content": "PINEAPPLE 4"}, "error": None,
                                    "latencyMs": 812.5, "costUsd": 0.0001, "done": True},
             "gpt-4o-error": {"output": None, "error": "404: The model `gpt-4o-error` does not exist",
                              "latencyMs": 12.0, "costUsd": 0.0, "done": True},
             "dataset": {"output": DATASET_OUTPUT, "error": None, "latencyMs": None, "costUsd": 0.0, "done": True}},
         "judgements": [
             {"model": "openpipe:pineapple", "opponent": "dataset", "score": 0.5, "winner": None,
              "reasoning": "A/B order: tie\nB/A order: tie", "error": None, "done": True},
             {"model": "openpipe:pineapple", "opponent": "gpt-4o-error", "score": None, "winner": None,
              "reasoning": "", "error": "gpt-4o-error has no output", "done": True}]},
        {"id": "entry-2", "input": INPUT, "datasetOutput": DATASET_OUTPUT,
         "outputs": {"openpipe:pineapple": {"output": None, "error": None, "latencyMs": None, "costUsd": None,
                                            "done": False}},
         "judgements": [{"model": "openpipe:pineapple", "opponent": "dataset", "score": None, "winner": None,
                         "reasoning": "", "error": None, "done": False}]}]}
    second = await api.client.get("/evals/eval-1/rows", params={"limit": 1, "offset": 1})
    assert [r["id"] for r in second.json()["data"]] == ["entry-2"] and second.json()["total"] == 2
    assert [(r.limit, r.offset) for r in api.service.row_requests] == [(10, 0), (1, 1)]
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
        bad = await api.client.get("/evals/eval-1/rows", params=params)
        assert bad.status_code == 400 and next(iter(params)) in _text(bad), params


async def test_adding_models_sends_only_the_new_ones(api: _Api) -> None:
    assert (await api.create(**HEAD_TO_HEAD)).status_code == 201
    added = await api.client.post("/evals/eval-1/models", json={"models": ["anthropic:claude-3-5-haiku"]})
    assert added.status_code == 200, added.text
    assert added.json()["models"][-1] == "anthropic:claude-3-5-haiku"
    assert added.json()["progress"]["total"] == 16 and added.json()["status"] == "RUNNING"
    assert set(added.json()["matrix"]["anthropic:claude-3-5-haiku"]) == set(HEAD_TO_HEAD["models"])
    [sent] = api.service.added
    assert (sent.project_id, sent.eval_id, list(sent.models)) == ("p1", "eval-1", ["anthropic:claude-3-5-haiku"])
    again = await api.client.post("/evals/eval-1/models", json={"models": ["dataset"]})
    assert (again.status_code, again.json()["message"]) == (400, "models: dataset is already in the eval")
    for body, field in (({"models": []}, "models"), ({"models": ["a", "a"]}, "a is listed twice"),
                        ({"models": ["a"], "extra": 1}, "extra"), ({}, "models")):
        bad = await api.client.post("/evals/eval-1/models", json=body)
        assert bad.status_code == 400 and field in _text(bad), (body, bad.text)
    assert len(api.service.added) == 1
    missing = await api.client.post("/evals/eval-9/models", json={"models": ["gpt-4o"]})
    assert (missing.status_code, missing.json()["message"]) == (404, "Eval eval-9 not found")


async def test_every_route_needs_the_project_key(api: _Api) -> None:
    assert (await api.create(**HEAD_TO_HEAD)).status_code == 201
    for method, path in (("GET", "/evals"), ("POST", "/evals"), ("GET", "/evals/eval-1"),
                         ("GET", "/evals/eval-1/rows"), ("DELETE", "/evals/eval-1"),
                         ("POST", "/evals/eval-1/models")):
        resp = await api.client.request(method, path, headers={"authorization": "Bearer wrong"},
                                        json={"models": ["gpt-4o"]})
        assert resp.status_code == 401, (method, path)
    assert len(api.service.created) == 1 and api.service.added == [] and ("p1", "eval-1") in api.service.evals


async def test_the_routes_are_in_the_openapi_document_with_their_shapes(api: _Api) -> None:
    doc = (await api.client.get("http://gateway/openapi.json")).json()
    paths = doc["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/evals"])
    assert {"get", "delete"} <= set(paths["/api/v1/evals/{eval_id}"])
    assert "get" in paths["/api/v1/evals/{eval_id}/rows"]
    assert "post" in paths["/api/v1/evals/{eval_id}/models"]
    create = paths["/api/v1/evals"]["post"]
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EvalOut"}
    assert {"400", "404", "503"} <= set(create["responses"]) and "422" not in create["responses"]
    assert [p["name"] for p in paths["/api/v1/evals"]["get"]["parameters"]] == ["datasetId"]
    schemas = doc["components"]["schemas"]
    assert set(schemas["CreateEvalIn"]["required"]) == {"name", "datasetId", "models", "type"}
    assert {"progress", "results", "matrix", "judgeModel", "autoAddModels", "createdAt"} <= set(
        schemas["EvalOut"]["properties"])
    assert {"datasetOutput", "outputs", "judgements"} <= set(schemas["EvalRowOut"]["properties"])
