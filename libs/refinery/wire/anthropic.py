"""Anthropic's Messages API in OpenAI chat-completion terms: requests, answers, errors and streams.

Clients speak OpenAI; Anthropic differs in where the system prompt goes, how tool calls and
results are shaped, how a stop is named, and its stream events. Everything that maps one onto
the other lives here, so the proxy's answers, its logs and reported Anthropic calls agree;
the HTTP side (calling Anthropic, relaying to the client) stays with proxy-router.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

DEFAULT_MAX_TOKENS = 4096
# Anthropic (and Gemini) reject a conversation without a user turn; a system-only prompt is
# common in OpenAI usage, so one is supplied.
SYNTHETIC_USER_TURN = "Please respond."
DONE = b"data: [DONE]\n\n"

# The one map of Anthropic's `stop_reason` to OpenAI's `finish_reason`, plain and streamed alike.
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any) -> str:
    """OpenAI's `finish_reason` for an Anthropic `stop_reason`; an unknown or missing one is `stop`."""
    return STOP_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


# --------------------------------------------------------------------------------------------------
# Requests: OpenAI chat completion → Anthropic messages.
# --------------------------------------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _image(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        media, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            blocks.append(_image((part.get("image_url") or {}).get("url", "")))
    return blocks


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return {"arguments": raw}
    return raw or {}


