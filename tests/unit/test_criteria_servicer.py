"""criteria-judge's gRPC API, in process: the real servicer, store (SQLite), judges and background
judging, against fake model-registry / inference / dataset gRPC servers and a stand-in for
proxy-router that forwards to the fake upstream (whose judge is deterministic).

The stand-ins are reused by the integration tests (`tests/integration/test_criteria_service.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from criteria_judge.alignment import AlignmentWorker
from criteria_judge.judging import Judges, LlmJudge, RewardJudge, RewardModels
from criteria_judge.resolution import Resolver
from criteria_judge.sampling import DatasetSampler
from criteria_judge.servicer import CriteriaServicer, Limits
from criteria_judge.store import CriteriaStore
from refinery import internal_auth
from refinery.grpc_server import GrpcService, client_channel, start_grpc
from refinery.proxy_client import ProxyClient
from refinery.rpc import (
    criteria_pb2,
    criteria_pb2_grpc,
    datasets_pb2,
    datasets_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
)

from tests.fakes.upstream import build_app

TOKEN = "criteria-tests-internal-token-0123"
NO_PARIS = 'Mark it failed if it names the city: the criterion fails if the output contains "Paris".'
NO_ROME = 'The criterion fails if the output contains "Rome".'
SLOW_JUDGE = "slow-judge"  # the stand-in proxy answers it after 5 s


# ---- stand-ins for the services criteria-judge calls ------------------------------------------------


class FakeRegistry(models_pb2_grpc.ModelRegistryServicer):
    def __init__(self) -> None:
        self.models: dict[tuple[str, str], models_pb2.Model] = {}

    def add(self, project_id: str, slug: str, *, kind: str = "openpipeReward", status: str = "DEPLOYED") -> str:
        model_id = uuid.uuid4().hex
        self.models[(project_id, slug)] = models_pb2.Model(
            id=model_id, slug=slug, status=status,
            training_config_json=orjson.dumps({"provider": kind, "baseModel": "base"}))
        return model_id

    async def GetModel(self, request, context):
        model = self.models.get((request.project_id, request.slug))
        if model is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.slug!r} not found")
        return model


class FakeInference(inference_pb2_grpc.InferenceServicer):
    """Scores +2 when the answer says "chosen", else -2; remembers what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[dict[str, Any]], bytes]] = []

    async def ScoreReward(self, request, context):
        messages = orjson.loads(request.messages_json)
        self.calls.append((request.model_id, messages, request.tools_json))
        reward = 2.0 if "chosen" in str(messages[-1].get("content")) else -2.0
        return inference_pb2.RewardResponse(reward=reward, score=1 / (1 + math.exp(-reward)),
                                            tokens=len(request.messages_json) // 4)


class FakeDatasets(datasets_pb2_grpc.DatasetsServicer):
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], list[dict[str, Any]]] = {}

    async def ListEntries(self, request, context):
        entries = self.entries.get((request.project_id, request.dataset_id))
        if entries is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"dataset {request.dataset_id} not found")
        page = entries[request.offset:request.offset + (request.limit or 100)]
        return datasets_pb2.ListEntriesResponse(entries_json=orjson.dumps(page), total=len(entries))


@dataclass
class StandInProxy:
    """proxy-router's internal chat completions, reduced to what criteria-judge relies on: the service
    token and the project header are required, the call goes to the fake upstream."""

    upstream: str
    token: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay_ms: float = 0.0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.Response:
        if request.headers.get(internal_auth.HEADER) != self.token:
            return web.json_response({"message": "unauthorized"}, status=401)
        project = request.headers.get("x-refinery-project-id")
        if not project:
            return web.json_response({"message": "missing project"}, status=401)
        body = await request.json()
        self.requests.append({"project": project, "headers": dict(request.headers), "body": body})
        delay = self.delay_ms
        if body.get("model") == SLOW_JUDGE:
            body["model"], delay = "gpt-4o", 5000
        async with aiohttp.ClientSession() as session, session.post(
                f"{self.upstream}/v1/chat/completions", json=body,
                headers={"authorization": "Bearer sk-fake", "x-fake-delay-ms": str(delay)}) as resp:
            return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")


@dataclass
class Backends:
    """The fake upstream, the stand-in proxy and one gRPC server with the fake registry, inference and
    dataset service: what a criteria-judge under test talks to."""

    proxy: StandInProxy
    proxy_url: str
    grpc_target: str
    registry: FakeRegistry
    inference: FakeInference
    datasets: FakeDatasets


