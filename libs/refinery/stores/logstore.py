"""The request-log store: ClickHouse over `clickhouse-connect`.

Production points `dsn` at a ClickHouse server (`http://host:8123/...`); the embedded
default is `chdb:///abs/dir` (the ClickHouse engine in-process). Both speak the same SQL, so
this one class is the store; its contract suite runs against each backend.

Rows are versioned (ReplacingMergeTree): a metadata update writes a new copy of each matched
row with a higher version instead of mutating in place, and every read uses FINAL. Versions
and `seq` are bus offsets of one project partition, so replaying events is idempotent and
"latest" means "most recently accepted".

Connections are kept per purpose, so one kind of work never waits behind another: ingestion
(inserts, the duplicate check, metadata patches, offsets) has its own client, and reads
(search, export pages, counts) take one of a few read clients for each call. A client runs one
statement at a time (an HTTP client is one ClickHouse session, which refuses concurrent
queries; a chdb client is one engine handle, on which a second query while a stream is open
returns nothing), but separate clients run in parallel: over HTTP they are separate sessions,
and chdb documents (and we measured) that queries on separate handles to one engine are safe
and concurrent: inserts and small reads answered in well under a second while another handle
ran a minute-long scan. So a tenant's heavy search or a whole-project export holds one read
client at a time, never the ingest client, and other tenants' reads take the others.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import clickhouse_connect
import orjson
from clickhouse_connect.driver.client import Client

COLUMNS = [
    "project_id", "log_id", "seq", "version", "received_at", "requested_at", "completed_at",
    "source", "provider", "model", "status_code", "error_message", "completion_id", "cache_hit",
    "prompt_tokens", "completion_tokens", "cost_usd", "req_payload", "resp_payload",
    "resp_openai", "metadata",
]

_DDL = """
CREATE TABLE IF NOT EXISTS {db}.request_logs (
    project_id String,
    log_id String,
    seq UInt64,
    version UInt64,
    received_at DateTime64(3, 'UTC'),
    requested_at Nullable(Float64),
    completed_at Nullable(Float64),
    source LowCardinality(String),
    provider LowCardinality(String),
    model String,
    status_code Nullable(Int32),
    error_message Nullable(String),
    completion_id String,
    cache_hit Bool,
    prompt_tokens UInt32,
    completion_tokens UInt32,
    cost_usd Nullable(Float64),
    req_payload String,
    resp_payload String,
    resp_openai String,
    metadata Map(String, String)
) ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, log_id)
"""


_OFFSETS_DDL = """
CREATE TABLE IF NOT EXISTS {db}.ingest_offsets (
    topic String,
    partition Int32,
    next_offset Int64
) ENGINE = ReplacingMergeTree(next_offset)
ORDER BY (topic, partition)
"""


class FilterError(ValueError):
    """A filter names a field the store cannot search on."""


@dataclass(frozen=True, slots=True)
class LogFilter:
    field: str
    value: str
    value_type: str = "string"
    # "" or "equals"; "contains" / "not_contains" (case-insensitive, on text fields: request,
    # response, text, model, completionId, metadata.<key>); "any_of" (value: a JSON array) on id,
    # model, completionId.
    op: str = ""


# The fields `contains` / `not_contains` work on (besides metadata.<key>), with the columns each looks
# in; `any_of`'s fields and their columns. The columns are named as the log event's data keys, so the
# dataset service's standing rules evaluate the same filters on events with these same tables.
TEXT_COLUMNS = {
    "request": ("req_payload",),
    "response": ("resp_payload", "resp_openai"),
    "text": ("req_payload", "resp_payload", "resp_openai"),
    "model": ("model",),
    "completionId": ("completion_id",),
}
ANY_OF_COLUMNS = {"id": "log_id", "model": "model", "completionId": "completion_id"}


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One day and model of a project's calls."""

    day: str
    model: str
    calls: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


