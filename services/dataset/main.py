"""Entry point: `python -m dataset.main`."""

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
from refinery.events.models import MODEL_CREATED, MODEL_DELETED
from refinery.grpc_server import client_channel, start_grpc
from refinery.rpc import datasets_pb2_grpc, logs_pb2_grpc
from refinery.stores.eventstore import OutboxRelay
from refinery.stores.objectstore import ObjectStore

from dataset.log_import import RuleConsumer
from dataset.relabel import RelabelRunner
from dataset.servicer import DatasetsServicer
from dataset.settings import DatasetSettings
from dataset.store import DatasetStore
from dataset.uploads import UploadProcessor

log = logging.getLogger("refinery.dataset")


async def serve(settings: DatasetSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    store = await asyncio.to_thread(DatasetStore, settings.db_url())
    objects = ObjectStore(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, settings.s3_bucket,
                          secure=settings.s3_secure)
    await asyncio.to_thread(objects.ensure_bucket)
    await ensure_topics(settings.bus_bootstrap, {
        settings.request_logs_topic: settings.topic_partitions,
        settings.datasets_topic: settings.topic_partitions,
        settings.models_topic: settings.topic_partitions,
    })
    producer = DurableProducer(settings.bus_bootstrap, settings.datasets_topic,
                               settings.service_dir("dataset") / "spool")
    await producer.start()
    relay = OutboxRelay(store.engine, producer)
    store.on_change = relay.notify
    relay.start()

    # fine_tune_count follows model-registry's events: a model names the dataset it trains on.
    async def on_model_events(events: list[dict]) -> None:
        for env in events:
            delta = {MODEL_CREATED: 1, MODEL_DELETED: -1}.get(env.get("type", ""))
            dataset_id = (env.get("data") or {}).get("dataset_id")
            if delta and dataset_id:
                await asyncio.to_thread(store.count_fine_tune, env["event_id"], dataset_id, delta)

    models_follower = Follower(settings.bus_bootstrap, settings.models_topic,
                               lambda: store.load_offsets(settings.models_topic),
                               lambda offsets: store.save_offsets_now(settings.models_topic, offsets),
                               on_model_events)
    await models_follower.start()
    rules = RuleConsumer(store, settings.bus_bootstrap, settings.request_logs_topic,
                         fetch_wait_ms=settings.rules_fetch_wait_ms)
    await rules.start()
    uploads = UploadProcessor(store, objects, settings.upload_batch_lines)
    await uploads.start()
    relabel = RelabelRunner(store, settings.proxy_router_url, settings.relabel_timeout_s)
    await relabel.start()
    logs_channel = client_channel(settings.log_ingest_grpc)
    servicer = DatasetsServicer(store, objects, uploads, rules, logs_pb2_grpc.LogStoreStub(logs_channel), relabel)
    grpc_service = await start_grpc(
        settings.grpc_host, settings.grpc_port,
        [lambda s: datasets_pb2_grpc.add_DatasetsServicer_to_server(servicer, s)],
    )
    await grpc_service.set_serving(True)
    log.warning("dataset service serving gRPC on %s:%s", settings.grpc_host, grpc_service.port)
    await stop.wait()
    await grpc_service.set_serving(False)
    await grpc_service.stop()
    await relabel.stop()
    await uploads.stop()
    await rules.stop()
    await models_follower.stop()
    await relay.stop()
    await producer.stop()
    await logs_channel.close()


def main() -> None:
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack to the log
    settings = DatasetSettings()
    logging_setup.configure("dataset", settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
