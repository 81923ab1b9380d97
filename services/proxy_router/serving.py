"""Chat completions: route to an upstream, forward, relay the answer to the client, log the call.

`ChatProxy.handle` runs the steps in order; each raises `ProxyError` for an answer of its own:
- route: parse the body once (`chat_request`), pick the upstream from the model's name
  (`routing`), answer from the cache where asked;
- forward: one POST on the pooled session (`forwarding` says what is sent);
- relay: plain or streamed back to the client, with the overhead header (`relay`);
- log: the `request_log.recorded` event, published in the background (`call_log`).
A call with `op-criteria` has its criteria resolved before the upstream is called and its answer
judged and ranked before it is relayed and logged (`criteria`); a call without never enters it.
"""

from __future__ import annotations

import logging
import time

import aiohttp
import orjson
from aiohttp import web
from refinery.bus.producer import DurableProducer
from refinery.stores.cache import ResponseCache
from refinery.wire.anthropic import StreamTranslator, not_a_message, to_completion, to_openai_error

from proxy_router.caching import TTL_S, scoped_to
from proxy_router.call_log import CallLog
from proxy_router.chat_request import ChatRequest, parse_chat_request
from proxy_router.criteria import CriteriaJudge, judgeable, ranked
from proxy_router.errors import JSON, ProxyError
from proxy_router.forwarding import UpstreamRequest, anthropic_request, openai_request, upstream_json
from proxy_router.pending import PendingLogs
from proxy_router.providers import ModelResolver, ProviderCache, Upstream
from proxy_router.relay import OnDone, cost_header, plain_response, relay_anthropic_stream, relay_stream
from proxy_router.routing import Route, no_upstream, route_for

log = logging.getLogger("refinery.proxy_router")

PROJECT_HEADER = "x-refinery-project-id"
BUILT_IN = frozenset({"openai", "anthropic", "gemini", "openpipe"})


