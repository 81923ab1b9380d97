"""The shared chat format: what the template renders, where the trained spans are, and how completions parse.

No torch here: the gateway imports refinery.ml.chat_format, so it must work without the ML extra.
"""

from __future__ import annotations

import json
import sys

import pytest
from refinery.ml.chat_format import (
    CHAT_TEMPLATE,
    TOOL_CALL_OPEN,
    parse_completion,
    prepare_messages,
    prepare_tools,
    render,
    render_prompt,
    render_with_spans,
    shape_answer,
)


def _has_jinja() -> bool:
    try:
        import jinja2  # noqa: F401
    except ImportError:
        return False
    return True


# Rendering needs jinja2 (installed with the ml extra); parsing and message preparation do not.
needs_jinja = pytest.mark.skipif(not _has_jinja(), reason="jinja2 is not installed")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}  # a legacy `functions` entry


def _call(name: str, arguments: str, call_id: str = "call_1") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_importing_chat_format_does_not_import_torch() -> None:
    assert "refinery.ml.chat_format" in sys.modules
    loaded = [name for name in ("torch", "transformers") if sys.modules.get(name) is not None]
    if loaded:  # another test in this process imported them; check in a clean interpreter instead
        import subprocess

        code = ("import sys, refinery.ml.chat_format; "
                "print(*(sys.modules.get(m) is not None for m in ('torch', 'transformers')))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.split() == ["False", "False"]


def test_prepare_messages_normalises_openai_shapes() -> None:
    messages = [
        {"role": "developer", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "x"}}]},
        {"role": "assistant", "content": None, "tool_calls": [_call("get_weather", '{"city": "Oslo"}')]},
        {"role": "assistant", "content": None, "function_call": {"name": "get_time", "arguments": "{}"}},
        {"role": "function", "name": "get_time", "content": "noon"},
    ]
    out = prepare_messages(messages, [WEATHER])
    assert out[0] == {"role": "system", "content": "Be brief."}
    assert out[1] == {"role": "user", "content": "Hi"}
    assert out[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}
    assert out[3]["tool_calls"][0]["function"] == {"name": "get_time", "arguments": {}}
    assert out[4]["role"] == "tool" and out[4]["content"] == "noon"
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == '{"city": "Oslo"}'  # input untouched
    assert prepare_tools([TIME]) == [{"type": "function", "function": TIME}]
    assert prepare_tools([]) is None


def test_template_is_chatml_with_tools_and_generation_markers() -> None:
    assert "{% generation %}" in CHAT_TEMPLATE.replace("{%- generation -%}", "{% generation %}")
    assert "<|im_start|>" in CHAT_TEMPLATE and "<tools>" in CHAT_TEMPLATE and "<tool_response>" in CHAT_TEMPLATE


@needs_jinja
def test_plain_conversation_and_generation_prompt() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert render(messages) == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    assert render(messages, add_generation_prompt=True).endswith("<|im_start|>user\nHi<|im_end|>\n"
                                                                   "<|im_start|>assistant\n")
    assert render([{"role": "user", "content": "Hi"}]) == "<|im_start|>user\nHi<|im_end|>\n"  # no default system


@needs_jinja
def test_tools_block_lists_one_schema_per_line_after_the_system_prompt() -> None:
    text = render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"}],
                  [WEATHER, TIME])
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    start = text.index("\n<tools>\n") + len("\n<tools>\n")
    block = text[start:text.index("</tools>", start)]
    lines = block.splitlines()
    assert [json.loads(line)["function"]["name"] for line in lines] == ["get_weather", "get_time"]
    assert json.loads(lines[0]) == WEATHER
    assert text.count("<|im_start|>system") == 1


@needs_jinja
def test_tool_calls_render_arguments_as_objects_and_responses_in_a_user_turn() -> None:
    messages = [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            _call("get_weather", '{"city": "Oslo"}', "a"), _call("get_weather", '{"city": "Rome"}', "b"),
        ]},
        {"role": "tool", "tool_call_id": "a", "content": "rain"},
        {"role": "tool", "tool_call_id": "b", "content": "sun"},
        {"role": "assistant", "content": "Rain in Oslo, sun in Rome."},
    ]
    text = render(messages, [WEATHER])
    assert ('<|im_start|>assistant\nChecking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n'
            '</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
            '<|im_end|>\n') in text
    assert ("<|im_start|>user\n<tool_response>\nrain\n</tool_response>\n<tool_response>\nsun\n</tool_response>"
            "<|im_end|>\n") in text
    assert '"arguments": "{' not in text  # never a JSON string inside JSON


