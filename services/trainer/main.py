"""Entry point: `python -m trainer.main`."""

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
from refinery.events import models as ev
from refinery.grpc_server import start_grpc
from refinery.stores.eventstore import OutboxRelay
from refinery.stores.objectstore import ObjectStore

from trainer.jobs import JobStore
from trainer.settings import TrainerSettings
from trainer.worker import Worker

log = logging.getLogger("refinery.trainer")


async def serve(settings: TrainerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    jobs = await asyncio.to_thread(JobStore, settings.db_url())
    models = ObjectStore(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, settings.s3_bucket,
                         secure=settings.s3_secure)
    datasets = ObjectStore(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key,
                           settings.datasets_bucket, secure=settings.s3_secure)
    await asyncio.to_thread(models.ensure_bucket)
    await ensure_topics(settings.bus_bootstrap, {settings.models_topic: settings.topic_partitions})
    producer = DurableProducer(settings.bus_bootstrap, settings.models_topic, settings.service_dir("trainer") / "spool")
    await producer.start()
    relay = OutboxRelay(jobs.engine, producer)
    jobs.on_change = lambda: loop.call_soon_threadsafe(relay.notify)
    relay.start()

    async def handle(events: list[dict]) -> None:
        for env in events:
            kind = env.get("type")
            if kind == ev.TRAINING_REQUESTED:
                await asyncio.to_thread(jobs.enqueue, env["aggregate_id"], env["project_id"], env["data"])
            elif kind in (ev.TRAINING_CANCEL_REQUESTED, ev.MODEL_DELETED):
                await asyncio.to_thread(jobs.request_cancel, env["aggregate_id"])

    follower = Follower(settings.bus_bootstrap, settings.models_topic,
                        lambda: jobs.load_offsets(settings.models_topic),
                        lambda offsets: jobs.save_offsets(settings.models_topic, offsets), handle)
    await follower.start()
    worker = Worker(jobs, models, datasets, settings.service_dir("trainer"), settings.max_attempts,
                    settings.models_dir())
    await worker.start()
    grpc_service = await start_grpc(settings.grpc_host, settings.health_port, [])
    await grpc_service.set_serving(True)
    log.warning("trainer ready (health on gRPC port %s)", grpc_service.port)
    await stop.wait()
    await grpc_service.stop()
    await follower.stop()
    await worker.stop()
    await relay.stop()
    await producer.stop()


def main() -> None:
    faulthandler.register(signal.SIGUSR1)
    settings = TrainerSettings()
    logging_setup.configure("trainer", settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
