"""Entry point: `python -m log_ingest.main`."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import signal

from refinery import logging_setup
from refinery.bus.producer import DurableProducer
from refinery.bus.topics import ensure_topics
from refinery.grpc_server import start_grpc
from refinery.rpc import logs_pb2_grpc
from refinery.stores.logstore import LogStore

from log_ingest.ingest import Ingestor
from log_ingest.servicer import LogStoreServicer
from log_ingest.settings import LogIngestSettings

log = logging.getLogger("refinery.log_ingest")


async def serve(settings: LogIngestSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    store = await asyncio.to_thread(LogStore, settings.dsn())
    await ensure_topics(settings.bus_bootstrap, {settings.request_logs_topic: settings.topic_partitions})
    producer = DurableProducer(
        settings.bus_bootstrap, settings.request_logs_topic, settings.service_dir("log-ingest") / "spool"
    )
    await producer.start()
    ingestor = Ingestor(
        store,
        settings.bus_bootstrap,
        settings.request_logs_topic,
        max_batch=settings.max_batch,
        fetch_wait_ms=settings.fetch_wait_ms,
        flush_interval_ms=settings.flush_interval_ms,
    )
    await ingestor.start()
    servicer = LogStoreServicer(store, ingestor, producer, settings.read_wait_s)
    grpc_service = await start_grpc(
        settings.grpc_host,
        settings.grpc_port,
        [lambda s: logs_pb2_grpc.add_LogStoreServicer_to_server(servicer, s)],
    )
    ready_task = asyncio.create_task(_mark_ready(ingestor, grpc_service))
    log.warning("log-ingest serving gRPC on %s:%s", settings.grpc_host, grpc_service.port)
    await stop.wait()
    ready_task.cancel()
    await grpc_service.set_serving(False)
    await grpc_service.stop()
    await ingestor.stop()
    await producer.stop()
    await asyncio.to_thread(store.close)


async def _mark_ready(ingestor: Ingestor, grpc_service) -> None:
    await ingestor.wait_ready()
    await grpc_service.set_serving(True)


def main() -> None:
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack to the log
    settings = LogIngestSettings()
    logging_setup.configure("log-ingest", settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
