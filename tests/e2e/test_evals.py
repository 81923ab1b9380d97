"""Evaluations end to end, through the REST routes: head-to-head, criterion and code evals over a dataset's TEST
split, with the trained model, the fake upstream's models and the rows' own outputs (`dataset`).

Every judge is the fake upstream's `gpt-4o`, whose verdicts are a pure function of the prompt: a head-to-head judge
told `prefer the output that contains "X"` picks the one output containing X (a tie when both or neither do), one
told `always prefer output A` always picks the first it is shown, and a criterion saying `fails if the output
contains "X"` fails exactly those outputs (`fails unless ...`: exactly the others). The fake's models answer
`Echo: <question>` (standing for the prompt a fine-tuned model replaces), the trained model answers `PINEAPPLE <n>`,
as the dataset does. So every score below is known in advance.

The evals that need no trained model run in a project of their own, on small datasets made here, so their logged
calls never become another test's latest log; every test waits for its evals to finish.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from openpipe.client import OpenPipe
from refinery.config import EVALS_TOPIC
from refinery.events.evals import EVAL_COMPLETED, EVAL_JUDGEMENT_RECORDED, EVAL_OUTPUT_GENERATED

from tests.e2e.conftest import BASE, question, wait_for
from tests.grader_templates import EXACT_MATCH

PREFER_PINEAPPLE = 'prefer the output that contains "PINEAPPLE"'
BASE_MODEL = f"openpipe:{BASE}"  # the model the fine-tune started from, served by inference without an adapter

# Reads a file on rows asking for it and never returns on the others: each row errors with why, none hangs the eval.
HOSTILE_GRADER = """
function grader({ messages }: { messages: { content: string }[] }): number {
  if (messages[0].content.includes("read")) {
    return Deno.readTextFileSync("/etc/passwd").length > 0 ? 1 : 0;
  }
  while (true) {}
}
"""
EVAL_DONE = ("COMPLETED", "ERROR")


class Project:
    """A project of its own, with the fake upstream as its OpenAI provider."""

    def __init__(self, stack: Any, key: str) -> None:
        self.api = httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {key}"}, timeout=120)
        self.op = OpenPipe(api_key=key, base_url=stack.api_base)

    def dataset(self, name: str, rows: list[tuple[str, str]], split: str = "TEST") -> str:
        """A dataset of (question, answer) rows, all in `split`."""
        ds = self.op.create_dataset(name=f"{name}-{uuid.uuid4().hex[:6]}").id
        for start in range(0, len(rows), 100):
            entries = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                        "split": split} for q, a in rows[start:start + 100]]
            created = self.op.create_dataset_entries(ds, entries=entries)
            assert created.entries_created == len(entries), created
        return ds


@pytest.fixture(scope="module")
def project(stack: Any, admin: httpx.Client, fake_llm: str) -> Iterator[Project]:
    created = admin.post("/admin/v1/projects", json={"name": f"evals-{uuid.uuid4().hex[:6]}"})
    assert created.status_code == 200, created.text
    provider = admin.put(f"/admin/v1/projects/{created.json()['id']}/providers/openai",
                         json={"baseUrl": f"{fake_llm}/v1", "apiKey": "sk-fake"})
    assert provider.status_code == 200, provider.text
    p = Project(stack, created.json()["apiKey"])
    yield p
    p.api.close()


def _pineapple_rows(count: int, first: int = 0) -> list[tuple[str, str]]:
    return [(question(i), f"PINEAPPLE {2 * i}") for i in range(first, first + count)]


@pytest.fixture(scope="module")
def small(project: Project) -> str:
    """Four TEST rows answered `PINEAPPLE <n>` in the dataset, as the trained model answers."""
    return project.dataset("small", _pineapple_rows(4))


def create(api: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = api.post("/evals", json=body)
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert made["object"] == "eval" and made["status"] in ("QUEUED", "RUNNING", "COMPLETED"), made
    return made


def finished(api: httpx.Client, eval_id: str, timeout_s: float = 300) -> dict[str, Any]:
    def done() -> Any:
        resp = api.get(f"/evals/{eval_id}")
        assert resp.status_code == 200, resp.text
        return resp.json() if resp.json()["status"] in EVAL_DONE else None

    return wait_for(done, timeout_s, 0.3)


def completed(api: httpx.Client, eval_id: str, timeout_s: float = 300) -> dict[str, Any]:
    e = finished(api, eval_id, timeout_s)
    assert e["status"] == "COMPLETED", e
    assert e["progress"]["done"] == e["progress"]["total"] > 0, e["progress"]
    assert e["error"] is None
    return e


def rows_of(api: httpx.Client, eval_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/evals/{eval_id}/rows", params={"limit": 1000})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "list" and body["total"] == len(body["data"])
    return body["data"]


def result(e: dict[str, Any], model: str) -> dict[str, Any]:
    [found] = [r for r in e["results"] if r["model"] == model]
    return found


def pairs(models: list[str]) -> set[frozenset[str]]:
    return {frozenset((a, b)) for i, a in enumerate(models) for b in models[i + 1:]}


def eval_events(stack: Any, eval_id: str, until: Callable[[list[dict[str, Any]]], bool],
                timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """The eval's events on the bus once `until` holds for them, deduplicated by event id (a redelivery is not a
    second event)."""

    async def read() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(EVALS_TOPIC, bootstrap_servers=stack.tansu.bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=100)
        await consumer.start()
        found: dict[str, dict[str, Any]] = {}
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for msgs in batches.values():
                    for msg in msgs:
                        env = orjson.loads(msg.value)
                        if env["aggregate_id"] == eval_id:
                            found[env["event_id"]] = env
                if not batches and until(list(found.values())):
                    break
        finally:
            await consumer.stop()
        return sorted(found.values(), key=lambda env: env["version"])

    events = asyncio.run(read())
    kinds = Counter(e["type"] for e in events)
    assert until(events), f"the bus did not carry the expected events of {eval_id}: {kinds}"
    assert [env["version"] for env in events] == list(range(1, len(events) + 1)), "every version, each once"
    return events


def _completions(count: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: sum(e["type"] == EVAL_COMPLETED for e in events) >= count


def work_done(events: list[dict[str, Any]]) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str, str]]]:
    """How often each (row, model) output and each (row, model, opponent) judgement was recorded."""
    outputs = Counter((e["data"]["row_id"], e["data"]["model"]) for e in events if e["type"] == EVAL_OUTPUT_GENERATED)
    judgements = Counter((e["data"]["row_id"], e["data"]["model"], e["data"].get("opponent") or "")
                         for e in events if e["type"] == EVAL_JUDGEMENT_RECORDED)
    return outputs, judgements


# ---- with the trained model ---------------------------------------------------------------


@pytest.mark.timeout(1800)  # the first test to need the trained model waits for its training
def test_head_to_head_ranks_the_trained_model_above_the_prompt_it_replaces(
        api: httpx.Client, trained: dict[str, Any]) -> None:
    model = f"openpipe:{trained['slug']}"
    models = [model, BASE_MODEL, "gpt-4o-mini", "dataset"]
    made = create(api, name=f"h2h-{trained['slug']}", datasetId=trained["dataset"], type="head_to_head",
                  models=models, instructions=PREFER_PINEAPPLE)
    assert (made["type"], made["models"], made["instructions"], made["rows"]) == (
        "head_to_head", models, PREFER_PINEAPPLE, 4)
    e = completed(api, made["id"])
    assert e["rows"] == 4 and e["comparisons"] == 6 * e["rows"]  # every pair of the 4 models, once per row
    assert [r["model"] for r in e["results"]] == models
    assert all(r["comparisons"] == 3 * e["rows"] for r in e["results"])
    trained_rate, echo_rate = result(e, model)["score"], result(e, "gpt-4o-mini")["score"]
    assert trained_rate > echo_rate, e["results"]
    assert trained_rate > result(e, BASE_MODEL)["score"], e["results"]
    assert e["matrix"][model]["gpt-4o-mini"] == 1.0 and e["matrix"]["gpt-4o-mini"][model] == 0.0
    assert e["matrix"][model][BASE_MODEL] == 1.0 and e["matrix"][BASE_MODEL][model] == 0.0
    assert result(e, BASE_MODEL)["errors"] == 0 and result(e, BASE_MODEL)["latencyMsP50"] > 0
    assert e["matrix"]["dataset"]["gpt-4o-mini"] == 1.0
    assert result(e, "gpt-4o-mini")["costUsd"] > 0 and result(e, "gpt-4o-mini")["latencyMsP50"] > 0
    assert result(e, "dataset")["latencyMsP50"] is None and result(e, "dataset")["costUsd"] == 0

    rows = rows_of(api, made["id"])
    assert len(rows) == 4
    for row in rows:
        assert set(row["outputs"]) == set(models) and all(o["done"] for o in row["outputs"].values())
        assert row["outputs"]["dataset"]["output"] == row["datasetOutput"]
        assert row["outputs"]["gpt-4o-mini"]["output"]["content"].startswith("Echo: What is")
        assert row["outputs"][model]["output"]["content"].startswith("PINEAPPLE")
        assert "PINEAPPLE" not in (row["outputs"][BASE_MODEL]["output"]["content"] or "")  # it was never taught
        assert {frozenset((j["model"], j["opponent"])) for j in row["judgements"]} == pairs(models)
        [versus] = [j for j in row["judgements"] if {j["model"], j["opponent"]} == {model, "gpt-4o-mini"}]
        assert versus["done"] and versus["error"] is None and versus["winner"] == model
        assert versus["score"] == (1.0 if versus["model"] == model else 0.0)
        assert "PINEAPPLE" in versus["reasoning"], versus  # the judge's explanation, kept with the verdict


@pytest.mark.timeout(1800)
def test_a_criterion_eval_passes_the_trained_model_and_fails_the_echo_and_the_base(
        api: httpx.Client, trained: dict[str, Any]) -> None:
    name = f"needs-pineapple-{uuid.uuid4().hex[:6]}"
    prompt = 'Judge the answer. It fails unless the output contains "PINEAPPLE".'
    criterion = api.post("/criteria", json={"name": name, "judgeModel": "gpt-4o", "prompt": prompt})
    assert criterion.status_code == 201, criterion.text
    model = f"openpipe:{trained['slug']}"
    models = [model, BASE_MODEL, "gpt-4o-mini", "dataset"]
    made = create(api, name=f"criterion-{name}", datasetId=trained["dataset"], type="criterion",
                  models=models, criterion=f"{name}@v1")
    assert made["criterion"] == f"{name}@v1" and "matrix" not in made
    e = completed(api, made["id"])
    assert result(e, "gpt-4o-mini")["score"] == 0.0 and result(e, "dataset")["score"] == 1.0
    # The base model was never taught the PINEAPPLE answers the fine-tune learned.
    assert result(e, BASE_MODEL)["score"] == 0.0 and result(e, BASE_MODEL)["errors"] == 0, e["results"]
    assert result(e, model)["score"] > result(e, BASE_MODEL)["score"], e["results"]
    for row in rows_of(api, made["id"]):
        verdicts = {j["model"]: j for j in row["judgements"]}
        assert set(verdicts) == set(models)
        assert verdicts["gpt-4o-mini"]["score"] == 0.0 and verdicts[BASE_MODEL]["score"] == 0.0
        assert verdicts["gpt-4o-mini"]["reasoning"] == 'The output does not contain "PINEAPPLE".'
        assert verdicts["dataset"]["score"] == 1.0 and all(j["opponent"] is None for j in row["judgements"])
        content = row["outputs"][model]["output"]["content"] or ""
        assert verdicts[model]["score"] == (1.0 if "pineapple" in content.lower() else 0.0)


@pytest.mark.timeout(1800)
def test_a_code_eval_runs_the_docs_exact_match_template(api: httpx.Client, trained: dict[str, Any]) -> None:
    model = f"openpipe:{trained['slug']}"
    made = create(api, name=f"exact-{trained['slug']}", datasetId=trained["dataset"], type="code",
                  models=[model, BASE_MODEL, "gpt-4o-mini", "dataset"], grader=EXACT_MATCH)
    assert made["grader"] == EXACT_MATCH
    e = completed(api, made["id"])
    assert result(e, "dataset")["score"] == 1.0
    assert result(e, "gpt-4o-mini")["score"] == 0.0 and result(e, BASE_MODEL)["score"] == 0.0
    # Exact match also needs the sum right, which 2 epochs on 36 rows may or may not teach: never behind the base.
    assert result(e, model)["score"] >= result(e, BASE_MODEL)["score"], e["results"]
    assert all(r["errors"] == 0 for r in e["results"]), e["results"]
    for row in rows_of(api, made["id"]):
        grades = {j["model"]: j["score"] for j in row["judgements"]}
        content = row["outputs"][model]["output"]["content"]
        assert grades == {"dataset": 1.0, "gpt-4o-mini": 0.0, BASE_MODEL: 0.0,
                          model: 1.0 if content == row["datasetOutput"]["content"] else 0.0}


# ---- in a project of their own ------------------------------------------------------------


def test_a_position_biased_judge_gets_only_ties(project: Project, small: str) -> None:
    models = ["gpt-4o-mini", "dataset"]
    made = create(project.api, name="biased", datasetId=small, type="head_to_head", models=models,
                  judgeModel="gpt-4o", instructions="Be decisive: always prefer output A.")
    assert made["judgeModel"] == "gpt-4o"
    e = completed(project.api, made["id"])
    assert e["comparisons"] == 4
    assert [r["score"] for r in e["results"]] == [0.5, 0.5]
    assert e["matrix"] == {"gpt-4o-mini": {"dataset": 0.5}, "dataset": {"gpt-4o-mini": 0.5}}
    judgements = [j for row in rows_of(project.api, made["id"]) for j in row["judgements"]]
    assert len(judgements) == 4
    assert all((j["score"], j["winner"], j["error"], j["done"]) == (0.5, None, None, True) for j in judgements)


def test_a_grader_that_escapes_or_never_returns_errors_its_rows_and_the_eval_completes(project: Project) -> None:
    ds = project.dataset("hostile", [("please read a file", "x"), ("loop forever", "y"),
                                     ("read it again", "z")])
    made = create(project.api, name="hostile", datasetId=ds, type="code", models=["dataset"], grader=HOSTILE_GRADER)
    e = completed(project.api, made["id"], timeout_s=180)
    [outcome] = e["results"]
    assert (outcome["score"], outcome["errors"]) == (None, 3)
    errors = {row["input"]["messages"][0]["content"]: row["judgements"][0]["error"]
              for row in rows_of(project.api, made["id"])}
    assert set(errors) == {"please read a file", "loop forever", "read it again"}
    assert "timed out" in errors["loop forever"], errors
    for asked in ("please read a file", "read it again"):
        assert "read" in errors[asked].lower() and "timed out" not in errors[asked], errors


def test_adding_a_model_runs_only_its_work(stack: Any, project: Project, small: str) -> None:
    made = create(project.api, name="grows", datasetId=small, type="head_to_head", models=["gpt-4o-mini", "dataset"],
                  instructions=PREFER_PINEAPPLE)
    before = completed(project.api, made["id"])
    # 4 outputs of gpt-4o-mini, 4 comparisons with the dataset.
    assert before["progress"]["total"] == 8 and before["comparisons"] == 4
    outputs_before = {r["id"]: r["outputs"]["gpt-4o-mini"] for r in rows_of(project.api, made["id"])}

    added = project.api.post(f"/evals/{made['id']}/models", json={"models": ["gpt-4o"]})
    assert added.status_code == 200, added.text
    assert added.json()["models"] == ["gpt-4o-mini", "dataset", "gpt-4o"]
    # Its 4 outputs and its comparisons with each of the two models already there: 4 + 2 * 4.
    assert added.json()["progress"]["total"] == 8 + 4 + 2 * 4
    after = completed(project.api, made["id"])
    assert after["comparisons"] == 12 and after["rows"] == 4
    assert after["matrix"]["dataset"] == {"gpt-4o-mini": 1.0, "gpt-4o": 1.0}
    rows = rows_of(project.api, made["id"])
    assert {r["id"]: r["outputs"]["gpt-4o-mini"] for r in rows} == outputs_before  # not generated again
    assert all(len(r["judgements"]) == 3 for r in rows)

    outputs, judgements = work_done(eval_events(stack, made["id"], _completions(2)))
    assert set(outputs.values()) == {1} and set(judgements.values()) == {1}  # nothing done twice
    generated = Counter(model for _, model in outputs if model != "dataset")
    assert generated == {"gpt-4o-mini": 4, "gpt-4o": 4}, generated
    assert len(judgements) == 12

    again = project.api.post(f"/evals/{made['id']}/models", json={"models": ["gpt-4o"]})
    assert again.status_code == 400 and "gpt-4o" in again.json()["message"], again.text


def test_a_failing_model_errors_its_rows_and_the_others_finish(project: Project, small: str) -> None:
    models = ["fail-500", "gpt-4o-mini", "dataset"]
    made = create(project.api, name="failing", datasetId=small, type="head_to_head", models=models,
                  instructions=PREFER_PINEAPPLE)
    e = completed(project.api, made["id"])
    failing = result(e, "fail-500")
    assert failing["score"] is None and failing["errors"] >= 4, failing
    assert result(e, "dataset")["score"] == 1.0 and result(e, "gpt-4o-mini")["score"] == 0.0
    assert e["matrix"]["dataset"]["gpt-4o-mini"] == 1.0
    assert e["matrix"]["dataset"]["fail-500"] is None and e["matrix"]["fail-500"]["gpt-4o-mini"] is None
    for row in rows_of(project.api, made["id"]):
        out = row["outputs"]["fail-500"]
        assert out["done"] and out["output"] is None and "500" in out["error"], out
        assert row["outputs"]["gpt-4o-mini"]["error"] is None
        for j in row["judgements"]:
            assert j["done"]
            if "fail-500" in (j["model"], j["opponent"]):
                assert j["error"] and j["score"] is None, j
            else:
                assert j["error"] is None and j["winner"] == "dataset", j


def test_bad_input_is_refused_naming_the_problem_and_nothing_is_created(
        project: Project, small: str, api: httpx.Client) -> None:
    listed = project.api.get("/evals")
    assert listed.status_code == 200, listed.text
    before = listed.json()["data"]
    no_test_rows = project.dataset("train-only", _pineapple_rows(3), split="TRAIN")
    tag = uuid.uuid4().hex[:6]
    h2h = {"name": "bad", "datasetId": small, "type": "head_to_head", "models": ["gpt-4o-mini", "dataset"]}
    for body, status, named in (
        ({**h2h, "datasetId": f"no-such-{tag}"}, 404, f"no-such-{tag}"),
        ({**h2h, "models": ["openpipe:nope", "dataset"]}, 404, "nope"),
        ({**h2h, "type": "criterion", "models": ["dataset"], "criterion": f"missing-{tag}"}, 404, f"missing-{tag}"),
        ({**h2h, "datasetId": no_test_rows}, 400, "TEST"),
        ({**h2h, "type": "code", "models": ["dataset"], "grader": "function grader( { return 1; }"}, 400, "grader"),
        ({**h2h, "type": "code", "models": ["dataset"], "grader": "const x = 1;"}, 400, "grader"),
        ({**h2h, "models": ["gpt-4o-mini"]}, 400, "models"),
        ({**h2h, "models": ["dataset", "dataset"]}, 400, "dataset"),
        ({**h2h, "type": "pairwise"}, 400, "type"),
    ):
        resp = project.api.post("/evals", json=body)
        assert resp.status_code == status, (body, resp.text)
        err = resp.json()
        assert isinstance(err["code"], str) and isinstance(err["issues"], list)
        text = err["message"] + " " + " ".join(i["message"] for i in err["issues"])
        assert named in text, (body, text)
    assert project.api.get("/evals").json()["data"] == before  # nothing half-written by any refused create

    # Another project's eval is no eval at all.
    made = create(project.api, name="private", datasetId=small, type="code", models=["dataset"], grader=EXACT_MATCH)
    assert api.get(f"/evals/{made['id']}").status_code == 404
    assert made["id"] not in {e["id"] for e in api.get("/evals").json()["data"]}
    assert api.post(f"/evals/{made['id']}/models", json={"models": ["gpt-4o"]}).status_code == 404
    assert api.delete(f"/evals/{made['id']}").status_code == 404
    assert completed(project.api, made["id"])["results"][0]["score"] == 1.0
    deleted = project.api.delete(f"/evals/{made['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True, deleted.text
    assert project.api.get(f"/evals/{made['id']}").status_code == 404
    mine = project.api.get("/evals", params={"datasetId": small}).json()["data"]
    assert made["id"] not in {e["id"] for e in mine}


def test_an_eval_survives_a_restart_of_the_service_mid_run(stack: Any, project: Project) -> None:
    rows = 100
    ds = project.dataset("restart", _pineapple_rows(rows, first=100))
    models = ["gpt-4o-mini", "gpt-4o", "dataset"]
    made = create(project.api, name="restart", datasetId=ds, type="head_to_head", models=models,
                  instructions=PREFER_PINEAPPLE)

    def running() -> Any:
        e = project.api.get(f"/evals/{made['id']}").json()
        assert e["status"] != "COMPLETED", "the eval finished before the restart; give it more rows"
        return e if e["status"] == "RUNNING" and 0 < e["progress"]["done"] < e["progress"]["total"] else None

    at_kill = wait_for(running, 120, 0.05)
    stack.restart("eval", kill=True)
    stack.wait_healthy(60)
    e = completed(project.api, made["id"], timeout_s=600)
    assert e["progress"]["done"] > at_kill["progress"]["done"]
    assert e["progress"]["total"] == at_kill["progress"]["total"] == 2 * rows + 3 * rows
    assert e["comparisons"] == 3 * rows and e["rows"] == rows
    assert e["matrix"]["dataset"] == {"gpt-4o-mini": 1.0, "gpt-4o": 1.0}
    assert e["matrix"]["gpt-4o-mini"]["gpt-4o"] == 0.5  # the same answer: a tie

    listed = rows_of(project.api, made["id"])
    assert len(listed) == rows and len({r["id"] for r in listed}) == rows
    for row in listed:
        assert set(row["outputs"]) == set(models) and all(o["done"] and o["error"] is None
                                                          for o in row["outputs"].values())
        assert len(row["judgements"]) == 3
        assert {frozenset((j["model"], j["opponent"])) for j in row["judgements"]} == pairs(models)
    outputs, judgements = work_done(eval_events(stack, made["id"], _completions(1)))
    generated = Counter(model for _, model in outputs)
    assert generated["gpt-4o-mini"] == generated["gpt-4o"] == rows, generated
    assert set(outputs.values()) == {1}, [k for k, n in outputs.items() if n > 1]  # none recorded twice
    assert len(judgements) == 3 * rows and set(judgements.values()) == {1}
