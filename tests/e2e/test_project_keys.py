"""Project keys over HTTP: issue, list and revoke; read-only keys read everything and change nothing;
provider settings never hand a secret back; usage sums the project's logs."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from refinery.stack.platform import Stack


@pytest.fixture(scope="module")
def project(stack: Stack, admin: httpx.Client) -> dict:
    resp = admin.post("/admin/v1/projects", json={"name": f"keys-{uuid.uuid4().hex[:8]}"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _client(stack: Stack, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {key}"}, timeout=30)


def test_a_read_only_key_reads_and_every_write_is_refused_with_403(stack: Stack, project: dict):
    with _client(stack, project["apiKey"]) as owner:
        viewer = owner.post("/keys", json={"name": "viewer", "readOnly": True})
        assert viewer.status_code == 201, viewer.text
        assert viewer.json()["readOnly"] is True and viewer.json()["key"].startswith("opk-")
        ds = owner.post("/datasets", json={"name": "readable"}).json()["id"]
    with _client(stack, viewer.json()["key"]) as ro:
        assert ro.get("/project").json() == {"id": project["id"], "name": project["name"], "readOnly": True}
        assert ro.get("/datasets").status_code == 200
        assert ro.get(f"/datasets/{ds}/entries").status_code == 200
        assert ro.post("/logs/search", json={}).status_code == 200
        assert ro.post("/logs/export", json={}).status_code == 200
        assert ro.get("/usage").status_code == 200
        assert ro.get("/keys").status_code == 200
        refused = [
            ro.post("/datasets", json={"name": "nope"}),
            ro.delete(f"/datasets/{ds}"),
            ro.post("/report", json={"requestedAt": 1, "receivedAt": 2, "reqPayload": {}, "respPayload": {}}),
            ro.post("/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
            ro.post("/logs/update-metadata", json={"filters": [], "metadata": {"a": "b"}}),
            ro.post("/keys", json={"name": "escalate"}),
            ro.put("/providers/openai", json={"baseUrl": "http://evil.example", "apiKey": "sk"}),
        ]
        for resp in refused:
            assert resp.status_code == 403, (resp.request.method, resp.request.url, resp.text)
            body = resp.json()
            assert body["code"] == "FORBIDDEN" and body["message"].startswith("This API key is read-only"), body
    with _client(stack, project["apiKey"]) as owner:
        assert [d["name"] for d in owner.get("/datasets").json()["data"]] == ["readable"]


def test_a_revoked_key_stops_at_once_and_the_last_full_key_stays(stack: Stack, project: dict):
    with _client(stack, project["apiKey"]) as owner:
        temp = owner.post("/keys", json={"name": "temp"}).json()
        with _client(stack, temp["key"]) as t:
            assert t.get("/project").status_code == 200
            revoked = owner.delete(f"/keys/{temp['id']}")
            assert revoked.status_code == 200 and revoked.json()["revokedAt"] is not None
            assert t.get("/project").status_code == 401
            assert t.post("/report", json={"requestedAt": 1, "receivedAt": 2, "reqPayload": {},
                                           "respPayload": {}}).status_code == 401
        assert owner.delete(f"/keys/{temp['id']}").status_code == 404
        listed = {k["id"]: k for k in owner.get("/keys").json()["data"]}
        assert listed[temp["id"]]["revokedAt"] is not None and "key" not in listed[temp["id"]]
        full = [k for k in listed.values() if not k["readOnly"] and k["revokedAt"] is None]
        assert len(full) == 1
        last = owner.delete(f"/keys/{full[0]['id']}")
        assert last.status_code == 409 and "only full-access key" in last.json()["message"], last.text
        # Another project's key cannot be revoked from here.
        assert owner.delete("/keys/0000000000000000").status_code == 404


def test_providers_are_listed_without_their_secrets(stack: Stack, project: dict):
    with _client(stack, project["apiKey"]) as owner:
        saved = owner.put("/providers/acme", json={"baseUrl": "https://llm.acme.test/v1/", "apiKey": "sk-secret-1234"})
        assert saved.status_code == 200, saved.text
        assert saved.json() == {"provider": "acme", "baseUrl": "https://llm.acme.test/v1", "apiKeyHint": "1234",
                                "modelCosts": {}}
        listed = owner.get("/providers")
        assert "sk-secret" not in listed.text
        acme = {"provider": "acme", "baseUrl": "https://llm.acme.test/v1", "apiKeyHint": "1234", "modelCosts": {}}
        assert acme in listed.json()["data"]
        bad = owner.put("/providers/Not%20Valid", json={"baseUrl": "https://x.test", "apiKey": "k"})
        assert bad.status_code == 400 and "provider" in bad.json()["message"]


def test_usage_counts_the_projects_calls_tokens_and_cost_per_day_and_model(stack: Stack, project: dict):
    now = 1_800_000_000_000  # a fixed day far from the others: 2027-01-15 UTC
    with _client(stack, project["apiKey"]) as owner:
        for i, (model, status) in enumerate([("m-a", 200), ("m-a", 500), ("m-b", 200)]):
            resp = owner.post("/report", json={
                "requestedAt": now + i, "receivedAt": now + i + 5, "statusCode": status,
                "reqPayload": {"model": model, "messages": [{"role": "user", "content": "hi"}]},
                "respPayload": {"id": f"u{i}", "object": "chat.completion", "model": model, "choices": [],
                                "usage": {"prompt_tokens": 10 * (i + 1), "completion_tokens": i + 1,
                                          "total_tokens": 11 * (i + 1)}}})
            assert resp.status_code == 200, resp.text
        usage = owner.get("/usage", params={"model": "m-a"}).json()
        rows = [(r["model"], r["calls"], r["errors"], r["promptTokens"], r["completionTokens"]) for r in usage["data"]]
        assert rows == [("m-a", 2, 1, 30, 3)]
        everything = owner.get("/usage").json()
        assert everything["totals"]["calls"] == 3 and everything["totals"]["promptTokens"] == 60
        assert owner.get("/usage", params={"from": "yesterday"}).status_code == 400


def test_log_filters_take_contains_not_contains_and_any_of(stack: Stack, project: dict):
    tag = uuid.uuid4().hex
    with _client(stack, project["apiKey"]) as owner:
        for word in ("apple", "banana"):
            owner.post("/report", json={
                "requestedAt": 1, "receivedAt": 2, "statusCode": 200,
                "reqPayload": {"model": "gpt-4o", "messages": [{"role": "user", "content": f"{word} {tag}"}]},
                "respPayload": {"id": word, "choices": [{"index": 0, "message": {"role": "assistant",
                                                                                 "content": f"{word.upper()}!"}}]},
            }).raise_for_status()

        def found(*filters: dict) -> list[str]:
            resp = owner.post("/logs/search", json={"filters": [{"field": "request", "contains": tag}, *filters]})
            assert resp.status_code == 200, resp.text
            return sorted(log["reqPayload"]["messages"][0]["content"].split()[0] for log in resp.json()["data"])

        assert found() == ["apple", "banana"]
        assert found({"field": "response", "contains": "banana!"}) == ["banana"]
        assert found({"field": "request", "notContains": "APPLE"}) == ["banana"]
        ids = [log["id"] for log in owner.post("/logs/search", json={
            "filters": [{"field": "request", "contains": tag}]}).json()["data"]]
        assert found({"field": "id", "anyOf": ids[:1]}) and len(found({"field": "id", "anyOf": ids[:1]})) == 1
        two = owner.post("/logs/search", json={"filters": [{"field": "request", "equals": "x", "contains": "y"}]})
        assert two.status_code == 400 and "give one of" in two.text
        bad = owner.post("/logs/search", json={"filters": [{"field": "statusCode", "contains": "2"}]})
        assert bad.status_code == 400 and "equals only" in bad.text, bad.text


def test_a_providers_own_model_costs_price_its_calls_and_eval_outputs(stack: Stack, admin: httpx.Client,
                                                                      fake_llm: str):
    fresh = admin.post("/admin/v1/projects", json={"name": f"costs-{uuid.uuid4().hex[:8]}"}).json()
    with _client(stack, fresh["apiKey"]) as owner:
        saved = owner.put("/providers/acme", json={
            "baseUrl": f"{fake_llm}/v1", "apiKey": "sk-fake",
            "modelCosts": {"acme-small": {"inputPerMTok": 1000, "outputPerMTok": 2000}}})
        assert saved.status_code == 200, saved.text
        assert saved.json()["modelCosts"] == {"acme-small": {"inputPerMTok": 1000.0, "outputPerMTok": 2000.0}}
        assert owner.get("/providers").json()["data"][0]["modelCosts"] == saved.json()["modelCosts"]
        answer = owner.post("/chat/completions", json={"model": "openpipe:acme/acme-small",
                                                       "messages": [{"role": "user", "content": "price me"}]})
        assert answer.status_code == 200, answer.text
        usage = answer.json()["usage"]
        expected = (usage["prompt_tokens"] * 1000 + usage["completion_tokens"] * 2000) / 1e6
        [log] = owner.post("/logs/search", json={"filters": [
            {"field": "completionId", "equals": answer.json()["id"]}]}).json()["data"]
        assert log["cost"] == pytest.approx(expected)
        # A model without a price of its own has no cost (it is not a model Refinery knows the list price of).
        other = owner.post("/chat/completions", json={"model": "openpipe:acme/acme-large",
                                                      "messages": [{"role": "user", "content": "x"}]}).json()
        [unpriced] = owner.post("/logs/search", json={"filters": [
            {"field": "completionId", "equals": other["id"]}]}).json()["data"]
        assert unpriced["cost"] is None
        # An eval's outputs are costed the same way.
        ds = owner.post("/datasets", json={"name": "priced"}).json()["id"]
        owner.post(f"/datasets/{ds}/entries", json={"entries": [
            {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"Echo: q{i}"}],
             "split": "TEST"} for i in range(3)]}).raise_for_status()
        grader = ("function grader({ generatedOutput, datasetOutput }: GraderArgs): number {\n"
                  "  return generatedOutput.content === datasetOutput.content ? 1 : 0;\n}")
        created = owner.post("/evals", json={"name": "priced", "datasetId": ds, "type": "code", "grader": grader,
                                             "models": ["openpipe:acme/acme-small"]})
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 60
        while (e := owner.get(f"/evals/{created.json()['id']}").json())["status"] not in ("COMPLETED", "ERROR"):
            assert time.monotonic() < deadline, e
            time.sleep(0.3)
        [result] = e["results"]
        assert result["score"] == 1.0
        rows = owner.get(f"/evals/{e['id']}/rows").json()["data"]
        costs = [r["outputs"]["openpipe:acme/acme-small"]["costUsd"] for r in rows]
        assert all(c is not None and c > 0.001 for c in costs), costs  # a few tokens at $1000-2000 per million
        assert result["costUsd"] == pytest.approx(sum(costs))
