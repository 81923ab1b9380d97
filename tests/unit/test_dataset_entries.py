"""Dataset entries: validation rules, normalisation, export round trips, splits, log and Anthropic conversion."""

from __future__ import annotations

import copy
import hashlib
import uuid
from typing import Any

import orjson
import pytest
from refinery.wire.entries import (
    Entry,
    EntryError,
    anthropic_request_to_openai,
    apply_pruning_rules,
    entry_from_log,
    entry_to_dict,
    input_messages,
    parse_entry,
    parse_jsonl_line,
    stable_split,
)

USER = {"role": "user", "content": "hi"}
ASSISTANT = {"role": "assistant", "content": "hello"}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def entry(**extra: Any) -> dict[str, Any]:
    """A valid minimal entry with overrides."""
    return {"messages": [USER, ASSISTANT], **extra}


def with_message(msg: dict[str, Any]) -> dict[str, Any]:
    """Entry whose second message is `msg` (so it is validated in position 1)."""
    return {"messages": [USER, msg, ASSISTANT]}


def tool_call(arguments: Any = '{"city": "Paris"}', **extra: Any) -> dict[str, Any]:
    return {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}, **extra}


# ------------------------------------------------------------------------------------------------ rules

# (name, invalid entry, expected message fragment, valid counterpart)
CASES: list[tuple[str, Any, str, Any]] = [
    ("not an object", ["messages"], "entry must be an object", entry()),
    ("messages missing", {}, "messages must be a non-empty array", entry()),
    ("messages empty", {"messages": []}, "messages must be a non-empty array", entry()),
    ("message not object", {"messages": ["hi", ASSISTANT]}, "messages[0] must be an object", entry()),
    ("bad role", with_message({"role": "robot", "content": "x"}), "messages[1].role must be one of",
     with_message({"role": "developer", "content": "x"})),
    ("last not assistant", {"messages": [USER]}, "messages must end with an assistant message", entry()),
    ("user content missing", with_message({"role": "user"}), "messages[1].content is required",
     with_message({"role": "user", "content": "x"})),
    ("system content null", with_message({"role": "system", "content": None}), "messages[1].content is required",
     with_message({"role": "system", "content": "be brief"})),
    ("content wrong type", with_message({"role": "user", "content": 5}), "messages[1].content must be a string",
     with_message({"role": "user", "content": [{"type": "text", "text": "x"}]})),
    ("content empty parts", with_message({"role": "user", "content": []}),
     "messages[1].content must not be an empty array",
     with_message({"role": "user", "content": [{"type": "text", "text": ""}]})),
    ("text part without text", with_message({"role": "user", "content": [{"type": "text"}]}),
     "messages[1].content[0].text must be a string",
     with_message({"role": "user", "content": [{"type": "text", "text": "x"}]})),
    ("image_url without url", with_message({"role": "user", "content": [{"type": "image_url", "image_url": {}}]}),
     "messages[1].content[0].image_url.url must be a string",
     with_message({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]})),
    ("image in system", with_message({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}),
     "messages[1].content[0].type 'image_url' is not allowed in system messages",
     with_message({"role": "system", "content": [{"type": "text", "text": "x"}]})),
    ("input_audio without data",
     with_message({"role": "user", "content": [{"type": "input_audio", "input_audio": {"format": "wav"}}]}),
     "messages[1].content[0].input_audio.data must be a string",
     with_message({"role": "user",
                   "content": [{"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}]})),
    ("part without type", with_message({"role": "user", "content": [{"text": "x"}]}),
     "messages[1].content[0].type must be a string",
     with_message({"role": "user", "content": [{"type": "text", "text": "x"}]})),
    ("name not string", with_message({"role": "user", "content": "x", "name": 3}), "messages[1].name must be a string",
     with_message({"role": "user", "content": "x", "name": "bob"})),
    ("assistant empty", {"messages": [USER, {"role": "assistant"}]},
     "messages[1] must have content, tool_calls or function_call",
     {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [tool_call()]}]}),
    ("assistant image part", {"messages": [USER, {"role": "assistant", "content": [{"type": "image_url"}]}]},
     "messages[1].content[0].type 'image_url' is not allowed in assistant messages",
     {"messages": [USER, {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}]}),
    ("tool_calls empty", {"messages": [USER, {"role": "assistant", "content": "x", "tool_calls": []}]},
     "messages[1].tool_calls must be a non-empty array",
     {"messages": [USER, {"role": "assistant", "content": "x", "tool_calls": [tool_call()]}]}),
    ("arguments as object", {"messages": [USER, {"role": "assistant", "tool_calls": [tool_call({"city": "P"})]}]},
     "messages[1].tool_calls[0].function.arguments must be a JSON string",
     {"messages": [USER, {"role": "assistant", "tool_calls": [tool_call('{"city": "P"}')]}]}),
    ("arguments not JSON", {"messages": [USER, {"role": "assistant", "tool_calls": [tool_call("{city")]}]},
     "messages[1].tool_calls[0].function.arguments is not valid JSON",
     {"messages": [USER, {"role": "assistant", "tool_calls": [tool_call("{}")]}]}),
    ("tool call name empty",
     {"messages": [USER, {"role": "assistant", "tool_calls": [{"function": {"name": "", "arguments": "{}"}}]}]},
     "messages[1].tool_calls[0].function.name must not be empty",
     {"messages": [USER, {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]}),
    ("tool call wrong type", {"messages": [USER, {"role": "assistant", "tool_calls": [tool_call(type="code")]}]},
     "messages[1].tool_calls[0].type must be 'function'",
     {"messages": [USER, {"role": "assistant", "tool_calls": [tool_call(type="function")]}]}),
    ("function_call bad args",
     {"messages": [USER, {"role": "assistant", "function_call": {"name": "f", "arguments": "nope"}}]},
     "messages[1].function_call.arguments is not valid JSON",
     {"messages": [USER, {"role": "assistant", "function_call": {"name": "f", "arguments": "[1]"}}]}),
    ("function_call no name",
     {"messages": [USER, {"role": "assistant", "function_call": {"arguments": "{}"}}]},
     "messages[1].function_call.name must be a string",
     {"messages": [USER, {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}]}),
    ("tool without tool_call_id", with_message({"role": "tool", "content": "22C"}),
     "messages[1].tool_call_id must be a string",
     with_message({"role": "tool", "content": "22C", "tool_call_id": "call_1"})),
    ("function without name", with_message({"role": "function", "content": "22C"}),
     "messages[1].name is required for a function message",
     with_message({"role": "function", "content": "22C", "name": "get_weather"})),
    ("tools not array", entry(tools={"a": 1}), "tools must be an array", entry(tools=[WEATHER_TOOL])),
    ("tool bad name", entry(tools=[{"type": "function", "function": {"name": "get weather"}}]),
     "tools[0].function.name must match", entry(tools=[{"type": "function", "function": {"name": "get-weather_2"}}])),
    ("tool name too long", entry(tools=[{"type": "function", "function": {"name": "x" * 65}}]),
     "tools[0].function.name must match", entry(tools=[{"type": "function", "function": {"name": "x" * 64}}])),
    ("tool wrong type", entry(tools=[{"type": "retrieval", "function": {"name": "f"}}]),
     "tools[0].type must be 'function'", entry(tools=[{"function": {"name": "f"}}])),
    ("tool parameters not object", entry(tools=[{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
     "tools[0].function.parameters must be an object",
     entry(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])),
    ("tool strict not bool", entry(tools=[{"type": "function", "function": {"name": "f", "strict": "yes"}}]),
     "tools[0].function.strict must be a boolean",
     entry(tools=[{"type": "function", "function": {"name": "f", "strict": True}}])),
    ("tool description not string", entry(tools=[{"type": "function", "function": {"name": "f", "description": 1}}]),
     "tools[0].function.description must be a string",
     entry(tools=[{"type": "function", "function": {"name": "f", "description": "d"}}])),
    ("tools and functions", entry(tools=[WEATHER_TOOL], functions=[{"name": "f"}]),
     "tools and functions cannot both be given", entry(functions=[{"name": "f"}])),
    ("function bad name", entry(functions=[{"name": "a.b"}]), "functions[0].name must match",
     entry(functions=[{"name": "a_b"}])),
    ("tool_choice and function_call", entry(tool_choice="auto", function_call="auto"),
     "tool_choice and function_call cannot both be given", entry(function_call="auto")),
    ("function_call bad", entry(function_call="required"), "function_call must be", entry(function_call="none")),
    ("tool_choice bad string", entry(tool_choice="always"), "tool_choice must be", entry(tool_choice="required")),
    ("tool_choice bad object", entry(tool_choice={"type": "function", "function": {}}),
     "tool_choice.function.name must be a string",
     entry(tool_choice={"type": "function", "function": {"name": "f"}})),
    ("response_format bad type", entry(response_format={"type": "xml"}), "response_format.type must be one of",
     entry(response_format={"type": "json_object"})),
    ("json_schema missing", entry(response_format={"type": "json_schema"}),
     "response_format.json_schema must be an object",
     entry(response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": {}}})),
    ("json_schema without name", entry(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
     "response_format.json_schema.name must be a string",
     entry(response_format={"type": "json_schema", "json_schema": {"name": "out"}})),
    ("rejected wrong role", entry(rejected_message={"role": "user", "content": "x"}),
     "rejected_message.role must be 'assistant'", entry(rejected_message={"role": "assistant", "content": "x"})),
    ("rejected empty", entry(rejected_message={"content": None}),
     "rejected_message must have content, tool_calls or function_call", entry(rejected_message={"content": "bad"})),
    ("rejected bad arguments", entry(rejected_message={"tool_calls": [tool_call({"a": 1})]}),
     "rejected_message.tool_calls[0].function.arguments must be a JSON string",
     entry(rejected_message={"tool_calls": [tool_call()]})),
    ("split lower case", entry(split="train"), "split must be one of TRAIN, TEST or null", entry(split="TRAIN")),
    ("split unknown", entry(split="VALIDATION"), "split must be one of", entry(split="TEST")),
    ("metadata not object", entry(metadata=["a"]), "metadata must be an object", entry(metadata={"a": "b"})),
    ("metadata number", entry(metadata={"a": 1}), "metadata.a must be a string", entry(metadata={"a": "1"})),
]


@pytest.mark.parametrize(("bad", "message", "good"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_rejects_invalid_and_accepts_valid(bad: Any, message: str, good: Any) -> None:
    with pytest.raises(EntryError) as exc:
        parse_entry(bad)
    assert message in str(exc.value)
    assert isinstance(parse_entry(good), Entry)


def test_error_is_a_value_error_naming_the_first_problem() -> None:
    bad = {"messages": [{"role": "user"}, {"role": "assistant", "tool_calls": [tool_call("{")]}], "split": "x"}
    with pytest.raises(ValueError, match=r"^messages\[0\]\.content is required"):
        parse_entry(bad)


# ------------------------------------------------------------------------------------------ normalisation


def test_minimal_entry_normalised() -> None:
    assert parse_entry(entry()) == Entry(messages=[USER, ASSISTANT])


def test_unknown_keys_and_judgement_are_dropped() -> None:
    raw = {
        "messages": [{"role": "user", "content": "hi", "extra": 1, "name": None},
                     {"role": "assistant", "content": "yo", "refusal": None, "tool_calls": None, "audio": None}],
        "model": "gpt-4o", "temperature": 0.2, "n": 3, "judgement": "PASS",
    }
    assert entry_to_dict(parse_entry(raw)) == {"messages": [{"role": "user", "content": "hi"},
                                                            {"role": "assistant", "content": "yo"}]}


def test_tool_calls_normalised_like_openai() -> None:
    raw = {"messages": [
        {"role": "system", "content": "sys", "name": "root"},
        USER,
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}, "index": 0}]},
        {"role": "tool", "tool_call_id": "", "content": [{"type": "text", "text": "42"}], "name": "f"},
        {"role": "assistant", "content": "done", "tool_call_id": "stray"},
    ]}
    assert parse_entry(raw).messages == [
        {"role": "system", "content": "sys", "name": "root"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": [{"type": "text", "text": "42"}], "name": "f", "tool_call_id": ""},
        {"role": "assistant", "content": "done"},
    ]


def test_legacy_function_call_message_kept() -> None:
    raw = {"messages": [USER, {"role": "assistant", "content": None,
                               "function_call": {"name": "f", "arguments": '{"x": 1}', "extra": True}}]}
    assert parse_entry(raw).messages[-1] == {"role": "assistant", "content": None,
                                             "function_call": {"name": "f", "arguments": '{"x": 1}'}}


def test_user_parts_normalised() -> None:
    raw = with_message({"role": "user", "content": [
        {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
    ]})
    assert parse_entry(raw).messages[1]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
    ]


def test_deprecated_functions_and_function_call_become_tools() -> None:
    fn = {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}
    parsed = parse_entry(entry(functions=[fn], function_call={"name": "get_weather"}))
    assert parsed.tools == [{"type": "function", "function": fn}]
    assert parsed.tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    assert parse_entry(entry(functions=[fn], function_call="none")).tool_choice == "none"
    assert parse_entry(entry(function_call="auto")).tool_choice == "auto"


def test_tools_normalised_and_nulls_mean_absent() -> None:
    raw = entry(tools=[{"function": {"name": "f", "description": None, "parameters": None, "strict": False},
                        "extra": 1}], tool_choice=None, response_format=None, rejected_message=None,
                split=None, metadata=None, functions=None, function_call=None)
    parsed = parse_entry(raw)
    assert parsed.tools == [{"type": "function", "function": {"name": "f", "strict": False}}]
    assert (parsed.tool_choice, parsed.response_format, parsed.rejected_message, parsed.split) == (None,) * 4
    assert parsed.metadata == {}
    assert parse_entry(entry(tools=[])).tools is None


def test_response_format_keeps_schema_only() -> None:
    schema = {"name": "out", "strict": True, "schema": {"type": "object"}}
    assert parse_entry(entry(response_format={"type": "json_schema", "json_schema": schema, "x": 1})).response_format \
        == {"type": "json_schema", "json_schema": schema}
    assert parse_entry(entry(response_format={"type": "text"})).response_format == {"type": "text"}


def test_rejected_message_role_defaults_to_assistant() -> None:
    assert parse_entry(entry(rejected_message={"content": "worse"})).rejected_message == {
        "role": "assistant", "content": "worse"}


def test_metadata_coercion() -> None:
    raw = entry(metadata={"s": "x", "i": 3, "f": 1.5, "t": True, "b": False, "n": None})
    with pytest.raises(EntryError, match=r"metadata\.i must be a string"):
        parse_entry(raw)
    with pytest.raises(EntryError, match=r"metadata\.n must be a string"):
        parse_entry(entry(metadata={"n": None}))
    assert parse_entry(raw, coerce_metadata=True).metadata == {"s": "x", "i": "3", "f": "1.5", "t": "true",
                                                               "b": "false"}
    for bad in ({"k": [1]}, {"k": {"a": "b"}}):
        with pytest.raises(EntryError, match=r"metadata\.k must be a string"):
            parse_entry(entry(metadata=bad), coerce_metadata=True)


def test_parse_does_not_mutate_input() -> None:
    raw = {"messages": [USER, {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}],
           "functions": [{"name": "f"}], "metadata": {"a": 1}}
    before = copy.deepcopy(raw)
    parse_entry(raw, coerce_metadata=True)
    assert raw == before


# ------------------------------------------------------------------------------------------------ JSONL


def test_jsonl_blank_lines_are_none() -> None:
    assert parse_jsonl_line(b"") is None
    assert parse_jsonl_line(b"  \t\r\n") is None


def test_jsonl_valid_line() -> None:
    line = orjson.dumps(entry(split="TEST", metadata={"k": 1})) + b"\r\n"
    assert parse_jsonl_line(line, coerce_metadata=True) == Entry(messages=[USER, ASSISTANT], split="TEST",
                                                                   metadata={"k": "1"})
    with pytest.raises(EntryError, match=r"metadata\.k must be a string"):
        parse_jsonl_line(line)


def test_jsonl_invalid_json() -> None:
    with pytest.raises(EntryError, match=r"^invalid JSON: ") as exc:
        parse_jsonl_line(b'{"messages": [' + b"x" * 500)
    assert len(str(exc.value)) <= len("invalid JSON: ") + 200


def test_jsonl_invalid_entry() -> None:
    with pytest.raises(EntryError, match="messages must end with an assistant message"):
        parse_jsonl_line(b'{"messages": [{"role": "user", "content": "hi"}]}')


# ----------------------------------------------------------------------------------------- export/round trip


def test_entry_to_dict_omits_none_and_empty_metadata() -> None:
    assert entry_to_dict(Entry(messages=[USER, ASSISTANT])) == {"messages": [USER, ASSISTANT]}
    full = Entry(messages=[USER, ASSISTANT], tools=[WEATHER_TOOL], tool_choice="auto",
                 response_format={"type": "json_object"}, rejected_message={"role": "assistant", "content": "no"},
                 split="TRAIN", metadata={"a": "b"})
    assert entry_to_dict(full) == {
        "messages": [USER, ASSISTANT], "tools": [WEATHER_TOOL], "tool_choice": "auto",
        "response_format": {"type": "json_object"}, "rejected_message": {"role": "assistant", "content": "no"},
        "split": "TRAIN", "metadata": {"a": "b"},
    }
    assert list(entry_to_dict(full)) == ["messages", "tools", "tool_choice", "response_format", "rejected_message",
                                         "split", "metadata"]


ROUND_TRIPS: list[dict[str, Any]] = [
    entry(),
    entry(tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}},
          split="TEST", metadata={"prompt_id": "p1"}),
    entry(functions=[{"name": "get_weather", "parameters": {"type": "object"}}], function_call={"name": "get_weather"}),
    entry(function_call="auto", functions=[{"name": "f"}]),
    {"messages": [
        {"role": "developer", "content": [{"type": "text", "text": "rules"}]},
        {"role": "user",
         "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "u"}}]},
        {"role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
        {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "ok"},
        {"role": "assistant", "content": [{"type": "text", "text": "Cold."}, {"type": "refusal", "refusal": "-"}]},
    ], "tools": [WEATHER_TOOL], "tool_choice": "required"},
    entry(rejected_message={"content": None, "tool_calls": [tool_call()]},
          response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}}),
    entry(rejected_message={"role": "assistant", "content": "meh", "name": "bot"}, metadata={"a": 1, "b": None}),
]


@pytest.mark.parametrize("raw", ROUND_TRIPS)
def test_round_trip(raw: dict[str, Any]) -> None:
    parsed = parse_entry(raw, coerce_metadata=True)
    exported = entry_to_dict(parsed)
    assert parse_entry(exported) == parsed
    assert parse_jsonl_line(orjson.dumps(exported)) == parsed
    assert entry_to_dict(parse_entry(exported)) == exported


def test_input_messages_is_everything_but_the_output() -> None:
    parsed = parse_entry({"messages": [{"role": "system", "content": "s"}, USER, ASSISTANT]})
    assert input_messages(parsed) == [{"role": "system", "content": "s"}, USER]


# ------------------------------------------------------------------------------------------------ splits


def test_stable_split_deterministic_and_about_ten_percent() -> None:
    assert stable_split("entry-1") == stable_split("entry-1")
    ids = [str(uuid.uuid4()) for _ in range(10_000)]
    test_count = sum(stable_split(i) == "TEST" for i in ids)
    assert 800 <= test_count <= 1200
    assert {stable_split(i) for i in ids} == {"TRAIN", "TEST"}


def test_stable_split_fraction_bounds() -> None:
    ids = [f"id-{i}" for i in range(200)]
    assert {stable_split(i, 0.0) for i in ids} == {"TRAIN"}
    assert {stable_split(i, 1.0) for i in ids} == {"TEST"}
    with pytest.raises(ValueError):
        stable_split("x", 1.5)


def test_stable_split_matches_the_documented_hash() -> None:
    for i in range(50):
        n = int.from_bytes(hashlib.sha256(f"e{i}".encode()).digest()[:8], "big")
        assert stable_split(f"e{i}", 0.3) == ("TEST" if n % 10_000 < 3_000 else "TRAIN")


# ------------------------------------------------------------------------------------------- Anthropic


def test_anthropic_request_full_conversion() -> None:
    req = {
        "model": "claude-sonnet-4", "max_tokens": 512, "temperature": 0.1, "top_p": 0.9, "stop_sequences": ["END"],
        "system": [{"type": "text", "text": "You are helpful."}, {"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {"type": "image", "source": {"type": "url", "url": "https://x/cat.jpg"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Let me "},
                {"type": "text", "text": "check."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "cat", "n": 2}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1",
                 "content": [{"type": "text", "text": "a cat"}, {"type": "text", "text": "tabby"}]},
                {"type": "text", "text": "And now?"},
            ]},
        ],
        "tools": [{"name": "lookup", "description": "Look up", "input_schema": {"type": "object"}},
                  {"name": "bare", "input_schema": {"type": "object", "properties": {}}},
                  {"type": "web_search_20250305", "name": "web_search"}],
        "tool_choice": {"type": "any"},
        "metadata": {"user_id": "u"},
    }
    assert anthropic_request_to_openai(req) == {
        "model": "claude-sonnet-4", "max_tokens": 512, "temperature": 0.1, "top_p": 0.9, "stop": ["END"],
        "messages": [
            {"role": "system", "content": "You are helpful.\nBe brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "image_url", "image_url": {"url": "https://x/cat.jpg"}},
            ]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"cat","n":2}'}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat\ntabby"},
            {"role": "user", "content": "And now?"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "lookup", "description": "Look up",
                                              "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "bare", "parameters": {"type": "object", "properties": {}}}},
        ],
        "tool_choice": "required",
    }


def test_anthropic_simple_shapes() -> None:
    req = {"system": "Sys", "messages": [
        {"role": "user", "content": "plain"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r1"},
                                     {"type": "tool_result", "tool_use_id": "t2", "content": "r2"}]},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "answer"},
    ]}
    assert anthropic_request_to_openai(req) == {"messages": [
        {"role": "system", "content": "Sys"},
        {"role": "user", "content": "plain"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "r1"},
        {"role": "tool", "tool_call_id": "t2", "content": "r2"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "answer"},
    ]}


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"),
    ({"type": "any"}, "required"),
    ({"type": "none"}, "none"),
    ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
])
def test_anthropic_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    assert anthropic_request_to_openai({"messages": [], "tool_choice": choice})["tool_choice"] == expected


