"""The fake upstream, driven by the real `openai` and `anthropic` SDKs over loopback.

Every other suite and the benchmarks trust this fake to speak the wire formats the SDKs accept;
these tests are where that trust is earned: if an SDK can parse, merge and raise on what the fake
sends, the proxy tests built on it exercise Refinery and not the fake's quirks.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp.test_utils import TestServer
from criteria_judge.templating import FORCED_TOOL_CHOICE, JUDGEMENT_TOOL
from pydantic import BaseModel

from tests.fakes.upstream import build_app

REPO = Path(__file__).resolve().parents[2]
FAST = {"x-fake-delay-ms": "0"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": "integer"},
                "exact": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "unit": {"enum": ["c", "f"]},
            },
        },
    },
}


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    srv = TestServer(build_app(), host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


def base(srv: TestServer) -> str:
    return str(srv.make_url("")).rstrip("/")


@pytest.fixture
async def oai(server: TestServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        base_url=base(server) + "/v1", api_key="sk-fake", default_headers=FAST, max_retries=0, timeout=5
    )
    yield client
    await client.close()


@pytest.fixture
async def claude(server: TestServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        base_url=base(server), api_key="ak-fake", default_headers=FAST, max_retries=0, timeout=5
    )
    yield client
    await client.close()


@pytest.fixture
async def http(server: TestServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=base(server)) as session:
        yield session


USER = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is the weather"}]


# --- OpenAI: plain answers -------------------------------------------------------------------------------


async def test_echoes_last_user_message_with_real_completion_shape(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model="gpt-4o-mini", messages=USER, store=True, metadata={"prompt_id": "x"}, reasoning_effort="low"
    )
    assert completion.model == "gpt-4o-mini"
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{24}", completion.id)
    assert completion.object == "chat.completion" and isinstance(completion.created, int)
    assert completion.system_fingerprint == "fp_fake"
    [choice] = completion.choices
    assert choice.message.content == "Echo: what is the weather"
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    # 2 + 4 words of content, 4 per message; 5 words answered.
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (6 + 8, 5)
    assert completion.usage.total_tokens == 19

    again = await oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert again.id != completion.id and again.choices[0].message.content == choice.message.content


async def test_content_parts_fallbacks_and_n_choices(oai: openai.AsyncOpenAI) -> None:
    parts = await oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": [{"type": "text", "text": "from parts"}]}], n=3
    )
    assert [c.index for c in parts.choices] == [0, 1, 2]
    assert [c.message.content for c in parts.choices] == [
        "Echo: from parts", "Echo: from parts (choice 1)", "Echo: from parts (choice 2)",
    ]
    system_only = await oai.chat.completions.create(model="gpt-4o", messages=[{"role": "system", "content": "count"}])
    assert system_only.choices[0].message.content == "Echo: count"
    empty = await oai.chat.completions.create(model="gpt-4o", messages=[])
    assert empty.choices[0].message.content == "Echo: Hello"


async def test_max_tokens_truncates_with_length(oai: openai.AsyncOpenAI) -> None:
    one = await oai.chat.completions.create(model="gpt-4o", messages=USER, max_tokens=1)
    assert (one.choices[0].message.content, one.choices[0].finish_reason) == ("Echo:", "length")
    three = await oai.chat.completions.create(model="gpt-4o", messages=USER, max_completion_tokens=3)
    assert (three.choices[0].message.content, three.choices[0].finish_reason) == ("Echo: what is", "length")
    roomy = await oai.chat.completions.create(model="gpt-4o", messages=USER, max_tokens=50)
    assert roomy.choices[0].finish_reason == "stop"


# --- OpenAI: tools, functions, structured output ---------------------------------------------------------


async def test_tool_calls_first_or_forced_tool(oai: openai.AsyncOpenAI) -> None:
    first = await oai.chat.completions.create(model="gpt-4o", messages=USER, tools=[WEATHER, SEARCH])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert re.fullmatch(r"call_[0-9a-f]+", call.id) and call.type == "function"
    assert call.function.name == "get_current_weather"
    assert json.loads(call.function.arguments) == {"location": "San Francisco, CA"}

    forced = await oai.chat.completions.create(
        model="gpt-4o", messages=USER, tools=[WEATHER, SEARCH],
        tool_choice={"type": "function", "function": {"name": "search"}},
    )
    [call] = forced.choices[0].message.tool_calls or []
    assert call.function.name == "search"
    assert json.loads(call.function.arguments) == {"query": "value", "limit": 1, "exact": True, "tags": [], "unit": "c"}

    declined = await oai.chat.completions.create(model="gpt-4o", messages=USER, tools=[WEATHER], tool_choice="none")
    assert declined.choices[0].message.content == "Echo: what is the weather"
    assert not declined.choices[0].message.tool_calls




@pytest.mark.parametrize(("system", "output", "passed", "explanation"), [
    ('It fails if the output contains "Paris".', "The answer is Paris.", False, 'The output contains "Paris".'),
    ('It fails if the output contains "Paris".', "Rome", True, 'The output does not contain "Paris".'),
    ('It fails unless the output contains "PINEAPPLE".', "pineapple 4", True, 'The output contains "PINEAPPLE".'),
    ('It fails unless the output contains "PINEAPPLE".', "Echo: 4", False,
     'The output does not contain "PINEAPPLE".'),
    ("Judge the answer.", "anything", True, "No failing condition applies to the output."),
])
async def test_a_forced_record_judgement_gets_the_prompts_verdict(
        oai: openai.AsyncOpenAI, system: str, output: str, passed: bool, explanation: str) -> None:
    assert await _judgement(oai, system, output) == {"passed": passed, "explanation": explanation}


async def test_a_prompt_that_grades_a_pass_adds_the_score(oai: openai.AsyncOpenAI) -> None:
    graded = 'It fails if the output contains "Paris". A pass scores 0.7.'
    assert await _judgement(oai, graded, "Rome") == {
        "passed": True, "score": 0.7, "explanation": 'The output does not contain "Paris".'}
    assert await _judgement(oai, graded, "Paris") == {
        "passed": False, "score": 0.3, "explanation": 'The output contains "Paris".'}
    assert "score" not in await _judgement(oai, "Judge it. A pass scores 0.2.", "x")  # below 0.5: no grade


async def _judgement(oai: openai.AsyncOpenAI, system: str, output: str) -> dict[str, Any]:
    # The word in the input (before the output block) does not count.
    user = f"<input>\nSay PINEAPPLE or Paris\n</input>\n<output>\n{output}\n</output>"
    resp = await oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        tools=[JUDGEMENT_TOOL], tool_choice=FORCED_TOOL_CHOICE)  # as criteria-judge asks
    [call] = resp.choices[0].message.tool_calls or []
    return json.loads(call.function.arguments)


COMPARE = {"type": "function", "function": {"name": "record_comparison", "parameters": {
    "type": "object", "required": ["explanation", "winner"],
    "properties": {"explanation": {"type": "string"}, "winner": {"type": "string", "enum": ["A", "B", "tie"]}}}}}
FORCE_COMPARE = {"type": "function", "function": {"name": "record_comparison"}}


def _comparison(system: str, a: str, b: str) -> list[dict[str, str]]:
    """A head-to-head judge's conversation: the input, then the two outputs between their tags."""
    user = f'<input>[{{"role": "user", "content": "What is 2 plus 2?"}}]</input>\n<output_a>{a}</output_a>\n' \
           f"<output_b>{b}</output_b>"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