def _tool_use(call_id: str, fn: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": fn.get("name", ""), "input": _arguments(fn.get("arguments"))}


def _assistant_blocks(msg: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = _parts(msg.get("content"))
    for call in msg.get("tool_calls") or []:
        blocks.append(_tool_use(call.get("id") or "", call.get("function") or {}))
    if msg.get("function_call"):
        blocks.append(_tool_use("call_0", msg["function_call"]))
    return blocks


def _add_tool_result(messages: list[dict[str, Any]], msg: dict[str, Any]) -> None:
    """Consecutive tool results share one user turn, as Anthropic wants them."""
    result = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id") or "call_0",
              "content": _text(msg.get("content"))}
    if messages and messages[-1]["role"] == "user" and all(
        b.get("type") == "tool_result" for b in messages[-1]["content"]
    ):
        messages[-1]["content"].append(result)
    else:
        messages.append({"role": "user", "content": [result]})


def _conversation(body: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """(system prompts, Anthropic messages) of an OpenAI `messages` list."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for msg in body.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        if role in ("system", "developer"):
            system.append(_text(msg.get("content")))
        elif role == "user":
            messages.append({"role": "user", "content": _parts(msg.get("content"))})
        elif role == "assistant":
            messages.append({"role": "assistant", "content": _assistant_blocks(msg)})
        elif role in ("tool", "function"):
            _add_tool_result(messages, msg)
    if not messages or messages[0]["role"] != "user":
        messages.insert(0, {"role": "user", "content": [{"type": "text", "text": SYNTHETIC_USER_TURN}]})
    return system, messages


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if name:
            return {"type": "tool", "name": name}
    return None


def _add_tools(out: dict[str, Any], body: dict[str, Any]) -> None:
    tools = [t.get("function") or {} for t in body.get("tools") or [] if isinstance(t, dict)]
    tools += [f for f in body.get("functions") or [] if isinstance(f, dict)]
    if not tools:
        return
    out["tools"] = [{"name": f.get("name", ""), "description": f.get("description", ""),
                     "input_schema": f.get("parameters") or {"type": "object", "properties": {}}}
                    for f in tools]
    choice = _tool_choice(body.get("tool_choice", body.get("function_call")))
    if choice is not None:
        out["tool_choice"] = choice


def to_messages_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat-completion request as an Anthropic Messages request for `model`."""
    system, messages = _conversation(body)
    out: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS,
    }
    if system:
        out["system"] = "\n\n".join(system)
    for key in ("temperature", "top_p"):
        if isinstance(body.get(key), (int, float)):
            out[key] = body[key]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    _add_tools(out, body)
    if body.get("stream") is True:
        out["stream"] = True
    return out


# --------------------------------------------------------------------------------------------------
# Answers: Anthropic message or error → OpenAI chat completion or error.
# --------------------------------------------------------------------------------------------------


def _tokens(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _kind_of(body: Any) -> str:
    if body is None:
        return "an empty body"
    if isinstance(body, dict):
        kind = body.get("type")
        return f"an object of type {str(kind)[:50]!r}" if kind is not None else "an object with no type"
    if isinstance(body, list):
        return "a JSON array"
    return f"a JSON {type(body).__name__}"


def not_a_message(body: Any) -> str | None:
    """Why a 200 answer from Anthropic cannot be relayed (it is not a `message`), or None if it can."""
    if isinstance(body, dict) and body.get("type") == "message":
        return None
    return f"Anthropic answered 200 with {_kind_of(body)} instead of a message"


def message_to_openai_completion(resp: Any) -> Any:
    """An Anthropic `message` as an OpenAI `chat.completion`; anything else is returned as is."""
    if not isinstance(resp, dict) or resp.get("type") != "message":
        return resp
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    content = resp.get("content")
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            tool_calls.append({
                "id": block.get("id") or "",
                "type": "function",
                "function": {
                    "name": block.get("name") or "",
                    "arguments": orjson.dumps(block.get("input") or {}).decode(),
                },
            })
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    usage = resp.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    prompt = _tokens(usage.get("input_tokens") or 0)
    completion = _tokens(usage.get("output_tokens") or 0)
    return {
        "id": resp.get("id"),
        "object": "chat.completion",
        "created": 0,
        "model": resp.get("model"),
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(resp.get("stop_reason")),
            "logprobs": None,
        }],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def to_completion(message: Any, requested_model: str) -> dict[str, Any]:
    """The proxy's answer to an Anthropic message: named by the model the client asked for.

    ValueError (worded by `not_a_message`) when `message` is not one: there is nothing to answer with.
    """
    why_not = not_a_message(message)
    if why_not is not None:
        raise ValueError(why_not)
    completion = message_to_openai_completion(message)
    completion["model"] = requested_model
    completion["created"] = int(time.time())
    return completion


def to_openai_error(status: int, body: Any) -> dict[str, Any]:
    err = body.get("error") if isinstance(body, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    kind = err.get("type") if isinstance(err, dict) else None
    return {"error": {"message": message or f"Anthropic returned {status}", "type": kind or "api_error",
                      "param": None, "code": None}}


# --------------------------------------------------------------------------------------------------
# Streams: Anthropic events → OpenAI `chat.completion.chunk` SSE lines.
# --------------------------------------------------------------------------------------------------


def _obj(value: Any) -> dict[str, Any]:
    """A stream event's field as an object, whatever arrived: a malformed event must not end the relay."""
    return value if isinstance(value, dict) else {}


def _block_index(event: dict[str, Any]) -> int:
    index = event.get("index", 0)
    return index if isinstance(index, int) else 0


class StreamTranslator:
    """Anthropic stream events in, OpenAI `chat.completion.chunk` SSE lines out (`DONE` last).

    An `error` event (Anthropic sends one when it fails mid-stream, e.g. overloaded) sets `error`;
    nothing follows it.
    """

    def __init__(self, requested_model: str) -> None:
        self.model = requested_model
        self.id = ""
        self.created = int(time.time())
        self.tool_index: dict[int, int] = {}
        self.usage: dict[str, int] = {}
        self.error: str | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def feed(self, event: Any) -> list[bytes]:
        event = _obj(event)
        kind = event.get("type")
        if kind == "message_start":
            msg = _obj(event.get("message"))
            msg_id = msg.get("id")
            self.id = msg_id if isinstance(msg_id, str) else ""
            self.usage["prompt_tokens"] = _tokens(_obj(msg.get("usage")).get("input_tokens"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "message_delta":
            stop = _obj(event.get("delta")).get("stop_reason")
            self.usage["completion_tokens"] = _tokens(_obj(event.get("usage")).get("output_tokens"))
            return [self._chunk({}, finish_reason(stop))]
        if kind == "message_stop":
            return [DONE]
        if kind == "error":
            err = _obj(event.get("error"))
            self.error = (f"the anthropic stream failed: {err.get('type') or 'error'}: "
                          f"{err.get('message') or 'no message'}")[:500]
        return []

    def _block_start(self, event: dict[str, Any]) -> list[bytes]:
        block = _obj(event.get("content_block"))
        if block.get("type") != "tool_use":
            return []
        index = len(self.tool_index)
        self.tool_index[_block_index(event)] = index
        return [self._chunk({"tool_calls": [{"index": index, "id": block.get("id", ""), "type": "function",
                                             "function": {"name": block.get("name", ""), "arguments": ""}}]})]

    def _block_delta(self, event: dict[str, Any]) -> list[bytes]:
        delta = _obj(event.get("delta"))
        if delta.get("type") == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        if delta.get("type") == "input_json_delta":
            index = self.tool_index.get(_block_index(event), 0)
            return [self._chunk({"tool_calls": [{"index": index,
                                                 "function": {"arguments": delta.get("partial_json", "")}}]})]
        return []

    def total_usage(self) -> dict[str, int]:
        """The OpenAI `usage` of the stream so far (what the log of a streamed call carries)."""
        return {**self.usage, "total_tokens": sum(self.usage.values())}


# ------------------------------------------------ Anthropic requests as OpenAI ones (logged calls → datasets)


def _block_texts(blocks: Any) -> list[str]:
    if not isinstance(blocks, list):
        return []
    return [b["text"] for b in blocks
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)]


def _tool_result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(_block_texts(content))


def _image_part(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source")
    if not isinstance(source, dict):
        return None
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', '')};base64,{source.get('data', '')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _anthropic_user(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """A user turn → tool messages for its tool_result blocks first, then what the user wrote, if anything."""
    content = msg.get("content")
    if not isinstance(content, list):
        return [{"role": "user", "content": content}]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "tool_result":
            out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                        "content": _tool_result_text(block.get("content"))})
        elif kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            image = _image_part(block)
            if image is not None:
                parts.append(image)
    if len(parts) == 1 and parts[0]["type"] == "text":
        out.append({"role": "user", "content": parts[0]["text"]})
    elif parts:
        out.append({"role": "user", "content": parts})
    return out


def _anthropic_assistant(msg: dict[str, Any]) -> dict[str, Any]:
    content = msg.get("content")
    if not isinstance(content, list):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input", {})).decode()
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": arguments}})
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        out["tool_calls"] = calls
    return out


def _anthropic_tool_choice(choice: Any) -> Any:
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return None


def anthropic_request_to_openai(req: dict[str, Any]) -> dict[str, Any]:
    """Anthropic Messages request → OpenAI chat request, so datasets hold one format whatever the client spoke.

    Unconvertible blocks (documents, thinking, server tools) are dropped; validation happens in parse_entry.
    """
    out: dict[str, Any] = {}
    for key in ("model", "max_tokens", "temperature", "top_p"):
        if key in req:
            out[key] = req[key]
    if "stop_sequences" in req:
        out["stop"] = req["stop_sequences"]

    messages: list[dict[str, Any]] = []
    system = req.get("system")
    system_text = system if isinstance(system, str) else "\n".join(_block_texts(system))
    if system_text:
        messages.append({"role": "system", "content": system_text})
    for msg in req.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        if role == "user":
            messages.extend(_anthropic_user(msg))
        elif role == "assistant":
            messages.append(_anthropic_assistant(msg))
        else:
            messages.append(dict(msg))
    out["messages"] = messages

    tools: list[dict[str, Any]] = []
    for tool in req.get("tools") or []:
        # Server tools (web_search, bash...) carry a versioned type and no input_schema: nothing to train on.
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
            continue
        fn: dict[str, Any] = {"name": tool.get("name")}
        if tool.get("description") is not None:
            fn["description"] = tool["description"]
        if tool.get("input_schema") is not None:
            fn["parameters"] = tool["input_schema"]
        tools.append({"type": "function", "function": fn})
    if tools:
        out["tools"] = tools
    choice = _anthropic_tool_choice(req.get("tool_choice"))
    if choice is not None:
        out["tool_choice"] = choice
    return out


_ANTHROPIC_TOOL_BLOCKS = frozenset({"tool_use", "tool_result"})


def looks_anthropic(req: dict[str, Any]) -> bool:
    """Anthropic-shaped even when logged as plain "report": a top-level system or tool_use/tool_result blocks."""
    if isinstance(req.get("system"), (str, list)):
        return True
    for msg in req.get("messages") or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") in _ANTHROPIC_TOOL_BLOCKS for b in content
        ):
            return True
    return False
