"""eval's state: each eval is one event-sourced aggregate, with SQL projections, one transaction per change.

An eval's events (its creation, its TEST rows in batches that fit the bus, the models added, every
output, every judgement or grade, its completion or failure, its deletion) carry consecutive versions
of its stream; every write appends its events, updates the projections and fills the outbox in one
transaction (SQLite embedded, PostgreSQL in production), so a change is kept whole or not at all.

Outputs are keyed by (eval, row, model) and judgements by (eval, row, model, opponent): recording one
twice is a no-op, and the work still to do is read from what is missing, which is what lets the
runner resume after a restart without generating or judging anything twice. The rows are a snapshot
of the TEST entries (input and dataset output) taken at creation: editing the dataset later does not
change an eval.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from pydantic import BaseModel
from refinery.events import evals as ev
from refinery.events.evals import EvalType
from refinery.stores.eventstore import ConcurrencyError, EventSourcedStore
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from eval.definitions import DATASET_MODEL, OPEN, AddReason, Invalid, Spec, Status, eval_not_found, pairs
from eval.results import JudgementFact, OutputFact, Results, compute, units_per_row

projections = MetaData()

evals_table = Table(
    "evals", projections,
    Column("id", String(64), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("dataset_id", String(128), nullable=False),
    Column("type", String(16), nullable=False),
    Column("judge_model", String(300), nullable=False),
    Column("instructions", Text, nullable=False),
    Column("criterion", String(300), nullable=False),
    Column("grader", Text, nullable=False),
    Column("auto_add_models", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("row_count", Integer, nullable=False),
    Column("results", JSON, nullable=True),  # the standings at completion; cleared when models are added
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Index("ix_evals_project_dataset", "project_id", "dataset_id"),
)

models_table = Table(
    "eval_models", projections,
    Column("eval_id", String(64), primary_key=True),
    Column("model", String(300), primary_key=True),
    Column("position", Integer, nullable=False),  # the order models were added in
    Column("reason", String(16), nullable=False),
    Column("added_at", Float, nullable=False),
)

rows_table = Table(
    "eval_rows", projections,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # the TEST split's order
    Column("eval_id", String(64), nullable=False),
    Column("row_id", String(128), nullable=False),
    Column("input", LargeBinary, nullable=False),  # JSON: {"messages", "tools"?, "tool_choice"?, ...}
    Column("dataset_output", LargeBinary, nullable=False),  # JSON: the entry's assistant message
    Column("has_dataset_output", Boolean, nullable=False),
    UniqueConstraint("eval_id", "row_id", name="uq_eval_rows"),
    Index("ix_eval_rows_eval_seq", "eval_id", "seq"),
)

outputs_table = Table(
    "eval_outputs", projections,
    Column("eval_id", String(64), primary_key=True),
    Column("row_id", String(128), primary_key=True),
    Column("model", String(300), primary_key=True),
    Column("output", LargeBinary, nullable=True),  # JSON assistant message; null on error
    Column("error", Text, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("cost_usd", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

judgements_table = Table(
    "eval_judgements", projections,
    Column("eval_id", String(64), primary_key=True),
    Column("row_id", String(128), primary_key=True),
    Column("model", String(300), primary_key=True),
    Column("opponent", String(300), primary_key=True),  # "" for criterion and code judgements
    Column("score", Float, nullable=True),  # null on error
    Column("winner", String(300), nullable=True),
    Column("reasoning", Text, nullable=False),
    Column("error", Text, nullable=True),
    Column("cost_usd", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

NO_DATASET_OUTPUT = "the TEST entry has no dataset output"
_WRITE_TRIES = 3


def now_ms() -> float:
    return time.time() * 1000.0


# ---- views -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalView:
    id: str
    project_id: str
    name: str
    dataset_id: str
    type: EvalType
    models: list[str]  # in the order they were added
    judge_model: str
    instructions: str
    criterion: str
    grader: str
    auto_add_models: bool
    status: Status
    error: str | None
    row_count: int
    done: int
    total: int
    results: Results
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class OutputView:
    model: str
    output_json: bytes  # empty while pending or on error
    error: str | None
    latency_ms: float | None
    cost_usd: float
    done: bool


@dataclass(frozen=True)
class JudgementView:
    model: str
    opponent: str | None
    score: float | None
    winner: str | None
    reasoning: str
    error: str | None
    done: bool


@dataclass(frozen=True)
class RowView:
    row_id: str
    input_json: bytes
    dataset_output_json: bytes
    outputs: list[OutputView]
    judgements: list[JudgementView]


@dataclass(frozen=True)
class Side:
    """One output a judgement looks at: the message, or why there is none."""

    model: str
    output: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True)
class PendingOutput:
    project_id: str
    eval_id: str
    row_id: str
    model: str
    input: dict[str, Any]

    @property
    def key(self) -> tuple[str, ...]:
        return ("output", self.eval_id, self.row_id, self.model)


@dataclass(frozen=True)
class PendingJudgement:
    """A judgement whose outputs are all done (generated or failed): a comparison (head_to_head) or
    one output's verdict or grade."""

    project_id: str
    eval_id: str
    type: EvalType
    judge_model: str
    instructions: str
    criterion: str
    grader: str
    row_id: str
    input: dict[str, Any]
    dataset_output: dict[str, Any]
    first: Side
    second: Side | None  # head_to_head only

    @property
    def key(self) -> tuple[str, ...]:
        return ("judgement", self.eval_id, self.row_id, self.first.model, self.second.model if self.second else "")


