"""After a restart, inference answers again for every adapter the registry has deployed on its base
model: as many as fit are loaded now, the others on their first request. Reward models are
deployments like the others (their artifact says what they are when it is loaded)."""

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


class RegistryLookup:
    """`InferenceServer.lookup`: the registry's deployment of one model, or None when it has none.
    Asked only for a model this server does not know, so a listing per miss is cheap enough."""

    def __init__(self, registry: grpc.aio.Channel, timeout_s: float = 10.0) -> None:
        self._stub = models_pb2_grpc.ModelRegistryStub(registry)
        self._timeout_s = timeout_s

    async def __call__(self, model_id: str) -> models_pb2.Deployment | None:
        resp = await self._stub.Deployments(models_pb2.DeploymentsRequest(), timeout=self._timeout_s)
        return next((d for d in resp.deployments if d.model_id == model_id), None)
