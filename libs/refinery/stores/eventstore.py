"""An append-only SQL event store with a transactional outbox (SQLAlchemy 2).

A service writes its events, its projection changes and the outbox rows in ONE transaction;
the relay then publishes the outbox to Kafka and deletes what the broker acknowledged. A
unique `(aggregate_id, version)` gives optimistic concurrency: two writers deciding on the
same aggregate version cannot both commit. SQLite embedded, PostgreSQL in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from sqlalchemy import (
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from refinery.bus.producer import DurableProducer
from refinery.events.envelope import Envelope

log = logging.getLogger("refinery.eventstore")

metadata = MetaData()

events_table = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("aggregate_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("type", String(128), nullable=False),
    Column("project_id", String(64), nullable=False),
    Column("occurred_at", Float, nullable=False),
    Column("body", LargeBinary, nullable=False),
    UniqueConstraint("aggregate_id", "version", name="uq_events_aggregate_version"),
)

outbox_table = Table(
    "outbox",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("key", String(128), nullable=False),
    Column("body", LargeBinary, nullable=False),
)


# Where a service's own consumers stopped on each topic: written in the same transaction as
# what the consumed events produced, so a restart neither loses nor repeats.
offsets_table = Table(
    "consumer_offsets",
    metadata,
    Column("topic", String(200), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", Integer, nullable=False),
)


def load_offsets(conn: Connection, topic: str) -> dict[int, int]:
    rows = conn.execute(select(offsets_table).where(offsets_table.c.topic == topic))
    return {r.partition: r.next_offset for r in rows}


def save_offsets(conn: Connection, topic: str, offsets: dict[int, int]) -> None:
    t = offsets_table
    for partition, offset in offsets.items():
        n = conn.execute(update(t).where(t.c.topic == topic, t.c.partition == partition).values(
            next_offset=offset)).rowcount
        if not n:
            conn.execute(insert(t).values(topic=topic, partition=partition, next_offset=offset))


class ConcurrencyError(Exception):
    """Another writer appended the same aggregate version first."""


def append(conn: Connection, events: list[Envelope], bus_key: str | None = None) -> None:
    """Append events and their outbox rows inside the caller's transaction.

    The bus key defaults to the aggregate id; `bus_key` puts a stream on another key's partition
    (the trainer's per-job stream rides with its model's events)."""
    from sqlalchemy.exc import IntegrityError

    for env in events:
        body = env.to_bytes()
        try:
            conn.execute(
                insert(events_table).values(
                    event_id=env.event_id, aggregate_id=env.aggregate_id, version=env.version,
                    type=env.type, project_id=env.project_id, occurred_at=env.occurred_at, body=body,
                )
            )
        except IntegrityError as exc:
            raise ConcurrencyError(f"{env.aggregate_id} v{env.version} exists") from exc
        conn.execute(insert(outbox_table).values(key=bus_key or env.aggregate_id, body=body))


def load(conn: Connection, aggregate_id: str) -> list[Envelope]:
    rows = conn.execute(
        select(events_table.c.body).where(events_table.c.aggregate_id == aggregate_id).order_by(events_table.c.version)
    )
    return [Envelope.model_validate(orjson.loads(r[0])) for r in rows]


def current_version(conn: Connection, aggregate_id: str) -> int:
    row = conn.execute(
        select(events_table.c.version)
        .where(events_table.c.aggregate_id == aggregate_id)
        .order_by(events_table.c.version.desc())
        .limit(1)
    ).first()
    return row[0] if row else 0


class OutboxRelay:
    """Publishes outbox rows in order; a row is deleted only after the producer made it durable."""

    def __init__(self, engine: Engine, producer: DurableProducer, poll_s: float = 0.2) -> None:
        self._engine = engine
        self._producer = producer
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("outbox relay failed")

    async def flush(self) -> int:
        def fetch() -> list:
            with self._engine.connect() as conn:
                return list(conn.execute(select(outbox_table).order_by(outbox_table.c.seq).limit(500)))

        rows = await asyncio.to_thread(fetch)
        for row in rows:
            await self._producer.publish(row.key.encode(), row.body)

            def remove(seq: int = row.seq) -> None:
                with self._engine.begin() as conn:
                    conn.execute(delete(outbox_table).where(outbox_table.c.seq == seq))

            await asyncio.to_thread(remove)
        return len(rows)
