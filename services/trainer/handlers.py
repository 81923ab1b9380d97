"""What the trainer does with the registry's events: queue a job, or stop one."""

from __future__ import annotations

import asyncio

from refinery.events import models as ev
from refinery.runtime.subscriptions import Event, Subscriptions

from trainer.jobs import JobStore


def subscriptions(jobs: JobStore) -> Subscriptions:
    subs = Subscriptions("trainer")

    @subs.on(ev.TRAINING_REQUESTED)
    async def requested(event: Event[ev.TrainingRequested]) -> None:
        # The job keeps the request as the event carried it (a redelivery is ignored by model id).
        await asyncio.to_thread(jobs.enqueue, event.aggregate_id, event.project_id, event.data.model_dump())

    @subs.on(ev.TRAINING_CANCEL_REQUESTED, ev.MODEL_DELETED)
    async def cancelled(event: Event[ev.TrainingCancelRequested] | Event[ev.ModelDeleted]) -> None:
        await asyncio.to_thread(jobs.request_cancel, event.aggregate_id)

    return subs