@contextlib.asynccontextmanager
async def backends() -> AsyncIterator[Backends]:
    previous = internal_auth.current_token()
    internal_auth.use_token(TOKEN)
    upstream = TestServer(build_app(delay_ms=0))
    await upstream.start_server()
    proxy = StandInProxy(str(upstream.make_url("")).rstrip("/"), TOKEN)
    proxy_server = TestServer(proxy.app())
    await proxy_server.start_server()
    registry, inference, datasets = FakeRegistry(), FakeInference(), FakeDatasets()
    fakes: GrpcService = await start_grpc("127.0.0.1", 0, [
        lambda s: models_pb2_grpc.add_ModelRegistryServicer_to_server(registry, s),
        lambda s: inference_pb2_grpc.add_InferenceServicer_to_server(inference, s),
        lambda s: datasets_pb2_grpc.add_DatasetsServicer_to_server(datasets, s),
    ], token=TOKEN)
    try:
        yield Backends(proxy, str(proxy_server.make_url("")).rstrip("/"), f"127.0.0.1:{fakes.port}", registry,
                       inference, datasets)
    finally:
        await fakes.stop(0)
        await proxy_server.close()
        await upstream.close()
        internal_auth.use_token(previous)


@dataclass
class Harness:
    stub: criteria_pb2_grpc.CriteriaStub
    store: CriteriaStore
    worker: AlignmentWorker
    judges: Judges
    b: Backends


@contextlib.asynccontextmanager
async def service(b: Backends, db: Path) -> AsyncIterator[Harness]:
    """criteria-judge's parts as `criteria_judge.main` wires them, minus the bus."""
    store = CriteriaStore(f"sqlite:///{db}")
    proxy = ProxyClient(b.proxy_url)
    await proxy.start()
    channel = client_channel(b.grpc_target)
    reward_models = RewardModels(models_pb2_grpc.ModelRegistryStub(channel))
    judges = Judges(LlmJudge(proxy).judge,
                    RewardJudge(reward_models, inference_pb2_grpc.InferenceStub(channel)).judge, 5.0)
    worker = AlignmentWorker(store, judges, 4, retry_delay_s=0.05)
    task = asyncio.create_task(worker.run())
    sampler = DatasetSampler(datasets_pb2_grpc.DatasetsStub(channel), proxy, 4, 5.0)
    servicer = CriteriaServicer(store, judges, Resolver(store, reward_models), reward_models, sampler, worker,
                                Limits(max_event_bytes=256 * 1024, max_line_bytes=64 * 1024, max_alignment_rows=100))
    server = await start_grpc("127.0.0.1", 0, [lambda s: criteria_pb2_grpc.add_CriteriaServicer_to_server(
        servicer, s)], token=TOKEN)
    client = client_channel(f"127.0.0.1:{server.port}")
    try:
        yield Harness(criteria_pb2_grpc.CriteriaStub(client), store, worker, judges, b)
    finally:
        await client.close()
        await server.stop(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await channel.close()
        await proxy.stop()
        store.close()


@pytest.fixture(scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    async with backends() as b, service(b, tmp_path_factory.mktemp("criteria") / "criteria.db") as harness:
        yield harness


@pytest.fixture
def project() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


async def refused(call: Any, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return str(caught.value.details())


def msg(text: str) -> bytes:
    return orjson.dumps({"role": "assistant", "content": text})


def jsonl(rows: list[tuple[str, str | None]]) -> bytes:
    """One line per (answer, human label)."""
    return b"\n".join(orjson.dumps({
        "messages": [{"role": "user", "content": "Name a European capital."}, {"role": "assistant", "content": a}],
        **({"judgement": label} if label else {})}) for a, label in rows)


async def until(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def all_judged(stub: criteria_pb2_grpc.CriteriaStub, project: str, name: str, version: int = 0
                     ) -> criteria_pb2.ListAlignmentRowsResponse:
    async def check() -> criteria_pb2.ListAlignmentRowsResponse | None:
        resp = await stub.ListAlignmentRows(criteria_pb2.ListAlignmentRowsRequest(
            project_id=project, name=name, version=version, limit=1000))
        return resp if all(r.HasField("judge") for r in resp.rows) else None

    return await until(check)


# ---- criteria --------------------------------------------------------------------------------------------


async def test_create_defaults_and_refusals_that_name_the_field(h: Harness, project: str) -> None:
    c = await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="no-paris", prompt=NO_PARIS))
    assert c.name == "no-paris" and c.id and c.alignment_rows == 0
    [v1] = c.versions
    assert (v1.version, v1.judge_model, list(v1.templated_variables), v1.reward_model) == (
        1, "gpt-4o", ["messages", "tools", "tool_choice", "output"], "")
    assert (await h.stub.GetCriterion(criteria_pb2.CriterionRef(project_id=project, name="no-paris"))) == c

    def create(**kw: Any) -> Any:
        return h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(project_id=project, **kw))

    assert "already exists" in await refused(create(name="no-paris", prompt="x"), grpc.StatusCode.ALREADY_EXISTS)
    bad = grpc.StatusCode.INVALID_ARGUMENT
    assert "name must be" in await refused(create(name="No_Paris", prompt="x"), bad)
    assert "'judge' is reserved" in await refused(create(name="judge", prompt="x"), bad)
    assert "prompt is required" in await refused(create(name="empty"), bad)
    assert "unknown variable 'input'" in await refused(create(
        name="vars", prompt="x", templated_variables=["input", "output"], templated_variables_given=True), bad)
    assert "must include 'output'" in await refused(create(
        name="vars", prompt="x", templated_variables=[], templated_variables_given=True), bad)
    listed = await h.stub.ListCriteria(criteria_pb2.ListCriteriaRequest(project_id=project))
    assert [x.name for x in listed.criteria] == ["no-paris"]  # nothing half-written by the refusals


async def test_update_publishes_the_next_version_and_old_versions_stay_callable(h: Harness, project: str) -> None:
    ref = criteria_pb2.CriterionRef(project_id=project, name="capitals")
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="capitals", prompt=NO_PARIS, judge_model="gpt-4o-mini",
        templated_variables=["output"], templated_variables_given=True))
    v2 = await h.stub.UpdateCriterion(criteria_pb2.UpdateCriterionRequest(
        project_id=project, name="capitals", prompt=NO_ROME))
    assert [(v.version, v.prompt, v.judge_model, list(v.templated_variables)) for v in v2.versions] == [
        (1, NO_PARIS, "gpt-4o-mini", ["output"]), (2, NO_ROME, "gpt-4o-mini", ["output"])]
    same = criteria_pb2.UpdateCriterionRequest(project_id=project, name="capitals", prompt=NO_ROME)
    assert "changes nothing" in await refused(h.stub.UpdateCriterion(same), grpc.StatusCode.INVALID_ARGUMENT)
    v3 = await h.stub.UpdateCriterion(criteria_pb2.UpdateCriterionRequest(
        project_id=project, name="capitals", templated_variables=["messages", "output"],
        templated_variables_given=True))
    assert list(v3.versions[-1].templated_variables) == ["messages", "output"] and v3.versions[-1].prompt == NO_ROME
    assert (await h.stub.GetCriterion(ref)).versions == v3.versions

    async def score(criterion_id: str, text: str) -> float:
        resp = await h.stub.Judge(criteria_pb2.JudgeRequest(project_id=project, criterion_id=criterion_id,
                                                            output_json=msg(text)))
        return resp.score

    assert await score("capitals@v1", "Paris") == 0.0 and await score("capitals@v1", "Rome") == 1.0
    assert await score("capitals@2", "Paris") == 1.0 and await score("capitals@v2", "Rome") == 0.0
    assert await score("capitals", "Rome") == 0.0  # the latest (v3) judges like v2
    assert await refused(h.stub.UpdateCriterion(criteria_pb2.UpdateCriterionRequest(
        project_id=project, name="nope", prompt="x")), grpc.StatusCode.NOT_FOUND) == "Criterion nope not found"


