"""Entry point: `python -m proxy_router.main`: internal HTTP for chat, gRPC for pending logs."""

from __future__ import annotations

from aiohttp import web
from refinery.rpc import proxy_pb2_grpc
from refinery.runtime.kernel import Kernel, service_main
from refinery.stores.cache import EmbeddedCache, RedisCache, ResponseCache

from proxy_router.criteria import CriteriaJudge
from proxy_router.pending import PendingLogs
from proxy_router.pending_api import ProxyRouterServicer
from proxy_router.providers import ModelResolver, ProviderCache
from proxy_router.serving import ChatProxy
from proxy_router.settings import ProxyRouterSettings


async def _health(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def build(k: Kernel[ProxyRouterSettings]) -> None:
    s = k.settings
    await k.topics(s.request_logs_topic)
    producer = await k.producer(s.request_logs_topic, linger_ms=s.log_linger_ms)
    cache: ResponseCache = (RedisCache(s.redis_url) if s.redis_url
                            else EmbeddedCache(s.service_dir("proxy-router") / "cache.db"))
    k.on_stop("cache", cache.close)
    pending = PendingLogs()
    criteria = await k.part("criteria judge client", CriteriaJudge(s.criteria_grpc, s.criteria_timeout_s))
    proxy = await k.part("chat proxy", ChatProxy(
        producer, ProviderCache(s.gateway_grpc, s.provider_cache_s), pending, s.upstream_timeout_s, cache,
        ModelResolver(s.registry_grpc, s.inference_url, s.provider_cache_s), criteria))
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", proxy.handle)
    app.router.add_get("/health", _health)
    await k.http(app, s.host, s.port)
    servicer = ProxyRouterServicer(pending, producer)
    await k.grpc(s.host, s.grpc_port, (servicer, proxy_pb2_grpc.add_ProxyRouterServicer_to_server))


main = service_main("proxy-router", ProxyRouterSettings, build, use_uvloop=True)


if __name__ == "__main__":
    main()
