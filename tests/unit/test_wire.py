"""Payload readers, metadata stringification, Anthropic conversion, stream merging, routing."""

from __future__ import annotations

from proxy_router.routing import Route, route_for
from proxy_router.streams import ChunkMerger
from refinery.events.envelope import Envelope
from refinery.events.request_logs import RequestLogRecorded, request_log_recorded
from refinery.wire.anthropic import message_to_openai_completion
from refinery.wire.openai_shapes import error_message_of, merge_metadata, usage_of


def test_metadata_values_become_strings_and_null_drops():
    assert merge_metadata({"a": 1, "b": True, "c": None, "d": 1.5}, {"a": "x", "e": False}) == {
        "a": "x", "b": "true", "d": "1.5", "e": "false"
    }


def test_usage_tolerates_explicit_nulls():
    usage = usage_of({"usage": {"prompt_tokens": 3, "completion_tokens": None, "total_tokens": None,
                                "prompt_tokens_details": None}})
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 0, 3)
    assert usage_of({"usage": None}) is None and usage_of("garbage") is None


def test_error_message_from_openai_and_anthropic_bodies():
    assert error_message_of({"error": {"message": "nope"}}) == "nope"
    assert error_message_of({"type": "error", "error": {"type": "x", "message": "bad"}}) == "bad"


def test_anthropic_message_to_openai_completion():
    out = message_to_openai_completion({
        "id": "msg_1", "type": "message", "model": "claude", "stop_reason": "tool_use",
        "content": [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
        "usage": {"input_tokens": 2, "output_tokens": 3},
    })
    msg = out["choices"][0]["message"]
    assert msg["content"] == "Hi"
    assert msg["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"]["total_tokens"] == 5


def test_chunk_merger_rebuilds_content_and_tool_calls():
    m = ChunkMerger()
    base = {"id": "c1", "created": 1, "model": "m", "object": "chat.completion.chunk"}
    m.add({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]})
    m.add({**base, "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]})
    m.add({**base, "choices": [{"index": 1, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}}]})
    m.add({**base, "choices": [{"index": 1, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
                                "finish_reason": "tool_calls"}]})
    out = m.completion()
    assert out["id"] == "c1" and out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["content"] == "Hello"
    assert out["choices"][1]["message"]["tool_calls"][0] == {
        "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def test_routes_by_model_prefix():
    assert route_for("gpt-4o") == Route("openai", "gpt-4o")
    assert route_for("openai:gpt-4o") == Route("openai", "gpt-4o")
    assert route_for("anthropic:claude-3") == Route("anthropic", "claude-3")
    assert route_for("openpipe:my-model") == Route("openpipe", "my-model")
    assert route_for("openpipe:together/llama") == Route("together", "llama")


def test_envelope_round_trips_and_keeps_payload_key_order():
    log = RequestLogRecorded(source="report", received_at=1.0, req_payload={"z": 1, "a": {"y": None, "b": 2}})
    env = request_log_recorded("p1", log)
    back = Envelope.from_bytes(env.to_bytes())
    assert back == env
    assert list(back.data["req_payload"]) == ["z", "a"]
    assert back.aggregate_id == log.log_id and back.type == "request_log.recorded"


def test_cost_is_priced_by_model_family_or_unknown():
    from refinery.events.request_logs import Usage
    from refinery.wire.pricing import cost_usd

    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000, total_tokens=2_000_000)
    assert cost_usd("gpt-4o-mini-2024-07-18", usage) == 0.75
    assert cost_usd("openai:gpt-4o-2024-08-06", usage) == 12.5
    assert cost_usd("anthropic:claude-3-5-sonnet-20241022", usage) == 18.0
    assert cost_usd("my-own-model", usage) is None and cost_usd("gpt-4o", None) is None
