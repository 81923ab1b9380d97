"""Entry point: `python -m gateway.main`: the REST API plus the internal gRPC API."""

from __future__ import annotations

import asyncio

from refinery.events.catalogue import TOPICS
from refinery.grpc_server import check_health
from refinery.rpc import (
    criteria_pb2_grpc,
    datasets_pb2_grpc,
    evals_pb2_grpc,
    logs_pb2_grpc,
    models_pb2_grpc,
    projects_pb2_grpc,
)
from refinery.runtime.kernel import Kernel, service_main

from gateway.app import Deps, build_app
from gateway.bootstrap import admin_token, bootstrap, mark_baseline, secret_box
from gateway.dead_letters import DeadLetterBook, NoOffsets, Replayer
from gateway.forwarding import ProxyForwarder
from gateway.hot_paths import HotPaths
from gateway.internal_api import ProjectsServicer
from gateway.projects import ProjectRegistry
from gateway.reads import ReadBinder
from gateway.settings import GatewaySettings


async def build(k: Kernel[GatewaySettings]) -> None:
    s = k.settings
    registry = await k.store(ProjectRegistry, s.db_url(), secret_box(s))
    await k.thread(bootstrap, s, registry)
    await k.topics(s.request_logs_topic, s.projects_topic)
    producer = await k.producer(s.request_logs_topic)
    projects_producer = await k.producer(s.projects_topic, "projects-spool")
    k.outbox(registry, projects_producer)
    await k.topics(s.dead_letters_topic)
    letters = DeadLetterBook()
    await k.follow(s.dead_letters_topic, letters.subscriptions, NoOffsets(), dead_letters=None)
    replayer = await k.part("dead-letter replays", Replayer(
        await k.dead_letters(), {s.request_logs_topic: producer, s.projects_topic: projects_producer},
        s.bus_bootstrap, s.service_dir("gateway"), {spec.name for spec in TOPICS}, s.bus_max_event_bytes))
    proxy = await k.part("chat forwarder", ProxyForwarder(s.proxy_router_url)) if s.proxy_router_url else None
    reads = ReadBinder(s.proxy_router_grpc)
    k.task("read baseline", mark_baseline(producer, reads))
    peers = {name: target for name, target in (
        ("log-ingest", s.log_ingest_grpc), ("proxy-router", s.proxy_router_grpc), ("dataset", s.dataset_grpc),
        ("model-registry", s.registry_grpc), ("trainer", s.trainer_grpc), ("inference", s.inference_grpc),
        ("criteria-judge", s.criteria_grpc), ("eval", s.eval_grpc),
    ) if target}

    async def health() -> dict[str, bool]:
        results = await asyncio.gather(*(check_health(target) for target in peers.values()))
        # The gateway is ready once its reads can be bound (see ReadBinder.baseline).
        return {"gateway": reads.baseline is not None, **dict(zip(peers, results, strict=True))}

    deps = Deps(
        settings=s, projects=registry, producer=producer, reads=reads,
        logs=logs_pb2_grpc.LogStoreStub(k.channel(s.log_ingest_grpc)), admin_token=admin_token(s), health=health,
        proxy=proxy,
        datasets=datasets_pb2_grpc.DatasetsStub(k.channel(s.dataset_grpc)) if s.dataset_grpc else None,
        models=models_pb2_grpc.ModelRegistryStub(k.channel(s.registry_grpc)) if s.registry_grpc else None,
        criteria=criteria_pb2_grpc.CriteriaStub(k.channel(s.criteria_grpc)) if s.criteria_grpc else None,
        evals=evals_pb2_grpc.EvalsStub(k.channel(s.eval_grpc)) if s.eval_grpc else None,
        dead_letters=letters, replayer=replayer,
    )
    servicer = ProjectsServicer(registry)
    await k.grpc(s.host, s.grpc_port, (servicer, projects_pb2_grpc.add_ProjectsServicer_to_server))
    await k.asgi(HotPaths(build_app(deps), deps), s.host, s.port, http="httptools")


main = service_main("gateway", GatewaySettings, build, use_uvloop=True)


if __name__ == "__main__":
    main()