def _side(model: str, output: bytes | None, error: str | None, dataset_output: bytes, has_dataset_output: bool
          ) -> Side:
    if model == DATASET_MODEL:
        return Side(model, orjson.loads(dataset_output), None) if has_dataset_output else Side(
            model, None, NO_DATASET_OUTPUT)
    return Side(model, orjson.loads(output) if output is not None else None, error)


def rows_batches(rows: Sequence[ev.EvalRow], max_bytes: int) -> list[list[ev.EvalRow]]:
    """Rows in order, cut into groups whose JSON stays within `max_bytes` (an event must fit the bus);
    a single row larger than that is a group of its own (the servicer refuses such rows first)."""
    out: list[list[ev.EvalRow]] = []
    current: list[ev.EvalRow] = []
    size = 0
    for row in rows:
        n = row_bytes(row)
        if current and size + n > max_bytes:
            out.append(current)
            current, size = [], 0
        current.append(row)
        size += n
    if current:
        out.append(current)
    return out


def row_bytes(row: ev.EvalRow) -> int:
    return len(orjson.dumps(row.model_dump())) + 1


# ---- the store ---------------------------------------------------------------------------------------


class EvalStore(EventSourcedStore):
    def __init__(self, db_url: str) -> None:
        super().__init__(db_url, projections, wal=True)

    def _write_retrying(self, fn: Any) -> Any:
        """One write, tried again when another writer took the aggregate's next version first."""
        for attempt in range(1, _WRITE_TRIES + 1):
            try:
                return self._write(fn)
            except ConcurrencyError:
                if attempt == _WRITE_TRIES:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- reads ----------------------------------------------------------------------------------

    @staticmethod
    def _live(conn: Connection, project_id: str, eval_id: str) -> Any:
        row = conn.execute(select(evals_table).where(
            evals_table.c.id == eval_id, evals_table.c.project_id == project_id,
            evals_table.c.deleted.is_(False))).first()
        if row is None:
            raise eval_not_found(eval_id)
        return row

    @staticmethod
    def _models(conn: Connection, eval_ids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        if not eval_ids:
            return out
        for r in conn.execute(select(models_table.c.eval_id, models_table.c.model).where(
                models_table.c.eval_id.in_(list(eval_ids))).order_by(models_table.c.eval_id,
                                                                      models_table.c.position)):
            out[r.eval_id].append(r.model)
        return out

    @staticmethod
    def _counts(conn: Connection, eval_ids: Sequence[str]) -> dict[str, int]:
        """Units done per eval: outputs and judgements recorded."""
        done: dict[str, int] = defaultdict(int)
        if not eval_ids:
            return done
        for table in (outputs_table, judgements_table):
            for r in conn.execute(select(table.c.eval_id, func.count()).where(
                    table.c.eval_id.in_(list(eval_ids))).group_by(table.c.eval_id)):
                done[r[0]] += int(r[1])
        return done

    @staticmethod
    def _live_results(conn: Connection, eval_id: str, kind: EvalType, models: list[str]) -> Results:
        o, j, r = outputs_table, judgements_table, rows_table
        outputs = [OutputFact(x.row_id, x.model, x.error is None, x.latency_ms, x.cost_usd) for x in conn.execute(
            select(o.c.row_id, o.c.model, o.c.error, o.c.latency_ms, o.c.cost_usd).where(o.c.eval_id == eval_id))]
        judgements = [JudgementFact(x.row_id, x.model, x.opponent or None, x.score) for x in conn.execute(
            select(j.c.row_id, j.c.model, j.c.opponent, j.c.score).where(j.c.eval_id == eval_id))]
        no_output = [x.row_id for x in conn.execute(select(r.c.row_id).where(
            r.c.eval_id == eval_id, r.c.has_dataset_output.is_(False)))]
        return compute(kind, models, outputs, judgements, no_output)

    def _views(self, conn: Connection, rows: Sequence[Any]) -> list[EvalView]:
        ids = [r.id for r in rows]
        models, done = self._models(conn, ids), self._counts(conn, ids)
        views = []
        for r in rows:
            kind = cast(EvalType, r.type)
            listed = models[r.id]
            results = Results.from_json(r.results) if r.results is not None else self._live_results(
                conn, r.id, kind, listed)
            views.append(EvalView(
                id=r.id, project_id=r.project_id, name=r.name, dataset_id=r.dataset_id, type=kind, models=listed,
                judge_model=r.judge_model, instructions=r.instructions, criterion=r.criterion, grader=r.grader,
                auto_add_models=r.auto_add_models, status=cast(Status, r.status), error=r.error,
                row_count=r.row_count, done=done[r.id], total=r.row_count * units_per_row(kind, listed),
                results=results, created_at=r.created_at, updated_at=r.updated_at))
        return views

    def get(self, project_id: str, eval_id: str) -> EvalView:
        with self.engine.connect() as conn:
            return self._views(conn, [self._live(conn, project_id, eval_id)])[0]

    def in_project(self, project_id: str, dataset_id: str | None = None) -> list[EvalView]:
        """The project's evals, newest first (of one dataset when given)."""
        t = evals_table
        where = [t.c.project_id == project_id, t.c.deleted.is_(False)]
        if dataset_id:
            where.append(t.c.dataset_id == dataset_id)
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(t).where(*where).order_by(t.c.created_at.desc(), t.c.id)))
            return self._views(conn, rows)

    def rows(self, project_id: str, eval_id: str, limit: int, offset: int) -> tuple[list[RowView], int]:
        """(rows in TEST-split order with every output and judgement, pending ones included; total rows)."""
        r, o, j = rows_table, outputs_table, judgements_table
        with self.engine.connect() as conn:
            e = self._live(conn, project_id, eval_id)
            models = self._models(conn, [eval_id])[eval_id]
            page = list(conn.execute(select(r).where(r.c.eval_id == eval_id).order_by(r.c.seq)
                                     .limit(limit).offset(offset)))
            ids = [x.row_id for x in page]
            outputs = {(x.row_id, x.model): x for x in conn.execute(select(o).where(
                o.c.eval_id == eval_id, o.c.row_id.in_(ids)))} if ids else {}
            judged = {(x.row_id, x.model, x.opponent): x for x in conn.execute(select(j).where(
                j.c.eval_id == eval_id, j.c.row_id.in_(ids)))} if ids else {}
        kind = cast(EvalType, e.type)
        units: list[tuple[str, str]] = (
            pairs(models) if kind == "head_to_head"
            else [(m, "") for m in models])
        views = []
        for x in page:
            outs = []
            for m in models:
                if m == DATASET_MODEL:
                    outs.append(OutputView(m, x.dataset_output if x.has_dataset_output else b"",
                                           None if x.has_dataset_output else NO_DATASET_OUTPUT, None, 0.0, True))
                    continue
                got = outputs.get((x.row_id, m))
                outs.append(OutputView(m, b"", None, None, 0.0, False) if got is None else OutputView(
                    m, got.output or b"", got.error, got.latency_ms, got.cost_usd, True))
            judgements = []
            for a, b in units:
                jr = judged.get((x.row_id, a, b))
                judgements.append(JudgementView(a, b or None, None, None, "", None, False) if jr is None else
                                  JudgementView(a, b or None, jr.score, jr.winner, jr.reasoning, jr.error, True))
            views.append(RowView(x.row_id, x.input, x.dataset_output, outs, judgements))
        return views, int(e.row_count)

    # ---- creating, adding models, deleting ----------------------------------------------------

    def create(self, project_id: str, spec: Spec, rows: Sequence[ev.EvalRow], *, max_event_bytes: int) -> EvalView:
        """The eval with its rows, in one transaction: `eval.created` then `eval.rows_added` batches."""
        if not rows:
            raise Invalid("an eval needs at least one TEST row")
        eval_id = str(uuid.uuid4())
        now = now_ms()
        created = ev.EvalCreated(
            name=spec.name, dataset_id=spec.dataset_id, type=spec.type, models=spec.models,
            judge_model=spec.judge_model, instructions=spec.instructions, criterion=spec.criterion,
            grader=spec.grader, auto_add_models=spec.auto_add_models, row_count=len(rows))

        def run(conn: Connection) -> EvalView:
            conn.execute(insert(evals_table).values(
                id=eval_id, project_id=project_id, name=spec.name, dataset_id=spec.dataset_id, type=spec.type,
                judge_model=spec.judge_model, instructions=spec.instructions, criterion=spec.criterion,
                grader=spec.grader, auto_add_models=spec.auto_add_models, status="QUEUED", error=None,
                row_count=len(rows), results=None, created_at=now, updated_at=now, deleted=False))
            conn.execute(insert(models_table), [
                {"eval_id": eval_id, "model": m, "position": i, "reason": "request", "added_at": now}
                for i, m in enumerate(spec.models)])
            conn.execute(insert(rows_table), [
                {"eval_id": eval_id, "row_id": r.row_id, "input": orjson.dumps(r.input),
                 "dataset_output": orjson.dumps(r.dataset_output), "has_dataset_output": bool(r.dataset_output)}
                for r in rows])
            items: list[tuple[str, BaseModel]] = [(ev.EVAL_CREATED, created)]
            items.extend((ev.EVAL_ROWS_ADDED, ev.EvalRowsAdded(rows=group)) for group in rows_batches(
                rows, max_event_bytes))
            self._append(conn, project_id, eval_id, items)
            return self._views(conn, [self._live(conn, project_id, eval_id)])[0]

        return cast(EvalView, self._write(run))

    def add_models(self, project_id: str, eval_id: str, models: Sequence[str], *,
                   reason: AddReason = "request") -> EvalView | None:
        """Add models after the eval's own (only their outputs and comparisons will run). A model already
        in the eval is refused (Invalid) when asked for, skipped when added automatically; None when
        nothing was left to add. A completed eval is open again until the new work is done."""
        def run(conn: Connection) -> EvalView | None:
            e = self._live(conn, project_id, eval_id)
            if e.status == "ERROR":
                raise Invalid(f"eval {eval_id} failed ({e.error}); create a new eval instead")
            present = self._models(conn, [eval_id])[eval_id]
            new = [m for m in models if m not in present]
            if reason == "request":
                taken = [m for m in models if m in present]
                if taken:
                    raise Invalid(f"model {taken[0]} is already in this eval")
            if not new:
                return None
            now = now_ms()
            conn.execute(insert(models_table), [
                {"eval_id": eval_id, "model": m, "position": len(present) + i, "reason": reason, "added_at": now}
                for i, m in enumerate(new)])
            status = "QUEUED" if e.status == "COMPLETED" else e.status
            conn.execute(update(evals_table).where(evals_table.c.id == eval_id).values(
                status=status, results=None, updated_at=now))
            self._append(conn, project_id, eval_id, [(ev.EVAL_MODELS_ADDED, ev.EvalModelsAdded(
                models=new, reason=reason))])
            return self._views(conn, [self._live(conn, project_id, eval_id)])[0]

        return cast("EvalView | None", self._write_retrying(run))

    def auto_add_targets(self, project_id: str, dataset_id: str, deployed_at: float) -> list[str]:
        """Ids of the project's live evals on `dataset_id` that add deployed models themselves and
        existed when the model was deployed at `deployed_at` (ms; a replayed old deployment adds
        nothing to an eval created after it)."""
        t = evals_table
        with self.engine.connect() as conn:
            return [r.id for r in conn.execute(select(t.c.id).where(
                t.c.project_id == project_id, t.c.dataset_id == dataset_id, t.c.auto_add_models.is_(True),
                t.c.deleted.is_(False), t.c.status != "ERROR", t.c.created_at <= deployed_at,
            ).order_by(t.c.created_at))]

    def delete(self, project_id: str, eval_id: str) -> None:
        """Delete the eval: its events stay, its projections go and its pending work stops."""
        def run(conn: Connection) -> None:
            e = self._live(conn, project_id, eval_id)
            now = now_ms()
            conn.execute(update(evals_table).where(evals_table.c.id == eval_id).values(
                deleted=True, results=None, updated_at=now))
            for table in (rows_table, outputs_table, judgements_table):
                conn.execute(delete(table).where(table.c.eval_id == eval_id))
            self._append(conn, project_id, eval_id, [(ev.EVAL_DELETED, ev.EvalDeleted(name=e.name))])

        self._write_retrying(run)

    # ---- the runner's work --------------------------------------------------------------------------

    def pending_outputs(self, limit: int) -> list[PendingOutput]:
        """Outputs of open evals not generated yet, oldest evals and rows first."""
        r, e, m, o = rows_table, evals_table, models_table, outputs_table
        query = (
            select(e.c.project_id, e.c.id, r.c.row_id, r.c.input, m.c.model)
            .select_from(
                r.join(e, and_(e.c.id == r.c.eval_id, e.c.deleted.is_(False), e.c.status.in_(OPEN)))
                .join(m, and_(m.c.eval_id == r.c.eval_id, m.c.model != DATASET_MODEL))
                .outerjoin(o, and_(o.c.eval_id == r.c.eval_id, o.c.row_id == r.c.row_id, o.c.model == m.c.model)))
            .where(o.c.eval_id.is_(None))
            .order_by(e.c.created_at, e.c.id, r.c.seq, m.c.position)
            .limit(limit))
        with self.engine.connect() as conn:
            return [PendingOutput(x.project_id, x.id, x.row_id, x.model, orjson.loads(x.input))
                    for x in conn.execute(query)]

    def pending_judgements(self, limit: int) -> list[PendingJudgement]:
        """Judgements of open evals not recorded yet whose outputs are all done, oldest evals first."""
        r, e, j = rows_table, evals_table, judgements_table
        m1, m2 = models_table.alias("m1"), models_table.alias("m2")
        o1, o2 = outputs_table.alias("o1"), outputs_table.alias("o2")
        live = and_(e.c.id == r.c.eval_id, e.c.deleted.is_(False), e.c.status.in_(OPEN))
        common = (e.c.project_id, e.c.id, e.c.type, e.c.judge_model, e.c.instructions, e.c.criterion, e.c.grader,
                  r.c.row_id, r.c.input, r.c.dataset_output, r.c.has_dataset_output)

        def output_of(alias: Any, model: Any) -> Any:
            return and_(alias.c.eval_id == r.c.eval_id, alias.c.row_id == r.c.row_id, alias.c.model == model)

        def ready(alias: Any, model: Any) -> Any:
            return or_(model == DATASET_MODEL, alias.c.eval_id.is_not(None))

        compared = (
            select(*common, m1.c.model.label("a"), o1.c.output.label("a_out"), o1.c.error.label("a_err"),
                   m2.c.model.label("b"), o2.c.output.label("b_out"), o2.c.error.label("b_err"))
            .select_from(
                r.join(e, and_(live, e.c.type == "head_to_head"))
                .join(m1, m1.c.eval_id == r.c.eval_id)
                .join(m2, and_(m2.c.eval_id == r.c.eval_id, m1.c.position < m2.c.position))
                .outerjoin(o1, output_of(o1, m1.c.model))
                .outerjoin(o2, output_of(o2, m2.c.model))
                .outerjoin(j, and_(j.c.eval_id == r.c.eval_id, j.c.row_id == r.c.row_id, j.c.model == m1.c.model,
                                   j.c.opponent == m2.c.model)))
            .where(j.c.eval_id.is_(None), ready(o1, m1.c.model), ready(o2, m2.c.model))
            .order_by(e.c.created_at, e.c.id, r.c.seq, m1.c.position, m2.c.position)
            .limit(limit))
        single = (
            select(*common, m1.c.model.label("a"), o1.c.output.label("a_out"), o1.c.error.label("a_err"))
            .select_from(
                r.join(e, and_(live, e.c.type.in_(("criterion", "code"))))
                .join(m1, m1.c.eval_id == r.c.eval_id)
                .outerjoin(o1, output_of(o1, m1.c.model))
                .outerjoin(j, and_(j.c.eval_id == r.c.eval_id, j.c.row_id == r.c.row_id, j.c.model == m1.c.model,
                                   j.c.opponent == "")))
            .where(j.c.eval_id.is_(None), ready(o1, m1.c.model))
            .order_by(e.c.created_at, e.c.id, r.c.seq, m1.c.position)
            .limit(limit))
        out: list[PendingJudgement] = []
        with self.engine.connect() as conn:
            for query, paired in ((compared, True), (single, False)):
                for x in conn.execute(query):
                    first = _side(x.a, x.a_out, x.a_err, x.dataset_output, x.has_dataset_output)
                    second = _side(x.b, x.b_out, x.b_err, x.dataset_output, x.has_dataset_output) if paired else None
                    out.append(PendingJudgement(
                        x.project_id, x.id, cast(EvalType, x.type), x.judge_model, x.instructions, x.criterion,
                        x.grader, x.row_id, orjson.loads(x.input), orjson.loads(x.dataset_output), first, second))
        return out

    @staticmethod
    def _open(conn: Connection, eval_id: str) -> Any:
        return conn.execute(select(evals_table).where(
            evals_table.c.id == eval_id, evals_table.c.deleted.is_(False), evals_table.c.status.in_(OPEN))).first()

    @staticmethod
    def _running(conn: Connection, e: Any, now: float) -> None:
        """The eval's first recorded unit makes it RUNNING (later ones change nothing here)."""
        if e.status == "QUEUED":
            conn.execute(update(evals_table).where(evals_table.c.id == e.id).values(
                status="RUNNING", updated_at=now))

    def record_output(self, eval_id: str, output: ev.EvalOutputGenerated) -> bool:
        """Record the output once; False (writing nothing) when it is already recorded, or the eval was
        deleted or closed meanwhile, or the model is not in it."""
        def run(conn: Connection) -> bool:
            e = self._open(conn, eval_id)
            if e is None or conn.execute(select(models_table.c.model).where(
                    models_table.c.eval_id == eval_id, models_table.c.model == output.model)).first() is None:
                return False
            o = outputs_table
            seen = conn.execute(select(o.c.eval_id).where(o.c.eval_id == eval_id, o.c.row_id == output.row_id,
                                                          o.c.model == output.model)).first()
            if seen is not None:
                return False
            now = now_ms()
            conn.execute(insert(o).values(
                eval_id=eval_id, row_id=output.row_id, model=output.model,
                output=orjson.dumps(output.output) if output.output is not None else None, error=output.error,
                latency_ms=output.latency_ms, cost_usd=output.cost_usd or 0.0, created_at=now))
            self._running(conn, e, now)
            self._append(conn, e.project_id, eval_id, [(ev.EVAL_OUTPUT_GENERATED, output)])
            return True

        return self._record(run)

    def record_judgement(self, eval_id: str, judgement: ev.EvalJudgementRecorded) -> bool:
        """Record the judgement once; False (writing nothing) when it is already recorded, or the eval
        was deleted or closed meanwhile."""
        def run(conn: Connection) -> bool:
            e = self._open(conn, eval_id)
            if e is None:
                return False
            j = judgements_table
            opponent = judgement.opponent or ""
            seen = conn.execute(select(j.c.eval_id).where(
                j.c.eval_id == eval_id, j.c.row_id == judgement.row_id, j.c.model == judgement.model,
                j.c.opponent == opponent)).first()
            if seen is not None:
                return False
            now = now_ms()
            conn.execute(insert(j).values(
                eval_id=eval_id, row_id=judgement.row_id, model=judgement.model, opponent=opponent,
                score=judgement.score, winner=judgement.winner, reasoning=judgement.reasoning,
                error=judgement.error, cost_usd=judgement.cost_usd or 0.0, created_at=now))
            self._running(conn, e, now)
            self._append(conn, e.project_id, eval_id, [(ev.EVAL_JUDGEMENT_RECORDED, judgement)])
            return True

        return self._record(run)

    def _record(self, run: Any) -> bool:
        try:
            return bool(self._write_retrying(run))
        except IntegrityError:  # another process recorded the same unit first: nothing was written here
            return False

    def complete_if_done(self, eval_id: str) -> bool:
        """Mark the eval COMPLETED (`eval.completed` with the results) once every unit is recorded;
        False when work is left or it is not open."""
        def run(conn: Connection) -> bool:
            e = self._open(conn, eval_id)
            if e is None:
                return False
            kind = cast(EvalType, e.type)
            models = self._models(conn, [eval_id])[eval_id]
            if self._counts(conn, [eval_id])[eval_id] < e.row_count * units_per_row(kind, models):
                return False
            results = self._live_results(conn, eval_id, kind, models)
            conn.execute(update(evals_table).where(evals_table.c.id == eval_id).values(
                status="COMPLETED", results=results.to_json(), updated_at=now_ms()))
            self._append(conn, e.project_id, eval_id, [(ev.EVAL_COMPLETED, ev.EvalCompleted(
                results=results.to_json()["results"]))])
            return True

        return bool(self._write_retrying(run))

    def fail(self, eval_id: str, error: str) -> bool:
        """The eval as a whole cannot run (its criterion went away): ERROR with why; False when it is
        not open."""
        def run(conn: Connection) -> bool:
            e = self._open(conn, eval_id)
            if e is None:
                return False
            conn.execute(update(evals_table).where(evals_table.c.id == eval_id).values(
                status="ERROR", error=error, updated_at=now_ms()))
            self._append(conn, e.project_id, eval_id, [(ev.EVAL_FAILED, ev.EvalFailed(error=error))])
            return True

        return bool(self._write_retrying(run))

    def open_evals(self) -> list[str]:
        """Ids of the evals still QUEUED or RUNNING."""
        t = evals_table
        with self.engine.connect() as conn:
            return [r.id for r in conn.execute(select(t.c.id).where(
                t.c.deleted.is_(False), t.c.status.in_(OPEN)).order_by(t.c.created_at))]