class ChatProxy:
    def __init__(
        self, producer: DurableProducer, providers: ProviderCache, pending: PendingLogs, timeout_s: float,
        cache: ResponseCache, models: ModelResolver | None = None, criteria: CriteriaJudge | None = None,
    ) -> None:
        self._models = models
        self._criteria = criteria or CriteriaJudge(None)
        self._cache = cache
        self._providers = providers
        self._log = CallLog(producer, pending)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=1000, limit_per_host=1000, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, auto_decompress=True)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if (why := self._log.unkept()) is not None:
            return ProxyError(507, f"Calls are refused while their logs cannot be kept: {why}. They are taken "
                                   "again once the bus is reachable or the spool has space.").response()
        try:
            call = await self._read(request, started)
            route, upstream = await self._upstream(call, route_for(call.model))
            if call.criteria:
                await self._resolve_criteria(call, route.provider)
            if call.cache_key:
                call.cache_key = scoped_to(call.cache_key, upstream.base_url, upstream.api_key, upstream.headers)
            if call.cache_read and (hit := await self._cache_hit(call, route)) is not None:
                return hit
            if route.provider == "anthropic":
                return await self._anthropic(request, call, route, upstream)
            return await self._openai(request, call, route, upstream)
        except ProxyError as err:
            return err.response()

    # -- route ------------------------------------------------------------------------------------

    async def _read(self, request: web.Request, started: float) -> ChatRequest:
        requested_at = time.time() * 1000
        project_id = request.headers.get(PROJECT_HEADER)
        if not project_id:
            raise ProxyError(401, "missing project")
        return parse_chat_request(project_id, await request.read(), request.headers, started, requested_at)

    async def _cache_hit(self, call: ChatRequest, route: Route) -> web.Response | None:
        cached = await self._cache.get(call.cache_key)
        if cached is None:
            return None
        resp = orjson.loads(cached)
        if call.criteria and judgeable(resp):
            judging_started = time.perf_counter()
            judged = await self._judged(call, resp)
            self._log.judged(call, route.provider, judged, resp, cache_hit=True)
            return plain_response(orjson.dumps(judged), 200, JSON,
                                  call.overhead_ms(time.perf_counter() - judging_started), {"x-refinery-cache": "hit"})
        self._log.answered(call, route.provider, 200, resp, ok=True, cache_hit=True)
        return plain_response(cached, 200, JSON, call.overhead_ms(), {"x-refinery-cache": "hit"})

    # -- criteria ---------------------------------------------------------------------------------

    async def _resolve_criteria(self, call: ChatRequest, provider: str) -> None:
        """Unknown criteria refused (and logged) before the upstream is asked for anything."""
        try:
            await self._criteria.resolve(call.project_id, call.criteria)
        except ProxyError as err:
            self._log.failed(call, provider, err.status, err.message)
            raise

    async def _judged(self, call: ChatRequest, resp: dict) -> dict:
        return ranked(resp, await self._criteria.judge(call.project_id, call.criteria, call.body, resp))

    async def _upstream(self, call: ChatRequest, route: Route) -> tuple[Route, Upstream]:
        """The route (as logged) and the upstream serving it, or a logged error."""
        try:
            providers = await self._providers.get(call.project_id)
        except Exception:
            log.exception("provider settings unavailable")
            raise ProxyError(503, "provider settings unavailable; retry") from None
        upstream: Upstream | None = providers.get(route.provider)
        why_not = None
        if route.provider == "openpipe":
            upstream, why_not = await self._fine_tuned(call.project_id, route.upstream_model)
            route = Route("openpipe", call.model)  # inference echoes the model as the client named it
        elif upstream is None and route.provider not in BUILT_IN and call.model.startswith("openpipe:"):
            upstream = await self._base_model(f"{route.provider}/{route.upstream_model}")
            if upstream is not None:
                route = Route("openpipe", call.model)
        if upstream is None:
            status, message = no_upstream(call.model, route.provider, why_not)
            self._log.failed(call, route.provider, status, message)
            raise ProxyError(status, message)
        call.prices = upstream.prices.get(route.upstream_model)
        return route, upstream

    async def _base_model(self, name: str) -> Upstream | None:
        """The base model inference serves, when `name` is its id (and no provider of that name is set)."""
        if self._models is None or self._session is None:
            return None
        try:
            return await self._models.base(self._session, name)
        except Exception as exc:  # inference is down: the call fails as an unknown provider would
            log.warning("inference's base model unavailable: %s", exc)
            return None

    async def _fine_tuned(self, project_id: str, slug: str) -> tuple[Upstream | None, str | None]:
        if self._models is None:
            return None, None
        try:
            return await self._models.resolve(project_id, slug)
        except Exception as exc:  # the registry is down: say so rather than "does not exist"
            log.warning("model-registry unavailable: %s", exc)
            return None, "cannot be resolved right now (model-registry unavailable); retry"

    # -- forward ----------------------------------------------------------------------------------

    async def _forward(
        self, call: ChatRequest, provider: str, req: UpstreamRequest,
    ) -> tuple[aiohttp.ClientResponse, float]:
        """The upstream's response (body unread) and when the request to it started, or a logged 502."""
        assert self._session is not None
        upstream_started = time.perf_counter()
        try:
            return await self._session.post(req.url, data=req.body, headers=req.headers), upstream_started
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"upstream {provider} unreachable: {type(exc).__name__}"
            self._log.failed(call, provider, 502, message)
            raise ProxyError(502, message) from None

    # -- relay (and log) --------------------------------------------------------------------------

    def _on_done(self, call: ChatRequest, provider: str) -> OnDone:
        return lambda completion, error: self._log.streamed(call, provider, completion, error)

    async def _openai(self, request: web.Request, call: ChatRequest, route: Route, upstream: Upstream,
                      ) -> web.StreamResponse:
        """An OpenAI-compatible upstream: forward, relay its answer as it is, cache it where asked, log it."""
        up, upstream_started = await self._forward(call, route.provider, openai_request(call, route, upstream))
        try:
            if call.stream and up.status == 200:
                return await relay_stream(request, up, call.setup_ms(upstream_started),
                                          self._on_done(call, route.provider), route.provider)
            payload = await up.read()
        finally:
            up.release()
        upstream_s = time.perf_counter() - upstream_started
        resp = upstream_json(payload)
        if call.cache_write and up.status == 200 and isinstance(resp, dict):
            await self._cache.set(call.cache_key, payload, TTL_S)
        if call.criteria and up.status == 200 and judgeable(resp):
            judged = await self._judged(call, resp)
            self._log.judged(call, route.provider, judged, resp)
            return plain_response(orjson.dumps(judged), 200, JSON,
                                  call.overhead_ms(time.perf_counter() - upstream_started))
        cost = self._log.answered(call, route.provider, up.status, resp, ok=up.status < 400)
        return plain_response(payload, up.status, up.headers.get("content-type", JSON), call.overhead_ms(upstream_s),
                              cost_header(cost))

    async def _anthropic(self, request: web.Request, call: ChatRequest, route: Route, upstream: Upstream,
                         ) -> web.StreamResponse:
        """`anthropic:<model>`: forward to the Messages API, relay and log its answer in OpenAI's shape."""
        up, upstream_started = await self._forward(call, "anthropic", anthropic_request(call, route, upstream))
        try:
            if call.stream and up.status == 200:
                return await relay_anthropic_stream(request, up, StreamTranslator(call.model),
                                                    call.setup_ms(upstream_started), self._on_done(call, "anthropic"))
            raw = await up.read()
        finally:
            up.release()
        upstream_s = time.perf_counter() - upstream_started
        ok = up.status == 200
        answer = upstream_json(raw)
        if ok and (why_not := not_a_message(answer)) is not None:
            self._log.unusable(call, "anthropic", answer, why_not)
            raise ProxyError(502, why_not)
        out = to_completion(answer, call.model) if ok else to_openai_error(up.status, answer)
        if call.criteria and ok and judgeable(out):
            judged = await self._judged(call, out)
            self._log.judged(call, "anthropic", judged, out)
            return plain_response(orjson.dumps(judged), 200, JSON,
                                  call.overhead_ms(time.perf_counter() - upstream_started))
        cost = self._log.answered(call, "anthropic", up.status, out, ok=ok)
        return plain_response(orjson.dumps(out), up.status, JSON, call.overhead_ms(upstream_s), cost_header(cost))
