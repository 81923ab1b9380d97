"""Entry point: `python -m model_registry.main`."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import signal

from refinery import logging_setup
from refinery.bus.follower import Follower
from refinery.bus.producer import DurableProducer
from refinery.bus.topics import ensure_topics
from refinery.grpc_server import client_channel, start_grpc
from refinery.rpc import datasets_pb2_grpc, inference_pb2_grpc, models_pb2_grpc
from refinery.stores.eventstore import OutboxRelay

from model_registry.servicer import Lifecycle, RegistryServicer
from model_registry.settings import RegistrySettings
from model_registry.store import RegistryStore

log = logging.getLogger("refinery.model_registry")


async def serve(settings: RegistrySettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    store = await asyncio.to_thread(RegistryStore, settings.db_url())
    await ensure_topics(settings.bus_bootstrap, {settings.models_topic: settings.topic_partitions})
    producer = DurableProducer(settings.bus_bootstrap, settings.models_topic,
                               settings.service_dir("model-registry") / "spool")
    await producer.start()
    relay = OutboxRelay(store.engine, producer)
    store.on_change = relay.notify
    relay.start()
    datasets_channel = client_channel(settings.dataset_grpc)
    inference_channel = client_channel(settings.inference_grpc) if settings.inference_grpc else None
    lifecycle = Lifecycle(store, inference_pb2_grpc.InferenceStub(inference_channel) if inference_channel else None,
                          settings.deploy_timeout_s, settings.stall_timeout_s)
    follower = Follower(settings.bus_bootstrap, settings.models_topic,
                        lambda: store.load_offsets(settings.models_topic),
                        lambda offsets: store.save_offsets(settings.models_topic, offsets), lifecycle.handle)
    await follower.start()
    watchdog = asyncio.create_task(lifecycle.watchdog())
    servicer = RegistryServicer(store, datasets_pb2_grpc.DatasetsStub(datasets_channel))
    grpc_service = await start_grpc(settings.grpc_host, settings.grpc_port,
                                    [lambda s: models_pb2_grpc.add_ModelRegistryServicer_to_server(servicer, s)])
    await grpc_service.set_serving(True)
    log.warning("model-registry serving gRPC on %s:%s", settings.grpc_host, grpc_service.port)
    await stop.wait()
    watchdog.cancel()
    await grpc_service.stop()
    await follower.stop()
    await relay.stop()
    await producer.stop()
    await datasets_channel.close()
    if inference_channel is not None:
        await inference_channel.close()


def main() -> None:
    faulthandler.register(signal.SIGUSR1)
    settings = RegistrySettings()
    logging_setup.configure("model-registry", settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