PREFER = 'Compare the two outputs. prefer the output that contains "PINEAPPLE".'


@pytest.mark.parametrize(("system", "a", "b", "winner", "explanation"), [
    (PREFER, "PINEAPPLE 4", "Echo: What is 2 plus 2?", "A", 'Only output A contains "PINEAPPLE".'),
    (PREFER, "Echo: 4", "pineapple 4\nsure", "B", 'Only output B contains "PINEAPPLE".'),
    (PREFER, "PINEAPPLE 4", "PINEAPPLE 5", "tie", 'Both outputs contain "PINEAPPLE".'),
    (PREFER, "4", "four", "tie", 'Neither output contains "PINEAPPLE".'),
    ("Be fair. Always prefer output A.", "4", "PINEAPPLE 4", "A", "Output A is always preferred."),
    ("Compare the two outputs.", "PINEAPPLE 4", "4", "tie", "No preference applies to the outputs."),
])
async def test_a_forced_record_comparison_gets_the_prompts_verdict(
        oai: openai.AsyncOpenAI, system: str, a: str, b: str, winner: str, explanation: str) -> None:
    resp = await oai.chat.completions.create(model="gpt-4o", messages=_comparison(system, a, b),
                                             tools=[COMPARE], tool_choice=FORCE_COMPARE)
    [call] = resp.choices[0].message.tool_calls or []
    assert call.function.name == "record_comparison" and resp.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"winner": winner, "explanation": explanation}


