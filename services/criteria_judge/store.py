"""criteria-judge's state: criterion events plus SQL projections, one transaction per change.

Each criterion is an aggregate whose events (its versions, alignment rows, labels and the judge's
verdicts on those rows) carry consecutive versions; every write appends its events, updates the
projections and fills the outbox in one transaction (SQLite embedded, PostgreSQL in production), so a
change is kept whole or not at all. A name is unique among a project's live criteria (checked in the
write and backed by a partial unique index); a deleted criterion keeps its rows and events but frees
its name. Verdicts are keyed by (row, version): recording one twice is a no-op, which is what lets
the background judging resume after a restart without judging a pair twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel
from refinery.events import criteria as ev
from refinery.stores.eventstore import EventSourcedStore
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
    and_,
    false,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from criteria_judge.definitions import (
    MAX_ALIGNMENT_ROWS,
    Conflict,
    Invalid,
    NotFound,
    criterion_not_found,
    version_not_found,
)

projections = MetaData()

criteria_table = Table(
    "criteria", projections,
    Column("id", String(64), primary_key=True),
    Column("project_id", String(64), nullable=False, index=True),
    Column("name", String(64), nullable=False),
    Column("latest_version", Integer, nullable=False),
    Column("row_count", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
)
Index("uq_criteria_live_name", criteria_table.c.project_id, criteria_table.c.name, unique=True,
      sqlite_where=criteria_table.c.deleted == false(), postgresql_where=criteria_table.c.deleted == false())

versions_table = Table(
    "criterion_versions", projections,
    Column("criterion_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("prompt", Text, nullable=False),
    Column("judge_model", String(300), nullable=False),
    Column("templated_variables", JSON, nullable=False),
    Column("reward_model", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)

rows_table = Table(
    "alignment_rows", projections,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # insertion order
    Column("id", String(64), nullable=False, unique=True),
    Column("criterion_id", String(64), nullable=False),
    Column("input", LargeBinary, nullable=False),  # JSON: {"messages", "tools"?, "tool_choice"?}
    Column("output", LargeBinary, nullable=False),  # JSON: the assistant message
    Column("human_judgement", String(8), nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_alignment_rows_criterion_seq", "criterion_id", "seq"),
)

judgements_table = Table(
    "judgements", projections,
    Column("row_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("criterion_id", String(64), nullable=False),
    Column("judgement", String(8), nullable=False),
    Column("score", Float, nullable=False),
    Column("explanation", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_judgements_criterion_version", "criterion_id", "version"),
)


def now_ms() -> float:
    return time.time() * 1000.0


@dataclass(frozen=True)
class VersionRow:
    spec: ev.CriterionVersionSpec
    created_at: float


@dataclass(frozen=True)
class CriterionView:
    id: str
    project_id: str
    name: str
    created_at: float
    updated_at: float
    versions: list[VersionRow]  # oldest first
    alignment_rows: int

    @property
    def latest(self) -> VersionRow:
        return self.versions[-1]

    def version(self, number: int) -> VersionRow | None:
        return next((v for v in self.versions if v.spec.version == number), None)


@dataclass(frozen=True)
class JudgementView:
    judgement: str
    score: float
    explanation: str | None
    error: str | None


@dataclass(frozen=True)
class RowView:
    id: str
    input_json: bytes
    output_json: bytes
    human_judgement: str | None
    created_at: float
    judge: JudgementView | None


@dataclass(frozen=True)
class NewRow:
    input: dict[str, Any]
    output: dict[str, Any]
    human_judgement: ev.HumanJudgement | None = None


@dataclass(frozen=True)
class PendingPair:
    """An alignment row a live criterion version has not judged yet."""

    project_id: str
    criterion_id: str
    name: str
    spec: ev.CriterionVersionSpec
    row_id: str
    input_json: bytes
    output_json: bytes


def _spec_of(row: Any) -> ev.CriterionVersionSpec:
    return ev.CriterionVersionSpec(version=row.version, prompt=row.prompt, judge_model=row.judge_model,
                                   templated_variables=list(row.templated_variables), reward_model=row.reward_model)


def _event_row(row_id: str, new: NewRow) -> ev.AlignmentRow:
    return ev.AlignmentRow.model_validate({"row_id": row_id, "input": new.input, "output": new.output,
                                           "human_judgement": new.human_judgement})


def batches(rows: Sequence[ev.AlignmentRow], max_bytes: int) -> list[list[ev.AlignmentRow]]:
    """Rows in order, cut into groups whose JSON stays within `max_bytes` (an event must fit the bus);
    a single row larger than that is a group of its own (the caller bounds rows below it)."""
    out: list[list[ev.AlignmentRow]] = []
    current: list[ev.AlignmentRow] = []
    size = 0
    for row in rows:
        n = len(orjson.dumps(row.model_dump())) + 1
        if current and size + n > max_bytes:
            out.append(current)
            current, size = [], 0
        current.append(row)
        size += n
    if current:
        out.append(current)
    return out


class CriteriaStore(EventSourcedStore):
    def __init__(self, db_url: str) -> None:
        super().__init__(db_url, projections, wal=True)

    # ---- reads --------------------------------------------------------------------------------

    @staticmethod
    def _live(conn: Connection, project_id: str, name: str) -> Any:
        row = conn.execute(select(criteria_table).where(
            criteria_table.c.project_id == project_id, criteria_table.c.name == name,
            criteria_table.c.deleted.is_(False))).first()
        if row is None:
            raise criterion_not_found(name)
        return row

    @staticmethod
    def _view(conn: Connection, row: Any) -> CriterionView:
        versions = [VersionRow(_spec_of(v), v.created_at) for v in conn.execute(
            select(versions_table).where(versions_table.c.criterion_id == row.id).order_by(versions_table.c.version))]
        return CriterionView(row.id, row.project_id, row.name, row.created_at, row.updated_at, versions,
                             row.row_count)

    def get(self, project_id: str, name: str) -> CriterionView:
        with self.engine.connect() as conn:
            return self._view(conn, self._live(conn, project_id, name))

    def find(self, project_id: str, name: str) -> CriterionView | None:
        try:
            return self.get(project_id, name)
        except NotFound:
            return None

    def in_project(self, project_id: str) -> list[CriterionView]:
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(criteria_table).where(
                criteria_table.c.project_id == project_id, criteria_table.c.deleted.is_(False),
            ).order_by(criteria_table.c.created_at, criteria_table.c.name)))
            return [self._view(conn, r) for r in rows]

    # ---- criteria and versions --------------------------------------------------------------------

    def create(self, project_id: str, name: str, spec: ev.CriterionVersionSpec) -> CriterionView:
        """Version 1 of a new criterion; Conflict when a live criterion of the project has the name."""
        criterion_id = str(uuid.uuid4())
        now = now_ms()
        spec = spec.model_copy(update={"version": 1})

        def run(conn: Connection) -> CriterionView:
            taken = conn.execute(select(criteria_table.c.id).where(
                criteria_table.c.project_id == project_id, criteria_table.c.name == name,
                criteria_table.c.deleted.is_(False))).first()
            if taken:
                raise Conflict(f"a criterion named {name!r} already exists in this project")
            conn.execute(insert(criteria_table).values(
                id=criterion_id, project_id=project_id, name=name, latest_version=1, row_count=0,
                created_at=now, updated_at=now, deleted=False))
            self._insert_version(conn, criterion_id, spec, now)
            self._append(conn, project_id, criterion_id,
                         [(ev.CRITERION_CREATED, ev.CriterionCreated(name=name, first_version=spec))])
            return self._view(conn, self._live(conn, project_id, name))

        try:
            return self._write(run)
        except IntegrityError as exc:  # the unique index: another process's create won; nothing was written
            raise Conflict(f"a criterion named {name!r} already exists in this project") from exc

    @staticmethod
    def _insert_version(conn: Connection, criterion_id: str, spec: ev.CriterionVersionSpec, now: float) -> None:
        conn.execute(insert(versions_table).values(
            criterion_id=criterion_id, version=spec.version, prompt=spec.prompt, judge_model=spec.judge_model,
            templated_variables=list(spec.templated_variables), reward_model=spec.reward_model, created_at=now))

    def publish(self, project_id: str, name: str, based_on: int, spec: ev.CriterionVersionSpec) -> CriterionView:
        """Version `based_on + 1`, decided from version `based_on`; Conflict when another version was
        published since (the caller decides again from the new latest)."""
        now = now_ms()

        def run(conn: Connection) -> CriterionView:
            row = self._live(conn, project_id, name)
            if row.latest_version != based_on:
                raise Conflict(f"criterion {name} changed meanwhile (now at v{row.latest_version})")
            new = spec.model_copy(update={"version": based_on + 1})
            self._insert_version(conn, row.id, new, now)
            conn.execute(update(criteria_table).where(criteria_table.c.id == row.id).values(
                latest_version=new.version, updated_at=now))
            self._append(conn, project_id, row.id,
                         [(ev.CRITERION_VERSION_PUBLISHED, ev.CriterionVersionPublished(name=name, spec=new))])
            return self._view(conn, self._live(conn, project_id, name))

        return self._write(run)

    def delete(self, project_id: str, name: str) -> CriterionView:
        def run(conn: Connection) -> CriterionView:
            row = self._live(conn, project_id, name)
            view = self._view(conn, row)
            conn.execute(update(criteria_table).where(criteria_table.c.id == row.id).values(
                deleted=True, updated_at=now_ms()))
            self._append(conn, project_id, row.id, [(ev.CRITERION_DELETED, ev.CriterionDeleted(name=name))])
            return view

        return self._write(run)

    # ---- alignment rows -----------------------------------------------------------------------------

    def add_rows(self, project_id: str, name: str, rows: Sequence[NewRow], *, source: Literal["jsonl", "dataset"],
                 max_event_bytes: int, max_rows: int = MAX_ALIGNMENT_ROWS, dataset_id: str | None = None,
                 output_model: str | None = None) -> int:
        """Append rows in order (one transaction: all of them or none), in as many
        `alignment_set.rows_added` events as keep each within `max_event_bytes`.

        An alignment set holds at most `max_rows` rows (every version judges every row, so the set
        bounds what each version costs): an addition that would pass it is refused whole, and the
        count is raised by a conditional update, so concurrent additions cannot pass it together."""
        if not rows:
            return 0
        now = now_ms()
        with_ids = [_event_row(str(uuid.uuid4()), r) for r in rows]

        def run(conn: Connection) -> int:
            criterion = self._live(conn, project_id, name)
            counted = conn.execute(update(criteria_table).where(
                criteria_table.c.id == criterion.id, criteria_table.c.row_count + len(with_ids) <= max_rows,
            ).values(row_count=criteria_table.c.row_count + len(with_ids), updated_at=now))
            if counted.rowcount != 1:
                held = conn.execute(select(criteria_table.c.row_count).where(
                    criteria_table.c.id == criterion.id)).scalar_one()
                raise Invalid(f"criterion {name}'s alignment set holds {held} rows; adding {len(with_ids)} would "
                              f"pass its limit of {max_rows} rows")
            for r in with_ids:
                conn.execute(insert(rows_table).values(
                    id=r.row_id, criterion_id=criterion.id, input=orjson.dumps(r.input),
                    output=orjson.dumps(r.output), human_judgement=r.human_judgement, created_at=now))
            items: list[tuple[str, BaseModel]] = [
                (ev.ALIGNMENT_ROWS_ADDED, ev.AlignmentRowsAdded(
                    source=source, rows=group, dataset_id=dataset_id, output_model=output_model))
                for group in batches(with_ids, max_event_bytes)]
            self._append(conn, project_id, criterion.id, items)
            return len(with_ids)

        return self._write(run)

    @staticmethod
    def _row_view(r: Any) -> RowView:
        judge = None if r.judgement is None else JudgementView(r.judgement, r.score, r.explanation, r.error)
        return RowView(r.id, r.input, r.output, r.human_judgement, r.created_at, judge)

    @staticmethod
    def _rows_query(criterion_id: str, version: int) -> Any:
        j = judgements_table
        return (select(rows_table.c.id, rows_table.c.input, rows_table.c.output, rows_table.c.human_judgement,
                       rows_table.c.created_at, j.c.judgement, j.c.score, j.c.explanation, j.c.error)
                .select_from(rows_table.outerjoin(j, and_(j.c.row_id == rows_table.c.id, j.c.version == version)))
                .where(rows_table.c.criterion_id == criterion_id))

    def rows(self, project_id: str, name: str, version: int | None, limit: int, offset: int
             ) -> tuple[list[RowView], int, int]:
        """(rows in insertion order with `version`'s verdicts, total rows, the version); `version`
        None means the latest. NotFound names an unknown version as the caller wrote it (`v<N>`)."""
        with self.engine.connect() as conn:
            criterion = self._live(conn, project_id, name)
            number = self._version_number(conn, criterion, version)
            result = conn.execute(self._rows_query(criterion.id, number).order_by(rows_table.c.seq)
                                  .limit(limit).offset(offset))
            return [self._row_view(r) for r in result], criterion.row_count, number

    @staticmethod
    def _version_number(conn: Connection, criterion: Any, version: int | None) -> int:
        if version is None:
            return int(criterion.latest_version)
        exists = conn.execute(select(versions_table.c.version).where(
            versions_table.c.criterion_id == criterion.id, versions_table.c.version == version)).first()
        if exists is None:
            raise version_not_found(f"v{version}", criterion.name)
        return version

    def label(self, project_id: str, name: str, row_id: str, label: ev.HumanJudgement | None) -> RowView:
        """Set (or clear, with None) a row's human label; the same label again writes nothing."""
        def run(conn: Connection) -> RowView:
            criterion = self._live(conn, project_id, name)
            row = conn.execute(select(rows_table).where(
                rows_table.c.id == row_id, rows_table.c.criterion_id == criterion.id)).first()
            if row is None:
                raise NotFound(f"alignment row {row_id} not found in criterion {name}")
            if row.human_judgement != label:
                conn.execute(update(rows_table).where(rows_table.c.id == row_id).values(human_judgement=label))
                conn.execute(update(criteria_table).where(criteria_table.c.id == criterion.id).values(
                    updated_at=now_ms()))
                self._append(conn, project_id, criterion.id, [(ev.ALIGNMENT_ROW_LABELED, ev.AlignmentRowLabeled(
                    row_id=row_id, human_judgement=label))])
            result = conn.execute(self._rows_query(criterion.id, criterion.latest_version)
                                  .where(rows_table.c.id == row_id)).one()
            return self._row_view(result)

        return self._write(run)

    def labels_and_verdicts(self, project_id: str, name: str, version: int | None
                            ) -> tuple[list[tuple[str | None, str | None]], int]:
        """(human label, judge verdict) of every row for `version` (None: the latest), and the version."""
        with self.engine.connect() as conn:
            criterion = self._live(conn, project_id, name)
            number = self._version_number(conn, criterion, version)
            result = conn.execute(self._rows_query(criterion.id, number))
            return [(r.human_judgement, r.judgement) for r in result], number

    # ---- background judging --------------------------------------------------------------------------

    def pending(self, limit: int) -> list[PendingPair]:
        """(row, version) pairs of live criteria with no verdict yet, oldest rows first."""
        j, v, c, r = judgements_table, versions_table, criteria_table, rows_table
        query = (
            select(c.c.project_id, c.c.id.label("criterion_id"), c.c.name, v.c.version, v.c.prompt, v.c.judge_model,
                   v.c.templated_variables, v.c.reward_model, r.c.id.label("row_id"), r.c.input, r.c.output)
            .select_from(
                r.join(c, and_(c.c.id == r.c.criterion_id, c.c.deleted.is_(False)))
                .join(v, v.c.criterion_id == r.c.criterion_id)
                .outerjoin(j, and_(j.c.row_id == r.c.id, j.c.version == v.c.version)))
            .where(j.c.row_id.is_(None))
            .order_by(r.c.seq, v.c.version)
            .limit(limit))
        with self.engine.connect() as conn:
            return [PendingPair(x.project_id, x.criterion_id, x.name, _spec_of(x), x.row_id, x.input, x.output)
                    for x in conn.execute(query)]

    def record_judgement(self, pair: PendingPair, verdict: ev.JudgementRecorded) -> bool:
        """Record the verdict once; False (writing nothing) when the pair already has one or its
        criterion was deleted meanwhile."""
        def run(conn: Connection) -> bool:
            live = conn.execute(select(criteria_table.c.id).where(
                criteria_table.c.id == pair.criterion_id, criteria_table.c.deleted.is_(False))).first()
            if live is None:
                return False
            seen = conn.execute(select(judgements_table.c.row_id).where(
                judgements_table.c.row_id == verdict.row_id, judgements_table.c.version == verdict.version)).first()
            if seen is not None:
                return False
            conn.execute(insert(judgements_table).values(
                row_id=verdict.row_id, version=verdict.version, criterion_id=pair.criterion_id,
                judgement=verdict.judgement, score=verdict.score, explanation=verdict.explanation,
                error=verdict.error, created_at=now_ms()))
            self._append(conn, pair.project_id, pair.criterion_id, [(ev.JUDGEMENT_RECORDED, verdict)])
            return True

        return self._write(run)

    def judgement_count(self, criterion_ids: Iterable[str] | None = None) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(judgements_table)
            if criterion_ids is not None:
                query = query.where(judgements_table.c.criterion_id.in_(list(criterion_ids)))
            return int(conn.execute(query).scalar_one())
