"""Entry point: `python -m gateway.main`: the REST API plus the internal gRPC API."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import secrets
import signal

import uvicorn
import uvloop
from refinery import logging_setup
from refinery.bus.producer import DurableProducer
from refinery.bus.topics import ensure_topics
from refinery.events.envelope import Envelope
from refinery.events.request_logs import READ_BARRIER
from refinery.grpc_server import check_health, client_channel, start_grpc
from refinery.rpc import datasets_pb2_grpc, logs_pb2_grpc, models_pb2_grpc, projects_pb2, projects_pb2_grpc
from refinery.secrets_box import SecretBox
from refinery.stores.eventstore import OutboxRelay

from gateway.app import Deps, build_app
from gateway.hot_paths import HotPaths
from gateway.projects import ProjectRegistry
from gateway.reads import ReadBinder
from gateway.settings import GatewaySettings

log = logging.getLogger("refinery.gateway")


class ProjectsServicer(projects_pb2_grpc.ProjectsServicer):
    def __init__(self, registry: ProjectRegistry) -> None:
        self._registry = registry

    async def GetProviderSettings(self, request, context):
        providers = await asyncio.to_thread(self._registry.providers, request.project_id)
        return projects_pb2.ProviderSettingsResponse(providers=[
            projects_pb2.Provider(name=p.provider, base_url=p.base_url, api_key=p.api_key) for p in providers
        ])


async def _mark_baseline(producer: DurableProducer, reads: ReadBinder) -> None:
    """Bind reads to everything on the bus before this process started (see ReadBinder)."""
    marker = Envelope(type=READ_BARRIER, aggregate_id="gateway", project_id="", data={}).to_bytes()
    while reads.baseline is None:
        positions = await producer.mark_every_partition(marker)
        if positions is None:
            await asyncio.sleep(0.5)
            continue
        reads.baseline = {p.partition: p.offset for p in positions}


def _admin_token(settings: GatewaySettings) -> str:
    if settings.admin_token:
        return settings.admin_token
    path = settings.service_dir("gateway") / "admin-token"
    if not path.exists():
        path.write_text(secrets.token_hex(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _bootstrap(settings: GatewaySettings, registry: ProjectRegistry) -> None:
    """Headless first start: the default project, its key and its OpenAI provider."""
    if not settings.init_api_key:
        if not registry.list():
            project, key = registry.create_project("default")
            log.warning("created default project %s", project.id)
        return
    project_id = registry.authenticate(settings.init_api_key)
    if project_id is None:
        existing = registry.find_by_name("default")
        name = "default" if existing is None else f"default-{secrets.token_hex(3)}"
        project, _ = registry.create_project(name, settings.init_api_key)
        project_id = project.id
    current = {p.provider: p for p in registry.providers(project_id)}
    for provider in ("openai", "anthropic", "gemini"):
        base_url = getattr(settings, f"init_{provider}_base_url")
        if not base_url:
            continue
        base_url = base_url.rstrip("/")
        key = getattr(settings, f"init_{provider}_api_key") or ""
        have = current.get(provider)
        if have is None or have.base_url != base_url or have.api_key != key:
            registry.set_provider(project_id, provider, base_url, key)


async def serve(settings: GatewaySettings) -> None:
    box = SecretBox.from_file(settings.service_dir("gateway") / "secret.key")
    registry = await asyncio.to_thread(ProjectRegistry, settings.db_url(), box)
    await asyncio.to_thread(_bootstrap, settings, registry)
    await ensure_topics(settings.bus_bootstrap, {
        settings.request_logs_topic: settings.topic_partitions,
        settings.projects_topic: settings.topic_partitions,
    })
    producer = DurableProducer(
        settings.bus_bootstrap, settings.request_logs_topic, settings.service_dir("gateway") / "spool"
    )
    await producer.start()
    projects_producer = DurableProducer(
        settings.bus_bootstrap, settings.projects_topic, settings.service_dir("gateway") / "projects-spool"
    )
    await projects_producer.start()
    relay = OutboxRelay(registry.engine, projects_producer)
    registry.on_change = relay.notify
    relay.start()

    logs_channel = client_channel(settings.log_ingest_grpc)
    proxy = None
    if settings.proxy_router_url:
        from gateway.chat_api import ProxyForwarder

        proxy = ProxyForwarder(settings.proxy_router_url)
        await proxy.start()

    reads = ReadBinder(settings.proxy_router_grpc)
    baseline_task = asyncio.create_task(_mark_baseline(producer, reads))

    async def health() -> dict[str, bool]:
        checks = {"log-ingest": check_health(settings.log_ingest_grpc)}
        if settings.proxy_router_grpc:
            checks["proxy-router"] = check_health(settings.proxy_router_grpc)
        if settings.dataset_grpc:
            checks["dataset"] = check_health(settings.dataset_grpc)
        if settings.registry_grpc:
            checks["model-registry"] = check_health(settings.registry_grpc)
        if settings.trainer_grpc:
            checks["trainer"] = check_health(settings.trainer_grpc)
        if settings.inference_grpc:
            checks["inference"] = check_health(settings.inference_grpc)
        results = await asyncio.gather(*checks.values())
        # The gateway is ready once its reads can be bound (see ReadBinder.baseline).
        return {"gateway": reads.baseline is not None, **dict(zip(checks.keys(), results, strict=True))}

    datasets_channel = client_channel(settings.dataset_grpc) if settings.dataset_grpc else None
    registry_channel = client_channel(settings.registry_grpc) if settings.registry_grpc else None
    deps = Deps(
        settings=settings, projects=registry, producer=producer, reads=reads,
        logs=logs_pb2_grpc.LogStoreStub(logs_channel), admin_token=_admin_token(settings), health=health,
        proxy=proxy,
        datasets=datasets_pb2_grpc.DatasetsStub(datasets_channel) if datasets_channel is not None else None,
        models=models_pb2_grpc.ModelRegistryStub(registry_channel) if registry_channel is not None else None,
    )
    app = build_app(deps)
    servicer = ProjectsServicer(registry)
    grpc_service = await start_grpc(
        settings.host, settings.grpc_port, [lambda s: projects_pb2_grpc.add_ProjectsServicer_to_server(servicer, s)]
    )
    await grpc_service.set_serving(True)
    config = uvicorn.Config(
        HotPaths(app, deps), host=settings.host, port=settings.port, log_level="warning", access_log=False,
        loop="uvloop", http="httptools", lifespan="off", timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    await server.serve()
    baseline_task.cancel()
    await grpc_service.stop()
    if proxy is not None:
        await proxy.stop()
    await relay.stop()
    await producer.stop()
    await projects_producer.stop()
    await logs_channel.close()
    if datasets_channel is not None:
        await datasets_channel.close()
    if registry_channel is not None:
        await registry_channel.close()


def main() -> None:
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack to the log
    settings = GatewaySettings()
    logging_setup.configure("gateway", settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