async def test_the_comparison_rule_reads_only_the_tagged_outputs_and_only_when_forced(
        oai: openai.AsyncOpenAI) -> None:
    # The word in the input (before the outputs) counts for neither output.
    messages = [{"role": "system", "content": PREFER}, {"role": "user", "content": (
        "<input>Answer PINEAPPLE if unsure</input>\n<output_a>4</output_a>\n<output_b>four</output_b>")}]
    resp = await oai.chat.completions.create(model="gpt-4o", messages=messages,
                                             tools=[COMPARE], tool_choice=FORCE_COMPARE)
    assert json.loads((resp.choices[0].message.tool_calls or [])[0].function.arguments)["winner"] == "tie"
    # Offered but not forced, it is any tool: arguments from the schema, not a verdict.
    offered = await oai.chat.completions.create(model="gpt-4o", messages=_comparison(PREFER, "PINEAPPLE", "x"),
                                                tools=[COMPARE])
    assert json.loads((offered.choices[0].message.tool_calls or [])[0].function.arguments) == {
        "explanation": "value", "winner": "A"}


async def test_the_comparison_verdict_streams_like_any_tool_call(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="gpt-4o", messages=_comparison(PREFER, "x", "PINEAPPLE"),
                                               tools=[COMPARE], tool_choice=FORCE_COMPARE, stream=True)
    pieces = [c.choices[0].delta.tool_calls[0].function.arguments async for c in stream
              if c.choices and c.choices[0].delta.tool_calls]
    assert json.loads("".join(p or "" for p in pieces))["winner"] == "B"


async def test_legacy_function_call(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model="gpt-4o", messages=USER, functions=[WEATHER["function"], SEARCH["function"]],
        function_call={"name": "get_current_weather"},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.content is None
    assert choice.message.function_call is not None
    assert choice.message.function_call.name == "get_current_weather"
    assert json.loads(choice.message.function_call.arguments) == {"location": "San Francisco, CA"}


class Address(BaseModel):
    location: str
    zip_code: int


class Event(BaseModel):
    name: str
    date: str
    public: bool
    address: Address
    tags: list[str]


async def test_structured_outputs(oai: openai.AsyncOpenAI) -> None:
    parsed = await oai.chat.completions.parse(model="gpt-4o-2024-08-06", messages=USER, response_format=Event)
    event = parsed.choices[0].message.parsed
    assert event == Event(
        name="value", date="value", public=True, address=Address(location="San Francisco, CA", zip_code=1), tags=[]
    )
    with pytest.raises(openai.LengthFinishReasonError):
        await oai.chat.completions.parse(
            model="gpt-4o-2024-08-06", messages=USER, response_format=Event, max_tokens=1
        )
    obj = await oai.chat.completions.create(model="gpt-4o", messages=USER, response_format={"type": "json_object"})
    assert json.loads(obj.choices[0].message.content or "") == {"echo": "what is the weather"}


# --- OpenAI: streaming -----------------------------------------------------------------------------------


async def _chunks(oai: openai.AsyncOpenAI, **kwargs: Any) -> list[Any]:
    stream = await oai.chat.completions.create(model="gpt-4o", messages=USER, stream=True, **kwargs)
    return [chunk async for chunk in stream]


async def test_stream_content_merges_to_the_plain_answer(oai: openai.AsyncOpenAI) -> None:
    chunks = await _chunks(oai, n=2, stream_options={"include_usage": True})
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.model == "gpt-4o" and c.system_fingerprint == "fp_fake" for c in chunks)
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage is not None and usage.usage.completion_tokens == 5 + 7
    texts = {0: "", 1: ""}
    finish = {}
    for chunk in chunks[:-1]:
        [choice] = chunk.choices
        texts[choice.index] += choice.delta.content or ""
        if choice.finish_reason:
            finish[choice.index] = choice.finish_reason
    assert texts == {0: "Echo: what is the weather", 1: "Echo: what is the weather (choice 1)"}
    assert finish == {0: "stop", 1: "stop"}
    first = chunks[0].choices[0].delta
    assert (first.role, first.content) == ("assistant", "")
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 5 + 7  # one word each


