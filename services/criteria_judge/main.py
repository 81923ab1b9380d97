"""Entry point: `python -m criteria_judge.main`."""

from __future__ import annotations

from refinery.proxy_client import ProxyClient
from refinery.rpc import criteria_pb2_grpc, datasets_pb2_grpc, inference_pb2_grpc, models_pb2_grpc
from refinery.runtime.kernel import Kernel, service_main

from criteria_judge.alignment import AlignmentWorker
from criteria_judge.judging import Judges, LlmJudge, RewardJudge, RewardModels
from criteria_judge.resolution import Resolver
from criteria_judge.sampling import DatasetSampler
from criteria_judge.servicer import CriteriaServicer, Limits
from criteria_judge.settings import CriteriaSettings
from criteria_judge.store import CriteriaStore


async def build(k: Kernel[CriteriaSettings]) -> None:
    s = k.settings
    store = await k.store(CriteriaStore, s.db_url())
    await k.topics(s.criteria_topic)
    k.outbox(store, await k.producer(s.criteria_topic))
    proxy = await k.part("proxy-router client", ProxyClient(s.proxy_router_url))
    reward_models = RewardModels(models_pb2_grpc.ModelRegistryStub(k.channel(s.registry_grpc)))
    inference = inference_pb2_grpc.InferenceStub(k.channel(s.inference_grpc)) if s.inference_grpc else None
    judges = Judges(LlmJudge(proxy).judge, RewardJudge(reward_models, inference).judge, s.judge_timeout_s)
    worker = AlignmentWorker(store, judges, s.alignment_concurrency)
    k.task("alignment judging", worker.run())
    sampler = DatasetSampler(datasets_pb2_grpc.DatasetsStub(k.channel(s.dataset_grpc)), proxy,
                             s.alignment_concurrency, s.judge_timeout_s)
    limits = Limits(default_judge_model=s.default_judge_model, judge_concurrency=s.judge_concurrency,
                    max_event_bytes=s.bus_max_event_bytes // 2, max_line_bytes=s.alignment_max_line_bytes,
                    max_alignment_rows=s.alignment_max_rows)
    servicer = CriteriaServicer(store, judges, Resolver(store, reward_models), reward_models, sampler, worker, limits)
    await k.grpc(s.grpc_host, s.grpc_port, (servicer, criteria_pb2_grpc.add_CriteriaServicer_to_server))


main = service_main("criteria-judge", CriteriaSettings, build)


if __name__ == "__main__":
    main()
