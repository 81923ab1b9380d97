"""The one chat format that training and serving share: ChatML with Hermes-style tool calls.

Why our own template: SmolLM2's shipped template drops ``tool_calls`` and has no ``{% generation %}`` markers, so
it can neither teach tool use nor restrict the loss to assistant turns (measured: assistant-only loss is what makes
40 examples learn at all). Training and inference both render through :func:`render_with_spans` here, so the text a
model is trained on is byte-for-byte the text it is prompted with.

This module never imports torch or transformers (the gateway imports it to parse completions); ``jinja2`` is
imported lazily, only by the render functions.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from refinery.ml.json_prefix import JsonPrefix

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
GENERATION_PROMPT = f"{IM_START}assistant\n"
TOOL_CALL_OPEN = "<tool_call>\n"
TOOL_CALL_CLOSE = "\n</tool_call>"

CHAT_TEMPLATE = (
    "{%- macro assistant_body(message) -%}"
    "{%- if message.content is string -%}{{- message.content -}}{%- endif -%}"
    "{%- if message.tool_calls -%}"
    "{%- for call in message.tool_calls -%}"
    "{%- if (message.content is string and message.content) or not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    "{%- set fn = call.function if call.function is defined else call -%}"
    "{{- '<tool_call>\\n{\"name\": ' + (fn.name | tojson) + ', \"arguments\": ' -}}"
    "{%- if fn.arguments is string -%}{{- fn.arguments -}}{%- else -%}{{- fn.arguments | tojson -}}{%- endif -%}"
    "{{- '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>' -}}"
    "{%- endmacro -%}"
    "{%- set ns = namespace(system=none) -%}"
    "{%- if messages and messages[0].role == 'system' -%}"
    "{%- set ns.system = messages[0].content if messages[0].content is string else '' -%}"
    "{%- endif -%}"
    "{%- if tools -%}"
    "{{- '<|im_start|>system\\n' -}}"
    "{%- if ns.system -%}{{- ns.system + '\\n\\n' -}}{%- endif -%}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' -}}"
    "{{- 'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\\n' -}}"
    "{%- for tool in tools -%}{{- tool | tojson -}}{{- '\\n' -}}{%- endfor -%}"
    "{{- '</tools>\\n\\nFor each function call, return a json object with function name and arguments within '"
    " + '<tool_call></tool_call> XML tags:\\n<tool_call>\\n'"
    " + '{\"name\": <function-name>, \"arguments\": <args-json-object>}\\n</tool_call><|im_end|>\\n' -}}"
    "{%- elif ns.system is not none -%}"
    "{{- '<|im_start|>system\\n' + ns.system + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set content = message.content if message.content is string else '' -%}"
    "{%- if message.role == 'system' -%}"
    "{%- if not loop.first -%}{{- '<|im_start|>system\\n' + content + '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- elif message.role == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if message.weight is defined and message.weight == 0 -%}"
    "{{- assistant_body(message) -}}"
    "{%- else -%}"
    "{%- generation -%}{{- assistant_body(message) -}}{%- endgeneration -%}"
    "{%- endif -%}"
    "{{- '\\n' -}}"
    "{%- elif message.role == 'tool' -%}"
    "{%- if loop.first or loop.previtem.role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' + content + '\\n</tool_response>' -}}"
    "{%- if loop.last or loop.nextitem.role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
"""ChatML + tools, with ``{% generation %}`` around each assistant output (its ``<|im_end|>`` included, so the model
learns to stop). An assistant message with ``weight: 0`` (OpenAI's fine-tuning field) is rendered without markers
and so is not trained on."""

_ROLE_ALIASES = {"developer": "system", "function": "tool"}
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


# --------------------------------------------------------------------------------------------- messages


def _text(content: Any) -> str | None:
    """Content parts joined to text: the models we train are text-only, so image and audio parts are dropped."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                value = part.get("text") if part.get("type", "text") == "text" else part.get("refusal")
                if isinstance(value, str):
                    texts.append(value)
        return "".join(texts)
    return str(content)


def _arguments_object(arguments: Any) -> Any:
    """A JSON-string argument parsed back to an object so the template renders it as JSON, not as a quoted string.

    Unparseable strings are kept as they are: the template then writes them raw, which is what the model saw."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return {} if arguments is None else arguments


def _prepared_call(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {
        "id": call.get("id") or "",
        "type": "function",
        "function": {"name": fn.get("name") or "", "arguments": _arguments_object(fn.get("arguments"))},
    }


def prepare_tools(tools: list[dict] | None) -> list[dict] | None:
    """Tools in the OpenAI ``{"type": "function", "function": {...}}`` shape; bare legacy ``functions`` entries are
    wrapped. An empty list is None, so no tools block is rendered."""
    if not tools:
        return None
    out = []
    for tool in tools:
        if "function" in tool and isinstance(tool["function"], dict):
            out.append({"type": "function", "function": tool["function"]})
        else:
            out.append({"type": "function", "function": tool})
    return out


def prepare_messages(messages: list[dict], tools: list[dict] | None) -> list[dict]:
    """What the template consumes: text content, tool-call arguments as objects, legacy ``function_call`` as
    ``tool_calls``, ``developer`` as ``system`` and ``function`` results as ``tool``.

    ``tools`` is accepted so a request can be passed on as it is; the template reads tools itself
    (see :func:`prepare_tools`)."""
    del tools
    out: list[dict] = []
    for message in messages:
        role = message.get("role") or "user"
        role = _ROLE_ALIASES.get(role, role)
        prepared: dict[str, Any] = {"role": role, "content": _text(message.get("content"))}
        if message.get("name"):
            prepared["name"] = message["name"]
        if role == "assistant":
            calls = [_prepared_call(c) for c in message.get("tool_calls") or [] if isinstance(c, dict)]
            if not calls and isinstance(message.get("function_call"), dict):
                calls = [_prepared_call({"type": "function", "function": message["function_call"]})]
            if calls:
                prepared["tool_calls"] = calls
            if "weight" in message:
                prepared["weight"] = message["weight"]
        elif role == "tool":
            prepared["tool_call_id"] = message.get("tool_call_id") or ""
            if prepared["content"] is None:
                prepared["content"] = ""
        elif prepared["content"] is None:
            prepared["content"] = ""
        out.append(prepared)
    return out


def is_prefill(message: dict) -> bool:
    """A trailing ``{"role": "assistant", "name": "prefill"}`` message is the start of the answer, not a turn."""
    return message.get("role") == "assistant" and message.get("name") == "prefill"


# --------------------------------------------------------------------------------------------- rendering

_tracking = threading.local()


@cache
def _template() -> Any:
    """The compiled template, in a sandbox like transformers' own (same filters, trim/lstrip blocks), plus a
    ``generation`` tag that records the character spans of assistant outputs."""
    import jinja2
    import jinja2.ext
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationSpans(jinja2.ext.Extension):
        tags = {"generation"}  # noqa: RUF012 - jinja's own class attribute

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_span", []), [], [], body).set_lineno(lineno)

        def _span(self, caller: Any) -> str:
            text = caller()
            state = getattr(_tracking, "state", None)
            if state is not None:
                blocks, spans = state
                start = sum(len(b) for b in blocks)
                spans.append((start, start + len(text)))
            return text

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationSpans, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(CHAT_TEMPLATE)


def render_with_spans(
    messages: list[dict], tools: list[dict] | None = None, add_generation_prompt: bool = False
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the ``[start, end)`` character spans of the trained assistant outputs."""
    template = _template()
    blocks: list[str] = []
    spans: list[tuple[int, int]] = []
    _tracking.state = (blocks, spans)
    try:
        for block in template.generate(
            messages=prepare_messages(messages, tools),
            tools=prepare_tools(tools),
            add_generation_prompt=add_generation_prompt,
        ):
            blocks.append(block)
    finally:
        _tracking.state = None
    return "".join(blocks), spans


def render(messages: list[dict], tools: list[dict] | None = None, add_generation_prompt: bool = False) -> str:
    """The conversation as the model sees it (what transformers' ``apply_chat_template`` would render)."""
    return render_with_spans(messages, tools, add_generation_prompt)[0]


def render_prompt(messages: list[dict], tools: list[dict] | None = None) -> tuple[str, str]:
    """The text to generate from, and the prefill it ends with ("" when there is none).

    A trailing prefill message is not rendered as a turn: the prompt ends with the generation prompt followed by
    the prefill verbatim, so the model continues the prefill rather than answering after it."""
    prefill = ""
    if messages and is_prefill(messages[-1]):
        prefill = _text(messages[-1].get("content")) or ""
        messages = messages[:-1]
    return render(messages, tools, add_generation_prompt=True) + prefill, prefill


# --------------------------------------------------------------------------------------------- answer shape


@dataclass(frozen=True)
class AnswerShape:
    """What a request's ``tool_choice`` (or legacy ``function_call``) and ``response_format`` ask of the answer,
    in terms a decoder can act on.

    ``messages`` may end with a prefill message (:func:`is_prefill`) that opens a forced tool call in this template's
    syntax; ``tools`` are the tools to render (None for ``tool_choice: "none"``). When ``json_from`` is set, the answer
    from that character offset on (prefill included) must be one JSON object, generation ends as soon as it is
    complete, and ``suffix`` is appended then (it closes a forced tool call). ``tool_calls`` False means the answer is
    text even where it looks like a call."""

    messages: list[dict]
    tools: list[dict] | None
    json_from: int | None = None
    suffix: str = ""
    tool_calls: bool = True


def _forced_name(choice: Any, field: str) -> str | None:
    """The function a tool choice forces (None for the string choices), or ValueError."""
    if not isinstance(choice, dict):
        raise ValueError(f"`{field}` must be \"none\", \"auto\", \"required\" or an object naming a function")
    fn = choice.get("function") if field == "tool_choice" else choice
    if field == "tool_choice" and choice.get("type") != "function":
        raise ValueError('`tool_choice.type` must be "function"')
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or not name:
        where = "tool_choice.function.name" if field == "tool_choice" else "function_call.name"
        raise ValueError(f"`{where}` must be a non-empty string")
    return name


def shape_answer(
    messages: list[dict], tools: list[dict] | None, tool_choice: Any = None, response_format: Any = None,
    field: str = "tool_choice",
) -> AnswerShape:
    """Turn ``tool_choice`` and ``response_format`` into an :class:`AnswerShape`; ValueError names the bad field.

    A forced function is prefilled as the opening of a call to it, ``<tool_call>\\n{"name": "<name>", "arguments":``,
    so the model writes only the arguments (a JSON object) and the call is closed for it. ``"required"`` opens a
    call and lets the model name the function (with one tool, it is that tool). ``{"type": "json_object"}`` makes the
    whole answer one JSON object. ``field`` is the request field the choice came from (``function_call`` for the
    legacy form, whose values are ``"none"``, ``"auto"`` or ``{"name": ...}``)."""
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise ValueError("`tools` must be an array of objects")
    tools = prepare_tools(tools)
    names = [(t.get("function") or {}).get("name") for t in tools or []]
    has_prefill = bool(messages) and is_prefill(messages[-1])
    if tool_choice is not None and tool_choice != "auto":
        if tool_choice == "none":
            return AnswerShape(messages, None, tool_calls=False)
        if tool_choice == "required" and field == "tool_choice":
            forced = names[0] if len(names) == 1 else None
        elif isinstance(tool_choice, str):
            allowed = '"none" or "auto"' if field == "function_call" else '"none", "auto" or "required"'
            raise ValueError(f"`{field}` must be {allowed}, or an object naming a function")
        else:
            forced = _forced_name(tool_choice, field)
        if not tools:
            raise ValueError(f"`{field}` asks for a function call, but the request has no tools")
        if forced is not None and forced not in names:
            raise ValueError(f"`{field}` names `{forced}`, which is not among the request's tools")
        if has_prefill:
            raise ValueError(f"a prefill message cannot be combined with a `{field}` that forces a call")
        if forced is None:  # "required" among several tools: the model names one
            prefill = TOOL_CALL_OPEN + '{"name": "'
            return AnswerShape([*messages, {"role": "assistant", "name": "prefill", "content": prefill}], tools,
                               json_from=len(TOOL_CALL_OPEN), suffix=TOOL_CALL_CLOSE)
        prefill = f'{TOOL_CALL_OPEN}{{"name": {json.dumps(forced, ensure_ascii=False)}, "arguments":'
        return AnswerShape([*messages, {"role": "assistant", "name": "prefill", "content": prefill}], tools,
                           json_from=len(prefill), suffix="}" + TOOL_CALL_CLOSE)
    if response_format is None:
        return AnswerShape(messages, tools)
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return AnswerShape(messages, tools)
    if kind == "json_schema":
        schema = response_format.get("json_schema")
        if isinstance(schema, dict) and schema.get("strict") is True:
            raise ValueError("`response_format.json_schema.strict` is not supported by fine-tuned models: their "
                             "answers are guaranteed to be a JSON object, not to follow a schema "
                             '(use {"type": "json_object"}, or strict: false)')
        kind = "json_object"  # non-strict: a JSON object, the schema followed as far as the model learnt it
    if kind != "json_object":
        raise ValueError('`response_format.type` must be "text", "json_object" or "json_schema"')
    if has_prefill and not JsonPrefix().feed(_text(messages[-1].get("content")) or ""):
        raise ValueError("the prefill message does not begin a JSON object, but `response_format` asks for one")
    return AnswerShape(messages, tools, json_from=0)


# --------------------------------------------------------------------------------------------- parsing


def _tool_call_from_json(raw: str) -> dict | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": obj["name"], "arguments": arguments},
    }


def parse_completion(text: str, tool_calls: bool = True) -> dict:
    """Generated assistant text → an OpenAI assistant message.

    Every ``<tool_call>`` block holding a JSON object with a name becomes a tool call (arguments as a JSON string,
    as OpenAI returns them); a block with invalid JSON stays in the content, so nothing the model said is lost.
    With ``tool_calls`` False (``tool_choice: "none"``) the whole text is content."""
    if not tool_calls:
        return {"role": "assistant", "content": text.replace(IM_END, "").strip()}
    calls: list[dict] = []

    def take(match: re.Match[str]) -> str:
        call = _tool_call_from_json(match.group(1))
        if call is None:
            return match.group(0)
        calls.append(call)
        return ""

    rest = _TOOL_CALL.sub(take, text.replace(IM_END, "")).strip()
    message: dict[str, Any] = {"role": "assistant", "content": rest}
    if calls:
        message["content"] = rest or None
        message["tool_calls"] = calls
    return message
