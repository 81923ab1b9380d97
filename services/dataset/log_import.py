"""Import from request logs: once (a search's matches, read from log-ingest) and standing
rules (every new matching `request_log.recorded` event, as it arrives on the bus).

Duplicates are skipped by source log id (unique per dataset), which also makes the overlap
between a rule's backfill and its live stream harmless. The consumer stores its offsets in
the same transaction as the entries they produced, so a restart neither loses nor repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
from aiokafka import AIOKafkaConsumer
from refinery.bus.dead_letters import DeadLetterSink
from refinery.bus.follower import assign_all, fetch, positions_after, until_done
from refinery.bus.progress import PartitionProgress, follower_progress
from refinery.bus.retention import DATASET_RULES_GROUP, PositionCommitter
from refinery.events.request_logs import RECORDED_TYPES, data_metadata
from refinery.rpc import logs_pb2, logs_pb2_grpc
from refinery.stores import eventstore
from refinery.wire.entries import entry_from_log

from dataset.executors import IMPORT_RULES, IMPORTS
from dataset.log_filters import errored, log_view, matches
from dataset.store import DatasetStore, NewEntry

log = logging.getLogger("refinery.dataset")

IMPORT_BATCH = 1000
OFFSETS_SAVE_INTERVAL_S = 1.0


@dataclass
class ImportCounts:
    imported: int = 0
    skipped_errored: int = 0
    skipped_duplicates: int = 0
    skipped_invalid: int = 0


def filters_to_dicts(filters: Iterable[logs_pb2.Filter]) -> list[dict[str, str]]:
    return [{"field": f.field, "value": f.value, "value_type": f.value_type or "string",
             **({"op": f.op} if f.op else {})} for f in filters]


def dicts_to_filters(filters: list[dict[str, str]]) -> list[logs_pb2.Filter]:
    return [logs_pb2.Filter(field=f["field"], value=f["value"], value_type=f.get("value_type", "string"),
                            op=f.get("op", "")) for f in filters]


async def import_once(
    store: DatasetStore, logs: logs_pb2_grpc.LogStoreStub, project_id: str, dataset_id: str,
    filters: list[logs_pb2.Filter], after: list[logs_pb2.Position],
) -> ImportCounts:
    """Every stored log matching `filters` (bound to `after`) becomes an entry, in batches."""
    counts = ImportCounts()
    call = logs.Export(logs_pb2.ExportRequest(
        project_id=project_id, after=after, filters=filters, view="entries"), timeout=3600)
    batch: list[NewEntry] = []
    rest = b""

    async def flush() -> None:
        nonlocal batch
        if batch:
            result = await IMPORTS.run(store.entries.add, project_id, dataset_id, batch, "logs")
            counts.imported += result.created
            counts.skipped_duplicates += result.duplicates
        batch = []

    async for chunk in call:
        data = rest + chunk.jsonl
        lines = data.split(b"\n")
        rest = lines.pop()
        for line in lines:
            if not line:
                continue
            item = orjson.loads(line)
            if errored(item):
                counts.skipped_errored += 1
                continue
            try:
                entry = entry_from_log(item)
            except (TypeError, ValueError, AttributeError, KeyError):  # a reported shape that cannot train
                entry = None
            if entry is None:
                counts.skipped_invalid += 1
                continue
            batch.append(NewEntry(entry, source_log_id=item["id"]))
            if len(batch) >= IMPORT_BATCH:
                await flush()
    await flush()
    return counts


class RuleConsumer:
    """Follows the request-log topic and feeds logs matching standing rules into datasets.

    It assigns itself every partition (one dataset service owns the rules), keyed reads let
    it skip projects without rules without decoding their events, and `fence()` tells a new
    rule's backfill where the live stream takes over.
    """

    def __init__(self, store: DatasetStore, bootstrap: str, topic: str, fetch_wait_ms: int = 20,
                 dead_letters: DeadLetterSink | None = None) -> None:
        self._store = store
        self._dead_letters = dead_letters
        self._loop: asyncio.AbstractEventLoop | None = None
        self._topic = topic
        self._consumer = AIOKafkaConsumer(
            # Partitions are assigned, not balanced: the group only holds the commits retention reads.
            bootstrap_servers=bootstrap, group_id=DATASET_RULES_GROUP, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=fetch_wait_ms,
            max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
        )
        self._rules: dict[str, list[dict[str, Any]]] = {}
        self._positions: dict[int, int] = {}
        self.set_aside = 0  # records set aside as dead letters since start
        self._lock = asyncio.Lock()  # held while a fetched batch is applied
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.imported_total = 0
        self._offsets_saved_at = 0.0
        self._saved: dict[int, int] = {}  # offsets committed to our own database
        self._committer = PositionCommitter(self._consumer, topic)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._consumer.start()
        offsets = await asyncio.to_thread(self._store.load_offsets, self._topic)
        await assign_all(self._consumer, self._topic, offsets)
        self._positions = dict(offsets)
        self._rules = await asyncio.to_thread(self._store.import_rules.by_project)
        self._ready.set()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._committer.close()
        with contextlib.suppress(Exception):
            await self._consumer.stop()

    async def fence(self) -> list[logs_pb2.Position]:
        """Reload the rules between two batches; every record at or past the returned positions
        will be matched against them, so a backfill bound to these positions leaves no gap."""
        async with self._lock:
            self._rules = await asyncio.to_thread(self._store.import_rules.by_project)
            return [logs_pb2.Position(partition=p, offset=o) for p, o in self._positions.items()]

    async def reload(self) -> None:
        async with self._lock:
            self._rules = await asyncio.to_thread(self._store.import_rules.by_project)

    async def _run(self) -> None:
        while True:
            batches = await fetch(self._consumer, 5000)
            if not batches:
                if self._positions != self._saved:  # idle: save what the throttle held back
                    try:
                        async with self._lock:
                            reached = dict(self._positions)
                            await asyncio.to_thread(self._store.save_offsets, self._topic, reached)
                            self._saved.update(reached)
                    except Exception:  # a shortcut only (see _apply): try again when next idle
                        log.exception("saving the rule follower's offsets failed; will retry")
                        await asyncio.sleep(1.0)
                    await self._committer.stored(dict(self._saved))
                continue
            async with self._lock:
                reached = positions_after(batches)
                await until_done("applying request logs to import rules", IMPORT_RULES.run, self._apply,
                                 batches, reached)
                self._positions.update(reached)
            await self._committer.stored(dict(self._saved))

    def _apply(self, batches: dict, reached: dict[int, int]) -> None:
        """Match a fetched batch against the rules and add the entries (in a worker thread).

        Logs are read defensively: one whose shape the rules cannot read (`reqPayload.messages: 5`)
        is set aside as a dead letter with the error, and the batch goes on. A dataset write the
        store refuses is bisected down to the entry at fault (see `_add`)."""
        by_dataset: dict[tuple[str, str], list[tuple[NewEntry, str, Any]]] = {}
        rules = self._rules
        for msgs in batches.values():
            for msg in msgs:
                project_id = (msg.key or b"").decode(errors="replace")
                project_rules = rules.get(project_id)
                if not project_rules:
                    continue
                try:
                    matched = self._match(project_id, project_rules, msg)
                except Exception as exc:
                    self._set_aside(msg, f"matching import rules failed: {type(exc).__name__}: {exc}")
                    continue
                for dataset_id, entry, rule_id in matched:
                    by_dataset.setdefault((project_id, dataset_id), []).append((entry, rule_id, msg))
        items = list(by_dataset.items())
        if not items:
            # Nothing imported: saving the offsets is only a shortcut for the next start (a
            # re-read matches nothing new, and entries are unique per source log), so it is
            # done once a second rather than as one SQL commit per fetched log.
            now = time.monotonic()
            if now - self._offsets_saved_at >= OFFSETS_SAVE_INTERVAL_S:
                self._store.save_offsets(self._topic, reached)
                self._offsets_saved_at = now
                self._saved.update(reached)
            return
        for i, ((project_id, dataset_id), triples) in enumerate(items):
            self._add(project_id, dataset_id, triples, reached if i == len(items) - 1 else None)
        self._saved.update(reached)

    @staticmethod
    def _match(project_id: str, project_rules: list[dict[str, Any]], msg: Any) -> list[tuple[str, NewEntry, str]]:
        """(dataset id, entry, rule id) for each rule this log record matches."""
        try:
            env = orjson.loads(msg.value)
        except orjson.JSONDecodeError:
            return []  # log-ingest sets undecodable records aside; nothing to import here
        if not isinstance(env, dict) or env.get("type") not in RECORDED_TYPES or env.get("project_id") != project_id:
            return []
        data = env.get("data")
        if not isinstance(data, dict):
            return []
        data = {**data, "metadata": data_metadata(env["type"], data)}  # as the log store will hold it
        view = log_view(data, str(data.get("log_id") or env.get("aggregate_id") or ""))
        if errored(view):
            return []
        out: list[tuple[str, NewEntry, str]] = []
        entry = None
        for rule in project_rules:
            if not matches(rule["filters"], data):
                continue
            if entry is None:
                entry = entry_from_log(view)
                if entry is None:
                    break
            out.append((rule["dataset_id"], NewEntry(entry, source_log_id=view["id"]), rule["id"]))
        return out

    def _add(self, project_id: str, dataset_id: str, triples: list[tuple[NewEntry, str, Any]],
             reached: dict[int, int] | None) -> None:
        """Add entries with their rule counts (and, when `reached` is given, the offsets, in the same
        transaction). A refused write is split in halves down to the entry at fault, which is set
        aside if the store still answers a trivial read; if it does not, the error is raised and the
        batch retried."""
        per_rule: dict[str, int] = {}
        for _, rule_id, _ in triples:
            per_rule[rule_id] = per_rule.get(rule_id, 0) + 1

        def also(conn) -> None:
            for rule_id, n in per_rule.items():
                self._store.import_rules.count_imports(conn, rule_id, n)
            if reached is not None:
                eventstore.save_offsets(conn, self._topic, reached)

        try:
            result = self._store.entries.add(
                project_id, dataset_id, [t[0] for t in triples], "rule", rule_id=triples[0][1], also=also,
            )
            self.imported_total += result.created
            return
        except KeyError:  # the dataset was deleted meanwhile
            pass
        except Exception as exc:
            if len(triples) > 1:
                log.warning("adding %d entries to %s failed (%s); bisecting", len(triples), dataset_id, exc)
                mid = len(triples) // 2
                self._add(project_id, dataset_id, triples[:mid], None)
                self._add(project_id, dataset_id, triples[mid:], reached)
                return
            try:
                self._store.load_offsets(self._topic)
            except Exception:
                raise exc from None
            self._set_aside(triples[0][2], f"the dataset store refused the entry for {dataset_id}: "
                                           f"{type(exc).__name__}: {str(exc)[:2000]}")
        if reached is not None:
            self._store.save_offsets(self._topic, reached)

    def progress(self) -> list[PartitionProgress]:
        """Per partition: every record below `done` is handled; the end as the last fetch saw it."""
        return follower_progress(self._consumer, self._topic, dict(self._positions))

    def _set_aside(self, msg: Any, reason: str) -> None:
        self.set_aside += 1
        if self._dead_letters is None or self._loop is None:
            log.error("record at %s:%s skipped (no dead-letter sink): %s", msg.partition, msg.offset, reason)
            return
        self._dead_letters.set_aside_from_thread(
            self._loop, topic=self._topic, reason=reason, value=msg.value, key=msg.key or b"",
            partition=msg.partition, offset=msg.offset)


def grpc_unavailable(exc: grpc.aio.AioRpcError) -> bool:
    return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
