"""Bad input gets a 4xx with the documented error body, never a 5xx or a lost record."""

from __future__ import annotations

import httpx
import pytest


def assert_error_body(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["code"], str)
    assert all(isinstance(i["message"], str) for i in body.get("issues", []))
    return body


def test_malformed_json(api):
    resp = api.post("/report", content=b"{not json", headers={"content-type": "application/json"})
    body = assert_error_body(resp, 400)
    assert "JSON" in body["issues"][0]["message"]
    resp = api.post("/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert_error_body(resp, 400)


def test_mistyped_and_missing_fields_are_named(api):
    body = assert_error_body(api.post("/report", json={"statusCode": "abc"}), 400)
    assert any("statusCode" in i["message"] for i in body["issues"])
    body = assert_error_body(api.post("/logs/update-metadata", json={"metadata": {}}), 400)
    assert any("filters" in i["message"] for i in body["issues"])
    body = assert_error_body(api.post("/chat/completions", json={"messages": []}), 400)
    assert "model" in body["message"]
    body = assert_error_body(
        api.post("/logs/search", json={"filters": [{"field": "nope", "equals": "x"}]}), 400)
    assert "nope" in body["message"]


def test_unknown_route_and_method(api):
    assert_error_body(api.get("/no-such-route"), 404)
    assert_error_body(api.get("/report"), 405)


def test_oversized_body_is_413(api):
    resp = api.post("/report", content=b"x" * (10 * 1024 * 1024 + 1), headers={"content-type": "application/json"})
    assert_error_body(resp, 413)


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic abc"])
def test_bad_keys_are_401_and_store_nothing(stack, api, header):
    before = api.get("/local-testing-only-get-latest-logged-call").json()
    headers = {"authorization": header} if header else {}
    resp = httpx.post(f"{stack.api_base}/report", json={"reqPayload": {"model": "bad"}}, headers=headers)
    assert_error_body(resp, 401)
    assert api.get("/local-testing-only-get-latest-logged-call").json() == before
