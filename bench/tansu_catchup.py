"""`python -m bench.tansu_catchup`: how fast the durable bus serves reads that are not at the tail.

log-ingest reads behind the tail whenever it lags or restarts. This starts SeaweedFS and
Tansu (as the stack does) in a temporary directory, writes N records one batch each (each
batch is one S3 object), then, with a fresh consumer per start offset, times how long it
takes to read 20 records from there. With more than about 2,000 objects in a partition,
reads past the first 1,000 objects take seconds per record batch, instead of milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from refinery.stack.infra import SeaweedFS, Tansu

TOPIC = "bench.catchup"
WANT = 20


async def _produce(bootstrap: str, n: int) -> float:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=0)
    await producer.start()
    t0 = time.perf_counter()
    try:
        for _ in range(n):  # one record per produce request: one batch, one object each
            await producer.send_and_wait(TOPIC, b"x" * 200, key=b"k")
    finally:
        await producer.stop()
    return time.perf_counter() - t0


async def _read_from(bootstrap: str, start: int, limit_s: float) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=20)
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        consumer.seek(tp, start)
        got = 0
        t0 = time.perf_counter()
        while got < WANT and time.perf_counter() - t0 < limit_s:
            got += len((await consumer.getmany(tp, timeout_ms=500)).get(tp, []))
        return got, time.perf_counter() - t0
    finally:
        await consumer.stop()


async def _run(bootstrap: str, n: int, starts: list[int], limit_s: float) -> None:
    print(f"writing {n} one-record batches ...", flush=True)
    print(f"  done in {await _produce(bootstrap, n):.1f} s")
    print(f"reading {WANT} records from each start offset (fresh consumer, at most {limit_s:g} s each):")
    for start in starts:
        if start >= n:
            continue
        got, secs = await _read_from(bootstrap, start, limit_s)
        print(f"  from offset {start:>6}: {got:>3} records in {secs:5.2f} s  ({got / secs:8.1f} records/s)",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.tansu_catchup", description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2300, help="records (= batches = S3 objects) to write")
    p.add_argument("--limit-s", type=float, default=6.0, help="longest to spend per start offset")
    args = p.parse_args()
    if not 0 < args.n <= 20_000:
        p.error("-n must be in (0, 20000]")
    starts = [0, 500, 990, 1500, 2200, args.n - WANT]
    tmp = Path(tempfile.mkdtemp(prefix="refinery-catchup-"))
    seaweed = SeaweedFS(tmp / "seaweedfs", tmp / "logs")
    tansu: Tansu | None = None
    try:
        seaweed.start()
        seaweed.ensure_bucket("tansu")
        tansu = Tansu(tmp / "logs", seaweed.credentials)
        tansu.start()
        asyncio.run(_run(tansu.bootstrap, args.n, sorted(set(starts)), args.limit_s))
    finally:
        if tansu is not None:
            tansu.stop()
        seaweed.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
