"""After a restart, inference loads again every adapter the registry has deployed on its base model."""

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
    for d in resp.deployments:
        if d.base_model == server.base_id and d.model_id not in server.engine.adapters():
            try:
                await asyncio.to_thread(server.load, d.model_id, d.adapter_key, list(d.pruning_rules))
            except Exception:
                log.exception("could not restore %s", d.slug)
