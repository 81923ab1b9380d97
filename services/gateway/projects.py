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
from dataclasses import dataclass

from refinery.events.projects import (
    API_KEY_ISSUED,
    PROJECT_CREATED,
    PROVIDER_CONFIGURED,
    ApiKeyIssued,
    ProjectCreated,
    ProviderConfigured,
)
from refinery.secrets_box import SecretBox
from refinery.stores import eventstore
from refinery.stores.eventstore import EventSourcedStore
from sqlalchemy import Column, Float, MetaData, String, Table, insert, select, update
from sqlalchemy.engine import Connection

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
)
providers_table = Table(
    "providers", projections,
    Column("project_id", String(64), primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("base_url", String(500), nullable=False),
    Column("api_key_encrypted", String(2000), nullable=False),
)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    return "opk-" + secrets.token_hex(24)


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


class ProjectRegistry(EventSourcedStore):
    def __init__(self, db_url: str, box: SecretBox) -> None:
        super().__init__(db_url, projections)
        self._box = box
        self._keys: dict[str, str] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(select(api_keys_table.c.key_hash, api_keys_table.c.project_id)):
                self._keys[row.key_hash] = row.project_id

    def authenticate(self, api_key: str) -> str | None:
        """Project id for a key, from memory: no database work on the hot path."""
        return self._keys.get(hash_key(api_key))

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
            self._append(conn, project.id, project.id, [
                (PROJECT_CREATED, ProjectCreated(name=name)),
                (API_KEY_ISSUED, ApiKeyIssued(key_hash=key_hash, key_prefix=key[:8])),
            ])
            conn.execute(insert(projects_table).values(id=project.id, name=name, created_at=project.created_at))
            conn.execute(insert(api_keys_table).values(key_hash=key_hash, project_id=project.id, key_prefix=key[:8]))

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

    def set_provider(self, project_id: str, provider: str, base_url: str, api_key: str) -> None:
        sealed = self._box.seal(api_key)

        def run(conn: Connection) -> None:
            if eventstore.current_version(conn, project_id) == 0:
                raise KeyError(project_id)
            self._append(conn, project_id, project_id, [
                (PROVIDER_CONFIGURED, ProviderConfigured(provider=provider, base_url=base_url,
                                                         api_key_encrypted=sealed)),
            ])
            key = (providers_table.c.project_id == project_id) & (providers_table.c.provider == provider)
            if conn.execute(select(providers_table.c.provider).where(key)).first():
                conn.execute(update(providers_table).where(key).values(base_url=base_url, api_key_encrypted=sealed))
            else:
                conn.execute(insert(providers_table).values(
                    project_id=project_id, provider=provider, base_url=base_url, api_key_encrypted=sealed))

        self._write(run)

    def providers(self, project_id: str) -> list[ProviderSetting]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(providers_table).where(providers_table.c.project_id == project_id))
            return [ProviderSetting(r.provider, r.base_url, self._box.open(r.api_key_encrypted)) for r in rows]
