"""The eval runner, in process: the real store (SQLite), runner and the parts that do the work, against
an in-process stand-in for proxy-router (models and a deterministic head-to-head judge), a fake
criteria-judge gRPC server and a fake grader sandbox.

The stand-ins are reused by the servicer's tests (`tests/unit/test_eval_servicer.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from eval.code_grading import CodeGrader
from eval.criterion_judging import CriterionJudge
from eval.definitions import Spec
from eval.grading import Grade
from eval.head_to_head import HeadToHeadJudge
from eval.outputs import OutputGenerator
from eval.runner import EvalRunner
from eval.store import EvalStore, EvalView
from refinery.events import evals as ev
from refinery.grpc_server import GrpcService, client_channel, start_grpc
from refinery.proxy_client import ProxyAnswer, ProxyClient, ProxyUnreachable
from refinery.rpc import criteria_pb2, criteria_pb2_grpc

TOKEN = "eval-tests-internal-token-0123456"
_PREFER = re.compile(r'prefer the output that contains "([^"]+)"')
_SECTION = re.compile(r"<output_(a|b)>(.*?)</output_\1>", re.S)


# ---- stand-ins for the services eval calls -------------------------------------------------------------


def _completion(message: dict[str, Any], prompt_tokens: int = 12, completion_tokens: int = 6) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "object": "chat.completion", "model": "x",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def comparison_verdict(system: str, user: str) -> str:
    """The judge's rule (the fake upstream's too): `always prefer output A` picks A; `prefer the output
    that contains "X"` picks the one output containing X (a tie when both or neither do)."""
    if "always prefer output A" in system:
        return "A"
    rule = _PREFER.search(system)
    if rule is None:
        return "tie"
    sections = dict(_SECTION.findall(user))
    a, b = rule.group(1) in sections.get("a", ""), rule.group(1) in sections.get("b", "")
    return "A" if a and not b else "B" if b and not a else "tie"


def is_judge_call(body: dict[str, Any]) -> bool:
    choice = body.get("tool_choice")
    return isinstance(choice, dict) and choice.get("function", {}).get("name") == "record_comparison"


@dataclass
class StandInProxy:
    """proxy-router's chat completions as eval uses them. A model answers `<model> answers: <last user
    message>` (models named `same-*` all answer `the same answer`); `fail-500` answers 500; a forced
    `record_comparison` call gets `comparison_verdict`. After `free_calls` calls (None: no limit) every
    call waits for `release`."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    free_calls: int | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    def outputs_for(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["body"]["model"] == model and not is_judge_call(r["body"])]

    def judge_calls(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if is_judge_call(r["body"])]

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"project": request.headers.get("x-refinery-project-id"),
                              "headers": dict(request.headers), "body": body})
        if self.free_calls is not None:
            self.free_calls -= 1
            if self.free_calls < 0:
                await self.release.wait()
        model, messages = body["model"], body["messages"]
        if model == "fail-500":
            return web.json_response({"error": {"message": "upstream exploded"}}, status=500)
        if is_judge_call(body):
            if model == "garbled-judge":
                args = "this is not JSON"
            else:
                winner = comparison_verdict(messages[0]["content"], messages[-1]["content"])
                args = orjson.dumps({"explanation": f"picked {winner}", "winner": winner}).decode()
            call = {"id": "call_1", "type": "function", "function": {"name": "record_comparison", "arguments": args}}
            return web.json_response(_completion({"role": "assistant", "content": None, "tool_calls": [call]}))
        last = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        content = "the same answer" if model.startswith("same-") else f"{model} answers: {last}"
        return web.json_response(_completion({"role": "assistant", "content": content, "refusal": None}))


class FlakyProxy:
    """A ChatClient whose first `failures` calls find proxy-router down."""

    def __init__(self, inner: ProxyClient, failures: int) -> None:
        self._inner = inner
        self.failures = failures

    async def chat_answer(self, project_id: str, body: dict[str, Any], headers: dict[str, str] | None = None
                          ) -> ProxyAnswer:
        if self.failures > 0:
            self.failures -= 1
            raise ProxyUnreachable("proxy-router unreachable: ClientConnectorError")
        return await self._inner.chat_answer(project_id, body, headers)


class FakeCriteria(criteria_pb2_grpc.CriteriaServicer):
    """criteria-judge: a project's criteria by name; an output containing "Paris" FAILs, one containing
    "judge trouble" makes the judge model fail, anything else PASSes."""

    def __init__(self) -> None:
        self.criteria: set[tuple[str, str]] = set()
        self.judged: list[criteria_pb2.JudgeRequest] = []
        self.down = False

    async def _known(self, project_id: str, text: str, context: Any) -> None:
        name = text.partition("@")[0]
        if (project_id, name) not in self.criteria:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Criterion {name} not found")

    async def ResolveCriteria(self, request, context):
        for text in request.criteria:
            await self._known(request.project_id, text, context)
        return criteria_pb2.ResolveCriteriaResponse(names=[t.partition("@")[0] for t in request.criteria])

    async def Judge(self, request, context):
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "proxy-router unreachable: ClientConnectorError")
        await self._known(request.project_id, request.criterion_id, context)
        self.judged.append(request)
        content = str(orjson.loads(request.output_json).get("content"))
        if "judge trouble" in content:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "judge model gpt-4o answered 500: boom")
        passed = "Paris" not in content
        return criteria_pb2.JudgeResponse(
            score=1.0 if passed else 0.0, judgement="PASS" if passed else "FAIL",
            explanation="no Paris" if passed else 'The output contains "Paris".',
            usage=criteria_pb2.JudgeUsage(prompt_tokens=10, completion_tokens=5, total_tokens=15, cost_usd=0.001))


class FakeSandbox:
    """The grader sandbox: a grader containing `syntax error` does not compile; a row scores 1 when its
    generated content equals the dataset's, 0 otherwise, and fails when the output says "boom"."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def check(self, source: str) -> str | None:
        return "SyntaxError: Unexpected token (grader.ts:1:10)" if "syntax error" in source else None

    async def grade_many(self, source: str, rows: list[dict[str, Any]]) -> list[Grade]:
        self.batches.append(len(rows))
        out = []
        for args in rows:
            generated, expected = args["generatedOutput"], args["datasetOutput"] or {}
            if "boom" in str(generated.get("content")):
                out.append(Grade(None, "Error: boom (grader.ts:3:9)", ""))
            else:
                out.append(Grade(1.0 if generated.get("content") == expected.get("content") else 0.0, None,
                                 f"compared {len(args['messages'])} messages"))
        return out


@dataclass
class Backends:
    proxy: StandInProxy
    proxy_url: str
    grpc_target: str
    criteria: FakeCriteria
    sandbox: FakeSandbox
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def backends(*servicers: Callable[[grpc.aio.Server], None]) -> AsyncIterator[Backends]:
    proxy = StandInProxy()
    server = TestServer(proxy.app())
    await server.start_server()
    criteria = FakeCriteria()
    fakes: GrpcService = await start_grpc("127.0.0.1", 0, [
        lambda s: criteria_pb2_grpc.add_CriteriaServicer_to_server(criteria, s), *servicers], token=TOKEN)
    try:
        yield Backends(proxy, str(server.make_url("")).rstrip("/"), f"127.0.0.1:{fakes.port}", criteria,
                       FakeSandbox())
    finally:
        proxy.release.set()
        await fakes.stop(0)
        await server.close()


@contextlib.asynccontextmanager
async def running(b: Backends, store: EvalStore, *, output_concurrency: int = 2, judge_concurrency: int = 2,
                  flaky: int = 0, grade_batch: int = 25) -> AsyncIterator[EvalRunner]:
    """A runner wired as `eval.main` wires it, running until the block ends."""
    proxy = ProxyClient(b.proxy_url)
    await proxy.start()
    chat = FlakyProxy(proxy, flaky) if flaky else proxy
    channel = client_channel(b.grpc_target, token=TOKEN)
    runner = EvalRunner(
        store, OutputGenerator(chat, 30.0, retry_delay_s=0.01), HeadToHeadJudge(chat, 30.0, retry_delay_s=0.01),
        CriterionJudge(criteria_pb2_grpc.CriteriaStub(channel), 30.0), CodeGrader(b.sandbox),
        output_concurrency=output_concurrency, judge_concurrency=judge_concurrency, grade_batch=grade_batch,
        retry_delay_s=0.02, idle_poll_s=0.5)
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await channel.close()
        await proxy.stop()


@pytest.fixture(scope="module")
async def b() -> AsyncIterator[Backends]:
    async with backends() as fakes:
        yield fakes


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EvalStore]:
    s = EvalStore(f"sqlite:///{tmp_path / 'eval.db'}")
    yield s
    s.close()


@pytest.fixture
def project() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


def eval_rows(n: int, outputs: list[str] | None = None) -> list[ev.EvalRow]:
    texts = outputs or [f"reference {i}" for i in range(n)]
    return [ev.EvalRow(row_id=f"entry-{i}", input={"messages": [{"role": "user", "content": f"question {i}"}]},
                       dataset_output={"role": "assistant", "content": texts[i]}) for i in range(n)]


def new_eval(store: EvalStore, project: str, kind: str, models: list[str], rows: list[ev.EvalRow], *,
             instructions: str = "", judge_model: str = "gpt-4o", criterion: str = "", grader: str = "") -> EvalView:
    spec = Spec(name="an eval", dataset_id="ds-1", type=kind, models=models,  # type: ignore[arg-type]
                judge_model=judge_model if kind == "head_to_head" else "", instructions=instructions,
                criterion=criterion, grader=grader, auto_add_models=False)
    return store.create(project, spec, rows, max_event_bytes=64 * 1024)


async def until(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def completed(store: EvalStore, project: str, eval_id: str) -> EvalView:
    return await until(lambda: (v := store.get(project, eval_id)).status in ("COMPLETED", "ERROR") and v)


def of_type(store: EvalStore, eval_id: str, event_type: str) -> list[dict[str, Any]]:
    return [e.data for e in store.events(eval_id) if e.type == event_type]


# ---- head to head ------------------------------------------------------------------------------------------


async def test_three_models_n_rows_make_3n_comparisons_each_judged_in_both_orders(
        b: Backends, store: EvalStore, project: str) -> None:
    n = 4
    seen = len(b.proxy.requests)
    e = new_eval(store, project, "head_to_head", ["gpt-4o", "gpt-4o-mini", "dataset"], eval_rows(n),
                 instructions='prefer the output that contains "gpt-4o-mini"')
    assert (e.status, e.done, e.total) == ("QUEUED", 0, n * (2 + 3))
    async with running(b, store):
        done = await completed(store, project, e.id)
    assert (done.status, done.done, done.total, done.results.comparisons) == ("COMPLETED", n * 5, n * 5, 3 * n)
    by = {r.model: r for r in done.results.results}
    assert [r.model for r in done.results.results] == ["gpt-4o", "gpt-4o-mini", "dataset"]
    assert by["gpt-4o-mini"].score == 1.0 and by["gpt-4o-mini"].comparisons == 2 * n
    assert by["gpt-4o"].score == pytest.approx(0.25)  # loses to mini, ties with the dataset
    assert by["dataset"].score == pytest.approx(0.25)
    assert all(r.errors == 0 for r in done.results.results)
    cells = {(c.model, c.opponent): c.win_rate for c in done.results.matrix}
    assert cells[("gpt-4o-mini", "gpt-4o")] == 1.0 and cells[("gpt-4o", "gpt-4o-mini")] == 0.0
    assert cells[("gpt-4o", "dataset")] == 0.5 and cells[("dataset", "gpt-4o-mini")] == 0.0
    assert by["gpt-4o"].cost_usd > 0 and by["gpt-4o"].latency_ms_p50 is not None
    assert by["dataset"].cost_usd == 0 and by["dataset"].latency_ms_p50 is None

    calls = b.proxy.requests[seen:]
    outputs = [c for c in calls if "tool_choice" not in c["body"]]
    judges = [c for c in calls if "tool_choice" in c["body"]]
    assert len(outputs) == 2 * n and len(judges) == 2 * 3 * n  # no call for `dataset`; both orders
    assert all(c["project"] == project for c in calls)
    assert all(c["body"]["temperature"] == 0 and c["body"]["metadata"]["eval_id"] == e.id for c in calls)
    assert outputs[0]["body"]["messages"] == [{"role": "user", "content": "question 0"}]
    assert all(c["headers"]["op-cache"] == "readWrite" for c in calls)
    judge = judges[0]["body"]
    assert judge["model"] == "gpt-4o"
    assert judge["tool_choice"] == {"type": "function", "function": {"name": "record_comparison"}}
    assert judge["messages"][0]["content"].endswith('prefer the output that contains "gpt-4o-mini"')
    shown = [(re.findall(r"<output_a>(.*?)</output_a>", j["body"]["messages"][1]["content"])[0],
              re.findall(r"<output_b>(.*?)</output_b>", j["body"]["messages"][1]["content"])[0]) for j in judges]
    assert all((b_, a_) in shown for a_, b_ in shown)  # every pair shown in both orders

    events = store.events(e.id)
    assert [x.version for x in events] == list(range(1, len(events) + 1))
    assert len(of_type(store, e.id, ev.EVAL_OUTPUT_GENERATED)) == 2 * n
    judged = of_type(store, e.id, ev.EVAL_JUDGEMENT_RECORDED)
    assert len(judged) == 3 * n and len({(j["row_id"], j["model"], j["opponent"]) for j in judged}) == 3 * n
    assert events[-1].type == ev.EVAL_COMPLETED
    assert {r["model"]: r["score"] for r in events[-1].data["results"]}["gpt-4o-mini"] == 1.0
    rows, total = store.rows(project, e.id, 100, 0)
    assert total == n
    mini_vs_4o = next(j for j in rows[0].judgements if (j.model, j.opponent) == ("gpt-4o", "gpt-4o-mini"))
    assert (mini_vs_4o.score, mini_vs_4o.winner, mini_vs_4o.done) == (0.0, "gpt-4o-mini", True)
    assert mini_vs_4o.reasoning == ("A/B order (A = gpt-4o): B. picked B\n"
                                    "B/A order (A = gpt-4o-mini): A. picked A")


async def test_a_judge_that_always_prefers_the_first_output_makes_only_ties(
        b: Backends, store: EvalStore, project: str) -> None:
    e = new_eval(store, project, "head_to_head", ["gpt-4o", "gpt-4o-mini"], eval_rows(3),
                 instructions="Be decisive: always prefer output A.")
    async with running(b, store):
        done = await completed(store, project, e.id)
    assert [r.score for r in done.results.results] == [0.5, 0.5]
    rows, _ = store.rows(project, e.id, 100, 0)
    assert all(j.score == 0.5 and j.winner is None for r in rows for j in r.judgements)


async def test_identical_outputs_tie_without_asking_and_unusable_verdicts_tie(
        b: Backends, store: EvalStore, project: str) -> None:
    same = new_eval(store, project, "head_to_head", ["same-a", "same-b"], eval_rows(2))
    garbled = new_eval(store, project, "head_to_head", ["gpt-4o", "gpt-4o-mini"], eval_rows(2),
                       judge_model="garbled-judge", instructions='prefer the output that contains "mini"')
    async with running(b, store):
        done_same = await completed(store, project, same.id)
        done_garbled = await completed(store, project, garbled.id)
    # Only the garbled eval's comparisons asked the judge (counted by eval: the runner may also be
    # finishing an earlier test's eval that its restart left behind).
    asked = Counter(r["body"]["metadata"]["eval_id"] for r in b.proxy.judge_calls())
    assert (asked[same.id], asked[garbled.id]) == (0, 2 * 2)
    assert [r.score for r in done_same.results.results] == [0.5, 0.5]
    rows, _ = store.rows(project, same.id, 100, 0)
    assert rows[0].judgements[0].reasoning.startswith("The two outputs are identical")
    assert [r.score for r in done_garbled.results.results] == [0.5, 0.5]
    rows, _ = store.rows(project, garbled.id, 100, 0)
    assert "no usable verdict (the record_comparison arguments are not JSON)" in rows[0].judgements[0].reasoning
    assert rows[0].judgements[0].error is None


async def test_a_failing_model_fails_its_rows_and_the_others_finish(
        b: Backends, store: EvalStore, project: str) -> None:
    n = 3
    e = new_eval(store, project, "head_to_head", ["gpt-4o", "fail-500", "gpt-4o-mini"], eval_rows(n),
                 instructions='prefer the output that contains "gpt-4o-mini"')
    async with running(b, store):
        done = await completed(store, project, e.id)
    assert done.status == "COMPLETED" and done.done == done.total
    by = {r.model: r for r in done.results.results}
    assert (by["fail-500"].errors, by["fail-500"].score, by["fail-500"].comparisons) == (n, None, 0)
    assert (by["gpt-4o"].errors, by["gpt-4o"].score) == (0, 0.0)
    assert (by["gpt-4o-mini"].errors, by["gpt-4o-mini"].score) == (0, 1.0)
    rows, _ = store.rows(project, e.id, 100, 0)
    failed = next(o for o in rows[0].outputs if o.model == "fail-500")
    assert (failed.done, failed.output_json, failed.error) == (True, b"", "fail-500 answered 500: upstream exploded")
    pair = next(j for j in rows[0].judgements if j.opponent == "fail-500")
    assert pair.score is None and pair.error == (
        "no output to judge from fail-500: fail-500 answered 500: upstream exploded")


async def test_models_added_later_run_only_their_outputs_and_comparisons(
        b: Backends, store: EvalStore, project: str) -> None:
    n = 3
    e = new_eval(store, project, "head_to_head", ["gpt-4o", "dataset"], eval_rows(n),
                 instructions='prefer the output that contains "mini"')
    async with running(b, store) as runner:
        first = await completed(store, project, e.id)
        assert first.results.comparisons == n and first.total == n * 2
        seen = len(b.proxy.requests)
        reopened = store.add_models(project, e.id, ["gpt-4o-mini"])
        assert reopened is not None and reopened.status == "QUEUED" and reopened.total == n * (2 + 3)
        runner.wake()
        done = await until(lambda: (v := store.get(project, e.id)).status == "COMPLETED" and v)
    calls = b.proxy.requests[seen:]
    assert {c["body"]["model"] for c in calls if "tool_choice" not in c["body"]} == {"gpt-4o-mini"}
    assert len([c for c in calls if "tool_choice" not in c["body"]]) == n
    assert len([c for c in calls if "tool_choice" in c["body"]]) == 2 * 2 * n  # two new pairs, both orders
    assert done.models == ["gpt-4o", "dataset", "gpt-4o-mini"] and done.results.comparisons == 3 * n
    assert {r.model: r.score for r in done.results.results}["gpt-4o-mini"] == 1.0
    assert [x.type for x in store.events(e.id)].count(ev.EVAL_COMPLETED) == 2


# ---- criterion and code ------------------------------------------------------------------------------------


async def test_criterion_evals_pass_fail_and_record_a_failing_judge_as_an_error(
        b: Backends, store: EvalStore, project: str) -> None:
    b.criteria.criteria.add((project, "no-paris"))
    rows = eval_rows(3, ["Paris is the capital", "Lyon", "judge trouble"])
    e = new_eval(store, project, "criterion", ["dataset", "gpt-4o"], rows, criterion="no-paris@v1")
    async with running(b, store):
        done = await completed(store, project, e.id)
    by = {r.model: r for r in done.results.results}
    assert (by["dataset"].score, by["dataset"].scored, by["dataset"].errors) == (0.5, 2, 1)
    assert (by["gpt-4o"].score, by["gpt-4o"].errors) == (1.0, 0)
    mine = [j for j in b.criteria.judged if j.project_id == project]
    assert {j.criterion_id for j in mine} == {"no-paris@v1"} and len(mine) == 6
    assert {"messages": [{"role": "user", "content": "question 0"}]} in [orjson.loads(j.input_json) for j in mine]
    listed, _ = store.rows(project, e.id, 100, 0)
    paris = next(j for j in listed[0].judgements if j.model == "dataset")
    assert (paris.score, paris.reasoning, paris.opponent) == (0.0, 'The output contains "Paris".', None)
    trouble = next(j for j in listed[2].judgements if j.model == "dataset")
    assert trouble.score is None and trouble.error == "criterion no-paris@v1: judge model gpt-4o answered 500: boom"


async def test_a_criterion_deleted_meanwhile_fails_the_eval_as_a_whole(
        b: Backends, store: EvalStore, project: str) -> None:
    e = new_eval(store, project, "criterion", ["dataset"], eval_rows(2), criterion="gone")
    async with running(b, store):
        done = await completed(store, project, e.id)
    assert (done.status, done.error) == ("ERROR", "Criterion gone not found")
    assert of_type(store, e.id, ev.EVAL_FAILED) == [{"error": "Criterion gone not found"}]


async def test_code_evals_grade_in_batches_and_a_grader_error_is_the_rows(
        b: Backends, store: EvalStore, project: str) -> None:
    rows = eval_rows(5, ["reference 0", "reference 1", "reference 2", "reference 3", "boom"])
    seen = len(b.sandbox.batches)
    e = new_eval(store, project, "code", ["dataset", "gpt-4o"], rows, grader="function grader() { return 1 }")
    async with running(b, store, judge_concurrency=1, grade_batch=4):
        done = await completed(store, project, e.id)
    by = {r.model: r for r in done.results.results}
    assert (by["dataset"].score, by["dataset"].errors, by["dataset"].scored) == (1.0, 1, 4)
    assert (by["gpt-4o"].score, by["gpt-4o"].errors) == (0.0, 0)
    batches = b.sandbox.batches[seen:]
    assert sum(batches) == 10 and max(batches) <= 4 and len(batches) < 10
    listed, _ = store.rows(project, e.id, 100, 0)
    boom = next(j for j in listed[4].judgements if j.model == "dataset")
    assert boom.score is None and boom.error == "grader: Error: boom (grader.ts:3:9)"
    assert next(j for j in listed[0].judgements if j.model == "dataset").reasoning == "compared 1 messages"


# ---- restarts and outages ----------------------------------------------------------------------------------


async def test_a_restart_mid_run_loses_and_duplicates_nothing(b: Backends, store: EvalStore, project: str) -> None:
    n = 6
    e = new_eval(store, project, "head_to_head", ["gpt-4o", "gpt-4o-mini"], eval_rows(n),
                 instructions='prefer the output that contains "mini"')
    b.proxy.release.clear()
    b.proxy.free_calls = 7
    try:
        async with running(b, store):
            await until(lambda: b.proxy.free_calls is not None and b.proxy.free_calls < -1)  # calls are stuck
            await asyncio.sleep(0.1)
        mid = store.get(project, e.id)
        assert mid.status == "RUNNING" and 0 < mid.done < mid.total
    finally:
        b.proxy.free_calls = None
        b.proxy.release.set()
    async with running(b, store):  # a new process on the same database
        done = await completed(store, project, e.id)
    assert done.status == "COMPLETED" and done.done == done.total == n * 3
    outputs = of_type(store, e.id, ev.EVAL_OUTPUT_GENERATED)
    judged = of_type(store, e.id, ev.EVAL_JUDGEMENT_RECORDED)
    assert sorted((o["row_id"], o["model"]) for o in outputs) == sorted(
        (f"entry-{i}", m) for i in range(n) for m in ("gpt-4o", "gpt-4o-mini"))
    assert sorted(j["row_id"] for j in judged) == sorted(f"entry-{i}" for i in range(n))
    assert all(o["error"] is None for o in outputs)
    assert {r.model: r.score for r in done.results.results} == {"gpt-4o": 0.0, "gpt-4o-mini": 1.0}


async def test_proxy_router_down_records_nothing_and_the_work_resumes(
        b: Backends, store: EvalStore, project: str) -> None:
    e = new_eval(store, project, "head_to_head", ["gpt-4o", "gpt-4o-mini"], eval_rows(2))
    async with running(b, store, flaky=5):
        done = await completed(store, project, e.id)
    assert done.status == "COMPLETED"
    assert all(o["error"] is None for o in of_type(store, e.id, ev.EVAL_OUTPUT_GENERATED))
    assert all(j["error"] is None for j in of_type(store, e.id, ev.EVAL_JUDGEMENT_RECORDED))


async def test_criteria_judge_down_waits_instead_of_recording_errors(
        b: Backends, store: EvalStore, project: str) -> None:
    b.criteria.criteria.add((project, "no-paris"))
    e = new_eval(store, project, "criterion", ["dataset"], eval_rows(2), criterion="no-paris")
    b.criteria.down = True
    try:
        async with running(b, store):
            await asyncio.sleep(0.3)
            assert store.get(project, e.id).done == 0
            b.criteria.down = False
            done = await completed(store, project, e.id)
    finally:
        b.criteria.down = False
    assert [r.score for r in done.results.results] == [1.0]


async def test_a_deleted_eval_stops_running(b: Backends, store: EvalStore, project: str) -> None:
    e = new_eval(store, project, "head_to_head", ["gpt-4o", "gpt-4o-mini"], eval_rows(20))
    async with running(b, store, output_concurrency=1, judge_concurrency=1) as runner:
        await until(lambda: store.get(project, e.id).done > 0)
        store.delete(project, e.id)
        runner.forget(e.id)
        recorded = len(store.events(e.id))
        await asyncio.sleep(0.3)
    events = store.events(e.id)
    assert events[-1].type == ev.EVAL_DELETED  # nothing was recorded after the deletion
    assert len(events) == recorded
    assert all(p.eval_id != e.id for p in store.pending_outputs(1000))