async def test_delete_frees_the_name(h: Harness, project: str) -> None:
    ref = criteria_pb2.CriterionRef(project_id=project, name="short-lived")
    first = await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="short-lived", prompt=NO_PARIS))
    assert (await h.stub.DeleteCriterion(ref)).deleted is True
    assert await refused(h.stub.GetCriterion(ref), grpc.StatusCode.NOT_FOUND) == "Criterion short-lived not found"
    again = await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="short-lived", prompt=NO_ROME))
    assert again.id != first.id and again.versions[0].prompt == NO_ROME
    assert await refused(h.stub.DeleteCriterion(criteria_pb2.CriterionRef(project_id=project, name="gone")),
                         grpc.StatusCode.NOT_FOUND) == "Criterion gone not found"


# ---- judging ----------------------------------------------------------------------------------------------


async def test_judge_passes_and_fails_through_the_proxy_with_the_calls_headers(h: Harness, project: str) -> None:
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="no-paris", prompt=NO_PARIS))
    judged_input = orjson.dumps({"messages": [{"role": "user", "content": "Capital of France?"}]})
    seen = len(h.b.proxy.requests)
    failed = await h.stub.Judge(criteria_pb2.JudgeRequest(
        project_id=project, criterion_id="no-paris", input_json=judged_input, output_json=msg("It is Paris.")))
    assert (failed.score, failed.judgement, failed.explanation) == (0.0, "FAIL", 'The output contains "Paris".')
    assert failed.usage.total_tokens > 0
    assert failed.usage.total_tokens == failed.usage.prompt_tokens + failed.usage.completion_tokens
    assert failed.usage.cost_usd > 0  # gpt-4o has a list price
    passed = await h.stub.Judge(criteria_pb2.JudgeRequest(
        project_id=project, criterion_id="no-paris@v1", input_json=judged_input, output_json=msg("Lyon.")))
    assert (passed.score, passed.judgement, passed.explanation) == (1.0, "PASS", 'The output does not contain "Paris".')
    call = h.b.proxy.requests[seen]
    assert call["project"] == project
    assert call["headers"]["op-cache"] == "readWrite" and call["headers"]["Content-Type"] == "application/json"
    assert call["body"]["metadata"] == {"op_criterion": "no-paris@v1"}
    assert call["body"]["tool_choice"] == {"type": "function", "function": {"name": "record_judgement"}}
    assert "Capital of France?" in call["body"]["messages"][1]["content"]


