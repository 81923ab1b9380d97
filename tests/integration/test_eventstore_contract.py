"""The event-sourced store base's contract, one abstract suite run against each SQL backend.

In the style of pyeventsourcing's per-backend persistence tests: `EventStoreContract` says what
every backend must do (append in version order, refuse a taken version without writing
anything, keep the outbox in commit order, publish it in order and delete only what the bus
acknowledged, keep consumer offsets, wake the relay from any thread); a subclass per backend
supplies only the database URL: SQLite (embedded) and the machine's PostgreSQL (production).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import orjson
import pytest
from pydantic import BaseModel, ConfigDict
from refinery.bus.producer import Position
from refinery.stores import eventstore
from refinery.stores.eventstore import ConcurrencyError, EventSourcedStore, OutboxRelay
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.engine import Connection

from tests.integration.conftest import postgres_database


class Renamed(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str


projections = MetaData()
names_table = Table(
    "names", projections,
    Column("aggregate_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("renames", Integer, nullable=False),
)


class NameStore(EventSourcedStore):
    """A minimal aggregate: a name that can be changed, its projection kept with its events."""

    def rename(self, project_id: str, aggregate_id: str, name: str, *, expect_version: int | None = None) -> None:
        def run(conn: Connection) -> None:
            if expect_version is not None:
                # A writer that decided on an older version: append exactly the version it read + 1.
                env = eventstore.new_event(project_id, aggregate_id, expect_version + 1, "name.renamed",
                                           Renamed(name=name))
                self._project(conn, aggregate_id, name)
                eventstore.append(conn, [env])
                return
            self._project(conn, aggregate_id, name)
            self._append(conn, project_id, aggregate_id, [("name.renamed", Renamed(name=name))])

        self._write(run)

    @staticmethod
    def _project(conn: Connection, aggregate_id: str, name: str) -> None:
        t = names_table
        row = conn.execute(select(t.c.renames).where(t.c.aggregate_id == aggregate_id)).first()
        if row is None:
            conn.execute(insert(t).values(aggregate_id=aggregate_id, name=name, renames=1))
        else:
            conn.execute(t.update().where(t.c.aggregate_id == aggregate_id).values(name=name, renames=row[0] + 1))

    def name(self, aggregate_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(names_table.c.name).where(names_table.c.aggregate_id == aggregate_id)).scalar()

    def outbox(self) -> list[tuple[str, dict]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(eventstore.outbox_table).order_by(eventstore.outbox_table.c.seq))
            return [(r.key, orjson.loads(r.body)) for r in rows]


class RecordingProducer:
    """Acknowledges like the bus, or fails the first `fail` publishes."""

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[tuple[bytes, bytes]] = []
        self._fail = fail

    async def publish(self, key: bytes, value: bytes) -> Position:
        if self._fail:
            self._fail -= 1
            raise ConnectionError("bus down")
        self.sent.append((key, value))
        return Position(0, len(self.sent))


class EventStoreContract:
    """Subclasses provide `db_url` (a fresh, empty database per test)."""

    @pytest.fixture
    def store(self, db_url: str) -> Iterator[NameStore]:
        s = NameStore(db_url, projections)
        yield s
        s.close()

    def test_append_assigns_consecutive_versions_and_loads_in_order(self, store: NameStore) -> None:
        for name in ("a", "b", "c"):
            store.rename("p1", "agg-1", name)
        events = store.events("agg-1")
        assert [e.version for e in events] == [1, 2, 3]
        assert [e.data["name"] for e in events] == ["a", "b", "c"]
        assert {e.project_id for e in events} == {"p1"}
        assert len({e.event_id for e in events}) == 3
        assert store.name("agg-1") == "c"
        assert store.events("agg-other") == []

    def test_a_taken_version_is_refused_and_nothing_of_that_write_is_kept(self, store: NameStore) -> None:
        store.rename("p1", "agg-1", "first")
        outbox_before = store.outbox()
        with pytest.raises(ConcurrencyError):
            store.rename("p1", "agg-1", "stale writer", expect_version=0)  # version 1 is taken
        assert store.name("agg-1") == "first"  # the projection change rolled back with the event
        assert [e.data["name"] for e in store.events("agg-1")] == ["first"]
        assert store.outbox() == outbox_before
        store.rename("p1", "agg-1", "second", expect_version=1)  # the right next version still works
        assert [e.version for e in store.events("agg-1")] == [1, 2]

    def test_concurrent_writers_of_one_version_one_wins(self, store: NameStore) -> None:
        store.rename("p1", "agg-1", "v1")
        results: list[str] = []
        barrier = threading.Barrier(4)

        def writer(i: int) -> None:
            barrier.wait()
            try:
                store.rename("p1", "agg-1", f"w{i}", expect_version=1)
                results.append("ok")
            except ConcurrencyError:
                results.append("conflict")

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["conflict", "conflict", "conflict", "ok"]
        assert [e.version for e in store.events("agg-1")] == [1, 2]

    def test_outbox_keeps_commit_order_and_aggregate_keys(self, store: NameStore) -> None:
        store.rename("p1", "agg-1", "a1")
        store.rename("p2", "agg-2", "b1")
        store.rename("p1", "agg-1", "a2")
        assert [(key, body["data"]["name"], body["version"]) for key, body in store.outbox()] == [
            ("agg-1", "a1", 1), ("agg-2", "b1", 1), ("agg-1", "a2", 2)]

    def test_relay_publishes_in_order_and_deletes_only_acknowledged_rows(self, store: NameStore) -> None:
        for i in range(3):
            store.rename("p1", "agg-1", f"n{i}")

        async def scenario() -> RecordingProducer:
            failing = RecordingProducer(fail=1)
            relay = OutboxRelay(store.engine, failing)  # type: ignore[arg-type]
            with pytest.raises(ConnectionError):
                await relay.flush()
            assert len(store.outbox()) == 3  # nothing deleted that the bus did not take
            ok = RecordingProducer()
            relay = OutboxRelay(store.engine, ok)  # type: ignore[arg-type]
            assert await relay.flush() == 3
            assert await relay.flush() == 0
            return ok

        producer = asyncio.run(scenario())
        assert [orjson.loads(v)["data"]["name"] for _, v in producer.sent] == ["n0", "n1", "n2"]
        assert {k for k, _ in producer.sent} == {b"agg-1"}
        assert store.outbox() == []

    def test_commits_in_worker_threads_wake_the_relay(self, store: NameStore) -> None:
        async def scenario() -> RecordingProducer:
            producer = RecordingProducer()
            relay = OutboxRelay(store.engine, producer, poll_s=30.0)  # only a notify can wake it in time
            store.on_change = relay.notify
            relay.start()
            try:
                await asyncio.sleep(0.1)  # the first poll ran and found nothing
                await asyncio.to_thread(store.rename, "p1", "agg-1", "from a thread")
                for _ in range(100):
                    if producer.sent:
                        break
                    await asyncio.sleep(0.02)
            finally:
                await relay.stop()
            return producer

        producer = asyncio.run(scenario())
        assert [orjson.loads(v)["data"]["name"] for _, v in producer.sent] == ["from a thread"]

    def test_stopping_the_relay_publishes_what_is_committed_once(self, store: NameStore) -> None:
        async def scenario() -> RecordingProducer:
            producer = RecordingProducer()
            relay = OutboxRelay(store.engine, producer, poll_s=30.0)  # never woken: only the stop drains
            relay.start()
            await asyncio.sleep(0.1)
            for i in range(3):
                await asyncio.to_thread(store.rename, "p1", "agg-1", f"n{i}")
            await relay.stop()
            return producer

        producer = asyncio.run(scenario())
        assert [orjson.loads(v)["data"]["name"] for _, v in producer.sent] == ["n0", "n1", "n2"]
        assert store.outbox() == []

    def test_consumer_offsets_round_trip_and_update(self, store: NameStore) -> None:
        assert store.load_offsets("t") == {}
        store.save_offsets("t", {0: 5, 1: 2})
        store.save_offsets("t", {1: 9})
        store.save_offsets("other", {0: 1})
        assert store.load_offsets("t") == {0: 5, 1: 9}
        assert store.load_offsets("other") == {0: 1}

    def test_state_survives_reopening(self, store: NameStore, db_url: str) -> None:
        store.rename("p1", "agg-1", "kept")
        store.save_offsets("t", {0: 3})
        store.close()
        again = NameStore(db_url, projections)
        try:
            assert again.name("agg-1") == "kept"
            assert [e.version for e in again.events("agg-1")] == [1]
            assert again.load_offsets("t") == {0: 3}
            with again.engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(names_table)).scalar() == 1
        finally:
            again.close()


class TestSQLite(EventStoreContract):
    @pytest.fixture
    def db_url(self, tmp_path) -> str:
        return f"sqlite:///{tmp_path / 'store.db'}"


class TestPostgreSQL(EventStoreContract):
    @pytest.fixture
    def db_url(self) -> Iterator[str]:
        with postgres_database("refinery_es") as url:
            yield url