@needs_jinja
def test_generation_spans_cover_assistant_outputs_only() -> None:
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": None, "tool_calls": [_call("get_weather", '{"city": "Oslo"}')]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
        {"role": "assistant", "content": "skip me", "weight": 0},
        {"role": "user", "content": "Q3"},
        {"role": "assistant", "content": "A3"},
    ]
    text, spans = render_with_spans(messages, [WEATHER])
    trained = [text[start:end] for start, end in spans]
    assert trained == [
        "A1<|im_end|>",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>',
        "A3<|im_end|>",
    ]
    assert "skip me<|im_end|>" in text


@needs_jinja
def test_matches_transformers_apply_chat_template() -> None:
    """The engine and trainer render with our sandbox; transformers users render with theirs: same text."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend)
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [_call("get_weather", '{"city": "Oslo"}')]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
    ]
    theirs = tokenizer.apply_chat_template(prepare_messages(messages, None), tools=prepare_tools([WEATHER]),
                                           chat_template=CHAT_TEMPLATE, tokenize=False, add_generation_prompt=True)
    assert theirs == render(messages, [WEATHER], add_generation_prompt=True)


@needs_jinja
def test_prefill_continues_the_answer() -> None:
    messages = [{"role": "user", "content": "Name a fruit"}, {"role": "assistant", "name": "prefill", "content": "Ap"}]
    prompt, prefill = render_prompt(messages)
    assert prefill == "Ap"
    assert prompt == "<|im_start|>user\nName a fruit<|im_end|>\n<|im_start|>assistant\nAp"
    assert render_prompt(messages[:1]) == ("<|im_start|>user\nName a fruit<|im_end|>\n<|im_start|>assistant\n", "")


def test_parse_plain_text() -> None:
    assert parse_completion("  Hello there.\n") == {"role": "assistant", "content": "Hello there."}
    assert parse_completion("Done.<|im_end|>") == {"role": "assistant", "content": "Done."}


def test_parse_one_and_two_tool_calls() -> None:
    one = parse_completion('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>')
    assert one["content"] is None
    [call] = one["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_") and len(call["id"]) > 8
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}

    two = parse_completion(
        'Let me check.\n<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n'
        '<tool_call>{"name": "b", "arguments": "{\\"x\\": 1}"}</tool_call>'
    )
    assert two["content"] == "Let me check."
    assert [c["function"]["name"] for c in two["tool_calls"]] == ["a", "b"]
    assert [json.loads(c["function"]["arguments"]) for c in two["tool_calls"]] == [{}, {"x": 1}]
    assert two["tool_calls"][0]["id"] != two["tool_calls"][1]["id"]


def test_invalid_tool_call_json_stays_content() -> None:
    text = "<tool_call>\n{not json}\n</tool_call>"
    assert parse_completion(text) == {"role": "assistant", "content": text}
    mixed = parse_completion('<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"x": 1}</tool_call>')
    assert mixed["content"] == '<tool_call>{"x": 1}</tool_call>'  # no name: not a call
    assert len(mixed["tool_calls"]) == 1


@needs_jinja
def test_round_trip_render_then_parse() -> None:
    """A rendered assistant turn parses back to the message it came from (ids aside)."""
    message = {"role": "assistant", "content": None, "tool_calls": [_call("get_weather", '{"city": "Oslo"}')]}
    text, spans = render_with_spans([{"role": "user", "content": "Q"}, message], [WEATHER])
    start, end = spans[0]
    parsed = parse_completion(text[start:end])
    assert parsed["content"] is None
    assert parsed["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}


# --------------------------------------------------------------------------------------------- answer shape

ASK = [{"role": "user", "content": "Weather in Oslo?"}]
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


def test_forced_tool_choice_prefills_the_call_and_closes_it() -> None:
    shape = shape_answer(ASK, [WEATHER], FORCE_WEATHER)
    *head, prefill = shape.messages
    assert head == ASK and prefill["role"] == "assistant" and prefill["name"] == "prefill"
    assert prefill["content"] == '<tool_call>\n{"name": "get_weather", "arguments":'
    assert shape.json_from == len(prefill["content"]) and shape.tool_calls
    assert shape.tools == [WEATHER]
    # What the model writes after the prefill is only the arguments; the shape closes the call.
    parsed = parse_completion(prefill["content"] + ' {"city": "Oslo"}' + shape.suffix)
    assert parsed["content"] is None
    [call] = parsed["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}


@needs_jinja
def test_forced_prefill_is_the_trained_text_of_a_call() -> None:
    """The prompt with the forced prefill is exactly the start of the text a model was trained on for that call, so
    the model continues its own syntax."""
    shape = shape_answer(ASK, [WEATHER], FORCE_WEATHER)
    prompt, prefill = render_prompt(shape.messages, shape.tools)
    assert prefill == shape.messages[-1]["content"]
    trained = render([*ASK, {"role": "assistant", "content": None,
                             "tool_calls": [_call("get_weather", '{"city": "Oslo"}')]}], [WEATHER])
    assert trained.startswith(prompt)
    assert trained[len(prompt):].startswith(' {"city": "Oslo"}' + shape.suffix)


def test_legacy_function_call_forces_like_tool_choice() -> None:
    shape = shape_answer(ASK, [TIME, WEATHER["function"]], {"name": "get_time"}, field="function_call")
    assert shape.messages[-1]["content"] == '<tool_call>\n{"name": "get_time", "arguments":'
    assert [t["function"]["name"] for t in shape.tools or []] == ["get_time", "get_weather"]
    for auto in (None, "auto"):
        assert shape_answer(ASK, [TIME], auto, field="function_call").messages == ASK


def test_required_opens_a_call_the_model_names() -> None:
    one = shape_answer(ASK, [WEATHER], "required")
    assert one.messages[-1]["content"].endswith('"name": "get_weather", "arguments":')  # one tool: that one
    two = shape_answer(ASK, [WEATHER, TIME], "required")
    prefill = two.messages[-1]["content"]
    assert prefill == TOOL_CALL_OPEN + '{"name": "'
    assert two.json_from == len(TOOL_CALL_OPEN)  # the whole call object is the JSON
    parsed = parse_completion(prefill + 'get_time", "arguments": {}}' + two.suffix)
    assert parsed["tool_calls"][0]["function"] == {"name": "get_time", "arguments": "{}"}


def test_tool_choice_none_drops_tools_and_keeps_calls_as_text() -> None:
    shape = shape_answer(ASK, [WEATHER], "none")
    assert shape.tools is None and not shape.tool_calls and shape.messages == ASK
    text = '<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>'
    assert parse_completion(text, tool_calls=False) == {"role": "assistant", "content": text}


def test_json_object_constrains_the_whole_answer() -> None:
    shape = shape_answer(ASK, None, None, {"type": "json_object"})
    assert shape.json_from == 0 and shape.suffix == "" and shape.messages == ASK
    non_strict = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    assert shape_answer(ASK, None, None, non_strict).json_from == 0
    prefilled = [*ASK, {"role": "assistant", "name": "prefill", "content": '{"city": '}]
    assert shape_answer(prefilled, None, None, {"type": "json_object"}).json_from == 0
    assert shape_answer(ASK, None, None, {"type": "text"}).json_from is None


@pytest.mark.parametrize(("tools", "choice", "response_format", "field", "words"), [
    ([WEATHER], {"type": "function", "function": {"name": "nope"}}, None, "tool_choice", "`nope`"),
    (None, FORCE_WEATHER, None, "tool_choice", "no tools"),
    (None, "required", None, "tool_choice", "no tools"),
    ([WEATHER], "sometimes", None, "tool_choice", "`tool_choice` must be"),
    ([WEATHER], {"type": "tool", "function": {"name": "get_weather"}}, None, "tool_choice", "tool_choice.type"),
    ([WEATHER], {"type": "function", "function": {}}, None, "tool_choice", "tool_choice.function.name"),
    ([WEATHER], ["get_weather"], None, "tool_choice", "`tool_choice` must be"),
    ([TIME], "required", None, "function_call", "`function_call` must be"),
    ([TIME], {"name": 3}, None, "function_call", "function_call.name"),
    ("get_weather", None, None, "tool_choice", "`tools` must be an array"),
    (None, None, {"type": "yaml"}, "tool_choice", "response_format.type"),
    (None, None, "json_object", "tool_choice", "response_format.type"),
    (None, None, {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": {}}}, "tool_choice",
     "strict"),
])
def test_bad_choices_and_formats_name_the_field(tools, choice, response_format, field, words) -> None:
    with pytest.raises(ValueError) as err:
        shape_answer(ASK, tools, choice, response_format, field=field)
    assert words in str(err.value)


def test_prefill_conflicts_are_refused() -> None:
    prefilled = [*ASK, {"role": "assistant", "name": "prefill", "content": "Sure"}]
    with pytest.raises(ValueError, match="prefill"):
        shape_answer(prefilled, [WEATHER], FORCE_WEATHER)
    with pytest.raises(ValueError, match="does not begin a JSON object"):
        shape_answer(prefilled, None, None, {"type": "json_object"})
