"""op-criteria in ChatProxy, in process: the fake upstream answers, and a small Criteria gRPC service
stands in for criteria-judge. Like the real one, it judges by calling back through the proxy (so
each judgement is a logged call of the project), and its rule is a keyword: a criterion fails an
output that contains its keyword. Logs come back from the in-memory bus, decoded as consumers do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from proxy_router.criteria import CriteriaJudge, parse_criteria
from proxy_router.errors import ProxyError
from proxy_router.pending import PendingLogs
from proxy_router.serving import ChatProxy
from refinery.config import REQUEST_LOGS_TOPIC
from refinery.rpc import criteria_pb2, criteria_pb2_grpc
from refinery.runtime.memory_bus import MemoryBus

from tests.fakes.upstream import build_app
from tests.unit.test_proxy_broken_answers import _Providers
from tests.unit.test_proxy_chat import PROJECT, _LogReader, _NoCache

# name → (the keyword that fails an output, its versions)
CRITERIA = {"no-choice-1": ("choice 1", ("v1",)), "no-choice-2": ("choice 2", ("v1", "v2")),
            "no-echo": ("Echo", ("v1",))}
BROKEN = "judge-breaks"  # a criterion whose judge always fails
ASK = [{"role": "user", "content": "count to 3"}]


def _abort_unknown(ref: str) -> tuple[str, str] | None:
    name, _, version = ref.partition("@")
    if name != BROKEN and name not in CRITERIA:
        return "", f"Criterion {name} not found"
    if version and (name == BROKEN or version not in CRITERIA[name][1]):
        return "", f"Criterion version {version} not found for criterion {name}"
    return None


class _Judge(criteria_pb2_grpc.CriteriaServicer):
    """criteria-judge's two op-criteria calls, judging through the proxy as the real service does."""

    def __init__(self) -> None:
        self.proxy_url = ""
        self.down = False
        self.resolved: list[list[str]] = []
        self.judged: list[criteria_pb2.JudgeChoicesRequest] = []

    async def ResolveCriteria(self, request, context):
        self.resolved.append(list(request.criteria))
        for ref in request.criteria:
            if (unknown := _abort_unknown(ref)) is not None:
                await context.abort(grpc.StatusCode.NOT_FOUND, unknown[1])
        return criteria_pb2.ResolveCriteriaResponse(names=[r.split("@")[0] for r in request.criteria])

    async def _judge_call(self, http: aiohttp.ClientSession, ref: str, output: dict[str, Any]) -> None:
        body = {"model": "gpt-4o", "metadata": {"op_criterion": ref},
                "messages": [{"role": "user", "content": f"judge: {output.get('content')}"}]}
        async with http.post(self.proxy_url, data=orjson.dumps(body),
                             headers={"x-refinery-project-id": PROJECT}) as resp:
            assert resp.status == 200, await resp.text()

    async def JudgeChoices(self, request, context):
        self.judged.append(request)
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the judge model's provider is down")
        outputs = [orjson.loads(o) for o in request.outputs_json]
        choices = []
        async with aiohttp.ClientSession() as http:
            for output in outputs:
                results = []
                for ref in request.criteria:
                    name = ref.split("@")[0]
                    if name == BROKEN:
                        results.append(criteria_pb2.CriterionResult(
                            criterion=name, status="error", error_code="JUDGE_FAILED",
                            error_message="the judge model answered 500"))
                        continue
                    await self._judge_call(http, ref, output)
                    failed = CRITERIA[name][0] in (output.get("content") or "")
                    results.append(criteria_pb2.CriterionResult(
                        criterion=name, status="success", score=0.0 if failed else 1.0,
                        explanation=f"contains {CRITERIA[name][0]!r}" if failed else "fine"))
                choices.append(criteria_pb2.ChoiceResults(results=results))
        judgements = len(outputs) * len(request.criteria)
        return criteria_pb2.JudgeChoicesResponse(choices=choices, usage=criteria_pb2.JudgeUsage(
            prompt_tokens=7 * judgements, completion_tokens=3 * judgements, total_tokens=10 * judgements,
            cost_usd=0.001 * judgements))


