"""Entry point: `python -m model_registry.main`."""

from __future__ import annotations

from refinery.rpc import datasets_pb2_grpc, inference_pb2_grpc, models_pb2_grpc
from refinery.runtime.kernel import Kernel, service_main

from model_registry.lifecycle import Lifecycle, subscriptions
from model_registry.servicer import RegistryServicer
from model_registry.settings import RegistrySettings
from model_registry.store import RegistryStore


async def build(k: Kernel[RegistrySettings]) -> None:
    s = k.settings
    store = await k.store(RegistryStore, s.db_url())
    await k.topics(s.models_topic)
    k.outbox(store, await k.producer(s.models_topic))
    inference = inference_pb2_grpc.InferenceStub(k.channel(s.inference_grpc)) if s.inference_grpc else None
    lifecycle = Lifecycle(store, inference, s.deploy_timeout_s, s.stall_timeout_s)
    await k.follow(s.models_topic, subscriptions(lifecycle), store)
    k.task("watchdog", lifecycle.watchdog())
    servicer = RegistryServicer(store, datasets_pb2_grpc.DatasetsStub(k.channel(s.dataset_grpc)),
                                s.allowed_base_model_roots())
    await k.grpc(s.grpc_host, s.grpc_port, (servicer, models_pb2_grpc.add_ModelRegistryServicer_to_server))


main = service_main("model-registry", RegistrySettings, build)


if __name__ == "__main__":
    main()