def metadata_key(field: str) -> str | None:
    """The key of a `metadata.<key>` / `tags.<key>` field; None for any other field."""
    if not field.startswith(("metadata.", "tags.")):
        return None
    key = field.split(".", 1)[1]
    if not key:
        raise FilterError(f"filter field {field!r} names no key")
    return key


def contains_target(field: str, op: str) -> tuple[tuple[str, ...], str | None]:
    """Where a `contains` / `not_contains` filter looks: (columns, None) for a text field, ((), key) for
    metadata.<key>; FilterError for another operator or field."""
    if op not in ("contains", "not_contains"):
        raise FilterError(f"unknown filter operator {op!r}: use equals, contains or notContains")
    key = metadata_key(field)
    if key is not None:
        return (), key
    if field not in TEXT_COLUMNS:
        raise FilterError(f"{field} filters take equals only; contains and notContains work on "
                          "request, response, text, model, completionId and metadata.<key>")
    return TEXT_COLUMNS[field], None


def any_of_target(field: str, value: str) -> tuple[str, list[str]]:
    """The column and the values of an `any_of` filter (its value a JSON array of strings)."""
    column = ANY_OF_COLUMNS.get(field)
    if column is None:
        raise FilterError(f"{field} filters cannot take anyOf: it works on id, model and completionId")
    try:
        values = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise FilterError("anyOf needs a JSON array of strings") from exc
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise FilterError("anyOf needs a JSON array of strings")
    return column, values


def scalar_text(value: str, value_type: str) -> str:
    """Metadata is stored as strings; `equals` may be a number or bool on the wire."""
    if value_type == "bool":
        return "true" if value.lower() in ("true", "1") else "false"
    return value


# A metadata patch reads and rewrites its logs this many at a time: each statement stays short
# and small however many logs one update event names.
PATCH_CHUNK = 2_000


class _Clients:
    """A fixed set of clients for one purpose. A call takes one for its statements and gives it
    back; callers beyond the set wait their turn in arrival order."""

    def __init__(self, dsn: str, count: int) -> None:
        self._all: list[Client] = []
        self._free: queue.Queue[Client] = queue.Queue()
        try:
            for _ in range(count):
                client = clickhouse_connect.get_client(dsn=dsn)
                self._all.append(client)
                self._free.put(client)
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def one(self) -> Iterator[Client]:
        client = self._free.get()
        try:
            yield client
        finally:
            self._free.put(client)

    def close(self) -> None:
        for client in self._all:
            client.close()


