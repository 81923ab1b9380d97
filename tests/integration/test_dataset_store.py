"""The dataset store's contract, run against each SQL backend: SQLite (embedded) and the
machine's PostgreSQL (production)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson
import pytest
from dataset.store import DatasetStore, Invalid, NewEntry, NotFound
from refinery.events.datasets import (
    DATASET_CREATED,
    ENTRIES_ADDED,
    ENTRY_DELETED,
    ENTRY_RELABELED,
    ENTRY_UPDATED,
    SNAPSHOT_CREATED,
    UPLOAD_FINISHED,
    SnapshotCreated,
)
from refinery.stores import eventstore
from refinery.wire.entries import parse_entry
from sqlalchemy import select

from tests.integration.conftest import postgres_database


def _entry(i: int, **extra) -> NewEntry:
    source_log_id = extra.pop("source_log_id", None)
    return NewEntry(parse_entry({"messages": [
        {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}], **extra}), source_log_id)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_url(request, tmp_path_factory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('ds') / 'dataset.db'}"
        return
    with postgres_database("refinery_test") as url:
        yield url


@pytest.fixture(scope="module")
def store(db_url: str) -> Iterator[DatasetStore]:
    s = DatasetStore(db_url)
    yield s
    s.engine.dispose()


def _events(store: DatasetStore, dataset_id: str) -> list:
    with store.engine.connect() as conn:
        return eventstore.load(conn, dataset_id)


def test_create_list_and_scope(store: DatasetStore) -> None:
    d = store.datasets.create("p1", "first")
    assert d.entry_count == 0 and d.name == "first"
    assert d.id in {x.id for x in store.datasets.in_project("p1")}
    assert store.datasets.in_project("p2") == []
    with pytest.raises(NotFound):
        store.datasets.get("p2", d.id)
    with pytest.raises(Invalid):
        store.datasets.create("p1", "  ")
    assert [e.type for e in _events(store, d.id)] == [DATASET_CREATED]


def test_entries_dedupe_by_log_and_filter_by_metadata(store: DatasetStore) -> None:
    d = store.datasets.create("p1", "entries")
    first = store.entries.add("p1", d.id, [
        _entry(0, metadata={"k": "x"}), _entry(1, metadata={"k": "y"}, split="TEST"),
        _entry(2, source_log_id="log-a"), _entry(3, source_log_id="log-a"),
    ], "api")
    assert (first.created, first.duplicates) == (3, 1)
    again = store.entries.add("p1", d.id, [_entry(4, source_log_id="log-a"), _entry(5, source_log_id="log-b")], "logs")
    assert (again.created, again.duplicates) == (1, 1)
    rows, total = store.entries.page("p1", d.id, metadata={"k": "y"})
    assert total == 1 and rows[0]["messages"][0]["content"] == "q1" and rows[0]["split"] == "TEST"
    _, test_total = store.entries.page("p1", d.id, split="TEST")
    ds = store.datasets.get("p1", d.id)
    assert ds.entry_count == 4 and ds.test_count == test_total and ds.train_count == 4 - test_total
    # The events carry every entry whole, with consecutive versions.
    events = _events(store, d.id)
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    carried = [x["messages"][0]["content"] for e in events if e.type == ENTRIES_ADDED for x in e.data["entries"]]
    assert carried == ["q0", "q1", "q2", "q5"]


def test_update_delete_and_outbox(store: DatasetStore) -> None:
    d = store.datasets.create("p1", "edits")
    (entry_id,) = store.entries.add("p1", d.id, [_entry(0, split="TRAIN")], "api").ids
    updated = store.entries.update("p1", d.id, entry_id, {"split": "TEST", "metadata": {"a": "b"}})
    assert updated["split"] == "TEST" and updated["metadata"] == {"a": "b"}
    assert store.datasets.get("p1", d.id).test_count == 1
    with pytest.raises(Invalid):
        store.entries.update("p1", d.id, entry_id, {"id": "x"})
    store.entries.delete("p1", d.id, entry_id)
    with pytest.raises(NotFound):
        store.entries.get("p1", d.id, entry_id)
    assert store.datasets.get("p1", d.id).entry_count == 0
    assert [e.type for e in _events(store, d.id)][-2:] == [ENTRY_UPDATED, ENTRY_DELETED]
    with store.engine.connect() as conn:
        outbox = [orjson.loads(r.body) for r in conn.execute(select(eventstore.outbox_table))]
    assert {e["type"] for e in outbox if e["aggregate_id"] == d.id} >= {ENTRY_UPDATED, ENTRY_DELETED}


def test_deleted_dataset_is_gone(store: DatasetStore) -> None:
    d = store.datasets.create("p1", "doomed")
    store.entries.add("p1", d.id, [_entry(0)], "api")
    store.datasets.delete("p1", d.id)
    with pytest.raises(NotFound):
        store.datasets.get("p1", d.id)
    with pytest.raises(NotFound):
        store.entries.add("p1", d.id, [_entry(1)], "api")
    assert d.id not in {x.id for x in store.datasets.in_project("p1")}


def test_offsets_are_saved_with_entries(store: DatasetStore) -> None:
    d = store.datasets.create("p1", "offsets")
    topic = f"t-{uuid.uuid4().hex[:6]}"
    store.entries.add("p1", d.id, [_entry(0)], "rule", also=lambda conn: eventstore.save_offsets(conn, topic, {0: 7}))
    assert store.load_offsets(topic) == {0: 7}
    store.save_offsets(topic, {0: 9, 1: 3})
    assert store.load_offsets(topic) == {0: 9, 1: 3}


def test_rules_belong_to_their_dataset(store: DatasetStore) -> None:
    d = store.datasets.create("p1", "rules")
    rule = store.pruning_rules.add("p1", d.id, "You are a bot.")
    assert [r["text"] for r in store.pruning_rules.for_dataset("p1", d.id)] == ["You are a bot."]
    with pytest.raises(Invalid):
        store.pruning_rules.add("p1", d.id, "")
    store.pruning_rules.delete("p1", d.id, rule["id"])
    with pytest.raises(NotFound):
        store.pruning_rules.delete("p1", d.id, rule["id"])
    filters = [{"field": "model", "value": "m", "value_type": "string"}]
    rule_id = store.import_rules.add("p1", d.id, filters)
    assert {"id": rule_id, "dataset_id": d.id, "filters": filters} in store.import_rules.by_project()["p1"]
    store.entries.add("p1", d.id, [_entry(0, source_log_id="log-r")], "rule", rule_id=rule_id,
                      also=lambda conn: store.import_rules.count_imports(conn, rule_id, 1))
    assert [r["imported"] for r in store.import_rules.in_project("p1", d.id)] == [1]
    with pytest.raises(NotFound):
        store.import_rules.in_project("p2", d.id)
    store.datasets.delete("p1", d.id)  # a deleted dataset's standing rules stop with it
    assert rule_id not in {r["id"] for r in store.import_rules.by_project().get("p1", [])}


def test_upload_progress_commits_with_its_entries(store: DatasetStore) -> None:
    d = store.datasets.create("p1", "uploads")
    up = store.uploads.create("p1", d.id, "data.jsonl")
    assert up["status"] == "RECEIVING" and up["object_key"].endswith(f"{up['id']}.jsonl")
    store.uploads.set(up["id"], status="PROCESSING", bytes_total=10)
    store.entries.add("p1", d.id, [_entry(0)], "upload", upload_id=up["id"], also=lambda conn: store.uploads.progress(
        conn, up["id"], bytes_processed=10, lines_processed=2, created=1, errors=[{"line": 2, "message": "bad"}]))
    assert up["id"] in {u["id"] for u in store.uploads.in_status("PROCESSING")}
    store.uploads.finish(up["id"])
    done = store.uploads.get("p1", d.id, up["id"])
    assert (done["status"], done["lines_processed"], done["entries_created"], done["error_count"]) == ("DONE", 2, 1, 1)
    assert store.uploads.by_id(up["id"]) == done
    with pytest.raises(NotFound):
        store.uploads.get("p2", d.id, up["id"])
    assert _events(store, d.id)[-1].type == UPLOAD_FINISHED


def test_relabel_job_resumes_with_what_is_pending(store: DatasetStore) -> None:
    d = store.datasets.create("p1", "relabel")
    ids = store.entries.add("p1", d.id, [_entry(0, split="TRAIN"), _entry(1, split="TRAIN")], "api").ids
    with pytest.raises(NotFound):
        store.relabel_jobs.create("p1", d.id, "m", [ids[0], "missing"], "", True, 2)
    job = store.relabel_jobs.create("p1", d.id, "m", [], "TRAIN", True, 2)
    assert (job["status"], job["total"]) == ("RUNNING", 2)
    assert job["id"] in {j["id"] for j in store.relabel_jobs.running()}
    new_output = {"role": "assistant", "content": "better"}
    store.relabel_jobs.relabeled("p1", d.id, ids[0], job["id"], "m", new_output, True)
    store.relabel_jobs.failed(job["id"], ids[1], "upstream said no")
    assert store.relabel_jobs.pending_entries(job["id"]) == []
    relabeled = store.entries.get("p1", d.id, ids[0])
    assert relabeled["messages"][-1]["content"] == "better" and relabeled["rejected_message"]["content"] == "a0"
    store.relabel_jobs.finish(job["id"], "DONE")
    done = store.relabel_jobs.get("p1", d.id, job["id"])
    assert (done["status"], done["done"], done["failed"]) == ("DONE", 1, 1)
    assert done["errors"] == [{"entry_id": ids[1], "message": "upstream said no"}]
    assert _events(store, d.id)[-1].type == ENTRY_RELABELED


def test_snapshots_and_fine_tunes_count_once(store: DatasetStore) -> None:
    d = store.datasets.create("p1", "snapshots")
    snap = SnapshotCreated(snapshot_id=f"sha-{uuid.uuid4().hex}", object_key="k", entry_count=0, train_count=0,
                           test_count=0, size_bytes=0, pruning_rules=[])
    first = store.snapshots.record("p1", d.id, snap)
    assert store.snapshots.record("p1", d.id, snap) == first  # the same content is one snapshot
    assert [e.type for e in _events(store, d.id)].count(SNAPSHOT_CREATED) == 1
    assert store.snapshots.get("p1", d.id, snap.snapshot_id) == first
    with pytest.raises(NotFound):
        store.snapshots.get("p1", d.id, "other")
    event_id = uuid.uuid4().hex
    store.datasets.count_fine_tune(event_id, d.id, 1)
    store.datasets.count_fine_tune(event_id, d.id, 1)  # redelivered
    assert store.datasets.get("p1", d.id).fine_tune_count == 1
    store.datasets.count_fine_tune(uuid.uuid4().hex, d.id, -1)
    store.datasets.count_fine_tune(uuid.uuid4().hex, d.id, -1)
    assert store.datasets.get("p1", d.id).fine_tune_count == 0