# ------------------------------------------------------------------------------------------------- logs


def completion(message: dict[str, Any]) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "choices": [
        {"index": 0, "message": message, "finish_reason": "stop"}]}


def log(**extra: Any) -> dict[str, Any]:
    base = {
        "source": "report", "statusCode": 200, "errorMessage": None,
        "reqPayload": {"model": "gpt-4o", "messages": [{"role": "system", "content": "s"}, USER], "temperature": 0},
        "respOpenai": completion({"role": "assistant", "content": "hello", "refusal": None, "annotations": []}),
        "metadata": {"prompt_id": "p1"},
    }
    return {**base, **extra}


def test_entry_from_openai_log() -> None:
    assert entry_from_log(log()) == Entry(
        messages=[{"role": "system", "content": "s"}, USER, {"role": "assistant", "content": "hello"}],
        metadata={"prompt_id": "p1"},
    )


def test_entry_from_log_with_tools_and_tool_call_output() -> None:
    req = {"messages": [USER], "tools": [WEATHER_TOOL], "tool_choice": "auto",
           "response_format": {"type": "text"}, "metadata": {"openai": "stored"}}
    resp = completion({"role": "assistant", "content": None, "tool_calls": [tool_call()], "function_call": None})
    result = entry_from_log(log(source="proxy", reqPayload=req, respOpenai=resp, metadata=None))
    assert result == Entry(messages=[USER, {"role": "assistant", "content": None, "tool_calls": [tool_call()]}],
                           tools=[WEATHER_TOOL], tool_choice="auto", response_format={"type": "text"})
    assert result is not None and parse_entry(entry_to_dict(result)) == result


