"""Criteria end to end, through HTTP and the official SDKs: an LLM judge aligned with human labels, the
judge API, best-of-N with `op-criteria`, and the refusals.

The judge model is the fake upstream's `gpt-4o`, whose verdict is a pure function of the prompt: a prompt
saying `fails if the output contains "X"` fails exactly the outputs containing X. So the test knows what every
judgement must be, and computes precision, recall and F1 itself from the per-row judgements it reads back.

Everything runs in a project of its own, so the judges' logged calls never become another test's latest log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openpipe import OpenAI as OpenPipeOpenAI
from openpipe.client import OpenPipe

from tests.e2e.conftest import wait_for

CITIES = ["Paris", "Rome", "Madrid", "Berlin", "Lisbon"]
FLIPPED = {3, 7, 10, 21}  # rows whose human label disagrees with the keyword rule of v1
UNLABELED = range(30, 40)  # rows imported without a label
PUT_LABELS = {30: "FAIL", 31: "PASS", 32: "SKIP", 35: "PASS", 36: "FAIL"}  # labeled after the import


class Project:
    def __init__(self, stack, key: str) -> None:
        self.key = key
        self.api = httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {key}"}, timeout=120)
        self.op = OpenPipe(api_key=key, base_url=stack.api_base)
        self.openai = openai.OpenAI(api_key=key, base_url=stack.api_base, max_retries=0, timeout=120)
        self.sdk = OpenPipeOpenAI(api_key="sk-fake", openpipe={"api_key": key, "base_url": stack.api_base})

    def criterion(self, name: str, prompt: str, judge_model: str = "gpt-4o", **more: Any) -> dict[str, Any]:
        resp = self.api.post("/criteria", json={"name": name, "prompt": prompt, "judgeModel": judge_model, **more})
        assert resp.status_code == 201, resp.text
        return resp.json()

    def names(self) -> list[str]:
        resp = self.api.get("/criteria")
        assert resp.status_code == 200, resp.text
        return sorted(c["name"] for c in resp.json()["data"])

    def latest_log(self) -> dict[str, Any]:
        resp = self.api.get("/local-testing-only-get-latest-logged-call")
        assert resp.status_code == 200, resp.text
        return resp.json()


@pytest.fixture(scope="module")
def project(stack, admin: httpx.Client, fake_llm: str) -> Iterator[Project]:
    created = admin.post("/admin/v1/projects", json={"name": f"criteria-{uuid.uuid4().hex[:6]}"})
    assert created.status_code == 200, created.text
    provider = admin.put(f"/admin/v1/projects/{created.json()['id']}/providers/openai",
                         json={"baseUrl": f"{fake_llm}/v1", "apiKey": "sk-fake"})
    assert provider.status_code == 200, provider.text
    p = Project(stack, created.json()["apiKey"])
    yield p
    p.api.close()


def _fails(keyword: str) -> str:
    return f'Judge the answer to a geography question. It fails if the output contains "{keyword}".'


def _row(i: int) -> dict[str, Any]:
    city = CITIES[i % len(CITIES)]
    row: dict[str, Any] = {"messages": [
        {"role": "system", "content": "Answer with a capital city."},
        {"role": "user", "content": f"Question {i}: name a capital."},
        {"role": "assistant", "content": f"The answer is {city}."}]}
    if i not in UNLABELED:
        fails = city == "Paris"
        row["judgement"] = "PASS" if fails == (i in FLIPPED) else "FAIL"
    return row


def _rows_of(project: Project, name: str, version: int) -> list[dict[str, Any]]:
    resp = project.api.get(f"/criteria/{name}/alignment-set", params={"version": version, "limit": 100})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["version"] == version and body["total"] == len(body["data"])
    return body["data"]


def _judged(project: Project, name: str, version: int, count: int) -> list[dict[str, Any]]:
    """The rows once the background judging of `version` reached every one of them."""
    def done() -> Any:
        rows = _rows_of(project, name, version)
        return rows if len(rows) == count and all(r["judge"] is not None for r in rows) else None

    return wait_for(done, 180, 0.5)


def _expected_stats(rows: list[dict[str, Any]], version: int) -> dict[str, Any]:
    """Precision, recall and F1 as the Alignment Sets page defines them (FAIL is the positive class),
    from each row's human label and the judge's verdict; SKIP and unlabeled rows left out."""
    counts = {"truePositives": 0, "falsePositives": 0, "falseNegatives": 0, "trueNegatives": 0}
    for r in rows:
        human, judge = r["humanJudgement"], r["judge"]["judgement"]
        if human not in ("PASS", "FAIL"):
            continue
        key = {("FAIL", "FAIL"): "truePositives", ("FAIL", "PASS"): "falsePositives",
               ("PASS", "FAIL"): "falseNegatives", ("PASS", "PASS"): "trueNegatives"}[(judge, human)]
        counts[key] += 1
    tp, fp, fn = counts["truePositives"], counts["falsePositives"], counts["falseNegatives"]
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall else None)
    labeled = sum(r["humanJudgement"] in ("PASS", "FAIL") for r in rows)
    return {"version": version, "precision": precision, "recall": recall, "f1": f1, **counts, "pending": 0,
            "labeled": labeled, "total": len(rows)}


def _stats(project: Project, name: str, version: int) -> dict[str, Any]:
    resp = project.api.get(f"/criteria/{name}/stats", params={"version": version})
    assert resp.status_code == 200, resp.text
    stats = resp.json()
    for key in ("precision", "recall", "f1"):
        if stats[key] is not None:
            stats[key] = pytest.approx(stats[key])
    return stats


def test_an_alignment_set_measures_each_version_of_a_judge(project: Project, tmp_path: Path) -> None:
    name = f"no-paris-{uuid.uuid4().hex[:6]}"
    created = project.criterion(name, _fails("Paris"), templatedVariables=["messages", "output"])
    assert (created["latestVersion"], created["versions"][0]["ref"]) == (1, f"{name}@v1")

    jsonl = tmp_path / "alignment.jsonl"
    jsonl.write_text("".join(json.dumps(_row(i)) + "\n" for i in range(40)))
    resp = project.api.post(f"/criteria/{name}/alignment-set", content=jsonl.read_bytes(),
                            headers={"content-type": "application/jsonl"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"added": 40, "errors": []}

    rows = _judged(project, name, 1, 40)
    # Rows keep the file's order, its labels, and the judge's verdict follows the v1 prompt's keyword.
    assert [r["output"]["content"] for r in rows] == [f"The answer is {CITIES[i % 5]}." for i in range(40)]
    assert [r["humanJudgement"] for r in rows] == [_row(i).get("judgement") for i in range(40)]
    assert [r["judge"]["judgement"] for r in rows] == ["FAIL" if i % 5 == 0 else "PASS" for i in range(40)]
    assert all(r["judge"]["score"] == (0.0 if i % 5 == 0 else 1.0) for i, r in enumerate(rows))
    assert rows[0]["judge"]["explanation"] == 'The output contains "Paris".'
    assert rows[0]["input"]["messages"][1]["content"] == "Question 0: name a capital."

    for i, label in PUT_LABELS.items():
        put = project.api.put(f"/criteria/{name}/alignment-set/{rows[i]['id']}", json={"humanJudgement": label})
        assert put.status_code == 200 and put.json()["humanJudgement"] == label, put.text
    rows = _rows_of(project, name, 1)
    assert [rows[i]["humanJudgement"] for i in PUT_LABELS] == list(PUT_LABELS.values())
    v1 = _expected_stats(rows, 1)
    # Spelled out once, so the arithmetic above is checked too: rows 0, 5, ... are Paris (judged FAIL);
    # the file's labels disagree on rows 3, 7, 21 (FN) and 10 (FP); the PUTs add a TP, a TN, an FP and an FN.
    assert (v1["truePositives"], v1["falsePositives"], v1["falseNegatives"], v1["trueNegatives"]) == (6, 2, 4, 22)
    assert v1["labeled"] == 34
    assert _stats(project, name, 1) == v1

    # v2 fails Rome instead: published by PATCH, every row is judged again, and v1's figures stay.
    patched = project.api.patch(f"/criteria/{name}", json={"prompt": _fails("Rome")})
    assert patched.status_code == 200 and patched.json()["latestVersion"] == 2, patched.text
    rows_v2 = _judged(project, name, 2, 40)
    assert [r["judge"]["judgement"] for r in rows_v2] == ["FAIL" if i % 5 == 1 else "PASS" for i in range(40)]
    v2 = _expected_stats(rows_v2, 2)
    assert v2 != {**v1, "version": 2}
    assert _stats(project, name, 2) == v2
    assert project.api.get(f"/criteria/{name}/stats").json()["version"] == 2  # default: the latest
    assert _stats(project, name, 1) == v1

    # `name@v1` still judges with v1's prompt; the bare name is the latest version.
    paris = {"role": "assistant", "content": "The answer is Paris."}
    rome = {"role": "assistant", "content": "The answer is Rome."}
    question = {"messages": [{"role": "user", "content": "name a capital"}]}

    def score(criterion_id: str, output: dict[str, Any]) -> float:
        resp = project.api.post("/criteria/judge", json={"criterion_id": criterion_id, "input": question,
                                                        "output": output})
        assert resp.status_code == 200, resp.text
        assert resp.json()["usage"]["total_tokens"] > 0
        return resp.json()["score"]

    assert (score(f"{name}@v1", paris), score(f"{name}@v1", rome)) == (0.0, 1.0)
    assert (score(name, paris), score(name, rome)) == (1.0, 0.0)
    judged = project.op.get_criterion_judgement(criterion_id=f"{name}@v1", input=question, output=paris)
    assert judged.score == 0.0 and judged.explanation == 'The output contains "Paris".'
    judged = project.op.get_criterion_judgement(criterion_id=f"{name}@v2", input=question, output=paris)
    assert judged.score == 1.0 and isinstance(judged.explanation, str)


def test_best_of_n_ranks_the_choices_by_their_combined_score(project: Project) -> None:
    tag = uuid.uuid4().hex[:6]
    first, second = f"no-first-{tag}", f"no-numbered-{tag}"
    project.criterion(first, 'It fails if the output contains "choice 1".')
    project.criterion(second, 'It fails if the output contains "(choice".')
    completion = project.openai.chat.completions.create(
        model="gpt-4o", n=4, messages=[{"role": "user", "content": "count to 3"}],
        extra_headers={"op-criteria": json.dumps([f"{first}@v1", second])})
    # The fake answers `Echo: count to 3` and then `... (choice i)`: choice 0 passes both criteria (2),
    # 2 and 3 pass one (1 each, kept in the upstream's order), 1 passes none (0).
    contents = [c.message.content for c in completion.choices]
    assert contents == ["Echo: count to 3", "Echo: count to 3 (choice 2)", "Echo: count to 3 (choice 3)",
                        "Echo: count to 3 (choice 1)"]
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]
    results = [c.model_extra["criteria_results"] for c in completion.choices]  # type: ignore[index]
    assert all(set(r) == {first, second} for r in results)  # keyed by name, without the version
    assert [[r[first]["score"], r[second]["score"]] for r in results] == [[1, 1], [1, 0], [1, 0], [0, 0]]
    assert all(r[first]["status"] == "success" and isinstance(r[first]["explanation"], str) for r in results)
    usage = completion.usage.model_extra["criteria"]  # type: ignore[union-attr]
    assert usage["total_tokens"] > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens

    # The project's latest log is the user's call as answered (ranked, with the results), not a judge's call,
    # and each of the 8 judgements is a logged call of its own, named by its criterion.
    latest = project.latest_log()
    assert latest["reqPayload"]["messages"] == [{"role": "user", "content": "count to 3"}]
    assert [c["message"]["content"] for c in latest["respPayload"]["choices"]] == contents
    assert latest["respPayload"]["choices"][3]["criteria_results"][first]["score"] == 0
    judges = project.api.post("/logs/search", json={"filters": [
        {"field": "metadata.op_criterion", "equals": f"{first}@v1"}]}).json()["data"]
    assert len(judges) >= 4


def test_best_of_n_through_the_openpipe_sdk_and_a_judge_that_errors(project: Project) -> None:
    tag = uuid.uuid4().hex[:6]
    ok, broken = f"no-numbered-{tag}", f"broken-judge-{tag}"
    project.criterion(ok, 'It fails if the output contains "(choice".')
    project.criterion(broken, "Anything.", judge_model="fail-500")
    completion = project.sdk.chat.completions.create(
        model="openai:gpt-4o", n=2, messages=[{"role": "system", "content": "count to 3"}],
        openpipe={"criteria": [ok, broken]})
    assert [c.message.content for c in completion.choices] == ["Echo: count to 3", "Echo: count to 3 (choice 1)"]
    for choice in completion.choices:
        result = choice.criteria_results[broken]  # type: ignore[attr-defined]
        assert result["status"] == "error" and isinstance(result["errorCode"], int)
        assert "500" in result["errorMessage"]
        assert choice.criteria_results[ok]["status"] == "success"  # type: ignore[attr-defined]
    latest = project.latest_log()
    assert latest["statusCode"] == 200 and latest["reqPayload"]["messages"][0]["content"] == "count to 3"


def test_a_judge_that_grades_its_verdicts_scores_by_its_grades(project: Project) -> None:
    # The fake judge grades a pass 0.8 (and a fail 0.2) when the prompt says so, as a real judge may grade a
    # narrow pass below a clear one; the verdict still decides PASS or FAIL.
    name = f"graded-{uuid.uuid4().hex[:6]}"
    project.criterion(name, 'It fails if the output contains "(choice". A pass scores 0.8.')
    completion = project.openai.chat.completions.create(
        model="gpt-4o", n=2, messages=[{"role": "user", "content": "count to 2"}],
        extra_headers={"op-criteria": json.dumps([name])})
    results = [c.model_extra["criteria_results"][name] for c in completion.choices]  # type: ignore[index]
    assert [(r["status"], r["score"]) for r in results] == [("success", 0.8), ("success", pytest.approx(0.2))]
    judged = project.op.get_criterion_judgement(criterion_id=name, input={"messages": [
        {"role": "user", "content": "count to 2"}]}, output={"role": "assistant", "content": "1, 2 (choice 9)"})
    assert judged.score == pytest.approx(0.2) and judged.explanation == 'The output contains "(choice".'
    line = json.dumps({"messages": [{"role": "user", "content": "count"}, {"role": "assistant", "content": "1, 2"}],
                       "judgement": "PASS"})
    assert project.api.post(f"/criteria/{name}/alignment-set", content=line,
                            headers={"content-type": "application/jsonl"}).json()["added"] == 1
    [row] = _judged(project, name, 1, 1)
    assert row["judge"]["judgement"] == "PASS" and row["judge"]["score"] == 0.8
    assert _stats(project, name, 1)["trueNegatives"] == 1


def test_refusals_name_the_problem_and_write_nothing(project: Project) -> None:
    tag = uuid.uuid4().hex[:6]
    name = f"refusals-{tag}"
    project.criterion(name, _fails("Paris"))
    before = project.names()
    ask = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}

    with pytest.raises(openai.NotFoundError) as err:
        project.openai.chat.completions.create(**ask, extra_headers={"op-criteria": f'["missing-{tag}"]'})
    assert f"Criterion missing-{tag} not found" in str(err.value)
    with pytest.raises(openai.NotFoundError) as err:
        project.sdk.chat.completions.create(model="openai:gpt-4o", messages=ask["messages"],
                                            openpipe={"criteria": [f"{name}@fake-version"]})
    assert f"Criterion version fake-version not found for criterion {name}" in str(err.value)
    for header in ("not json", '{"a": 1}', '[""]', json.dumps([f"c{i}" for i in range(21)])):
        resp = project.api.post("/chat/completions", json=ask, headers={"op-criteria": header})
        assert resp.status_code == 400 and "op-criteria" in resp.json()["message"], (header, resp.text)
    streamed = project.api.post("/chat/completions", json={**ask, "stream": True},
                                headers={"op-criteria": f'["{name}"]'})
    assert streamed.status_code == 400 and "stream" in streamed.json()["message"]

    judge = project.api.post("/criteria/judge", json={"criterion_id": f"missing-{tag}",
                                                     "output": {"role": "assistant", "content": "x"}})
    assert (judge.status_code, judge.json()["message"]) == (404, f"Criterion missing-{tag} not found")

    for body, field in (({"name": "Bad Name!", "prompt": "p"}, "name"),
                        ({"name": f"vars-{tag}", "prompt": "p", "templatedVariables": ["messages"]},
                         "output"),
                        ({"name": f"no-prompt-{tag}"}, "prompt"),
                        ({"name": "judge", "prompt": "p"}, "judge")):
        resp = project.api.post("/criteria", json=body)
        assert resp.status_code == 400, (body, resp.text)
        text = resp.json()["message"] + " ".join(i["message"] for i in resp.json()["issues"])
        assert field in text, (body, text)
    taken = project.api.post("/criteria", json={"name": name, "prompt": "p"})
    assert taken.status_code == 409, taken.text
    assert project.names() == before  # nothing half-written by any refused create

    line = json.dumps(_row(0)).encode() + b"\n"
    too_big = line * (10 * 1024 * 1024 // len(line) + 1)
    resp = project.api.post(f"/criteria/{name}/alignment-set", content=too_big,
                            headers={"content-type": "application/jsonl"})
    assert resp.status_code == 413 and "10485760" in resp.json()["message"], resp.text
    mixed = b"\n".join([line.strip(), b"{not json", json.dumps({"messages": [
        {"role": "user", "content": "no answer"}]}).encode(), line.strip()])
    resp = project.api.post(f"/criteria/{name}/alignment-set", content=mixed,
                            headers={"content-type": "application/x-ndjson"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["added"] == 2 and [e["line"] for e in resp.json()["errors"]] == [2, 3]
    rows = project.api.get(f"/criteria/{name}/alignment-set").json()
    assert rows["total"] == 2  # the good lines kept, the refused upload left nothing


def test_an_alignment_set_sampled_from_a_dataset_copies_or_regenerates_outputs(project: Project,
                                                                              api: httpx.Client) -> None:
    name = f"sampled-{uuid.uuid4().hex[:6]}"
    project.criterion(name, _fails("Paris"))
    dataset = project.op.create_dataset(name=f"alignment source {name}")
    entries = [{"messages": [{"role": "user", "content": f"Question {i}: name a capital."},
                             {"role": "assistant", "content": f"The answer is {CITIES[i % 5]}."}]}
               for i in range(12)]
    assert project.op.create_dataset_entries(dataset.id, entries=entries).entries_created == 12

    copied = project.api.post(f"/criteria/{name}/alignment-set", json={"datasetId": dataset.id, "count": 5})
    assert copied.status_code == 200 and copied.json() == {"added": 5, "errors": []}, copied.text
    rows = _judged(project, name, 1, 5)
    by_question = {e["messages"][0]["content"]: e["messages"][1] for e in entries}
    questions = [r["input"]["messages"][0]["content"] for r in rows]
    assert len(set(questions)) == 5 and all(r["input"]["messages"] == [
        {"role": "user", "content": q}] for r, q in zip(rows, questions, strict=True))
    assert all(r["output"] == by_question[q] for r, q in zip(rows, questions, strict=True))  # outputs copied
    assert all(r["humanJudgement"] is None for r in rows)
    assert [r["judge"]["judgement"] for r in rows] == ["FAIL" if "Paris" in r["output"]["content"] else "PASS"
                                                       for r in rows]

    # With `outputModel` the outputs are the model's answers (the fake echoes the question); more than the
    # dataset holds samples all of it.
    regenerated = project.api.post(f"/criteria/{name}/alignment-set",
                                   json={"datasetId": dataset.id, "count": 50, "outputModel": "gpt-4o"})
    assert regenerated.status_code == 200 and regenerated.json() == {"added": 12, "errors": []}, regenerated.text
    rows = _judged(project, name, 1, 17)[5:]
    assert sorted(r["output"]["content"] for r in rows) == sorted(f"Echo: {q}" for q in by_question)

    # Another project's dataset is not this project's to sample, and a bad count is named; nothing is added.
    foreign = api.post("/datasets", json={"name": f"foreign {name}"})
    assert foreign.status_code in (200, 201), foreign.text
    refused = project.api.post(f"/criteria/{name}/alignment-set", json={"datasetId": foreign.json()["id"], "count": 5})
    assert refused.status_code == 404 and foreign.json()["id"] in refused.json()["message"], refused.text
    bad = project.api.post(f"/criteria/{name}/alignment-set", json={"datasetId": dataset.id, "count": 0})
    assert bad.status_code == 400 and "count" in bad.text, bad.text
    assert len(_rows_of(project, name, 1)) == 17
    api.delete(f"/datasets/{foreign.json()['id']}")


# Its setup waits for the session's reward model, which the trainer takes in turn with the other fixtures' jobs.
@pytest.mark.timeout(1200)
def test_a_reward_model_criterion_must_be_a_deployed_reward_model_of_the_project(
        project: Project, api: httpx.Client, sdk_reward_model: str, sdk_models_submitted: dict) -> None:
    tag = uuid.uuid4().hex[:6]
    before = project.names()
    # The session's reward model belongs to the SDK suite's project, not to this one.
    foreign = project.api.post("/criteria", json={"name": f"reward-{tag}", "rewardModel": sdk_reward_model})
    assert foreign.status_code == 400, foreign.text
    assert sdk_reward_model in foreign.json()["message"], foreign.text
    assert project.names() == before
    # In its own project a chat model (trained or still training) is no reward model; the reward model is, and
    # its judgement has no explanation.
    chat = api.post("/criteria", json={"name": f"chat-{tag}", "rewardModel": next(iter(sdk_models_submitted))})
    assert chat.status_code == 400, chat.text
    own = api.post("/criteria", json={"name": f"reward-{tag}", "rewardModel": sdk_reward_model})
    assert own.status_code == 201, own.text
    judged = api.post("/criteria/judge", json={"criterion_id": f"reward-{tag}", "input": {"messages": [
        {"role": "user", "content": "count to 3"}]}, "output": {"role": "assistant", "content": "1, 2, 3"}})
    assert judged.status_code == 200, judged.text
    assert 0.0 <= judged.json()["score"] <= 1.0 and judged.json()["explanation"] is None
    # Held-out preference pairs, each answer judged on its own: the chosen one scores above the rejected one.
    from tests.e2e.sdk_models import reward_held_out

    def reward(messages: list[dict], output: dict) -> float:
        resp = api.post("/criteria/judge", json={"criterion_id": f"reward-{tag}", "input": {"messages": messages},
                                                 "output": output})
        assert resp.status_code == 200, resp.text
        return float(resp.json()["score"])

    pairs = reward_held_out()
    won = sum(reward(p["messages"][:-1], p["messages"][-1]) > reward(p["messages"][:-1], p["rejected_message"])
              for p in pairs)
    assert len(pairs) == 10 and won >= 9, f"chosen above rejected for {won} of {len(pairs)} held-out pairs"
    assert api.delete(f"/criteria/reward-{tag}").json() == {"name": f"reward-{tag}", "object": "criterion",
                                                           "deleted": True}
