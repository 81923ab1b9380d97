"""Entry point: `python -m inference.main`."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import signal

from aiohttp import web
from refinery import logging_setup
from refinery.grpc_server import client_channel, start_grpc
from refinery.rpc import inference_pb2_grpc, models_pb2, models_pb2_grpc
from refinery.stores.objectstore import ObjectStore

from inference.serving import InferenceControl, InferenceServer
from inference.settings import InferenceSettings

log = logging.getLogger("refinery.inference")


async def _restore(server: InferenceServer, registry_grpc: str) -> None:
    """After a restart, load every model the registry has deployed on this base."""
    async with client_channel(registry_grpc) as channel:
        stub = models_pb2_grpc.ModelRegistryStub(channel)
        for _ in range(120):
            try:
                resp = await stub.Deployments(models_pb2.DeploymentsRequest(), timeout=10)
                break
            except Exception:
                await asyncio.sleep(1.0)
        else:
            return
    for d in resp.deployments:
        if d.base_model == server.base_id and d.model_id not in server.engine.adapters():
            try:
                await asyncio.to_thread(server.load, d.model_id, d.adapter_key, list(d.pruning_rules))
            except Exception:
                log.exception("could not restore %s", d.slug)


async def serve(settings: InferenceSettings) -> None:
    from refinery.ml.base_models import resolve_base_model

    from inference.backends import build_engine

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    objects = ObjectStore(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, settings.s3_bucket,
                          secure=settings.s3_secure)
    await asyncio.to_thread(objects.ensure_bucket)
    control = InferenceControl()
    grpc_service = await start_grpc(settings.grpc_host, settings.grpc_port,
                                    [lambda s: inference_pb2_grpc.add_InferenceServicer_to_server(control, s)])
    base_dir = await asyncio.to_thread(resolve_base_model, settings.base_model, settings.models_dir())
    engine = await asyncio.to_thread(build_engine, settings, base_dir)
    server = InferenceServer(engine, objects, settings.service_dir("inference") / "adapters", settings.base_model)
    control.server = server
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", server.chat)
    app.router.add_get("/health", lambda _: web.json_response({"status": "ok"}))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    restore = asyncio.create_task(_restore(server, settings.registry_grpc)) if settings.registry_grpc else None
    await grpc_service.set_serving(True)
    log.warning("inference serving %s on %s:%s", settings.base_model, settings.host, settings.port)
    await stop.wait()
    if restore is not None:
        restore.cancel()
    await grpc_service.stop()
    await runner.cleanup()


def main() -> None:
    faulthandler.register(signal.SIGUSR1)
    settings = InferenceSettings()
    logging_setup.configure("inference", settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
