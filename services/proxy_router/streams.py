"""Merging streamed `chat.completion.chunk`s into the completion the log stores."""

from __future__ import annotations

from typing import Any


class ChunkMerger:
    """Accumulates chunks exactly as they were sent to the client."""

    def __init__(self) -> None:
        self.base: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: Any = None

    def add(self, chunk: dict[str, Any]) -> None:
        if not self.base:
            self.base = {k: chunk.get(k) for k in ("id", "created", "model", "system_fingerprint")}
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            idx = choice.get("index", 0)
            merged = self.choices.setdefault(idx, {"index": idx, "message": {"role": "assistant", "content": None},
                                                   "finish_reason": None, "logprobs": None})
            delta = choice.get("delta") or {}
            msg = merged["message"]
            if delta.get("role"):
                msg["role"] = delta["role"]
            if isinstance(delta.get("content"), str):
                msg["content"] = (msg["content"] or "") + delta["content"]
            if isinstance(delta.get("refusal"), str):
                msg["refusal"] = (msg.get("refusal") or "") + delta["refusal"]
            fc = delta.get("function_call")
            if isinstance(fc, dict):
                cur = msg.setdefault("function_call", {"name": "", "arguments": ""})
                cur["name"] += fc.get("name") or ""
                cur["arguments"] += fc.get("arguments") or ""
            for tc in delta.get("tool_calls") or []:
                calls = msg.setdefault("tool_calls", [])
                i = tc.get("index", 0)
                while len(calls) <= i:
                    calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
                cur = calls[i]
                if tc.get("id"):
                    cur["id"] = tc["id"]
                fn = tc.get("function") or {}
                cur["function"]["name"] += fn.get("name") or ""
                cur["function"]["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                merged["finish_reason"] = choice["finish_reason"]

    def completion(self) -> dict[str, Any]:
        out = {**self.base, "object": "chat.completion",
               "choices": [self.choices[i] for i in sorted(self.choices)]}
        if self.usage is not None:
            out["usage"] = self.usage
        return out
