"""Retention on the embedded broker: only batches every reader has committed are deleted, and
reads keep working after the deletion (Tansu on SeaweedFS, real objects)."""

from __future__ import annotations

import uuid

from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from minio import Minio
from refinery.bus.retention import PositionCommitter, Retention, RetentionSettings, progress_app

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
        # One reader committed, the other not: still nothing, and the progress says who holds it back.
        result = await retention.run_once()
        assert result.deleted == 0 and result.partitions_held_back == 1
        [held] = retention.progress()["partitions"]
        assert held == {"partition": 0, "committed": {groups[0]: 50, groups[1]: None}, "safeOffset": None,
                        "retainedFrom": 0, "batches": BATCHES, "deleted": 0, "heldBackBy": [groups[1]]}
        await _commit(tansu, groups[1], topic, 20)
        result = await retention.run_once()
        # The slower reader (20) bounds it: batches 0..19 go, 20 onward stay.
        assert result.deleted == 20
        assert _batch_offsets(seaweed, topic)[0] == 20
        assert len(_batch_offsets(seaweed, topic)) == BATCHES - 20
        progress = retention.progress()
        assert (progress["passes"], progress["deleted"], progress["lastError"]) == (3, 20, None)
        assert progress["partitions"] == [{
            "partition": 0, "committed": {groups[0]: 50, groups[1]: 20}, "safeOffset": 20, "retainedFrom": 20,
            "batches": BATCHES - 20, "deleted": 20, "heldBackBy": []}]
        await _commit(tansu, groups[1], topic, 30)
        await retention.run_once()
        assert retention.progress()["partitions"][0]["deleted"] == 30  # counted since the job started
    finally:
        await retention.stop()
    # The slower reader resumes exactly where it last committed; nothing it needs is gone.
    assert await _read_from(tansu, topic, 30, BATCHES - 30) == [b"r%d" % i for i in range(30, BATCHES)]


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


async def test_progress_is_served_behind_the_service_token_and_health_is_open(tansu, seaweed):
    retention = Retention(_settings(tansu, seaweed, f"unseen-{uuid.uuid4().hex[:8]}", ["g"]))
    async with TestClient(TestServer(progress_app(retention, "s3cret"))) as client:
        assert (await client.get("/health")).status == 200
        refused = await client.get("/progress")
        assert refused.status == 401 and "REFINERY_INTERNAL_TOKEN" in (await refused.json())["message"]
        served = await client.get("/progress", headers={"x-refinery-internal-token": "s3cret"})
        assert served.status == 200
        assert await served.json() == {"topic": retention.settings.topic, "passes": 0, "lastPassAt": None,
                                       "lastError": None, "minAgeS": 0.0, "deleted": 0, "partitions": []}
