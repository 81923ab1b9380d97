"""One chat completion through proxy-router, as eval makes them (model outputs, head-to-head judges).

Calls name the eval's project, so they are routed with its providers and fine-tuned models and
logged, cached (`op-cache: readWrite`: running the same eval input twice costs once) and costed
there like any call. An upstream that answers 429 or 5xx is asked once more after a pause; any
other failure is the call's result. proxy-router not answering at all is `Unreachable`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from refinery.events.request_logs import Usage
from refinery.proxy_client import ProxyAnswer, ProxyUnreachable, error_text
from refinery.wire.pricing import cost_usd

from eval.outcomes import Unreachable

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
CACHE_HEADERS = {"op-cache": "readWrite"}


class ChatClient(Protocol):
    async def chat_answer(self, project_id: str, body: dict[str, Any], headers: dict[str, str] | None = None
                          ) -> ProxyAnswer: ...


class CallFailed(Exception):
    """The model answered with an error, nothing usable, or not in time (the message says which)."""


@dataclass(frozen=True)
class Answer:
    response: dict[str, Any]
    latency_ms: float  # wall time of the call that answered
    cost_usd: float  # as proxy-router logged it (the project's prices), else the list price; 0 when unknown


def cost_of(response: dict[str, Any], model: str) -> float:
    raw = response.get("usage")
    if not isinstance(raw, dict):
        return 0.0

    def count(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    prompt, completion = count("prompt_tokens"), count("completion_tokens")
    usage = Usage(prompt_tokens=prompt, completion_tokens=completion,
                  total_tokens=count("total_tokens") or prompt + completion)
    return cost_usd(model, usage) or 0.0


async def chat_completion(proxy: ChatClient, project_id: str, body: dict[str, Any], *, timeout_s: float,
                          retry_delay_s: float) -> Answer:
    model = str(body.get("model"))
    for attempt in (1, 2):
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                status, raw, logged_cost = await proxy.chat_answer(project_id, body, CACHE_HEADERS)
        except ProxyUnreachable as exc:
            raise Unreachable(str(exc)) from None
        except TimeoutError:
            raise CallFailed(f"{model} did not answer within {timeout_s:g} s") from None
        latency_ms = (time.monotonic() - started) * 1000.0
        if status == 200:
            try:
                response = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise CallFailed(f"{model} answered with a body that is not JSON") from None
            if not isinstance(response, dict):
                raise CallFailed(f"{model} answered with JSON that is not a chat completion")
            cost = logged_cost if logged_cost is not None else cost_of(response, model)
            return Answer(response, latency_ms, cost)
        if attempt == 1 and status in RETRIED_STATUSES:
            await asyncio.sleep(retry_delay_s)
            continue
        raise CallFailed(f"{model} answered {status}: {error_text(raw)}")
    raise AssertionError("unreachable")  # pragma: no cover


def first_message(response: dict[str, Any]) -> dict[str, Any] | None:
    """The first choice's message, when the answer has one."""
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    return message if isinstance(message, dict) else None
