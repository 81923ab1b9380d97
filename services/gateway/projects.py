"""Projects, API keys and provider settings: event-sourced, with projections in SQL.

API keys are stored as SHA-256 hashes (they are high-entropy random tokens, so a fast hash
is the right tool) and checked against an in-memory map on every request; provider API keys
are encrypted at rest. Every change is an event appended with its projection rows and its
outbox rows in one transaction.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field

import orjson
from refinery.events.projects import (
    API_KEY_ISSUED,
    API_KEY_REVOKED,
    PROJECT_CREATED,
    PROVIDER_CONFIGURED,
    ApiKeyIssued,
    ApiKeyRevoked,
    ModelCost,
    ProjectCreated,
    ProviderConfigured,
)
from refinery.secrets_box import SecretBox
from refinery.stores import eventstore
from refinery.stores.eventstore import EventSourcedStore
from sqlalchemy import Boolean, Column, Float, MetaData, String, Table, Text, insert, inspect, select, text, update
from sqlalchemy.engine import Connection, Engine

projections = MetaData()

projects_table = Table(
    "projects", projections,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)
api_keys_table = Table(
    "api_keys", projections,
    Column("key_hash", String(64), primary_key=True),
    Column("project_id", String(64), nullable=False, index=True),
    Column("key_prefix", String(16), nullable=False),
    # Added after the first release; `_upgrade` adds them to older databases.
    Column("key_id", String(32), nullable=True, index=True),
    Column("name", String(200), nullable=False, server_default=""),
    Column("read_only", Boolean, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True),
)
providers_table = Table(
    "providers", projections,
    Column("project_id", String(64), primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("base_url", String(500), nullable=False),
    Column("api_key_encrypted", String(2000), nullable=False),
    # Added later; `_upgrade` adds it to older databases. JSON {model: [input, output]} USD per million tokens.
    Column("model_costs", Text, nullable=False, server_default="{}"),
)
# The columns added after the first release, as `_upgrade` adds them to a database made before them.
_ADDED_COLUMNS = {
    "api_keys": ("key_id VARCHAR(32)", "name VARCHAR(200) NOT NULL DEFAULT ''",
                 "read_only BOOLEAN NOT NULL DEFAULT false", "created_at FLOAT", "revoked_at FLOAT",
                 "expires_at FLOAT"),
    "providers": ("model_costs TEXT NOT NULL DEFAULT '{}'",),
}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    return "opk-" + secrets.token_hex(24)


def _upgrade(engine: Engine) -> None:
    """Adds the columns a database made before them lacks; older keys get an id from their hash."""
    with engine.begin() as conn:
        for table, columns in _ADDED_COLUMNS.items():
            present = {c["name"] for c in inspect(conn).get_columns(table)}
            for column in columns:
                if column.split()[0] not in present:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column}"))
        conn.execute(text("UPDATE api_keys SET key_id = substr(key_hash, 1, 16) WHERE key_id IS NULL"))


class KeyRefused(Exception):
    """A key operation the caller may not do; the message says why."""


@dataclass(frozen=True)
class ApiKey:
    """What the project's key list shows: never the key itself, only its first characters."""

    id: str
    name: str
    prefix: str
    read_only: bool
    created_at: float | None
    revoked_at: float | None
    expires_at: float | None = None


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    created_at: float


@dataclass(frozen=True)
class ProviderSetting:
    provider: str
    base_url: str
    api_key: str
    model_costs: dict[str, tuple[float, float]] = field(default_factory=dict)  # model: (input, output) $/Mtok