async def test_unknown_criteria_and_versions_are_not_found_in_the_sdks_words(h: Harness, project: str) -> None:
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="highlight-format", prompt=NO_PARIS))

    def judge(criterion_id: str) -> Any:
        return h.stub.Judge(criteria_pb2.JudgeRequest(project_id=project, criterion_id=criterion_id,
                                                      output_json=msg("x")))

    nf = grpc.StatusCode.NOT_FOUND
    assert await refused(judge("invalid-criterion-name"), nf) == "Criterion invalid-criterion-name not found"
    assert await refused(judge("highlight-format@fake-version"), nf) == (
        "Criterion version fake-version not found for criterion highlight-format")
    assert await refused(judge("highlight-format@v2"), nf) == (
        "Criterion version v2 not found for criterion highlight-format")
    assert await refused(judge("missing@v1"), nf) == "Criterion missing not found"
    other_project = criteria_pb2.JudgeRequest(project_id="someone-else", criterion_id="highlight-format",
                                              output_json=msg("x"))
    assert await refused(h.stub.Judge(other_project), nf) == "Criterion highlight-format not found"
    bad = grpc.StatusCode.INVALID_ARGUMENT
    assert await refused(h.stub.Judge(criteria_pb2.JudgeRequest(
        project_id=project, criterion_id="highlight-format")), bad) == "output is required"
    assert await refused(h.stub.Judge(criteria_pb2.JudgeRequest(
        project_id=project, criterion_id="highlight-format", output_json=b"[1]")), bad) == (
        "output must be a JSON object")
    assert await refused(h.stub.Judge(criteria_pb2.JudgeRequest(
        project_id=project, criterion_id="highlight-format", input_json=b'{"messages": "hi"}',
        output_json=msg("x"))), bad) == "input.messages must be an array of messages"

    resolved = await h.stub.ResolveCriteria(criteria_pb2.ResolveCriteriaRequest(
        project_id=project, criteria=["highlight-format@v1", "highlight-format"]))
    assert list(resolved.names) == ["highlight-format", "highlight-format"]
    assert await refused(h.stub.ResolveCriteria(criteria_pb2.ResolveCriteriaRequest(
        project_id=project, criteria=["highlight-format", "nope", "also-nope"])), nf) == "Criterion nope not found"


async def test_a_judge_that_fails_or_times_out_is_an_error_not_a_verdict(h: Harness, project: str) -> None:
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="broken", prompt=NO_PARIS, judge_model="fail-500"))
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="slow", prompt=NO_PARIS, judge_model=SLOW_JUDGE))
    details = await refused(h.stub.Judge(criteria_pb2.JudgeRequest(
        project_id=project, criterion_id="broken", output_json=msg("x"))), grpc.StatusCode.UNAVAILABLE)
    assert details.startswith("judge model fail-500 answered 500:")
    h.judges.timeout_s = 0.3
    try:
        assert await refused(h.stub.Judge(criteria_pb2.JudgeRequest(
            project_id=project, criterion_id="slow", output_json=msg("x"))), grpc.StatusCode.DEADLINE_EXCEEDED) == (
            "the judge did not answer within 0.3 s")
    finally:
        h.judges.timeout_s = 5.0