class _SlowJudgeLogs:
    """A producer on which the judges' logs take a while to be acknowledged (a busy or spooling bus)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.max_event_bytes = inner.max_event_bytes

    async def publish(self, key: bytes, value: bytes) -> Any:
        if b"op_criterion" in value:
            await asyncio.sleep(0.2)
        return await self._inner.publish(key, value)

    def set_aside(self, key: bytes, value: bytes, reason: str) -> None:
        self._inner.set_aside(key, value, reason)


class _Harness:
    def __init__(self, url: str, bus: MemoryBus, reader: _LogReader, pending: PendingLogs, judge: _Judge,
                 http: aiohttp.ClientSession, upstream_url: str) -> None:
        self.url, self.bus, self.reader, self.pending, self.judge, self.http = url, bus, reader, pending, judge, http
        self.upstream_url = upstream_url

    async def post(self, body: dict[str, Any], criteria: str | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"x-refinery-project-id": PROJECT}
        if criteria is not None:
            headers["op-criteria"] = criteria
        async with self.http.post(self.url, data=orjson.dumps(body), headers=headers) as resp:
            return resp.status, orjson.loads(await resp.read())

    async def logged(self) -> list[dict[str, Any]]:
        """The project's logs in bus order, once every publish in flight is acknowledged."""
        await self.pending.positions(PROJECT, lambda: True)
        return [{**e.data.model_dump(), "metadata": e.data.logged_metadata} for e in self.reader.logs]

    async def upstream_calls(self) -> int:
        async with self.http.get(f"{self.upstream_url}/fake/stats") as resp:
            stats = await resp.json()
        return int(stats["requests"])


async def _serve_judge(judge: _Judge) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    criteria_pb2_grpc.add_CriteriaServicer_to_server(judge, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.fixture
async def harness() -> AsyncIterator[_Harness]:
    bus, pending = MemoryBus(), PendingLogs()
    reader = _LogReader(bus)
    producer = _SlowJudgeLogs(bus.producer(REQUEST_LOGS_TOPIC))
    judge = _Judge()
    server, port = await _serve_judge(judge)
    criteria = CriteriaJudge(f"127.0.0.1:{port}", timeout_s=30)
    await criteria.start()
    async with TestServer(build_app(delay_ms=0), host="127.0.0.1") as upstream:
        upstream_url = str(upstream.make_url("")).rstrip("/")
        chat = ChatProxy(producer, _Providers(upstream_url), pending, 30.0, _NoCache(),  # type: ignore[arg-type]
                         criteria=criteria)
        await chat.start()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat.handle)
        try:
            async with TestServer(app, host="127.0.0.1") as proxy_server, aiohttp.ClientSession() as http:
                judge.proxy_url = str(proxy_server.make_url("/v1/chat/completions"))
                yield _Harness(judge.proxy_url, bus, reader, pending, judge, http, upstream_url)
        finally:
            await chat.stop()
            await criteria.stop()
            await server.stop(0)


def _content_of(choice: dict[str, Any]) -> str:
    return choice["message"]["content"]


async def test_best_of_n_choices_are_judged_ranked_renumbered_and_logged_as_answered(harness: _Harness) -> None:
    status, body = await harness.post({"model": "gpt-4o", "messages": ASK, "n": 4},
                                      '["no-choice-1", "no-choice-2@v2"]')
    assert status == 200, body
    # Choices 1 and 2 each fail one criterion (combined 1.0); 0 and 3 pass both (2.0): best first, stable.
    assert [_content_of(c) for c in body["choices"]] == [
        "Echo: count to 3", "Echo: count to 3 (choice 3)", "Echo: count to 3 (choice 1)",
        "Echo: count to 3 (choice 2)"]
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    results = [c["criteria_results"] for c in body["choices"]]
    assert all(set(r) == {"no-choice-1", "no-choice-2"} for r in results)  # keyed without the version
    assert results[2]["no-choice-1"] == {"status": "success", "score": 0.0, "explanation": "contains 'choice 1'"}
    assert results[2]["no-choice-2"] == {"status": "success", "score": 1.0, "explanation": "fine"}
    assert results[3]["no-choice-2"]["score"] == 0.0
    # What the judges were given: the call's messages, and each choice's message in the upstream's order.
    [request] = harness.judge.judged
    assert orjson.loads(request.input_json) == {"messages": ASK}
    assert [orjson.loads(o)["content"] for o in request.outputs_json] == [
        "Echo: count to 3", *(f"Echo: count to 3 (choice {i})" for i in (1, 2, 3))]
    assert list(request.criteria) == ["no-choice-1", "no-choice-2@v2"]
    # Judging's 8 judgements (7 + 3 tokens each) are added to the usage and shown apart.
    usage = body["usage"]
    assert usage["criteria"] == {"prompt_tokens": 56, "completion_tokens": 24, "total_tokens": 80,
                                 "cost_usd": pytest.approx(0.008)}
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    own = usage["total_tokens"] - 80
    logs = await harness.logged()
    # The 8 judges' calls came first and the user's call is the project's latest log, although the
    # judges' logs were acknowledged late: it is what the client was answered, ranked, with results.
    assert [log["metadata"].get("op_criterion") for log in logs[:-1]] == ["no-choice-1", "no-choice-2@v2"] * 4
    user = logs[-1]
    assert "op_criterion" not in user["metadata"] and user["status_code"] == 200
    assert user["resp_payload"]["choices"] == body["choices"]
    # The log's usage (and cost) is the completion's own: the judges' calls are costed by themselves.
    assert user["usage"]["total_tokens"] == own