class ProjectRegistry(EventSourcedStore):
    def __init__(self, db_url: str, box: SecretBox) -> None:
        super().__init__(db_url, projections)
        self._box = box
        _upgrade(self.engine)
        self._keys: dict[str, str] = {}
        self._read_only: set[str] = set()
        self._expiry: dict[str, float] = {}  # only keys that expire
        with self.engine.connect() as conn:
            for row in conn.execute(select(api_keys_table).where(api_keys_table.c.revoked_at.is_(None))):
                self._keys[row.key_hash] = row.project_id
                if row.read_only:
                    self._read_only.add(row.key_hash)
                if row.expires_at is not None:
                    self._expiry[row.key_hash] = row.expires_at

    def authenticate(self, api_key: str) -> str | None:
        """Project id for a live key (read-only ones included), from memory: no database work on the hot path."""
        return self._live(hash_key(api_key))

    def _live(self, key_hash: str) -> str | None:
        """The project of a key that is neither unknown, revoked nor expired."""
        expires = self._expiry.get(key_hash) if self._expiry else None
        if expires is not None and expires <= time.time():
            return None
        return self._keys.get(key_hash)

    def can_write(self, api_key: str) -> bool:
        """Whether a key may change anything (a read-only key reads only)."""
        return self.writer(api_key) is not None

    def writer(self, api_key: str) -> str | None:
        """Project id for a live key that may write; None for an unknown, revoked or read-only one (one hash)."""
        key_hash = hash_key(api_key)
        return None if key_hash in self._read_only else self._live(key_hash)

    def issue_key(self, project_id: str, name: str, *, read_only: bool = False,
                  expires_at: float | None = None) -> tuple[ApiKey, str]:
        """A new key for the project; the key itself is returned this once and only its hash is kept.
        With `expires_at` (seconds since the epoch) it stops authenticating then."""
        key = new_api_key()
        key_hash = hash_key(key)
        info = ApiKey(id=uuid.uuid4().hex[:16], name=name.strip(), prefix=key[:8], read_only=read_only,
                      created_at=time.time(), revoked_at=None, expires_at=expires_at)

        def run(conn: Connection) -> None:
            if eventstore.current_version(conn, project_id) == 0:
                raise KeyError(project_id)
            self._append(conn, project_id, project_id, [(API_KEY_ISSUED, ApiKeyIssued(
                key_hash=key_hash, key_prefix=info.prefix, key_id=info.id, name=info.name, read_only=read_only,
                expires_at=expires_at))])
            conn.execute(insert(api_keys_table).values(
                key_hash=key_hash, project_id=project_id, key_prefix=info.prefix, key_id=info.id, name=info.name,
                read_only=read_only, created_at=info.created_at, expires_at=expires_at))

        self._write(run)
        if expires_at is not None:
            self._expiry[key_hash] = expires_at
        self._keys[key_hash] = project_id
        if read_only:
            self._read_only.add(key_hash)
        return info, key

    def keys(self, project_id: str) -> list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys_table).where(api_keys_table.c.project_id == project_id)
                                .order_by(api_keys_table.c.created_at, api_keys_table.c.key_id))
            return [ApiKey(r.key_id, r.name, r.key_prefix, bool(r.read_only), r.created_at, r.revoked_at,
                           r.expires_at) for r in rows]

    def revoke_key(self, project_id: str, key_id: str) -> ApiKey:
        """Revokes one of the project's keys (it stops authenticating at once). Raises KeyError for a key
        the project does not have, KeyRefused for the project's last full-access key (revoking it would
        leave nobody able to change the project)."""

        def run(conn: Connection) -> ApiKey:
            rows = conn.execute(select(api_keys_table).where(
                (api_keys_table.c.project_id == project_id) & api_keys_table.c.revoked_at.is_(None))).all()
            row = next((r for r in rows if r.key_id == key_id), None)
            if row is None:
                raise KeyError(key_id)
            now = time.time()
            full = [r for r in rows if not r.read_only and (r.expires_at is None or r.expires_at > now)]
            if [r.key_id for r in full] == [key_id]:
                raise KeyRefused("this is the project's only full-access key: issue another before revoking it")
            self._append(conn, project_id, project_id,
                         [(API_KEY_REVOKED, ApiKeyRevoked(key_id=key_id, key_hash=row.key_hash))])
            conn.execute(update(api_keys_table).where(api_keys_table.c.key_hash == row.key_hash)
                         .values(revoked_at=now))
            self._keys.pop(row.key_hash, None)  # inside the lock: no request authenticates with it after this
            self._read_only.discard(row.key_hash)
            self._expiry.pop(row.key_hash, None)
            return ApiKey(row.key_id, row.name, row.key_prefix, bool(row.read_only), row.created_at, now,
                          row.expires_at)

        return self._write(run)

    def create_project(self, name: str, api_key: str | None = None) -> tuple[Project, str]:
        name = name.strip()
        if not name:
            raise ValueError("project name must not be empty")
        key = api_key or new_api_key()
        key_hash = hash_key(key)
        project = Project(id=uuid.uuid4().hex, name=name, created_at=time.time())

        def run(conn: Connection) -> None:
            if conn.execute(select(api_keys_table.c.key_hash).where(api_keys_table.c.key_hash == key_hash)).first():
                raise ValueError("that API key is already in use")
            key_id = uuid.uuid4().hex[:16]
            self._append(conn, project.id, project.id, [
                (PROJECT_CREATED, ProjectCreated(name=name)),
                (API_KEY_ISSUED, ApiKeyIssued(key_hash=key_hash, key_prefix=key[:8], key_id=key_id, name="default")),
            ])
            conn.execute(insert(projects_table).values(id=project.id, name=name, created_at=project.created_at))
            conn.execute(insert(api_keys_table).values(key_hash=key_hash, project_id=project.id, key_prefix=key[:8],
                                                       key_id=key_id, name="default",
                                                       created_at=project.created_at))

        self._write(run)
        self._keys[key_hash] = project.id  # after the commit: a key is usable once it is durable
        return project, key

    def get(self, project_id: str) -> Project | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(projects_table).where(projects_table.c.id == project_id)).first()
        return Project(row.id, row.name, row.created_at) if row else None

    def find_by_name(self, name: str) -> Project | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(projects_table).where(projects_table.c.name == name)).first()
        return Project(row.id, row.name, row.created_at) if row else None

    def all_projects(self) -> list[Project]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(projects_table).order_by(projects_table.c.created_at))
            return [Project(r.id, r.name, r.created_at) for r in rows]

    def set_provider(self, project_id: str, provider: str, base_url: str, api_key: str,
                     model_costs: dict[str, tuple[float, float]] | None = None) -> None:
        sealed = self._box.seal(api_key)
        costs = model_costs or {}
        stored = orjson.dumps({m: list(c) for m, c in costs.items()}).decode()

        def run(conn: Connection) -> None:
            if eventstore.current_version(conn, project_id) == 0:
                raise KeyError(project_id)
            self._append(conn, project_id, project_id, [
                (PROVIDER_CONFIGURED, ProviderConfigured(
                    provider=provider, base_url=base_url, api_key_encrypted=sealed,
                    model_costs={m: ModelCost(input_per_mtok=i, output_per_mtok=o) for m, (i, o) in costs.items()})),
            ])
            key = (providers_table.c.project_id == project_id) & (providers_table.c.provider == provider)
            values = {"base_url": base_url, "api_key_encrypted": sealed, "model_costs": stored}
            if conn.execute(select(providers_table.c.provider).where(key)).first():
                conn.execute(update(providers_table).where(key).values(**values))
            else:
                conn.execute(insert(providers_table).values(project_id=project_id, provider=provider, **values))

        self._write(run)

    def providers(self, project_id: str) -> list[ProviderSetting]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(providers_table).where(providers_table.c.project_id == project_id))
            return [ProviderSetting(r.provider, r.base_url, self._box.open(r.api_key_encrypted),
                                    {m: (float(c[0]), float(c[1])) for m, c in orjson.loads(r.model_costs).items()})
                    for r in rows]
