"""Entry point: `python -m dataset.main`."""

from __future__ import annotations

from refinery.rpc import datasets_pb2_grpc, logs_pb2_grpc
from refinery.runtime.kernel import Kernel, service_main

from dataset.handlers import model_subscriptions
from dataset.log_import import RuleConsumer
from dataset.relabel import RelabelRunner
from dataset.servicer import DatasetsServicer, Limits
from dataset.settings import DatasetSettings
from dataset.store import DatasetStore
from dataset.uploads import UploadProcessor


async def build(k: Kernel[DatasetSettings]) -> None:
    s = k.settings
    store = await k.store(DatasetStore, s.db_url())
    objects = await k.objects(s.s3_bucket)
    await k.topics(s.request_logs_topic, s.datasets_topic, s.models_topic)
    k.outbox(store, await k.producer(s.datasets_topic))
    await k.follow(s.models_topic, model_subscriptions(store), store)
    rules = await k.part("import rules", RuleConsumer(store, s.bus_bootstrap, s.request_logs_topic,
                                                      fetch_wait_ms=s.rules_fetch_wait_ms,
                                                      dead_letters=await k.dead_letters()))
    uploads = await k.part("uploads", UploadProcessor(store, objects, s.upload_batch_lines,
                                                        s.upload_max_line_bytes))
    relabel = await k.part("relabel", RelabelRunner(store, s.proxy_router_url, s.relabel_timeout_s))
    logs = logs_pb2_grpc.LogStoreStub(k.channel(s.log_ingest_grpc))
    servicer = DatasetsServicer(store, objects, uploads, rules, logs, relabel,
                                Limits(s.store_workers, s.snapshot_workers, s.stream_workers))
    await k.grpc(s.grpc_host, s.grpc_port, (servicer, datasets_pb2_grpc.add_DatasetsServicer_to_server))


main = service_main("dataset", DatasetSettings, build)


if __name__ == "__main__":
    main()
