"""Retention on the embedded broker: only batches every reader has committed are deleted, and
reads keep working after the deletion (Tansu on SeaweedFS, real objects)."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from minio import Minio
from refinery.bus.retention import PositionCommitter, Retention, RetentionSettings

BATCHES = 60


def _settings(tansu, seaweed, topic: str, groups: list[str], min_age_s: float = 0.0) -> RetentionSettings:
    c = seaweed.credentials
    return RetentionSettings(bootstrap=tansu.bootstrap, s3_endpoint=c.endpoint, s3_access_key=c.access_key,
                             s3_secret_key=c.secret_key, s3_region=c.region, topic=topic, groups=groups,
                             min_age_s=min_age_s)


def _batch_offsets(seaweed, topic: str) -> list[int]:
    c = seaweed.credentials
    s3 = Minio(c.endpoint, access_key=c.access_key, secret_key=c.secret_key, secure=False, region=c.region)
    prefix = f"clusters/tansu_cluster/topics/{topic}/partitions/0000000000/records/"
    return sorted(int(o.object_name.rsplit("/", 1)[1].split(".")[0])
                  for o in s3.list_objects("tansu", prefix=prefix, recursive=True))


async def _commit(tansu, group: str, topic: str, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=tansu.bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        committer = PositionCommitter(consumer, topic, interval_s=0)
        await committer.stored({0: offset})
    finally:
        await consumer.stop()


async def _read_from(tansu, topic: str, offset: int, want: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=tansu.bootstrap, group_id=None, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        got: list[bytes] = []
        for _ in range(50):
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                got += [m.value for m in msgs]
            if len(got) >= want:
                break
        return got
    finally:
        await consumer.stop()


async def _topic_with_batches(tansu) -> str:
    topic = f"retention-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for i in range(BATCHES):  # one record per batch: one object each
            await producer.send_and_wait(topic, b"r%d" % i, key=b"k")
    finally:
        await producer.stop()
    return topic


async def test_deletes_only_what_every_reader_committed_and_reads_go_on(tansu, seaweed):
    topic = await _topic_with_batches(tansu)
    groups = [f"a-{topic}", f"b-{topic}"]
    retention = Retention(_settings(tansu, seaweed, topic, groups))
    await retention.start()
    try:
        # Nobody committed: nothing may go.
        assert (await retention.run_once()).deleted == 0
        await _commit(tansu, groups[0], topic, 50)
        # One reader committed, the other not: still nothing.
        result = await retention.run_once()
        assert result.deleted == 0 and result.partitions_held_back == 1
        await _commit(tansu, groups[1], topic, 20)
        result = await retention.run_once()
        # The slower reader (20) bounds it: batches 0..19 go, 20 onward stay.
        assert result.deleted == 20
        assert _batch_offsets(seaweed, topic)[0] == 20
        assert len(_batch_offsets(seaweed, topic)) == BATCHES - 20
    finally:
        await retention.stop()
    # The slower reader resumes exactly where it committed; nothing it needs is gone.
    assert await _read_from(tansu, topic, 20, BATCHES - 20) == [b"r%d" % i for i in range(20, BATCHES)]


async def test_recent_batches_are_kept_whatever_was_committed(tansu, seaweed):
    topic = await _topic_with_batches(tansu)
    group = f"a-{topic}"
    await _commit(tansu, group, topic, BATCHES)
    retention = Retention(_settings(tansu, seaweed, topic, [group], min_age_s=3600))
    await retention.start()
    try:
        assert (await retention.run_once()).deleted == 0
    finally:
        await retention.stop()
    # Without the age floor, everything below the commit goes but the newest object stays.
    retention = Retention(_settings(tansu, seaweed, topic, [group]))
    await retention.start()
    try:
        assert (await retention.run_once()).deleted == BATCHES - 1
    finally:
        await retention.stop()
    assert _batch_offsets(seaweed, topic) == [BATCHES - 1]
    assert await _read_from(tansu, topic, BATCHES - 1, 1) == [b"r%d" % (BATCHES - 1)]
