"""proxy-router's internal chat completions, on one pooled session: how criteria-judge and eval call models.

Every call names its project (`x-refinery-project-id`) and carries the service token, so it is routed
with the project's providers and fine-tuned models, and logged, cached and costed there like any call.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import aiohttp
import orjson

from refinery import internal_auth

PROJECT_HEADER = "x-refinery-project-id"
COST_HEADER = "x-refinery-cost-usd"


class ProxyAnswer(NamedTuple):
    status: int
    body: bytes
    cost_usd: float | None  # what proxy-router logged as the call's cost (the project's prices); None: unknown


class ProxyUnreachable(Exception):
    """proxy-router did not answer (connection refused, reset)."""


class ProxyClient:
    def __init__(self, proxy_url: str) -> None:
        self.url = f"{proxy_url.rstrip('/')}/v1/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(connector=connector,
                                              timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def chat(self, project_id: str, body: dict[str, Any], headers: dict[str, str] | None = None
                   ) -> tuple[int, bytes]:
        """(status, body) of one chat completion; the caller bounds the wait (asyncio.timeout)."""
        answer = await self.chat_answer(project_id, body, headers)
        return answer.status, answer.body

    async def chat_answer(self, project_id: str, body: dict[str, Any], headers: dict[str, str] | None = None
                          ) -> ProxyAnswer:
        """One chat completion with the cost proxy-router logged for it."""
        assert self._session is not None, "ProxyClient.start() first"
        sent = {"content-type": "application/json", PROJECT_HEADER: project_id, **(headers or {}),
                **internal_auth.headers()}
        try:
            async with self._session.post(self.url, data=orjson.dumps(body), headers=sent) as resp:
                return ProxyAnswer(resp.status, await resp.read(), _cost(resp.headers.get(COST_HEADER)))
        except aiohttp.ClientConnectionError as exc:
            raise ProxyUnreachable(f"proxy-router unreachable: {type(exc).__name__}") from None


def _cost(header: str | None) -> float | None:
    try:
        value = float(header) if header is not None else None
    except ValueError:
        return None
    return value if value is not None and value >= 0 and value == value else None


def error_text(raw: bytes) -> str:
    """An error answer's message where it has the usual shape, else the start of its body."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:300].decode(errors="replace")
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:500]
        if isinstance(body.get("message"), str):
            return str(body["message"])[:500]
    return raw[:300].decode(errors="replace")
