"""The criteria routes of the gateway's FastAPI app against an in-process Criteria gRPC service.

The stand-in keeps criteria in memory with the refusals the proto documents (NOT_FOUND with the
SDK's words, INVALID_ARGUMENT naming the field, ALREADY_EXISTS), so what is checked is the REST
shape a user sees: camelCase objects, status codes, the error body, the two kinds of alignment-set
bodies, and the judge route in the public OpenAPI's shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import orjson
import pytest
from refinery.rpc import criteria_pb2, criteria_pb2_grpc

from tests.unit.gateway_over_grpc import gateway_over, is_error_body

KEY = "opk-criteria-unit"
T0 = 1_700_000_000_000.0


class _Criteria(criteria_pb2_grpc.CriteriaServicer):
    def __init__(self) -> None:
        self.criteria: dict[tuple[str, str], criteria_pb2.Criterion] = {}
        self.added: list[criteria_pb2.AddAlignmentRowsRequest] = []
        self.labels: list[criteria_pb2.LabelRowRequest] = []
        self.judged: list[criteria_pb2.JudgeRequest] = []
        self.fail_with: tuple[grpc.StatusCode, str] | None = None

    async def _fail(self, context) -> None:
        if self.fail_with is not None:
            await context.abort(*self.fail_with)

    async def _get(self, context, project_id: str, name: str) -> criteria_pb2.Criterion:
        c = self.criteria.get((project_id, name))
        if c is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Criterion {name} not found")
        return c  # type: ignore[return-value]

    async def CreateCriterion(self, request, context):
        await self._fail(context)
        if (request.project_id, request.name) in self.criteria:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"a criterion named {request.name} exists")
        if request.reward_model == "other-projects-model":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "rewardModel other-projects-model is not a DEPLOYED openpipeReward model of "
                                "this project")
        variables = list(request.templated_variables) if request.templated_variables_given else [
            "messages", "tools", "tool_choice", "output"]
        version = criteria_pb2.CriterionVersion(
            version=1, prompt=request.prompt, judge_model=request.judge_model or ("" if request.reward_model
                                                                                  else "gpt-4o"),
            templated_variables=[] if request.reward_model else variables, reward_model=request.reward_model,
            created_at=T0)
        c = criteria_pb2.Criterion(id=f"crit-{len(self.criteria) + 1}", name=request.name, versions=[version],
                                   created_at=T0, updated_at=T0)
        self.criteria[(request.project_id, request.name)] = c
        return c

    async def UpdateCriterion(self, request, context):
        c = await self._get(context, request.project_id, request.name)
        latest = c.versions[-1]
        nxt = criteria_pb2.CriterionVersion()
        nxt.CopyFrom(latest)
        nxt.version = latest.version + 1
        nxt.created_at = T0 + 1000 * nxt.version
        if request.HasField("prompt"):
            nxt.prompt = request.prompt
        if request.HasField("judge_model"):
            nxt.judge_model = request.judge_model
        if request.templated_variables_given:
            del nxt.templated_variables[:]
            nxt.templated_variables.extend(request.templated_variables)
        c.versions.append(nxt)
        c.updated_at = nxt.created_at
        return c

    async def GetCriterion(self, request, context):
        return await self._get(context, request.project_id, request.name)

    async def ListCriteria(self, request, context):
        await self._fail(context)
        return criteria_pb2.ListCriteriaResponse(
            criteria=[c for (p, _), c in self.criteria.items() if p == request.project_id])

    async def DeleteCriterion(self, request, context):
        await self._get(context, request.project_id, request.name)
        del self.criteria[(request.project_id, request.name)]
        return criteria_pb2.DeleteCriterionResponse(deleted=True)

    async def AddAlignmentRows(self, request, context):
        await self._get(context, request.project_id, request.name)
        self.added.append(request)
        if request.WhichOneof("source") == "dataset":
            return criteria_pb2.AddAlignmentRowsResponse(added=request.dataset.count)
        lines = request.jsonl.decode().splitlines()
        errors = [criteria_pb2.AlignmentLineError(line=i, message="the last message must be the assistant's")
                  for i, line in enumerate(lines, 1) if '"assistant"' not in line]
        return criteria_pb2.AddAlignmentRowsResponse(added=len(lines) - len(errors), errors=errors)

    async def ListAlignmentRows(self, request, context):
        c = await self._get(context, request.project_id, request.name)
        version = request.version or c.versions[-1].version
        if version > len(c.versions):
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"Criterion version v{version} not found for criterion {request.name}")
        judged = criteria_pb2.AlignmentRow(
            id="row-1", input_json=orjson.dumps({"messages": [{"role": "user", "content": "capital of France?"}]}),
            output_json=orjson.dumps({"role": "assistant", "content": "Paris"}), human_judgement="PASS",
            judge=criteria_pb2.Judgement(judgement="FAIL", score=0.0, explanation='The output contains "Paris".'),
            created_at=T0)
        pending = criteria_pb2.AlignmentRow(
            id="row-2", input_json=orjson.dumps({"messages": []}),
            output_json=orjson.dumps({"role": "assistant", "content": "Rome"}), created_at=T0)
        rows = [judged, pending][request.offset:request.offset + (request.limit or 100)]
        return criteria_pb2.ListAlignmentRowsResponse(rows=rows, total=2, version=version)

    async def LabelRow(self, request, context):
        await self._get(context, request.project_id, request.name)
        if request.row_id != "row-2":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"alignment row {request.row_id} not found")
        self.labels.append(request)
        return criteria_pb2.AlignmentRow(id="row-2", input_json=b'{"messages": []}',
                                         output_json=b'{"role": "assistant", "content": "Rome"}',
                                         human_judgement=request.human_judgement, created_at=T0)

    async def Stats(self, request, context):
        c = await self._get(context, request.project_id, request.name)
        if request.version == 2:  # nothing labeled is judged yet: no ratio has a denominator
            return criteria_pb2.StatsResponse(version=2, pending=3, labeled=3, total=5)
        return criteria_pb2.StatsResponse(
            version=request.version or c.versions[-1].version, precision=0.5, recall=1.0, f1=2 / 3,
            true_positives=1, false_positives=1, false_negatives=0, true_negatives=1, pending=0, labeled=3, total=5)

    async def Judge(self, request, context):
        self.judged.append(request)
        name, _, version = request.criterion_id.partition("@")
        c = await self._get(context, request.project_id, name)
        if version and version not in {f"v{v.version}" for v in c.versions}:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Criterion version {version} not found for "
                                                           f"criterion {name}")
        if name == "slow":
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the judge gpt-4o did not answer within 60 s")
        if c.versions[-1].reward_model:
            return criteria_pb2.JudgeResponse(score=0.83, usage=criteria_pb2.JudgeUsage(total_tokens=21),
                                              judgement="PASS")
        return criteria_pb2.JudgeResponse(score=1.0, explanation="Counts to three.", judgement="PASS",
                                          usage=criteria_pb2.JudgeUsage(prompt_tokens=90, completion_tokens=12,
                                                                        total_tokens=102))


class _Api:
    def __init__(self, client: httpx.AsyncClient, service: _Criteria) -> None:
        self.client, self.service = client, service

    async def create(self, **body: Any) -> httpx.Response:
        return await self.client.post("/criteria", json=body)


@pytest.fixture
async def api() -> AsyncIterator[_Api]:
    service = _Criteria()
    async with gateway_over(service, criteria_pb2_grpc.add_CriteriaServicer_to_server, criteria_pb2_grpc.CriteriaStub,
                            "criteria", KEY) as client:
        yield _Api(client, service)


async def test_create_get_list_update_and_delete_render_the_criterion_object(api: _Api) -> None:
    created = await api.create(name="highlight-format", prompt="Fails if the output is not a list.",
                               judgeModel="gpt-4o", templatedVariables=["messages", "output"])
    assert created.status_code == 201, created.text
    c = created.json()
    assert c == {
        "id": "crit-1", "object": "criterion", "name": "highlight-format",
        "createdAt": "2023-11-14T22:13:20.000Z", "updatedAt": "2023-11-14T22:13:20.000Z", "latestVersion": 1,
        "alignmentRows": 0, "versions": [{
            "version": 1, "ref": "highlight-format@v1", "prompt": "Fails if the output is not a list.",
            "judgeModel": "gpt-4o", "templatedVariables": ["messages", "output"], "rewardModel": None,
            "createdAt": "2023-11-14T22:13:20.000Z"}]}
    patched = await api.client.patch("/criteria/highlight-format", json={"prompt": "Fails if it is not short."})
    assert patched.status_code == 200, patched.text
    assert patched.json()["latestVersion"] == 2
    assert [(v["ref"], v["prompt"], v["judgeModel"]) for v in patched.json()["versions"]] == [
        ("highlight-format@v1", "Fails if the output is not a list.", "gpt-4o"),
        ("highlight-format@v2", "Fails if it is not short.", "gpt-4o")]
    assert len(api.service.criteria[("p1", "highlight-format")].versions) == 2
    got = await api.client.get("/criteria/highlight-format")
    assert got.status_code == 200 and got.json() == patched.json()
    listed = await api.client.get("/criteria")
    assert listed.json() == {"object": "list", "data": [patched.json()]}
    deleted = await api.client.delete("/criteria/highlight-format")
    assert deleted.json() == {"name": "highlight-format", "object": "criterion", "deleted": True}
    assert (await api.client.get("/criteria")).json()["data"] == []


async def test_a_reward_model_criterion_has_no_prompt_and_takes_the_slug(api: _Api) -> None:
    created = await api.create(name="reward-v1", rewardModel="openpipe:my-reward")
    assert created.status_code == 201, created.text
    [version] = created.json()["versions"]
    assert (version["rewardModel"], version["prompt"], version["judgeModel"], version["templatedVariables"]) == (
        "my-reward", None, None, [])


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "Bad Name!", "prompt": "p"}, "name"),
    ({"name": "ok", "prompt": "p", "templatedVariables": ["output", "secrets"]}, "templatedVariables"),
    ({"name": "ok"}, "prompt"),
    ({"name": "ok", "prompt": "p", "rewardModel": "r"}, "rewardModel"),
    ({"name": "ok", "prompt": "p", "colour": "red"}, "colour"),
    ({"name": "ok", "prompt": ""}, "prompt"),
])
async def test_a_bad_create_is_a_400_naming_the_field_and_nothing_is_created(api: _Api, body, field) -> None:
    resp = await api.create(**body)
    assert resp.status_code == 400, resp.text
    err = resp.json()
    assert is_error_body(err) and field in err["message"] + " ".join(i["message"] for i in err["issues"])
    assert api.service.criteria == {}


async def test_the_services_refusals_keep_their_words_and_map_to_their_statuses(api: _Api) -> None:
    assert (await api.create(name="taken", prompt="p")).status_code == 201
    taken = await api.create(name="taken", prompt="p")
    assert (taken.status_code, taken.json()["message"]) == (409, "a criterion named taken exists")
    foreign = await api.create(name="reward-x", rewardModel="other-projects-model")
    assert foreign.status_code == 400 and "not a DEPLOYED openpipeReward model" in foreign.json()["message"]
    missing = await api.client.get("/criteria/nope")
    assert (missing.status_code, missing.json()["message"]) == (404, "Criterion nope not found")
    api.service.fail_with = (grpc.StatusCode.UNAVAILABLE, "the store is restarting")
    down = await api.client.get("/criteria")
    assert down.status_code == 503
    assert down.json()["message"] == (
        "The criteria service is not available (UNAVAILABLE: the store is restarting); retry")


async def test_a_patch_that_changes_nothing_or_mixes_kinds_is_a_400(api: _Api) -> None:
    assert (await api.create(name="c", prompt="p")).status_code == 201
    empty = await api.client.patch("/criteria/c", json={})
    assert empty.status_code == 400 and "at least one of prompt" in empty.json()["message"]
    mixed = await api.client.patch("/criteria/c", json={"prompt": "q", "rewardModel": "r"})
    assert mixed.status_code == 400 and "rewardModel cannot be combined with prompt" in mixed.json()["message"]
    assert len(api.service.criteria[("p1", "c")].versions) == 1


@pytest.mark.parametrize("content_type", ["application/jsonl", "application/x-ndjson", "text/plain; charset=utf-8"])
async def test_a_jsonl_body_goes_to_the_service_as_it_came_and_bad_lines_come_back(api: _Api, content_type) -> None:
    assert (await api.create(name="c", prompt="p")).status_code == 201
    good = orjson.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                         "judgement": "PASS"})
    body = good + b"\n" + b'{"messages": [{"role": "user", "content": "q"}]}' + b"\n" + good + b"\n"
    resp = await api.client.post("/criteria/c/alignment-set", content=body, headers={"content-type": content_type})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"added": 2, "errors": [{"line": 2, "message": "the last message must be the assistant's"}]}
    [sent] = api.service.added
    assert sent.WhichOneof("source") == "jsonl" and sent.jsonl == body and sent.name == "c"


async def test_a_json_body_samples_a_dataset(api: _Api) -> None:
    assert (await api.create(name="c", prompt="p")).status_code == 201
    resp = await api.client.post("/criteria/c/alignment-set",
                                 json={"datasetId": "ds-1", "count": 25, "outputModel": "gpt-4o-mini"})
    assert resp.json() == {"added": 25, "errors": []}
    [sent] = api.service.added
    assert (sent.dataset.dataset_id, sent.dataset.count, sent.dataset.output_model) == ("ds-1", 25, "gpt-4o-mini")
    bad = await api.client.post("/criteria/c/alignment-set", json={"datasetId": "ds-1", "count": 0})
    assert bad.status_code == 400 and "count" in bad.json()["issues"][0]["message"]
    wrong = await api.client.post("/criteria/c/alignment-set", content=b"a=b",
                                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert wrong.status_code == 400 and "Content-Type" in wrong.json()["message"]
    assert len(api.service.added) == 1


async def test_a_jsonl_body_over_10_mb_is_a_413_naming_the_limit(api: _Api) -> None:
    assert (await api.create(name="c", prompt="p")).status_code == 201
    line = orjson.dumps({"messages": [{"role": "user", "content": "x" * 1000},
                                      {"role": "assistant", "content": "y"}]}) + b"\n"
    body = line * (10 * 1024 * 1024 // len(line) + 1)

    async def chunks():  # no content-length: the limit must hold while the body streams in
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    for content in (body, chunks()):
        resp = await api.client.post("/criteria/c/alignment-set", content=content,
                                     headers={"content-type": "application/jsonl"})
        assert resp.status_code == 413, resp.text
        assert "10 MB" in resp.json()["message"] and "10485760" in resp.json()["message"]
    assert api.service.added == []


async def test_alignment_rows_labels_and_stats_render_camel_case(api: _Api) -> None:
    assert (await api.create(name="c", prompt="p")).status_code == 201
    rows = await api.client.get("/criteria/c/alignment-set", params={"limit": 10})
    assert rows.status_code == 200, rows.text
    assert rows.json() == {"object": "list", "version": 1, "total": 2, "data": [
        {"id": "row-1", "input": {"messages": [{"role": "user", "content": "capital of France?"}]},
         "output": {"role": "assistant", "content": "Paris"}, "humanJudgement": "PASS",
         "judge": {"judgement": "FAIL", "score": 0.0, "explanation": 'The output contains "Paris".', "error": None},
         "createdAt": "2023-11-14T22:13:20.000Z"},
        {"id": "row-2", "input": {"messages": []}, "output": {"role": "assistant", "content": "Rome"},
         "humanJudgement": None, "judge": None, "createdAt": "2023-11-14T22:13:20.000Z"}]}
    unknown_version = await api.client.get("/criteria/c/alignment-set", params={"version": 7})
    assert (unknown_version.status_code, unknown_version.json()["message"]) == (
        404, "Criterion version v7 not found for criterion c")
    labeled = await api.client.put("/criteria/c/alignment-set/row-2", json={"humanJudgement": "FAIL"})
    assert labeled.status_code == 200 and labeled.json()["humanJudgement"] == "FAIL"
    cleared = await api.client.put("/criteria/c/alignment-set/row-2", json={"humanJudgement": None})
    assert cleared.json()["humanJudgement"] is None
    assert [r.human_judgement for r in api.service.labels] == ["FAIL", ""]
    bad_label = await api.client.put("/criteria/c/alignment-set/row-2", json={"humanJudgement": "MAYBE"})
    assert bad_label.status_code == 400 and "humanJudgement" in bad_label.json()["issues"][0]["message"]
    no_row = await api.client.put("/criteria/c/alignment-set/row-9", json={"humanJudgement": "PASS"})
    assert no_row.status_code == 404
    stats = await api.client.get("/criteria/c/stats")
    assert stats.json() == {"version": 1, "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3),
                            "truePositives": 1, "falsePositives": 1, "falseNegatives": 0, "trueNegatives": 1,
                            "pending": 0, "labeled": 3, "total": 5}
    none_judged = await api.client.get("/criteria/c/stats", params={"version": 2})
    assert (none_judged.json()["precision"], none_judged.json()["recall"], none_judged.json()["f1"]) == (
        None, None, None)


async def test_the_judge_route_speaks_the_public_shape_and_is_no_criterion_name(api: _Api) -> None:
    assert (await api.create(name="highlight-format", prompt="p")).status_code == 201
    assert (await api.create(name="reward-v1", rewardModel="rm")).status_code == 201
    output = {"role": "assistant", "content": "1, 2, 3"}
    resp = await api.client.post("/criteria/judge", json={
        "criterion_id": "highlight-format@v1", "input": {"messages": [{"role": "user", "content": "count to 3"}]},
        "output": output})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"score": 1.0, "explanation": "Counts to three.", "usage": {"total_tokens": 102}}
    sent = api.service.judged[-1]
    assert (sent.project_id, sent.criterion_id) == ("p1", "highlight-format@v1")
    assert orjson.loads(sent.input_json) == {"messages": [{"role": "user", "content": "count to 3"}]}
    assert orjson.loads(sent.output_json) == output
    reward = await api.client.post("/criteria/judge", json={"criterion_id": "reward-v1", "output": output})
    assert reward.json() == {"score": 0.83, "explanation": None, "usage": {"total_tokens": 21}}
    assert api.service.judged[-1].input_json == b""
    missing = await api.client.post("/criteria/judge", json={"criterion_id": "highlight-format@v9", "output": output})
    assert (missing.status_code, missing.json()["message"]) == (
        404, "Criterion version v9 not found for criterion highlight-format")
    bad = await api.client.post("/criteria/judge", json={"criterion_id": "highlight-format",
                                                        "output": {"role": "user", "content": "x"}})
    assert bad.status_code == 400 and "output.role" in bad.json()["issues"][0]["message"]


async def test_a_judge_that_did_not_answer_in_time_is_a_504_with_the_services_message(api: _Api) -> None:
    assert (await api.create(name="slow", prompt="p")).status_code == 201
    resp = await api.client.post("/criteria/judge", json={"criterion_id": "slow",
                                                         "output": {"role": "assistant", "content": "x"}})
    assert (resp.status_code, resp.json()["message"]) == (504, "the judge gpt-4o did not answer within 60 s")
    assert is_error_body(resp.json())


async def test_every_route_needs_the_project_key(api: _Api) -> None:
    for method, path in (("GET", "/criteria"), ("POST", "/criteria"), ("POST", "/criteria/judge"),
                         ("GET", "/criteria/c/stats"), ("POST", "/criteria/c/alignment-set")):
        resp = await api.client.request(method, path, headers={"authorization": "Bearer wrong"}, json={})
        assert resp.status_code == 401, (method, path)
    assert api.service.criteria == {} and api.service.added == []


async def test_the_routes_are_in_the_openapi_document_with_their_shapes(api: _Api) -> None:
    doc = (await api.client.get("http://gateway/openapi.json")).json()
    paths = doc["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/criteria"])
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/criteria/{name}"])
    assert "post" in paths["/api/v1/criteria/judge"] and "504" in paths["/api/v1/criteria/judge"]["post"]["responses"]
    assert {"post", "get"} <= set(paths["/api/v1/criteria/{name}/alignment-set"])
    assert "put" in paths["/api/v1/criteria/{name}/alignment-set/{row_id}"]
    assert "get" in paths["/api/v1/criteria/{name}/stats"]
    upload = paths["/api/v1/criteria/{name}/alignment-set"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-ndjson"} <= set(upload)
    judge_body = doc["components"]["schemas"]["JudgeIn"]
    assert set(judge_body["required"]) == {"criterion_id", "output"}
    created = paths["/api/v1/criteria"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/CriterionOut"}
    assert "latestVersion" in doc["components"]["schemas"]["CriterionOut"]["properties"]
