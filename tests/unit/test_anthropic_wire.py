"""The Anthropic translation: one stop-reason map for plain and streamed answers, requests, errors."""

from __future__ import annotations

import orjson
import pytest
from proxy_router.streams import ChunkMerger
from refinery.wire.anthropic import (
    DONE,
    SYNTHETIC_USER_TURN,
    StreamTranslator,
    message_to_openai_completion,
    to_messages_request,
    to_openai_error,
)

STOPS = [("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop"), ("tool_use", "tool_calls"),
         ("refusal", "content_filter"), ("a_reason_from_the_future", "stop"), (None, "stop")]


def _message(stop: str | None) -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "stop_reason": stop,
            "content": [{"type": "text", "text": "Hi"}], "usage": {"input_tokens": 2, "output_tokens": 1}}


def _events(stop: str | None) -> list[dict]:
    return [
        {"type": "message_start", "message": {**_message(None), "content": [], "usage": {"input_tokens": 2}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 1}},
        {"type": "message_stop"},
    ]


def _streamed(stop: str | None) -> tuple[list[bytes], dict]:
    translator, merger, lines = StreamTranslator("anthropic:claude"), ChunkMerger(), []
    for event in _events(stop):
        lines += translator.feed(event)
    for line in lines[:-1]:
        merger.add(orjson.loads(line.removeprefix(b"data: ")))
    return lines, merger.completion()


@pytest.mark.parametrize(("stop", "finish"), STOPS)
def test_plain_and_streamed_answers_map_a_stop_reason_alike(stop, finish):
    plain = message_to_openai_completion(_message(stop))["choices"][0]["finish_reason"]
    lines, merged = _streamed(stop)
    assert lines[-1] == DONE
    assert plain == merged["choices"][0]["finish_reason"] == finish
    assert merged["choices"][0]["message"]["content"] == "Hi"


def test_stream_translation_carries_tool_calls_and_usage():
    translator = StreamTranslator("anthropic:claude")
    events = [
        {"type": "message_start", "message": {"id": "msg_9", "usage": {"input_tokens": 5}}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "f"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}},
    ]
    merger = ChunkMerger()
    for event in events:
        for line in translator.feed(event):
            merger.add(orjson.loads(line.removeprefix(b"data: ")))
    choice = merger.completion()["choices"][0]
    assert choice["message"]["tool_calls"] == [{"id": "t1", "type": "function",
                                                "function": {"name": "f", "arguments": '{"a":1}'}}]
    assert choice["finish_reason"] == "tool_calls"
    assert translator.total_usage() == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_request_translation_moves_system_tools_and_results():
    body = {
        "model": "anthropic:claude", "max_completion_tokens": 50, "temperature": 0.2, "stop": "END", "stream": True,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "two"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
    }
    out = to_messages_request(body, "claude")
    assert out["model"] == "claude" and out["max_tokens"] == 50 and out["system"] == "be brief"
    assert out["temperature"] == 0.2 and out["stop_sequences"] == ["END"] and out["stream"] is True
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][0]["content"][0]["text"] == SYNTHETIC_USER_TURN
    assert out["messages"][1]["content"] == [{"type": "tool_use", "id": "c1", "name": "f", "input": {"x": 1}}]
    assert [b["content"] for b in out["messages"][2]["content"]] == ["one", "two"]
    assert out["tools"] == [{"name": "f", "description": "", "input_schema": {"type": "object"}}]
    assert out["tool_choice"] == {"type": "tool", "name": "f"}


def test_errors_keep_anthropic_message_and_type():
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    assert to_openai_error(529, body)["error"] == {"message": "busy", "type": "overloaded_error", "param": None,
                                                  "code": None}
    assert to_openai_error(500, "<html>")["error"]["message"] == "Anthropic returned 500"