class LogStore:
    """All reads and writes of request logs, safe to call from several threads at once.

    `read_connections` bounds how many reads run at once; ingestion has a client of its own.
    """

    def __init__(self, dsn: str, database: str = "refinery", read_connections: int = 4) -> None:
        if read_connections < 1:
            raise ValueError(f"read_connections must be at least 1, got {read_connections}")
        self._db = database
        self._table = f"{database}.request_logs"
        self._ingest_lock = threading.Lock()
        self._ingest = clickhouse_connect.get_client(dsn=dsn)
        try:
            self._ingest.command(f"CREATE DATABASE IF NOT EXISTS {database}")
            self._ingest.command(_DDL.format(db=database))
            self._ingest.command(_OFFSETS_DDL.format(db=database))
            self._reads = _Clients(dsn, read_connections)
        except BaseException:
            self._ingest.close()
            raise

    def close(self) -> None:
        self._reads.close()
        self._ingest.close()

    # ---- writes -------------------------------------------------------------------------

    def existing_ids(self, project_ids_and_logs: dict[str, list[str]]) -> set[tuple[str, str]]:
        """Which (project, log) pairs are stored already: ingest skips them (idempotence)."""
        found: set[tuple[str, str]] = set()
        with self._ingest_lock:
            for project_id, log_ids in project_ids_and_logs.items():
                rows = self._ingest.query(
                    f"SELECT log_id FROM {self._table} WHERE project_id = {{p:String}} "
                    "AND log_id IN {ids:Array(String)}",
                    parameters={"p": project_id, "ids": log_ids},
                ).result_rows
                found.update((project_id, r[0]) for r in rows)
        return found

    def load_offsets(self, topic: str) -> dict[int, int]:
        """Where ingest stopped: kept in the store itself, written after each batch's rows."""
        with self._ingest_lock:
            rows = self._ingest.query(
                f"SELECT partition, max(next_offset) FROM {self._db}.ingest_offsets WHERE topic = {{t:String}} "
                "GROUP BY partition",
                parameters={"t": topic},
            ).result_rows
        return {int(p): int(o) for p, o in rows}

    def save_offsets(self, topic: str, offsets: dict[int, int]) -> None:
        with self._ingest_lock:
            self._ingest.insert(
                f"{self._db}.ingest_offsets", [[topic, p, o] for p, o in offsets.items()],
                column_names=["topic", "partition", "next_offset"],
            )

    def insert_rows(self, rows: list[list[Any]]) -> None:
        if not rows:
            return
        with self._ingest_lock:
            self._ingest.insert(self._table, rows, column_names=COLUMNS)

    def apply_metadata_patch(
        self, project_id: str, log_ids: list[str], patch: dict[str, str | None], version: int
    ) -> int:
        """Write new versions of the given logs with `patch` merged; already-applied is a no-op.

        Applied PATCH_CHUNK logs at a time, each chunk read and rewritten in one hold of the
        ingest client; a replay after a crash mid-way skips the chunks already at `version`.
        """
        written = 0
        for start in range(0, len(log_ids), PATCH_CHUNK):
            written += self._patch_chunk(project_id, log_ids[start:start + PATCH_CHUNK], patch, version)
        return written

    def _patch_chunk(self, project_id: str, log_ids: list[str], patch: dict[str, str | None], version: int) -> int:
        meta_idx = COLUMNS.index("metadata")
        ver_idx = COLUMNS.index("version")
        with self._ingest_lock:
            rows = self._ingest.query(
                f"SELECT {', '.join(COLUMNS)} FROM {self._table} FINAL WHERE project_id = {{p:String}} "
                "AND log_id IN {ids:Array(String)} AND version < {v:UInt64}",
                parameters={"p": project_id, "ids": log_ids, "v": version},
            ).result_rows
            new_rows = []
            for row in rows:
                row = list(row)
                meta = dict(row[meta_idx])
                for key, value in patch.items():
                    if value is None:
                        meta.pop(key, None)
                    else:
                        meta[key] = value
                row[meta_idx] = meta
                row[ver_idx] = version
                new_rows.append(row)
            if new_rows:
                self._ingest.insert(self._table, new_rows, column_names=COLUMNS)
        return len(new_rows)

    # ---- reads --------------------------------------------------------------------------

    def _where(self, project_id: str, filters: Iterable[LogFilter]) -> tuple[str, dict[str, Any]]:
        clauses = ["project_id = {p:String}"]
        params: dict[str, Any] = {"p": project_id}
        for i, f in enumerate(filters):
            name = f"f{i}"
            if f.op == "any_of":
                clauses.append(self._any_of(f, name, params))
            elif f.op not in ("", "equals"):
                clauses.append(self._contains(f, name, params))
            elif f.field == "id":
                clauses.append(f"log_id = {{{name}:String}}")
                params[name] = f.value
            elif f.field == "model":
                clauses.append(f"model = {{{name}:String}}")
                params[name] = f.value
            elif f.field == "completionId":
                clauses.append(f"completion_id = {{{name}:String}}")
                params[name] = f.value
            elif f.field == "statusCode":
                try:
                    params[name] = int(float(f.value))
                except ValueError as exc:
                    raise FilterError(f"statusCode filter needs a number, got {f.value!r}") from exc
                clauses.append(f"status_code = {{{name}:Int32}}")
            elif f.field.startswith(("metadata.", "tags.")):
                key = f.field.split(".", 1)[1]
                if not key:
                    raise FilterError(f"filter field {f.field!r} names no key")
                clauses.append(
                    f"mapContains(metadata, {{{name}k:String}}) AND metadata[{{{name}k:String}}] = {{{name}:String}}"
                )
                params[name + "k"] = key
                params[name] = scalar_text(f.value, f.value_type)
            elif f.field in ("request", "response"):
                raise FilterError(f"{f.field} filters take contains or notContains, not equals")
            elif f.field == "text":
                clauses.append(
                    f"(positionCaseInsensitiveUTF8(req_payload, {{{name}:String}}) > 0 OR "
                    f"positionCaseInsensitiveUTF8(resp_payload, {{{name}:String}}) > 0 OR "
                    f"positionCaseInsensitiveUTF8(resp_openai, {{{name}:String}}) > 0)"
                )
                params[name] = f.value
            elif f.field in ("from", "to"):
                try:
                    params[name] = int(float(f.value))
                except ValueError as exc:
                    raise FilterError(f"{f.field} filter needs ms since epoch, got {f.value!r}") from exc
                op = ">=" if f.field == "from" else "<"
                clauses.append(f"received_at {op} fromUnixTimestamp64Milli(toInt64({{{name}:Int64}}))")
            else:
                raise FilterError(
                    f"unknown filter field {f.field!r}: use id, model, completionId, statusCode, "
                    "metadata.<key>, tags.<key>, text, request, response, from or to"
                )
        return " AND ".join(clauses), params

    @staticmethod
    def _any_of(f: LogFilter, name: str, params: dict[str, Any]) -> str:
        """One of several values (a JSON array of strings) on id, model or completionId."""
        column, params[name] = any_of_target(f.field, f.value)
        return f"{column} IN {{{name}:Array(String)}}"

    @staticmethod
    def _contains(f: LogFilter, name: str, params: dict[str, Any]) -> str:
        """A case-insensitive substring test on a text field, or its negation."""
        text_columns, key = contains_target(f.field, f.op)
        columns = list(text_columns)
        if key is not None:
            params[name + "k"] = key
            columns = [f"metadata[{{{name}k:String}}]"]
        params[name] = f.value
        found = " OR ".join(f"positionCaseInsensitiveUTF8({c}, {{{name}:String}}) > 0" for c in columns)
        return f"({found})" if f.op == "contains" else f"NOT ({found})"

    def usage(self, project_id: str, filters: list[LogFilter]) -> list[UsageRow]:
        """Calls, errors, tokens and cost per day (UTC) and model, oldest day first: summed in the store,
        so a project's usage costs one grouped query, never a scan sent to the client."""
        where, params = self._where(project_id, filters)
        with self._reads.one() as client:
            rows = client.query(
                "SELECT toString(toDate(received_at)) AS day, model, count(), "
                "countIf(ifNull(status_code, 0) >= 400 OR ifNull(error_message, '') != ''), "
                "sum(prompt_tokens), sum(completion_tokens), sum(ifNull(cost_usd, 0)) "
                f"FROM {self._table} FINAL WHERE {where} GROUP BY day, model ORDER BY day, model",
                parameters=params,
            ).result_rows
        return [UsageRow(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), float(r[6]))
                for r in rows]

    def matching_ids(self, project_id: str, filters: list[LogFilter]) -> list[str]:
        where, params = self._where(project_id, filters)
        with self._reads.one() as client:
            rows = client.query(
                f"SELECT log_id FROM {self._table} FINAL WHERE {where}", parameters=params
            ).result_rows
        return [r[0] for r in rows]

    def search(
        self, project_id: str, filters: list[LogFilter], limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        where, params = self._where(project_id, filters)
        with self._reads.one() as client:
            total = client.query(
                f"SELECT count() FROM {self._table} FINAL WHERE {where}", parameters=params
            ).result_rows[0][0]
            rows = client.query(
                f"SELECT {', '.join(COLUMNS)} FROM {self._table} FINAL WHERE {where} "
                f"ORDER BY seq DESC LIMIT {int(limit)} OFFSET {int(offset)}",
                parameters=params,
            ).result_rows
        return [dict(zip(COLUMNS, r, strict=True)) for r in rows], int(total)

    def latest(self, project_id: str) -> dict[str, Any] | None:
        rows, _ = self.search(project_id, [], 1, 0)
        return rows[0] if rows else None

    def iter_export(self, project_id: str, filters: list[LogFilter], page: int = 1000) -> Iterator[dict]:
        """All matching logs, oldest first, a page at a time (never the whole set in memory).

        Each page takes a read client only for its query: a consumer that is slow between pages
        (a client reading an export slowly) holds no connection."""
        where, params = self._where(project_id, filters)
        last_seq = -1
        while True:
            with self._reads.one() as client:
                rows = client.query(
                    f"SELECT {', '.join(COLUMNS)} FROM {self._table} FINAL WHERE {where} "
                    f"AND seq > {{after:Int64}} ORDER BY seq ASC LIMIT {int(page)}",
                    parameters={**params, "after": last_seq},
                ).result_rows
            if not rows:
                return
            for r in rows:
                yield dict(zip(COLUMNS, r, strict=True))
            last_seq = int(rows[-1][COLUMNS.index("seq")])

    def count(self, project_id: str | None = None) -> int:
        with self._reads.one() as client:
            if project_id is None:
                return int(client.query(f"SELECT count() FROM {self._table} FINAL").result_rows[0][0])
            return int(
                client.query(
                    f"SELECT count() FROM {self._table} FINAL WHERE project_id = {{p:String}}",
                    parameters={"p": project_id},
                ).result_rows[0][0]
            )


# ---- row <-> wire --------------------------------------------------------------------------

def _json_fragment(text: str) -> Any:
    return orjson.Fragment(text) if text else None


def row_to_api(row: dict[str, Any]) -> dict[str, Any]:
    """The log as the API shows it (`local-testing-only-get-latest-logged-call`, search).

    Payloads are embedded as stored, byte for byte, never re-parsed.
    """
    received: datetime = row["received_at"]
    if received.tzinfo is None:
        received = received.replace(tzinfo=UTC)
    meta = dict(row["metadata"])
    return {
        "id": row["log_id"],
        "createdAt": received.isoformat().replace("+00:00", "Z"),
        "requestedAt": row["requested_at"],
        "receivedAt": row["completed_at"],
        "cacheHit": bool(row["cache_hit"]),
        "statusCode": row["status_code"],
        "errorMessage": row["error_message"],
        "model": row["model"] or None,
        "provider": row["provider"],
        "completionId": row["completion_id"] or None,
        "usage": {
            "promptTokens": row["prompt_tokens"],
            "completionTokens": row["completion_tokens"],
        },
        "cost": row["cost_usd"],
        "reqPayload": _json_fragment(row["req_payload"]),
        # Anthropic logs are shown in their OpenAI view; the verbatim payload is in the export.
        "respPayload": _json_fragment(row["resp_openai"] or row["resp_payload"]),
        "tags": meta,
        "metadata": meta,
    }


def row_to_export(row: dict[str, Any]) -> dict[str, Any]:
    """One line of the documented export format: input, output (errors included), tags."""
    output = _json_fragment(row["resp_payload"])
    if output is None and row["error_message"]:
        output = {"error": {"message": row["error_message"], "statusCode": row["status_code"]}}
    return {"input": _json_fragment(row["req_payload"]), "output": output, "tags": dict(row["metadata"])}


def row_to_import(row: dict[str, Any]) -> dict[str, Any]:
    """What dataset import reads: the request as sent and the response's OpenAI view."""
    return {
        "id": row["log_id"],
        "source": row["source"],
        "statusCode": row["status_code"],
        "errorMessage": row["error_message"],
        "reqPayload": _json_fragment(row["req_payload"]),
        "respOpenai": _json_fragment(row["resp_openai"] or row["resp_payload"]),
        "metadata": dict(row["metadata"]),
    }
