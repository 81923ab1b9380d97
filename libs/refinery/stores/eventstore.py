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
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from sqlalchemy import (
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from refinery.bus.producer import DurableProducer, EventTooLarge
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def notify(self) -> None:
        """Wake the relay: safe from any thread (stores commit in worker threads)."""
        loop = self._loop
        if loop is None:
            return  # not started: the first poll finds the rows
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._wake.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: the next start polls anyway
            loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="outbox relay")

    async def stop(self, drain_s: float = 5.0) -> None:
        """Publish what is committed, then stop (bounded: what is left goes at the next start).

        The running flush is never cancelled half-way while there is time: a row published but
        not yet deleted would be published again by the next start (harmless, consumers dedupe,
        but avoidable)."""
        self._stopping = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), drain_s)
        except TimeoutError:
            log.warning("outbox not drained within %.0f s at stop; the rest goes at the next start", drain_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            if not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_s)
            self._wake.clear()
            try:
                published = await self.flush()
            except Exception:
                log.exception("outbox relay failed")
                published = 0
                if not self._stopping:
                    await asyncio.sleep(self._poll_s)
            if self._stopping and not published:
                return

    async def flush(self) -> int:
        def fetch() -> list:
            with self._engine.connect() as conn:
                return list(conn.execute(select(outbox_table).order_by(outbox_table.c.seq).limit(500)))

        rows = await asyncio.to_thread(fetch)
        for row in rows:
            try:
                await self._producer.publish(row.key.encode(), row.body)
            except EventTooLarge as exc:  # permanent: set it aside with why, or it would block the outbox forever
                await asyncio.to_thread(self._producer.set_aside, row.key.encode(), row.body, str(exc))

            def remove(seq: int = row.seq) -> None:
                with self._engine.begin() as conn:
                    conn.execute(delete(outbox_table).where(outbox_table.c.seq == seq))

            await asyncio.to_thread(remove)
        return len(rows)


T = TypeVar("T")


def new_event(project_id: str, aggregate_id: str, version: int, event_type: str, data: BaseModel) -> Envelope:
    return Envelope(type=event_type, aggregate_id=aggregate_id, version=version, project_id=project_id,
                    data=data.model_dump())


def sql_engine(db_url: str, *, wal: bool = False) -> Engine:
    """An engine for a service's own database: SQLite (embedded) or PostgreSQL (production).

    SQLite gets a 30 s busy timeout and may be shared across threads; `wal` lets readers
    proceed while a writer commits."""
    sqlite = db_url.startswith("sqlite")
    connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 30} if sqlite else {}
    engine = create_engine(db_url, connect_args=connect_args)
    if sqlite and wal:
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    return engine


class EventSourcedStore:
    """The base of every service's own store: events, projections and outbox in one transaction.

    A subclass declares its projection tables in its own `MetaData` and changes state only
    through `_write`, appending events with `_append` inside it, so an event, the projection
    rows it implies and its outbox row commit together or not at all. Writes are serialised
    in-process (an `RLock`, since SQLite has one writer) and `on_change` (the outbox relay's
    thread-safe `notify`) runs after each commit. The store also keeps the offsets of the
    service's self-positioned consumers (`OffsetStore` for `Follower`)."""

    def __init__(self, db_url: str, projections: MetaData | None = None, *, wal: bool = False) -> None:
        self.engine: Engine = sql_engine(db_url, wal=wal)
        metadata.create_all(self.engine)
        if projections is not None:
            projections.create_all(self.engine)
        self._lock = threading.RLock()
        self.on_change: Callable[[], None] = lambda: None

    def close(self) -> None:
        self.engine.dispose()

    def _write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one write transaction; notify the outbox once it committed."""
        with self._lock, self.engine.begin() as conn:
            out = fn(conn)
        self.on_change()
        return out

    def _append(self, conn: Connection, project_id: str, aggregate_id: str,
                items: Sequence[tuple[str, BaseModel]], *, bus_key: str | None = None) -> list[Envelope]:
        """Append `items` (type, data) as the aggregate's next versions; raises ConcurrencyError
        when another writer took one of those versions first."""
        version = current_version(conn, aggregate_id)
        envs = [new_event(project_id, aggregate_id, version + i, event_type, data)
                for i, (event_type, data) in enumerate(items, start=1)]
        append(conn, envs, bus_key=bus_key)
        return envs

    def events(self, aggregate_id: str) -> list[Envelope]:
        with self.engine.connect() as conn:
            return load(conn, aggregate_id)

    def load_offsets(self, topic: str) -> dict[int, int]:
        with self.engine.connect() as conn:
            return load_offsets(conn, topic)

    def save_offsets(self, topic: str, offsets: dict[int, int]) -> None:
        with self._lock, self.engine.begin() as conn:
            save_offsets(conn, topic, offsets)
