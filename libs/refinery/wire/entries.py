"""Dataset entries: validation, normalisation, export and conversion from request logs.

A dataset entry is one OpenAI chat fine-tuning example plus OpenPipe's extras (``rejected_message``,
``split``, ``metadata``). Uploads and exports run over files of hundreds of megabytes, so this works on
plain dicts decoded by orjson and builds each normalised message once; it does no I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from refinery.wire.anthropic import anthropic_request_to_openai, looks_anthropic

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
SPLITS = ("TRAIN", "TEST")
RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")
TOOL_CHOICE_STRINGS = ("auto", "none", "required")
FUNCTION_CALL_STRINGS = ("auto", "none")

_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# Which content part types each non-assistant role may use (assistant allows text and refusal).
_PART_TYPES: dict[str, frozenset[str]] = {
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "user": frozenset({"text", "image_url", "input_audio"}),
    "tool": frozenset({"text"}),
    "function": frozenset({"text"}),
    "assistant": frozenset({"text", "refusal"}),
}


class EntryError(ValueError):
    """A dataset entry is invalid; str(exc) is a short message naming the field, e.g.
    'messages[2].tool_calls[0].function.arguments is not valid JSON'."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One normalised training example; the last message is the assistant output being learned."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    rejected_message: dict[str, Any] | None = None
    split: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- validation


