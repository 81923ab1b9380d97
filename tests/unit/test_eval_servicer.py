"""eval's gRPC API, in process: the real servicer, store (SQLite) and runner against fake dataset,
model-registry and criteria-judge gRPC servers, the stand-in proxy and a fake grader sandbox (see
`tests/unit/test_eval_runner.py`). Also `autoAddModels`: what a `model.deployed` event adds."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from eval.code_grading import CodeGrader
from eval.dataset_rows import DatasetRows
from eval.deployments import DeployedModels, deployment_subscriptions
from eval.registry import Registry
from eval.runner import EvalRunner
from eval.servicer import EvalsServicer, Limits
from eval.store import EvalStore
from refinery.events import evals as ev
from refinery.events import models as md
from refinery.grpc_server import client_channel, start_grpc
from refinery.rpc import (
    criteria_pb2_grpc,
    datasets_pb2,
    datasets_pb2_grpc,
    evals_pb2,
    evals_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
)

from tests.unit.test_eval_runner import TOKEN, Backends, backends, running

NF, BAD, DOWN = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAVAILABLE


class FakeDatasets(datasets_pb2_grpc.DatasetsServicer):
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def add(self, project_id: str, dataset_id: str, test: int, train: int = 2,
            answer: str = "the reference answer") -> None:
        entries = []
        for i in range(test + train):
            entry: dict[str, Any] = {
                "object": "dataset.entry", "id": f"{dataset_id}-e{i}", "dataset_id": dataset_id,
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"q{i}"},
                             {"role": "assistant", "content": answer}],
                "split": "TEST" if i < test else "TRAIN", "metadata": {}}
            if i == 0:
                entry["tools"] = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
                entry["tool_choice"] = "auto"
            entries.append(entry)
        self.entries[(project_id, dataset_id)] = entries

    async def ListEntries(self, request, context):
        entries = self.entries.get((request.project_id, request.dataset_id))
        if entries is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"dataset {request.dataset_id} not found")
        chosen = [e for e in entries if not request.split or e["split"] == request.split]
        page = chosen[request.offset:request.offset + (request.limit or 100)]
        return datasets_pb2.ListEntriesResponse(entries_json=orjson.dumps(page), total=len(chosen))


class FakeRegistry(models_pb2_grpc.ModelRegistryServicer):
    def __init__(self) -> None:
        self.models: dict[tuple[str, str], models_pb2.Model] = {}

    def add(self, project_id: str, slug: str, dataset_id: str, *, status: str = "DEPLOYED",
            kind: str = "openpipe") -> str:
        model_id = uuid.uuid4().hex
        self.models[(project_id, slug)] = models_pb2.Model(
            id=model_id, slug=slug, dataset_id=dataset_id, status=status,
            training_config_json=orjson.dumps({"provider": kind}))
        return model_id

    async def GetModel(self, request, context):
        model = self.models.get((request.project_id, request.slug))
        if model is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.slug!r} not found")
        return model

    async def ListModels(self, request, context):
        return models_pb2.ListModelsResponse(models=[m for (p, _), m in self.models.items()
                                                     if p == request.project_id])


@dataclass
class Harness:
    stub: evals_pb2_grpc.EvalsStub
    store: EvalStore
    runner: EvalRunner
    deployments: DeployedModels
    b: Backends
    datasets: FakeDatasets
    registry: FakeRegistry


@contextlib.asynccontextmanager
async def service(db: Path) -> AsyncIterator[Harness]:
    datasets, registry = FakeDatasets(), FakeRegistry()
    async with backends(lambda s: datasets_pb2_grpc.add_DatasetsServicer_to_server(datasets, s),
                        lambda s: models_pb2_grpc.add_ModelRegistryServicer_to_server(registry, s)) as b:
        store = EvalStore(f"sqlite:///{db}")
        channel = client_channel(b.grpc_target, token=TOKEN)
        async with running(b, store) as runner:
            reg = Registry(models_pb2_grpc.ModelRegistryStub(channel))
            servicer = EvalsServicer(store, runner, DatasetRows(datasets_pb2_grpc.DatasetsStub(channel)), reg,
                                     criteria_pb2_grpc.CriteriaStub(channel), CodeGrader(b.sandbox),
                                     Limits(max_rows=50, max_event_bytes=32 * 1024))
            server = await start_grpc("127.0.0.1", 0, [lambda s: evals_pb2_grpc.add_EvalsServicer_to_server(
                servicer, s)], token=TOKEN)
            client = client_channel(f"127.0.0.1:{server.port}", token=TOKEN)
            try:
                yield Harness(evals_pb2_grpc.EvalsStub(client), store, runner, DeployedModels(store, reg, runner),
                              b, datasets, registry)
            finally:
                await client.close()
                await server.stop(0)
        await channel.close()
        store.close()


@pytest.fixture(scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    async with service(tmp_path_factory.mktemp("eval") / "eval.db") as harness:
        yield harness


@pytest.fixture
def project() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


async def refused(call: Any, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return str(caught.value.details())


def create(h: Harness, project: str, **kw: Any) -> Any:
    args: dict[str, Any] = {"name": "my eval", "dataset_id": "ds", "type": "head_to_head",
                            "models": ["gpt-4o", "dataset"]}
    args.update(kw)
    return h.stub.CreateEval(evals_pb2.CreateEvalRequest(project_id=project, **args))


async def finished(h: Harness, project: str, eval_id: str) -> evals_pb2.Eval:
    async def check() -> evals_pb2.Eval | None:
        e = await h.stub.GetEval(evals_pb2.EvalRef(project_id=project, eval_id=eval_id))
        return e if e.status in ("COMPLETED", "ERROR") else None

    return await until_async(check)


async def until_async(check: Any, timeout_s: float = 30.0) -> Any:
    end = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < end, "timed out waiting"
        await asyncio.sleep(0.05)


# ---- creating and reading ----------------------------------------------------------------------------------


async def test_a_head_to_head_eval_runs_over_the_test_split_and_reports_results_and_rows(
        h: Harness, project: str) -> None:
    h.datasets.add(project, "ds", test=3, train=4)
    created = await create(h, project, instructions='prefer the output that contains "gpt-4o"')
    assert created.id and created.status == "QUEUED" and created.name == "my eval"
    assert (list(created.models), created.judge_model, created.rows, created.total) == (
        ["gpt-4o", "dataset"], "gpt-4o", 3, 3 * (1 + 1))
    assert created.instructions == 'prefer the output that contains "gpt-4o"' and created.created_at > 0
    done = await finished(h, project, created.id)
    assert (done.status, done.done, done.total, done.comparisons) == ("COMPLETED", 6, 6, 3)
    by = {r.model: r for r in done.results}
    assert [r.model for r in done.results] == ["gpt-4o", "dataset"]
    assert by["gpt-4o"].score == 1.0 and by["gpt-4o"].comparisons == 3 and by["gpt-4o"].scored == 3
    assert by["gpt-4o"].HasField("latency_ms_p50") and by["gpt-4o"].cost_usd > 0
    assert by["dataset"].score == 0.0 and not by["dataset"].HasField("latency_ms_p50")
    cells = {(c.model, c.opponent): c for c in done.matrix}
    assert cells[("gpt-4o", "dataset")].win_rate == 1.0 and cells[("dataset", "gpt-4o")].comparisons == 3

    page = await h.stub.ListEvalRows(evals_pb2.ListEvalRowsRequest(project_id=project, eval_id=created.id,
                                                                   limit=2, offset=1))
    assert page.total == 3 and [r.id for r in page.rows] == ["ds-e1", "ds-e2"]
    first = (await h.stub.ListEvalRows(evals_pb2.ListEvalRowsRequest(project_id=project,
                                                                     eval_id=created.id))).rows[0]
    assert orjson.loads(first.input_json) == {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q0"}],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}], "tool_choice": "auto"}
    assert orjson.loads(first.dataset_output_json) == {"role": "assistant", "content": "the reference answer"}
    generated, own = first.outputs
    assert (generated.model, generated.done, generated.error) == ("gpt-4o", True, "")
    assert orjson.loads(generated.output_json)["content"] == "gpt-4o answers: q0"
    assert generated.latency_ms > 0 and generated.cost_usd > 0
    assert (own.model, own.done, own.output_json) == ("dataset", True, first.dataset_output_json)
    [judged] = first.judgements
    assert (judged.model, judged.opponent, judged.score, judged.winner, judged.done) == (
        "gpt-4o", "dataset", 1.0, "gpt-4o", True)
    assert judged.reasoning.startswith("A/B order (A = gpt-4o): A.")
    sent = h.b.proxy.outputs_for("gpt-4o")
    assert any(r["body"].get("tools") and r["body"]["tool_choice"] == "auto" for r in sent if r["project"] == project)


async def test_bad_requests_are_refused_with_a_message_naming_the_problem_and_nothing_is_written(
        h: Harness, project: str) -> None:
    h.datasets.add(project, "ds", test=2)
    h.datasets.add(project, "train-only", test=0, train=3)
    h.datasets.add(project, "huge", test=51)
    h.registry.add(project, "training", "ds", status="TRAINING")
    h.registry.add(project, "scorer", "ds", kind="openpipeReward")
    cases: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
        ({"dataset_id": "nope"}, NF, "Dataset nope not found"),
        ({"models": ["gpt-4o", "openpipe:nope"]}, NF, "Model nope not found"),
        ({"judge_model": "openpipe:no-judge"}, NF, "Model no-judge not found"),
        ({"type": "criterion", "models": ["dataset"], "criterion": "nope"}, NF, "Criterion nope not found"),
        ({"dataset_id": "train-only"}, BAD,
         "dataset train-only has no TEST entries: an eval runs on the TEST split"),
        ({"dataset_id": "huge"}, BAD, "dataset huge has 51 TEST entries; an eval covers at most 50"),
        ({"type": "code", "models": ["dataset"], "grader": "function grader( { syntax error"}, BAD,
         "grader does not compile: SyntaxError: Unexpected token (grader.ts:1:10)"),
        ({"models": ["gpt-4o"]}, BAD, "a head_to_head eval needs at least 2 models"),
        ({"models": ["gpt-4o", "dataset", "gpt-4o"]}, BAD, "model gpt-4o is listed twice"),
        ({"type": "pairwise"}, BAD, "type must be head_to_head, criterion or code (got 'pairwise')"),
        ({"type": ""}, BAD, "type must be head_to_head, criterion or code (got missing)"),
        ({"name": ""}, BAD, "name is required"),
        ({"dataset_id": ""}, BAD, "datasetId is required"),
        ({"type": "criterion", "models": ["dataset"]}, BAD,
         "criterion is required for a criterion eval (a criterion name or name@vN)"),
        ({"models": ["gpt-4o", "openpipe:training"]}, BAD, "model openpipe:training is not deployed yet (status "
                                                           "TRAINING)"),
        ({"models": ["gpt-4o", "openpipe:scorer"]}, BAD,
         "model openpipe:scorer is a reward model: it scores outputs but cannot generate them"),
    ]
    for kw, code, message in cases:
        assert await refused(create(h, project, **kw), code) == message, kw
    listed = await h.stub.ListEvals(evals_pb2.ListEvalsRequest(project_id=project))
    assert list(listed.evals) == []  # nothing half-written
    assert h.store.in_project(project) == []


async def test_external_provider_models_are_not_looked_up_in_the_registry(h: Harness, project: str) -> None:
    h.datasets.add(project, "ds", test=1)
    created = await create(h, project, models=["openpipe:together/llama-3", "dataset"])
    assert list(created.models) == ["openpipe:together/llama-3", "dataset"]


async def test_a_service_that_does_not_answer_is_unavailable(h: Harness, project: str, tmp_path: Path) -> None:
    dead = client_channel("127.0.0.1:1", token=TOKEN)
    try:
        servicer = EvalsServicer(h.store, h.runner, DatasetRows(datasets_pb2_grpc.DatasetsStub(dead), timeout_s=2),
                                 Registry(models_pb2_grpc.ModelRegistryStub(dead)),
                                 criteria_pb2_grpc.CriteriaStub(dead), CodeGrader(h.b.sandbox))
        server = await start_grpc("127.0.0.1", 0, [lambda s: evals_pb2_grpc.add_EvalsServicer_to_server(
            servicer, s)], token=TOKEN)
        client = client_channel(f"127.0.0.1:{server.port}", token=TOKEN)
        try:
            details = await refused(evals_pb2_grpc.EvalsStub(client).CreateEval(evals_pb2.CreateEvalRequest(
                project_id=project, name="x", dataset_id="ds", type="head_to_head", models=["a", "b"])), DOWN)
            assert details.startswith("dataset service unavailable:")
        finally:
            await client.close()
            await server.stop(0)
    finally:
        await dead.close()


# ---- projects, listing, deleting ---------------------------------------------------------------------------


async def test_every_query_is_filtered_by_project(h: Harness, project: str) -> None:
    h.datasets.add(project, "ds", test=1)
    h.datasets.add(project, "other-ds", test=1)
    mine = await create(h, project)
    other_ds = await create(h, project, dataset_id="other-ds", name="second")
    ref = evals_pb2.EvalRef(project_id="someone-else", eval_id=mine.id)
    message = f"Eval {mine.id} not found"
    assert await refused(h.stub.GetEval(ref), NF) == message
    assert await refused(h.stub.ListEvalRows(evals_pb2.ListEvalRowsRequest(
        project_id="someone-else", eval_id=mine.id)), NF) == message
    assert await refused(h.stub.DeleteEval(ref), NF) == message
    assert await refused(h.stub.AddModels(evals_pb2.AddModelsRequest(
        project_id="someone-else", eval_id=mine.id, models=["gpt-4o-mini"])), NF) == message
    assert list((await h.stub.ListEvals(evals_pb2.ListEvalsRequest(project_id="someone-else"))).evals) == []
    listed = await h.stub.ListEvals(evals_pb2.ListEvalsRequest(project_id=project))
    assert [e.id for e in listed.evals] == [other_ds.id, mine.id]  # newest first
    only = await h.stub.ListEvals(evals_pb2.ListEvalsRequest(project_id=project, dataset_id="ds"))
    assert [e.id for e in only.evals] == [mine.id]
    assert await refused(h.stub.ListEvalRows(evals_pb2.ListEvalRowsRequest(
        project_id=project, eval_id=mine.id, limit=-1)), BAD) == "limit and offset must not be negative"


async def test_delete_removes_the_eval(h: Harness, project: str) -> None:
    h.datasets.add(project, "ds", test=2)
    created = await create(h, project)
    ref = evals_pb2.EvalRef(project_id=project, eval_id=created.id)
    assert (await h.stub.DeleteEval(ref)).deleted is True
    assert await refused(h.stub.GetEval(ref), NF) == f"Eval {created.id} not found"
    assert await refused(h.stub.DeleteEval(ref), NF) == f"Eval {created.id} not found"
    assert [e.type for e in h.store.events(created.id)][-1] == ev.EVAL_DELETED


# ---- adding models -----------------------------------------------------------------------------------------


async def test_add_models_runs_only_the_new_work_and_refuses_what_is_there(h: Harness, project: str) -> None:
    h.datasets.add(project, "ds", test=2)
    h.registry.add(project, "mine", "ds")
    created = await create(h, project, models=["gpt-4o", "dataset"])
    await finished(h, project, created.id)

    def add(*models: str) -> Any:
        return h.stub.AddModels(evals_pb2.AddModelsRequest(project_id=project, eval_id=created.id, models=models))

    assert await refused(add("gpt-4o"), BAD) == "model gpt-4o is already in this eval"
    assert await refused(add("openpipe:ghost"), NF) == "Model ghost not found"
    assert await refused(add(), BAD) == "models must name at least one model"
    assert await refused(add("a", "a"), BAD) == "model a is listed twice"
    seen = len(h.b.proxy.outputs_for("gpt-4o"))
    grown = await add("openpipe:mine")
    assert list(grown.models) == ["gpt-4o", "dataset", "openpipe:mine"] and grown.total == 2 * (2 + 3)
    assert grown.status in ("QUEUED", "RUNNING")
    done = await finished(h, project, created.id)
    assert done.status == "COMPLETED" and done.comparisons == 3 * 2
    assert len(h.b.proxy.outputs_for("gpt-4o")) == seen  # the old outputs were not generated again
    assert len(h.b.proxy.outputs_for("openpipe:mine")) >= 2


# ---- autoAddModels -----------------------------------------------------------------------------------------


async def test_a_model_deployed_on_the_dataset_joins_the_evals_that_add_models_automatically(
        h: Harness, project: str) -> None:
    h.datasets.add(project, "ds", test=2)
    h.datasets.add(project, "elsewhere", test=1)
    auto = await create(h, project, auto_add_models=True)
    manual = await create(h, project, name="manual")
    other = await create(h, project, dataset_id="elsewhere", auto_add_models=True, name="other")
    model_id = h.registry.add(project, "fresh", "ds")
    event = md.model_event(project, model_id, 5, md.MODEL_DEPLOYED, md.ModelDeployed(adapter_key="k",
                                                                                     base_model="base"))
    subs = deployment_subscriptions(h.deployments)
    decoded = subs.decode(event.to_bytes())
    assert decoded is not None
    await subs.deliver(decoded)
    await subs.deliver(decoded)  # redelivered: added once
    got = await h.stub.GetEval(evals_pb2.EvalRef(project_id=project, eval_id=auto.id))
    assert list(got.models) == ["gpt-4o", "dataset", "openpipe:fresh"]
    assert [e.data for e in h.store.events(auto.id) if e.type == ev.EVAL_MODELS_ADDED] == [
        {"models": ["openpipe:fresh"], "reason": "auto"}]
    for untouched in (manual, other):
        e = await h.stub.GetEval(evals_pb2.EvalRef(project_id=project, eval_id=untouched.id))
        assert list(e.models) == ["gpt-4o", "dataset"]
    done = await finished(h, project, auto.id)
    assert {r.model for r in done.results} == {"gpt-4o", "dataset", "openpipe:fresh"}

    reward_id = h.registry.add(project, "scorer", "ds", kind="openpipeReward")
    assert await h.deployments.deployed(project, reward_id, event.occurred_at) == []
    assert await h.deployments.deployed(project, "no-such-model", event.occurred_at) == []
    later = await create(h, project, auto_add_models=True, name="later")
    assert await h.deployments.deployed(project, model_id, event.occurred_at) == []  # deployed before it existed
    assert list((await h.stub.GetEval(evals_pb2.EvalRef(project_id=project, eval_id=later.id))).models) == [
        "gpt-4o", "dataset"]
