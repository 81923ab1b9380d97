"""A model's output for one eval row: the row's input sent through proxy-router at temperature 0.

The body is the row's input as the dataset had it (`messages`, and `tools`, `tool_choice`,
`response_format` where present) with `metadata.eval_id`, so the calls are recognisable in the
project's request logs. The output kept is the answer's assistant message (content and tool calls);
a model that fails answers with the error as the output's error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eval.calls import CallFailed, ChatClient, chat_completion, first_message

PASSED_THROUGH = ("tools", "tool_choice", "response_format")
KEPT = ("role", "content", "tool_calls", "function_call", "refusal")


@dataclass(frozen=True)
class Generated:
    output: dict[str, Any] | None
    error: str | None
    latency_ms: float | None
    cost_usd: float


def output_request(model: str, eval_id: str, row_input: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": list(row_input.get("messages") or [])}
    for key in PASSED_THROUGH:
        if row_input.get(key) is not None:
            body[key] = row_input[key]
    body["temperature"] = 0
    body["metadata"] = {"eval_id": eval_id}
    return body


def assistant_message(message: dict[str, Any]) -> dict[str, Any]:
    return {k: message[k] for k in KEPT if message.get(k) is not None} | {"role": "assistant"}


class OutputGenerator:
    def __init__(self, proxy: ChatClient, timeout_s: float, retry_delay_s: float = 1.0) -> None:
        self._proxy = proxy
        self._timeout_s = timeout_s
        self._retry_delay_s = retry_delay_s

    async def generate(self, project_id: str, eval_id: str, model: str, row_input: dict[str, Any]) -> Generated:
        """The output, or its error; raises Unreachable when proxy-router does not answer."""
        try:
            answer = await chat_completion(self._proxy, project_id, output_request(model, eval_id, row_input),
                                           timeout_s=self._timeout_s, retry_delay_s=self._retry_delay_s)
        except CallFailed as exc:
            return Generated(None, str(exc)[:2000], None, 0.0)
        message = first_message(answer.response)
        if message is None:
            return Generated(None, f"{model} answered without a message", answer.latency_ms, answer.cost_usd)
        return Generated(assistant_message(message), None, answer.latency_ms, answer.cost_usd)
