"""The dataset store's contract, run against each SQL backend: SQLite (embedded) and the
machine's PostgreSQL (production)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson
import psycopg
import pytest
from dataset.store import DatasetStore, Invalid, NewEntry, NotFound
from refinery.events.datasets import DATASET_CREATED, ENTRIES_ADDED, ENTRY_DELETED, ENTRY_UPDATED
from refinery.stores import eventstore
from refinery.wire.entries import parse_entry
from sqlalchemy import select

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _entry(i: int, **extra) -> NewEntry:
    source_log_id = extra.pop("source_log_id", None)
    return NewEntry(parse_entry({"messages": [
        {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}], **extra}), source_log_id)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_url(request, tmp_path_factory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('ds') / 'dataset.db'}"
        return
    name = f"refinery_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432: {exc}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def store(db_url: str) -> Iterator[DatasetStore]:
    s = DatasetStore(db_url)
    yield s
    s.engine.dispose()


def _events(store: DatasetStore, dataset_id: str) -> list:
    with store.engine.connect() as conn:
        return eventstore.load(conn, dataset_id)


def test_create_list_and_scope(store: DatasetStore) -> None:
    d = store.create_dataset("p1", "first")
    assert d.entry_count == 0 and d.name == "first"
    assert d.id in {x.id for x in store.list_datasets("p1")}
    assert store.list_datasets("p2") == []
    with pytest.raises(NotFound):
        store.get_dataset("p2", d.id)
    with pytest.raises(Invalid):
        store.create_dataset("p1", "  ")
    assert [e.type for e in _events(store, d.id)] == [DATASET_CREATED]


def test_entries_dedupe_by_log_and_filter_by_metadata(store: DatasetStore) -> None:
    d = store.create_dataset("p1", "entries")
    first = store.add_entries("p1", d.id, [
        _entry(0, metadata={"k": "x"}), _entry(1, metadata={"k": "y"}, split="TEST"),
        _entry(2, source_log_id="log-a"), _entry(3, source_log_id="log-a"),
    ], "api")
    assert (first.created, first.duplicates) == (3, 1)
    again = store.add_entries("p1", d.id, [_entry(4, source_log_id="log-a"), _entry(5, source_log_id="log-b")], "logs")
    assert (again.created, again.duplicates) == (1, 1)
    rows, total = store.list_entries("p1", d.id, metadata={"k": "y"})
    assert total == 1 and rows[0]["messages"][0]["content"] == "q1" and rows[0]["split"] == "TEST"
    _, test_total = store.list_entries("p1", d.id, split="TEST")
    ds = store.get_dataset("p1", d.id)
    assert ds.entry_count == 4 and ds.test_count == test_total and ds.train_count == 4 - test_total
    # The events carry every entry whole, with consecutive versions.
    events = _events(store, d.id)
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    carried = [x["messages"][0]["content"] for e in events if e.type == ENTRIES_ADDED for x in e.data["entries"]]
    assert carried == ["q0", "q1", "q2", "q5"]


def test_update_delete_and_outbox(store: DatasetStore) -> None:
    d = store.create_dataset("p1", "edits")
    (entry_id,) = store.add_entries("p1", d.id, [_entry(0, split="TRAIN")], "api").ids
    updated = store.update_entry("p1", d.id, entry_id, {"split": "TEST", "metadata": {"a": "b"}})
    assert updated["split"] == "TEST" and updated["metadata"] == {"a": "b"}
    assert store.get_dataset("p1", d.id).test_count == 1
    with pytest.raises(Invalid):
        store.update_entry("p1", d.id, entry_id, {"id": "x"})
    store.delete_entry("p1", d.id, entry_id)
    with pytest.raises(NotFound):
        store.get_entry("p1", d.id, entry_id)
    assert store.get_dataset("p1", d.id).entry_count == 0
    assert [e.type for e in _events(store, d.id)][-2:] == [ENTRY_UPDATED, ENTRY_DELETED]
    with store.engine.connect() as conn:
        outbox = [orjson.loads(r.body) for r in conn.execute(select(eventstore.outbox_table))]
    assert {e["type"] for e in outbox if e["aggregate_id"] == d.id} >= {ENTRY_UPDATED, ENTRY_DELETED}


def test_deleted_dataset_is_gone(store: DatasetStore) -> None:
    d = store.create_dataset("p1", "doomed")
    store.add_entries("p1", d.id, [_entry(0)], "api")
    store.delete_dataset("p1", d.id)
    with pytest.raises(NotFound):
        store.get_dataset("p1", d.id)
    with pytest.raises(NotFound):
        store.add_entries("p1", d.id, [_entry(1)], "api")
    assert d.id not in {x.id for x in store.list_datasets("p1")}


def test_offsets_are_saved_with_entries(store: DatasetStore) -> None:
    d = store.create_dataset("p1", "offsets")
    topic = f"t-{uuid.uuid4().hex[:6]}"
    store.add_entries("p1", d.id, [_entry(0)], "rule", also=lambda conn: store.save_offsets(conn, topic, {0: 7}))
    assert store.load_offsets(topic) == {0: 7}
    store.save_offsets_now(topic, {0: 9, 1: 3})
    assert store.load_offsets(topic) == {0: 9, 1: 3}
