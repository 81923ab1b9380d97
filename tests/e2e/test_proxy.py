"""Chat completions through Refinery with the official `openai` SDK, and their logs."""

from __future__ import annotations

import time
import uuid

import openai
import pytest

from tests.e2e.conftest import search


@pytest.fixture(scope="module")
def client(stack, api_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.api_base, api_key=api_key, max_retries=0)


def test_plain_completion_is_answered_and_logged(client, api):
    tag = uuid.uuid4().hex
    resp = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"hello {tag}"}], metadata={"run": tag}, store=True,
    )
    assert resp.choices[0].message.content == f"Echo: hello {tag}"
    assert resp.model == "gpt-4o-mini"
    logs = search(api, metadata__run=tag)
    assert len(logs) == 1
    log = logs[0]
    assert log["statusCode"] == 200
    assert log["completionId"] == resp.id
    assert log["respPayload"]["choices"][0]["message"]["content"] == f"Echo: hello {tag}"
    assert log["reqPayload"]["metadata"] == {"run": tag}
    assert log["usage"]["promptTokens"] > 0
    assert log["cost"] > 0  # gpt-4o-mini has a list price


def test_overhead_header_is_reported(client):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    assert float(raw.headers["x-refinery-overhead-ms"]) >= 0


def test_streaming_completion_log_holds_the_merged_stream(client, api):
    tag = uuid.uuid4().hex
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"stream me {tag}"}], stream=True,
        metadata={"run": tag},
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == f"Echo: stream me {tag}"
    logs = search(api, metadata__run=tag)
    assert [entry["respPayload"]["choices"][0]["message"]["content"] for entry in logs] == [text]
    assert logs[0]["respPayload"]["choices"][0]["finish_reason"] == "stop"


def test_tool_call_completion_and_n_choices(client, api):
    tag = uuid.uuid4().hex
    tools = [{"type": "function", "function": {
        "name": "get_current_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    }}]
    resp = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "weather?"}], tools=tools, n=2,
        metadata={"run": tag},
    )
    assert len(resp.choices) == 2
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.name == "get_current_weather"
    assert call.function.arguments == '{"location":"San Francisco, CA"}'
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "weather?"}], tools=tools, stream=True,
        metadata={"run": tag + "-s"},
    )
    args = "".join(c.choices[0].delta.tool_calls[0].function.arguments or ""
                   for c in stream if c.choices and c.choices[0].delta.tool_calls)
    assert args == '{"location":"San Francisco, CA"}'
    logged = search(api, metadata__run=tag + "-s")[0]["respPayload"]["choices"][0]["message"]["tool_calls"]
    assert logged[0]["function"] == {"name": "get_current_weather", "arguments": args}


def test_upstream_errors_come_back_with_their_status_promptly(client, api):
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fail-500", messages=[{"role": "user", "content": "x"}])
    assert time.monotonic() - started < 5
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o-error", messages=[{"role": "user", "content": "x"}])
    assert "does not exist" in str(err.value)
    logs = search(api, model="gpt-4o-error")
    assert logs[0]["statusCode"] == 404
    assert logs[0]["errorMessage"] == "The model `gpt-4o-error` does not exist or you do not have access to it."


def test_unknown_fine_tuned_model_is_404_and_logged(client, api):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="openpipe:no-such-model", messages=[{"role": "user", "content": "x"}])
    latest = api.get("/local-testing-only-get-latest-logged-call").json()
    assert latest["statusCode"] == 404
    assert latest["errorMessage"] == "The model `openpipe:no-such-model` does not exist"


def test_op_log_request_false_is_not_logged(client, api):
    tag = uuid.uuid4().hex
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], metadata={"run": tag},
        extra_headers={"op-log-request": "false"},
    )
    assert search(api, metadata__run=tag) == []


def _upstream_calls(fake_llm: str) -> int:
    import httpx

    return httpx.get(f"{fake_llm}/fake/stats").json()["requests"]


def _ask(client, text: str, mode: str | None):
    headers = {"op-cache": mode} if mode else {}
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], extra_headers=headers
    )


def test_cache_modes(client, api, fake_llm):
    text = f"cache {uuid.uuid4().hex}"
    first = _ask(client, text, None)
    before = _upstream_calls(fake_llm)
    assert _ask(client, text, None).id != first.id  # no header: never a hit
    assert _upstream_calls(fake_llm) == before + 1

    _ask(client, text, "readOnly")  # miss, and must not write
    miss = _ask(client, text, "readOnly")
    assert api.get("/local-testing-only-get-latest-logged-call").json()["cacheHit"] is False
    written = _ask(client, text, "readWrite")
    assert written.id != miss.id
    before = _upstream_calls(fake_llm)
    hit = _ask(client, text, "readWrite")
    assert hit.id == written.id and _upstream_calls(fake_llm) == before
    latest = api.get("/local-testing-only-get-latest-logged-call").json()
    assert latest["cacheHit"] is True and latest["respPayload"]["id"] == written.id

    # A cached one-choice answer is not served to a request asking for three.
    before = _upstream_calls(fake_llm)
    three = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}], n=3,
                                           extra_headers={"op-cache": "readWrite"})
    assert len(three.choices) == 3 and three.id != written.id and _upstream_calls(fake_llm) == before + 1

    other = f"cache-wo {uuid.uuid4().hex}"
    _ask(client, other, "writeOnly")
    stored = _ask(client, other, "readOnly")
    assert api.get("/local-testing-only-get-latest-logged-call").json()["cacheHit"] is True
    before = _upstream_calls(fake_llm)
    assert _ask(client, other, "writeOnly").id != stored.id  # writeOnly never reads
    assert _upstream_calls(fake_llm) == before + 1


def test_anthropic_models_answer_in_openai_shape(client, api):
    tag = uuid.uuid4().hex
    resp = client.chat.completions.create(
        model="anthropic:claude-3-5-sonnet-20241022",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": f"hi {tag}"}],
        metadata={"run": tag},
    )
    assert resp.model == "anthropic:claude-3-5-sonnet-20241022"
    assert resp.choices[0].message.content == f"Echo: hi {tag}"
    tools = [{"type": "function", "function": {
        "name": "get_current_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    }}]
    only_system = [{"role": "system", "content": "weather in SF?"}]
    call = client.chat.completions.create(model="anthropic:claude-3-5-sonnet-20241022", messages=only_system,
                                          tools=tools).choices[0].message.tool_calls[0]
    assert call.function.name == "get_current_weather"
    stream = client.chat.completions.create(
        model="anthropic:claude-3-5-sonnet-20241022", messages=[{"role": "user", "content": f"s {tag}"}],
        stream=True, metadata={"run": tag + "-s"},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == f"Echo: s {tag}"
    logged = search(api, metadata__run=tag + "-s")[0]
    assert logged["provider"] == "anthropic"
    assert logged["respPayload"]["choices"][0]["message"]["content"] == text
    assert search(api, metadata__run=tag)[0]["reqPayload"]["model"] == "anthropic:claude-3-5-sonnet-20241022"
