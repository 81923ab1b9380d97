"""A follower on a real broker never stops behind one record: a broken record, or one whose handler
keeps failing while the service's store answers, goes to `refinery.dead-letters` with its reason and
the events after it are handled; a handler failing while the store is down is retried, not skipped."""

from __future__ import annotations

import asyncio
import uuid

from refinery.bus.dead_letters import DeadLetterSink
from refinery.bus.follower import Follower
from refinery.bus.producer import DurableProducer
from refinery.bus.topics import ensure_topics
from refinery.events.dead_letters import DEAD_LETTER_RECORDED, DeadLetterRecorded
from refinery.events.envelope import Envelope
from refinery.events.models import MODEL_DELETED, ModelDeleted, model_event
from refinery.runtime.subscriptions import Event, Subscriptions


class Offsets:
    def __init__(self) -> None:
        self.saved: dict[int, int] = {}
        self.down = False

    def load_offsets(self, topic: str) -> dict[int, int]:
        if self.down:
            raise ConnectionError("database unreachable")
        return dict(self.saved)

    def save_offsets(self, topic: str, offsets: dict[int, int]) -> None:
        self.saved.update(offsets)


def _deleted(slug: str) -> bytes:
    return model_event("p1", slug, 2, MODEL_DELETED, ModelDeleted(slug=slug)).to_bytes()


async def test_a_failing_handler_and_a_broken_record_are_set_aside_and_the_stream_goes_on(tansu, tmp_path):
    topic, letters_topic = f"follow-{uuid.uuid4().hex[:6]}", f"letters-{uuid.uuid4().hex[:6]}"
    await ensure_topics(tansu.bootstrap, {topic: 1, letters_topic: 1})
    handled: list[str] = []
    offsets = Offsets()
    subs = Subscriptions("test")

    @subs.on(MODEL_DELETED)
    async def on_deleted(event: Event[ModelDeleted]) -> None:
        if event.data.slug == "poison":
            raise ValueError("cannot handle poison")
        if event.data.slug == "flaky" and offsets.down:
            offsets.down = False  # the store comes back while the record is retried
            raise ConnectionError("database unreachable")
        handled.append(event.data.slug)

    letters = DurableProducer(tansu.bootstrap, letters_topic, tmp_path / "letters")
    source = DurableProducer(tansu.bootstrap, topic, tmp_path / "source")
    await letters.start()
    await source.start()
    follower = Follower(tansu.bootstrap, topic, subs, offsets, dead_letters=DeadLetterSink(letters, "test"),
                        attempts=3, retry_pause_s=0.01)
    await follower.start()
    try:
        offsets.down = True  # "flaky" fails while the store is down: retried, never set aside
        for value in (_deleted("flaky"), _deleted("poison"), b"{broken", _deleted("after")):
            await source.publish(b"m", value)
        await _until(lambda: "after" in handled, 30)
        assert handled == ["flaky", "after"]  # "flaky" retried until its store was back, never set aside
        values = []
        async with asyncio.timeout(20):
            while len(values) < 2:
                values = await _letters(tansu.bootstrap, letters_topic)
        poison, broken = values
        assert poison.offset == 1 and "failed 3 times" in poison.reason and "cannot handle poison" in poison.reason
        assert broken.offset == 2 and broken.reason.startswith("undecodable record") and broken.value() == b"{broken"
        await _until(lambda: offsets.saved.get(0) == 4, 10)
    finally:
        await follower.stop()
        await source.stop()
        await letters.stop()


async def _until(check, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - the follower changes plain state, there is no event to await
            await asyncio.sleep(0.05)


async def _letters(bootstrap: str, topic: str) -> list[DeadLetterRecorded]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        out = []
        for msgs in (await consumer.getmany(timeout_ms=1000)).values():
            for msg in msgs:
                envelope = Envelope.from_bytes(msg.value)
                if envelope.type == DEAD_LETTER_RECORDED:
                    out.append(DeadLetterRecorded(**envelope.data))
        return out
    finally:
        await consumer.stop()
