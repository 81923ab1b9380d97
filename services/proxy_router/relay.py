"""Answers going back to the client: a plain body, or a stream relayed as it arrives.

Every answer carries the proxy's own share of the time in `x-refinery-overhead-ms`; in a
stream that is the set-up before the upstream answered. A stream's log is handed over
(`on_done`) before its final marker is written, so the client's next read sees the call.

A stream that breaks off is logged all the same, with what arrived and why it ended: the
upstream hung up or timed out (the client then gets an error event, which the OpenAI SDK raises
as an error, instead of an answer that merely stops), an Anthropic stream ended before
`message_stop`, or the client itself went away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from refinery.wire.anthropic import DONE, StreamTranslator

from proxy_router.streams import ChunkMerger

log = logging.getLogger("refinery.proxy_router")

OVERHEAD_HEADER = "x-refinery-overhead-ms"
# The completion merged from what was streamed, and why the stream ended early (None: it did not).
OnDone = Callable[[dict[str, Any], "str | None"], None]
CLIENT_GONE = "the client closed the connection before the stream ended"


def broke_off(provider: str, exc: BaseException) -> str:
    return f"the {provider} stream broke off before it ended ({type(exc).__name__}: {exc})"[:500]


class _ClientGone(Exception):
    """Writing to the client failed: it hung up."""


COST_HEADER = "x-refinery-cost-usd"


def cost_header(cost: float | None) -> dict[str, str] | None:
    """The call's cost as logged (the project's own prices where set), for callers that account for it."""
    return None if cost is None else {COST_HEADER: f"{cost:.10g}"}


def plain_response(
    body: bytes, status: int, content_type: str, overhead_ms: float, extra: dict[str, str] | None = None,
) -> web.Response:
    headers = {"content-type": content_type, OVERHEAD_HEADER: f"{overhead_ms:.2f}", **(extra or {})}
    return web.Response(body=body, status=status, headers=headers)


class _Downstream:
    """The client's side of a stream, opened with the first bytes written (or at the end)."""

    def __init__(self, request: web.Request, overhead_ms: float) -> None:
        self._request = request
        self._prepared = False
        self.response = web.StreamResponse(status=200, headers={
            "content-type": "text/event-stream", "cache-control": "no-cache", OVERHEAD_HEADER: f"{overhead_ms:.2f}",
        })

    async def write(self, data: bytes) -> None:
        try:
            if not self._prepared:
                await self.response.prepare(self._request)
                self._prepared = True
            await self.response.write(data)
        except ConnectionError as exc:
            raise _ClientGone from exc

    async def error(self, message: str) -> None:
        """An error event in place of the rest of the stream: the OpenAI SDK raises it."""
        body = {"error": {"message": message, "type": "upstream_error", "param": None, "code": None}}
        await self.write(b"data: " + orjson.dumps(body) + b"\n\n")

    async def close(self) -> web.StreamResponse:
        if not self._prepared:
            await self.response.prepare(self._request)
        await self.response.write_eof()
        return self.response


class _Once:
    """Hands the merged completion to `on_done` the first time it is called, never again."""

    def __init__(self, completion: Callable[[], dict[str, Any]], on_done: OnDone) -> None:
        self._completion = completion
        self._on_done = on_done
        self.done = False

    def __call__(self, error: str | None = None) -> None:
        if not self.done:
            self.done = True
            self._on_done(self._completion(), error)


async def _ended(out: _Downstream, finish: _Once, provider: str, exc: BaseException) -> web.StreamResponse:
    """A stream that broke off: logged with what arrived and why, and the client told, if still there."""
    if isinstance(exc, _ClientGone):
        finish(CLIENT_GONE)
        return out.response  # aiohttp finishes a response whose client has gone
    message = broke_off(provider, exc)
    log.warning("%s", message)
    finish(message)
    try:
        await out.error(message)
        return await out.close()
    except (_ClientGone, ConnectionError):
        return out.response


async def relay_stream(
    request: web.Request, up: aiohttp.ClientResponse, overhead_ms: float, on_done: OnDone, provider: str = "upstream",
) -> web.StreamResponse:
    """An OpenAI-compatible stream, relayed line for line; the log holds the merged chunks."""
    out = _Downstream(request, overhead_ms)
    merger = ChunkMerger()
    finish = _Once(merger.completion, on_done)
    try:
        async for line in up.content:
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data == b"[DONE]":
                    finish()
                elif data:
                    try:
                        merger.add(orjson.loads(data))
                    except (orjson.JSONDecodeError, AttributeError, TypeError):
                        log.warning("unparseable stream chunk from upstream")
            await out.write(line)
    except (aiohttp.ClientError, TimeoutError, _ClientGone) as exc:
        return await _ended(out, finish, provider, exc)
    finish()  # an upstream that ended without [DONE] is logged all the same
    return await out.close()


async def relay_anthropic_stream(
    request: web.Request, up: aiohttp.ClientResponse, translator: StreamTranslator, overhead_ms: float,
    on_done: OnDone,
) -> web.StreamResponse:
    """Anthropic stream events, relayed as OpenAI chunks; the log holds them merged, with the usage.

    Anthropic always ends a stream with `message_stop`; one that ends without it (or with an
    `error` event) is an answer cut short, logged as an error with what arrived.
    """
    out = _Downstream(request, overhead_ms)
    merger = ChunkMerger()

    def completion() -> dict[str, Any]:
        return {**merger.completion(), "usage": translator.total_usage()}

    finish = _Once(completion, on_done)
    try:
        async for line in up.content:
            if not line.startswith(b"data:"):
                continue
            try:
                event = orjson.loads(line[5:].strip())
            except orjson.JSONDecodeError:
                continue
            for chunk in translator.feed(event):
                if chunk == DONE:
                    finish()
                else:
                    merger.add(orjson.loads(chunk[6:]))
                await out.write(chunk)
            if translator.error is not None:
                break
    except (aiohttp.ClientError, TimeoutError, _ClientGone) as exc:
        return await _ended(out, finish, "anthropic", exc)
    if not finish.done:
        message = translator.error or "the anthropic stream ended before message_stop: the answer is incomplete"
        log.warning("%s", message)
        finish(message)
        try:
            await out.error(message)
        except _ClientGone:
            return out.response
    return await out.close()