async def test_an_unknown_criterion_or_version_is_a_404_before_the_upstream_is_called(harness: _Harness) -> None:
    before = len(await harness.logged())
    status, body = await harness.post({"model": "gpt-4o", "messages": ASK, "n": 2}, '["invalid-criterion-name"]')
    assert (status, body["message"]) == (404, "Criterion invalid-criterion-name not found")
    assert body["error"]["message"] == "Criterion invalid-criterion-name not found"  # what the OpenAI SDK shows
    status, body = await harness.post({"model": "gpt-4o", "messages": ASK}, '["no-choice-1@fake-version"]')
    assert (status, body["message"]) == (404, "Criterion version fake-version not found for criterion no-choice-1")
    assert harness.judge.judged == [] and await harness.upstream_calls() == 0  # no completion was made
    logs = await harness.logged()
    assert [(log["status_code"], log["model"]) for log in logs[before:]] == [(404, "gpt-4o"), (404, "gpt-4o")]
    assert all(log["resp_payload"] is None for log in logs[before:])


@pytest.mark.parametrize(("header", "why"), [
    ("not json", "not valid JSON"),
    ('{"name": "no-echo"}', "must be a JSON array"),
    ('["no-echo", 3]', "must be a JSON array"),
    ('["no-echo", ""]', "empty criterion name"),
    (str([f"c{i}" for i in range(21)]).replace("'", '"'), "21 criteria; at most 20"),
    ('["no-echo@v1", "no-echo"]', "names criterion no-echo twice"),
])
async def test_a_malformed_header_is_a_400_naming_it(harness: _Harness, header: str, why: str) -> None:
    status, body = await harness.post({"model": "gpt-4o", "messages": ASK}, header)
    assert status == 400 and "`op-criteria`" in body["message"] and why in body["message"], body
    assert harness.judge.resolved == []


async def test_criteria_on_a_stream_are_refused_naming_the_conflict(harness: _Harness) -> None:
    status, body = await harness.post({"model": "gpt-4o", "messages": ASK, "stream": True}, '["no-echo"]')
    assert status == 400 and "`op-criteria`" in body["message"] and "stream" in body["message"]


async def test_a_judge_that_fails_gives_its_result_an_error_and_the_call_answers(harness: _Harness) -> None:
    status, body = await harness.post({"model": "gpt-4o", "messages": ASK, "n": 2}, f'["{BROKEN}", "no-choice-1"]')
    assert status == 200
    for choice in body["choices"]:
        assert choice["criteria_results"][BROKEN] == {
            "status": "error", "errorCode": 502, "errorMessage": "the judge model answered 500"}
    # An error adds nothing to the combined score: choice 1 fails the other criterion and comes last.
    assert [_content_of(c) for c in body["choices"]] == ["Echo: count to 3", "Echo: count to 3 (choice 1)"]


async def test_when_criteria_judge_fails_as_a_whole_every_result_is_an_error_and_the_call_a_200(
        harness: _Harness) -> None:
    harness.judge.down = True
    status, body = await harness.post({"model": "gpt-4o", "messages": ASK, "n": 2}, '["no-echo", "no-choice-1"]')
    assert status == 200
    assert [_content_of(c) for c in body["choices"]] == ["Echo: count to 3", "Echo: count to 3 (choice 1)"]
    for choice in body["choices"]:
        for name in ("no-echo", "no-choice-1"):
            result = choice["criteria_results"][name]
            assert (result["status"], result["errorCode"]) == ("error", 503)
            assert "the judge model's provider is down" in result["errorMessage"]
    assert body["usage"]["criteria"]["total_tokens"] == 0