def _type_name(value: Any) -> str:
    """JSON names in error messages, since users wrote JSON, not Python."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _require_object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EntryError(f"{path} must be an object, got {_type_name(value)}")
    return value


def _require_string(value: Any, path: str, *, non_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise EntryError(f"{path} must be a string, got {_type_name(value)}")
    if non_empty and not value:
        raise EntryError(f"{path} must not be empty")
    return value


def _json_string(value: Any, path: str) -> str:
    """Arguments stay the exact string the model emitted; it must still be JSON to be trainable."""
    if not isinstance(value, str):
        raise EntryError(f"{path} must be a JSON string, got {_type_name(value)}")
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError:
        raise EntryError(f"{path} is not valid JSON") from None
    return value


def _part(part: Any, role: str, path: str) -> dict[str, Any]:
    part = _require_object(part, path)
    kind = part.get("type")
    if not isinstance(kind, str):
        raise EntryError(f"{path}.type must be a string")
    if kind not in _PART_TYPES[role]:
        allowed = ", ".join(sorted(_PART_TYPES[role]))
        raise EntryError(f"{path}.type '{kind}' is not allowed in {role} messages (allowed: {allowed})")
    if kind == "text":
        return {"type": "text", "text": _require_string(part.get("text"), f"{path}.text")}
    if kind == "refusal":
        return {"type": "refusal", "refusal": _require_string(part.get("refusal"), f"{path}.refusal")}
    if kind == "image_url":
        image = _require_object(part.get("image_url"), f"{path}.image_url")
        out_image: dict[str, Any] = {"url": _require_string(image.get("url"), f"{path}.image_url.url")}
        detail = image.get("detail")
        if detail is not None:
            out_image["detail"] = _require_string(detail, f"{path}.image_url.detail")
        return {"type": "image_url", "image_url": out_image}
    audio = _require_object(part.get("input_audio"), f"{path}.input_audio")
    return {"type": "input_audio", "input_audio": {
        "data": _require_string(audio.get("data"), f"{path}.input_audio.data"),
        "format": _require_string(audio.get("format"), f"{path}.input_audio.format"),
    }}


def _content(content: Any, role: str, path: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        if not content:
            raise EntryError(f"{path} must not be an empty array")
        return [_part(p, role, f"{path}[{i}]") for i, p in enumerate(content)]
    raise EntryError(f"{path} must be a string or an array of content parts, got {_type_name(content)}")


def _tool_call(call: Any, path: str) -> dict[str, Any]:
    call = _require_object(call, path)
    call_id = call.get("id")
    if call_id is not None:
        _require_string(call_id, f"{path}.id")
    kind = call.get("type")
    if kind is not None and kind != "function":
        raise EntryError(f"{path}.type must be 'function'")
    fn = _require_object(call.get("function"), f"{path}.function")
    return {"id": call_id or "", "type": "function", "function": {
        "name": _require_string(fn.get("name"), f"{path}.function.name", non_empty=True),
        "arguments": _json_string(fn.get("arguments"), f"{path}.function.arguments"),
    }}


def _function_call(call: Any, path: str) -> dict[str, Any]:
    call = _require_object(call, path)
    return {
        "name": _require_string(call.get("name"), f"{path}.name", non_empty=True),
        "arguments": _json_string(call.get("arguments"), f"{path}.arguments"),
    }


def _message(msg: Any, path: str, *, default_role: str | None = None) -> dict[str, Any]:
    """One normalised message holding only role, content, name, tool_calls, function_call, tool_call_id."""
    msg = _require_object(msg, path)
    role = msg.get("role")
    if role is None:
        role = default_role
    if role not in ROLES:
        raise EntryError(f"{path}.role must be one of {', '.join(sorted(ROLES))}, got {role!r}")
    out: dict[str, Any] = {"role": role}
    content = msg.get("content")
    if role == "assistant":
        out["content"] = None if content is None else _content(content, role, f"{path}.content")
    elif content is None:
        raise EntryError(f"{path}.content is required for a {role} message")
    else:
        out["content"] = _content(content, role, f"{path}.content")

    name = msg.get("name")
    if name is not None:
        out["name"] = _require_string(name, f"{path}.name", non_empty=role == "function")
    elif role == "function":
        raise EntryError(f"{path}.name is required for a function message")

    if role == "assistant":
        calls = msg.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list) or not calls:
                raise EntryError(f"{path}.tool_calls must be a non-empty array")
            out["tool_calls"] = [_tool_call(c, f"{path}.tool_calls[{i}]") for i, c in enumerate(calls)]
        fc = msg.get("function_call")
        if fc is not None:
            out["function_call"] = _function_call(fc, f"{path}.function_call")
        if out["content"] is None and "tool_calls" not in out and "function_call" not in out:
            raise EntryError(f"{path} must have content, tool_calls or function_call")
    elif role == "tool":
        out["tool_call_id"] = _require_string(msg.get("tool_call_id"), f"{path}.tool_call_id")
    return out


def _function_def(fn: Any, path: str) -> dict[str, Any]:
    fn = _require_object(fn, path)
    name = fn.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise EntryError(f"{path}.name must match ^[a-zA-Z0-9_-]{{1,64}}$, got {name!r}")
    out: dict[str, Any] = {"name": name}
    if fn.get("description") is not None:
        out["description"] = _require_string(fn["description"], f"{path}.description")
    if fn.get("parameters") is not None:
        out["parameters"] = _require_object(fn["parameters"], f"{path}.parameters")
    strict = fn.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise EntryError(f"{path}.strict must be a boolean, got {_type_name(strict)}")
        out["strict"] = strict
    return out


def _tools(obj: dict[str, Any]) -> list[dict[str, Any]] | None:
    """`tools`, or deprecated `functions` converted; an empty array counts as none (OpenAI rejects [] anyway)."""
    tools, functions = obj.get("tools"), obj.get("functions")
    if tools is not None and functions is not None:
        raise EntryError("tools and functions cannot both be given (functions is deprecated; use tools)")
    if functions is not None:
        if not isinstance(functions, list):
            raise EntryError(f"functions must be an array, got {_type_name(functions)}")
        out = [{"type": "function", "function": _function_def(f, f"functions[{i}]")} for i, f in enumerate(functions)]
        return out or None
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise EntryError(f"tools must be an array, got {_type_name(tools)}")
    result: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        tool = _require_object(tool, f"tools[{i}]")
        kind = tool.get("type")
        if kind is not None and kind != "function":
            raise EntryError(f"tools[{i}].type must be 'function'")
        result.append({"type": "function", "function": _function_def(tool.get("function"), f"tools[{i}].function")})
    return result or None


def _named_choice(name: Any, path: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": _require_string(name, path, non_empty=True)}}


def _tool_choice(obj: dict[str, Any]) -> Any:
    choice, legacy = obj.get("tool_choice"), obj.get("function_call")
    if choice is not None and legacy is not None:
        raise EntryError("tool_choice and function_call cannot both be given (function_call is deprecated)")
    if legacy is not None:
        if legacy in FUNCTION_CALL_STRINGS:
            return legacy
        if isinstance(legacy, dict):
            return _named_choice(legacy.get("name"), "function_call.name")
        raise EntryError("function_call must be 'auto', 'none' or {\"name\": ...}")
    if choice is None:
        return None
    if choice in TOOL_CHOICE_STRINGS:
        return choice
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise EntryError("tool_choice.type must be 'function'")
        fn = _require_object(choice.get("function"), "tool_choice.function")
        return _named_choice(fn.get("name"), "tool_choice.function.name")
    raise EntryError("tool_choice must be 'auto', 'none', 'required' or {\"type\": \"function\", \"function\": ...}")


def _response_format(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    value = _require_object(value, "response_format")
    kind = value.get("type")
    if kind not in RESPONSE_FORMAT_TYPES:
        raise EntryError(f"response_format.type must be one of {', '.join(RESPONSE_FORMAT_TYPES)}, got {kind!r}")
    if kind != "json_schema":
        return {"type": kind}
    schema = _require_object(value.get("json_schema"), "response_format.json_schema")
    _require_string(schema.get("name"), "response_format.json_schema.name")
    return {"type": kind, "json_schema": schema}


def _metadata(value: Any, coerce: bool) -> dict[str, str]:
    """Metadata is string→string; coercion serves logs, whose clients send numbers and booleans."""
    if value is None:
        return {}
    value = _require_object(value, "metadata")
    out: dict[str, str] = {}
    for key, v in value.items():
        if isinstance(v, str):
            out[key] = v
        elif not coerce:
            raise EntryError(f"metadata.{key} must be a string")
        elif v is None:
            continue
        elif isinstance(v, bool):
            out[key] = "true" if v else "false"
        elif isinstance(v, (int, float)):
            out[key] = str(v)
        else:
            raise EntryError(f"metadata.{key} must be a string, number, boolean or null")
    return out


def parse_entry(obj: Any, *, coerce_metadata: bool = False) -> Entry:
    """Validate and normalise one decoded entry; raises EntryError naming the first bad field.

    Unknown top-level keys (model, temperature, n, legacy judgement...) are accepted and dropped.
    """
    obj = _require_object(obj, "entry")
    raw_messages = obj.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise EntryError("messages must be a non-empty array")
    messages = [_message(m, f"messages[{i}]") for i, m in enumerate(raw_messages)]
    if messages[-1]["role"] != "assistant":
        raise EntryError("messages must end with an assistant message")

    rejected = obj.get("rejected_message")
    if rejected is not None:
        if isinstance(rejected, dict) and rejected.get("role") not in (None, "assistant"):
            raise EntryError("rejected_message.role must be 'assistant'")
        rejected = _message(rejected, "rejected_message", default_role="assistant")

    split = obj.get("split")
    if split is not None and split not in SPLITS:
        raise EntryError(f"split must be one of TRAIN, TEST or null, got {split!r}")

    return Entry(
        messages=messages,
        tools=_tools(obj),
        tool_choice=_tool_choice(obj),
        response_format=_response_format(obj.get("response_format")),
        rejected_message=rejected,
        split=split,
        metadata=_metadata(obj.get("metadata"), coerce_metadata),
    )


def parse_jsonl_line(line: bytes, *, coerce_metadata: bool = False) -> Entry | None:
    """One JSONL line → Entry; None for blank lines so uploads tolerate trailing newlines."""
    line = line.strip()
    if not line:
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise EntryError(f"invalid JSON: {str(exc)[:200]}") from None
    return parse_entry(obj, coerce_metadata=coerce_metadata)


def entry_to_dict(entry: Entry) -> dict[str, Any]:
    """The documented export line; None fields and empty metadata are omitted.

    The result shares the entry's lists and dicts (no copy on the export hot path): do not mutate it.
    """
    out: dict[str, Any] = {"messages": entry.messages}
    if entry.tools is not None:
        out["tools"] = entry.tools
    if entry.tool_choice is not None:
        out["tool_choice"] = entry.tool_choice
    if entry.response_format is not None:
        out["response_format"] = entry.response_format
    if entry.rejected_message is not None:
        out["rejected_message"] = entry.rejected_message
    if entry.split is not None:
        out["split"] = entry.split
    if entry.metadata:
        out["metadata"] = entry.metadata
    return out


def stable_split(entry_id: str, test_fraction: float = 0.1) -> str:
    """TRAIN/TEST from a hash of the id, so re-splitting never moves an entry between sets."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    n = int.from_bytes(hashlib.sha256(entry_id.encode()).digest()[:8], "big")
    return "TEST" if (n % 10_000) < test_fraction * 10_000 else "TRAIN"


