"""Anthropic Messages API payloads and their OpenAI-style view.

Anthropic logs keep their payloads intact; the OpenAI view (`chat.completion`) is what
search, the latest-call route and dataset import read.
"""

from __future__ import annotations

from typing import Any

import orjson

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def message_to_openai_completion(resp: Any) -> Any:
    """An Anthropic `message` as an OpenAI `chat.completion`; anything else is returned as is."""
    if not isinstance(resp, dict) or resp.get("type") != "message":
        return resp
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in resp.get("content") or []:
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
    usage = resp.get("usage") if isinstance(resp.get("usage"), dict) else {}
    prompt = usage.get("input_tokens") or 0
    completion = usage.get("output_tokens") or 0
    return {
        "id": resp.get("id"),
        "object": "chat.completion",
        "created": 0,
        "model": resp.get("model"),
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": _STOP_REASONS.get(resp.get("stop_reason") or "", "stop"),
            "logprobs": None,
        }],
        "usage": {
            "prompt_tokens": prompt if isinstance(prompt, int) else 0,
            "completion_tokens": completion if isinstance(completion, int) else 0,
            "total_tokens": (prompt if isinstance(prompt, int) else 0)
            + (completion if isinstance(completion, int) else 0),
        },
    }
