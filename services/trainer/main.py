"""Entry point: `python -m trainer.main`."""

from __future__ import annotations

from refinery.runtime.kernel import Kernel, service_main

from trainer.handlers import subscriptions
from trainer.jobs import JobStore
from trainer.settings import TrainerSettings
from trainer.worker import Worker


async def build(k: Kernel[TrainerSettings]) -> None:
    s = k.settings
    jobs = await k.store(JobStore, s.db_url())
    models = await k.objects(s.s3_bucket)
    datasets = await k.objects(s.datasets_bucket, create=False)
    await k.topics(s.models_topic)
    k.outbox(jobs, await k.producer(s.models_topic))
    await k.follow(s.models_topic, subscriptions(jobs), jobs)
    await k.part("worker", Worker(jobs, models, datasets, s.service_dir("trainer"), s.max_attempts, s.models_dir()))
    await k.grpc(s.grpc_host, s.health_port)  # health only


main = service_main("trainer", TrainerSettings, build)


if __name__ == "__main__":
    main()
