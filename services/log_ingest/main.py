"""Entry point: `python -m log_ingest.main`."""

from __future__ import annotations

from refinery.rpc import logs_pb2_grpc
from refinery.runtime.kernel import Kernel, service_main
from refinery.stores.logstore import LogStore

from log_ingest.ingest import Ingestor
from log_ingest.servicer import Limits, LogStoreServicer
from log_ingest.settings import LogIngestSettings


async def build(k: Kernel[LogIngestSettings]) -> None:
    s = k.settings
    store = await k.store(LogStore, s.dsn(), "refinery", s.read_connections)
    await k.topics(s.request_logs_topic)
    producer = await k.producer(s.request_logs_topic)  # metadata updates
    ingestor = await k.part("ingestor", Ingestor(store, s.bus_bootstrap, s.request_logs_topic, max_batch=s.max_batch,
                                                 fetch_wait_ms=s.fetch_wait_ms,
                                                 flush_interval_ms=s.flush_interval_ms,
                                                 dead_letters=await k.dead_letters()))
    k.ready_when(ingestor.wait_ready)
    servicer = LogStoreServicer(store, ingestor, producer, s.read_wait_s, Limits(
        s.read_connections, s.heavy_queries_per_project, s.export_streams))
    await k.grpc(s.grpc_host, s.grpc_port, (servicer, logs_pb2_grpc.add_LogStoreServicer_to_server))


main = service_main("log-ingest", LogIngestSettings, build)


if __name__ == "__main__":
    main()