async def test_judge_choices_judges_every_choice_and_errors_stay_per_result(h: Harness, project: str) -> None:
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="no-paris", prompt=NO_PARIS))
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="no-rome", prompt=NO_ROME, templated_variables=["output"],
        templated_variables_given=True))
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="broken", prompt=NO_PARIS, judge_model="fail-500"))
    outputs = [msg("Paris"), msg("Rome"), msg("Paris or Rome"), msg("Madrid")]
    resp = await h.stub.JudgeChoices(criteria_pb2.JudgeChoicesRequest(
        project_id=project, criteria=["no-paris@v1", "no-rome", "broken", "unknown"],
        input_json=orjson.dumps({"messages": [{"role": "user", "content": "A capital?"}]}), outputs_json=outputs))
    assert len(resp.choices) == 4
    scores = [[(r.criterion, r.status, r.score) for r in c.results[:2]] for c in resp.choices]
    assert scores == [
        [("no-paris", "success", 0.0), ("no-rome", "success", 1.0)],
        [("no-paris", "success", 1.0), ("no-rome", "success", 0.0)],
        [("no-paris", "success", 0.0), ("no-rome", "success", 0.0)],
        [("no-paris", "success", 1.0), ("no-rome", "success", 1.0)],
    ]
    for choice in resp.choices:
        broken, unknown = choice.results[2], choice.results[3]
        assert (broken.criterion, broken.status, broken.error_code) == ("broken", "error", "JUDGE_FAILED")
        assert "fail-500 answered 500" in broken.error_message
        assert (unknown.criterion, unknown.status, unknown.error_code, unknown.error_message) == (
            "unknown", "error", "NOT_FOUND", "Criterion unknown not found")
    assert resp.choices[0].results[0].explanation == 'The output contains "Paris".'
    single = await h.stub.Judge(criteria_pb2.JudgeRequest(project_id=project, criterion_id="no-paris",
                                                          output_json=msg("Paris")))
    assert resp.usage.total_tokens > single.usage.total_tokens  # eight successful judgements summed
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


async def test_judge_choices_runs_the_judgements_concurrently(h: Harness, project: str) -> None:
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="no-paris", prompt=NO_PARIS))
    h.b.proxy.delay_ms = 300
    try:
        started = time.monotonic()
        resp = await h.stub.JudgeChoices(criteria_pb2.JudgeChoicesRequest(
            project_id=project, criteria=["no-paris"], outputs_json=[msg(f"Paris {i}") for i in range(4)]))
        elapsed = time.monotonic() - started
    finally:
        h.b.proxy.delay_ms = 0
    assert [c.results[0].score for c in resp.choices] == [0.0] * 4
    assert elapsed < 4 * 0.3  # one after another would take at least 1.2 s


# ---- reward models ----------------------------------------------------------------------------------------


async def test_reward_criteria_need_a_deployed_reward_model_of_the_project(h: Harness, project: str) -> None:
    model_id = h.b.registry.add(project, "reward-v1")
    h.b.registry.add(project, "chat-model", kind="openpipe")
    h.b.registry.add(project, "still-training", status="TRAINING")
    h.b.registry.add("another-project", "theirs")

    def create(name: str, slug: str, **kw: Any) -> Any:
        return h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
            project_id=project, name=name, reward_model=slug, **kw))

    bad = grpc.StatusCode.INVALID_ARGUMENT
    assert "is not a reward model" in await refused(create("a", "chat-model"), bad)
    assert "is not DEPLOYED (status TRAINING)" in await refused(create("b", "still-training"), bad)
    assert "'theirs' is not a model of this project" in await refused(create("c", "theirs"), bad)
    assert "rewardModel only" in await refused(create("d", "reward-v1", prompt="also a prompt"), bad)
    c = await create("reward-v1", "reward-v1")
    assert (c.versions[0].reward_model, c.versions[0].prompt, c.versions[0].judge_model) == ("reward-v1", "", "")

    judged_input = {"messages": [{"role": "user", "content": "Pick one."}],
                    "tools": [{"type": "function", "function": {"name": "pick", "parameters": {}}}]}
    good = await h.stub.Judge(criteria_pb2.JudgeRequest(
        project_id=project, criterion_id="reward-v1", input_json=orjson.dumps(judged_input),
        output_json=msg("the chosen answer")))
    bad_answer = await h.stub.Judge(criteria_pb2.JudgeRequest(
        project_id=project, criterion_id="reward-v1@v1", input_json=orjson.dumps(judged_input),
        output_json=msg("the rejected answer")))
    assert good.score == pytest.approx(1 / (1 + math.exp(-2))) and good.judgement == "PASS"
    assert bad_answer.score == pytest.approx(1 / (1 + math.exp(2))) and bad_answer.judgement == "FAIL"
    assert not good.HasField("explanation")  # reward models explain nothing
    assert good.usage.total_tokens > 0
    scored_id, messages, tools = h.b.inference.calls[-2]
    assert scored_id == model_id
    assert messages == [*judged_input["messages"], {"role": "assistant", "content": "the chosen answer"}]
    assert orjson.loads(tools) == judged_input["tools"]