def test_entry_from_log_converts_legacy_functions() -> None:
    req = {"messages": [USER], "functions": [{"name": "f"}], "function_call": {"name": "f"}}
    resp = completion({"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}})
    result = entry_from_log(log(reqPayload=req, respOpenai=resp))
    assert result is not None
    assert result.tools == [{"type": "function", "function": {"name": "f"}}]
    assert result.tool_choice == {"type": "function", "function": {"name": "f"}}
    assert result.messages[-1] == {"role": "assistant", "content": None,
                                   "function_call": {"name": "f", "arguments": "{}"}}


def anthropic_req() -> dict[str, Any]:
    return {"model": "claude", "max_tokens": 100, "system": "Be terse.", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"c": "P"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
    ], "tools": [{"name": "w", "input_schema": {"type": "object"}}], "tool_choice": {"type": "auto"}}


EXPECTED_ANTHROPIC_ENTRY = Entry(
    messages=[
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": '{"c":"P"}'}}]},
        {"role": "tool", "content": "sunny", "tool_call_id": "toolu_1"},
        {"role": "assistant", "content": "Sunny."},
    ],
    tools=[{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
    tool_choice="auto",
    metadata={"n": "1"},
)


@pytest.mark.parametrize("source", ["report-anthropic", "report"])
def test_entry_from_anthropic_log(source: str) -> None:
    result = entry_from_log(log(source=source, reqPayload=anthropic_req(), metadata={"n": 1},
                                respOpenai=completion({"role": "assistant", "content": "Sunny."})))
    assert result == EXPECTED_ANTHROPIC_ENTRY


@pytest.mark.parametrize("override", [
    {"statusCode": 429},
    {"statusCode": 500},
    {"statusCode": 302},
    {"errorMessage": "upstream timeout"},
    {"respOpenai": None},
    {"respOpenai": {"choices": []}},
    {"respOpenai": {"choices": [{"index": 0, "finish_reason": "stop"}]}},
    {"reqPayload": {"model": "gpt-4o"}},
    {"reqPayload": {"messages": []}},
    {"reqPayload": None},
    {"reqPayload": {"messages": [{"role": "user"}]}},
    {"reqPayload": {"messages": [USER], "tools": [{"type": "function", "function": {"name": "bad name"}}]}},
    {"respOpenai": completion({"role": "assistant", "content": None, "refusal": "I can't"})},
    {"metadata": {"k": ["list"]}},
])
def test_entry_from_log_skips(override: dict[str, Any]) -> None:
    assert entry_from_log(log(**override)) is None


def test_entry_from_log_accepts_missing_status_and_2xx() -> None:
    assert entry_from_log(log(statusCode=None)) is not None
    assert entry_from_log(log(statusCode=201)) is not None
    assert entry_from_log(log(errorMessage="")) is not None


# ---------------------------------------------------------------------------------------------- pruning


def test_pruning_removes_static_prompt_text() -> None:
    preamble = "You are Acme's support agent. Follow the policy below strictly. " * 5
    messages = [
        {"role": "system", "content": preamble + "Customer tier: gold."},
        {"role": "user", "content": [{"type": "text", "text": "Policy: be nice. Where is my order?"},
                                     {"type": "image_url", "image_url": {"url": "u"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "Policy: be nice. shipped"},
        {"role": "assistant", "content": preamble + "Policy: be nice. It shipped."},
    ]
    before = copy.deepcopy(messages)
    pruned = apply_pruning_rules(messages, [preamble, "", "Policy: be nice. "])
    assert pruned == [
        {"role": "system", "content": "Customer tier: gold."},
        {"role": "user", "content": [{"type": "text", "text": "Where is my order?"},
                                     {"type": "image_url", "image_url": {"url": "u"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "shipped"},
        messages[3],
    ]
    assert messages == before
    assert all(p is not m for p, m in zip(pruned, messages, strict=True))


def test_pruning_rules_apply_in_order_and_empty_rules_are_noops() -> None:
    messages = [{"role": "user", "content": "abcabc"}]
    assert apply_pruning_rules(messages, ["b", "ac"]) == [{"role": "user", "content": ""}]
    assert apply_pruning_rules(messages, ["ac", "b"]) == [{"role": "user", "content": "acac"}]
    assert apply_pruning_rules(messages, [""]) == messages
    assert apply_pruning_rules(messages, []) == messages
