"""criteria-judge's store contract, run against each SQL backend: SQLite (embedded) and the machine's
PostgreSQL (production). Projections follow the events; writes are whole or not at all; verdicts are
recorded once per (row, version)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson
import pytest
from criteria_judge.definitions import Conflict, NotFound
from criteria_judge.store import CriteriaStore, NewRow, batches
from refinery.events import criteria as ev
from refinery.stores import eventstore
from sqlalchemy import func, select

from tests.integration.conftest import postgres_database

LLM = ev.CriterionVersionSpec(version=1, prompt='fails if the output contains "Paris"', judge_model="gpt-4o",
                              templated_variables=["messages", "output"])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request, tmp_path_factory) -> Iterator[CriteriaStore]:
    if request.param == "sqlite":
        s = CriteriaStore(f"sqlite:///{tmp_path_factory.mktemp('criteria') / 'criteria.db'}")
        yield s
        s.close()
        return
    with postgres_database("refinery_criteria") as url:
        s = CriteriaStore(url)
        yield s
        s.close()


@pytest.fixture
def project() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


def _events(store: CriteriaStore, criterion_id: str) -> list:
    with store.engine.connect() as conn:
        return eventstore.load(conn, criterion_id)


def _outbox(store: CriteriaStore, key: str) -> int:
    with store.engine.connect() as conn:
        t = eventstore.outbox_table
        return int(conn.execute(select(func.count()).select_from(t).where(t.c.key == key)).scalar_one())


def _rows(n: int, labels: list[str | None] | None = None) -> list[NewRow]:
    labels = labels or [None] * n
    return [NewRow({"messages": [{"role": "user", "content": f"q{i}"}]}, {"role": "assistant", "content": f"a{i}"},
                   labels[i]) for i in range(n)]


def test_create_get_list_and_the_name_unique_among_live_criteria(store: CriteriaStore, project: str) -> None:
    created = store.create(project, "no-paris", LLM)
    assert created.name == "no-paris" and [v.spec.version for v in created.versions] == [1]
    assert created.latest.spec.prompt == LLM.prompt and created.alignment_rows == 0
    assert [c.name for c in store.in_project(project)] == ["no-paris"]
    assert store.in_project("another-project") == []
    with pytest.raises(Conflict, match="already exists"):
        store.create(project, "no-paris", LLM)
    store.create("another-project-" + project, "no-paris", LLM)  # names are per project
    [created_event] = _events(store, created.id)
    assert created_event.type == ev.CRITERION_CREATED and created_event.version == 1
    assert created_event.data["first_version"]["prompt"] == LLM.prompt
    assert _outbox(store, created.id) == 1  # relayed to the bus, keyed by the criterion id


def test_versions_publish_from_the_latest_with_optimistic_concurrency(store: CriteriaStore, project: str) -> None:
    c = store.create(project, "versions", LLM)
    v2 = store.publish(project, "versions", 1, LLM.model_copy(update={"prompt": "v2 prompt"}))
    assert [(v.spec.version, v.spec.prompt) for v in v2.versions] == [(1, LLM.prompt), (2, "v2 prompt")]
    with pytest.raises(Conflict, match="changed meanwhile"):  # decided from v1 while v2 exists
        store.publish(project, "versions", 1, LLM.model_copy(update={"prompt": "lost update"}))
    assert [v.spec.prompt for v in store.get(project, "versions").versions] == [LLM.prompt, "v2 prompt"]
    assert [e.type for e in _events(store, c.id)] == [ev.CRITERION_CREATED, ev.CRITERION_VERSION_PUBLISHED]


def test_delete_is_soft_and_frees_the_name(store: CriteriaStore, project: str) -> None:
    old = store.create(project, "recycled", LLM)
    store.add_rows(project, "recycled", _rows(2), source="jsonl", max_event_bytes=1 << 20)
    store.delete(project, "recycled")
    with pytest.raises(NotFound, match=r"^Criterion recycled not found$"):
        store.get(project, "recycled")
    assert all(p.criterion_id != old.id for p in store.pending(10_000))  # a deleted criterion is not judged
    new = store.create(project, "recycled", LLM)
    assert new.id != old.id and new.alignment_rows == 0
    assert [e.type for e in _events(store, old.id)][-1] == ev.CRITERION_DELETED
    with pytest.raises(NotFound, match=r"^Criterion gone not found$"):
        store.delete(project, "gone")


def test_rows_keep_their_order_and_travel_in_events_that_fit_the_bus(store: CriteriaStore, project: str) -> None:
    c = store.create(project, "rows", LLM)
    added = store.add_rows(project, "rows", _rows(30, ["PASS", "FAIL", None] * 10), source="jsonl",
                           max_event_bytes=1000)
    assert added == 30 and store.get(project, "rows").alignment_rows == 30
    rows, total, version = store.rows(project, "rows", None, 100, 0)
    assert total == 30 and version == 1
    assert [orjson.loads(r.output_json)["content"] for r in rows] == [f"a{i}" for i in range(30)]
    assert [r.human_judgement for r in rows[:3]] == ["PASS", "FAIL", None]
    assert all(r.judge is None for r in rows)
    page, _, _ = store.rows(project, "rows", 1, 5, 10)
    assert [orjson.loads(r.output_json)["content"] for r in page] == [f"a{i}" for i in range(10, 15)]
    added_events = [e for e in _events(store, c.id) if e.type == ev.ALIGNMENT_ROWS_ADDED]
    assert len(added_events) > 1  # cut into events of at most ~1000 bytes
    assert all(len(orjson.dumps(e.data["rows"])) <= 1000 for e in added_events)
    assert [r["row_id"] for e in added_events for r in e.data["rows"]] == [r.id for r in rows]
    with pytest.raises(NotFound, match=r"^Criterion version v7 not found for criterion rows$"):
        store.rows(project, "rows", 7, 10, 0)


def test_batches_keep_order_and_put_an_oversized_row_alone() -> None:
    small = [ev.AlignmentRow(row_id=str(i), input={}, output={"content": "x"}) for i in range(5)]
    big = ev.AlignmentRow(row_id="big", input={}, output={"content": "y" * 500})
    groups = batches([*small[:2], big, *small[2:]], 250)
    assert [[r.row_id for r in g] for g in groups] == [["0", "1"], ["big"], ["2", "3", "4"]]


def test_labels_are_events_and_the_same_label_again_writes_nothing(store: CriteriaStore, project: str) -> None:
    c = store.create(project, "labels", LLM)
    store.add_rows(project, "labels", _rows(2), source="jsonl", max_event_bytes=1 << 20)
    rows, _, _ = store.rows(project, "labels", None, 10, 0)
    labeled = store.label(project, "labels", rows[0].id, "FAIL")
    assert labeled.human_judgement == "FAIL" and labeled.id == rows[0].id
    count = len(_events(store, c.id))
    store.label(project, "labels", rows[0].id, "FAIL")
    assert len(_events(store, c.id)) == count
    assert store.label(project, "labels", rows[0].id, None).human_judgement is None
    assert _events(store, c.id)[-1].data == {"row_id": rows[0].id, "human_judgement": None}
    with pytest.raises(NotFound, match="alignment row nope not found"):
        store.label(project, "labels", "nope", "PASS")


def test_pending_pairs_are_judged_once_per_row_and_version(store: CriteriaStore, project: str) -> None:
    c = store.create(project, "pending", LLM)
    store.add_rows(project, "pending", _rows(3, ["FAIL", "PASS", "SKIP"]), source="jsonl", max_event_bytes=1 << 20)
    mine = [p for p in store.pending(10_000) if p.criterion_id == c.id]
    assert [(p.spec.version, orjson.loads(p.output_json)["content"]) for p in mine] == [
        (1, "a0"), (1, "a1"), (1, "a2")]
    store.publish(project, "pending", 1, LLM.model_copy(update={"prompt": "v2"}))
    mine = [p for p in store.pending(10_000) if p.criterion_id == c.id]
    assert len(mine) == 6 and {p.spec.version for p in mine} == {1, 2}
    first = mine[0]
    verdict = ev.JudgementRecorded(row_id=first.row_id, version=first.spec.version, judgement="FAIL", score=0.0,
                                   explanation="contains Paris")
    assert store.record_judgement(first, verdict) is True
    assert store.record_judgement(first, verdict) is False  # a second verdict for the pair: nothing written
    recorded = [e for e in _events(store, c.id) if e.type == ev.JUDGEMENT_RECORDED]
    assert len(recorded) == 1 and recorded[0].data["explanation"] == "contains Paris"
    assert len([p for p in store.pending(10_000) if p.criterion_id == c.id]) == 5
    rows, _, _ = store.rows(project, "pending", 1, 10, 0)
    assert rows[0].judge is not None and rows[0].judge.judgement == "FAIL"
    assert store.rows(project, "pending", 2, 10, 0)[0][0].judge is None  # v2 has not judged it
    pairs, version = store.labels_and_verdicts(project, "pending", 1)
    assert version == 1 and sorted(pairs, key=str) == sorted([("FAIL", "FAIL"), ("PASS", None), ("SKIP", None)],
                                                             key=str)
    store.delete(project, "pending")
    assert [p for p in store.pending(10_000) if p.criterion_id == c.id] == []
    second = ev.JudgementRecorded(row_id=mine[1].row_id, version=mine[1].spec.version, judgement="PASS", score=1.0)
    assert store.record_judgement(mine[1], second) is False  # deleted meanwhile: not recorded
