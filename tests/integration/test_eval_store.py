"""eval's store contract, run against each SQL backend: SQLite (embedded) and the machine's PostgreSQL
(production). Projections follow the events; an eval and its rows are written whole; outputs and
judgements are recorded once per unit; the work still to do is what is missing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from eval.definitions import Invalid, NotFound, Spec
from eval.store import NO_DATASET_OUTPUT, EvalStore, row_bytes, rows_batches
from refinery.events import evals as ev
from refinery.stores import eventstore
from sqlalchemy import func, select

from tests.integration.conftest import postgres_database


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request, tmp_path_factory) -> Iterator[EvalStore]:
    if request.param == "sqlite":
        s = EvalStore(f"sqlite:///{tmp_path_factory.mktemp('eval') / 'eval.db'}")
        yield s
        s.close()
        return
    with postgres_database("refinery_eval") as url:
        s = EvalStore(url)
        yield s
        s.close()


@pytest.fixture
def project() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


def spec(kind: str = "head_to_head", models: list[str] | None = None, dataset_id: str = "ds", **kw: Any) -> Spec:
    args: dict[str, Any] = {"name": "an eval", "dataset_id": dataset_id, "type": kind,
                            "models": models or ["gpt-4o", "gpt-4o-mini", "dataset"],
                            "judge_model": "gpt-4o" if kind == "head_to_head" else "", "instructions": "",
                            "criterion": "", "grader": "", "auto_add_models": False}
    args.update(kw)
    return Spec(**args)


def rows(n: int, *, without_output: tuple[int, ...] = ()) -> list[ev.EvalRow]:
    return [ev.EvalRow(row_id=f"entry-{i}", input={"messages": [{"role": "user", "content": f"q{i} " + "x" * 50}]},
                       dataset_output={} if i in without_output else {"role": "assistant", "content": f"a{i}"})
            for i in range(n)]


def output(row_id: str, model: str, text: str | None = "out", error: str | None = None) -> ev.EvalOutputGenerated:
    return ev.EvalOutputGenerated(row_id=row_id, model=model,
                                  output=None if text is None else {"role": "assistant", "content": text},
                                  error=error, latency_ms=None if text is None else 12.5, cost_usd=0.001)


def judgement(row_id: str, model: str, opponent: str | None, score: float | None) -> ev.EvalJudgementRecorded:
    return ev.EvalJudgementRecorded(row_id=row_id, model=model, opponent=opponent, score=score,
                                    winner=model if score == 1.0 else None, reasoning="because",
                                    error=None if score is not None else "judge failed")


def outbox(store: EvalStore, key: str) -> int:
    with store.engine.connect() as conn:
        t = eventstore.outbox_table
        return int(conn.execute(select(func.count()).select_from(t).where(t.c.key == key)).scalar_one())


def test_an_eval_and_its_rows_are_written_in_one_go_in_events_that_fit_the_bus(
        store: EvalStore, project: str) -> None:
    created = store.create(project, spec(), rows(20), max_event_bytes=600)
    assert (created.status, created.row_count, created.done, created.total) == ("QUEUED", 20, 0, 20 * (2 + 3))
    assert created.models == ["gpt-4o", "gpt-4o-mini", "dataset"] and created.judge_model == "gpt-4o"
    events = store.events(created.id)
    assert events[0].type == ev.EVAL_CREATED and events[0].data["row_count"] == 20
    added = [e for e in events[1:] if e.type == ev.EVAL_ROWS_ADDED]
    assert len(added) == len(events) - 1 > 1
    assert all(len(orjson.dumps(e.data["rows"])) <= 600 for e in added)
    assert [r["row_id"] for e in added for r in e.data["rows"]] == [f"entry-{i}" for i in range(20)]
    assert outbox(store, created.id) == len(events)
    listed, total = store.rows(project, created.id, 5, 10)
    assert total == 20 and [r.row_id for r in listed] == [f"entry-{i}" for i in range(10, 15)]
    assert orjson.loads(listed[0].input_json)["messages"][0]["content"].startswith("q10")
    assert [(o.model, o.done) for o in listed[0].outputs] == [("gpt-4o", False), ("gpt-4o-mini", False),
                                                              ("dataset", True)]
    assert [(j.model, j.opponent, j.done) for j in listed[0].judgements] == [
        ("gpt-4o", "gpt-4o-mini", False), ("gpt-4o", "dataset", False), ("gpt-4o-mini", "dataset", False)]
    with pytest.raises(Invalid, match="at least one TEST row"):
        store.create(project, spec(), [], max_event_bytes=600)


def test_batches_keep_order_and_put_an_oversized_row_alone() -> None:
    small = rows(4)
    big = ev.EvalRow(row_id="big", input={"messages": [{"role": "user", "content": "y" * 2000}]}, dataset_output={})
    groups = rows_batches([*small[:2], big, *small[2:]], max_bytes=row_bytes(small[0]) * 2)
    assert [[r.row_id for r in g] for g in groups] == [["entry-0", "entry-1"], ["big"], ["entry-2", "entry-3"]]


def test_reads_are_filtered_by_project_and_dataset(store: EvalStore, project: str) -> None:
    a = store.create(project, spec(dataset_id="ds-a"), rows(1), max_event_bytes=1 << 20)
    b = store.create(project, spec(dataset_id="ds-b"), rows(1), max_event_bytes=1 << 20)
    assert [e.id for e in store.in_project(project)] == [b.id, a.id]
    assert [e.id for e in store.in_project(project, "ds-a")] == [a.id]
    assert store.in_project("other-" + project) == []
    for call in (lambda: store.get("other-" + project, a.id), lambda: store.rows("other-" + project, a.id, 10, 0),
                 lambda: store.delete("other-" + project, a.id),
                 lambda: store.add_models("other-" + project, a.id, ["m"])):
        with pytest.raises(NotFound, match=rf"^Eval {a.id} not found$"):
            call()


def test_pending_work_follows_what_is_recorded_and_recording_twice_is_a_no_op(
        store: EvalStore, project: str) -> None:
    e = store.create(project, spec(), rows(2), max_event_bytes=1 << 20)
    mine = [p for p in store.pending_outputs(10_000) if p.eval_id == e.id]
    assert [(p.row_id, p.model) for p in mine] == [("entry-0", "gpt-4o"), ("entry-0", "gpt-4o-mini"),
                                                  ("entry-1", "gpt-4o"), ("entry-1", "gpt-4o-mini")]
    assert mine[0].project_id == project and mine[0].input["messages"][0]["content"].startswith("q0")

    def judgements_due() -> list[tuple[str, str, str | None]]:
        return [(p.row_id, p.first.model, p.second.model if p.second else None)
                for p in store.pending_judgements(10_000) if p.eval_id == e.id]

    assert judgements_due() == []  # no pair has both outputs yet (`dataset` alone is not a pair)
    assert store.record_output(e.id, output("entry-0", "gpt-4o", "hello")) is True
    assert store.record_output(e.id, output("entry-0", "gpt-4o", "again")) is False  # once per unit
    assert store.get(project, e.id).status == "RUNNING"
    assert judgements_due() == [("entry-0", "gpt-4o", "dataset")]
    due = next(p for p in store.pending_judgements(10_000) if p.eval_id == e.id)
    assert due.first.output == {"role": "assistant", "content": "hello"} and due.second is not None
    assert due.second.output == {"role": "assistant", "content": "a0"}
    assert store.record_output(e.id, output("entry-0", "gpt-4o-mini", None, error="boom")) is True
    assert judgements_due() == [("entry-0", "gpt-4o", "gpt-4o-mini"), ("entry-0", "gpt-4o", "dataset"),
                                ("entry-0", "gpt-4o-mini", "dataset")]
    failed_side = next(p for p in store.pending_judgements(10_000) if p.eval_id == e.id and p.second
                       and p.second.model == "gpt-4o-mini")
    assert failed_side.second is not None and (failed_side.second.output, failed_side.second.error) == (None, "boom")
    assert store.record_judgement(e.id, judgement("entry-0", "gpt-4o", "dataset", 1.0)) is True
    assert store.record_judgement(e.id, judgement("entry-0", "gpt-4o", "dataset", 0.0)) is False
    assert ("entry-0", "gpt-4o", "dataset") not in judgements_due()
    assert store.record_output(e.id, output("entry-0", "not-in-the-eval")) is False
    outputs = [x for x in store.events(e.id) if x.type == ev.EVAL_OUTPUT_GENERATED]
    judged = [x for x in store.events(e.id) if x.type == ev.EVAL_JUDGEMENT_RECORDED]
    assert len(outputs) == 2 and len(judged) == 1 and judged[0].data["score"] == 1.0
    view = store.get(project, e.id)
    assert view.done == 3 and view.status == "RUNNING"
    [row0] = store.rows(project, e.id, 1, 0)[0]
    assert [(o.model, o.error) for o in row0.outputs] == [("gpt-4o", None), ("gpt-4o-mini", "boom"),
                                                          ("dataset", None)]
    pair = next(j for j in row0.judgements if j.opponent == "dataset" and j.model == "gpt-4o")
    assert (pair.score, pair.winner, pair.reasoning, pair.done) == (1.0, "gpt-4o", "because", True)


def test_an_eval_completes_once_every_unit_is_recorded(store: EvalStore, project: str) -> None:
    e = store.create(project, spec("criterion", ["gpt-4o", "dataset"], criterion="c"), rows(2, without_output=(1,)),
                     max_event_bytes=1 << 20)
    assert store.complete_if_done(e.id) is False
    for r in ("entry-0", "entry-1"):
        store.record_output(e.id, output(r, "gpt-4o"))
    dataset_side = {p.row_id: p.first for p in store.pending_judgements(10_000)
                    if p.eval_id == e.id and p.first.model == "dataset"}
    assert dataset_side["entry-1"].error == NO_DATASET_OUTPUT and dataset_side["entry-1"].output is None
    store.record_judgement(e.id, judgement("entry-0", "gpt-4o", None, 1.0))
    store.record_judgement(e.id, judgement("entry-1", "gpt-4o", None, 0.0))
    store.record_judgement(e.id, judgement("entry-0", "dataset", None, 1.0))
    assert store.complete_if_done(e.id) is False and e.id in store.open_evals()
    store.record_judgement(e.id, judgement("entry-1", "dataset", None, None))
    assert store.complete_if_done(e.id) is True
    assert store.complete_if_done(e.id) is False  # once
    done = store.get(project, e.id)
    assert (done.status, done.done, done.total) == ("COMPLETED", 6, 6) and e.id not in store.open_evals()
    by = {r.model: r for r in done.results.results}
    assert (by["gpt-4o"].score, by["gpt-4o"].latency_ms_p50, by["gpt-4o"].cost_usd) == (0.5, 12.5, 0.002)
    assert (by["dataset"].score, by["dataset"].errors) == (1.0, 1)
    [completed] = [x for x in store.events(e.id) if x.type == ev.EVAL_COMPLETED]
    assert completed.data["results"][0] == {"model": "gpt-4o", "score": 0.5, "errors": 0, "costUsd": 0.002,
                                            "latencyMsP50": 12.5, "comparisons": 0, "scored": 2}
    assert store.record_judgement(e.id, judgement("entry-0", "gpt-4o", None, 0.0)) is False  # closed


def test_adding_models_reopens_a_completed_eval_and_adds_only_new_work(store: EvalStore, project: str) -> None:
    e = store.create(project, spec("code", ["dataset"], grader="g"), rows(1), max_event_bytes=1 << 20)
    store.record_judgement(e.id, judgement("entry-0", "dataset", None, 1.0))
    assert store.complete_if_done(e.id) is True
    with pytest.raises(Invalid, match=r"^model dataset is already in this eval$"):
        store.add_models(project, e.id, ["dataset"])
    grown = store.add_models(project, e.id, ["gpt-4o"])
    assert grown is not None and (grown.status, grown.models, grown.done, grown.total) == (
        "QUEUED", ["dataset", "gpt-4o"], 1, 1 + 2)  # one output to generate, two grades
    assert grown.results.results[1].score is None  # live again, not the completed snapshot
    assert store.add_models(project, e.id, ["gpt-4o"], reason="auto") is None  # already there: nothing added
    assert [(p.row_id, p.model) for p in store.pending_outputs(10_000) if p.eval_id == e.id] == [("entry-0", "gpt-4o")]
    added = [x.data for x in store.events(e.id) if x.type == ev.EVAL_MODELS_ADDED]
    assert added == [{"models": ["gpt-4o"], "reason": "request"}]


def test_auto_add_targets_are_the_projects_live_auto_evals_on_the_dataset_created_before(
        store: EvalStore, project: str) -> None:
    auto = store.create(project, spec(dataset_id="ds-auto", auto_add_models=True), rows(1), max_event_bytes=1 << 20)
    store.create(project, spec(dataset_id="ds-auto"), rows(1), max_event_bytes=1 << 20)
    gone = store.create(project, spec(dataset_id="ds-auto", auto_add_models=True), rows(1), max_event_bytes=1 << 20)
    store.delete(project, gone.id)
    failed = store.create(project, spec(dataset_id="ds-auto", auto_add_models=True), rows(1),
                          max_event_bytes=1 << 20)
    assert store.fail(failed.id, "Criterion c not found") is True and store.fail(failed.id, "again") is False
    assert store.auto_add_targets(project, "ds-auto", auto.created_at + 10_000) == [auto.id]
    assert store.auto_add_targets(project, "ds-auto", auto.created_at - 1) == []
    assert store.auto_add_targets("other-" + project, "ds-auto", auto.created_at + 10_000) == []
    errored = store.get(project, failed.id)
    assert (errored.status, errored.error) == ("ERROR", "Criterion c not found")
    with pytest.raises(Invalid, match="failed"):
        store.add_models(project, failed.id, ["m"])


def test_delete_keeps_the_events_and_stops_the_work(store: EvalStore, project: str) -> None:
    e = store.create(project, spec(), rows(2), max_event_bytes=1 << 20)
    store.delete(project, e.id)
    with pytest.raises(NotFound, match=rf"^Eval {e.id} not found$"):
        store.get(project, e.id)
    assert all(p.eval_id != e.id for p in store.pending_outputs(10_000))
    assert store.record_output(e.id, output("entry-0", "gpt-4o")) is False
    assert [x.type for x in store.events(e.id)][-1] == ev.EVAL_DELETED
    assert store.events(e.id)[-1].data == {"name": "an eval"}
