"""A dataset's rules: pruning rules (text cut from prompts when training) and import rules
(standing imports: every new request log matching the filters becomes an entry)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel
from refinery.events import datasets as ev
from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.engine import Connection

from dataset.store.errors import Invalid, NotFound
from dataset.store.part import StorePart
from dataset.store.tables import import_rules_table, now_ms, pruning_rules_table


class _DatasetRules(StorePart):
    """What both kinds of rule share: one row per rule, keyed by id within its dataset."""

    def _delete(self, table: Table, what: str, project_id: str, dataset_id: str, rule_id: str,
                event: tuple[str, BaseModel]) -> None:
        """Drop one of the dataset's rules from `table`, with its event (NotFound: no such rule there)."""
        def run(conn: Connection) -> None:
            self._dataset(conn, project_id, dataset_id)
            n = conn.execute(delete(table).where(table.c.id == rule_id, table.c.dataset_id == dataset_id)).rowcount
            if not n:
                raise NotFound(f"{what} {rule_id} not found")
            self._append(conn, project_id, dataset_id, [event])

        self._write(run)


class PruningRules(_DatasetRules):
    def add(self, project_id: str, dataset_id: str, text: str) -> dict[str, Any]:
        if not text:
            raise Invalid("a pruning rule needs non-empty text")
        rule_id = str(uuid.uuid4())
        now = now_ms()

        def run(conn: Connection) -> dict[str, Any]:
            self._dataset(conn, project_id, dataset_id)
            conn.execute(insert(pruning_rules_table).values(
                id=rule_id, dataset_id=dataset_id, text=text.encode(), created_at=now))
            self._append(conn, project_id, dataset_id, [
                (ev.PRUNING_RULE_ADDED, ev.PruningRuleAdded(rule_id=rule_id, text=text))])
            return {"id": rule_id, "text": text, "created_at": now}

        return self._write(run)

    def for_dataset(self, project_id: str, dataset_id: str) -> list[dict[str, Any]]:
        """The dataset's pruning rules, oldest first (the order they apply in)."""
        with self.engine.connect() as conn:
            self._dataset(conn, project_id, dataset_id)
            rows = conn.execute(select(pruning_rules_table).where(
                pruning_rules_table.c.dataset_id == dataset_id).order_by(pruning_rules_table.c.created_at)).all()
        return [{"id": r.id, "text": r.text.decode(), "created_at": r.created_at} for r in rows]

    def delete(self, project_id: str, dataset_id: str, rule_id: str) -> None:
        self._delete(pruning_rules_table, "pruning rule", project_id, dataset_id, rule_id,
                     (ev.PRUNING_RULE_DELETED, ev.PruningRuleDeleted(rule_id=rule_id)))


class ImportRules(_DatasetRules):
    def add(self, project_id: str, dataset_id: str, filters: list[dict[str, str]]) -> str:
        rule_id = str(uuid.uuid4())

        def run(conn: Connection) -> str:
            self._dataset(conn, project_id, dataset_id)
            conn.execute(insert(import_rules_table).values(
                id=rule_id, dataset_id=dataset_id, project_id=project_id, filters=filters, created_at=now_ms(),
                imported=0))
            self._append(conn, project_id, dataset_id, [
                (ev.IMPORT_RULE_CREATED, ev.ImportRuleCreated(rule_id=rule_id, filters=filters))])
            return rule_id

        return self._write(run)

    def in_project(self, project_id: str, dataset_id: str | None = None) -> list[dict[str, Any]]:
        """The project's rules (only `dataset_id`'s when given), oldest first, with what each imported."""
        with self.engine.connect() as conn:
            where = [import_rules_table.c.project_id == project_id]
            if dataset_id is not None:
                self._dataset(conn, project_id, dataset_id)
                where.append(import_rules_table.c.dataset_id == dataset_id)
            rows = conn.execute(select(import_rules_table).where(*where).order_by(
                import_rules_table.c.created_at)).all()
        return [{"id": r.id, "dataset_id": r.dataset_id, "filters": r.filters, "created_at": r.created_at,
                 "imported": r.imported} for r in rows]

    def by_project(self) -> dict[str, list[dict[str, Any]]]:
        """Every standing rule by project: what the log consumer matches against."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(select(import_rules_table)).all():
                out.setdefault(r.project_id, []).append(
                    {"id": r.id, "dataset_id": r.dataset_id, "filters": r.filters})
        return out

    def delete(self, project_id: str, dataset_id: str, rule_id: str) -> None:
        self._delete(import_rules_table, "import rule", project_id, dataset_id, rule_id,
                     (ev.IMPORT_RULE_DELETED, ev.ImportRuleDeleted(rule_id=rule_id)))

    @staticmethod
    def count_imports(conn: Connection, rule_id: str, n: int) -> None:
        """Add `n` to the rule's imported count, inside the transaction that added the entries."""
        conn.execute(update(import_rules_table).where(import_rules_table.c.id == rule_id).values(
            imported=import_rules_table.c.imported + n))
