"""After a restart, inference answers again for every adapter the registry has deployed on its base
model: as many as fit are loaded now, the others on their first request."""

from __future__ import annotations

import asyncio
import logging

import grpc
from refinery.rpc import models_pb2, models_pb2_grpc

from inference.serving import InferenceServer

log = logging.getLogger("refinery.inference")


async def restore_deployments(server: InferenceServer, registry: grpc.aio.Channel, attempts: int = 120) -> None:
    stub = models_pb2_grpc.ModelRegistryStub(registry)
    for _ in range(attempts):
        try:
            resp = await stub.Deployments(models_pb2.DeploymentsRequest(), timeout=10)
            break
        except grpc.aio.AioRpcError:
            await asyncio.sleep(1.0)  # the registry is not up yet
    else:
        log.error("could not list deployments from the registry; adapters load on their next deployment")
        return
    ours = [d for d in resp.deployments if d.base_model == server.base_id]
    room = int(getattr(server.engine, "max_adapters", len(ours)))
    for i, d in enumerate(ours):
        if d.model_id in server.engine.adapters():
            continue
        if i >= room:  # more than fit in memory: the rest load on their first request
            server.remember(d.model_id, d.adapter_key, list(d.pruning_rules))
            continue
        try:
            await asyncio.to_thread(server.load, d.model_id, d.adapter_key, list(d.pruning_rules))
        except Exception:
            log.exception("could not restore %s", d.slug)
            server.remember(d.model_id, d.adapter_key, list(d.pruning_rules))  # tried again on demand
