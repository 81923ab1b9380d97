"""What the dataset service does with other services' events: count the fine-tunes of a dataset.

A model names the dataset it trains on; `model.created` adds one to that dataset's
`fineTuneCount` and `model.deleted` takes one off. `count_fine_tune` dedupes on the event id,
so a redelivered event counts once.
"""

from __future__ import annotations

import asyncio

from refinery.events import models as ev
from refinery.runtime.subscriptions import Event, Subscriptions

from dataset.store import DatasetStore


def model_subscriptions(store: DatasetStore) -> Subscriptions:
    subs = Subscriptions("dataset")

    @subs.on(ev.MODEL_CREATED)
    async def created(event: Event[ev.ModelCreated]) -> None:
        await asyncio.to_thread(store.datasets.count_fine_tune, event.event_id, event.data.dataset_id, 1)

    @subs.on(ev.MODEL_DELETED)
    async def deleted(event: Event[ev.ModelDeleted]) -> None:
        if event.data.dataset_id:  # absent in events written before the field existed
            await asyncio.to_thread(store.datasets.count_fine_tune, event.event_id, event.data.dataset_id, -1)

    return subs
