"""Forced tool calls, legacy function calls and JSON mode on fine-tuned models, through the public API.

The official suite (test_sdk_suite.py) only checks that a call to `openpipe:tool-calls-test` names
get_current_weather; these tests pin down the rest with the openai SDK: a forced choice yields a call to that very
function with JSON-object arguments (also from a model that was never trained to call it), streams merge, `none`
keeps text, and `json_object` answers parse. The models are the SDK suite's (the `sdk_models` fixture).
"""

from __future__ import annotations

import json

import httpx
import pytest
from openai import OpenAI
from openpipe.merge_openai_chunks import merge_openai_chunks

from tests.e2e.sdk_models import WEATHER_FUNCTION, WEATHER_TOOLS

pytestmark = pytest.mark.skipif(
    not __import__("importlib").util.find_spec("torch"), reason="the ML extra is not installed (make install-ml)")

ASK = [{"role": "system", "content": "tell me the weather in Boston"}]
FORCE = {"type": "function", "function": {"name": "get_current_weather"}}


@pytest.fixture(scope="module")
def client(stack, api_key: str, sdk_models: dict) -> OpenAI:
    return OpenAI(api_key=api_key, base_url=stack.api_base, max_retries=0)


def _arguments(call) -> dict:
    args = json.loads(call.arguments)
    assert isinstance(args, dict)
    return args


def test_forced_tool_choice_calls_that_function(client: OpenAI) -> None:
    resp = client.chat.completions.create(model="openpipe:tool-calls-test", messages=ASK, tools=WEATHER_TOOLS,
                                          tool_choice=FORCE)
    [call] = resp.choices[0].message.tool_calls
    assert call.function.name == "get_current_weather"
    assert "location" in _arguments(call.function)
    # A model trained only to count still calls the forced function, with JSON-object arguments.
    resp = client.chat.completions.create(model="openpipe:test-content-35", messages=ASK, tools=WEATHER_TOOLS,
                                          tool_choice=FORCE, max_tokens=60)
    message, finish = resp.choices[0].message, resp.choices[0].finish_reason
    if finish == "length":  # arguments cut by max_tokens: still the forced call's opening, never free text
        assert message.content.startswith('<tool_call>\n{"name": "get_current_weather", "arguments":')
    else:
        assert message.tool_calls[0].function.name == "get_current_weather"
        _arguments(message.tool_calls[0].function)


def test_legacy_function_call_plain_and_streamed(client: OpenAI) -> None:
    legacy = {"functions": [WEATHER_FUNCTION], "function_call": {"name": "get_current_weather"}}
    resp = client.chat.completions.create(model="openpipe:tool-calls-test", messages=ASK, **legacy)
    choice = resp.choices[0]
    assert choice.finish_reason == "function_call" and not choice.message.tool_calls
    assert choice.message.function_call.name == "get_current_weather"
    assert "location" in _arguments(choice.message.function_call)

    merged = None
    for chunk in client.chat.completions.create(model="openpipe:tool-calls-test", messages=ASK, stream=True,
                                                **legacy):
        merged = merge_openai_chunks(merged, chunk)  # the openpipe SDK's merge: needs the call in the first chunk
    assert merged is not None
    assert merged.choices[0].message.function_call.name == "get_current_weather"
    assert merged.choices[0].finish_reason == "function_call"


def test_tool_choice_none_answers_in_text(client: OpenAI) -> None:
    resp = client.chat.completions.create(model="openpipe:tool-calls-test", tools=WEATHER_TOOLS, tool_choice="none",
                                          messages=[{"role": "system", "content": "count to 3"}])
    assert not resp.choices[0].message.tool_calls
    assert resp.choices[0].message.content.startswith("1 2 3")


def test_json_mode_answers_parse(client: OpenAI) -> None:
    json_mode = {"type": "json_object"}
    resp = client.chat.completions.create(model="openpipe:llama-3-1-8b-content", response_format=json_mode,
                                          messages=[{"role": "system", "content": "count to 4"}])
    assert json.loads(resp.choices[0].message.content) == {"numbers": [1, 2, 3, 4]}  # what it was trained to say
    # A model trained to answer in plain text answers in JSON all the same.
    resp = client.chat.completions.create(model="openpipe:test-content-35", response_format=json_mode,
                                          messages=[{"role": "system", "content": "count to 4"}], max_tokens=40)
    content, finish = resp.choices[0].message.content, resp.choices[0].finish_reason
    assert content.startswith("{")
    if finish == "stop":
        assert isinstance(json.loads(content), dict)


def test_bad_choices_are_400_naming_the_field(api: httpx.Client, sdk_models: dict) -> None:
    base = {"model": "openpipe:tool-calls-test", "messages": ASK}
    cases = [
        ({"tools": WEATHER_TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "`nope`"),
        ({"tool_choice": FORCE}, "no tools"),
        ({"tools": WEATHER_TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
        ({"functions": [WEATHER_FUNCTION], "function_call": "required"}, "function_call"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": {}}}},
         "strict"),
    ]
    for extra, words in cases:
        resp = api.post("/chat/completions", json={**base, **extra})
        assert resp.status_code == 400, (extra, resp.text)
        assert words in resp.json()["message"], (extra, resp.json())
