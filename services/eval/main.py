"""Entry point: `python -m eval.main`."""

from __future__ import annotations

from refinery.proxy_client import ProxyClient
from refinery.rpc import criteria_pb2_grpc, datasets_pb2_grpc, evals_pb2_grpc, models_pb2_grpc
from refinery.runtime.kernel import Kernel, service_main

from eval.code_grading import CodeGrader
from eval.criterion_judging import CriterionJudge
from eval.dataset_rows import DatasetRows
from eval.deployments import DeployedModels, deployment_subscriptions
from eval.grading import GraderSandbox
from eval.head_to_head import HeadToHeadJudge
from eval.outputs import OutputGenerator
from eval.registry import Registry
from eval.runner import EvalRunner
from eval.servicer import EvalsServicer, Limits
from eval.settings import EvalSettings
from eval.store import EvalStore


async def build(k: Kernel[EvalSettings]) -> None:
    s = k.settings
    store = await k.store(EvalStore, s.db_url())
    await k.topics(s.evals_topic, s.models_topic)
    k.outbox(store, await k.producer(s.evals_topic))
    proxy = await k.part("proxy-router client", ProxyClient(s.proxy_router_url))
    registry = Registry(models_pb2_grpc.ModelRegistryStub(k.channel(s.registry_grpc)))
    criteria = criteria_pb2_grpc.CriteriaStub(k.channel(s.criteria_grpc))
    sandbox = GraderSandbox(work_dir=s.service_dir("eval") / "graders", timeout_s=s.grader_timeout_s,
                            memory_mb=s.grader_memory_mb, concurrency=s.grader_concurrency)
    grader = CodeGrader(sandbox)
    runner = EvalRunner(
        store, OutputGenerator(proxy, s.output_timeout_s), HeadToHeadJudge(proxy, s.judge_timeout_s),
        CriterionJudge(criteria, s.judge_timeout_s), grader,
        output_concurrency=s.output_concurrency, judge_concurrency=s.judge_concurrency)
    k.task("eval runner", runner.run())
    await k.follow(s.models_topic, deployment_subscriptions(DeployedModels(store, registry, runner)), store)
    datasets = DatasetRows(datasets_pb2_grpc.DatasetsStub(k.channel(s.dataset_grpc)))
    limits = Limits(default_judge_model=s.default_judge_model, max_rows=s.max_rows,
                    max_event_bytes=s.bus_max_event_bytes // 2)
    servicer = EvalsServicer(store, runner, datasets, registry, criteria, grader, limits)
    await k.grpc(s.grpc_host, s.grpc_port, (servicer, evals_pb2_grpc.add_EvalsServicer_to_server))


main = service_main("eval", EvalSettings, build)


if __name__ == "__main__":
    main()
