"""Chat completions: forward to the upstream, answer the client, log the call.

The body is parsed once (orjson) and forwarded as the received bytes unless a field must
change. The log is registered as pending before the client gets its answer and published in
the background, so the bus's latency is never added to the response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from refinery.bus.producer import DurableProducer
from refinery.events.request_logs import RequestLogRecorded, request_log_recorded
from refinery.stores.cache import ResponseCache
from refinery.wire.openai_shapes import completion_id_of, error_message_of, merge_metadata, usage_of
from refinery.wire.pricing import cost_usd

from proxy_router.anthropic_adapter import (
    SYNTHETIC_USER_TURN,
    StreamTranslator,
    to_completion,
    to_messages_request,
    to_openai_error,
)
from proxy_router.caching import TTL_S, cache_key, cache_mode
from proxy_router.pending import PendingLogs
from proxy_router.providers import ModelResolver, ProviderCache, Upstream
from proxy_router.routing import Route, route_for
from proxy_router.streams import ChunkMerger

log = logging.getLogger("refinery.proxy_router")

JSON = "application/json"


def _error(status: int, code: str, message: str) -> web.Response:
    body = {"message": message, "code": code, "issues": [], "error": {"message": message, "type": code.lower()}}
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON)


def _upstream_json(raw: bytes) -> Any:
    """An upstream body as JSON; a non-JSON body (a proxy's HTML error page) as an error object."""
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return {"error": {"message": raw[:2000].decode(errors="replace")}}


class ChatProxy:
    def __init__(
        self, producer: DurableProducer, providers: ProviderCache, pending: PendingLogs, timeout_s: float,
        cache: ResponseCache, models: ModelResolver | None = None,
    ) -> None:
        self._models = models
        self._producer = producer
        self._cache = cache
        self._providers = providers
        self._pending = pending
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10)
        self._session: aiohttp.ClientSession | None = None

    async def _fine_tuned(self, project_id: str, slug: str) -> tuple[Upstream | None, str | None]:
        if self._models is None:
            return None, None
        try:
            return await self._models.resolve(project_id, slug)
        except Exception as exc:  # the registry is down: say so rather than "does not exist"
            log.warning("model-registry unavailable: %s", exc)
            return None, "cannot be resolved right now (model-registry unavailable); retry"

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=1000, limit_per_host=1000, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, auto_decompress=True)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _log(self, project_id: str, log_enabled: bool, **fields: Any) -> None:
        if not log_enabled:
            return
        if "usage" in fields and "cost_usd" not in fields:
            fields["cost_usd"] = cost_usd(fields.get("model"), fields["usage"])
        record = RequestLogRecorded(source="proxy", received_at=time.time() * 1000, **fields)
        try:
            value = request_log_recorded(project_id, record).to_bytes()
        except orjson.JSONEncodeError:
            # An upstream answer nested deeper than orjson writes: keep it as JSON text, never drop it.
            text = {k: json.dumps(fields.get(k)) for k in ("req_payload", "resp_payload")}
            record = record.model_copy(update=text)
            value = request_log_recorded(project_id, record).to_bytes()
        fut = asyncio.ensure_future(self._producer.publish(project_id.encode(), value))
        self._pending.track(project_id, fut)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        requested_at = time.time() * 1000
        project_id = request.headers.get("x-refinery-project-id")
        if not project_id:
            return _error(401, "UNAUTHORIZED", "missing project")
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _error(400, "BAD_REQUEST", f"body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return _error(400, "BAD_REQUEST", "body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "BAD_REQUEST", "`model` is required and must be a string")
        if not isinstance(body.get("messages"), list):
            return _error(400, "BAD_REQUEST", "`messages` is required and must be an array")

        headers = request.headers
        log_enabled = headers.get("op-log-request", "true").lower() != "false" and body.get("store") is not False
        tags: Any = None
        if headers.get("op-tags"):
            try:
                tags = orjson.loads(headers["op-tags"])
            except orjson.JSONDecodeError:
                return _error(400, "BAD_REQUEST", "`op-tags` header must be a JSON object")
        try:
            # Parsing allows 1024 levels, writing the log 254: refuse what could not be logged.
            orjson.dumps(body)
            meta = merge_metadata(body.get("metadata"), tags)
        except orjson.JSONEncodeError as exc:
            return _error(400, "BAD_REQUEST", f"body nests too deeply to be logged: {exc}")
        stream = body.get("stream") is True
        common = {"requested_at": requested_at, "model": model, "req_payload": body, "metadata": meta}

        route = route_for(model)
        read_cache, write_cache = cache_mode(headers.get("op-cache")) if not stream else (False, False)
        key = cache_key(project_id, body) if read_cache or write_cache else ""
        if read_cache:
            cached = await self._cache.get(key)
            if cached is not None:
                resp_json = orjson.loads(cached)
                self._log(project_id, log_enabled, **common, provider=route.provider, status_code=200,
                          resp_payload=resp_json, cache_hit=True, usage=usage_of(resp_json),
                          completion_id=completion_id_of(resp_json), completed_at=time.time() * 1000)
                overhead_ms = (time.perf_counter() - started) * 1000
                return web.Response(body=cached, content_type="application/json",
                                    headers={"x-refinery-overhead-ms": f"{overhead_ms:.2f}", "x-refinery-cache": "hit"})
        try:
            providers = await self._providers.get(project_id)
        except Exception:
            log.exception("provider settings unavailable")
            return _error(503, "SERVICE_UNAVAILABLE", "provider settings unavailable; retry")
        upstream: Upstream | None = providers.get(route.provider)
        not_deployed = None
        if route.provider == "openpipe":
            upstream, not_deployed = await self._fine_tuned(project_id, route.upstream_model)
            route = Route("openpipe", model)  # inference echoes the model as the client named it
        if upstream is None:
            if not_deployed:
                status = 503 if "unavailable" in not_deployed else 400
                message = f"The model `{model}` {not_deployed}"
            elif route.provider == "openpipe":
                status, message = 404, f"The model `{model}` does not exist"
            else:
                status, message = 400, f"No `{route.provider}` provider is configured for this project"
            self._log(project_id, log_enabled, **common, provider=route.provider, status_code=status,
                      error_message=message, completed_at=time.time() * 1000)
            return _error(status, {404: "NOT_FOUND", 503: "SERVICE_UNAVAILABLE"}.get(status, "BAD_REQUEST"), message)

        if route.provider == "anthropic":
            return await self._anthropic(request, upstream.base_url, upstream.api_key, route.upstream_model, body,
                                         project_id, log_enabled, common, started)
        forward = raw
        needs_user_turn = route.provider == "gemini" and not any(
            isinstance(m, dict) and m.get("role") not in ("system", "developer") for m in body["messages"])
        if route.upstream_model != model or needs_user_turn or (
                "metadata" in body and body.get("store") is not True):
            fwd = dict(body)
            fwd["model"] = route.upstream_model
            if fwd.get("store") is not True:
                # OpenAI rejects metadata unless the call is stored there too.
                fwd.pop("metadata", None)
            if needs_user_turn:
                # Gemini, like Anthropic, rejects a conversation with no user turn.
                fwd["messages"] = [*body["messages"], {"role": "user", "content": SYNTHETIC_USER_TURN}]
            forward = orjson.dumps(fwd)
        up_headers = {"content-type": JSON, "authorization": f"Bearer {upstream.api_key}", **dict(upstream.headers)}
        assert self._session is not None
        url = f"{upstream.base_url}/chat/completions"
        upstream_started = time.perf_counter()
        try:
            up = await self._session.post(url, data=forward, headers=up_headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"upstream {route.provider} unreachable: {type(exc).__name__}"
            self._log(project_id, log_enabled, **common, provider=route.provider, status_code=502,
                      error_message=message, completed_at=time.time() * 1000)
            return _error(502, "BAD_GATEWAY", message)
        try:
            if stream and up.status == 200:
                return await self._relay_stream(request, up, project_id, log_enabled, common, route.provider,
                                                started, upstream_started)
            payload = await up.read()
        finally:
            up.release()
        upstream_s = time.perf_counter() - upstream_started
        resp_json = _upstream_json(payload)
        ok = up.status < 400
        if write_cache and up.status == 200 and isinstance(resp_json, dict):
            await self._cache.set(key, payload, TTL_S)
        self._log(
            project_id, log_enabled, **common, provider=route.provider, status_code=up.status,
            resp_payload=resp_json,
            error_message=None if ok else (error_message_of(resp_json) or f"upstream returned {up.status}"),
            usage=usage_of(resp_json) if ok else None, completion_id=completion_id_of(resp_json) if ok else None,
            completed_at=time.time() * 1000,
        )
        overhead_ms = (time.perf_counter() - started - upstream_s) * 1000
        return web.Response(
            body=payload, status=up.status,
            headers={"content-type": up.headers.get("content-type", JSON),
                     "x-refinery-overhead-ms": f"{overhead_ms:.2f}"},
        )

    async def _relay_stream(
        self, request: web.Request, up: aiohttp.ClientResponse, project_id: str, log_enabled: bool,
        common: dict[str, Any], provider: str, started: float, upstream_started: float,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={
            "content-type": "text/event-stream", "cache-control": "no-cache",
            # Only the set-up before the upstream answered is ours in a stream.
            "x-refinery-overhead-ms": f"{(upstream_started - started) * 1000:.2f}",
        })
        merger = ChunkMerger()
        logged = False

        def log_stream() -> None:
            nonlocal logged
            if logged:
                return
            logged = True
            completion = merger.completion()
            self._log(project_id, log_enabled, **common, provider=provider, status_code=200,
                      resp_payload=completion, usage=usage_of(completion),
                      completion_id=completion_id_of(completion), completed_at=time.time() * 1000)

        prepared = False
        async for line in up.content:
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data == b"[DONE]":
                    log_stream()  # before the final marker: the client's next read sees the call
                elif data:
                    try:
                        merger.add(orjson.loads(data))
                    except (orjson.JSONDecodeError, AttributeError, TypeError):
                        log.warning("unparseable stream chunk from upstream")
            if not prepared:
                await response.prepare(request)
                prepared = True
            await response.write(line)
        log_stream()
        if not prepared:
            await response.prepare(request)
        await response.write_eof()
        return response

    async def _anthropic(
        self, request: web.Request, base_url: str, api_key: str, upstream_model: str, body: dict[str, Any],
        project_id: str, log_enabled: bool, common: dict[str, Any], started: float,
    ) -> web.StreamResponse:
        """`anthropic:<model>`: the Messages API behind an OpenAI-shaped answer (and log)."""
        model = common["model"]
        payload = orjson.dumps(to_messages_request(body, upstream_model))
        headers = {"content-type": JSON, "x-api-key": api_key, "anthropic-version": "2023-06-01"}
        assert self._session is not None
        upstream_started = time.perf_counter()
        try:
            up = await self._session.post(f"{base_url}/v1/messages", data=payload, headers=headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"upstream anthropic unreachable: {type(exc).__name__}"
            self._log(project_id, log_enabled, **common, provider="anthropic", status_code=502,
                      error_message=message, completed_at=time.time() * 1000)
            return _error(502, "BAD_GATEWAY", message)
        try:
            if up.status == 200 and body.get("stream") is True:
                return await self._anthropic_stream(request, up, model, project_id, log_enabled, common,
                                                    upstream_started - started)
            raw = await up.read()
        finally:
            up.release()
        upstream_s = time.perf_counter() - upstream_started
        answer = _upstream_json(raw)
        if up.status == 200:
            out = to_completion(answer, model)
            self._log(project_id, log_enabled, **common, provider="anthropic", status_code=200, resp_payload=out,
                      usage=usage_of(out), completion_id=completion_id_of(out), completed_at=time.time() * 1000)
        else:
            out = to_openai_error(up.status, answer)
            self._log(project_id, log_enabled, **common, provider="anthropic", status_code=up.status,
                      resp_payload=out, error_message=error_message_of(out), completed_at=time.time() * 1000)
        overhead_ms = (time.perf_counter() - started - upstream_s) * 1000
        return web.Response(body=orjson.dumps(out), status=up.status, content_type=JSON,
                            headers={"x-refinery-overhead-ms": f"{overhead_ms:.2f}"})

    async def _anthropic_stream(
        self, request: web.Request, up: aiohttp.ClientResponse, model: str, project_id: str, log_enabled: bool,
        common: dict[str, Any], setup_s: float,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={
            "content-type": "text/event-stream", "cache-control": "no-cache",
            "x-refinery-overhead-ms": f"{setup_s * 1000:.2f}",
        })
        translator = StreamTranslator(model)
        merger = ChunkMerger()
        prepared = False
        logged = False
        async for line in up.content:
            if not line.startswith(b"data:"):
                continue
            try:
                event = orjson.loads(line[5:].strip())
            except orjson.JSONDecodeError:
                continue
            for out in translator.feed(event):
                if out == b"data: [DONE]\n\n" and not logged:
                    completion = merger.completion()
                    completion["usage"] = {**translator.usage, "total_tokens": sum(translator.usage.values())}
                    self._log(project_id, log_enabled, **common, provider="anthropic", status_code=200,
                              resp_payload=completion, usage=usage_of(completion),
                              completion_id=completion_id_of(completion), completed_at=time.time() * 1000)
                    logged = True
                else:
                    merger.add(orjson.loads(out[6:]))
                if not prepared:
                    await response.prepare(request)
                    prepared = True
                await response.write(out)
        if not prepared:
            await response.prepare(request)
        await response.write_eof()
        return response