async def test_a_deployed_reward_model_can_be_named_directly(h: Harness, project: str) -> None:
    h.b.registry.add(project, "rm.direct_1")
    h.b.registry.add(project, "not-deployed", status="ERROR")
    resp = await h.stub.Judge(criteria_pb2.JudgeRequest(project_id=project, criterion_id="rm.direct_1",
                                                        output_json=msg("chosen")))
    assert resp.score > 0.5 and not resp.HasField("explanation")
    assert await refused(h.stub.Judge(criteria_pb2.JudgeRequest(
        project_id=project, criterion_id="not-deployed", output_json=msg("x"))),
        grpc.StatusCode.NOT_FOUND) == "Criterion not-deployed not found"
    names = await h.stub.ResolveCriteria(criteria_pb2.ResolveCriteriaRequest(project_id=project,
                                                                             criteria=["rm.direct_1"]))
    assert list(names.names) == ["rm.direct_1"]


# ---- alignment sets ----------------------------------------------------------------------------------------


async def test_alignment_rows_are_judged_in_the_background_and_stats_follow_the_labels(h: Harness,
                                                                                       project: str) -> None:
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="no-paris", prompt=NO_PARIS, templated_variables=["output"],
        templated_variables_given=True))
    data = jsonl([("Paris", "FAIL"), ("Paris!", "PASS"), ("Rome", "FAIL"), ("Rome", "PASS"), ("Oslo", None),
                  ("Paris", "FAIL")]) + b"\n{broken\n"
    added = await h.stub.AddAlignmentRows(criteria_pb2.AddAlignmentRowsRequest(
        project_id=project, name="no-paris", jsonl=data))
    assert added.added == 6 and [(e.line, e.message[:12]) for e in added.errors] == [(7, "invalid JSON")]
    listed = await all_judged(h.stub, project, "no-paris")
    assert listed.total == 6 and listed.version == 1
    assert [orjson.loads(r.output_json)["content"] for r in listed.rows] == [
        "Paris", "Paris!", "Rome", "Rome", "Oslo", "Paris"]
    assert [r.judge.judgement for r in listed.rows] == ["FAIL", "FAIL", "PASS", "PASS", "PASS", "FAIL"]
    assert listed.rows[0].judge.explanation == 'The output contains "Paris".'
    assert [r.human_judgement for r in listed.rows] == ["FAIL", "PASS", "FAIL", "PASS", "", "FAIL"]
    stats = await h.stub.Stats(criteria_pb2.StatsRequest(project_id=project, name="no-paris"))
    # TP: Paris/FAIL x2; FP: Paris!/PASS; FN: Rome/FAIL; TN: Rome/PASS; Oslo unlabeled
    assert (stats.true_positives, stats.false_positives, stats.false_negatives, stats.true_negatives) == (2, 1, 1, 1)
    assert (stats.pending, stats.labeled, stats.total, stats.version) == (0, 5, 6, 1)
    assert stats.precision == pytest.approx(2 / 3) and stats.recall == pytest.approx(2 / 3)
    assert stats.f1 == pytest.approx(2 / 3)

    oslo = listed.rows[4]
    labeled = await h.stub.LabelRow(criteria_pb2.LabelRowRequest(project_id=project, name="no-paris",
                                                                 row_id=oslo.id, human_judgement="FAIL"))
    assert labeled.human_judgement == "FAIL" and labeled.judge.judgement == "PASS"
    await h.stub.LabelRow(criteria_pb2.LabelRowRequest(project_id=project, name="no-paris",
                                                       row_id=listed.rows[1].id, human_judgement="SKIP"))
    stats = await h.stub.Stats(criteria_pb2.StatsRequest(project_id=project, name="no-paris"))
    assert (stats.true_positives, stats.false_positives, stats.false_negatives, stats.true_negatives) == (2, 0, 2, 1)
    assert stats.precision == 1.0 and stats.recall == 0.5 and stats.f1 == pytest.approx(2 / 3)

    cleared = await h.stub.LabelRow(criteria_pb2.LabelRowRequest(project_id=project, name="no-paris",
                                                                 row_id=oslo.id, human_judgement=""))
    assert cleared.human_judgement == ""
    bad = grpc.StatusCode.INVALID_ARGUMENT
    assert "humanJudgement must be" in await refused(h.stub.LabelRow(criteria_pb2.LabelRowRequest(
        project_id=project, name="no-paris", row_id=oslo.id, human_judgement="MAYBE")), bad)
    assert "alignment row nope not found" in await refused(h.stub.LabelRow(criteria_pb2.LabelRowRequest(
        project_id=project, name="no-paris", row_id="nope", human_judgement="PASS")), grpc.StatusCode.NOT_FOUND)

    # v2 judges every row too, in the background; v1's verdicts and stats stay as they were
    await h.stub.UpdateCriterion(criteria_pb2.UpdateCriterionRequest(project_id=project, name="no-paris",
                                                                     prompt=NO_ROME))
    v2 = await all_judged(h.stub, project, "no-paris", 2)
    assert [r.judge.judgement for r in v2.rows] == ["PASS", "PASS", "FAIL", "FAIL", "PASS", "PASS"]
    v1 = await h.stub.ListAlignmentRows(criteria_pb2.ListAlignmentRowsRequest(project_id=project, name="no-paris",
                                                                              version=1))
    assert [r.judge.judgement for r in v1.rows] == ["FAIL", "FAIL", "PASS", "PASS", "PASS", "FAIL"]
    s2 = await h.stub.Stats(criteria_pb2.StatsRequest(project_id=project, name="no-paris"))
    # labels now: FAIL, SKIP, FAIL, PASS, unlabeled, FAIL; v2 fails the two Romes
    assert (s2.version, s2.true_positives, s2.false_positives, s2.false_negatives, s2.true_negatives) == (
        2, 1, 1, 2, 0)
    assert await refused(h.stub.Stats(criteria_pb2.StatsRequest(project_id=project, name="no-paris", version=3)),
                         grpc.StatusCode.NOT_FOUND) == "Criterion version v3 not found for criterion no-paris"