async def test_stream_merges_with_the_openpipe_sdk(oai: openai.AsyncOpenAI) -> None:
    merge = pytest.importorskip("openpipe.merge_openai_chunks").merge_openai_chunks
    plain = await oai.chat.completions.create(model="gpt-4o", messages=USER)
    for kwargs, field in (({}, "content"), ({"tools": [WEATHER]}, "tool_calls"),
                          ({"functions": [WEATHER["function"]]}, "function_call")):
        merged = None
        for chunk in await _chunks(oai, **kwargs):
            merged = merge(merged, chunk)
        assert merged is not None
        message = merged.choices[0].message
        if field == "content":
            assert message.content == plain.choices[0].message.content
        elif field == "tool_calls":
            [call] = message.tool_calls or []
            assert call.function.name == "get_current_weather"
            assert json.loads(call.function.arguments) == {"location": "San Francisco, CA"}
        else:
            assert message.function_call is not None
            assert json.loads(message.function_call.arguments) == {"location": "San Francisco, CA"}


async def test_stream_tool_call_deltas(oai: openai.AsyncOpenAI) -> None:
    chunks = await _chunks(oai, tools=[WEATHER])
    head = chunks[0].choices[0].delta
    assert head.role == "assistant" and head.content is None
    [call] = head.tool_calls or []
    assert call.id and call.function is not None
    assert (call.index, call.type, call.function.name, call.function.arguments) == (
        0, "function", "get_current_weather", ""
    )
    pieces = [c.choices[0].delta.tool_calls[0].function.arguments for c in chunks[1:-1]]
    assert 2 <= len(pieces) <= 4 and all(pieces)
    assert all(c.choices[0].delta.tool_calls[0].function.name is None for c in chunks[1:-1])
    assert json.loads("".join(pieces)) == {"location": "San Francisco, CA"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_stream_function_call_starts_in_the_first_chunk(oai: openai.AsyncOpenAI) -> None:
    chunks = await _chunks(oai, functions=[WEATHER["function"]])
    head = chunks[0].choices[0].delta
    assert head.role == "assistant" and head.function_call is not None
    assert (head.function_call.name, head.function_call.arguments) == ("get_current_weather", "")
    pieces = [c.choices[0].delta.function_call.arguments for c in chunks[1:-1]]
    assert json.loads("".join(pieces)) == {"location": "San Francisco, CA"}
    assert chunks[-1].choices[0].finish_reason == "function_call"


async def test_sse_framing_is_plain_data_lines(http: aiohttp.ClientSession) -> None:
    body = {"model": "gpt-4o", "messages": USER, "stream": True}
    async with http.post("/v1/chat/completions", json=body, headers={**FAST, "authorization": "Bearer sk-fake"}) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        raw = await r.text()
    frames = raw.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    assert all(f.startswith("data: ") and "\n" not in f for f in frames[:-1])
    assert "event:" not in raw


# --- OpenAI: errors --------------------------------------------------------------------------------------


NOT_FOUND = "The model `gpt-4o-error` does not exist or you do not have access to it."


@pytest.mark.parametrize("stream", [False, True])
async def test_unknown_model_is_404(oai: openai.AsyncOpenAI, stream: bool) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        await oai.chat.completions.create(model="gpt-4o-error", messages=USER, stream=stream)
    assert err.value.status_code == 404
    assert err.value.body == {
        "message": NOT_FOUND, "type": "invalid_request_error", "param": None, "code": "model_not_found",
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_wrong_key_is_401(server: TestServer, stream: bool) -> None:
    async with openai.AsyncOpenAI(base_url=base(server) + "/v1", api_key="wrong", default_headers=FAST,
                                  max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as err:
            await client.chat.completions.create(model="gpt-4o", messages=USER, stream=stream)
    assert err.value.body == {
        "message": "Incorrect API key provided: wrong.", "type": "invalid_request_error", "param": None,
        "code": "invalid_api_key",
    }


async def test_failing_models(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as err500:
        await oai.chat.completions.create(model="fail-500", messages=USER)
    assert err500.value.status_code == 500
    assert err500.value.body == {"message": "The server had an error while processing your request.",
                                 "type": "server_error", "param": None, "code": "server_error"}
    with pytest.raises(openai.RateLimitError) as err429:
        await oai.chat.completions.create(model="fail-429", messages=USER, stream=True)
    assert err429.value.status_code == 429


async def test_bad_input_gets_json_errors(http: aiohttp.ClientSession) -> None:
    auth = {**FAST, "authorization": "Bearer sk-fake"}
    cases: list[tuple[str, Any, int, str]] = [
        ("/v1/chat/completions", b"{not json", 400, "could not parse the JSON body"),
        ("/v1/chat/completions", b"[1, 2]", 400, "expected a JSON object"),
        ("/v1/chat/completions", {"messages": USER}, 400, "'model'"),
        ("/v1/chat/completions", {"model": "gpt-4o"}, 400, "'messages'"),
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": "hi"}, 400, "'messages'"),
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": USER, "n": "two"}, 400, "'n'"),
        ("/v1/nowhere", {}, 404, "Invalid URL"),
    ]
    for path, payload, status, fragment in cases:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        async with http.post(path, data=data, headers=auth) as r:
            assert r.status == status, path
            assert fragment in (await r.json())["error"]["message"]
    # Garbage in odd places is tolerated rather than crashing the server.
    odd = {"model": "gpt-4o", "messages": [None, 3, {"role": "user", "content": {"weird": True}}],
           "tools": [{"type": "function"}, "x"], "response_format": {"type": "json_schema", "json_schema": 3},
           "stream_options": None, "max_tokens": "many"}
    async with http.post("/v1/chat/completions", json=odd, headers=auth) as r:
        assert r.status == 200
    async with http.get("/v1/models", headers={**FAST, "authorization": "Bearer sk-fake"}) as r:
        ids = [m["id"] for m in (await r.json())["data"]]
    assert {"gpt-4o", "gpt-4o-mini", "gpt-4o-2024-08-06", "o1"} <= set(ids)
    async with http.get("/health") as r:
        assert (r.status, await r.text()) == (200, "ok")


# --- Anthropic -------------------------------------------------------------------------------------------


HELLO = [{"role": "user", "content": "Hello, Claude"}]


async def test_anthropic_text(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model="claude-3-opus-20240229", max_tokens=100, messages=HELLO, system="be nice", metadata={"user_id": "u"}
    )
    assert re.fullmatch(r"msg_[0-9a-f]{24}", message.id)
    assert (message.type, message.role, message.model) == ("message", "assistant", "claude-3-opus-20240229")
    assert message.content[0].type == "text" and message.content[0].text == "Echo: Hello, Claude"
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2 + 4 + 2, 3)


async def test_anthropic_tool_use(claude: anthropic.AsyncAnthropic) -> None:
    tool = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
    message = await claude.messages.create(model="claude-3-5-sonnet", max_tokens=100, messages=HELLO, tools=[tool])
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.id.startswith("toolu_")
    assert block.input == {"location": "San Francisco, CA"}


async def test_anthropic_forced_record_comparison_gets_the_prompts_verdict(claude: anthropic.AsyncAnthropic) -> None:
    tool = {"name": "record_comparison", "input_schema": COMPARE["function"]["parameters"]}
    [system, user] = _comparison(PREFER, "Echo: 4", "PINEAPPLE 4")
    message = await claude.messages.create(
        model="claude-3-5-sonnet", max_tokens=100, system=system["content"], messages=[user],
        tools=[tool], tool_choice={"type": "tool", "name": "record_comparison"})
    [block] = message.content
    assert block.type == "tool_use" and block.name == "record_comparison"
    assert block.input == {"winner": "B", "explanation": 'Only output B contains "PINEAPPLE".'}
    biased = await claude.messages.create(
        model="claude-3-5-sonnet", max_tokens=100, system="always prefer output A",
        messages=[_comparison("", "4", "PINEAPPLE 4")[1]],
        tools=[tool], tool_choice={"type": "tool", "name": "record_comparison"})
    assert biased.content[0].input["winner"] == "A"


async def test_anthropic_streaming(claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(model="claude-3-5-sonnet", max_tokens=100, messages=HELLO) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(texts) == 3 and "".join(texts) == "Echo: Hello, Claude"
    assert final.content[0].text == "Echo: Hello, Claude" and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3

    tool = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
    async with claude.messages.stream(model="claude-3-5-sonnet", max_tokens=100, messages=HELLO,
                                      tools=[tool]) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[0].input == {"location": "San Francisco, CA"}


async def test_anthropic_errors(server: TestServer, claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        await claude.messages.create(model="claude-error", max_tokens=10, messages=HELLO, stream=True)
    assert missing.value.body == {"type": "error", "error": {"type": "not_found_error", "message": (
        "The model `claude-error` does not exist or you do not have access to it."
    )}}
    async with anthropic.AsyncAnthropic(base_url=base(server), api_key="wrong", default_headers=FAST,
                                        max_retries=0) as client:
        with pytest.raises(anthropic.AuthenticationError) as denied:
            await client.messages.create(model="claude-3-5-sonnet", max_tokens=10, messages=HELLO)
    assert denied.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                            "message": "invalid x-api-key"}}


# --- Counting, delay, CLI --------------------------------------------------------------------------------


async def test_stats_count_upstream_requests(
    http: aiohttp.ClientSession, oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    async with http.post("/fake/reset") as r:
        assert await r.json() == {"requests": 0}
    await oai.chat.completions.create(model="gpt-4o", messages=USER)
    await claude.messages.create(model="claude-3-5-sonnet", max_tokens=10, messages=HELLO)
    with pytest.raises(openai.NotFoundError):
        await oai.chat.completions.create(model="gpt-4o-error", messages=USER)
    async with http.get("/health"):
        pass
    async with http.get("/fake/stats") as r:
        assert await r.json() == {"requests": 3}
    async with http.post("/fake/reset"):
        pass
    async with http.get("/fake/stats") as r:
        assert await r.json() == {"requests": 0}


async def test_delay_comes_before_any_byte(server: TestServer, http: aiohttp.ClientSession) -> None:
    """The openpipe SDK's timeout tests need a 0.1 s client to time out against the default 0.3 s."""
    async with openai.AsyncOpenAI(base_url=base(server) + "/v1", api_key="sk-fake", timeout=0.1,
                                  max_retries=0) as slow:
        for stream in (False, True):
            with pytest.raises(openai.APITimeoutError):
                await slow.chat.completions.create(model="gpt-4o", messages=USER, stream=stream)

    body = {"model": "gpt-4o", "messages": USER, "stream": True}
    for header, low, high in ((None, 0.28, 3.0), ("0", 0.0, 0.25), ("100", 0.09, 0.28)):
        headers = {"authorization": "Bearer sk-fake", **({"x-fake-delay-ms": header} if header else {})}
        started = time.monotonic()
        async with http.post("/v1/chat/completions", json=body, headers=headers) as r:
            headers_at = time.monotonic() - started
            assert r.status == 200
            await r.read()
        assert low <= headers_at < high, (header, headers_at)


async def test_cli_serves_and_stops_cleanly_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.upstream", "--host", "127.0.0.1", "--port", "0", "--delay-ms", "0",
        "--api-key", "sk-cli", cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode().strip()
        match = re.fullmatch(r"fake-upstream listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        async with aiohttp.ClientSession(base_url=match.group(1)) as session:
            async with session.get("/health") as r:
                assert await r.text() == "ok"
            body = {"model": "gpt-4o", "messages": HELLO}
            async with session.post("/v1/chat/completions", json=body,
                                    headers={"authorization": "Bearer sk-fake"}) as r:
                assert r.status == 401  # only the key given on the command line is accepted
            async with session.post("/v1/chat/completions", json=body,
                                    headers={"authorization": "Bearer sk-cli"}) as r:
                assert (await r.json())["choices"][0]["message"]["content"] == "Echo: Hello, Claude"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