async def test_an_unreachable_criteria_judge_still_answers_200_with_error_results() -> None:
    bus, pending = MemoryBus(), PendingLogs()
    criteria = CriteriaJudge("127.0.0.1:1", timeout_s=5)  # nothing listens there
    await criteria.start()
    async with TestServer(build_app(delay_ms=0), host="127.0.0.1") as upstream:
        chat = ChatProxy(bus.producer(REQUEST_LOGS_TOPIC), _Providers(str(upstream.make_url("")).rstrip("/")),  # type: ignore[arg-type]
                         pending, 30.0, _NoCache(), criteria=criteria)  # type: ignore[arg-type]
        await chat.start()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat.handle)
        try:
            async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
                async with http.post(server.make_url("/v1/chat/completions"),
                                     data=orjson.dumps({"model": "gpt-4o", "messages": ASK}),
                                     headers={"x-refinery-project-id": PROJECT, "op-criteria": '["no-echo"]'}) as r:
                    status, body = r.status, await r.json()
        finally:
            await chat.stop()
            await criteria.stop()
    assert status == 200
    result = body["choices"][0]["criteria_results"]["no-echo"]
    assert result["status"] == "error" and result["errorCode"] == 503 and "UNAVAILABLE" in result["errorMessage"]


async def test_a_call_without_criteria_is_relayed_as_the_upstream_answered(harness: _Harness) -> None:
    status, body = await harness.post({"model": "gpt-4o", "messages": ASK, "n": 2})
    assert status == 200
    assert all("criteria_results" not in c for c in body["choices"]) and "criteria" not in body["usage"]
    assert harness.judge.resolved == [] and harness.judge.judged == []


def test_the_header_parser_keeps_names_and_versions_as_given() -> None:
    assert parse_criteria('["highlight-format", "juicebox-relevance@v2"]') == (
        "highlight-format", "juicebox-relevance@v2")
    assert parse_criteria("[]") == ()
    with pytest.raises(ProxyError) as err:
        parse_criteria("[null]")
    assert err.value.status == 400


async def test_an_anthropic_completion_is_judged_in_the_openai_shape(harness: _Harness) -> None:
    status, body = await harness.post({"model": "anthropic:claude-3-5-sonnet-20241022", "messages": ASK},
                                      '["no-echo"]')
    assert status == 200, body
    [choice] = body["choices"]
    assert choice["criteria_results"]["no-echo"] == {"status": "success", "score": 0.0,
                                                     "explanation": "contains 'Echo'"}
    assert orjson.loads(harness.judge.judged[0].outputs_json[0])["content"] == "Echo: count to 3"


class _DictCache:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        self.values[key] = value


async def test_a_cached_answer_is_judged_too_and_the_cache_keeps_it_unjudged() -> None:
    bus, pending = MemoryBus(), PendingLogs()
    judge = _Judge()
    server, port = await _serve_judge(judge)
    criteria, cache = CriteriaJudge(f"127.0.0.1:{port}"), _DictCache()
    await criteria.start()
    async with TestServer(build_app(delay_ms=0), host="127.0.0.1") as upstream:
        chat = ChatProxy(bus.producer(REQUEST_LOGS_TOPIC), _Providers(str(upstream.make_url("")).rstrip("/")),  # type: ignore[arg-type]
                         pending, 30.0, cache, criteria=criteria)  # type: ignore[arg-type]
        await chat.start()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat.handle)
        try:
            async with TestServer(app, host="127.0.0.1") as proxy_server, aiohttp.ClientSession() as http:
                judge.proxy_url = str(proxy_server.make_url("/v1/chat/completions"))
                answers = []
                for _ in range(2):
                    async with http.post(judge.proxy_url, data=orjson.dumps({"model": "gpt-4o", "messages": ASK,
                                                                              "n": 2}),
                                         headers={"x-refinery-project-id": PROJECT, "op-cache": "readWrite",
                                                  "op-criteria": '["no-choice-1"]'}) as resp:
                        answers.append((resp.headers.get("x-refinery-cache"), await resp.json()))
        finally:
            await chat.stop()
            await criteria.stop()
            await server.stop(0)
    (first_hit, first), (second_hit, second) = answers
    assert (first_hit, second_hit) == (None, "hit")
    assert second["choices"] == first["choices"] and len(judge.judged) == 2
    assert [c["criteria_results"]["no-choice-1"]["score"] for c in second["choices"]] == [1.0, 0.0]
    [stored] = cache.values.values()  # the upstream's answer, as it came: judging is per call
    assert b"criteria_results" not in stored and orjson.loads(stored)["choices"][1]["index"] == 1
