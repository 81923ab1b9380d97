"""Retention for the embedded broker: delete request-log batches every reader has stored.

Tansu's S3 engine keeps one object per producer batch and, on every fetch that finds new
records, lists the partition's objects from the first key. So the cost of each fetch, and of
every write competing with it on the same disk and cores, grows with every batch ever written:
after a day of low-rate reports a single fetch lists for seconds. Kafka bounds this with
retention; Tansu's S3 engine implements none (DeleteRecords drops the connection), but it
serves reads correctly when the oldest objects are gone (a read from a deleted offset starts
at the first one left, as after Kafka retention).

This job deletes the objects below the offsets that *every* reader of the topic has
committed under its consumer group, and only objects older than `min_age_s`. Readers commit
after their own store is durable (log-ingest after the rows and offsets are in ClickHouse; the
dataset service's standing rules after their SQL commit), so nothing a reader still needs is
deleted; a reader that never committed, or is down, holds retention back rather than losing
records. Production runs Apache Kafka with its own retention and does not run this.

Run by the embedded stack as `python -m refinery.bus.retention` (settings from the environment).
With `REFINERY_RETENTION_PORT` set it serves `GET /health` and `GET /progress` (what each pass
found and did, per partition; behind the deployment's service token), which the gateway's
`GET /admin/v1/pipeline` shows beside the readers' lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from minio import Minio
from minio.deleteobjects import DeleteObject
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from refinery import internal_auth, logging_setup

log = logging.getLogger("refinery.bus.retention")

# Who reads refinery.request-logs and commits the offsets it has durably stored.
LOG_INGEST_GROUP = "refinery-log-ingest"
DATASET_RULES_GROUP = "refinery-dataset-rules"
REQUEST_LOG_READERS = (LOG_INGEST_GROUP, DATASET_RULES_GROUP)


class RetentionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REFINERY_RETENTION_", extra="ignore", populate_by_name=True)

    bootstrap: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_region: str = "us-east-1"
    bucket: str = "tansu"
    cluster_id: str = "tansu_cluster"
    topic: str = "refinery.request-logs"
    groups: list[str] = Field(default_factory=lambda: list(REQUEST_LOG_READERS))
    min_age_s: float = Field(default=10.0, ge=0)
    interval_s: float = Field(default=5.0, gt=0)
    host: str = Field(default="127.0.0.1", description="Interface the progress server binds")
    port: int | None = Field(default=None, description="Port of GET /health and GET /progress; none: not served")
    internal_token: str | None = Field(
        default=None, alias="REFINERY_INTERNAL_TOKEN",
        description="The deployment's service token, asked of every caller of /progress")


@dataclass
class PassResult:
    deleted: int = 0
    kept: int = 0
    partitions_held_back: int = 0


@dataclass
class PartitionRetention:
    """One partition as the last pass found it, and what retention deleted there since it started."""

    partition: int
    committed: dict[str, int | None]  # per reader group; None: that reader never committed here
    retained_from: int | None = None  # the first batch offset still stored (None: not listed yet)
    batches: int = 0  # batch objects still stored
    deleted: int = 0  # batch objects deleted since the job started

    @property
    def safe_offset(self) -> int | None:
        """Below this offset every reader has stored every record; None while one has not committed."""
        known = list(self.committed.values())
        return None if any(o is None for o in known) else min(o for o in known if o is not None)

    def as_json(self) -> dict[str, Any]:
        return {"partition": self.partition, "committed": self.committed, "safeOffset": self.safe_offset,
                "retainedFrom": self.retained_from, "batches": self.batches, "deleted": self.deleted,
                "heldBackBy": sorted(g for g, o in self.committed.items() if o is None)}


def _base_offset(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    if not name.endswith(".batch"):
        return None
    try:
        return int(name[: -len(".batch")])
    except ValueError:
        return None


class Retention:
    def __init__(self, settings: RetentionSettings) -> None:
        self.settings = settings
        self._s3 = Minio(settings.s3_endpoint, access_key=settings.s3_access_key,
                         secret_key=settings.s3_secret_key, secure=False, region=settings.s3_region)
        self._readers: dict[str, AIOKafkaConsumer] = {}
        self.partitions: dict[int, PartitionRetention] = {}
        self.passes = 0
        self.last_pass_at: float | None = None
        self.last_error: str | None = None

    def progress(self) -> dict[str, Any]:
        """What `GET /progress` answers: the last pass, and each partition as it left it."""
        return {"topic": self.settings.topic, "passes": self.passes,
                "lastPassAt": None if self.last_pass_at is None else int(self.last_pass_at * 1000),
                "lastError": self.last_error, "minAgeS": self.settings.min_age_s,
                "deleted": sum(p.deleted for p in self.partitions.values()),
                "partitions": [self.partitions[p].as_json() for p in sorted(self.partitions)]}

    def _prefix(self, partition: int) -> str:
        s = self.settings
        return f"clusters/{s.cluster_id}/topics/{s.topic}/partitions/{partition:010d}/records/"

    async def start(self) -> None:
        try:
            for group in self.settings.groups:
                consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap, group_id=group,
                                            enable_auto_commit=False)
                self._readers[group] = consumer
                await consumer.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        readers, self._readers = self._readers, {}
        for consumer in readers.values():
            with contextlib.suppress(KafkaError, OSError):
                await consumer.stop()

    def _partitions(self) -> list[int]:
        """The topic's partitions as Tansu stores them (the Kafka metadata of a consumer that is
        subscribed to nothing is not refreshed, and this process may start before the topic)."""
        s = self.settings
        prefix = f"clusters/{s.cluster_id}/topics/{s.topic}/partitions/"
        found = []
        for o in self._s3.list_objects(s.bucket, prefix=prefix):
            name = o.object_name[len(prefix):].strip("/")
            if name.isdigit():
                found.append(int(name))
        return sorted(found)

    async def _committed(self, partition: int) -> dict[str, int | None]:
        """Each reader's committed offset on `partition` (None where it never committed)."""
        tp = TopicPartition(self.settings.topic, partition)
        return {group: await c.committed(tp) for group, c in self._readers.items()}

    def _delete_below(self, partition: int, safe: int | None, now: float) -> tuple[int, int, int | None]:
        """Delete the partition's batch objects that end at or below `safe` and are old enough.

        An object holds the batch starting at its name's offset and ending where the next
        object starts, so an object is deletable only when the next one starts at or below
        `safe`; the newest object is never deleted (Tansu's listing needs the tail). With `safe`
        None (a reader has not committed) nothing is deleted. Returns the objects deleted and
        kept, and the first offset still stored."""
        objs = []
        for o in self._s3.list_objects(self.settings.bucket, prefix=self._prefix(partition), recursive=True):
            base = _base_offset(o.object_name)
            if base is not None:
                objs.append((base, o.object_name, o.last_modified.timestamp() if o.last_modified else now))
        objs.sort()
        doomed = [] if safe is None else [
            name for (_, name, modified), (next_base, _, _) in itertools.pairwise(objs)
            if next_base <= safe and now - modified >= self.settings.min_age_s
        ]
        for i in range(0, len(doomed), 1000):
            errors = list(self._s3.remove_objects(self.settings.bucket,
                                                  [DeleteObject(n) for n in doomed[i:i + 1000]]))
            if errors:
                raise RuntimeError(f"deleting {len(errors)} objects failed: {errors[0]}")
        gone = set(doomed)
        left = [base for base, name, _ in objs if name not in gone]
        return len(doomed), len(left), left[0] if left else None

    async def run_once(self) -> PassResult:
        result = PassResult()
        partitions = await asyncio.to_thread(self._partitions)
        now = time.time()
        for partition in partitions:
            seen = PartitionRetention(partition, await self._committed(partition))
            before = self.partitions.get(partition)
            seen.deleted = before.deleted if before is not None else 0
            if seen.safe_offset is None:
                result.partitions_held_back += 1
            deleted, kept, seen.retained_from = await asyncio.to_thread(
                self._delete_below, partition, seen.safe_offset, now)
            seen.deleted += deleted
            seen.batches = kept
            self.partitions[partition] = seen
            result.deleted += deleted
            result.kept += kept
        self.passes += 1
        self.last_pass_at = time.time()
        return result

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                r = await self.run_once()
                self.last_error = None
                if r.deleted:
                    log.info("retention deleted %d batch objects (%d kept, %d partitions held back)",
                             r.deleted, r.kept, r.partitions_held_back)
            except (KafkaError, OSError, RuntimeError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("retention pass failed, will retry: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.settings.interval_s)
            except TimeoutError:
                pass


class PositionCommitter:
    """Commits a reader's durably stored offsets under its group, at most once per interval
    (the last offsets of a burst are committed when the interval has passed), so retention
    knows what it may delete. Commits only ever lag the reader's own store, which keeps
    retention conservative; a failed commit is logged and retried with the next one."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str, interval_s: float = 1.0) -> None:
        self._consumer = consumer
        self._topic = topic
        self._interval_s = interval_s
        self._last = float("-inf")
        self._pending: dict[int, int] | None = None
        self._later: asyncio.Task[None] | None = None
        self._failing = False

    async def stored(self, offsets: dict[int, int]) -> None:
        if not offsets:
            return
        self._pending = dict(offsets)
        wait = self._last + self._interval_s - time.monotonic()
        if wait <= 0:
            await self._commit()
        elif self._later is None:
            self._later = asyncio.create_task(self._commit_after(wait))

    async def _commit_after(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._later = None
        await self._commit()

    async def _commit(self) -> None:
        offsets, self._pending = self._pending, None
        if not offsets:
            return
        self._last = time.monotonic()
        try:
            await self._consumer.commit({TopicPartition(self._topic, p): o for p, o in offsets.items()})
        except (KafkaError, OSError, AssertionError) as exc:
            if not self._failing:
                log.warning("committing reader positions for retention failed (retention waits): %s", exc)
            self._failing = True
            return
        self._failing = False

    async def close(self) -> None:
        if self._later is not None:
            self._later.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._later
            self._later = None


def progress_app(retention: Retention, token: str | None) -> web.Application:
    """`GET /health` (always open) and `GET /progress` (behind the service token, when there is one)."""

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def progress(_: web.Request) -> web.Response:
        return web.json_response(retention.progress())

    guards: list[Any] = [internal_auth.http_guard(token)] if token else []  # typed as the kernel's http() has it
    app = web.Application(middlewares=guards)
    app.router.add_get("/health", health)
    app.router.add_get("/progress", progress)
    return app


async def _serve(retention: Retention, settings: RetentionSettings) -> web.AppRunner | None:
    if settings.port is None:
        return None
    runner = web.AppRunner(progress_app(retention, settings.internal_token), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    return runner


async def _main() -> None:
    logging_setup.configure("retention")
    settings = RetentionSettings()  # type: ignore[call-arg]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    retention = Retention(settings)
    runner = await _serve(retention, settings)
    try:
        while not stop.is_set():
            try:
                await retention.start()
                break
            except (KafkaError, OSError) as exc:
                retention.last_error = f"broker not reachable yet: {exc}"
                log.warning("broker not reachable yet: %s", exc)
                await asyncio.sleep(1)
        await retention.run(stop)
    finally:
        await retention.stop()
        if runner is not None:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(_main())
