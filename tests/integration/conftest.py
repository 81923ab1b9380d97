"""Real servers for integration tests: SeaweedFS and Tansu on free ports, one each per session."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from refinery.stack.infra import SeaweedFS, Tansu


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    root = tmp_path_factory.mktemp("seaweed")
    s = SeaweedFS(root / "data", root / "logs")
    s.start()
    s.ensure_bucket("tansu")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def tansu(seaweed: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    t = Tansu(tmp_path_factory.mktemp("tansu-logs"), seaweed.credentials)
    t.start()
    yield t
    t.stop()


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL (its SQLAlchemy URL), dropped after; the test
    skips, saying why, when no PostgreSQL answers."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432: {exc}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