async def test_a_failing_judge_records_error_rows_that_stats_leave_out(h: Harness, project: str) -> None:
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
        project_id=project, name="broken", prompt=NO_PARIS, judge_model="fail-500"))
    seen = len(h.b.proxy.requests)
    await h.stub.AddAlignmentRows(criteria_pb2.AddAlignmentRowsRequest(
        project_id=project, name="broken", jsonl=jsonl([("Paris", "FAIL"), ("Rome", "PASS")])))
    listed = await all_judged(h.stub, project, "broken")
    assert [r.judge.judgement for r in listed.rows] == ["ERROR", "ERROR"]
    assert all("fail-500 answered 500" in r.judge.error for r in listed.rows)
    assert len(h.b.proxy.requests) - seen == 4  # each pair tried twice, then recorded
    stats = await h.stub.Stats(criteria_pb2.StatsRequest(project_id=project, name="broken"))
    assert (stats.true_positives + stats.false_positives + stats.false_negatives + stats.true_negatives,
            stats.pending, stats.labeled) == (0, 0, 2)
    assert not any(stats.HasField(ratio) for ratio in ("precision", "recall", "f1"))  # absent, not 0


async def test_a_jsonl_file_over_10_mb_is_refused_whole(h: Harness, project: str) -> None:
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(project_id=project, name="big", prompt="x"))
    line = jsonl([("a" * 1000, "PASS")])
    data = b"\n".join([line] * (10 * 1024 * 1024 // len(line) + 1))
    details = await refused(h.stub.AddAlignmentRows(criteria_pb2.AddAlignmentRowsRequest(
        project_id=project, name="big", jsonl=data)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "at most 10 MB (10485760 bytes)" in details
    assert (await h.stub.GetCriterion(criteria_pb2.CriterionRef(project_id=project, name="big"))).alignment_rows == 0
    assert await refused(h.stub.AddAlignmentRows(criteria_pb2.AddAlignmentRowsRequest(
        project_id=project, name="nope", jsonl=line)), grpc.StatusCode.NOT_FOUND) == "Criterion nope not found"
    assert "give a JSONL file or a dataset sample" in await refused(h.stub.AddAlignmentRows(
        criteria_pb2.AddAlignmentRowsRequest(project_id=project, name="big")), grpc.StatusCode.INVALID_ARGUMENT)


async def test_an_alignment_set_is_bounded_and_an_addition_past_it_is_refused_whole(h: Harness, project: str) -> None:
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(project_id=project, name="bounded", prompt="x"))

    def add(n: int, first: int = 0) -> Any:
        return h.stub.AddAlignmentRows(criteria_pb2.AddAlignmentRowsRequest(
            project_id=project, name="bounded", jsonl=jsonl([(f"answer {first + i}", None) for i in range(n)])))

    def held() -> Any:
        return h.stub.GetCriterion(criteria_pb2.CriterionRef(project_id=project, name="bounded"))

    assert (await add(60)).added == 60
    details = await refused(add(41, 60), grpc.StatusCode.INVALID_ARGUMENT)
    assert details == "criterion bounded's alignment set holds 60 rows; adding 41 would pass its limit of 100 rows"
    assert (await held()).alignment_rows == 60  # nothing of the refused file was kept
    assert (await add(40, 60)).added == 40
    assert "holds 100 rows, its limit" in await refused(add(1, 100), grpc.StatusCode.INVALID_ARGUMENT)
    rows = (await h.stub.ListAlignmentRows(criteria_pb2.ListAlignmentRowsRequest(
        project_id=project, name="bounded", limit=1000))).rows
    assert [orjson.loads(r.output_json)["content"] for r in rows] == [f"answer {i}" for i in range(100)]


async def test_rows_sampled_from_a_dataset_copy_or_regenerate_outputs(h: Harness, project: str) -> None:
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(project_id=project, name="sampled",
                                                                     prompt=NO_PARIS))
    entries = [{"id": f"e{i}", "messages": [{"role": "user", "content": f"question {i}"},
                                            {"role": "assistant", "content": f"answer {i}"}], "split": "TRAIN"}
               for i in range(2500)]
    h.b.datasets.entries[(project, "ds1")] = entries

    def sample(count: int, output_model: str = "", dataset_id: str = "ds1") -> Any:
        return h.stub.AddAlignmentRows(criteria_pb2.AddAlignmentRowsRequest(
            project_id=project, name="sampled",
            dataset=criteria_pb2.DatasetSample(dataset_id=dataset_id, count=count, output_model=output_model)))

    copied = await sample(30)
    assert copied.added == 30 and list(copied.errors) == []
    rows = (await h.stub.ListAlignmentRows(criteria_pb2.ListAlignmentRowsRequest(
        project_id=project, name="sampled", limit=1000))).rows
    numbers = [int(orjson.loads(r.output_json)["content"].split()[1]) for r in rows]
    assert len(set(numbers)) == 30 and max(numbers) >= 1000  # drawn from across the pages
    for r, n in zip(rows, numbers, strict=True):
        assert orjson.loads(r.input_json) == {"messages": [{"role": "user", "content": f"question {n}"}]}

    regenerated = await sample(3, output_model="gpt-4o-mini")
    assert regenerated.added == 3
    rows = (await h.stub.ListAlignmentRows(criteria_pb2.ListAlignmentRowsRequest(
        project_id=project, name="sampled", limit=1000, offset=30))).rows
    for r in rows:
        question = orjson.loads(r.input_json)["messages"][0]["content"]
        assert orjson.loads(r.output_json) == {"role": "assistant", "content": f"Echo: {question}"}
    failing = await sample(2, output_model="fail-500")
    assert failing.added == 0 and [e.line for e in failing.errors] == [1, 2]
    assert "fail-500 answered 500" in failing.errors[0].message

    assert await refused(sample(5, dataset_id="nope"), grpc.StatusCode.NOT_FOUND) == "dataset nope not found"
    assert "count must be between 1 and 10000" in await refused(sample(0), grpc.StatusCode.INVALID_ARGUMENT)
    assert "count must be between 1 and 10000" in await refused(sample(10_001), grpc.StatusCode.INVALID_ARGUMENT)
    h.b.datasets.entries[(project, "small")] = entries[:4]
    assert (await sample(50, dataset_id="small")).added == 4  # all of a smaller dataset


def _judge_calls_of(h: Harness, criterion: str) -> list[dict]:
    return [r for r in h.b.proxy.requests
            if str((r["body"].get("metadata") or {}).get("op_criterion", "")).split("@")[0] == criterion]


async def test_deleting_a_criterion_stops_its_background_judging(h: Harness, project: str) -> None:
    await h.stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(project_id=project, name="doomed",
                                                                     prompt=NO_PARIS))
    h.b.proxy.delay_ms = 200
    try:
        await h.stub.AddAlignmentRows(criteria_pb2.AddAlignmentRowsRequest(
            project_id=project, name="doomed", jsonl=jsonl([(f"Paris {i}", None) for i in range(40)])))
        await asyncio.sleep(0.1)
        await h.stub.DeleteCriterion(criteria_pb2.CriterionRef(project_id=project, name="doomed"))
        asked = len(_judge_calls_of(h, "doomed"))
        await asyncio.sleep(0.6)
    finally:
        h.b.proxy.delay_ms = 0
    # what was in flight when it was deleted may finish, but nothing new starts and nothing more is recorded
    # (counted for this criterion only: an earlier test's background judging may still be finishing)
    assert len(_judge_calls_of(h, "doomed")) - asked <= 4
    assert [p for p in h.store.pending(10_000) if p.project_id == project] == []
