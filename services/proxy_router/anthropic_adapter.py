"""`anthropic:<model>` through the OpenAI chat format: requests, answers and streams translated.

Clients speak OpenAI; Anthropic's Messages API differs in where the system prompt goes, how
tool calls and results are shaped, and its stream events. The log keeps the OpenAI view.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from refinery.wire.anthropic_shapes import message_to_openai_completion

DEFAULT_MAX_TOKENS = 4096
SYNTHETIC_USER_TURN = "Please respond."
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


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
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
    return blocks


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return {"arguments": raw}
    return raw or {}


def to_messages_request(body: dict[str, Any], model: str) -> dict[str, Any]:
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
            blocks = _parts(msg.get("content"))
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") or {}
                blocks.append({"type": "tool_use", "id": call.get("id") or "", "name": fn.get("name", ""),
                               "input": _arguments(fn.get("arguments"))})
            if msg.get("function_call"):
                fc = msg["function_call"]
                blocks.append({"type": "tool_use", "id": "call_0", "name": fc.get("name", ""),
                               "input": _arguments(fc.get("arguments"))})
            messages.append({"role": "assistant", "content": blocks})
        elif role in ("tool", "function"):
            result = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id") or "call_0",
                      "content": _text(msg.get("content"))}
            if messages and messages[-1]["role"] == "user" and all(
                b.get("type") == "tool_result" for b in messages[-1]["content"]
            ):
                messages[-1]["content"].append(result)
            else:
                messages.append({"role": "user", "content": [result]})
    if not messages or messages[0]["role"] != "user":
        # Anthropic needs a first user turn; a system-only prompt is common in OpenAI usage.
        messages.insert(0, {"role": "user", "content": [{"type": "text", "text": SYNTHETIC_USER_TURN}]})
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
    tools = [t.get("function") or {} for t in body.get("tools") or [] if isinstance(t, dict)]
    tools += [f for f in body.get("functions") or [] if isinstance(f, dict)]
    if tools:
        out["tools"] = [{"name": f.get("name", ""), "description": f.get("description", ""),
                         "input_schema": f.get("parameters") or {"type": "object", "properties": {}}}
                        for f in tools]
        choice = body.get("tool_choice", body.get("function_call"))
        if choice == "required":
            out["tool_choice"] = {"type": "any"}
        elif choice == "none":
            out["tool_choice"] = {"type": "none"}
        elif isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name") or choice.get("name")
            if name:
                out["tool_choice"] = {"type": "tool", "name": name}
    if body.get("stream") is True:
        out["stream"] = True
    return out


def to_completion(message: Any, requested_model: str) -> dict[str, Any]:
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


class StreamTranslator:
    """Anthropic stream events in, OpenAI `chat.completion.chunk` SSE lines out."""

    def __init__(self, requested_model: str) -> None:
        self.model = requested_model
        self.id = ""
        self.created = int(time.time())
        self.tool_index: dict[int, int] = {}
        self.usage: dict[str, int] = {}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def feed(self, event: dict[str, Any]) -> list[bytes]:
        kind = event.get("type")
        if kind == "message_start":
            msg = event.get("message") or {}
            self.id = msg.get("id") or ""
            self.usage["prompt_tokens"] = (msg.get("usage") or {}).get("input_tokens") or 0
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = len(self.tool_index)
                self.tool_index[event.get("index", 0)] = index
                return [self._chunk({"tool_calls": [{"index": index, "id": block.get("id", ""), "type": "function",
                                                     "function": {"name": block.get("name", ""), "arguments": ""}}]})]
            return []
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                index = self.tool_index.get(event.get("index", 0), 0)
                return [self._chunk({"tool_calls": [{"index": index,
                                                     "function": {"arguments": delta.get("partial_json", "")}}]})]
            return []
        if kind == "message_delta":
            stop = (event.get("delta") or {}).get("stop_reason")
            self.usage["completion_tokens"] = (event.get("usage") or {}).get("output_tokens") or 0
            return [self._chunk({}, _FINISH.get(stop or "", "stop"))]
        if kind == "message_stop":
            return [b"data: [DONE]\n\n"]
        return []
