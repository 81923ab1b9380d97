"""Entry point: `python -m inference.main`."""

from __future__ import annotations

from aiohttp import web
from refinery.ml.base_models import resolve_base_model
from refinery.rpc import inference_pb2_grpc
from refinery.runtime.kernel import Kernel, service_main

from inference.backends import build_engine
from inference.restore import RegistryLookup, restore_deployments
from inference.rewards import RewardModels
from inference.serving import InferenceControl, InferenceServer
from inference.settings import InferenceSettings


async def _health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def build(k: Kernel[InferenceSettings]) -> None:
    s = k.settings
    objects = await k.objects(s.s3_bucket)
    base_dir = await k.thread(resolve_base_model, s.base_model, s.models_dir())
    engine = await k.store(build_engine, s, base_dir)
    # Reward models share the CPU engine's base weights; beside vLLM they load their own copy on the CPU.
    rewards = await k.store(RewardModels, base_dir, s.base_model, s.max_adapters, getattr(engine, "base_weights", None))
    registry = k.channel(s.registry_grpc) if s.registry_grpc else None
    server = InferenceServer(engine, objects, s.service_dir("inference") / "adapters", s.base_model, rewards,
                             RegistryLookup(registry) if registry is not None else None)
    control = InferenceControl()
    control.server = server
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", server.chat)
    app.router.add_get("/v1/models", server.models)
    app.router.add_get("/health", _health)
    await k.http(app, s.host, s.port)
    if registry is not None:
        k.task("restore deployments", restore_deployments(server, registry))
    await k.grpc(s.grpc_host, s.grpc_port, (control, inference_pb2_grpc.add_InferenceServicer_to_server))


main = service_main("inference", InferenceSettings, build)


if __name__ == "__main__":
    main()
