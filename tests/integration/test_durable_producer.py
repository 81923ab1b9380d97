"""The producer's no-loss contract against a real broker: spool while it is down, replay after."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from refinery.bus.follower import assign_all
from refinery.bus.producer import DurableProducer
from refinery.bus.topics import ensure_topics


async def _read_until(bootstrap: str, topic: str, last: bytes) -> list[bytes]:
    """Every value on `topic` from the start, up to and including `last`."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(20):
            while last not in values:
                for msgs in (await consumer.getmany(timeout_ms=500)).values():
                    values.extend(m.value for m in msgs)
    finally:
        await consumer.stop()
    return values


async def test_records_published_while_the_broker_is_down_are_replayed(tansu, tmp_path):
    topic = "producer-contract"
    await ensure_topics(tansu.bootstrap, {topic: 1})
    producer = DurableProducer(tansu.bootstrap, topic, tmp_path / "spool", ack_timeout_s=1.0)
    await producer.start()
    try:
        first = await producer.publish(b"k", b"before")
        assert first is not None and first.offset >= 1
        tansu.kill()
        assert await producer.publish(b"k", b"during-1") is None  # fsynced to the spool
        assert await producer.publish(b"k", b"during-2") is None
        tansu.start()
        assert await producer.wait_spool_drained(30)
        after = await producer.publish(b"k", b"after")
        assert after is not None
    finally:
        await producer.stop()
    values = await _read_until(tansu.bootstrap, topic, b"after")
    # At least once: a record may appear twice (late ack + spool); consumers dedupe by event id.
    order = [v for i, v in enumerate(values) if v not in values[:i]]
    assert order == [b"before", b"during-1", b"during-2", b"after"]


@pytest.fixture(params=["tansu", "kafka-container"])
def bootstrap(request: pytest.FixtureRequest) -> str:
    if request.param == "tansu":
        return request.getfixturevalue("tansu").bootstrap
    return request.getfixturevalue("kafka_container_bootstrap")


async def test_acknowledged_positions_bound_reads(bootstrap, tmp_path):
    """What position-bound reads build on, on each broker: the position a produce ack returns is
    just past the record, and a consumer that reached it has read every earlier record."""
    topic = f"positions-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, {topic: 2})
    producer = DurableProducer(bootstrap, topic, tmp_path / "spool", ack_timeout_s=5.0)
    await producer.start()
    try:
        positions = [await producer.publish(b"key-%d" % (i % 3), b"v%d" % i) for i in range(30)]
    finally:
        await producer.stop()
    assert all(p is not None for p in positions)
    last: dict[int, int] = {}
    for p in positions:
        assert p.offset > last.get(p.partition, 0)  # strictly increasing per partition
        last[p.partition] = p.offset
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await assign_all(consumer, topic, {})
        seen: list[bytes] = []

        async def behind() -> bool:
            return any([await consumer.position(TopicPartition(topic, p)) < off for p, off in last.items()])

        async with asyncio.timeout(20):
            while await behind():
                for msgs in (await consumer.getmany(timeout_ms=300)).values():
                    seen.extend(m.value for m in msgs)
    finally:
        await consumer.stop()
    assert sorted(seen) == sorted(b"v%d" % i for i in range(30))


async def test_an_event_the_bus_can_never_take_is_refused_and_never_blocks_the_spool(tansu, tmp_path):
    """Too large is permanent: publish refuses it before writing anything (the caller answers 413),
    and one already in a spool (written by an older version) is set aside as a dead letter while
    the records behind it are delivered."""
    from refinery.bus.producer import EventTooLarge
    from refinery.bus.spool import Spool

    topic = f"too-large-{uuid.uuid4().hex[:8]}"
    await ensure_topics(tansu.bootstrap, {topic: 1})
    spool_dir = tmp_path / "spool"
    old = Spool(spool_dir)  # what a crashed writer left: a poison record, then good ones
    old.append(b"k", b"x" * (2 * 1024 * 1024))
    old.append(b"k", b"behind-1")
    old.append(b"k", b"behind-2")
    old.close()
    producer = DurableProducer(tansu.bootstrap, topic, spool_dir, ack_timeout_s=2.0, max_event_bytes=1024 * 1024)
    await producer.start()
    try:
        with pytest.raises(EventTooLarge, match="at most 1048576"):
            await producer.publish(b"k", b"y" * (1024 * 1024 + 1))
        assert await producer.wait_spool_drained(30)
        assert await producer.publish(b"k", b"after") is not None
    finally:
        await producer.stop()
    [(key, reason, value)] = producer.dead_letters.read()
    assert key == b"k" and len(value) == 2 * 1024 * 1024 and "too large" in reason
    values = await _read_until(tansu.bootstrap, topic, b"after")
    assert [v for i, v in enumerate(values) if v not in values[:i]] == [b"behind-1", b"behind-2", b"after"]
