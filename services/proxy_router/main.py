"""Entry point: `python -m proxy_router.main`: internal HTTP for chat, gRPC for pending logs."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import signal

import uvloop
from aiohttp import web
from refinery import logging_setup
from refinery.bus.producer import DurableProducer
from refinery.bus.topics import ensure_topics
from refinery.grpc_server import start_grpc
from refinery.rpc import logs_pb2, proxy_pb2, proxy_pb2_grpc
from refinery.stores.cache import EmbeddedCache, RedisCache, ResponseCache

from proxy_router.pending import PendingLogs
from proxy_router.providers import ModelResolver, ProviderCache
from proxy_router.serving import ChatProxy
from proxy_router.settings import ProxyRouterSettings

log = logging.getLogger("refinery.proxy_router")


class ProxyRouterServicer(proxy_pb2_grpc.ProxyRouterServicer):
    def __init__(self, pending: PendingLogs, producer: DurableProducer) -> None:
        self._pending = pending
        self._producer = producer

    async def PendingLogs(self, request, context):
        positions, spooled = await self._pending.positions(request.project_id, lambda: self._producer.spool_empty)
        return proxy_pb2.PendingLogsResponse(
            positions=[logs_pb2.Position(partition=p.partition, offset=p.offset) for p in positions],
            spooled=spooled,
        )


async def serve(settings: ProxyRouterSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await ensure_topics(settings.bus_bootstrap, {settings.request_logs_topic: settings.topic_partitions})
    producer = DurableProducer(
        settings.bus_bootstrap, settings.request_logs_topic, settings.service_dir("proxy-router") / "spool",
        linger_ms=settings.log_linger_ms,
    )
    await producer.start()
    pending = PendingLogs()
    cache: ResponseCache = (
        RedisCache(settings.redis_url) if settings.redis_url
        else EmbeddedCache(settings.service_dir("proxy-router") / "cache.db")
    )
    proxy = ChatProxy(producer, ProviderCache(settings.gateway_grpc, settings.provider_cache_s), pending,
                      settings.upstream_timeout_s, cache,
                      ModelResolver(settings.registry_grpc, settings.inference_url, settings.provider_cache_s))
    await proxy.start()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", proxy.handle)
    app.router.add_get("/health", lambda _: web.Response(text="ok"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    servicer = ProxyRouterServicer(pending, producer)
    grpc_service = await start_grpc(
        settings.host, settings.grpc_port, [lambda s: proxy_pb2_grpc.add_ProxyRouterServicer_to_server(servicer, s)]
    )
    await grpc_service.set_serving(True)
    await stop.wait()
    await grpc_service.set_serving(False)
    await runner.cleanup()
    await grpc_service.stop()
    await proxy.stop()
    await producer.stop()
    await cache.close()


def main() -> None:
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack to the log
    settings = ProxyRouterSettings()
    logging_setup.configure("proxy-router", settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