def input_messages(entry: Entry) -> list[dict[str, Any]]:
    """The prompt: everything but the final assistant output."""
    return entry.messages[:-1]


# ------------------------------------------------------------------------------------------------- logs


def _output_message(resp: Any) -> dict[str, Any] | None:
    if not isinstance(resp, dict):
        return None
    choices = resp.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    out: dict[str, Any] = {"role": message.get("role") or "assistant", "content": message.get("content")}
    if message.get("tool_calls"):  # responses often carry tool_calls: [] or null
        out["tool_calls"] = message["tool_calls"]
    if message.get("function_call") is not None:
        out["function_call"] = message["function_call"]
    return out


def entry_from_log(log: dict[str, Any]) -> Entry | None:
    """A successful logged call → Entry (request messages + response message); None when it cannot train."""
    status = log.get("statusCode")
    if status is not None and (not isinstance(status, int) or not 200 <= status < 300):
        return None
    if log.get("errorMessage"):
        return None
    output = _output_message(log.get("respOpenai"))
    req = log.get("reqPayload")
    if output is None or not isinstance(req, dict) or not isinstance(req.get("messages"), list):
        return None  # a reported request is stored as given: read it defensively
    if log.get("source") == "report-anthropic" or looks_anthropic(req):
        try:
            req = anthropic_request_to_openai(req)
        except (TypeError, ValueError, AttributeError, KeyError):
            return None  # not a shape that trains
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    candidate: dict[str, Any] = {"messages": [*messages, output], "metadata": log.get("metadata")}
    for key in ("tools", "functions", "tool_choice", "function_call", "response_format"):
        if req.get(key) is not None:
            candidate[key] = req[key]
    try:
        return parse_entry(candidate, coerce_metadata=True)
    except EntryError:
        return None


# ---------------------------------------------------------------------------------------------- pruning


def _prune(text: str, rules: list[str]) -> str:
    for rule in rules:
        text = text.replace(rule, "")
    return text


def apply_pruning_rules(messages: list[dict[str, Any]], rules: list[str]) -> list[dict[str, Any]]:
    """Remove static prompt text (pruning rules) from the input messages; assistant outputs stay intact.

    Returns new message dicts; the input list and its dicts are never mutated.
    """
    active = [r for r in rules if r]
    out: list[dict[str, Any]] = []
    for msg in messages:
        new = dict(msg)
        out.append(new)
        if not active or msg.get("role") == "assistant":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            new["content"] = _prune(content, active)
        elif isinstance(content, list):
            new["content"] = [
                {**p, "text": _prune(p["text"], active)}
                if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) else p
                for p in content
            ]
    return out
